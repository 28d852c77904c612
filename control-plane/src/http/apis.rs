//! `/api/v1/workspaces/{workspace}/apis` and `/api/v1/apis/{api}`: create, list, read,
//! publish, and the snapshot the edge serves. An API is addressed by id or slug.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use edgemock_shared::Snapshot;
use edgemock_shared::model::validate_slug;
use serde::{Deserialize, Serialize};

use super::workspaces::validate_name;
use super::{AppState, Input, PageQuery, Paginated};
use crate::db::{self, ApiRow};
use crate::error::{ApiError, Result};
use crate::publish::build_snapshot;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/workspaces/{workspace}/apis", get(list_apis).post(create_api))
        .route("/apis/{api}", get(get_api))
        .route("/apis/{api}/publish", post(publish_api))
        .route("/apis/{api}/snapshot", get(get_snapshot))
}

#[derive(Debug, Deserialize)]
pub struct NewApi {
    /// Globally unique: the `{apiSlug}` of `/mock/{apiSlug}/…`.
    pub slug: String,
    /// Defaults to the slug.
    pub name: Option<String>,
}

/// An API as the admin API shows it.
#[derive(Debug, Serialize)]
pub struct ApiView {
    pub id: String,
    pub workspace_id: String,
    pub slug: String,
    pub name: String,
    /// The snapshot version: bumped by every change.
    pub version: i64,
    pub publish: PublishView,
    pub created_at: String,
    pub updated_at: String,
}

/// Where the API stands with the edge.
#[derive(Debug, Serialize)]
pub struct PublishView {
    /// `published` (the edge has the current version), `pending` (on its way),
    /// `retrying` (the last attempt failed; see `last_error`), or `disabled` (no `EDGE_URL`).
    pub state: &'static str,
    pub published_version: i64,
    pub published_at: Option<String>,
    pub last_error: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
}

impl ApiView {
    pub fn new(row: ApiRow, publishing: bool) -> Self {
        let state = if row.published_version >= row.version {
            "published"
        } else if !publishing {
            "disabled"
        } else if row.publish_error.is_some() {
            "retrying"
        } else {
            "pending"
        };
        Self {
            id: row.id,
            workspace_id: row.workspace_id,
            slug: row.slug,
            name: row.name,
            version: row.version,
            publish: PublishView {
                state,
                published_version: row.published_version,
                published_at: row.published_at,
                last_error: row.publish_error,
                attempts: row.publish_attempts,
                next_attempt_at: row.next_publish_at,
            },
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

async fn create_api(
    State(state): State<AppState>,
    Path(workspace): Path<String>,
    Input(new): Input<NewApi>,
) -> Result<(StatusCode, Json<ApiView>)> {
    validate_slug("slug", &new.slug)?;
    let name = new.name.unwrap_or_else(|| new.slug.clone());
    validate_name("name", &name)?;
    let workspace = db::select_workspace(&state.db, &workspace)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("workspace '{workspace}'")))?;
    let api = db::insert_api(&state.db, &workspace.id, &new.slug, &name).await.map_err(|e| {
        match ApiError::from(e) {
            ApiError::Conflict { .. } => ApiError::Conflict {
                field: Some("slug".into()),
                message: format!(
                    "an API with slug '{}' already exists (API slugs are global)",
                    new.slug
                ),
            },
            other => other,
        }
    })?;
    tracing::info!(api = %api.slug, workspace = %workspace.slug, "API created");
    // A new API is version 1 with no endpoints: publish it, so its routes answer 404 by
    // route rather than by API.
    state.publisher.wake();
    Ok((StatusCode::CREATED, Json(ApiView::new(api, state.publisher.enabled()))))
}

async fn list_apis(
    State(state): State<AppState>,
    Path(workspace): Path<String>,
    page: PageQuery,
) -> Result<Json<Paginated<ApiView>>> {
    let workspace = db::select_workspace(&state.db, &workspace)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("workspace '{workspace}'")))?;
    let rows = db::select_apis_of_workspace(&state.db, &workspace.id, page.fetch()).await?;
    let publishing = state.publisher.enabled();
    let views = rows.into_iter().map(|r| ApiView::new(r, publishing)).collect();
    Ok(Json(page.paginate(views, |a| a.id.clone())))
}

pub async fn find_api(state: &AppState, key: &str) -> Result<ApiRow> {
    db::select_api(&state.db, key).await?.ok_or_else(|| ApiError::NotFound(format!("API '{key}'")))
}

async fn get_api(State(state): State<AppState>, Path(key): Path<String>) -> Result<Json<ApiView>> {
    let api = find_api(&state, &key).await?;
    Ok(Json(ApiView::new(api, state.publisher.enabled())))
}

/// Publishes the API's current snapshot now, even if the edge is believed to have it (for
/// example after the edge's KV was reset). Answers with the resulting state; a failure is a
/// 502 naming the edge's answer, and is retried in the background as usual.
async fn publish_api(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<ApiView>> {
    let api = find_api(&state, &key).await?;
    if !state.publisher.enabled() {
        return Err(ApiError::Conflict {
            field: None,
            message: "publishing is disabled: the control plane has no EDGE_URL".into(),
        });
    }
    if let Err(e) = state.publisher.publish_api(&api.id).await {
        return Err(ApiError::BadGateway(format!("{e:#}")));
    }
    let api = find_api(&state, &api.id).await?;
    Ok(Json(ApiView::new(api, true)))
}

/// The snapshot exactly as it is published to the edge.
async fn get_snapshot(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<Snapshot>> {
    let api = find_api(&state, &key).await?;
    build_snapshot(&state.db, &api.id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("API '{key}'")))
}
