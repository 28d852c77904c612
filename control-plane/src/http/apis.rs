//! `/api/v1/workspaces/{workspace}/apis` and `/api/v1/apis/{api}`: create, list, read,
//! publish, and the snapshot the edge serves. An API is addressed by id or slug.

use aide::axum::ApiRouter;
use aide::axum::routing::{get_with, post_with};
use axum::Json;
use axum::extract::State;
use axum::response::NoContent;
use edgemock_shared::Snapshot;
use edgemock_shared::model::validate_slug;
use edgemock_shared::model::{Cors, Delay};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::docs::{Created, doc};
use super::workspaces::{find_workspace, validate_name};
use super::{AppState, InWorkspace, Input, OfApi, PageQuery, Paginated, Params};
use crate::auth::{Caller, Role};
use crate::db::{self, ApiRow};
use crate::error::{ApiError, Result};
use crate::publish::build_snapshot;
use crate::webhooks::{Event, enqueue};

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/workspaces/{workspace}/apis",
            get_with(list_apis, doc("listApis", "List a workspace's APIs"))
                .post_with(create_api, doc("createApi", "Create an API")),
        )
        .api_route(
            "/apis/{api}",
            get_with(get_api, doc("getApi", "Read an API and its publish state"))
                .patch_with(update_api, doc("updateApi", "Change an API's name or settings"))
                .delete_with(delete_api, doc("deleteApi", "Delete an API and its mocks")),
        )
        .api_route(
            "/apis/{api}/publish",
            post_with(publish_api, |o| {
                doc("publishApi", "Publish the API to the edge now")(o)
                    .response_with::<502, Json<crate::error::ErrorBody>, _>(|r| {
                        r.description("The edge refused or failed; the publish is retried.")
                    })
            }),
        )
        .api_route(
            "/apis/{api}/snapshot",
            get_with(get_snapshot, doc("getApiSnapshot", "The snapshot the edge serves")),
        )
        .with_path_items(|p| p.tag("apis"))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApi {
    /// Globally unique: the `{apiSlug}` of `/mock/{apiSlug}/…`.
    #[schemars(pattern(super::SLUG_PATTERN))]
    pub slug: String,
    /// Defaults to the slug.
    #[schemars(length(min = 1, max = 200), pattern(super::NAME_PATTERN))]
    pub name: Option<String>,
    // The settings, spelled out: serde cannot refuse unknown keys through `flatten`.
    #[serde(default)]
    pub base_headers: BTreeMap<String, String>,
    pub default_delay: Option<Delay>,
    pub cors: Option<Cors>,
}

/// What applies to all of an API's endpoints; stored as JSON and carried in its snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    /// Headers added to every response unless the response sets the same name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub base_headers: BTreeMap<String, String>,
    /// The delay of endpoints that define none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_delay: Option<Delay>,
    /// CORS: preflights answered and CORS headers on every response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
}

impl ApiSettings {
    fn validate(&self) -> Result<()> {
        edgemock_shared::ApiRef {
            base_headers: self.base_headers.clone(),
            default_delay: self.default_delay.clone(),
            cors: self.cors.clone(),
            ..Default::default()
        }
        .validate()
        .map_err(ApiError::from)
    }
}

/// Changes to an API: absent fields keep their value; a settings field replaces the old one
/// whole (`null` clears `default_delay` and `cors`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiChanges {
    #[schemars(length(min = 1, max = 200), pattern(super::NAME_PATTERN))]
    pub name: Option<String>,
    pub base_headers: Option<BTreeMap<String, String>>,
    #[serde(default, deserialize_with = "super::explicit_null")]
    pub default_delay: Option<Option<Delay>>,
    #[serde(default, deserialize_with = "super::explicit_null")]
    pub cors: Option<Option<Cors>>,
}

/// An API as the admin API shows it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ApiView {
    pub id: String,
    pub workspace_id: String,
    pub slug: String,
    pub name: String,
    /// The snapshot version: bumped by every change.
    pub version: i64,
    #[serde(flatten)]
    pub settings: ApiSettings,
    pub publish: PublishView,
    pub created_at: String,
    pub updated_at: String,
}

/// Where the API stands with the edge.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PublishView {
    pub state: PublishState,
    pub published_version: i64,
    pub published_at: Option<String>,
    pub last_error: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PublishState {
    /// The edge has the current version.
    Published,
    /// On its way.
    Pending,
    /// The last attempt failed (see `last_error`); it is retried.
    Retrying,
    /// The control plane has no `EDGE_URL`.
    Disabled,
}

