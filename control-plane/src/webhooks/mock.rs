//! `mock.validation_failed` and `mock.rate_limited`: what mock requests did, learnt from the
//! analytics events the edge sends in batches (`POST /internal/v1/analytics`).
//!
//! Kept cheap, since mock traffic can be thousands of requests a second: a batch is grouped
//! by API and kind in memory; a group whose workspace has no subscription for the kind costs
//! one read; otherwise the first replica to claim the API's current minute
//! (`webhook_event_windows`) queues one event, and the rest of that minute's failures of
//! that API and kind are not reported. The event says how many the batch held and shows the
//! first.
//!
//! A rate-limited request is one the edge answered 429 without running the engine (no
//! endpoint matched): a mock that answers 429 itself has its endpoint in the event.

use std::collections::BTreeMap;

use edgemock_shared::analytics::AnalyticsEvent;
use serde_json::json;

use super::{Event, enqueue, subscribed};
use crate::db::{self, Db};

pub const VALIDATION_FAILED: &str = "mock.validation_failed";
pub const RATE_LIMITED: &str = "mock.rate_limited";

/// Which mock event, if any, `event` is.
fn kind(event: &AnalyticsEvent) -> Option<&'static str> {
    if event.validation_failed {
        Some(VALIDATION_FAILED)
    } else if event.status == 429 && event.endpoint_pattern.is_none() {
        Some(RATE_LIMITED)
    } else {
        None
    }
}

/// Queues the mock events of an ingested batch; answers how many deliveries that made.
pub async fn enqueue_from_analytics(db: &Db, events: &[AnalyticsEvent]) -> sqlx::Result<usize> {
    // (API, kind) → (how many, the first).
    let mut groups: BTreeMap<(&str, &'static str), (u64, &AnalyticsEvent)> = BTreeMap::new();
    for event in events {
        if let Some(kind) = kind(event) {
            groups.entry((&event.api_id, kind)).or_insert((0, event)).0 += 1;
        }
    }
    if groups.is_empty() {
        return Ok(0);
    }
    let minute = time::OffsetDateTime::now_utc().unix_timestamp().div_euclid(60);
    let mut queued = 0;
    for ((api_id, kind), (count, first)) in groups {
        let hooks = db::select_active_webhooks(db, &first.workspace_id).await?;
        if !hooks.iter().any(|h| subscribed(&h.events, kind)) {
            continue;
        }
        // The window's write comes first: see `enqueue`.
        let mut tx = db.begin().await?;
        if !db::claim_event_window(&mut *tx, api_id, kind, minute).await? {
            continue;
        }
        let occurred_at = time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(first.timestamp_ms) * 1_000_000,
        )
        .map(db::format_timestamp)
        .unwrap_or_default();
        let event = Event {
            kind,
            workspace_id: first.workspace_id.clone(),
            data: json!({
                "api": { "id": api_id, "workspace_id": first.workspace_id, "slug": first.api_slug },
                "count": count,
                "first": {
                    "request_id": first.request_id,
                    "occurred_at": occurred_at,
                    "method": first.method,
                    "path": first.path,
                    "status": first.status,
                    "endpoint": first.endpoint_pattern.as_ref().map(|pattern| {
                        format!("{} {pattern}", first.endpoint_method.as_deref().unwrap_or("ANY"))
                    }),
                },
            }),
        };
        queued += enqueue(&mut tx, &event).await?;
        tx.commit().await?;
    }
    Ok(queued)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(status: u16, validation_failed: bool, endpoint: Option<&str>) -> AnalyticsEvent {
        serde_json::from_value(json!({
            "id": "e", "request_id": "r", "timestamp_ms": 0, "source": "edge",
            "workspace_id": "w", "api_id": "a", "api_slug": "s", "protocol": "rest",
            "endpoint_method": endpoint.map(|_| "GET"), "endpoint_pattern": endpoint,
            "method": "GET", "path": "/x", "status": status, "latency_ms": 1,
            "request_bytes": 0, "response_bytes": 0, "proxied": false, "deduplicated": false,
            "cache": "bypass", "validation_failed": validation_failed,
        }))
        .unwrap()
    }

    #[test]
    fn kinds() {
        assert_eq!(kind(&event(400, true, Some("/x"))), Some(VALIDATION_FAILED));
        assert_eq!(kind(&event(429, false, None)), Some(RATE_LIMITED));
        // A mock that answers 429 itself is not the rate limit.
        assert_eq!(kind(&event(429, false, Some("/x"))), None);
        assert_eq!(kind(&event(200, false, Some("/x"))), None);
        assert_eq!(kind(&event(404, false, None)), None);
    }
}
