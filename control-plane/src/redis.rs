//! Redis, the optional shared tier (`REDIS_URL`): rate-limit windows counted across replicas
//! ([`crate::rate_limit`]), compiled snapshots shared between replicas ([`crate::runtime`],
//! the internal snapshot route) and change announcements, so a write through one replica
//! reaches the others' caches at once instead of after `MOCK_API_CACHE_TTL_SECONDS`.
//!
//! Redis is an accelerator, never a dependency: every caller has an answer without it (the
//! per-process counts, the database), so
//! - an unreachable Redis at start-up is logged and the process starts anyway;
//! - every call on a request's path is bounded by `REDIS_TIMEOUT_MS`; a call that fails or
//!   times out marks Redis down, and then requests skip it altogether (no timeout paid per
//!   request) until the background check ([`Redis::watch`], a write every
//!   [`CHECK_EVERY`]) gets two answers in a row again;
//! - the fall back and the recovery are logged once each, and counted
//!   (`edgemock_redis_up`, `edgemock_redis_errors_total{operation}`).
//!
//! Every key starts with `REDIS_KEY_PREFIX` (`edgemock:`), so deployments can share a Redis.
//! Keys hold no secret: clients are named by a hash of their credential, workspaces and APIs
//! by id, slug and version.
//!
//! The connection is redis-rs's `ConnectionManager` (one multiplexed connection, reconnected
//! when it drops), created lazily; the change announcements use a subscription of their own,
//! which the watcher renews.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use anyhow::{Context, bail};
use futures_util::StreamExt;
use tokio::sync::Notify;

/// How often the watcher checks Redis, up or down.
pub const CHECK_EVERY: Duration = Duration::from_millis(500);
/// How long a (re)connection may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Answered checks in a row after which Redis is used again.
const RECOVER_AFTER: u32 = 2;
/// Failed checks in a row after which the connection is built anew (a connection that failed
/// for a reason other than I/O, such as a refused password, is not retried by redis-rs).
const REBUILD_AFTER: u32 = 10;

/// Checks `REDIS_URL` without connecting: `redis://` or `rediss://` (TLS), with a host.
pub fn check_url(url: &str) -> anyhow::Result<()> {
    let shown = crate::config::redact_url(url);
    let parsed =
        reqwest::Url::parse(url).with_context(|| format!("REDIS_URL={shown:?} is not a URL"))?;
    if !matches!(parsed.scheme(), "redis" | "rediss") {
        bail!("REDIS_URL={shown:?} must start with redis:// or rediss:// (TLS)");
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        bail!("REDIS_URL={shown:?} names no host");
    }
    ::redis::Client::open(url)
        .map(drop)
        .map_err(|e| anyhow::anyhow!("REDIS_URL={shown:?} is not valid: {e}"))
}

/// `REDIS_KEY_PREFIX`: printable, no spaces, at most 64 bytes.
pub fn check_prefix(prefix: &str) -> anyhow::Result<()> {
    if prefix.len() > 64 || prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("REDIS_KEY_PREFIX={prefix:?} must be at most 64 printable characters without spaces");
    }
    Ok(())
}

/// The connection and whether it is usable now.
pub struct Redis {
    client: ::redis::Client,
    manager: std::sync::RwLock<ConnectionManager>,
    prefix: String,
    timeout: Duration,
    up: AtomicBool,
    /// Wakes the subscription when Redis is found down, so it is renewed (a connection cut
    /// without a reset would otherwise wait forever).
    lost: Notify,
    /// Rung by the publisher on every committed change (see [`Redis::announcer`]).
    announce: Arc<Notify>,
    /// Names this process in its announcements, so it skips its own.
    instance: String,
    /// Where it is, for logs (password redacted).
    shown: String,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("url", &self.shown)
            .field("prefix", &self.prefix)
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// A client for `url` (checked by [`check_url`]); connects nothing yet.
    pub fn new(
        url: &str,
        prefix: &str,
        timeout: Duration,
        metrics: Option<Arc<crate::metrics::Metrics>>,
    ) -> anyhow::Result<Arc<Self>> {
        check_url(url)?;
        let client = ::redis::Client::open(url)?;
        let manager = Self::manager(&client, timeout)?;
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        if let Some(metrics) = &metrics {
            metrics.redis_up(false);
        }
        Ok(Arc::new(Self {
            client,
            manager: std::sync::RwLock::new(manager),
            prefix: prefix.to_owned(),
            timeout,
            up: AtomicBool::new(false),
            lost: Notify::new(),
            announce: Arc::new(Notify::new()),
            instance: hex::encode(random),
            shown: crate::config::redact_url(url),
            metrics,
        }))
    }

