//! The edgemock edge runtime: a Cloudflare Worker that serves `/mock/{apiSlug}/…` from API
//! snapshots kept in Workers KV, with an in-isolate cache in front of KV.
//!
//! Module map:
//! - [`routes`] — request dispatch: mock traffic and the internal publish routes.
//! - [`store`] — the only module that touches KV; owns the isolate cache.
//! - [`dedup`] — replaying answers to identical requests (Workers Cache API).
//! - [`proxy`] — proxy mode: forwarding to an endpoint's target under the deployment's policy.
//! - [`rate_limit`] — the per-workspace rate limit, a Durable Object per workspace.
//! - [`shared_cache`] — the Workers Cache API in front of the engine for shareable answers.
//! - [`ws`] — WebSocket mocks: connect, interval and reply messages.
//! - [`config`] — settings read from the Worker's bindings.
//! - [`error`] — JSON error responses.
//!
//! This file only holds the Worker's event handlers; they hand off at once.

mod config;
mod dedup;
mod error;
mod proxy;
mod rate_limit;
mod routes;
mod shared_cache;
mod store;
mod ws;

use worker::{Context, Env, Request, Response, event};

#[event(start)]
fn start() {
    // Panics then reach the Worker's log with a message instead of `unreachable`.
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    match routes::handle(req, env).await {
        Ok(response) => Ok(response),
        // Logged once here, with its cause; the client gets an opaque JSON 500.
        Err(e) => {
            worker::console_error!("unexpected error: {e}");
            error::json_error(500, "internal", "the edge failed to answer", serde_json::json!({}))
        }
    }
}
