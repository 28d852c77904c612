//! `GET /api/v1/apis/{api}/analytics`: an API's traffic (edge and native) by time bucket,
//! optionally grouped by endpoint, status, country or source, with error counts, latency
//! percentiles and sizes; `POST /api/v1/analytics/cleanup`: retention now (see
//! [`crate::analytics`]).

use aide::axum::ApiRouter;
use aide::axum::routing::{get_with, post_with};
use axum::Json;
use axum::extract::{Query, State};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::apis::authorize_api;
use super::docs::doc;
use super::{AppState, OfApi, Params};
use crate::analytics::{self, GroupBy, Row};
use crate::auth::{Caller, Role};
use crate::error::{ApiError, Result};

/// Most buckets × groups one query answers.
const MAX_BUCKETS: i64 = 10_000;

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/apis/{api}/analytics",
            get_with(query, doc("getApiAnalytics", "An API's traffic by time bucket")),
        )
        .api_route(
            "/analytics/cleanup",
            post_with(cleanup, doc("cleanupAnalytics", "Delete events past the retention")),
        )
        .with_path_items(|p| p.tag("analytics"))
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum Bucket {
    Minute,
    Hour,
    Day,
}

impl Bucket {
    fn ms(self) -> i64 {
        match self {
            Self::Minute => 60_000,
            Self::Hour => 3_600_000,
            Self::Day => 86_400_000,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AnalyticsQuery {
    /// Start, in milliseconds since the Unix epoch (default: 24 hours before `to_ms`).
    #[schemars(range(min = 0))]
    from_ms: Option<i64>,
    /// End, exclusive (default: now).
    #[schemars(range(min = 0))]
    to_ms: Option<i64>,
    /// Bucket width (default `hour`).
    bucket: Option<Bucket>,
    /// Default `none`.
    group_by: Option<GroupBy>,
    /// Only answers with this status.
    #[schemars(range(min = 100, max = 599))]
    status: Option<i32>,
    /// Only requests from this country (ISO 3166 code, as the edge reports it).
    #[schemars(length(max = 8), pattern(r"^[^\x00-\x1f\x7f-\x9f]*$"))]
    country: Option<String>,
    /// Only this endpoint, as `group_by=endpoint` names it (`GET /users/:id`).
    #[schemars(length(max = 1100), pattern(r"^[^\x00-\x1f\x7f-\x9f]*$"))]
    endpoint: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
struct AnalyticsAnswer {
    api_id: String,
    from_ms: i64,
    to_ms: i64,
    bucket_ms: i64,
    /// Ordered by bucket, then group. Buckets without traffic are absent.
    rows: Vec<Row>,
}

async fn query(
    State(state): State<AppState>,
    caller: Caller,
    Params(OfApi { api }): Params<OfApi>,
    params: std::result::Result<Query<AnalyticsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<AnalyticsAnswer>> {
    let api = authorize_api(&state, &caller, &api, Role::Viewer).await?;
    let Query(params) = params
        .map_err(|e| ApiError::BadRequest { code: "invalid_query", message: e.body_text() })?;
    let to_ms = params.to_ms.unwrap_or_else(crate::db::now_ms);
    let from_ms = params.from_ms.unwrap_or(to_ms - 86_400_000);
    if from_ms < 0 || to_ms < 0 {
        return Err(ApiError::invalid("from_ms", "times must not be negative"));
    }
    if from_ms >= to_ms {
        return Err(ApiError::invalid("from_ms", "must be before to_ms"));
    }
    let bucket_ms = params.bucket.unwrap_or(Bucket::Hour).ms();
    if (to_ms - from_ms) / bucket_ms > MAX_BUCKETS {
        return Err(ApiError::invalid(
            "bucket",
            format!("the window holds more than {MAX_BUCKETS} buckets: widen the bucket"),
        ));
    }
    if params.status.is_some_and(|s| !(100..=599).contains(&s)) {
        return Err(ApiError::invalid("status", "must be between 100 and 599"));
    }
    // Printable only: no stored value holds a control character (and PostgreSQL refuses a
    // NUL in text outright).
    let printable =
        |text: &str, max: usize| text.chars().count() <= max && !text.chars().any(char::is_control);
    if params.country.as_deref().is_some_and(|c| !printable(c, 8)) {
        return Err(ApiError::invalid("country", "must be at most 8 printable characters"));
    }
    if params.endpoint.as_deref().is_some_and(|e| !printable(e, 1100)) {
        return Err(ApiError::invalid("endpoint", "must be at most 1100 printable characters"));
    }
    let rows = analytics::query(
        &state.db,
        &analytics::Query {
            api_id: &api.id,
            from_ms,
            to_ms,
            bucket_ms,
            group_by: params.group_by.unwrap_or(GroupBy::None),
            status: params.status,
            country: params.country.as_deref(),
            endpoint: params.endpoint.as_deref(),
        },
    )
    .await?;
    Ok(Json(AnalyticsAnswer { api_id: api.id, from_ms, to_ms, bucket_ms, rows }))
}

#[derive(Debug, Serialize, JsonSchema)]
struct CleanupAnswer {
    /// Requests whose analytics were deleted.
    deleted: u64,
    /// Of them, edge events that were stored one by one.
    deleted_events: u64,
    /// Analytics of requests before this time were deleted (of whole minutes only).
    before_ms: i64,
    retention_days: u32,
}

/// Retention now, across every workspace: a token for `"*"` with the admin role.
async fn cleanup(State(state): State<AppState>, caller: Caller) -> Result<Json<CleanupAnswer>> {
    let global_admin = match &caller {
        Caller::Token(claims) => caller.is_global() && claims.role >= Role::Admin,
        Caller::ApiKey { .. } => false,
    };
    if !global_admin {
        return Err(ApiError::Forbidden(
            "analytics cleanup needs an admin token for every workspace (\"workspaces\": [\"*\"])"
                .to_owned(),
        ));
    }
    let days = state.analytics_retention_days;
    let cleaned = analytics::cleanup(&state.db, days).await?;
    tracing::info!(deleted = cleaned.requests, by = %caller.who(), "analytics cleanup on request");
    Ok(Json(CleanupAnswer {
        deleted: cleaned.requests,
        deleted_events: cleaned.events,
        before_ms: cleaned.before_ms,
        retention_days: days,
    }))
}
