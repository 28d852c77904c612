//! Settings, read from the Worker's bindings (`wrangler.toml` `[vars]`, secrets, KV).

use edgemock_shared::proxy::ProxyPolicy;
use worker::Env;

/// The KV namespace binding that holds snapshots.
pub const SNAPSHOTS_BINDING: &str = "SNAPSHOTS";

/// How long an isolate may serve a cached snapshot before it checks KV again.
pub const DEFAULT_CACHE_TTL_SECONDS: u64 = 60;

/// How long deduplicated answers are replayed, by default.
pub const DEFAULT_DEDUP_TTL_SECONDS: u32 = 60;

/// The proxy timeout of endpoints that set none.
pub const DEFAULT_PROXY_TIMEOUT_MS: u32 = 5_000;

#[derive(Debug)]
pub struct Config {
    /// How long an isolate serves a compiled snapshot before it reads KV again, and how long
    /// KV may serve a value cached at its location (`cacheTtl`, at least 30 s by the
    /// platform's rule). Both come from `MOCK_API_CACHE_TTL_SECONDS` ([`split_ttl`]).
    pub isolate_ttl_ms: u64,
    pub kv_cache_ttl_seconds: u64,
    /// `EDGE_PUBLISH_TOKEN` (a secret): the bearer token the control plane presents to
    /// publish. `None` disables the publish routes.
    pub publish_token: Option<String>,
    /// `PROXY_DEFAULT_TIMEOUT` (ms, default 5000, at most 30000): the timeout of proxy
    /// endpoints that set none.
    pub proxy_default_timeout_ms: u32,
    /// `PROXY_ALLOW_HTTP` and `PROXY_ALLOW_PRIVATE_NETWORKS` (both default false).
    pub proxy_policy: ProxyPolicy,
    /// `CONTROL_PLANE_URL`: where the edge fetches a snapshot that KV does not have yet
    /// (authenticated with `EDGE_PUBLISH_TOKEN`). Unset: KV is the only source.
    pub control_plane_url: Option<String>,
    /// `DEDUP_TTL_SECONDS` (default 60): how long a deduplicating endpoint replays an answer.
    pub dedup_ttl_seconds: u32,
}

impl Config {
    pub fn from_env(env: &Env) -> Self {
        let cache_ttl_seconds =
            number(env, "MOCK_API_CACHE_TTL_SECONDS", DEFAULT_CACHE_TTL_SECONDS);
        // Secrets are preferred; a plain var is accepted so `wrangler dev --var` works.
        let publish_token = env
            .secret("EDGE_PUBLISH_TOKEN")
            .map(|s| s.to_string())
            .or_else(|_| env.var("EDGE_PUBLISH_TOKEN").map(|v| v.to_string()))
            .ok()
            .filter(|t| !t.is_empty());
        let flag = |name: &str| text(env, name).is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let proxy_default_timeout_ms =
            number(env, "PROXY_DEFAULT_TIMEOUT", DEFAULT_PROXY_TIMEOUT_MS)
                .clamp(1, crate::proxy::MAX_TIMEOUT_MS);
        let dedup_ttl_seconds = number(env, "DEDUP_TTL_SECONDS", DEFAULT_DEDUP_TTL_SECONDS);
        let control_plane_url =
            text(env, "CONTROL_PLANE_URL").map(|u| u.trim_end_matches('/').to_owned());
        let (isolate_ttl_seconds, kv_cache_ttl_seconds) = split_ttl(cache_ttl_seconds);
        Self {
            control_plane_url,
            dedup_ttl_seconds,
            isolate_ttl_ms: isolate_ttl_seconds.saturating_mul(1000),
            kv_cache_ttl_seconds,
            publish_token,
            proxy_default_timeout_ms,
            proxy_policy: ProxyPolicy {
                allow_http: flag("PROXY_ALLOW_HTTP"),
                allow_private: flag("PROXY_ALLOW_PRIVATE_NETWORKS"),
            },
        }
    }
}

/// The smallest `cacheTtl` Workers KV accepts.
pub const KV_MIN_CACHE_TTL_SECONDS: u64 = 30;

/// Splits the staleness budget `MOCK_API_CACHE_TTL_SECONDS` between the two caches a
/// published change passes: KV's cache at the location (`cacheTtl`) and the isolate's
/// compiled copy. From 60 s up they share it, so a change reaches every isolate within the
/// budget (plus KV's own replication, which the platform bounds at about a minute). Below
/// 60 s the isolate gets the whole budget and KV its minimum of 30 s on top; KV would cache
/// for 60 s if no `cacheTtl` were given at all.
pub fn split_ttl(budget_seconds: u64) -> (u64, u64) {
    if budget_seconds >= 2 * KV_MIN_CACHE_TTL_SECONDS {
        let kv = (budget_seconds / 2).max(KV_MIN_CACHE_TTL_SECONDS);
        (budget_seconds - kv, kv)
    } else {
        (budget_seconds, KV_MIN_CACHE_TTL_SECONDS)
    }
}

/// A `[vars]` value, trimmed; `None` when unset or empty.
pub fn text(env: &Env, name: &str) -> Option<String> {
    env.var(name).ok().map(|v| v.to_string().trim().to_owned()).filter(|v| !v.is_empty())
}

/// A numeric `[vars]` value; `default` when unset or not a number.
pub fn number<T: std::str::FromStr>(env: &Env, name: &str, default: T) -> T {
    text(env, name).and_then(|v| v.parse().ok()).unwrap_or(default)
}
