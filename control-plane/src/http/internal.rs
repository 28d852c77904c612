//! Routes for the edge, not for admins: `GET /internal/v1/snapshots/{apiSlug}` answers an
//! API's current snapshot, which the edge fetches when Workers KV does not have it yet.
//! Authenticated with the secret both sides share (`Authorization: Bearer
//! $EDGE_PUBLISH_TOKEN`), compared in constant time; without the secret the routes do not
//! exist (404).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use edgemock_shared::Snapshot;
use subtle::ConstantTimeEq;

use super::AppState;
use super::apis::find_api;
use crate::error::{ApiError, Result};
use crate::publish::build_snapshot;

pub fn router() -> Router<AppState> {
    Router::new().route("/internal/v1/snapshots/{api}", get(get_internal_snapshot))
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

async fn get_internal_snapshot(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<Json<Snapshot>> {
    authorize(&state, &headers)?;
    let api = find_api(&state, &key).await?;
    build_snapshot(&state.db, &api.id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("API '{key}'")))
}
