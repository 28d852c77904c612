//! `/api/v1/workspaces/{workspace}/api-keys`: keys for CI pipelines and scripts. A key is
//! shown once, when created; only its SHA-256 hash is stored. Revoking keeps the record.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::workspaces::{find_workspace, find_workspace_with_role, validate_name};
use super::{AppState, Input, PageQuery, Paginated};
use crate::auth::{Caller, Role, new_api_key};
use crate::db::{self, ApiKeyRow, WorkspaceTable};
use crate::error::{ApiError, Result};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/workspaces/{workspace}/api-keys", get(list_keys).post(create_key))
        .route("/workspaces/{workspace}/api-keys/{key}", get(get_key).delete(revoke_key))
        .route("/workspaces/{workspace}/api-keys/{key}/revoke", post(revoke_key))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    name: String,
    /// Defaults to `editor`. A key cannot have more than its creator's role.
    role: Option<String>,
}

/// The answer to a creation: the record, and the key itself, this once.
#[derive(Debug, Serialize)]
struct CreatedKey {
    #[serde(flatten)]
    record: ApiKeyRow,
    key: String,
}

async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(workspace): Path<String>,
    Input(new): Input<NewKey>,
) -> Result<(StatusCode, Json<CreatedKey>)> {
    let (workspace, mine) =
        find_workspace_with_role(&state, &caller, &workspace, Role::Admin).await?;
    validate_name("name", &new.name)?;
    let role = Role::parse("role", new.role.as_deref().unwrap_or("editor"))?;
    if role > mine {
        return Err(ApiError::Forbidden(format!(
            "a key cannot have more than your role ({})",
            mine.as_str()
        )));
    }
    let (key, hash) = new_api_key()?;
    let prefix: String = key.chars().take(12).collect();
    let record =
        db::insert_api_key(&state.db, &workspace.id, &new.name, role.as_str(), &prefix, &hash)
            .await?;
    tracing::info!(workspace = %workspace.slug, key = %record.id, role = %record.role, by = %caller.who(), "API key created");
    Ok((StatusCode::CREATED, Json(CreatedKey { record, key })))
}

async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
    Path(workspace): Path<String>,
    page: PageQuery,
) -> Result<Json<Paginated<ApiKeyRow>>> {
    let workspace = find_workspace(&state, &caller, &workspace, Role::Admin).await?;
    let rows =
        db::select_of_workspace(&state.db, WorkspaceTable::ApiKeys, &workspace.id, page.fetch())
            .await?;
    Ok(Json(page.paginate(rows, |k| k.id.clone())))
}

async fn get_key(
    State(state): State<AppState>,
    caller: Caller,
    Path((workspace, key)): Path<(String, String)>,
) -> Result<Json<ApiKeyRow>> {
    let workspace = find_workspace(&state, &caller, &workspace, Role::Admin).await?;
    db::select_one_of_workspace::<ApiKeyRow>(
        &state.db,
        WorkspaceTable::ApiKeys,
        &workspace.id,
        &key,
    )
    .await?
    .map(Json)
    .ok_or_else(|| ApiError::NotFound(format!("API key '{key}'")))
}

/// Revokes a key at once: the next request with it is a 401.
async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    Path((workspace, key)): Path<(String, String)>,
) -> Result<Json<ApiKeyRow>> {
    let workspace = find_workspace(&state, &caller, &workspace, Role::Admin).await?;
    let record = db::select_one_of_workspace::<ApiKeyRow>(
        &state.db,
        WorkspaceTable::ApiKeys,
        &workspace.id,
        &key,
    )
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("API key '{key}'")))?;
    let revoked = db::revoke_api_key(&state.db, &record.id).await?;
    tracing::info!(workspace = %workspace.slug, key = %record.id, by = %caller.who(), "API key revoked");
    Ok(Json(revoked))
}
