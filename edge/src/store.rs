//! Snapshot storage: the isolate cache in front of Workers KV. The only module that touches KV.
//!
//! Lookup order: isolate memory (a compiled [`Engine`] per slug, trusted for its share of
//! `MOCK_API_CACHE_TTL_SECONDS`) → KV (read with `cacheTtl`, the other share) → on a KV miss, the control plane's internal snapshot
//! route (`CONTROL_PLANE_URL`), whose answer is written back to KV. A missing API is cached
//! too (for the same time), so a flood of requests for unknown slugs cannot turn into a
//! flood of KV reads. When KV or the control plane fails, or KV holds something unreadable,
//! the last good snapshot keeps being served (stale-if-error).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use edgemock_shared::{Engine, Snapshot};
use worker::kv::KvStore;

use crate::config::SNAPSHOTS_BINDING;

/// How many APIs one isolate keeps compiled. Isolates have 128 MiB; a snapshot is small, but
/// hostile traffic can name any number of slugs, so the cache is bounded.
const MAX_CACHED_APIS: usize = 256;

/// After a failed KV read, how long the isolate keeps serving what it has before trying again.
const ERROR_RETRY_MS: u64 = 1_000;

struct Entry {
    api: Option<Rc<Engine>>,
    checked_at_ms: u64,
}

thread_local! {
    // An isolate runs on one thread (requests interleave only at awaits, and no borrow is
    // held across one): a thread-local is the isolate's memory.
    static CACHE: RefCell<HashMap<String, Entry>> = RefCell::new(HashMap::new());
}

/// Why a snapshot could not be loaded and nothing older could stand in.
#[derive(Debug)]
pub enum LoadError {
    Kv(String),
    Unreadable(String),
}

/// The outcome of a lookup, with where it came from (sent as a response header).
pub struct Loaded {
    pub api: Option<Rc<Engine>>,
    pub source: &'static str,
}

pub struct Store {
    kv: KvStore,
    ttl_ms: u64,
    /// `cacheTtl` of KV reads on the serving path.
    kv_cache_ttl_seconds: u64,
    /// The control plane's base URL and the shared secret, for KV misses.
    fallback: Option<(String, String)>,
}

impl Store {
    pub fn new(env: &worker::Env, ttl_ms: u64, kv_cache_ttl_seconds: u64) -> worker::Result<Self> {
        Ok(Self { kv: env.kv(SNAPSHOTS_BINDING)?, ttl_ms, kv_cache_ttl_seconds, fallback: None })
    }

    /// Falls back to the control plane's internal snapshot route when KV has nothing.
    pub fn with_fallback(mut self, url: Option<&str>, token: Option<&str>) -> Self {
        self.fallback = url.zip(token).map(|(u, t)| (u.to_owned(), t.to_owned()));
        self
    }

    /// Asks the control plane for `slug`'s snapshot and writes it back to KV, so the next
    /// isolate finds it there. `Ok(None)`: the control plane has no such API.
    async fn fetch_from_control_plane(&self, slug: &str) -> Result<Option<Rc<Engine>>, LoadError> {
        let Some((base, token)) = &self.fallback else { return Ok(None) };
        let headers = worker::Headers::new();
        let fail = |e: worker::Error| LoadError::Kv(format!("control plane: {e}"));
        headers.set("authorization", &format!("Bearer {token}")).map_err(fail)?;
        let mut init = worker::RequestInit::new();
        init.with_headers(headers);
        let url = format!("{base}/internal/v1/snapshots/{slug}");
        let request = worker::Request::new_with_init(&url, &init).map_err(fail)?;
        let mut response = worker::Fetch::Request(request).send().await.map_err(fail)?;
        match response.status_code() {
            200 => {}
            404 => return Ok(None),
            status => {
                return Err(LoadError::Kv(format!("control plane answered {status} for {url}")));
            }
        }
        let raw = response.bytes().await.map_err(fail)?;
        let snapshot =
            Snapshot::from_json(&raw).map_err(|e| LoadError::Unreadable(e.to_string()))?;
        let engine =
            Engine::from_snapshot(snapshot).map_err(|e| LoadError::Unreadable(e.to_string()))?;
        // Written back only if KV still has nothing newer (a publish may have raced us).
        if self.stored_version(slug).await.ok().flatten().is_none() {
            let kv_fail = |e: worker::KvError| LoadError::Kv(format!("write-back: {e}"));
            self.kv
                .put_bytes(&Snapshot::kv_key(slug), &raw)
                .map_err(kv_fail)?
                .execute()
                .await
                .map_err(kv_fail)?;
        }
        Ok(Some(Rc::new(engine)))
    }

