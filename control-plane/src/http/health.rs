//! Health probes for Kubernetes, and `/metrics`:
//! - `/health/live`: the process answers (restart it if not);
//! - `/health/ready`: the database answers within `HEALTH_CHECK_TIMEOUT` (send traffic);
//!   with `REDIS_URL`, it also says whether Redis is in use (`"redis": "ok"` or `"down"`),
//!   but a Redis that is down does not make it unready: every replica falls back to its own
//!   counts and the database, and taking them all out of service for it would turn a slower
//!   or less exact service into none;
//! - `/health/startup`: every migration this binary knows is applied (it has started);
//! - `/health`: all of it with response times (Redis with a write of its own), plus
//!   version, uptime, memory and, on SQLite, free disk space where the database lives. For
//!   people and dashboards; 503 when not ready, `"status": "degraded"` (200) when only Redis
//!   is down.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(details))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/health/startup", get(startup))
        .route("/metrics", get(metrics))
}

async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// One dependency's check: `ok`, `error` or `timeout`, and how long it took.
struct Check {
    status: &'static str,
    took: Duration,
}

impl Check {
    fn ok(&self) -> bool {
        self.status == "ok"
    }

    fn json(&self) -> Value {
        json!({ "status": self.status, "response_time_ms": self.took.as_secs_f64() * 1000.0 })
    }
}

async fn database(state: &AppState) -> Check {
    let started = Instant::now();
    let check = tokio::time::timeout(
        state.health_timeout,
        sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.db),
    )
    .await;
    let status = match check {
        Ok(Ok(_)) => "ok",
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health: database check failed");
            "error"
        }
        Err(_) => "timeout",
    };
    Check { status, took: started.elapsed() }
}

/// A write to Redis (as the watcher checks it) within `HEALTH_CHECK_TIMEOUT`; `None` without
/// `REDIS_URL`.
async fn redis(state: &AppState) -> Option<Check> {
    let redis = state.redis.as_ref()?;
    let started = Instant::now();
    let status = match redis.probe(state.health_timeout).await {
        Ok(_) => "ok",
        Err(e) if e.starts_with("no answer") => "timeout",
        Err(e) => {
            tracing::debug!(error = %e, "health: Redis check failed");
            "error"
        }
    };
    Some(Check { status, took: started.elapsed() })
}

/// Whether every migration of this binary is recorded as applied.
async fn migrations(state: &AppState) -> (Check, usize, usize) {
    let started = Instant::now();
    let known = crate::db::MIGRATOR.iter().filter(|m| m.migration_type.is_up_migration()).count();
    let applied = tokio::time::timeout(
        state.health_timeout,
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = TRUE")
            .fetch_one(&state.db),
    )
    .await;
    let (status, applied) = match applied {
        Ok(Ok(n)) => {
            let n = usize::try_from(n).unwrap_or_default();
            (if n >= known { "ok" } else { "pending" }, n)
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health: migrations check failed");
            ("error", 0)
        }
        Err(_) => ("timeout", 0),
    };
    (Check { status, took: started.elapsed() }, applied, known)
}

fn verdict(ok: bool, body: Value) -> (StatusCode, Json<Value>) {
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body))
}

async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let db = database(&state).await;
    let status = if db.ok() { "ok" } else { "unavailable" };
    let mut body = json!({ "status": status, "database": db.status });
    // What requests do now (the watcher's view), not a call of its own: a probe never waits
    // on Redis.
    if let Some(redis) = &state.redis {
        body["redis"] = json!(if redis.is_up() { "ok" } else { "down" });
    }
    verdict(db.ok(), body)
}

async fn startup(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let (check, applied, known) = migrations(&state).await;
    let status = if check.ok() { "ok" } else { "starting" };
    verdict(
        check.ok(),
        json!({ "status": status, "migrations": { "applied": applied, "known": known } }),
    )
}

