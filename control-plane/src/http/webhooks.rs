//! `/api/v1/workspaces/{workspace}/webhooks`: subscriptions to the workspace's events.
//! Delivery (outbox, retries, Standard Webhooks signatures) comes with the operations
//! milestone; subscriptions, their secrets and their checks are here.
//!
//! A URL must pass the same checks as proxy targets (https only and no private networks,
//! unless `PROXY_ALLOW_HTTP` / `PROXY_ALLOW_PRIVATE_NETWORKS`), so a webhook cannot be
//! pointed at the control plane's own network.

use aide::axum::ApiRouter;
use aide::axum::routing::{get_with, post_with};
use axum::Json;
use axum::extract::State;
use axum::response::NoContent;
use base64::Engine as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::docs::{Created, doc};
use super::workspaces::find_workspace;
use super::{AppState, InWorkspace, InWorkspaceItem, Input, PageQuery, Paginated, Params};
use crate::auth::{Caller, Role};
use crate::db::{self, NewWebhookRow, WebhookRow, WorkspaceTable};
use crate::error::{ApiError, Result};

/// The events a webhook may subscribe to; `*` is all of them.
pub const EVENTS: &[&str] = &[
    "workspace.updated",
    "workspace.deleted",
    "api.created",
    "api.updated",
    "api.deleted",
    "api.published",
    "api.publish_failed",
    "endpoint.created",
    "endpoint.updated",
    "endpoint.deleted",
    "mock.validation_failed",
    "mock.rate_limited",
];

/// An event name in the OpenAPI document: one of [`EVENTS`], or `*` (the code keeps them as
/// strings, checked by `check`).
struct EventName;

impl JsonSchema for EventName {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EventName".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let names: Vec<&str> = EVENTS.iter().copied().chain(["*"]).collect();
        schemars::json_schema!({ "type": "string", "enum": names })
    }
}

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/workspaces/{workspace}/webhooks",
            get_with(list, doc("listWebhooks", "List a workspace's webhooks")).post_with(
                create,
                doc("createWebhook", "Subscribe a URL (the secret is shown once)"),
            ),
        )
        .api_route(
            "/workspaces/{workspace}/webhooks/{id}",
            get_with(read, doc("getWebhook", "Read a webhook"))
                .patch_with(change, doc("updateWebhook", "Change a webhook"))
                .delete_with(remove, doc("deleteWebhook", "Delete a webhook")),
        )
        .api_route(
            "/workspaces/{workspace}/webhooks/{id}/rotate-secret",
            post_with(rotate, doc("rotateWebhookSecret", "Replace a webhook's secret")),
        )
        .with_path_items(|p| p.tag("webhooks"))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NewWebhook {
    /// https, and not on a private network (unless the control plane allows them).
    #[schemars(length(max = 2048))]
    url: String,
    /// Event names, or `*` for all.
    #[schemars(with = "Vec<EventName>", length(min = 1))]
    events: Vec<String>,
    #[schemars(length(max = 500))]
    description: Option<String>,
    #[serde(default = "yes")]
    active: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct WebhookChanges {
    #[schemars(length(max = 2048))]
    url: Option<String>,
    #[schemars(with = "Option<Vec<EventName>>", length(min = 1))]
    events: Option<Vec<String>>,
    #[serde(default, deserialize_with = "super::explicit_null")]
    #[schemars(length(max = 500))]
    description: Option<Option<String>>,
    active: Option<bool>,
}

/// A webhook as listed: never its secret.
#[derive(Debug, Serialize, JsonSchema)]
struct WebhookView {
    id: String,
    workspace_id: String,
    url: String,
    events: Vec<String>,
    description: Option<String>,
    active: bool,
    created_at: String,
    updated_at: String,
}

/// A webhook as created or after its secret was rotated: with the secret, this once.
#[derive(Debug, Serialize, JsonSchema)]
struct WebhookWithSecret {
    #[serde(flatten)]
    webhook: WebhookView,
    secret: String,
}

impl From<WebhookRow> for WebhookView {
    fn from(row: WebhookRow) -> Self {
        Self {
            events: serde_json::from_str(&row.events).unwrap_or_default(),
            id: row.id,
            workspace_id: row.workspace_id,
            url: row.url,
            description: row.description,
            active: row.active != 0,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// A Standard Webhooks secret: `whsec_` and base64 of 32 random bytes.
fn new_secret() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes)))
}

fn check(state: &AppState, url: &str, events: &[String]) -> Result<String> {
    if url.len() > 2048 {
        return Err(ApiError::invalid("url", "must be at most 2048 characters"));
    }
    edgemock_shared::proxy::check_target(url, state.runtime.proxy_policy)
        .map_err(|why| ApiError::invalid("url", format!("is not allowed: {why}")))?;
    if events.is_empty() {
        return Err(ApiError::invalid("events", "must name at least one event, or \"*\""));
    }
    for (i, event) in events.iter().enumerate() {
        if event != "*" && !EVENTS.contains(&event.as_str()) {
            return Err(ApiError::invalid(
                format!("events[{i}]"),
                format!("'{event}' is not an event; use one of {} or \"*\"", EVENTS.join(", ")),
            ));
        }
    }
    let mut events = events.to_vec();
    events.sort();
    events.dedup();
    Ok(serde_json::to_string(&events).map_err(anyhow::Error::from)?)
}

