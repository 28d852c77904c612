//! Settings, read from the Worker's bindings (`wrangler.toml` `[vars]`, secrets, KV).

use worker::Env;

/// The KV namespace binding that holds snapshots.
pub const SNAPSHOTS_BINDING: &str = "SNAPSHOTS";

/// How long an isolate may serve a cached snapshot before it checks KV again.
pub const DEFAULT_CACHE_TTL_SECONDS: u64 = 60;

#[derive(Debug)]
pub struct Config {
    /// `MOCK_API_CACHE_TTL_SECONDS`: the staleness bound of the isolate cache.
    pub cache_ttl_ms: u64,
    /// `EDGE_PUBLISH_TOKEN` (a secret): the bearer token the control plane presents to
    /// publish. `None` disables the publish routes.
    pub publish_token: Option<String>,
}

impl Config {
    pub fn from_env(env: &Env) -> Self {
        let cache_ttl_seconds = env
            .var("MOCK_API_CACHE_TTL_SECONDS")
            .ok()
            .and_then(|v| v.to_string().trim().parse::<u64>().ok())
            .unwrap_or(DEFAULT_CACHE_TTL_SECONDS);
        // Secrets are preferred; a plain var is accepted so `wrangler dev --var` works.
        let publish_token = env
            .secret("EDGE_PUBLISH_TOKEN")
            .map(|s| s.to_string())
            .or_else(|_| env.var("EDGE_PUBLISH_TOKEN").map(|v| v.to_string()))
            .ok()
            .filter(|t| !t.is_empty());
        Self { cache_ttl_ms: cache_ttl_seconds.saturating_mul(1000), publish_token }
    }
}
