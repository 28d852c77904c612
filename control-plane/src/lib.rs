//! The edgemock control plane: the admin API over SQLite or PostgreSQL, and the publisher
//! that carries every change to the edge.
//!
//! Module map:
//! - [`analytics`] — the native runtime's tally, rollups, analytics queries, retention.
//! - [`auth`] — JWTs, API keys and roles: who may touch which workspace.
//! - [`cli`] — `edgemock apply | import | export`: mocks as code against a running server.
//! - [`config`] — settings from the environment, validated at start-up.
//! - [`db`] — the pool, migrations and every query.
//! - [`http`] — the axum router, one module per resource.
//! - [`metrics`] — Prometheus metrics at `/metrics`.
//! - [`openapi`] — OpenAPI 3.0/3.1 import (with generated examples) and export; pure.
//! - [`publish`] — snapshots to the edge, off the request path, with retries.
//! - [`rate_limit`] — per-workspace and per-client limits in one-minute windows.
//! - [`redis`] — the optional shared tier (`REDIS_URL`) and its fall back.
//! - [`runtime`] — the native runtime: mocks served by the control plane itself.
//! - [`server`] — the accept loop: HTTP/1.1 connections, upgrades, graceful shutdown.
//! - [`shards`] — per-thread copies of what every mock request counts, folded when read.
//! - [`error`] — the HTTP layer's error type.
//! - [`telemetry`] — logs, and OpenTelemetry traces over OTLP when configured.
//! - [`webhooks`] — events to subscribed URLs, from an outbox in the database, signed.
//!
//! [`Application::build`] binds the listener (port 0 picks a free one) and reports the port;
//! `main` and the tests start the server the same way. [`serve`] is what `edgemock serve`
//! runs once logging is up.

pub mod analytics;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod metrics;
pub mod openapi;
pub mod publish;
pub mod rate_limit;
pub mod redis;
pub mod runtime;
pub mod server;
pub mod shards;
pub mod telemetry;
pub mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

pub use config::Config;

use crate::publish::{EdgeSink, Publisher, SnapshotSink};

/// A control plane that is bound and ready to serve.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    service: http::Dispatch,
    publisher: Publisher,
    /// `None` when `WEBHOOKS_ENABLED=false`.
    deliverer: Option<webhooks::delivery::Deliverer>,
    addr: SocketAddr,
    /// Writes the native runtime's analytics tally; `None` with analytics off.
    analytics: Option<analytics::Flusher>,
    db: db::Db,
    retention_days: Option<u32>,
    /// With `REDIS_URL`: its watcher runs with the server.
    redis: Option<Arc<redis::Redis>>,
    changes: Arc<std::sync::atomic::AtomicU64>,
}

