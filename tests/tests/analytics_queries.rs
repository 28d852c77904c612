//! Analytics on the control plane: the native runtime's own events, queries by time bucket
//! and group (with the edge's events beside them), validation, retention, and
//! `ANALYTICS_ENABLED=false`; on SQLite and on PostgreSQL.

// A failed unwrap in a test is a failed test, with the line that failed.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use edgemock_control_plane::auth::Role;
use edgemock_e2e::{ControlPlane, Postgres, eventually};
use serde_json::{Value, json};
use tempfile::TempDir;

const TOKEN: &str = "ingest-token";

fn event(id: &str, api_id: &str, at_ms: i64, status: u16, latency_ms: u32) -> Value {
    json!({
        "id": id, "request_id": format!("req-{id}"), "timestamp_ms": at_ms,
        "source": "edge", "workspace_id": "w", "api_id": api_id, "api_slug": "shop",
        "protocol": "rest", "endpoint_method": "GET", "endpoint_pattern": "/users/:id",
        "method": "GET", "path": "/users/1", "status": status, "latency_ms": latency_ms,
        "request_bytes": 0, "response_bytes": 100, "country": "DE", "city": "Berlin",
        "colo": "FRA", "proxied": false, "deduplicated": false, "cache": "bypass",
        "validation_failed": false, "near_miss": null, "snapshot_source": "kv"
    })
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis(),
    )
    .unwrap()
}

/// `group → requests` of a query's rows (all buckets summed).
fn totals(answer: &Value) -> std::collections::BTreeMap<String, i64> {
    let mut totals = std::collections::BTreeMap::new();
    for row in answer["rows"].as_array().into_iter().flatten() {
        *totals.entry(row["group"].as_str().unwrap_or_default().to_owned()).or_default() +=
            row["requests"].as_i64().unwrap_or_default();
    }
    totals
}

