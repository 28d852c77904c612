//! Routes for the edge, not for admins:
//! - `GET /internal/v1/snapshots/{apiSlug}` answers an API's current snapshot, which the edge
//!   fetches when Workers KV does not have it yet;
//! - `POST /internal/v1/analytics` stores a batch of analytics events, idempotently by event
//!   id (the edge's queue consumer retries whole batches until one is acknowledged), and
//!   queues the `mock.*` webhook events they call for (`webhooks::mock`).
//!
//! Authenticated with the secret both sides share (`Authorization: Bearer
//! $EDGE_PUBLISH_TOKEN`), compared in constant time; without the secret the routes do not
//! exist (404).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use edgemock_shared::analytics::AnalyticsBatch;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::apis::find_api;
use super::{AppState, Input};
use crate::error::{ApiError, Result};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/internal/v1/snapshots/{api}", get(get_internal_snapshot))
        .route("/internal/v1/analytics", post(post_analytics))
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<()> {
    let Some(expected) = &state.internal_token else {
        return Err(ApiError::NotFound("route".to_owned()));
    };
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized("a valid edge token is required".to_owned()))
    }
}

/// The snapshot as the publisher would send it; with `REDIS_URL`, Redis' copy of this
/// version when it has one (see [`crate::runtime`]).
async fn get_internal_snapshot(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<axum::response::Response> {
    use axum::response::IntoResponse;
    authorize(&state, &headers)?;
    let api = find_api(&state, &key).await?;
    let body = state.runtime.snapshot_json(&api).await.map_err(|e| match e {
        crate::runtime::LoadError::Database(e) => ApiError::from(e),
        crate::runtime::LoadError::Unreadable(e) => ApiError::Internal(e),
    })?;
    let body = body.ok_or_else(|| ApiError::NotFound(format!("API '{key}'")))?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Stores the batch in one transaction: all of it or, on a database error, none (the edge
/// then retries the whole batch). Events already stored are skipped and counted as
/// duplicates, so a retry after a lost acknowledgement changes nothing.
async fn post_analytics(
    State(state): State<AppState>,
    headers: HeaderMap,
    batch: Result<Input<AnalyticsBatch>, ApiError>,
) -> Result<Json<Value>> {
    // The credential first: a caller without one learns nothing about the body.
    authorize(&state, &headers)?;
    let Input(batch) = batch?;
    batch.validate()?;
    let received_at_ms = crate::db::now_ms();
    if state.tally.is_none() {
        // ANALYTICS_ENABLED=false: accepted (so the edge does not retry) and not stored; the
        // webhooks that take mock events still get them.
        let queued =
            crate::webhooks::mock::enqueue_from_analytics(&state.db, &batch.events).await?;
        state.wake_outbox(queued);
        return Ok(Json(json!({
            "received": batch.events.len(),
            "stored": 0,
            "duplicates": 0,
            "disabled": true,
        })));
    }
    let inserted =
        crate::db::insert_analytics_events(&state.db, &batch.events, received_at_ms).await?;
    // The edge's answers in the mock metrics, each once: a redelivered event is not new.
    if let Some(metrics) = &state.metrics {
        let new: std::collections::HashSet<&str> = inserted.iter().map(String::as_str).collect();
        let newest = batch
            .events
            .iter()
            .filter(|e| new.contains(e.id.as_str()))
            .map(|e| e.timestamp_ms)
            .max();
        if let Some(newest) = newest {
            #[allow(clippy::cast_precision_loss)] // milliseconds: far inside f64's range
            metrics.analytics_lag((received_at_ms - newest) as f64 / 1000.0);
        }
        for event in batch.events.iter().filter(|e| new.contains(e.id.as_str())) {
            let endpoint = match (&event.endpoint_method, &event.endpoint_pattern) {
                (Some(method), Some(pattern)) => format!("{method} {pattern}"),
                _ => "-".to_owned(),
            };
            let labels = crate::metrics::MockLabels {
                runtime: "edge",
                api: &event.api_slug,
                method: crate::metrics::method_label(&event.method),
                endpoint: &endpoint,
                status: event.status,
            };
            let took = std::time::Duration::from_millis(u64::from(event.latency_ms));
            metrics.observe_mock(labels, took);
        }
    }
    let stored = inserted.len() as u64;
    let received = batch.events.len() as u64;
    // After the commit: a failure here answers 500, the edge sends the batch again, its
    // events are skipped as duplicates and the webhook events are queued then.
    let queued = crate::webhooks::mock::enqueue_from_analytics(&state.db, &batch.events).await?;
    state.wake_outbox(queued);
    tracing::debug!(received, stored, "analytics batch ingested");
    Ok(Json(json!({
        "received": received,
        "stored": stored,
        "duplicates": received - stored,
    })))
}
