//! `/api/v1/workspaces/{workspace}/members`: which JWT subjects have which role in a
//! workspace. Admins manage members up to admin; only owners grant or touch owner.

use aide::axum::ApiRouter;
use aide::axum::routing::get_with;
use axum::Json;
use axum::extract::State;
use axum::response::NoContent;
use schemars::JsonSchema;
use serde::Deserialize;

use super::docs::{Created, doc};
use super::workspaces::{find_workspace, find_workspace_with_role};
use super::{AppState, InWorkspace, InWorkspaceItem, Input, PageQuery, Paginated, Params};
use crate::auth::{Caller, Role};
use crate::db::{self, MemberRow, WorkspaceTable};
use crate::error::{ApiError, Result};

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/workspaces/{workspace}/members",
            get_with(list_members, doc("listMembers", "List a workspace's members"))
                .post_with(add_member, doc("addMember", "Give a subject a role")),
        )
        .api_route(
            "/workspaces/{workspace}/members/{id}",
            get_with(get_member, doc("getMember", "Read a member"))
                .patch_with(change_member, doc("changeMember", "Change a member's role"))
                .delete_with(remove_member, doc("deleteMember", "Remove a member")),
        )
        .with_path_items(|p| p.tag("members"))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NewMember {
    /// The JWT `sub` of the person or system: printable, not blank.
    #[schemars(
        length(min = 1, max = 256),
        pattern(r"^[^\x00-\x1f\x7f-\x9f]*\S[^\x00-\x1f\x7f-\x9f]*$")
    )]
    subject: String,
    role: Role,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct MemberChange {
    role: Role,
}

fn validate_subject(subject: &str) -> Result<()> {
    if subject.trim().is_empty()
        || subject.chars().count() > 256
        || subject.chars().any(char::is_control)
    {
        return Err(ApiError::invalid("subject", "must be 1 to 256 printable characters"));
    }
    Ok(())
}

/// Admins may grant up to admin; owner is granted (and taken) by owners only.
fn check_grant(mine: Role, granted: Role) -> Result<()> {
    if granted == Role::Owner && mine < Role::Owner {
        return Err(ApiError::Forbidden("only owners grant or change the owner role".to_owned()));
    }
    Ok(())
}

async fn list_members(
    State(state): State<AppState>,
    caller: Caller,
    Params(InWorkspace { workspace }): Params<InWorkspace>,
    page: PageQuery,
) -> Result<Json<Paginated<MemberRow>>> {
    let workspace = find_workspace(&state, &caller, &workspace, Role::Viewer).await?;
    let rows =
        db::select_of_workspace(&state.db, WorkspaceTable::Members, &workspace.id, page.fetch())
            .await?;
    Ok(Json(page.paginate(rows, |m| m.id.clone())))
}

async fn add_member(
    State(state): State<AppState>,
    caller: Caller,
    Params(InWorkspace { workspace }): Params<InWorkspace>,
    Input(new): Input<NewMember>,
) -> Result<Created<MemberRow>> {
    let (workspace, mine) =
        find_workspace_with_role(&state, &caller, &workspace, Role::Admin).await?;
    validate_subject(&new.subject)?;
    let role = new.role;
    check_grant(mine, role)?;
    let row = db::insert_member(&state.db, &workspace.id, &new.subject, role.as_str())
        .await
        .map_err(|e| match ApiError::from(e) {
            ApiError::Conflict { .. } => ApiError::Conflict {
                field: Some("subject".into()),
                message: format!("'{}' is already a member", new.subject),
            },
            other => other,
        })?;
    tracing::info!(workspace = %workspace.slug, subject = %row.subject, role = %row.role, by = %caller.who(), "member added");
    Ok(Created(row))
}

async fn find_member(state: &AppState, workspace_id: &str, key: &str) -> Result<MemberRow> {
    db::select_member_by_id(&state.db, workspace_id, key)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("member '{key}'")))
}

async fn get_member(
    State(state): State<AppState>,
    caller: Caller,
    Params(InWorkspaceItem { workspace, id: member }): Params<InWorkspaceItem>,
) -> Result<Json<MemberRow>> {
    let workspace = find_workspace(&state, &caller, &workspace, Role::Viewer).await?;
    find_member(&state, &workspace.id, &member).await.map(Json)
}

async fn change_member(
    State(state): State<AppState>,
    caller: Caller,
    Params(InWorkspaceItem { workspace, id: member }): Params<InWorkspaceItem>,
    Input(change): Input<MemberChange>,
) -> Result<Json<MemberRow>> {
    let (workspace, mine) =
        find_workspace_with_role(&state, &caller, &workspace, Role::Admin).await?;
    let member = find_member(&state, &workspace.id, &member).await?;
    let role = change.role;
    check_grant(mine, role)?;
    check_grant(mine, Role::parse("role", &member.role).unwrap_or(Role::Owner))?;
    let row = db::update_member_role(&state.db, &member.id, role.as_str()).await?;
    tracing::info!(workspace = %workspace.slug, subject = %row.subject, role = %row.role, by = %caller.who(), "member changed");
    Ok(Json(row))
}

async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    Params(InWorkspaceItem { workspace, id: member }): Params<InWorkspaceItem>,
) -> Result<NoContent> {
    let (workspace, mine) =
        find_workspace_with_role(&state, &caller, &workspace, Role::Admin).await?;
    let member = find_member(&state, &workspace.id, &member).await?;
    check_grant(mine, Role::parse("role", &member.role).unwrap_or(Role::Owner))?;
    db::delete_member(&state.db, &member.id).await?;
    tracing::info!(workspace = %workspace.slug, subject = %member.subject, by = %caller.who(), "member removed");
    Ok(NoContent)
}
