//! The native runtime: the control plane serves `/mock/{apiSlug}/…`,
//! `/mock-graphql/{apiSlug}` and `/ws/{apiSlug}/…` itself, with the engine the edge runs, for
//! teams that run only in Kubernetes or in air-gapped CI.
//!
//! Compiled APIs are kept in memory per slug. An entry is trusted until this process commits
//! a change (every admin write wakes the publisher, which bumps [`Runtime`]'s generation) or
//! for `MOCK_API_CACHE_TTL_SECONDS` (changes made through other replicas); then the API's
//! version is read again and the engine recompiled only if it changed.
//!
//! With `REDIS_URL` there is a tier between memory and the database: the snapshot JSON under
//! `{prefix}snapshot:{format}:{slug}:{version}`, kept for `MOCK_API_CACHE_TTL_SECONDS`.
//! Invariant: a snapshot from Redis is used only when its version is the one the database
//! holds now (read just before, as without Redis), so Redis can save a build but never make
//! an answer older; a slow reader that writes an old version back writes it under the old
//! version's key, which no current reader asks for. Changes made through other replicas
//! arrive as announcements ([`crate::redis`]) that bump the generation, so they are served
//! at once rather than after the TTL (which stays the bound while Redis is down).
//!
//! Each thread that answers requests keeps a copy of the entries it used ([`Near`]), valid
//! for the generation it was made in and until the entry's own TTL: a request finds its
//! API without the shared lock, and holds it through a reference count that only its
//! thread writes ([`EngineRef`]).
//!
//! What the edge does around the engine, this does too: delays, proxying under the same
//! policy (`PROXY_ALLOW_HTTP`, `PROXY_ALLOW_PRIVATE_NETWORKS`), deduplication
//! (`DEDUP_TTL_SECONDS`, in this process's memory where the edge uses a location's cache),
//! `x-request-id`, the request id in edgemock's own errors, an empty 502 for
//! `connection_close` faults.

use foldhash::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use edgemock_shared::proxy::{
    ProxyPolicy, check_target, forward_request_header, pass_response_header,
};
use edgemock_shared::{Engine, MockResponse, Outcome, ProxyDirective};
use std::sync::RwLock;

use crate::db::{self, Db};

/// Most APIs kept compiled; the least recently loaded goes first.
const MAX_CACHED_APIS: usize = 1024;

/// Most deduplicated answers kept, and the largest body kept: replays must not grow the
/// process without bound.
const MAX_DEDUP_ENTRIES: usize = 4096;
const MAX_DEDUP_BODY_BYTES: usize = 256 * 1024;

/// Longest proxy timeout an endpoint may ask for (as at the edge).
pub const MAX_PROXY_TIMEOUT_MS: u32 = 30_000;

/// A request's hold on a compiled API ([`Runtime::engine`]).
///
/// A clone of its thread's own reference to the engine ([`Near`]): the count a request
/// increments and decrements is on a cache line only that thread writes. Clones of the one
/// `Arc<Engine>` would move its count between cores twice per request, and every core
/// answering the API would wait for it.
#[derive(Debug, Clone)]
// The extra allocation is the point: the outer count is this thread's own.
#[allow(clippy::redundant_allocation)]
pub struct EngineRef(Arc<Arc<Engine>>);

impl EngineRef {
    fn new(engine: Arc<Engine>) -> Self {
        Self(Arc::new(engine))
    }
}

impl std::ops::Deref for EngineRef {
    type Target = Engine;

    fn deref(&self) -> &Engine {
        &self.0
    }
}

/// Most entries a thread keeps in its [`Near`] copy; past that it starts again.
const MAX_NEAR: usize = 64;

/// A thread's copy of the [`Runtime`] cache entries it used, with the thread's own
/// [`EngineRef`]s: a request reads it without a lock (the shared cache's read lock is two
/// atomic writes to one line that every core takes, per request).
///
/// It holds the entries of one runtime (a process has one; tests may have several, which
/// then take turns) in one generation: a lookup in another generation empties it, so an
/// API changed or deleted through this process is never served from it. An entry keeps
/// the shared entry's load time, so it expires with it (and goes when a lookup finds it
/// expired). A thread that stops answering keeps at most [`MAX_NEAR`] engines alive until
/// its next lookup, beyond the shared cache's.
#[derive(Default)]
struct Near {
    runtime: u64,
    generation: u64,
    entries: HashMap<String, (Option<EngineRef>, Instant)>,
}

