//! The health probes on SQLite and PostgreSQL, and while the database is down: liveness
//! stays up, readiness and `/health` go to 503 within `HEALTH_CHECK_TIMEOUT`.

use std::time::{Duration, Instant};

use edgemock_e2e::{ControlPlane, Postgres};
use serde_json::Value;
use tempfile::TempDir;

async fn get(cp: &ControlPlane, path: &str) -> anyhow::Result<(u16, Value)> {
    let r = reqwest::Client::new().get(format!("{}{path}", cp.url)).send().await?;
    Ok((r.status().as_u16(), r.json().await?))
}

async fn healthy(cp: &ControlPlane, sqlite: bool) -> anyhow::Result<()> {
    for path in ["/health/live", "/health/ready", "/health/startup"] {
        let (status, body) = get(cp, path).await?;
        assert_eq!((status, body["status"].as_str()), (200, Some("ok")), "{path}: {body}");
    }
    let (status, body) = get(cp, "/health").await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["database"]["status"], "ok", "{body}");
    assert!(body["checks"]["database"]["response_time_ms"].as_f64().is_some(), "{body}");
    let migrations = &body["checks"]["migrations"];
    assert_eq!(migrations["status"], "ok", "{body}");
    assert!(migrations["known"].as_u64() >= Some(3), "{body}");
    assert_eq!(migrations["applied"], migrations["known"], "{body}");
    assert!(body["memory"]["resident_bytes"].as_u64() > Some(1_000_000), "{body}");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    if sqlite {
        assert!(body["disk"]["available_bytes"].as_u64() > Some(0), "{body}");
    } else {
        assert!(body["disk"].is_null(), "{body}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_on_sqlite() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let cp = ControlPlane::start(&ControlPlane::sqlite_url(&dir), None).await?;
    healthy(&cp, true).await?;
    cp.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_on_postgres_and_while_it_is_down() -> anyhow::Result<()> {
    let pg = Postgres::start()?;
    let cp = ControlPlane::start(&pg.fresh_database()?, None).await?;
    healthy(&cp, false).await?;
    drop(pg); // stops the server
    let started = Instant::now();
    let (status, body) = get(&cp, "/health/ready").await?;
    assert_eq!((status, body["status"].as_str()), (503, Some("unavailable")), "{body}");
    // The default HEALTH_CHECK_TIMEOUT (5 s) bounds the wait.
    assert!(started.elapsed() < Duration::from_secs(7), "{:?}", started.elapsed());
    let (status, body) = get(&cp, "/health").await?;
    assert_eq!(status, 503, "{body}");
    assert_ne!(body["checks"]["database"]["status"], "ok", "{body}");
    let (status, _) = get(&cp, "/health/live").await?;
    assert_eq!(status, 200);
    cp.stop().await
}