impl Application {
    /// Connects the database, applies migrations (or, with `DATABASE_MIGRATE=false`, waits
    /// for `edgemock migrate` to have applied them), builds the router and binds the port.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.check_jwt_secret()?;
        let db = db::open(&config.database_url, config.database_max_connections).await?;
        if config.database_migrate {
            for version in db::migrate(&db).await? {
                tracing::info!(version, "applied a database migration");
            }
        } else {
            wait_for_migrations(&db).await?;
        }
        if let Some(workspace) = db::ensure_default_workspace(&db).await? {
            tracing::info!(workspace = %workspace.slug, "created the default workspace");
        }
        let sink: Option<Arc<dyn SnapshotSink>> =
            match (&config.edge_url, &config.edge_publish_token) {
                (Some(url), Some(token)) => Some(Arc::new(EdgeSink::new(
                    url.clone(),
                    token.clone(),
                    config.publish_timeout,
                )?)),
                _ => None,
            };
        let outbox = webhooks::Outbox::new();
        let metrics = if config.metrics_enabled {
            Some(Arc::new(metrics::Metrics::new(config.database_max_connections)?))
        } else {
            None
        };
        let redis = match &config.redis_url {
            Some(url) => {
                if let Some(metrics) = &metrics {
                    metrics.register_redis()?;
                }
                let redis = redis::Redis::new(
                    url,
                    &config.redis_key_prefix,
                    config.redis_timeout,
                    metrics.clone(),
                )?;
                // Bounded; an unreachable Redis is logged and retried, never fatal.
                redis.connect().await;
                Some(redis)
            }
            None => None,
        };
        let publisher = Publisher::new(db.clone(), sink, outbox.clone())
            .with_failure_counter(metrics.as_ref().map(|m| m.publish_failures()))
            .with_announcer(redis.as_ref().map(|r| r.announcer()));
        let tally = config.analytics_enabled.then(analytics::Tally::default);
        let flusher = tally.clone().map(|t| analytics::Flusher::new(db.clone(), t));
        let proxy_policy = edgemock_shared::proxy::ProxyPolicy {
            allow_http: config.proxy_allow_http,
            allow_private: config.proxy_allow_private_networks,
        };
        let deliverer = if config.webhooks_enabled {
            Some(
                webhooks::delivery::Deliverer::new(
                    db.clone(),
                    outbox.clone(),
                    proxy_policy,
                    webhooks::delivery::Settings {
                        retries: config.webhook_retry_attempts,
                        retry_delay: config.webhook_retry_delay,
                        timeout: config.webhook_timeout,
                    },
                )?
                .with_metrics(metrics.clone()),
            )
        } else {
            tracing::warn!("WEBHOOKS_ENABLED=false: webhook deliveries are recorded but not sent");
            None
        };
        let runtime = runtime::Runtime::new(
            db.clone(),
            publisher.changes(),
            std::time::Duration::from_secs(config.mock_api_cache_ttl_seconds),
            std::time::Duration::from_secs(config.dedup_ttl_seconds),
            proxy_policy,
            config.proxy_default_timeout_ms,
        )?
        .with_metrics(metrics.clone())
        .with_redis(redis.clone());
        let changes = publisher.changes();
        let service = http::Dispatch::new(http::AppState::new(http::Shared {
            db: db.clone(),
            publisher: publisher.clone(),
            outbox,
            internal_token: config.edge_publish_token.as_deref().map(Arc::from),
            tokens: Arc::new(auth::Tokens::new(&config.jwt_secret)),
            runtime,
            metrics,
            tally,
            rate_limits: config.rate_limits,
            limiter: rate_limit::Limiter::shared(redis.clone()),
            redis: redis.clone(),
            analytics_retention_days: config.analytics_retention_days,
            cors_allowed_origins: config.cors_allowed_origins.clone(),
            request_timeout: std::time::Duration::from_millis(config.request_timeout_ms),
            started: std::time::Instant::now(),
            health_timeout: std::time::Duration::from_millis(config.health_check_timeout_ms),
            data_dir: sqlite_dir(&config.database_url),
            writes: config.database_url.starts_with("sqlite:").then(|| tokio::sync::Mutex::new(())),
        }));
        let listener = TcpListener::bind((config.host, config.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
        let addr = listener.local_addr()?;
        let retention_days = config.analytics_enabled.then_some(config.analytics_retention_days);
        Ok(Self {
            listener,
            service,
            publisher,
            deliverer,
            addr,
            analytics: flusher,
            db,
            retention_days,
            redis,
            changes,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Serves until SIGTERM or Ctrl-C, then lets in-flight requests finish.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish and closes
    /// idle connections. The publisher stops with the server; the webhook delivery loop
    /// claims nothing more and lets its attempts in flight finish (each is bounded by
    /// `WEBHOOK_TIMEOUT_MS`) and record themselves.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(addr = %self.addr, "control plane listening");
        let publisher = tokio::spawn(self.publisher.run());
        let redis = self.redis.map(|r| AbortOnDrop(tokio::spawn(r.watch(self.changes))));
        let cleanup = self
            .retention_days
            .map(|days| tokio::spawn(analytics::cleanup_daily(self.db.clone(), days)));
        let (stop_delivering, stop) = tokio::sync::watch::channel(false);
        let flusher = self.analytics.map(|f| tokio::spawn(f.run(stop.clone())));
        // Aborted if this future is dropped instead of finishing (the caller gave up).
        let mut deliverer = self.deliverer.map(|d| AbortOnDrop(tokio::spawn(d.run(stop))));
        server::serve(self.listener, self.service, shutdown).await;
        publisher.abort();
        drop(redis);
        if let Some(cleanup) = cleanup {
            cleanup.abort();
        }
        // Attempts in flight finish and record themselves (each bounded by its timeout)
        // while the analytics tally, complete now that no request is in flight, is written.
        let _ = stop_delivering.send(true);
        if let Some(flusher) = flusher
            && tokio::time::timeout(std::time::Duration::from_secs(10), flusher).await.is_err()
        {
            tracing::warn!("analytics: the last second's tally was not written at shutdown");
        }
        if let Some(AbortOnDrop(task)) = &mut deliverer
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "the webhook delivery loop failed");
        }
        Ok(())
    }
}

/// `edgemock serve`, once [`telemetry::start`] has run: builds the application, serves until
/// SIGTERM or Ctrl-C, then sends the spans still queued (within [`telemetry::FLUSH_TIMEOUT`]),
/// whether serving succeeded or not.
pub async fn serve(config: Config, telemetry: telemetry::Telemetry) -> anyhow::Result<()> {
    let served = match Application::build(config).await {
        Ok(app) => app.run_until_stopped().await,
        Err(e) => Err(e),
    };
    telemetry.shutdown().await;
    served
}

/// A task that is aborted when its handle is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Polls until every migration this build knows is applied. Bounded by whoever runs us: in
/// Kubernetes the startup probe restarts a container that waits too long.
async fn wait_for_migrations(db: &db::Db) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut told = None::<std::time::Instant>;
    loop {
        let pending = db::pending_migrations(db).await?;
        if pending.is_empty() {
            return Ok(());
        }
        if told.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(10)) {
            tracing::warn!(
                ?pending,
                waited_s = started.elapsed().as_secs(),
                "DATABASE_MIGRATE=false and migrations are pending: waiting for `edgemock migrate`"
            );
            told = Some(std::time::Instant::now());
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}

/// The directory of a SQLite database file (`sqlite://data/edgemock.db?mode=rwc` →
/// `data`); `None` for PostgreSQL and in-memory databases.
fn sqlite_dir(url: &str) -> Option<std::path::PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path.contains(":memory:") {
        return None;
    }
    let dir = std::path::Path::new(path).parent().map(std::path::Path::to_path_buf)?;
    Some(if dir.as_os_str().is_empty() { std::path::PathBuf::from(".") } else { dir })
}