    fn manager(client: &::redis::Client, timeout: Duration) -> anyhow::Result<ConnectionManager> {
        // No retries inside redis-rs: the watcher retries, and requests never wait for it.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(timeout.max(CONNECT_TIMEOUT)));
        Ok(ConnectionManager::new_lazy_with_config(client.clone(), config)?)
    }

    /// The first check, at start-up: up, or down with a warning (and the watcher retries).
    pub async fn connect(&self) {
        match self.probe(CONNECT_TIMEOUT).await {
            Ok(took) => {
                self.set_up(true);
                tracing::info!(redis = %self.shown, took_ms = took.as_millis(), "Redis connected");
            }
            Err(e) => tracing::warn!(
                redis = %self.shown,
                error = %e,
                "Redis is unreachable: rate limits count per process and snapshots come from \
                 the database until it answers (retrying in the background)"
            ),
        }
    }

    /// Whether requests use Redis now. A relaxed load: a request that misses a change of
    /// state by a moment only falls back, or pays one bounded call.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// `REDIS_KEY_PREFIX`, which starts every key.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `MOCK_API_CACHE_TTL_SECONDS`-style expiry in milliseconds for `SET … PX`.
    fn millis(ttl: Duration) -> u64 {
        u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
    }

    fn connection(&self) -> ConnectionManager {
        self.manager.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
        if let Some(metrics) = &self.metrics {
            metrics.redis_up(up);
        }
    }

    fn count_error(&self, operation: &'static str) {
        if let Some(metrics) = &self.metrics {
            metrics.redis_error(operation);
        }
    }

    /// A call on a request's path failed or timed out: count it, and if Redis was up, mark
    /// it down (logged once; the watcher logs the recovery).
    fn failed(&self, operation: &'static str, error: &dyn std::fmt::Display) {
        self.count_error(operation);
        if self.up.swap(false, Ordering::Relaxed) {
            if let Some(metrics) = &self.metrics {
                metrics.redis_up(false);
            }
            self.lost.notify_one();
            tracing::warn!(
                redis = %self.shown,
                operation,
                error = %error,
                "Redis failed: falling back to per-process rate limits and the database until \
                 it answers again"
            );
        }
    }

