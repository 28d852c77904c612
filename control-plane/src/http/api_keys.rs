//! `/api/v1/workspaces/{workspace}/api-keys`: keys for CI pipelines and scripts. A key is
//! shown once, when created; only its SHA-256 hash is stored. Revoking keeps the record.

use aide::axum::ApiRouter;
use aide::axum::routing::{get_with, post_with};
use axum::Json;
use axum::extract::State;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::docs::{Created, doc};
use super::workspaces::{find_workspace, find_workspace_with_role, validate_name};
use super::{AppState, InWorkspace, InWorkspaceItem, Input, PageQuery, Paginated, Params};
use crate::auth::{Caller, Role, new_api_key};
use crate::db::{self, ApiKeyRow, WorkspaceTable};
use crate::error::{ApiError, Result};

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/workspaces/{workspace}/api-keys",
            get_with(list_keys, doc("listApiKeys", "List a workspace's API keys"))
                .post_with(create_key, doc("createApiKey", "Create an API key (shown once)")),
        )
        .api_route(
            "/workspaces/{workspace}/api-keys/{id}",
            get_with(get_key, doc("getApiKey", "Read an API key's record"))
                .delete_with(revoke_key, doc("deleteApiKey", "Revoke an API key")),
        )
        .api_route(
            "/workspaces/{workspace}/api-keys/{id}/revoke",
            post_with(revoke_key, doc("revokeApiKey", "Revoke an API key")),
        )
        .with_path_items(|p| p.tag("api-keys"))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NewKey {
    #[schemars(length(min = 1, max = 200), pattern(super::NAME_PATTERN))]
    name: String,
    /// Defaults to `editor`. A key cannot have more than its creator's role.
    role: Option<Role>,
}

/// The answer to a creation: the record, and the key itself, this once.
#[derive(Debug, Serialize, JsonSchema)]
struct CreatedKey {
    #[serde(flatten)]
    record: ApiKeyRow,
    key: String,
}

async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    Params(InWorkspace { workspace }): Params<InWorkspace>,
    Input(new): Input<NewKey>,
) -> Result<Created<CreatedKey>> {
    let (workspace, mine) =
        find_workspace_with_role(&state, &caller, &workspace, Role::Admin).await?;
    validate_name("name", &new.name)?;
    let role = new.role.unwrap_or(Role::Editor);
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
    Ok(Created(CreatedKey { record, key }))
}

async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
    Params(InWorkspace { workspace }): Params<InWorkspace>,
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
    Params(InWorkspaceItem { workspace, id: key }): Params<InWorkspaceItem>,
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
    Params(InWorkspaceItem { workspace, id: key }): Params<InWorkspaceItem>,
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
