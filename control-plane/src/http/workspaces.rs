//! `/api/v1/workspaces`: create, list, read. A workspace is addressed by id or slug.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use edgemock_shared::model::validate_slug;
use serde::Deserialize;

use super::{AppState, Input, PageQuery, Paginated};
use crate::db::{self, WorkspaceRow};
use crate::error::{ApiError, Result};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/workspaces", get(list_workspaces).post(create_workspace))
        .route("/workspaces/{workspace}", get(get_workspace))
}

#[derive(Debug, Deserialize)]
pub struct NewWorkspace {
    pub slug: String,
    /// Defaults to the slug.
    pub name: Option<String>,
}

/// Names are free text shown to people: bounded, and never blank.
pub fn validate_name(field: &str, name: &str) -> Result<()> {
    if name.trim().is_empty() || name.chars().count() > 200 {
        return Err(ApiError::invalid(field, "must be 1 to 200 characters and not blank"));
    }
    Ok(())
}

async fn create_workspace(
    State(state): State<AppState>,
    Input(new): Input<NewWorkspace>,
) -> Result<(StatusCode, Json<WorkspaceRow>)> {
    validate_slug("slug", &new.slug)?;
    let name = new.name.unwrap_or_else(|| new.slug.clone());
    validate_name("name", &name)?;
    let workspace =
        db::insert_workspace(&state.db, &new.slug, &name).await.map_err(
            |e| match ApiError::from(e) {
                ApiError::Conflict { .. } => ApiError::Conflict {
                    field: Some("slug".into()),
                    message: format!("a workspace with slug '{}' already exists", new.slug),
                },
                other => other,
            },
        )?;
    tracing::info!(workspace = %workspace.slug, "workspace created");
    Ok((StatusCode::CREATED, Json(workspace)))
}

async fn list_workspaces(
    State(state): State<AppState>,
    page: PageQuery,
) -> Result<Json<Paginated<WorkspaceRow>>> {
    let rows = db::select_workspaces(&state.db, page.fetch()).await?;
    Ok(Json(page.paginate(rows, |w| w.id.clone())))
}

async fn get_workspace(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> Result<Json<WorkspaceRow>> {
    db::select_workspace(&state.db, &key)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("workspace '{key}'")))
}