    /// Runs `call` if Redis is up, within `REDIS_TIMEOUT_MS`; `None` when it is down, fails or
    /// is too slow (then it is marked down).
    async fn call<T, F>(&self, operation: &'static str, call: F) -> Option<T>
    where
        F: std::future::Future<Output = ::redis::RedisResult<T>>,
    {
        if !self.is_up() {
            return None;
        }
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(e)) => {
                self.failed(operation, &e);
                None
            }
            Err(_) => {
                self.failed(operation, &format_args!("no answer within {:?}", self.timeout));
                None
            }
        }
    }

    /// Adds one to the counter `key` (under the prefix) and returns its new value; the key
    /// expires `ttl` after its last increment. One round trip.
    pub async fn increment(&self, key: &str, ttl: Duration) -> Option<i64> {
        if !self.is_up() {
            return None;
        }
        let mut connection = self.connection();
        let mut pipe = ::redis::pipe();
        pipe.cmd("INCR").arg(key).cmd("PEXPIRE").arg(key).arg(Self::millis(ttl)).ignore();
        let (count,): (i64,) = self.call("rate_limit", pipe.query_async(&mut connection)).await?;
        Some(count)
    }

    /// The value of `key`; `Some(None)` when there is none.
    pub async fn get(&self, key: &str) -> Option<Option<Vec<u8>>> {
        if !self.is_up() {
            return None;
        }
        let mut connection = self.connection();
        let mut get = ::redis::cmd("GET");
        get.arg(key);
        self.call("cache_get", get.query_async(&mut connection)).await
    }

    /// Stores `value` under `key` for `ttl`.
    pub async fn set(&self, key: &str, value: &[u8], ttl: Duration) {
        if !self.is_up() {
            return;
        }
        let mut connection = self.connection();
        let mut set = ::redis::cmd("SET");
        set.arg(key).arg(value).arg("PX").arg(Self::millis(ttl));
        let _: Option<()> = self.call("cache_set", set.exec_async(&mut connection)).await;
    }

    /// A write within `timeout`, whatever the state: for the watcher and `/health`. A write,
    /// not a `PING`, because requests write: a Redis that answers but refuses writes (out of
    /// memory under `noeviction`, a read-only replica) must count as down, or requests would
    /// find it failing again after every check.
    pub async fn probe(&self, timeout: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        let mut connection = self.connection();
        let mut check = ::redis::cmd("SET");
        check.arg(format!("{}check", self.prefix)).arg(1).arg("PX").arg(10_000);
        match tokio::time::timeout(timeout, check.exec_async(&mut connection)).await {
            Ok(Ok(())) => Ok(started.elapsed()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    }

    /// What the publisher rings after every committed change: the watcher announces it to
    /// the other replicas.
    pub fn announcer(&self) -> Arc<Notify> {
        self.announce.clone()
    }

    fn channel(&self) -> String {
        format!("{}changes", self.prefix)
    }

    /// The background work, until the task is aborted: checks Redis every [`CHECK_EVERY`]
    /// (marks it up or down), announces this process's changes, and bumps `changes` (the
    /// native runtime's cache generation) when another replica announces one, or when
    /// announcements may have been missed (the subscription was renewed).
    pub async fn watch(self: Arc<Self>, changes: Arc<AtomicU64>) {
        tokio::join!(self.check(), self.announce_changes(), self.subscribe(changes));
    }

    async fn check(&self) {
        let (mut failures, mut answers) = (0u32, 0u32);
        loop {
            tokio::time::sleep(CHECK_EVERY).await;
            match self.probe(self.timeout.max(Duration::from_millis(10))).await {
                Ok(_) => {
                    failures = 0;
                    answers = answers.saturating_add(1);
                    // Two answers in a row: a Redis at the edge of REDIS_TIMEOUT_MS goes down
                    // and up at most once a second, not on every check.
                    if !self.is_up() && answers >= RECOVER_AFTER {
                        self.set_up(true);
                        // Changes made while it was down were not announced.
                        self.announce.notify_one();
                        tracing::info!(
                            redis = %self.shown,
                            "Redis answers again: rate limits and snapshots are shared again"
                        );
                    }
                }
                Err(e) => {
                    self.failed("check", &e);
                    answers = 0;
                    failures += 1;
                    if failures.is_multiple_of(REBUILD_AFTER) {
                        match Self::manager(&self.client, self.timeout) {
                            Ok(manager) => {
                                *self
                                    .manager
                                    .write()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner) = manager;
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "cannot rebuild the Redis client")
                            }
                        }
                    }
                }
            }
        }
    }

    async fn announce_changes(&self) {
        let channel = self.channel();
        loop {
            self.announce.notified().await;
            if !self.is_up() {
                // Announced on recovery instead (see `check`).
                continue;
            }
            let mut connection = self.connection();
            let mut publish = ::redis::cmd("PUBLISH");
            publish.arg(&channel).arg(&self.instance);
            let _: Option<()> = self.call("publish", publish.exec_async(&mut connection)).await;
        }
    }

    async fn subscribe(&self, changes: Arc<AtomicU64>) {
        let channel = self.channel();
        loop {
            let subscribed = async {
                let mut pubsub = self.client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                ::redis::RedisResult::Ok(pubsub)
            };
            match tokio::time::timeout(CONNECT_TIMEOUT, subscribed).await {
                Ok(Ok(pubsub)) => {
                    // Whatever was announced while not subscribed is unknown: check everything.
                    changes.fetch_add(1, Ordering::Release);
                    let mut messages = std::pin::pin!(pubsub.into_on_message());
                    loop {
                        tokio::select! {
                            message = messages.next() => match message {
                                Some(m) if m.get_payload_bytes() == self.instance.as_bytes() => {}
                                Some(_) => {
                                    changes.fetch_add(1, Ordering::Release);
                                }
                                None => break,
                            },
                            () = self.lost.notified() => break,
                        }
                    }
                    changes.fetch_add(1, Ordering::Release);
                }
                // Down is counted by the checks; a refusal while up is a problem of its own
                // (a user without the right to subscribe, say).
                Ok(Err(_)) | Err(_) if self.is_up() => self.count_error("subscribe"),
                Ok(Err(_)) | Err(_) => {}
            }
            tokio::time::sleep(CHECK_EVERY).await;
        }
    }
}