async fn scenario(cp: &ControlPlane) -> anyhow::Result<()> {
    let (status, api) =
        cp.post("/api/v1/workspaces/default/apis", &json!({"slug": "shop"})).await?;
    assert_eq!(status, 201, "{api}");
    let api_id = api["id"].as_str().unwrap().to_owned();
    for e in [
        json!({"method": "GET", "path": "/users/:id", "response": {"body": {"ok": true}}}),
        json!({"method": "GET", "path": "/slow", "delay": {"fixed": 40}, "response": {"body": "late"}}),
    ] {
        let (status, body) = cp.post("/api/v1/apis/shop/endpoints", &e).await?;
        assert_eq!(status, 201, "{body}");
    }
    // Native traffic: 10 hits, 3 misses, 2 slow ones.
    let client = reqwest::Client::new();
    for path in std::iter::repeat_n("/users/1", 10)
        .chain(std::iter::repeat_n("/nope", 3))
        .chain(["/slow", "/slow"])
    {
        client.get(format!("{}/mock/shop{path}", cp.url)).send().await?;
    }
    // Edge traffic: 5 events from Germany, 100 ms each, one a 500.
    let at = now_ms() - 1000;
    let events: Vec<Value> = (0..5)
        .map(|i| event(&format!("e{i}"), &api_id, at, if i == 0 { 500 } else { 200 }, 100))
        .collect();
    let r = cp
        .client
        .post(format!("{}/internal/v1/analytics", cp.url))
        .bearer_auth(TOKEN)
        .json(&json!({"events": events}))
        .send()
        .await?;
    assert_eq!(r.status(), 200);

    let analytics = |query: &'static str| async move {
        cp.get(&format!("/api/v1/apis/shop/analytics?{query}")).await
    };
    // The native events are written in the background: wait for all 15.
    eventually(Duration::from_secs(10), "the native events", || async {
        let (_, a) = analytics("group_by=source").await.ok()?;
        (totals(&a).get("native") == Some(&15)).then_some(())
    })
    .await?;
    let (status, by_source) = analytics("group_by=source").await?;
    assert_eq!(status, 200, "{by_source}");
    assert_eq!(
        totals(&by_source),
        [("edge".into(), 5), ("native".into(), 15)].into(),
        "{by_source}"
    );

    let (_, by_endpoint) = analytics("group_by=endpoint&bucket=day").await?;
    assert_eq!(
        totals(&by_endpoint),
        [("-".into(), 3), ("GET /slow".into(), 2), ("GET /users/:id".into(), 15)].into(),
        "{by_endpoint}"
    );
    let slow =
        by_endpoint["rows"].as_array().unwrap().iter().find(|r| r["group"] == "GET /slow").unwrap();
    assert!(slow["latency_ms"]["p50"].as_f64() >= Some(25.0), "{slow}");
    assert!(slow["latency_ms"]["max"].as_i64() >= Some(40), "{slow}");

    let (_, by_status) = analytics("group_by=status&bucket=day").await?;
    assert_eq!(
        totals(&by_status),
        [("200".into(), 16), ("404".into(), 3), ("500".into(), 1)].into(),
        "{by_status}"
    );
    let (_, by_country) = analytics("group_by=country&bucket=day").await?;
    assert_eq!(totals(&by_country), [("-".into(), 15), ("DE".into(), 5)].into(), "{by_country}");
    let de = &by_country["rows"].as_array().unwrap().iter().find(|r| r["group"] == "DE").unwrap();
    assert_eq!(de["server_errors"], 1, "{de}");
    assert_eq!(de["response_bytes"]["total"], 500, "{de}");
    assert!((de["latency_ms"]["avg"].as_f64().unwrap() - 100.0).abs() < 1e-9, "{de}");
    let (_, only_404) = analytics("status=404&bucket=day").await?;
    assert_eq!(totals(&only_404), [(String::new(), 3)].into(), "{only_404}");
    let (_, one_endpoint) = analytics("endpoint=GET%20/slow&bucket=day").await?;
    assert_eq!(totals(&one_endpoint), [(String::new(), 2)].into(), "{one_endpoint}");

    // Bad queries name the field.
    for (query, field) in [
        ("from_ms=10&to_ms=5", "from_ms"),
        ("bucket=minute&from_ms=0&to_ms=4000000000000", "bucket"),
        ("status=99", "status"),
        // A NUL would be a 500 on PostgreSQL if it reached the query.
        ("country=%00", "country"),
        ("endpoint=GET%20/x%00", "endpoint"),
    ] {
        let (status, body) = cp.get(&format!("/api/v1/apis/shop/analytics?{query}")).await?;
        assert_eq!(
            (status, body["error"]["field"].as_str()),
            (422, Some(field)),
            "{query}: {body}"
        );
    }
    let (status, _) = analytics("group_by=city").await?;
    assert_eq!(status, 400);
    // The ingest route checks the credential before it reads the body.
    let r = reqwest::Client::new()
        .post(format!("{}/internal/v1/analytics", cp.url))
        .body("not json")
        .send()
        .await?;
    assert_eq!(r.status(), 401);

    // Retention: an event from 200 days ago goes; recent ones stay. Only a global admin may.
    let old = event("old", &api_id, now_ms() - 200 * 86_400_000, 200, 1);
    cp.client
        .post(format!("{}/internal/v1/analytics", cp.url))
        .bearer_auth(TOKEN)
        .json(&json!({"events": [old]}))
        .send()
        .await?;
    let editor = cp.token("ed", Role::Editor, &["*"]);
    let (status, _) =
        cp.send_as(Some(&editor), reqwest::Method::POST, "/api/v1/analytics/cleanup", None).await?;
    assert_eq!(status, 403);
    let (status, cleaned) = cp.post("/api/v1/analytics/cleanup", &json!(null)).await?;
    assert_eq!(
        (status, &cleaned["deleted"], &cleaned["retention_days"]),
        (200, &json!(1), &json!(90)),
        "{cleaned}"
    );
    let (_, after) = analytics("group_by=source").await?;
    assert_eq!(totals(&after), [("edge".into(), 5), ("native".into(), 15)].into(), "{after}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_on_sqlite() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let cp =
        ControlPlane::start_with(&ControlPlane::sqlite_url(&dir), None, Some(TOKEN.into())).await?;
    scenario(&cp).await?;
    cp.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_on_postgres() -> anyhow::Result<()> {
    let pg = Postgres::start()?;
    let cp = ControlPlane::start_with(&pg.fresh_database()?, None, Some(TOKEN.into())).await?;
    scenario(&cp).await?;
    cp.stop().await
}

/// `ANALYTICS_ENABLED=false`: nothing recorded, the edge's batches accepted and dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_can_be_turned_off() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let cp = ControlPlane::start_tuned(
        0,
        &ControlPlane::sqlite_url(&dir),
        None,
        Some(TOKEN.into()),
        |c| {
            c.analytics_enabled = false;
        },
    )
    .await?;
    let (_, api) = cp.post("/api/v1/workspaces/default/apis", &json!({"slug": "off"})).await?;
    let api_id = api["id"].as_str().unwrap().to_owned();
    reqwest::get(format!("{}/mock/off/x", cp.url)).await?;
    let r = cp
        .client
        .post(format!("{}/internal/v1/analytics", cp.url))
        .bearer_auth(TOKEN)
        .json(&json!({"events": [event("x1", &api_id, now_ms(), 200, 1)]}))
        .send()
        .await?;
    assert_eq!(r.json::<Value>().await?["disabled"], true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, answer) = cp.get("/api/v1/apis/off/analytics").await?;
    assert_eq!(answer["rows"], json!([]), "{answer}");
    cp.stop().await
}

