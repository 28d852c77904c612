//! `/api/v1/apis/{api}/endpoints`: create, list, read, replace, delete.
//!
//! Every write runs in one transaction that first bumps the API's version (taking its write
//! lock), then checks the API *as it would be after the write* with the engine that the edge
//! runs: a conflicting route or an invalid definition is a 422 and nothing is stored.

use aide::axum::ApiRouter;
use aide::axum::routing::get_with;
use axum::Json;
use axum::extract::State;
use axum::response::NoContent;
use edgemock_shared::{
    EndpointDefinition, Engine, SNAPSHOT_FORMAT_VERSION, Snapshot, SnapshotEndpoint, WorkspaceRef,
};
use schemars::JsonSchema;
use serde::Serialize;

use super::apis::authorize_api;
use super::docs::{Created, doc};
use super::{AppState, Input, OfApi, OfApiItem, PageQuery, Paginated, Params};
use crate::auth::{Caller, Role};
use crate::db::{self, ApiRow, EndpointRow, Page};
use crate::error::{ApiError, Result};

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/apis/{api}/endpoints",
            get_with(list_endpoints, doc("listEndpoints", "List an API's endpoints"))
                .post_with(create_endpoint, doc("createEndpoint", "Add an endpoint")),
        )
        .api_route(
            "/apis/{api}/endpoints/{id}",
            get_with(get_endpoint, doc("getEndpoint", "Read an endpoint"))
                .put_with(replace_endpoint, doc("replaceEndpoint", "Replace an endpoint"))
                .delete_with(delete_endpoint, doc("deleteEndpoint", "Delete an endpoint")),
        )
        .with_path_items(|p| p.tag("endpoints"))
}

/// An endpoint as the admin API shows it: its whole definition plus identity and times.
#[derive(Debug, Serialize, JsonSchema)]
pub struct EndpointView {
    pub id: String,
    pub api_id: String,
    #[serde(flatten)]
    pub definition: EndpointDefinition,
    pub created_at: String,
    pub updated_at: String,
}

impl TryFrom<EndpointRow> for EndpointView {
    type Error = ApiError;

    fn try_from(row: EndpointRow) -> Result<Self> {
        let definition: EndpointDefinition =
            serde_json::from_str(&row.definition).map_err(|e| {
                anyhow::anyhow!("endpoint {} has an unreadable definition: {e}", row.id)
            })?;
        Ok(Self {
            id: row.id,
            api_id: row.api_id,
            definition,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// A pending change to an API's endpoints.
enum Change<'a> {
    Add(&'a EndpointDefinition),
    Replace(&'a str, &'a EndpointDefinition),
    Remove(&'a str),
}

/// Checks that the API still compiles after `change`. The changed endpoint is placed last,
/// so a route conflict is reported on it, with field names relative to it (`path`).
fn check_change(api: &ApiRow, existing: &[EndpointRow], change: &Change<'_>) -> Result<()> {
    let mut endpoints = Vec::with_capacity(existing.len() + 1);
    for row in existing {
        let skip = match change {
            Change::Replace(id, _) | Change::Remove(id) => row.id == *id,
            Change::Add(_) => false,
        };
        if !skip {
            let definition = serde_json::from_str(&row.definition).map_err(|e| {
                anyhow::anyhow!("endpoint {} has an unreadable definition: {e}", row.id)
            })?;
            endpoints.push(SnapshotEndpoint { id: row.id.clone(), definition });
        }
    }
    let changed = match change {
        Change::Add(d) | Change::Replace(_, d) => Some(*d),
        Change::Remove(_) => None,
    };
    if let Some(definition) = changed {
        definition.validate()?;
        endpoints.push(SnapshotEndpoint { id: String::new(), definition: definition.clone() });
    }
    let changed_index = endpoints.len().saturating_sub(1);
    let snapshot = Snapshot {
        format_version: SNAPSHOT_FORMAT_VERSION,
        version: 0,
        workspace: WorkspaceRef { id: api.workspace_id.clone(), ..Default::default() },
        api: crate::publish::api_ref(api)?,
        endpoints,
        graphql: Vec::new(),
        websockets: Vec::new(),
    };
    Engine::from_snapshot(snapshot).map(drop).map_err(|e| {
        let prefix = format!("endpoints[{changed_index}].");
        match (changed, e.field.strip_prefix(&prefix)) {
            (Some(_), Some(field)) => ApiError::invalid(field, e.message),
            _ => e.into(),
        }
    })
}

fn all() -> Page<'static> {
    Page { after: None, limit: i64::MAX }
}

async fn create_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Params(OfApi { api }): Params<OfApi>,
    Input(definition): Input<EndpointDefinition>,
) -> Result<Created<EndpointView>> {
    let api = authorize_api(&state, &caller, &api, Role::Editor).await?.id;
    let _turn = state.write_turn().await;
    let mut tx = state.db.begin().await?;
    let api = db::bump_api_version(&mut *tx, &api)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("API '{api}'")))?;
    let existing = db::select_endpoints_of_api(&mut *tx, &api.id, all()).await?;
    check_change(&api, &existing, &Change::Add(&definition))?;
    let json = serde_json::to_string(&definition).map_err(anyhow::Error::from)?;
    let row =
        db::insert_endpoint(&mut *tx, &api.id, definition.method.as_str(), &definition.path, &json)
            .await?;
    tx.commit().await?;
    state.publisher.wake();
    tracing::info!(api = %api.slug, version = api.version, endpoint = %row.id, "endpoint created");
    Ok(Created(row.try_into()?))
}

async fn list_endpoints(
    State(state): State<AppState>,
    caller: Caller,
    Params(OfApi { api }): Params<OfApi>,
    page: PageQuery,
) -> Result<Json<Paginated<EndpointView>>> {
    let api = authorize_api(&state, &caller, &api, Role::Viewer).await?;
    let rows = db::select_endpoints_of_api(&state.db, &api.id, page.fetch()).await?;
    let views = rows.into_iter().map(EndpointView::try_from).collect::<Result<Vec<_>>>()?;
    Ok(Json(page.paginate(views, |e| e.id.clone())))
}

async fn get_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Params(OfApiItem { api, id }): Params<OfApiItem>,
) -> Result<Json<EndpointView>> {
    let api = authorize_api(&state, &caller, &api, Role::Viewer).await?;
    let row = db::select_endpoint(&state.db, &api.id, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("endpoint '{id}'")))?;
    Ok(Json(row.try_into()?))
}

