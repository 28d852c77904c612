//! The pure core of edgemock, shared by the edge Worker (compiled to WASM) and the
//! control plane (native).
//!
//! Invariant: this crate does no IO, reads no clock and draws no randomness of its own.
//! Everything it needs (the request, the time, a seed) is passed in by the caller, so the
//! same input gives the same answer on both sides. It must keep building for
//! `wasm32-unknown-unknown`.
//!
//! Entry point: [`Engine::from_snapshot`] once per snapshot version, then
//! [`Engine::handle`] (or [`Engine::handle_graphql`], or the `ws_*` calls) per request.
//!
//! Module map:
//! - [`analytics`] — the analytics event both runtimes send and the control plane stores.
//! - [`model`] — the definition model (workspace, API, endpoint, responses, rules, GraphQL
//!   operations, WebSocket mocks) and its validation. Serialized: treat as an API.
//! - [`snapshot`] — the versioned document the control plane publishes and the edge reads.
//! - [`engine`] — compiling a snapshot and deciding responses: routing, rules, selection,
//!   validation, faults, delays, CORS, near misses.
//! - [`condition`] — request conditions (query, header, cookie, param, body, variables).
//! - [`template`] — minijinja templating with request context and seeded helpers.
//! - [`http_cache`] — ETags, `If-None-Match`, `Cache-Control`.
//! - [`hashing`] — the canonical request hash used for deduplication.
//! - [`graphql`] — reading GraphQL requests and finding the operation they run.
//! - [`proxy`] — which proxy targets a deployment allows (no private networks by default).
//! - [`routing`] — path-pattern normalisation to `matchit` syntax.
//! - [`request`] / [`response`] — the request as the host hands it in, the response as it
//!   goes out.
//! - [`dates`] — date formats for templates.
//! - [`error`] — the crate's error type: every error names the definition field at fault.

pub mod analytics;
pub mod condition;
pub mod dates;
pub mod engine;
pub mod error;
pub mod graphql;
pub mod hashing;
pub mod http_cache;
pub mod model;
pub mod proxy;
pub mod request;
pub mod response;
pub mod routing;
pub mod snapshot;
pub mod template;

pub use condition::Condition;
pub use engine::{
    ApiLabels, Engine, MatchId, Matched, NearMiss, Outcome, OutcomeKind, ProxyDirective, WsSend,
};
pub use error::{Error, Result};
pub use model::{
    ApiRef, Body, EndpointDefinition, MethodSpec, ResponseDefinition, StaticResponse, WorkspaceRef,
};
pub use request::{Request, RequestView};
pub use response::{HeaderText, MockResponse};
pub use snapshot::{SNAPSHOT_FORMAT_VERSION, Snapshot, SnapshotEndpoint};

/// The JSON Schema of the snapshot format (and so of every definition type in it),
/// generated from the types: editors can validate mock files with it.
#[cfg(feature = "schema")]
pub fn definition_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Snapshot)).unwrap_or_default()
}
