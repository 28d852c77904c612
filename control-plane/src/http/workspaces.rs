//! `/api/v1/workspaces`: create, list, read, update settings, delete. A workspace is
//! addressed by id or slug. Callers see only the workspaces they have a role in.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use edgemock_shared::model::validate_slug;
use serde::Deserialize;

use super::{AppState, Input, PageQuery, Paginated};
use crate::auth::{Caller, Role};
use crate::db::{self, WorkspaceRow};
use crate::error::{ApiError, Result};

pub fn router() -> Router<AppState> {
    Router::new().route("/workspaces", get(list_workspaces).post(create_workspace)).route(
        "/workspaces/{workspace}",
        get(get_workspace).patch(update_workspace).delete(delete_workspace),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWorkspace {
    pub slug: String,
    /// Defaults to the slug.
    pub name: Option<String>,
}

/// A workspace's settings; absent fields keep their value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceChanges {
    pub name: Option<String>,
    /// `free`, `pro` or `enterprise`.
    pub plan: Option<String>,
    /// Requests a minute for the workspace's mocks; `null` takes the plan's default.
    #[serde(default, deserialize_with = "super::explicit_null")]
    pub rate_limit_rpm: Option<Option<i64>>,
}

/// Names are free text shown to people: bounded, and never blank.
pub fn validate_name(field: &str, name: &str) -> Result<()> {
    if name.trim().is_empty() || name.chars().count() > 200 {
        return Err(ApiError::invalid(field, "must be 1 to 200 characters and not blank"));
    }
    Ok(())
}

/// The workspace `key` (id or slug) if `caller` has at least `needed` in it; 404 otherwise
/// (or 403 when the caller has a smaller role there).
pub async fn find_workspace(
    state: &AppState,
    caller: &Caller,
    key: &str,
    needed: Role,
) -> Result<WorkspaceRow> {
    find_workspace_with_role(state, caller, key, needed).await.map(|(workspace, _)| workspace)
}

/// As [`find_workspace`], with the caller's role there (for routes that grant roles).
pub async fn find_workspace_with_role(
    state: &AppState,
    caller: &Caller,
    key: &str,
    needed: Role,
) -> Result<(WorkspaceRow, Role)> {
    let not_found = || ApiError::NotFound(format!("workspace '{key}'"));
    let workspace = db::select_workspace(&state.db, key).await?.ok_or_else(not_found)?;
    let role = caller.require(state, &workspace, needed, not_found).await?;
    Ok((workspace, role))
}

async fn create_workspace(
    State(state): State<AppState>,
    caller: Caller,
    Input(new): Input<NewWorkspace>,
) -> Result<(StatusCode, Json<WorkspaceRow>)> {
    if !caller.is_global() {
        return Err(ApiError::Forbidden(
            "creating workspaces needs a token for every workspace (\"workspaces\": [\"*\"])"
                .to_owned(),
        ));
    }
    if let Caller::Token(claims) = &caller
        && claims.role < Role::Admin
    {
        return Err(ApiError::Forbidden("creating workspaces needs the admin role".to_owned()));
    }
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
    tracing::info!(workspace = %workspace.slug, by = %caller.who(), "workspace created");
    Ok((StatusCode::CREATED, Json(workspace)))
}

async fn list_workspaces(
    State(state): State<AppState>,
    caller: Caller,
    page: PageQuery,
) -> Result<Json<Paginated<WorkspaceRow>>> {
    let rows = match &caller {
        _ if caller.is_global() => db::select_workspaces(&state.db, page.fetch()).await?,
        Caller::Token(claims) => {
            db::select_workspaces_visible(
                &state.db,
                &claims.workspaces,
                Some(&claims.sub),
                page.fetch(),
            )
            .await?
        }
        Caller::ApiKey { workspace_id, .. } => {
            db::select_workspaces_visible(
                &state.db,
                std::slice::from_ref(workspace_id),
                None,
                page.fetch(),
            )
            .await?
        }
    };
    Ok(Json(page.paginate(rows, |w| w.id.clone())))
}

async fn get_workspace(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<Json<WorkspaceRow>> {
    find_workspace(&state, &caller, &key, Role::Viewer).await.map(Json)
}

async fn update_workspace(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    Input(changes): Input<WorkspaceChanges>,
) -> Result<Json<WorkspaceRow>> {
    let workspace = find_workspace(&state, &caller, &key, Role::Admin).await?;
    let name = changes.name.unwrap_or(workspace.name);
    validate_name("name", &name)?;
    let plan = changes.plan.unwrap_or(workspace.plan);
    if !matches!(plan.as_str(), "free" | "pro" | "enterprise") {
        return Err(ApiError::invalid("plan", "must be free, pro or enterprise"));
    }
    let rate_limit_rpm = changes.rate_limit_rpm.unwrap_or(workspace.rate_limit_rpm);
    if rate_limit_rpm.is_some_and(|r| !(0..=10_000_000).contains(&r)) {
        return Err(ApiError::invalid("rate_limit_rpm", "must be between 0 and 10000000"));
    }
    let updated =
        db::update_workspace(&state.db, &workspace.id, &name, &plan, rate_limit_rpm).await?;
    // The plan and limit travel in every API's snapshot: republish them.
    db::bump_apis_of_workspace(&state.db, &workspace.id).await?;
    state.publisher.wake();
    tracing::info!(workspace = %updated.slug, by = %caller.who(), "workspace updated");
    Ok(Json(updated))
}

/// Deletes the workspace with everything in it; its APIs are removed from the edge.
async fn delete_workspace(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<StatusCode> {
    let workspace = find_workspace(&state, &caller, &key, Role::Owner).await?;
    db::delete_workspace(&state.db, &workspace.id).await?;
    state.publisher.wake();
    tracing::info!(workspace = %workspace.slug, by = %caller.who(), "workspace deleted");
    Ok(StatusCode::NO_CONTENT)
}