impl ApiView {
    pub fn new(row: ApiRow, publishing: bool) -> Self {
        let state = if row.published_version >= row.version {
            PublishState::Published
        } else if !publishing {
            PublishState::Disabled
        } else if row.publish_error.is_some() {
            PublishState::Retrying
        } else {
            PublishState::Pending
        };
        let settings = serde_json::from_str(&row.settings).unwrap_or_default();
        Self {
            settings,
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
    caller: Caller,
    Params(InWorkspace { workspace }): Params<InWorkspace>,
    Input(new): Input<NewApi>,
) -> Result<Created<ApiView>> {
    let workspace = find_workspace(&state, &caller, &workspace, Role::Editor).await?;
    validate_slug("slug", &new.slug)?;
    let name = new.name.unwrap_or_else(|| new.slug.clone());
    validate_name("name", &name)?;
    let settings = ApiSettings {
        base_headers: new.base_headers,
        default_delay: new.default_delay,
        cors: new.cors,
    };
    settings.validate()?;
    let settings = serde_json::to_string(&settings).map_err(anyhow::Error::from)?;
    let _turn = state.write_turn().await;
    let mut tx = state.db.begin().await?;
    let api = db::insert_api(&mut *tx, &workspace.id, &new.slug, &name, &settings).await.map_err(
        |e| match ApiError::from(e) {
            ApiError::Conflict { .. } => ApiError::Conflict {
                field: Some("slug".into()),
                message: format!(
                    "an API with slug '{}' already exists (API slugs are global)",
                    new.slug
                ),
            },
            other => other,
        },
    )?;
    let queued = enqueue(&mut tx, &Event::api("api.created", &api)).await?;
    tx.commit().await?;
    tracing::info!(api = %api.slug, workspace = %workspace.slug, "API created");
    // A new API is version 1 with no endpoints: publish it, so its routes answer 404 by
    // route rather than by API.
    state.publisher.wake();
    state.wake_outbox(queued);
    Ok(Created(ApiView::new(api, state.publisher.enabled())))
}

async fn list_apis(
    State(state): State<AppState>,
    caller: Caller,
    Params(InWorkspace { workspace }): Params<InWorkspace>,
    page: PageQuery,
) -> Result<Json<Paginated<ApiView>>> {
    let workspace = find_workspace(&state, &caller, &workspace, Role::Viewer).await?;
    let rows = db::select_apis_of_workspace(&state.db, &workspace.id, page.fetch()).await?;
    let publishing = state.publisher.enabled();
    let views = rows.into_iter().map(|r| ApiView::new(r, publishing)).collect();
    Ok(Json(page.paginate(views, |a| a.id.clone())))
}

/// An API by id or slug, for callers that are not tenants (the edge's internal routes).
pub async fn find_api(state: &AppState, key: &str) -> Result<ApiRow> {
    db::select_api(&state.db, key).await?.ok_or_else(|| ApiError::NotFound(format!("API '{key}'")))
}

/// The API `key` if `caller` has at least `needed` in its workspace: 404 when the caller
/// has no role there (as if the API did not exist), 403 when the role is too small.
pub async fn authorize_api(
    state: &AppState,
    caller: &Caller,
    key: &str,
    needed: Role,
) -> Result<ApiRow> {
    let not_found = || ApiError::NotFound(format!("API '{key}'"));
    let api = db::select_api(&state.db, key).await?.ok_or_else(not_found)?;
    let workspace =
        db::select_workspace(&state.db, &api.workspace_id).await?.ok_or_else(not_found)?;
    caller.require(state, &workspace, needed, not_found).await?;
    Ok(api)
}

async fn get_api(
    State(state): State<AppState>,
    caller: Caller,
    Params(OfApi { api: key }): Params<OfApi>,
) -> Result<Json<ApiView>> {
    let api = authorize_api(&state, &caller, &key, Role::Viewer).await?;
    Ok(Json(ApiView::new(api, state.publisher.enabled())))
}

async fn update_api(
    State(state): State<AppState>,
    caller: Caller,
    Params(OfApi { api: key }): Params<OfApi>,
    Input(changes): Input<ApiChanges>,
) -> Result<Json<ApiView>> {
    let api = authorize_api(&state, &caller, &key, Role::Editor).await?;
    let current: ApiSettings = serde_json::from_str(&api.settings).unwrap_or_default();
    let settings = ApiSettings {
        base_headers: changes.base_headers.unwrap_or(current.base_headers),
        default_delay: changes.default_delay.unwrap_or(current.default_delay),
        cors: changes.cors.unwrap_or(current.cors),
    };
    settings.validate()?;
    let name = changes.name.unwrap_or(api.name);
    validate_name("name", &name)?;
    let json = serde_json::to_string(&settings).map_err(anyhow::Error::from)?;
    let _turn = state.write_turn().await;
    let mut tx = state.db.begin().await?;
    let updated = db::update_api_settings(&mut *tx, &api.id, &name, &json).await?;
    let queued = enqueue(&mut tx, &Event::api("api.updated", &updated)).await?;
    tx.commit().await?;
    state.publisher.wake();
    state.wake_outbox(queued);
    tracing::info!(api = %updated.slug, version = updated.version, by = %caller.who(), "API updated");
    Ok(Json(ApiView::new(updated, state.publisher.enabled())))
}

/// Deletes the API and its endpoints; the edge drops its snapshot shortly after.
async fn delete_api(
    State(state): State<AppState>,
    caller: Caller,
    Params(OfApi { api: key }): Params<OfApi>,
) -> Result<NoContent> {
    let api = authorize_api(&state, &caller, &key, Role::Admin).await?;
    let _turn = state.write_turn().await;
    let mut tx = state.db.begin().await?;
    let mut queued = 0;
    if let Some(last) = db::delete_api(&mut tx, &api).await? {
        queued = enqueue(&mut tx, &Event::api("api.deleted", &last)).await?;
    }
    tx.commit().await?;
    state.publisher.wake();
    state.wake_outbox(queued);
    state.runtime.forget(&api.slug);
    if let Some(metrics) = &state.metrics {
        metrics.forget_api(&api.slug);
    }
    tracing::info!(api = %api.slug, by = %caller.who(), "API deleted");
    Ok(NoContent)
}

/// Publishes the API's current snapshot now, even if the edge is believed to have it (for
/// example after the edge's KV was reset). Answers with the resulting state; a failure is a
/// 502 naming the edge's answer, and is retried in the background as usual.
async fn publish_api(
    State(state): State<AppState>,
    caller: Caller,
    Params(OfApi { api: key }): Params<OfApi>,
) -> Result<Json<ApiView>> {
    let api = authorize_api(&state, &caller, &key, Role::Editor).await?;
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
    caller: Caller,
    Params(OfApi { api: key }): Params<OfApi>,
) -> Result<Json<Snapshot>> {
    let api = authorize_api(&state, &caller, &key, Role::Viewer).await?;
    build_snapshot(&state.db, &api.id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("API '{key}'")))
}
