//! Webhooks: events of a workspace delivered to the URLs subscribed to them, signed the
//! Standard Webhooks way, from an outbox in the database.
//!
//! - [`enqueue`] (this module) turns an [`Event`] into one delivery row per active
//!   subscription that wants it, inside the transaction of the change that caused it, so an
//!   event exists exactly when its change was committed. Nothing is sent on the request path.
//! - [`delivery`] — the loop that claims due deliveries, sends them, records every attempt
//!   and schedules retries; it runs beside the publisher and finishes in-flight attempts on
//!   shutdown.
//! - [`schedule`] — when to try again: exponential back-off with jitter, `Retry-After`.
//! - [`signature`] — `webhook-id`, `webhook-timestamp`, `webhook-signature` (HMAC-SHA256).
//! - [`mock`] — `mock.validation_failed` and `mock.rate_limited` from analytics ingest, at
//!   most one per API and type a minute.
//!
//! The database is the outbox: a delivery is due while it is `pending` and its
//! `next_attempt_at` has come, so a restart or a crash loses nothing, and several replicas
//! can deliver side by side (a claim is a conditional UPDATE). Delivery is at least once: a
//! claimant that dies mid-attempt leaves its claim to expire, and the delivery is sent again.

pub mod delivery;
pub mod mock;
pub mod schedule;
pub mod signature;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::AnyConnection;
use tokio::sync::Notify;

use crate::db::{self, ApiRow, EndpointRow, WorkspaceRow};

/// The events a webhook may subscribe to; `*` is all of them.
pub const EVENTS: &[&str] = &[
    "workspace.updated",
    "workspace.deleted",
    "api.created",
    "api.updated",
    "api.deleted",
    "api.published",
    "api.publish_failed",
    "endpoint.created",
    "endpoint.updated",
    "endpoint.deleted",
    "mock.validation_failed",
    "mock.rate_limited",
];

/// Most retries `WEBHOOK_RETRY_ATTEMPTS` may ask for.
pub const MAX_RETRY_ATTEMPTS: u32 = 20;
/// Longest first retry delay (`WEBHOOK_RETRY_DELAY_MS`); later ones are capped at
/// [`schedule::MAX_DELAY`].
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);
/// Longest attempt (`WEBHOOK_TIMEOUT_MS`).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// Something that happened in a workspace.
#[derive(Debug, Clone)]
pub struct Event {
    /// One of [`EVENTS`].
    pub kind: &'static str,
    pub workspace_id: String,
    /// The event's own fields; the payload wraps them (see [`Event::payload`]).
    pub data: Value,
}

impl Event {
    /// The body receivers get, as Standard Webhooks suggests:
    /// `{"type", "timestamp" (RFC 3339), "data"}`.
    pub fn payload(&self) -> String {
        json!({ "type": self.kind, "timestamp": db::now(), "data": self.data }).to_string()
    }

    pub fn workspace(kind: &'static str, workspace: &WorkspaceRow) -> Self {
        Self {
            kind,
            workspace_id: workspace.id.clone(),
            data: json!({ "workspace": {
                "id": workspace.id,
                "slug": workspace.slug,
                "name": workspace.name,
                "plan": workspace.plan,
                "rate_limit_rpm": workspace.rate_limit_rpm,
            }}),
        }
    }

    pub fn api(kind: &'static str, api: &ApiRow) -> Self {
        Self {
            kind,
            workspace_id: api.workspace_id.clone(),
            data: json!({ "api": api_fields(api) }),
        }
    }

    pub fn endpoint(kind: &'static str, api: &ApiRow, endpoint: &EndpointRow) -> Self {
        Self::endpoint_parts(kind, api, &endpoint.id, &endpoint.method, &endpoint.path)
    }

    pub fn endpoint_parts(
        kind: &'static str,
        api: &ApiRow,
        id: &str,
        method: &str,
        path: &str,
    ) -> Self {
        Self {
            kind,
            workspace_id: api.workspace_id.clone(),
            data: json!({
                "api": api_fields(api),
                "endpoint": { "id": id, "method": method, "path": path },
            }),
        }
    }

    /// Adds `fields` to the event's data.
    pub fn with(mut self, fields: Value) -> Self {
        if let (Some(data), Value::Object(fields)) = (self.data.as_object_mut(), fields) {
            data.extend(fields);
        }
        self
    }
}

fn api_fields(api: &ApiRow) -> Value {
    json!({
        "id": api.id,
        "workspace_id": api.workspace_id,
        "slug": api.slug,
        "name": api.name,
        "version": api.version,
    })
}

/// Whether a subscription's event list (`["api.created", …]` or `["*"]`, as stored) takes
/// `kind`.
pub fn subscribed(events_json: &str, kind: &str) -> bool {
    serde_json::from_str::<Vec<String>>(events_json)
        .unwrap_or_default()
        .iter()
        .any(|e| e == "*" || e == kind)
}

/// Queues `event` for every active subscription of its workspace that wants it, and returns
/// how many deliveries that made.
///
/// Call it inside the transaction of the change, after the change's first write: the
/// deliveries then exist exactly when the change does. (On SQLite a transaction that reads
/// before it writes may be refused its write when another writer committed meanwhile; every
/// caller writes first.)
pub async fn enqueue(conn: &mut AnyConnection, event: &Event) -> sqlx::Result<usize> {
    let hooks = db::select_active_webhooks(&mut *conn, &event.workspace_id).await?;
    let mut queued = 0;
    let payload = event.payload();
    for hook in hooks.iter().filter(|h| subscribed(&h.events, event.kind)) {
        db::insert_delivery(
            &mut *conn,
            &db::NewDelivery {
                webhook_id: &hook.id,
                workspace_id: &event.workspace_id,
                event_type: event.kind,
                payload: &payload,
            },
        )
        .await?;
        queued += 1;
    }
    Ok(queued)
}

/// The handle that writers use to wake the delivery loop after they commit. Cheap to clone;
/// waking never blocks, and a wake while the loop is busy is kept for its next wait.
#[derive(Debug, Clone, Default)]
pub struct Outbox {
    wake: Arc<Notify>,
}

impl Outbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// Tells the delivery loop that deliveries may be due.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    async fn notified(&self) {
        self.wake.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_match_by_name_or_star() {
        assert!(subscribed(r#"["api.created","api.deleted"]"#, "api.deleted"));
        assert!(subscribed(r#"["*"]"#, "mock.rate_limited"));
        assert!(!subscribed(r#"["api.created"]"#, "api.updated"));
        assert!(!subscribed("not json", "api.created"));
    }

    #[test]
    fn payload_is_type_timestamp_data() {
        let event = Event { kind: "api.created", workspace_id: "w".into(), data: json!({"a": 1}) }
            .with(json!({"b": 2}));
        let payload: Value = serde_json::from_str(&event.payload()).unwrap_or_default();
        assert_eq!(payload["type"], "api.created");
        assert_eq!(payload["data"], json!({"a": 1, "b": 2}));
        assert!(payload["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
}