impl Near {
    /// Empties the copy unless it is `runtime`'s in `generation`.
    fn align(&mut self, runtime: u64, generation: u64) {
        if (self.runtime, self.generation) != (runtime, generation) {
            self.entries.clear();
            (self.runtime, self.generation) = (runtime, generation);
        }
    }
}

thread_local! {
    static NEAR: std::cell::RefCell<Near> = std::cell::RefCell::default();
}

struct Cached {
    engine: Option<Arc<Engine>>,
    version: i64,
    generation: u64,
    loaded_at: Instant,
}

type Gates = std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>;

/// A turn at loading one slug ([`Runtime::engine`]); the last holder removes the slug's
/// gate, also when its request is dropped while it waits.
struct Gate<'a> {
    gates: &'a Gates,
    slug: &'a str,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl<'a> Gate<'a> {
    fn enter(gates: &'a Gates, slug: &'a str) -> Self {
        let mut map = gates.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let lock = map.entry(slug.to_owned()).or_default().clone();
        Self { gates, slug, lock }
    }
}

impl Drop for Gate<'_> {
    fn drop(&mut self) {
        let mut map = self.gates.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // The map's reference and ours: nobody else waits.
        if Arc::strong_count(&self.lock) == 2 {
            map.remove(self.slug);
        }
    }
}

/// First answers of deduplicating endpoints, by API slug and the engine's dedup key.
#[derive(Default)]
struct Replays {
    answers: HashMap<String, (Instant, MockResponse)>,
}

/// The compiled-API cache and what serving needs.
#[derive(Clone)]
pub struct Runtime {
    /// This cache's number, as [`Near`] copies name it (clones share the cache and the id).
    id: u64,
    db: Db,
    cache: Arc<RwLock<HashMap<String, Cached>>>,
    /// A gate per slug being loaded: see [`Runtime::engine`].
    loading: Arc<Gates>,
    generation: Arc<AtomicU64>,
    ttl: Duration,
    dedup_ttl: Duration,
    replays: Arc<std::sync::Mutex<Replays>>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
    /// With `REDIS_URL`: snapshots shared between replicas.
    redis: Option<Arc<crate::redis::Redis>>,
    pub proxy_policy: ProxyPolicy,
    pub proxy_default_timeout_ms: u32,
    http: reqwest::Client,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

/// Why an API could not be served.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0:#}")]
    Unreadable(anyhow::Error),
}

impl Runtime {
    pub fn new(
        db: Db,
        generation: Arc<AtomicU64>,
        ttl: Duration,
        dedup_ttl: Duration,
        proxy_policy: ProxyPolicy,
        proxy_default_timeout_ms: u32,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            // Redirects go back to the client, as at the edge: following them would carry
            // forwarded credentials to a host the policy never checked.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        static IDS: AtomicU64 = AtomicU64::new(1);
        Ok(Self {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            db,
            cache: Arc::default(),
            loading: Arc::default(),
            generation,
            ttl,
            dedup_ttl,
            replays: Arc::default(),
            metrics: None,
            redis: None,
            proxy_policy,
            proxy_default_timeout_ms,
            http,
        })
    }

    /// Counts the compiled-API cache's hits and misses (`cache="engine"`).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Option<Arc<crate::metrics::Metrics>>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Shares snapshots through `redis` (a tier between memory and the database).
    #[must_use]
    pub fn with_redis(mut self, redis: Option<Arc<crate::redis::Redis>>) -> Self {
        // `SET … PX 0` is refused; a TTL of 0 caches nothing anyway.
        self.redis = redis.filter(|_| !self.ttl.is_zero());
        self
    }

    /// The first answer to a request identical to this one (the engine's `key`) within
    /// `DEDUP_TTL_SECONDS`, marked `x-mock-deduplicated: true`.
    pub fn replay(&self, slug: &str, key: &str) -> Option<MockResponse> {
        let replays = self.replays.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (stored_at, answer) = replays.answers.get(&format!("{slug}:{key}"))?;
        if stored_at.elapsed() >= self.dedup_ttl {
            return None;
        }
        let mut answer = answer.clone();
        answer.headers.push(("x-mock-deduplicated".into(), "true".into()));
        Some(answer)
    }

