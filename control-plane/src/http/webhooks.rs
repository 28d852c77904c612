//! `/api/v1/workspaces/{workspace}/webhooks`: subscriptions to the workspace's events, their
//! secrets, and their deliveries (each with its attempts) with manual redelivery. Delivery
//! itself is [`crate::webhooks`].
//!
//! A URL must pass the same checks as proxy targets (https only and no private networks,
//! unless `PROXY_ALLOW_HTTP` / `PROXY_ALLOW_PRIVATE_NETWORKS`), so a webhook cannot be
//! pointed at the control plane's own network; the delivery loop checks it again, resolved,
//! at every attempt.

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
use crate::webhooks::EVENTS;

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
        .api_route(
            "/workspaces/{workspace}/webhooks/{id}/deliveries",
            get_with(
                list_deliveries,
                doc("listWebhookDeliveries", "List a webhook's deliveries with their attempts"),
            ),
        )
        .api_route(
            "/workspaces/{workspace}/webhooks/{id}/deliveries/{delivery}",
            get_with(read_delivery, doc("getWebhookDelivery", "Read a delivery with its attempts")),
        )
        .api_route(
            "/workspaces/{workspace}/webhooks/{id}/deliveries/{delivery}/redeliver",
            post_with(
                redeliver,
                doc("redeliverWebhookDelivery", "Send a delivery again, with a new retry round"),
            ),
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

// --- deliveries ---

/// `{workspace}/webhooks/{id}/deliveries/{delivery}`.
#[derive(Debug, Deserialize, JsonSchema)]
struct InDelivery {
    /// The workspace's id or slug.
    workspace: String,
    /// The webhook's id.
    id: String,
    /// The delivery's id (its `webhook-id` header).
    delivery: String,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum DeliveryState {
    /// Waiting for `next_attempt_at` (the first attempt, or a retry).
    Pending,
    /// An attempt is under way.
    Delivering,
    /// The receiver answered 2xx.
    Succeeded,
    /// Every attempt of the last round failed, or the webhook is inactive or gone.
    Failed,
}

/// One event on its way to one webhook.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "WebhookDelivery")]
struct DeliveryView {
    /// Also the `webhook-id` header, the same for every attempt.
    id: String,
    webhook_id: String,
    #[schemars(with = "EventName")]
    event_type: String,
    /// The body sent (and signed): `{"type", "timestamp", "data"}`.
    payload: serde_json::Value,
    state: DeliveryState,
    /// When the next attempt is due (`pending`), or when an attempt under way is given up
    /// for lost (`delivering`).
    next_attempt_at: Option<String>,
    /// The last attempt's HTTP status, if the receiver answered.
    last_status: Option<i32>,
    /// Why the last attempt failed.
    last_error: Option<String>,
    /// Every attempt, oldest first.
    attempts: Vec<AttemptView>,
    created_at: String,
    updated_at: String,
}

/// One attempt at a delivery.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "WebhookAttempt")]
struct AttemptView {
    /// 1, 2, 3 … across redeliveries.
    number: i64,
    attempted_at: String,
    /// The receiver's status; `null` when it did not answer (refused, unreachable,
    /// timeout).
    status: Option<i32>,
    /// From sending the request to the answer's headers.
    latency_ms: i64,
    /// Why it failed; `null` on success.
    error: Option<String>,
}

impl DeliveryView {
    fn new(row: db::DeliveryRow, attempts: Vec<AttemptView>) -> Self {
        let state = match row.state.as_str() {
            "pending" => DeliveryState::Pending,
            "delivering" => DeliveryState::Delivering,
            "succeeded" => DeliveryState::Succeeded,
            _ => DeliveryState::Failed,
        };
        Self {
            payload: serde_json::from_str(&row.payload).unwrap_or(serde_json::Value::Null),
            id: row.id,
            webhook_id: row.webhook_id,
            event_type: row.event_type,
            state,
            next_attempt_at: row.next_attempt_at,
            last_status: row.last_status,
            last_error: row.last_error,
            attempts,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// The views of `rows`, each with its attempts (one query for all of them).
async fn with_attempts(state: &AppState, rows: Vec<db::DeliveryRow>) -> Result<Vec<DeliveryView>> {
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let mut attempts: std::collections::HashMap<String, Vec<AttemptView>> =
        std::collections::HashMap::new();
    for a in db::select_attempts(&state.db, &ids).await? {
        attempts.entry(a.delivery_id).or_default().push(AttemptView {
            number: a.number,
            attempted_at: a.attempted_at,
            status: a.status,
            latency_ms: a.latency_ms,
            error: a.error,
        });
    }
    Ok(rows
        .into_iter()
        .map(|row| {
            let mine = attempts.remove(&row.id).unwrap_or_default();
            DeliveryView::new(row, mine)
        })
        .collect())
}

async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Params(InWorkspaceItem { workspace, id }): Params<InWorkspaceItem>,
    page: PageQuery,
) -> Result<Json<Paginated<DeliveryView>>> {
    let workspace = find_workspace(&state, &caller, &workspace, Role::Admin).await?;
    let hook = find(&state, &workspace.id, &id).await?;
    let rows = db::select_deliveries_of_webhook(&state.db, &hook.id, page.fetch()).await?;
    let views = with_attempts(&state, rows).await?;
    Ok(Json(page.paginate(views, |d: &DeliveryView| d.id.clone())))
}

async fn find_delivery(
    state: &AppState,
    caller: &Caller,
    InDelivery { workspace, id, delivery }: &InDelivery,
) -> Result<WebhookRow> {
    let workspace = find_workspace(state, caller, workspace, Role::Admin).await?;
    let hook = find(state, &workspace.id, id).await?;
    if db::select_delivery(&state.db, &hook.id, delivery).await?.is_none() {
        return Err(ApiError::NotFound(format!("delivery '{delivery}'")));
    }
    Ok(hook)
}

async fn read_delivery(
    State(state): State<AppState>,
    caller: Caller,
    Params(at): Params<InDelivery>,
) -> Result<Json<DeliveryView>> {
    let workspace = find_workspace(&state, &caller, &at.workspace, Role::Admin).await?;
    let hook = find(&state, &workspace.id, &at.id).await?;
    let row = db::select_delivery(&state.db, &hook.id, &at.delivery)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("delivery '{}'", at.delivery)))?;
    let view = with_attempts(&state, vec![row]).await?.pop();
    view.map(Json).ok_or_else(|| ApiError::NotFound(format!("delivery '{}'", at.delivery)))
}

/// Makes the delivery due now with the whole retry schedule again, whatever its state (an
/// attempt under way finishes and is recorded, but no longer decides the state). The
/// current subscription's URL and secret are used.
async fn redeliver(
    State(state): State<AppState>,
    caller: Caller,
    Params(at): Params<InDelivery>,
) -> Result<Json<DeliveryView>> {
    let hook = find_delivery(&state, &caller, &at).await?;
    let row = db::redeliver(&state.db, &hook.id, &at.delivery)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("delivery '{}'", at.delivery)))?;
    state.outbox.wake();
    tracing::info!(webhook = %hook.id, delivery = %row.id, by = %caller.who(), "redelivery requested");
    let view = with_attempts(&state, vec![row]).await?.pop();
    view.map(Json).ok_or_else(|| ApiError::NotFound(format!("delivery '{}'", at.delivery)))
}
