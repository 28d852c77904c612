//! The pure core of edgemock, shared by the edge Worker (compiled to WASM) and the
//! control plane (native).
//!
//! Invariant: this crate does no IO, reads no clock and draws no randomness. Everything it
//! needs is passed in by the caller, so the same input gives the same answer on both sides.
//! It must keep building for `wasm32-unknown-unknown`.
//!
//! Module map:
//! - [`model`] — the definition model (workspace, API, endpoint, response) and its validation.
//! - [`snapshot`] — the versioned document the control plane publishes and the edge reads.
//! - [`routing`] — path-pattern normalisation and request routing with `matchit`.
//! - [`request`] — the request as the host hands it in, and a lazily parsed view of it.
//! - [`response`] — turning a static response definition into bytes on the wire.
//! - [`error`] — the crate's error type.

pub mod error;
pub mod model;
pub mod request;
pub mod response;
pub mod routing;
pub mod snapshot;

pub use error::{Error, Result};
pub use model::{ApiRef, Body, EndpointDefinition, MethodSpec, StaticResponse, WorkspaceRef};
pub use request::{Request, RequestView};
pub use response::MockResponse;
pub use routing::{CompiledApi, RouteMatch};
pub use snapshot::{SNAPSHOT_FORMAT_VERSION, Snapshot, SnapshotEndpoint};
