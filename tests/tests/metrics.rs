//! `/metrics` after real traffic: admin requests, native mock requests and an edge analytics
//! batch (one event of it sent twice). The scrape must pass `promtool check metrics`
//! (Debian's `prometheus` package, installed by scripts/setup; `PROMTOOL` points elsewhere),
//! count what was sent (the redelivered event once), and hold no raw path and no label a
//! client made up.

use std::io::Write;
use std::process::{Command, Stdio};

use edgemock_e2e::ControlPlane;
use serde_json::{Value, json};
use tempfile::TempDir;

fn promtool(scrape: &str) -> anyhow::Result<String> {
    let bin = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".to_owned());
    let mut child = Command::new(&bin)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!("cannot run {bin} (run scripts/setup, or set PROMTOOL): {e}")
        })?;
    child.stdin.take().expect("stdin").write_all(scrape.as_bytes())?;
    let output = child.wait_with_output()?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    anyhow::ensure!(output.status.success(), "promtool check metrics failed:\n{said}");
    Ok(said)
}

/// The value of the series whose name and labels are exactly these (label order as the
/// text format writes them: sorted by name).
fn value(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

fn event(id: &str, status: u16) -> Value {
    json!({
        "id": id, "request_id": format!("req-{id}"), "timestamp_ms": 1_795_000_000_000_i64,
        "source": "edge", "workspace_id": "w1", "api_id": "a1", "api_slug": "shop",
        "protocol": "rest", "endpoint_method": "GET", "endpoint_pattern": "/items/:id",
        "method": "GET", "path": "/items/7", "status": status, "latency_ms": 12,
        "request_bytes": 0, "response_bytes": 120, "country": "DE", "city": "Berlin",
        "colo": "FRA", "proxied": false, "deduplicated": false, "cache": "bypass",
        "validation_failed": false, "near_miss": null, "snapshot_source": "kv"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_admin_native_and_edge_traffic() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let cp = ControlPlane::start_with(&ControlPlane::sqlite_url(&dir), None, Some("t0ken".into()))
        .await?;
    // Admin traffic: a 201, a 422, a 404 in a workspace nobody has.
    let (status, _) = cp.post("/api/v1/workspaces", &json!({"slug": "acme"})).await?;
    assert_eq!(status, 201);
    let (status, _) = cp.post("/api/v1/workspaces/acme/apis", &json!({"slug": "Bad Slug"})).await?;
    assert_eq!(status, 422);
    let (status, _) = cp.get("/api/v1/workspaces/guess-123/apis").await?;
    assert_eq!(status, 404);
    let (status, _) = cp.post("/api/v1/workspaces/acme/apis", &json!({"slug": "m"})).await?;
    assert_eq!(status, 201);
    let (status, _) = cp
        .post(
            "/api/v1/apis/m/endpoints",
            &json!({"method": "GET", "path": "/users/:id", "response": {"body": {"ok": true}}}),
        )
        .await?;
    assert_eq!(status, 201);
    // Native traffic: three hits, a miss inside the API, an unknown API.
    let client = reqwest::Client::new();
    for path in ["/mock/m/users/1", "/mock/m/users/2", "/mock/m/users/42", "/mock/m/nothing"] {
        client.get(format!("{}{path}", cp.url)).send().await?;
    }
    client.get(format!("{}/mock/made-up-api/x", cp.url)).send().await?;
    // Edge traffic, with one event delivered twice.
    let ingest = format!("{}/internal/v1/analytics", cp.url);
    let batch = json!({"events": [event("e1", 200), event("e2", 200), event("e3", 404)]});
    for _ in 0..2 {
        let r = client.post(&ingest).bearer_auth("t0ken").json(&batch).send().await?;
        assert_eq!(r.status(), 200);
    }

    let response = client.get(format!("{}/metrics", cp.url)).send().await?;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"].to_str()?.starts_with("text/plain; version=0.0.4"),
        "{:?}",
        response.headers()
    );
    let scrape = response.text().await?;
    promtool(&scrape)?;

    let expect = |series: &str, want: f64| {
        assert_eq!(value(&scrape, series), Some(want), "{series} in:\n{scrape}");
    };
    expect(
        r#"http_requests_total{method="POST",route="/api/v1/workspaces",status="201",workspace=""}"#,
        1.0,
    );
    expect(
        r#"http_requests_total{method="POST",route="/api/v1/workspaces/{workspace}/apis",status="201",workspace="acme"}"#,
        1.0,
    );
    // Failed requests carry no workspace: a guess does not become a label.
    expect(
        r#"http_requests_total{method="POST",route="/api/v1/workspaces/{workspace}/apis",status="422",workspace=""}"#,
        1.0,
    );
    expect(
        r#"http_requests_total{method="GET",route="/api/v1/workspaces/{workspace}/apis",status="404",workspace=""}"#,
        1.0,
    );
    expect(
        r#"mock_requests_total{api="m",endpoint="GET /users/:id",method="GET",runtime="native",status="200"}"#,
        3.0,
    );
    expect(
        r#"mock_requests_total{api="m",endpoint="-",method="GET",runtime="native",status="404"}"#,
        1.0,
    );
    expect(
        r#"mock_requests_total{api="-",endpoint="-",method="GET",runtime="native",status="404"}"#,
        1.0,
    );
    // The API was compiled once, on its first request.
    expect(r#"edgemock_engine_loads_total{source="database"}"#, 1.0);
    // The edge's events once each, the redelivered batch notwithstanding.
    expect(
        r#"mock_requests_total{api="shop",endpoint="GET /items/:id",method="GET",runtime="edge",status="200"}"#,
        2.0,
    );
    expect(
        r#"mock_response_duration_seconds_count{api="shop",endpoint="GET /items/:id",method="GET",runtime="edge",status="404"}"#,
        1.0,
    );
    // The first request of the API compiled it; the others were served from the cache.
    expect(r#"cache_misses_total{cache="engine"}"#, 2.0);
    expect(r#"cache_hits_total{cache="engine"}"#, 3.0);
    expect("db_pool_max_connections", 10.0);
    expect("edgemock_publish_failures_total", 0.0);
    // The edge's events are from 1_795_000_000_000 ms: days before any run of this test.
    assert!(value(&scrape, "edgemock_analytics_lag_seconds").is_some_and(|v| v > 86_400.0));
    expect(r#"http_requests_in_progress{method="GET",route="/metrics"}"#, 1.0);
    assert!(value(&scrape, "process_resident_memory_bytes").is_some_and(|v| v > 1e6));
    for raw in ["/users/42", "/mock/m/", "made-up-api", "guess-123", "/items/7"] {
        assert!(!scrape.contains(raw), "a raw path or made-up name in a label: {raw}");
    }
    cp.stop().await
}

/// Requests that find an API not compiled yet, all at once (a cold replica under load, or
/// every client right after a change): one of them compiles it, the others wait for that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_api_is_compiled_once_for_concurrent_requests() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let cp = ControlPlane::start(&ControlPlane::sqlite_url(&dir), None).await?;
    let (status, _) = cp.post("/api/v1/workspaces/default/apis", &json!({"slug": "cold"})).await?;
    assert_eq!(status, 201);
    // Enough endpoints that compiling takes a while: the requests overlap it.
    for i in 0..200 {
        let endpoint =
            json!({"method": "GET", "path": format!("/r{i}/:id"), "response": {"body": {"i": i}}});
        let (status, _) = cp.post("/api/v1/apis/cold/endpoints", &endpoint).await?;
        assert_eq!(status, 201);
    }
    let client = reqwest::Client::new();
    let requests = (0..64).map(|i| {
        let (client, url) = (client.clone(), format!("{}/mock/cold/r{}/x", cp.url, i % 200));
        tokio::spawn(async move { client.get(url).send().await.map(|r| r.status().as_u16()) })
    });
    for status in futures::future::join_all(requests).await {
        assert_eq!(status??, 200);
    }
    let scrape = client.get(format!("{}/metrics", cp.url)).send().await?.text().await?;
    assert_eq!(
        value(&scrape, r#"edgemock_engine_loads_total{source="database"}"#),
        Some(1.0),
        "{scrape}"
    );
    cp.stop().await
}

/// An API that is deleted takes its `mock_*` series with it (APIs that come and go, a CI
/// pipeline's, must not grow the registry without bound), on this thread's cached series
/// too: the same slug created again counts from zero, into series that are scraped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_api_takes_its_series_with_it() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let cp = ControlPlane::start(&ControlPlane::sqlite_url(&dir), None).await?;
    let client = reqwest::Client::new();
    let series = r#"mock_requests_total{api="gone",endpoint="GET /x",method="GET",runtime="native",status="200"}"#;
    let kept = r#"mock_requests_total{api="kept",endpoint="GET /x",method="GET",runtime="native",status="200"}"#;
    let scrape = || async {
        anyhow::Ok(client.get(format!("{}/metrics", cp.url)).send().await?.text().await?)
    };
    for round in 0..2 {
        for slug in ["gone", "kept"] {
            if round == 0 || slug == "gone" {
                let api = json!({"slug": slug});
                assert_eq!(cp.post("/api/v1/workspaces/default/apis", &api).await?.0, 201);
                let x = json!({"method": "GET", "path": "/x", "response": {"body": "x"}});
                assert_eq!(cp.post(&format!("/api/v1/apis/{slug}/endpoints"), &x).await?.0, 201);
            }
            for _ in 0..3 {
                let r = client.get(format!("{}/mock/{slug}/x", cp.url)).send().await?;
                assert_eq!(r.status(), 200);
            }
        }
        let before = scrape().await?;
        assert_eq!(value(&before, series), Some(3.0), "round {round}:\n{before}");
        assert_eq!(value(&before, kept), Some(3.0 * f64::from(round + 1)));
        assert_eq!(cp.delete("/api/v1/apis/gone").await?.0, 204);
        let after = scrape().await?;
        assert!(!after.contains(r#"api="gone""#), "round {round}:\n{after}");
        assert_eq!(value(&after, kept), Some(3.0 * f64::from(round + 1)), "{after}");
        promtool(&after)?;
    }
    cp.stop().await
}