    /// Keeps `answer` for replay, as the edge does: not server errors (a retry should reach
    /// the mock or the upstream again), not 304s (they answer one client's validators), never
    /// `set-cookie`.
    pub fn remember_answer(&self, slug: &str, key: &str, answer: &MockResponse) {
        if self.dedup_ttl.is_zero()
            || answer.status >= 500
            || answer.status == 304
            || answer.body.len() > MAX_DEDUP_BODY_BYTES
        {
            return;
        }
        let mut kept = answer.clone();
        kept.headers.retain(|(name, _)| !name.eq_ignore_ascii_case("set-cookie"));
        let mut replays = self.replays.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if replays.answers.len() >= MAX_DEDUP_ENTRIES {
            let ttl = self.dedup_ttl;
            replays.answers.retain(|_, (stored_at, _)| stored_at.elapsed() < ttl);
            if replays.answers.len() >= MAX_DEDUP_ENTRIES {
                // All fresh: drop the oldest.
                let oldest =
                    replays.answers.iter().min_by_key(|(_, (t, _))| *t).map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    replays.answers.remove(&oldest);
                }
            }
        }
        replays.answers.insert(format!("{slug}:{key}"), (Instant::now(), kept));
    }

    /// The compiled API published under `slug`, or `None` if there is none; `now` is when
    /// the request arrived (an entry is current until its TTL has passed by then).
    pub async fn engine(&self, slug: &str, now: Instant) -> Result<Option<EngineRef>, LoadError> {
        if let Some(hit) = self.fresh(slug, now) {
            if let Some(metrics) = &self.metrics {
                metrics.cache("engine", true);
            }
            return Ok(hit);
        }
        if let Some(metrics) = &self.metrics {
            metrics.cache("engine", false);
        }
        // One load per slug at a time: the requests that miss together (a cold replica
        // under load, a change every replica hears of at once) wait for the first one's
        // load instead of each reading and compiling the API, which multiplied the
        // database's work and the memory of a cold start by the number of clients.
        let gate = Gate::enter(&self.loading, slug);
        let _turn = gate.lock.lock().await;
        match self.fresh(slug, Instant::now()) {
            Some(engine) => Ok(engine),
            None => Ok(self.load(slug).await?.map(EngineRef::new)),
        }
    }

    /// The cached engine of `slug` (or its cached absence) while it is current.
    ///
    /// A std lock, not tokio's: every mock request takes it, nothing awaits while it is
    /// held, and tokio's read lock is a semaphore whose release also locks its waiter list,
    /// four atomic writes to lines both cores share for each request (against two).
    ///
    /// This thread's copy first ([`Near`]); a shared entry found current is copied into it.
    fn fresh(&self, slug: &str, now: Instant) -> Option<Option<EngineRef>> {
        let generation = self.generation.load(Ordering::Acquire);
        let current = |loaded_at: Instant| now.saturating_duration_since(loaded_at) < self.ttl;
        let near = NEAR.with_borrow_mut(|near| {
            near.align(self.id, generation);
            let (engine, loaded_at) = near.entries.get(slug)?;
            if current(*loaded_at) {
                return Some(engine.clone());
            }
            // Expired: the engine is not kept alive for a thread that may not ask again.
            near.entries.remove(slug);
            None
        });
        if near.is_some() {
            return near;
        }
        let (engine, loaded_at) = {
            let cache = self.cache.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            let hit = cache.get(slug)?;
            if hit.generation != generation || !current(hit.loaded_at) {
                return None;
            }
            (hit.engine.clone().map(EngineRef::new), hit.loaded_at)
        };
        NEAR.with_borrow_mut(|near| {
            near.align(self.id, generation);
            if near.entries.len() >= MAX_NEAR {
                near.entries.clear();
            }
            near.entries.insert(slug.to_owned(), (engine.clone(), loaded_at));
        });
        Some(engine)
    }

    /// Reads `slug`'s API and compiles it (unless the cached engine is of its version), and
    /// caches the result.
    async fn load(&self, slug: &str) -> Result<Option<Arc<Engine>>, LoadError> {
        let generation = self.generation.load(Ordering::Acquire);
        let api = db::select_api(&self.db, slug).await?;
        let Some(api) = api.filter(|a| a.slug == slug) else {
            self.remember(slug, None, 0, generation);
            return Ok(None);
        };
        // Same version as compiled: keep the engine, only refresh the entry.
        let same = self
            .cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(slug)
            .filter(|c| c.version == api.version)
            .and_then(|c| c.engine.clone());
        if let Some(engine) = same {
            self.remember(slug, Some(engine.clone()), api.version, generation);
            return Ok(Some(engine));
        }
        if let Some(redis) = &self.redis
            && let Some(engine) = Box::pin(self.shared_engine(redis, slug, api.version)).await
        {
            self.remember(slug, Some(engine.clone()), api.version, generation);
            return Ok(Some(engine));
        }
        let snapshot = crate::publish::build_snapshot(&self.db, &api.id)
            .await
            .map_err(LoadError::Unreadable)?;
        let Some(snapshot) = snapshot else { return Ok(None) };
        let version = i64::try_from(snapshot.version).unwrap_or(i64::MAX);
        let engine =
            Arc::new(Engine::from_snapshot(snapshot).map_err(|e| LoadError::Unreadable(e.into()))?);
        if let Some(metrics) = &self.metrics {
            metrics.engine_loaded("database");
        }
        if let Some(redis) = self.redis.as_ref().filter(|r| r.is_up()) {
            self.share(redis, engine.clone());
        }
        self.remember(slug, Some(engine.clone()), version, generation);
        Ok(Some(engine))
    }

    /// The Redis key of `slug`'s snapshot at `version`.
    fn snapshot_key(redis: &crate::redis::Redis, slug: &str, version: i64) -> String {
        let format = edgemock_shared::SNAPSHOT_FORMAT_VERSION;
        format!("{}snapshot:{format}:{slug}:{version}", redis.prefix())
    }

    /// The engine of `slug` at `version` compiled from Redis' copy, if it holds that version
    /// (anything else, or anything unreadable, is a miss; Redis down is neither).
    async fn shared_engine(
        &self,
        redis: &crate::redis::Redis,
        slug: &str,
        version: i64,
    ) -> Option<Arc<Engine>> {
        let found = redis.get(&Self::snapshot_key(redis, slug, version)).await?;
        let engine = found.and_then(|bytes| {
            let snapshot: edgemock_shared::Snapshot = serde_json::from_slice(&bytes).ok()?;
            let same =
                i64::try_from(snapshot.version).ok() == Some(version) && snapshot.api.slug == slug;
            same.then(|| Engine::from_snapshot(snapshot).ok()).flatten()
        });
        if let Some(metrics) = &self.metrics {
            metrics.cache("redis", engine.is_some());
            if engine.is_some() {
                metrics.engine_loaded("redis");
            }
        }
        engine.map(Arc::new)
    }

    /// Writes `engine`'s snapshot to Redis for the other replicas, off the request's path.
    fn share(&self, redis: &Arc<crate::redis::Redis>, engine: Arc<Engine>) {
        let (redis, ttl) = (redis.clone(), self.ttl);
        tokio::spawn(async move {
            let snapshot = engine.snapshot();
            let version = i64::try_from(snapshot.version).unwrap_or(i64::MAX);
            if let Ok(body) = serde_json::to_vec(snapshot) {
                let key = Self::snapshot_key(&redis, &snapshot.api.slug, version);
                redis.set(&key, &body, ttl).await;
            }
        });
    }

    /// The current snapshot of `api` (a row just read) as JSON, for the edge's fallback
    /// route: from Redis when it holds this version, else built (and shared).
    pub async fn snapshot_json(&self, api: &db::ApiRow) -> Result<Option<Vec<u8>>, LoadError> {
        if let Some(redis) = &self.redis {
            let found = redis.get(&Self::snapshot_key(redis, &api.slug, api.version)).await;
            if let (Some(metrics), Some(found)) = (&self.metrics, &found) {
                metrics.cache("redis", found.is_some());
            }
            if let Some(Some(body)) = found {
                return Ok(Some(body));
            }
        }
        let snapshot = crate::publish::build_snapshot(&self.db, &api.id)
            .await
            .map_err(LoadError::Unreadable)?;
        let Some(snapshot) = snapshot else { return Ok(None) };
        let body = serde_json::to_vec(&snapshot).map_err(|e| LoadError::Unreadable(e.into()))?;
        if let Some(redis) = self.redis.clone().filter(|r| r.is_up()) {
            let version = i64::try_from(snapshot.version).unwrap_or(i64::MAX);
            let key = Self::snapshot_key(&redis, &snapshot.api.slug, version);
            let (shared, ttl) = (body.clone(), self.ttl);
            tokio::spawn(async move { redis.set(&key, &shared, ttl).await });
        }
        Ok(Some(body))
    }

    fn remember(&self, slug: &str, engine: Option<Arc<Engine>>, version: i64, generation: u64) {
        let mut cache = self.cache.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        // A slower load of an older version must not replace a newer one: versions of a slug
        // only grow.
        if engine.is_some() && cache.get(slug).is_some_and(|c| c.version > version) {
            return;
        }
        // Entries unused for ten TTLs (ten minutes at least: with a TTL of 0 every entry is
        // stale at once, yet still saves a recompile while its version holds) go: an API
        // deleted through another replica, or never asked for again, would otherwise hold
        // its compiled endpoints until the cache is full.
        let idle = self.ttl.saturating_mul(10).max(Duration::from_secs(600));
        cache.retain(|_, c| c.loaded_at.elapsed() < idle);
        if cache.len() >= MAX_CACHED_APIS && !cache.contains_key(slug) {
            let oldest = cache.iter().min_by_key(|(_, c)| c.loaded_at).map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                cache.remove(&oldest);
            }
        }
        let loaded_at = Instant::now();
        cache.insert(slug.to_owned(), Cached { engine, version, generation, loaded_at });
    }

    /// Drops what is kept for the API `slug`, deleted by this process: its compiled
    /// endpoints and its replays (other replicas' copies go with their TTL).
    pub fn forget(&self, slug: &str) {
        self.cache.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(slug);
        // Every thread's copy ([`Near`]) goes with the generation.
        self.generation.fetch_add(1, Ordering::Release);
        let mut replays = self.replays.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Keys are `{slug}:{key}`, and a slug has no `:`.
        let prefix = format!("{slug}:");
        replays.answers.retain(|key, _| !key.starts_with(&prefix));
    }

    /// Forwards a request as the engine's proxy directive says, under the deployment's
    /// policy; an answer the edge would give, including its 502 and 504 errors.
    pub async fn forward(
        &self,
        request: &edgemock_shared::Request<'_>,
        directive: &ProxyDirective,
        cookie_path: &str,
    ) -> MockResponse {
        forward(
            &self.http,
            self.proxy_policy,
            self.proxy_default_timeout_ms,
            request,
            directive,
            cookie_path,
        )
        .await
    }
}

