//! The edgemock edge runtime: a Cloudflare Worker that serves `/mock/{apiSlug}/…` from API
//! snapshots kept in Workers KV, with an in-isolate cache in front of KV.
//!
//! Module map:
//! - [`routes`] — request dispatch: mock traffic and the internal publish routes.
//! - [`analytics`] — one event per mock request, through a Queue to the control plane.
//! - [`store`] — the only module that touches KV; owns the isolate cache.
//! - [`dedup`] — replaying answers to identical requests (Workers Cache API).
//! - [`proxy`] — proxy mode: forwarding to an endpoint's target under the deployment's policy.
//! - [`rate_limit`] — the per-workspace rate limit, a Durable Object per workspace.
//! - [`shared_cache`] — the Workers Cache API in front of the engine for shareable answers.
//! - [`ws`] — WebSocket mocks: connect, interval and reply messages.
//! - [`config`] — settings read from the Worker's bindings.
//! - [`error`] — JSON error responses, and the request id on every response.
//!
//! This file only holds the Worker's event handlers; they hand off at once.

mod analytics;
mod config;
mod dedup;
mod error;
mod proxy;
mod rate_limit;
mod routes;
mod shared_cache;
mod store;
mod ws;

use worker::{Context, Date, Env, MessageBatch, Request, Response, event};

use crate::analytics::{Arrival, Facts, Location};

#[event(start)]
fn start() {
    // Panics reach the Worker's log with their message. worker-build's shim then discards
    // the instance and starts a fresh one for the next request, so a panic never poisons
    // later requests.
    console_error_panic_hook::set_once();
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let arrival = Arrival {
        id: random_uuid(),
        request_id: request_id(&req),
        at_ms: Date::now().as_millis(),
        location: Location::of(&req),
    };
    let config = config::Config::from_env(&env);
    let mut facts = Facts::default();
    let response = match routes::handle(req, &env, &config, &mut facts).await {
        Ok(response) => response,
        // Logged once here, with its cause; the client gets an opaque JSON 500.
        Err(e) => {
            worker::console_error!("request {}: unexpected error: {e}", arrival.request_id);
            error::json_error(500, "internal", "the edge failed to answer", serde_json::json!({}))?
        }
    };
    let status = response.status_code();
    let (response, size) = error::finish(response, &arrival.request_id).await?;
    if let Some(event) = facts.into_event(arrival, status, size, Date::now().as_millis()) {
        analytics::send(&env, &ctx, &config, event);
    }
    Ok(response)
}

/// Analytics events, delivered to the control plane in batches ([`analytics::consume`]).
#[event(queue)]
async fn queue(batch: MessageBatch<String>, env: Env, _ctx: Context) -> worker::Result<()> {
    analytics::consume(batch, env).await;
    Ok(())
}

/// The client's `x-request-id` when it is a sane token (so ids propagate across services),
/// otherwise a fresh UUID.
fn request_id(req: &Request) -> String {
    let given = req.headers().get("x-request-id").ok().flatten().unwrap_or_default();
    edgemock_shared::request::sane_request_id(&given).map_or_else(random_uuid, str::to_owned)
}

/// A version 4 UUID from the platform's cryptographic random source.
fn random_uuid() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // Never expected in workerd; fall back to Math.random rather than fail the request.
        for byte in &mut bytes {
            *byte = (worker::js_sys::Math::random() * 256.0) as u8;
        }
    }
    uuid::Builder::from_random_bytes(bytes).into_uuid().to_string()
}