async fn replace_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Params(OfApiItem { api, id }): Params<OfApiItem>,
    Input(definition): Input<EndpointDefinition>,
) -> Result<Json<EndpointView>> {
    let api = authorize_api(&state, &caller, &api, Role::Editor).await?.id;
    let _turn = state.write_turn().await;
    let mut tx = state.db.begin().await?;
    let api = db::bump_api_version(&mut *tx, &api)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("API '{api}'")))?;
    let existing = db::select_endpoints_of_api(&mut *tx, &api.id, all()).await?;
    if !existing.iter().any(|row| row.id == id) {
        return Err(ApiError::NotFound(format!("endpoint '{id}'")));
    }
    check_change(&api, &existing, &Change::Replace(&id, &definition))?;
    let json = serde_json::to_string(&definition).map_err(anyhow::Error::from)?;
    let row = db::update_endpoint(
        &mut *tx,
        &api.id,
        &id,
        definition.method.as_str(),
        &definition.path,
        &json,
    )
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("endpoint '{id}'")))?;
    tx.commit().await?;
    state.publisher.wake();
    tracing::info!(api = %api.slug, version = api.version, endpoint = %id, "endpoint replaced");
    Ok(Json(row.try_into()?))
}

async fn delete_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Params(OfApiItem { api, id }): Params<OfApiItem>,
) -> Result<NoContent> {
    let api = authorize_api(&state, &caller, &api, Role::Editor).await?.id;
    let _turn = state.write_turn().await;
    let mut tx = state.db.begin().await?;
    let api = db::bump_api_version(&mut *tx, &api)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("API '{api}'")))?;
    let existing = db::select_endpoints_of_api(&mut *tx, &api.id, all()).await?;
    check_change(&api, &existing, &Change::Remove(&id))?;
    if !db::delete_endpoint(&mut *tx, &api.id, &id).await? {
        return Err(ApiError::NotFound(format!("endpoint '{id}'")));
    }
    tx.commit().await?;
    state.publisher.wake();
    tracing::info!(api = %api.slug, version = api.version, endpoint = %id, "endpoint deleted");
    Ok(NoContent)
}