fn error(status: u16, code: &str, message: &str, extra: serde_json::Value) -> MockResponse {
    let mut error = serde_json::json!({ "code": code, "message": message });
    if let (Some(e), serde_json::Value::Object(x)) = (error.as_object_mut(), extra) {
        e.extend(x);
    }
    MockResponse {
        status,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            (edgemock_shared::engine::ERROR_HEADER.into(), code.to_owned().into()),
        ],
        body: serde_json::to_vec(&serde_json::json!({ "error": error })).unwrap_or_default().into(),
    }
}

async fn forward(
    http: &reqwest::Client,
    policy: ProxyPolicy,
    default_timeout_ms: u32,
    request: &edgemock_shared::Request<'_>,
    directive: &ProxyDirective,
    cookie_path: &str,
) -> MockResponse {
    if let Err(why) = check_target(&directive.url, policy) {
        return error(
            502,
            "proxy_target_forbidden",
            &format!("this endpoint's proxy target is not allowed: {why}"),
            serde_json::json!({ "target": directive.url }),
        );
    }
    let Ok(method) = reqwest::Method::from_bytes(request.method.as_bytes()) else {
        return error(
            501,
            "proxy_method_not_supported",
            "unsupported method",
            serde_json::json!({}),
        );
    };
    let timeout_ms =
        directive.timeout_ms.unwrap_or(default_timeout_ms).clamp(1, MAX_PROXY_TIMEOUT_MS);
    let mut builder = http
        .request(method, &directive.url)
        .timeout(Duration::from_millis(u64::from(timeout_ms)))
        .body(request.body.clone());
    for (name, value) in &request.headers {
        if forward_request_header(name, directive) {
            builder = builder.header(name.as_ref(), value.as_ref());
        }
    }
    for (name, value) in directive.headers.add.iter().chain(&directive.headers.set) {
        builder = builder.header(name, value);
    }
    let response = match builder.send().await {
        Ok(response) => response,
        Err(e) if e.is_timeout() => {
            return error(
                504,
                "proxy_timeout",
                &format!("the proxy target did not answer within {timeout_ms} ms"),
                serde_json::json!({ "target": directive.url, "timeout_ms": timeout_ms }),
            );
        }
        Err(e) => {
            return error(
                502,
                "proxy_error",
                &format!("the proxy target could not be reached: {e}"),
                serde_json::json!({ "target": directive.url }),
            );
        }
    };
    let status = response.status().as_u16();
    let mut headers = Vec::new();
    for (name, value) in response.headers() {
        let Ok(value) = value.to_str() else { continue };
        if let Some(value) = pass_response_header(name.as_str(), value, cookie_path) {
            headers.push((name.to_string().into(), value.into()));
        }
    }
    headers.push(("x-mock-proxied".into(), "true".into()));
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(e) => {
            return error(
                502,
                "proxy_error",
                &format!("the proxy target's answer broke off: {e}"),
                serde_json::json!({ "target": directive.url }),
            );
        }
    };
    MockResponse { status, headers, body }
}