/// Edge batches delivered concurrently that add to the same rollup rows (as the queue's
/// consumers do): every one is stored, none fails. On PostgreSQL they locked those rows in
/// whatever order a hash map gave, and a deadlock failed one of them with a 500 (found by
/// the ingest benchmark with four senders).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_on_the_same_rows_all_land_on_postgres() -> anyhow::Result<()> {
    let pg = Postgres::start()?;
    let cp = ControlPlane::start_with(&pg.fresh_database()?, None, Some(TOKEN.into())).await?;
    let (status, api) =
        cp.post("/api/v1/workspaces/default/apis", &json!({"slug": "shop"})).await?;
    assert_eq!(status, 201, "{api}");
    let api_id = api["id"].as_str().unwrap().to_owned();
    let at = now_ms() - 120_000;
    let client = reqwest::Client::new();
    let mut senders = Vec::new();
    for sender in 0..8 {
        let (client, url, api_id) =
            (client.clone(), format!("{}/internal/v1/analytics", cp.url), api_id.clone());
        senders.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for batch in 0..6 {
                // 100 events over the same 40 rows (2 minutes × 5 statuses × 4 latencies
                // land in the same buckets), in a different order in every batch.
                let events: Vec<Value> = (0..100)
                    .map(|i| {
                        let n = (i * 7 + batch * 13 + sender * 29) % 100;
                        let status = [200, 201, 404, 500, 503][n % 5];
                        event(
                            &format!("s{sender}-b{batch}-e{i}"),
                            &api_id,
                            at + i64::try_from(n % 2).unwrap() * 60_000,
                            status,
                            u32::try_from(n % 4).unwrap() * 10,
                        )
                    })
                    .collect();
                let r = client
                    .post(&url)
                    .bearer_auth(TOKEN)
                    .json(&json!({"events": events}))
                    .send()
                    .await
                    .unwrap();
                statuses.push(r.status().as_u16());
            }
            statuses
        }));
    }
    for sender in senders {
        assert!(sender.await?.iter().all(|s| *s == 200));
    }
    let query = format!(
        "/api/v1/apis/shop/analytics?from_ms={}&to_ms={}&bucket=day",
        at - 60_000,
        at + 180_000
    );
    let (status, answer) = cp.get(&query).await?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(totals(&answer).values().sum::<i64>(), 8 * 6 * 100, "{answer}");
    Ok(())
}
