//! End to end through `wrangler dev` (with its local Queues): every mock request becomes one
//! analytics event at the control plane, exactly once, even when the control plane is
//! stopped in the middle of a burst and started again. Also: request ids on every response
//! and error, and an instance that recovers from a panic.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use edgemock_e2e::{ControlPlane, Edge, eventually, free_port};
use serde_json::{Value, json};
use tempfile::TempDir;

const TOKEN: &str = "analytics-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_arrive_exactly_once_across_a_control_plane_outage() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let db_url = ControlPlane::sqlite_url(&dir);
    // The control plane's address is fixed up front: it is stopped and started again there.
    let port = free_port();
    let cp_url = format!("http://127.0.0.1:{port}");
    let edge = Edge::start_with(
        TOKEN,
        300,
        &[("CONTROL_PLANE_URL", cp_url.as_str()), ("EDGEMOCK_TEST_ROUTES", "true")],
    )
    .await?;
    let cp =
        ControlPlane::start_on(port, &db_url, Some(edge.url.clone()), Some(TOKEN.into())).await?;
    let result = scenario(&edge, cp, &db_url).await;
    if result.is_err() {
        eprintln!("--- wrangler dev log ---\n{}", edge.log_tail());
    }
    result
}

/// What a client saw of one request.
#[derive(Debug)]
struct Sent {
    status: u16,
    kind: &'static str,
}

/// Sends `n` requests of five kinds in turn and records each by the `x-request-id` it got.
async fn burst(
    client: &reqwest::Client,
    edge: &Edge,
    n: usize,
    seen: &mut BTreeMap<String, Sent>,
) -> anyhow::Result<()> {
    for i in 0..n {
        let base = format!("{}/mock/stats", edge.url);
        let (kind, request) = match i % 5 {
            0 => ("static", client.get(format!("{base}/users/{i}"))),
            // The client's own request id is kept.
            1 => (
                "static",
                client
                    .get(format!("{base}/users/{i}"))
                    .header("x-request-id", format!("client-{}", seen.len())),
            ),
            2 => ("near_miss", client.get(format!("{base}/Users/{i}"))),
            3 => ("invalid", client.post(format!("{base}/users")).json(&json!({"age": 3}))),
            _ => ("created", client.post(format!("{base}/users")).json(&json!({"name": "Ada"}))),
        };
        let response = request.send().await?;
        let status = response.status().as_u16();
        let id = response.headers()["x-request-id"].to_str()?.to_owned();
        if i % 5 == 1 {
            assert_eq!(id, format!("client-{}", seen.len()), "the client's request id is kept");
        }
        if kind == "near_miss" {
            // Errors carry the request id in the body too.
            let body: Value = response.json().await?;
            assert_eq!(body["error"]["request_id"], json!(id), "{body}");
            assert_eq!(body["error"]["code"], "route_not_found");
        }
        assert!(seen.insert(id, Sent { status, kind }).is_none(), "request ids are unique");
    }
    Ok(())
}

/// A stored event: request id, status, endpoint pattern, validation failed, near miss.
type Row = (String, i32, Option<String>, i32, Option<String>);

async fn stored(db_url: &str) -> anyhow::Result<Vec<Row>> {
    let db = edgemock_control_plane::db::connect(db_url, 1).await?;
    let rows = sqlx::query_as(
        "SELECT request_id, status, endpoint_pattern, validation_failed, near_miss
         FROM analytics_events WHERE api_slug = 'stats' ORDER BY request_id",
    )
    .fetch_all(&db)
    .await?;
    db.close().await;
    Ok(rows)
}

