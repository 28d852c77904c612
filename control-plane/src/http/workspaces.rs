//! `/api/v1/workspaces`: create, list, read, update settings, delete. A workspace is
//! addressed by id or slug. Callers see only the workspaces they have a role in.

use aide::axum::ApiRouter;
use aide::axum::routing::get_with;
use axum::Json;
use axum::extract::State;
use axum::response::NoContent;
use edgemock_shared::model::validate_slug;
use schemars::JsonSchema;
use serde::Deserialize;

use super::docs::{Created, doc};
use super::{AppState, InWorkspace, Input, PageQuery, Paginated, Params};
use crate::auth::{Caller, Role};
use crate::db::{self, WorkspaceRow};
use crate::error::{ApiError, Result};
use crate::webhooks::{Event, enqueue};

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/workspaces",
            get_with(list_workspaces, doc("listWorkspaces", "List the workspaces you can see"))
                .post_with(create_workspace, doc("createWorkspace", "Create a workspace")),
        )
        .api_route(
            "/workspaces/{workspace}",
            get_with(get_workspace, doc("getWorkspace", "Read a workspace"))
                .patch_with(
                    update_workspace,
                    doc("updateWorkspace", "Change a workspace's settings"),
                )
                .delete_with(
                    delete_workspace,
                    doc("deleteWorkspace", "Delete a workspace with everything in it"),
                ),
        )
        .with_path_items(|p| p.tag("workspaces"))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWorkspace {
    #[schemars(pattern(super::SLUG_PATTERN))]
    pub slug: String,
    /// Defaults to the slug.
    #[schemars(length(min = 1, max = 200), pattern(super::NAME_PATTERN))]
    pub name: Option<String>,
}

/// A workspace's settings; absent fields keep their value.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceChanges {
    #[schemars(length(min = 1, max = 200), pattern(super::NAME_PATTERN))]
    pub name: Option<String>,
    /// Picks the edge's default rate limit.
    pub plan: Option<Plan>,
    /// Requests a minute for the workspace's mocks; `null` takes the plan's default.
    #[serde(default, deserialize_with = "super::explicit_null")]
    #[schemars(range(min = 0, max = 10_000_000))]
    pub rate_limit_rpm: Option<Option<i64>>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    Free,
    Pro,
    Enterprise,
}

impl Plan {
    fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Pro => "pro",
            Self::Enterprise => "enterprise",
        }
    }
}

/// Names are free text shown to people: bounded, and never blank.
pub fn validate_name(field: &str, name: &str) -> Result<()> {
    if name.trim().is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            "must be 1 to 200 printable characters and not blank",
        ));
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
) -> Result<Created<WorkspaceRow>> {
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
    Ok(Created(workspace))
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
    Params(InWorkspace { workspace: key }): Params<InWorkspace>,
) -> Result<Json<WorkspaceRow>> {
    find_workspace(&state, &caller, &key, Role::Viewer).await.map(Json)
}

async fn update_workspace(
    State(state): State<AppState>,
    caller: Caller,
    Params(InWorkspace { workspace: key }): Params<InWorkspace>,
    Input(changes): Input<WorkspaceChanges>,
) -> Result<Json<WorkspaceRow>> {
    let workspace = find_workspace(&state, &caller, &key, Role::Admin).await?;
    let name = changes.name.unwrap_or(workspace.name);
    validate_name("name", &name)?;
    let plan = changes.plan.map_or(workspace.plan, |p| p.as_str().to_owned());
    let rate_limit_rpm = changes.rate_limit_rpm.unwrap_or(workspace.rate_limit_rpm);
    if rate_limit_rpm.is_some_and(|r| !(0..=10_000_000).contains(&r)) {
        return Err(ApiError::invalid("rate_limit_rpm", "must be between 0 and 10000000"));
    }
    let _turn = state.write_turn().await;
    let mut tx = state.db.begin().await?;
    let updated =
        db::update_workspace(&mut *tx, &workspace.id, &name, &plan, rate_limit_rpm).await?;
    // The plan and limit travel in every API's snapshot: republish them.
    db::bump_apis_of_workspace(&mut *tx, &workspace.id).await?;
    let queued = enqueue(&mut tx, &Event::workspace("workspace.updated", &updated)).await?;
    tx.commit().await?;
    state.publisher.wake();
    state.wake_outbox(queued);
    tracing::info!(workspace = %updated.slug, by = %caller.who(), "workspace updated");
    Ok(Json(updated))
}

/// Deletes the workspace with everything in it; its APIs are removed from the edge.
async fn delete_workspace(
    State(state): State<AppState>,
    caller: Caller,
    Params(InWorkspace { workspace: key }): Params<InWorkspace>,
) -> Result<NoContent> {
    let workspace = find_workspace(&state, &caller, &key, Role::Owner).await?;
    let _turn = state.write_turn().await;
    let mut tx = state.db.begin().await?;
    // The event before the deletion, which takes the subscriptions with it but keeps their
    // pending deliveries' targets (see `db::delete_workspace`); the touch is the
    // transaction's first write (see `enqueue`).
    db::touch_workspace(&mut *tx, &workspace.id).await?;
    let queued = enqueue(&mut tx, &Event::workspace("workspace.deleted", &workspace)).await?;
    let slugs = db::api_slugs_of_workspace(&mut *tx, &workspace.id).await?;
    db::delete_workspace(&mut tx, &workspace.id).await?;
    tx.commit().await?;
    state.publisher.wake();
    state.wake_outbox(queued);
    for slug in &slugs {
        state.runtime.forget(slug);
        if let Some(metrics) = &state.metrics {
            metrics.forget_api(slug);
        }
    }
    tracing::info!(workspace = %workspace.slug, by = %caller.who(), "workspace deleted");
    Ok(NoContent)
}