    /// The compiled API for `slug`, or `None` when no such API is published.
    pub async fn load(&self, slug: &str, now_ms: u64) -> Result<Loaded, LoadError> {
        let cached = CACHE.with(|c| {
            c.borrow().get(slug).map(|e| (e.api.clone(), now_ms.saturating_sub(e.checked_at_ms)))
        });
        if let Some((api, age)) = &cached
            && *age < self.ttl_ms
        {
            return Ok(Loaded { api: api.clone(), source: "isolate" });
        }
        let stale = cached.and_then(|(api, _)| api);
        let found = match self.read(slug).await {
            Ok(Some(api)) => Ok((Some(api), "kv")),
            Ok(None) => self.fetch_from_control_plane(slug).await.map(|api| match api {
                Some(api) => (Some(api), "control-plane"),
                None => (None, "kv"),
            }),
            Err(err) => Err(err),
        };
        match found {
            Ok((api, source)) => {
                remember(slug, api.clone(), now_ms);
                Ok(Loaded { api, source })
            }
            // A source failed: whatever this isolate had before is still the best answer
            // (stale-if-error). Look again soon, not on every request.
            Err(err) => match stale {
                Some(api) => {
                    let retry_at =
                        now_ms.saturating_sub(self.ttl_ms).saturating_add(ERROR_RETRY_MS);
                    remember(slug, Some(api.clone()), retry_at);
                    Ok(Loaded { api: Some(api), source: "stale" })
                }
                None => Err(err),
            },
        }
    }

    async fn read(&self, slug: &str) -> Result<Option<Rc<Engine>>, LoadError> {
        let bytes = self
            .kv
            .get(&Snapshot::kv_key(slug))
            .cache_ttl(self.kv_cache_ttl_seconds)
            .bytes()
            .await
            .map_err(|e| LoadError::Kv(e.to_string()))?;
        let Some(bytes) = bytes else { return Ok(None) };
        // Reuse the compiled API when KV still holds the version already compiled.
        let snapshot =
            Snapshot::from_json(&bytes).map_err(|e| LoadError::Unreadable(e.to_string()))?;
        let same = CACHE.with(|c| {
            c.borrow()
                .get(slug)
                .and_then(|e| e.api.clone())
                .filter(|api| api.snapshot().version == snapshot.version)
        });
        if let Some(api) = same {
            return Ok(Some(api));
        }
        let api =
            Engine::from_snapshot(snapshot).map_err(|e| LoadError::Unreadable(e.to_string()))?;
        Ok(Some(Rc::new(api)))
    }

    /// The version currently stored in KV for `slug`, if any (read past the isolate cache
    /// and without `cacheTtl`: publishing compares against the freshest value).
    pub async fn stored_version(&self, slug: &str) -> worker::Result<Option<u64>> {
        let bytes = self.kv.get(&Snapshot::kv_key(slug)).bytes().await?;
        Ok(bytes.and_then(|b| Snapshot::from_json(&b).ok()).map(|s| s.version))
    }

    /// Stores a validated snapshot and makes this isolate serve it at once.
    pub async fn put(&self, api: Engine, raw: Vec<u8>, now_ms: u64) -> worker::Result<()> {
        let slug = api.snapshot().api.slug.clone();
        self.kv.put_bytes(&Snapshot::kv_key(&slug), &raw)?.execute().await?;
        remember(&slug, Some(Rc::new(api)), now_ms);
        Ok(())
    }

    pub async fn delete(&self, slug: &str, now_ms: u64) -> worker::Result<()> {
        self.kv.delete(&Snapshot::kv_key(slug)).await?;
        remember(slug, None, now_ms);
        Ok(())
    }
}

fn remember(slug: &str, api: Option<Rc<Engine>>, checked_at_ms: u64) {
    CACHE.with(|c| {
        let mut cache = c.borrow_mut();
        if cache.len() >= MAX_CACHED_APIS && !cache.contains_key(slug) {
            // Evict the entry checked longest ago: the one closest to needing a KV read anyway.
            if let Some(oldest) =
                cache.iter().min_by_key(|(_, e)| e.checked_at_ms).map(|(k, _)| k.clone())
            {
                cache.remove(&oldest);
            }
        }
        cache.insert(slug.to_owned(), Entry { api, checked_at_ms });
    });
}