async fn details(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let (db, (migrated, applied, known), redis) =
        tokio::join!(database(&state), migrations(&state), redis(&state));
    let ok = db.ok() && migrated.ok();
    let mut migrations = migrated.json();
    migrations["applied"] = json!(applied);
    migrations["known"] = json!(known);
    let mut checks = json!({ "database": db.json(), "migrations": migrations });
    let status = match &redis {
        _ if !ok => "unavailable",
        Some(redis) if !redis.ok() => "degraded",
        _ => "ok",
    };
    if let Some(redis) = &redis {
        checks["redis"] = redis.json();
    }
    verdict(
        ok,
        json!({
            "status": status,
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": state.started.elapsed().as_secs(),
            "checks": checks,
            "memory": { "resident_bytes": resident_bytes() },
            "disk": state.data_dir.as_deref().map(disk),
        }),
    )
}

/// This process's resident memory (Linux `/proc`; `null` elsewhere).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Free space where the SQLite database lives.
fn disk(dir: &std::path::Path) -> Value {
    match rustix::fs::statvfs(dir) {
        Ok(s) => json!({
            "path": dir.display().to_string(),
            "available_bytes": s.f_bavail.saturating_mul(s.f_frsize),
            "total_bytes": s.f_blocks.saturating_mul(s.f_frsize),
        }),
        Err(e) => json!({ "path": dir.display().to_string(), "error": e.to_string() }),
    }
}

/// Prometheus' text format; a 404 with `METRICS_ENABLED=false`.
async fn metrics(State(state): State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    use futures_util::StreamExt as _;
    match &state.metrics {
        Some(metrics) => {
            // Milliseconds of CPU with a few hundred endpoints' series: not on the workers
            // that answer mocks (a scrape there stalled their requests for as long). The
            // text goes out in chunks as it is encoded, so a scrape's megabyte of text is
            // never held whole (the allocator kept such buffers for the next scrape).
            let (metrics, db, tally) = (metrics.clone(), state.db.clone(), state.tally.clone());
            let (sender, mut chunks) = tokio::sync::mpsc::channel(2);
            tokio::task::spawn_blocking(move || {
                let mut out = Chunks { sender, buffer: Vec::new() };
                let rendered = metrics
                    .render_to(&db, tally.as_ref(), &mut out)
                    .and_then(|()| std::io::Write::flush(&mut out).map_err(Into::into));
                // A scraper that hung up is no error of ours.
                if let Err(e) = rendered
                    && !out.sender.is_closed()
                {
                    tracing::error!(error = %e, "cannot encode the metrics");
                }
            });
            // The figures are read before the first chunk: while this request still counts
            // as in progress, as when the text was rendered whole.
            let first = chunks.recv().await;
            let rest = futures_util::stream::unfold(chunks, |mut chunks| async move {
                chunks.recv().await.map(|chunk| (chunk, chunks))
            });
            let body = futures_util::stream::iter(first).chain(rest).map(Ok::<_, std::io::Error>);
            (
                [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                axum::body::Body::from_stream(body),
            )
                .into_response()
        }
        None => crate::error::ApiError::NotFound("route".to_owned()).into_response(),
    }
}

/// The metrics text in chunks of [`Chunks::SIZE`], to the response as they fill.
struct Chunks {
    sender: tokio::sync::mpsc::Sender<bytes::Bytes>,
    buffer: Vec<u8>,
}

impl Chunks {
    const SIZE: usize = 64 * 1024;

    fn send(&mut self) -> std::io::Result<()> {
        let chunk =
            bytes::Bytes::from(std::mem::replace(&mut self.buffer, Vec::with_capacity(Self::SIZE)));
        self.sender.blocking_send(chunk).map_err(|_| std::io::ErrorKind::BrokenPipe.into())
    }
}

impl std::io::Write for Chunks {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= Self::SIZE {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() { Ok(()) } else { self.send() }
    }
}
