//! Rate limiting per workspace, across isolates and locations: one Durable Object per
//! workspace counts its requests in fixed one-minute windows. A Durable Object runs one
//! request at a time, so the count is exact; it is kept in memory, so if the object is
//! evicted mid-window the window starts over (in the client's favour, never against it).
//!
//! The limit is the workspace's own (`rate_limit_rpm` in the snapshot), else its plan's:
//! `WORKSPACE_RATE_LIMIT_RPM` (default 500) for free, and `PRO_RATE_LIMIT_RPM` (5000) and
//! `ENTERPRISE_RATE_LIMIT_RPM` (50000) for the other tiers. `0` turns limiting off.

use std::cell::Cell;

use edgemock_shared::model::{PlanTier, WorkspaceRef};
use serde::{Deserialize, Serialize};
use worker::{DurableObject, Env, Request, Response, Result, State, durable_object};

/// The Durable Object binding (wrangler.toml).
pub const BINDING: &str = "RATE_LIMITER";
const WINDOW_MS: u64 = 60_000;

/// A verdict, as the object answers it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Verdict {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the window resets.
    pub reset_seconds: u64,
}

#[durable_object]
#[derive(Debug)]
pub struct RateLimiter {
    window_start_ms: Cell<u64>,
    count: Cell<u32>,
}

impl DurableObject for RateLimiter {
    fn new(_state: State, _env: Env) -> Self {
        Self { window_start_ms: Cell::new(0), count: Cell::new(0) }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let url = req.url()?;
        let limit: u32 = url
            .query_pairs()
            .find(|(k, _)| k == "limit")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let now = worker::Date::now().as_millis();
        let window = now - now % WINDOW_MS;
        if self.window_start_ms.get() != window {
            self.window_start_ms.set(window);
            self.count.set(0);
        }
        let allowed = self.count.get() < limit;
        if allowed {
            self.count.set(self.count.get() + 1);
        }
        Response::from_json(&Verdict {
            allowed,
            limit,
            remaining: limit.saturating_sub(self.count.get()),
            reset_seconds: (window + WINDOW_MS - now).div_ceil(1000),
        })
    }
}

/// The requests per minute `workspace` may make.
pub fn limit_for(env: &Env, workspace: &WorkspaceRef) -> u32 {
    if let Some(own) = workspace.rate_limit_rpm {
        return own;
    }
    use crate::config::number;
    match workspace.plan {
        PlanTier::Free => number(env, "WORKSPACE_RATE_LIMIT_RPM", 500),
        PlanTier::Pro => number(env, "PRO_RATE_LIMIT_RPM", 5_000),
        PlanTier::Enterprise => number(env, "ENTERPRISE_RATE_LIMIT_RPM", 50_000),
    }
}

/// Counts one request of `workspace` against `limit`. `None` when limiting is off.
pub async fn check(env: &Env, workspace: &WorkspaceRef, limit: u32) -> Result<Option<Verdict>> {
    if limit == 0 {
        return Ok(None);
    }
    let namespace = env.durable_object(BINDING)?;
    let stub = namespace.id_from_name(&workspace.id)?.get_stub()?;
    let mut answer = stub.fetch_with_str(&format!("https://rate-limiter/?limit={limit}")).await?;
    Ok(Some(answer.json().await?))
}

/// The `X-RateLimit-*` headers of a verdict.
pub fn headers(verdict: &Verdict) -> [(&'static str, String); 3] {
    [
        ("x-ratelimit-limit", verdict.limit.to_string()),
        ("x-ratelimit-remaining", verdict.remaining.to_string()),
        ("x-ratelimit-reset", verdict.reset_seconds.to_string()),
    ]
}