/// The engine's outcome as the response to send: proxied where the engine says so. (A
/// `connection_close` fault is the engine's empty 502, as the edge sends, which cannot drop
/// a connection.)
pub async fn respond(
    runtime: &Runtime,
    request: &edgemock_shared::Request<'_>,
    outcome: Outcome,
    api: &str,
) -> MockResponse {
    match (&outcome.kind, &outcome.proxy) {
        (edgemock_shared::OutcomeKind::Proxy, Some(directive)) => {
            // Upstream cookies are scoped to the API's prefix.
            let cookie_path = format!("/mock/{api}");
            let mut upstream = runtime.forward(request, directive, &cookie_path).await;
            // The engine's CORS headers belong on whatever the client gets.
            for (name, value) in &outcome.response.headers {
                let lower = name.to_ascii_lowercase();
                if lower.starts_with("access-control-") || lower == "vary" {
                    upstream.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
                    upstream.headers.push((name.clone(), value.clone()));
                }
            }
            upstream
        }
        _ => outcome.response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn runtime(ttl: Duration) -> Runtime {
        let db = db::open("sqlite::memory:", 1).await.unwrap();
        let policy = ProxyPolicy { allow_http: false, allow_private: false };
        Runtime::new(db, Arc::default(), ttl, Duration::ZERO, policy, 1000).unwrap()
    }

    /// The shared entry of `slug`, as a load leaves it ("no such API" here: the lookups
    /// are the same for an engine).
    fn load_absent(runtime: &Runtime, slug: &str) {
        runtime.remember(slug, None, 0, runtime.generation.load(Ordering::Acquire));
    }

    fn drop_shared(runtime: &Runtime, slug: &str) {
        runtime.cache.write().unwrap().remove(slug);
    }

    #[tokio::test]
    async fn a_thread_answers_from_its_copy_until_the_generation_moves() {
        let runtime = runtime(Duration::from_secs(60)).await;
        load_absent(&runtime, "shop");
        let now = Instant::now();
        assert!(matches!(runtime.fresh("shop", now), Some(None)), "from the shared cache");
        drop_shared(&runtime, "shop");
        assert!(matches!(runtime.fresh("shop", now), Some(None)), "from this thread's copy");
        // Another thread never looked it up: it has no copy.
        let other = runtime.clone();
        let elsewhere = std::thread::spawn(move || other.fresh("shop", now).is_none());
        assert!(elsewhere.join().unwrap(), "another thread's lookup is a miss");
        runtime.generation.fetch_add(1, Ordering::Release);
        assert!(runtime.fresh("shop", now).is_none(), "a new generation empties the copy");
    }

    #[tokio::test]
    async fn forgetting_an_api_reaches_every_threads_copy() {
        let runtime = runtime(Duration::from_secs(60)).await;
        load_absent(&runtime, "shop");
        let now = Instant::now();
        assert!(runtime.fresh("shop", now).is_some());
        let other = runtime.clone();
        std::thread::spawn(move || other.forget("shop")).join().unwrap();
        assert!(runtime.fresh("shop", now).is_none());
    }

    #[tokio::test]
    async fn a_copy_expires_with_its_shared_entry() {
        let ttl = Duration::from_secs(60);
        let runtime = runtime(ttl).await;
        load_absent(&runtime, "shop");
        let now = Instant::now();
        assert!(runtime.fresh("shop", now).is_some());
        assert!(runtime.fresh("shop", now + ttl).is_none(), "past the TTL");
        let kept = NEAR.with_borrow(|near| near.entries.contains_key("shop"));
        assert!(!kept, "an expired copy does not keep its engine");
    }

    #[tokio::test]
    async fn runtimes_on_one_thread_keep_apart() {
        let (first, second) =
            (runtime(Duration::from_secs(60)).await, runtime(Duration::from_secs(60)).await);
        load_absent(&first, "shop");
        let now = Instant::now();
        assert!(first.fresh("shop", now).is_some());
        assert!(second.fresh("shop", now).is_none(), "the other runtime's entry");
        load_absent(&second, "shop");
        drop_shared(&second, "shop");
        assert!(second.fresh("shop", now).is_none(), "the first runtime's copy was not taken");
    }
}