fn check_description(description: Option<&str>) -> Result<()> {
    if description.is_some_and(|d| d.chars().count() > 500) {
        return Err(ApiError::invalid("description", "must be at most 500 characters"));
    }
    Ok(())
}

async fn find(state: &AppState, workspace_id: &str, id: &str) -> Result<WebhookRow> {
    db::select_one_of_workspace(&state.db, WorkspaceTable::Webhooks, workspace_id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("webhook '{id}'")))
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Params(InWorkspace { workspace }): Params<InWorkspace>,
    Input(new): Input<NewWebhook>,
) -> Result<Created<WebhookWithSecret>> {
    let workspace = find_workspace(&state, &caller, &workspace, Role::Admin).await?;
    let events = check(&state, &new.url, &new.events)?;
    check_description(new.description.as_deref())?;
    let secret = new_secret()?;
    let row = db::insert_webhook(
        &state.db,
        &workspace.id,
        &NewWebhookRow {
            url: &new.url,
            events: &events,
            description: new.description.as_deref(),
            secret: &secret,
            active: new.active,
        },
    )
    .await?;
    tracing::info!(workspace = %workspace.slug, webhook = %row.id, by = %caller.who(), "webhook created");
    Ok(Created(WebhookWithSecret { webhook: row.into(), secret }))
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Params(InWorkspace { workspace }): Params<InWorkspace>,
    page: PageQuery,
) -> Result<Json<Paginated<WebhookView>>> {
    let workspace = find_workspace(&state, &caller, &workspace, Role::Admin).await?;
    let rows = db::select_of_workspace::<WebhookRow>(
        &state.db,
        WorkspaceTable::Webhooks,
        &workspace.id,
        page.fetch(),
    )
    .await?;
    let views = rows.into_iter().map(WebhookView::from).collect();
    Ok(Json(page.paginate(views, |w: &WebhookView| w.id.clone())))
}

async fn read(
    State(state): State<AppState>,
    caller: Caller,
    Params(InWorkspaceItem { workspace, id }): Params<InWorkspaceItem>,
) -> Result<Json<WebhookView>> {
    let workspace = find_workspace(&state, &caller, &workspace, Role::Admin).await?;
    Ok(Json(find(&state, &workspace.id, &id).await?.into()))
}

async fn change(
    State(state): State<AppState>,
    caller: Caller,
    Params(InWorkspaceItem { workspace, id }): Params<InWorkspaceItem>,
    Input(changes): Input<WebhookChanges>,
) -> Result<Json<WebhookView>> {
    let workspace = find_workspace(&state, &caller, &workspace, Role::Admin).await?;
    let row = find(&state, &workspace.id, &id).await?;
    let url = changes.url.unwrap_or(row.url);
    let current: Vec<String> = serde_json::from_str(&row.events).unwrap_or_default();
    let events = check(&state, &url, &changes.events.unwrap_or(current))?;
    let description = changes.description.unwrap_or(row.description);
    check_description(description.as_deref())?;
    let updated = db::update_webhook(
        &state.db,
        &row.id,
        &NewWebhookRow {
            url: &url,
            events: &events,
            description: description.as_deref(),
            secret: &row.secret,
            active: changes.active.unwrap_or(row.active != 0),
        },
    )
    .await?;
    Ok(Json(updated.into()))
}

/// A new secret; the old one stops signing at once.
async fn rotate(
    State(state): State<AppState>,
    caller: Caller,
    Params(InWorkspaceItem { workspace, id }): Params<InWorkspaceItem>,
) -> Result<Json<WebhookWithSecret>> {
    let workspace = find_workspace(&state, &caller, &workspace, Role::Admin).await?;
    let row = find(&state, &workspace.id, &id).await?;
    let secret = new_secret()?;
    let updated = db::update_webhook(
        &state.db,
        &row.id,
        &NewWebhookRow {
            url: &row.url,
            events: &row.events,
            description: row.description.as_deref(),
            secret: &secret,
            active: row.active != 0,
        },
    )
    .await?;
    tracing::info!(workspace = %workspace.slug, webhook = %row.id, by = %caller.who(), "webhook secret rotated");
    Ok(Json(WebhookWithSecret { webhook: updated.into(), secret }))
}

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Params(InWorkspaceItem { workspace, id }): Params<InWorkspaceItem>,
) -> Result<NoContent> {
    let workspace = find_workspace(&state, &caller, &workspace, Role::Admin).await?;
    let row = find(&state, &workspace.id, &id).await?;
    db::delete_webhook(&state.db, &row.id).await?;
    Ok(NoContent)
}