async fn scenario(edge: &Edge, cp: ControlPlane, db_url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let (status, _) = cp.post("/api/v1/workspaces", &json!({"slug": "an"})).await?;
    assert_eq!(status, 201);
    let (status, _) = cp.post("/api/v1/workspaces/an/apis", &json!({"slug": "stats"})).await?;
    assert_eq!(status, 201);
    let endpoints = [
        json!({"method": "GET", "path": "/users/:id", "response": {"body": {"id": 1}}}),
        json!({"method": "POST", "path": "/users",
               "validation": {"schema": {"type": "object", "required": ["name"]}},
               "response": {"status": 201, "body": {"created": true}}}),
    ];
    for e in &endpoints {
        let (status, body) = cp.post("/api/v1/apis/stats/endpoints", e).await?;
        assert_eq!(status, 201, "{body}");
    }
    // Probes are requests too, and counted; their ids set them apart.
    let probes = std::sync::atomic::AtomicUsize::new(0);
    eventually(Duration::from_secs(30), "the API to reach the edge", || {
        let n = probes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let request = client
            .get(format!("{}/mock/stats/users/1", edge.url))
            .header("x-request-id", format!("probe-{n}"));
        async move { request.send().await.ok().filter(|r| r.status() == 200) }
    })
    .await?;

    let mut seen = BTreeMap::new();
    burst(&client, edge, 25, &mut seen).await?;

    // A panic answers that one request with an error and is logged; the next request is
    // served by a fresh instance.
    let r = client.get(format!("{}/__edgemock/test/panic", edge.url)).send().await?;
    assert_eq!(r.status().as_u16(), 500);
    let r = client.get(format!("{}/mock/stats/users/7", edge.url)).send().await?;
    assert_eq!(r.status().as_u16(), 200, "the instance recovered");
    seen.insert(
        r.headers()["x-request-id"].to_str()?.to_owned(),
        Sent { status: 200, kind: "static" },
    );
    eventually(Duration::from_secs(10), "the panic to be logged", || async {
        let log = std::fs::read_to_string(&edge.log).unwrap_or_default();
        log.contains("a panic on purpose").then_some(())
    })
    .await?;

    // The control plane goes down in the middle of the traffic; the mocks keep answering
    // (the snapshot is in the isolate and in KV), and their events wait in the queue.
    let port = cp.port;
    cp.stop().await?;
    burst(&client, edge, 25, &mut seen).await?;
    // 8 s by default; EDGEMOCK_TEST_OUTAGE_SECONDS=65 shows a minute-long outage.
    let outage = std::env::var("EDGEMOCK_TEST_OUTAGE_SECONDS").ok().and_then(|s| s.parse().ok());
    tokio::time::sleep(Duration::from_secs(outage.unwrap_or(8))).await;
    let _cp =
        ControlPlane::start_on(port, db_url, Some(edge.url.clone()), Some(TOKEN.into())).await?;
    let restarted = std::time::Instant::now();
    burst(&client, edge, 10, &mut seen).await?;

    // Every request arrives, once.
    let want = seen.len();
    let ours = |rows: Vec<Row>| -> Vec<Row> {
        rows.into_iter().filter(|row| !row.0.starts_with("probe-")).collect()
    };
    eventually(Duration::from_secs(120), "every event to be stored", || async {
        stored(db_url).await.ok().map(ours).filter(|rows| rows.len() >= want)
    })
    .await?;
    eprintln!(
        "{want} events stored, all within {:.1} s of the control plane's restart",
        restarted.elapsed().as_secs_f64()
    );
    // The outage was real: deliveries failed while the control plane was down.
    let log = std::fs::read_to_string(&edge.log)?;
    assert!(log.contains("not delivered, will retry"), "no delivery failed during the outage");
    // Late redeliveries would show up now.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let all = stored(db_url).await?;
    let distinct: std::collections::BTreeSet<_> = all.iter().map(|row| &row.0).collect();
    assert_eq!(distinct.len(), all.len(), "no request is counted twice");
    let rows = ours(all);
    assert_eq!(rows.len(), want, "exactly one event per request");
    for (request_id, status, pattern, invalid, near_miss) in rows {
        let sent = seen.get(&request_id).unwrap_or_else(|| panic!("unknown request {request_id}"));
        assert_eq!(i32::from(sent.status), status, "{request_id}");
        match sent.kind {
            "static" => assert_eq!(pattern.as_deref(), Some("/users/:id")),
            "near_miss" => {
                assert_eq!(pattern, None);
                assert!(
                    near_miss.as_deref().is_some_and(|m| m.contains(" /users")),
                    "{near_miss:?}"
                );
            }
            "invalid" => assert_eq!((pattern.as_deref(), invalid), (Some("/users"), 1)),
            _ => assert_eq!((status, pattern.as_deref(), invalid), (201, Some("/users"), 0)),
        }
    }
    Ok(())
}
