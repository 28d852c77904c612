//! An API's GraphQL operations (`/apis/{api}/graphql-operations`) and WebSocket mocks
//! (`/apis/{api}/websockets`): create, list, read, replace, delete.
//!
//! Both work like endpoints: every write bumps the API's version first (taking its write
//! lock), then compiles the whole API as it would be after the write with the engine; an
//! invalid definition is a 422 naming the field, and nothing is stored.

use aide::axum::ApiRouter;
use aide::axum::routing::get_with;
use axum::Json;
use axum::extract::State;
use axum::response::NoContent;
use edgemock_shared::model::{GraphqlOperation, WebSocketEndpoint};
use edgemock_shared::{Engine, SNAPSHOT_FORMAT_VERSION, Snapshot, SnapshotEndpoint, WorkspaceRef};
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::apis::authorize_api;
use super::docs::{Created, doc};
use super::{AppState, Input, OfApi, OfApiItem, PageQuery, Paginated, Params};
use crate::auth::{Caller, Role};
use crate::db::{self, ApiRow, ItemRow, ItemTable, Page};
use crate::error::{ApiError, Result};

/// What differs between the two kinds of item.
trait Item: Serialize + DeserializeOwned + JsonSchema + Clone + Send + Sync + 'static {
    const TABLE: ItemTable;
    /// The snapshot field, as the engine names it in errors (`graphql`, `websockets`).
    const FIELD: &'static str;
    const WHAT: &'static str;
    /// The OpenAPI tag, and the operation ids' noun (`listGraphqlOperations`).
    const TAG: &'static str;
    const NOUN: &'static str;
    /// Shown in listings: the operation's name, the mock's path.
    fn label(&self) -> String;
}

impl Item for GraphqlOperation {
    const TABLE: ItemTable = ItemTable::GraphqlOperations;
    const FIELD: &'static str = "graphql";
    const WHAT: &'static str = "GraphQL operation";
    const TAG: &'static str = "graphql";
    const NOUN: &'static str = "GraphqlOperation";
    fn label(&self) -> String {
        self.name.clone()
    }
}

impl Item for WebSocketEndpoint {
    const TABLE: ItemTable = ItemTable::WebsocketEndpoints;
    const FIELD: &'static str = "websockets";
    const WHAT: &'static str = "WebSocket mock";
    const TAG: &'static str = "websockets";
    const NOUN: &'static str = "WebSocket";
    fn label(&self) -> String {
        self.path.clone()
    }
}

pub fn router() -> ApiRouter<AppState> {
    fn routes<T: Item>(base: &str) -> ApiRouter<AppState> {
        let (noun, what) = (T::NOUN, T::WHAT);
        ApiRouter::new()
            .api_route(
                &format!("/apis/{{api}}/{base}"),
                get_with(list::<T>, doc(format!("list{noun}s"), format!("List an API's {what}s")))
                    .post_with(create::<T>, doc(format!("create{noun}"), format!("Add a {what}"))),
            )
            .api_route(
                &format!("/apis/{{api}}/{base}/{{id}}"),
                get_with(read::<T>, doc(format!("get{noun}"), format!("Read a {what}")))
                    .put_with(
                        replace::<T>,
                        doc(format!("replace{noun}"), format!("Replace a {what}")),
                    )
                    .delete_with(
                        remove::<T>,
                        doc(format!("delete{noun}"), format!("Delete a {what}")),
                    ),
            )
            .with_path_items(|p| p.tag(T::TAG))
    }
    routes::<GraphqlOperation>("graphql-operations")
        .merge(routes::<WebSocketEndpoint>("websockets"))
}

/// An item as the admin API shows it: its whole definition plus identity and times.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "{T}View")]
struct ItemView<T> {
    id: String,
    api_id: String,
    #[serde(flatten)]
    definition: T,
    created_at: String,
    updated_at: String,
}

fn view<T: Item>(row: ItemRow) -> Result<ItemView<T>> {
    let definition = serde_json::from_str(&row.definition)
        .map_err(|e| anyhow::anyhow!("{} {} is unreadable: {e}", T::WHAT, row.id))?;
    Ok(ItemView {
        id: row.id,
        api_id: row.api_id,
        definition,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

fn all() -> Page<'static> {
    Page { after: None, limit: i64::MAX }
}

fn parse<T: DeserializeOwned>(rows: &[ItemRow], skip: Option<&str>) -> Result<Vec<T>> {
    rows.iter()
        .filter(|row| Some(row.id.as_str()) != skip)
        .map(|row| {
            serde_json::from_str(&row.definition)
                .map_err(|e| anyhow::anyhow!("item {} is unreadable: {e}", row.id).into())
        })
        .collect()
}

/// Compiles the API as it would be with `changed` replacing item `skip` (or added, or with
/// `skip` removed when `changed` is `None`). The changed item goes last, so its errors are
/// reported relative to it.
async fn check<T: Item>(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    api: &ApiRow,
    skip: Option<&str>,
    changed: Option<&T>,
) -> Result<()> {
    let endpoints = db::select_endpoints_of_api(&mut **tx, &api.id, all())
        .await?
        .into_iter()
        .map(|row| {
            serde_json::from_str(&row.definition)
                .map(|definition| SnapshotEndpoint { id: row.id.clone(), definition })
                .map_err(|e| anyhow::anyhow!("endpoint {} is unreadable: {e}", row.id).into())
        })
        .collect::<Result<Vec<_>>>()?;
    let graphql_rows =
        db::select_items(&mut **tx, ItemTable::GraphqlOperations, &api.id, all()).await?;
    let ws_rows =
        db::select_items(&mut **tx, ItemTable::WebsocketEndpoints, &api.id, all()).await?;
    let mut snapshot = Snapshot {
        format_version: SNAPSHOT_FORMAT_VERSION,
        version: 0,
        workspace: WorkspaceRef { id: api.workspace_id.clone(), ..Default::default() },
        api: crate::publish::api_ref(api)?,
        endpoints,
        graphql: parse(&graphql_rows, skip.filter(|_| T::TABLE == ItemTable::GraphqlOperations))?,
        websockets: parse(&ws_rows, skip.filter(|_| T::TABLE == ItemTable::WebsocketEndpoints))?,
    };
    // Append the changed item to its own list through JSON (T is one of the two types).
    let mut index = 0;
    if let Some(item) = changed {
        let value = serde_json::to_value(item).map_err(anyhow::Error::from)?;
        match T::TABLE {
            ItemTable::GraphqlOperations => {
                index = snapshot.graphql.len();
                snapshot.graphql.push(serde_json::from_value(value).map_err(anyhow::Error::from)?);
            }
            ItemTable::WebsocketEndpoints => {
                index = snapshot.websockets.len();
                snapshot
                    .websockets
                    .push(serde_json::from_value(value).map_err(anyhow::Error::from)?);
            }
        }
    }
    Engine::from_snapshot(snapshot).map(drop).map_err(|e| {
        let prefix = format!("{}[{index}].", T::FIELD);
        match (changed, e.field.strip_prefix(&prefix)) {
            (Some(_), Some(field)) => ApiError::invalid(field, e.message),
            _ => e.into(),
        }
    })
}

async fn list<T: Item>(
    State(state): State<AppState>,
    caller: Caller,
    Params(OfApi { api }): Params<OfApi>,
    page: PageQuery,
) -> Result<Json<Paginated<ItemView<T>>>> {
    let api = authorize_api(&state, &caller, &api, Role::Viewer).await?;
    let rows = db::select_items(&state.db, T::TABLE, &api.id, page.fetch()).await?;
    let views = rows.into_iter().map(view::<T>).collect::<Result<Vec<_>>>()?;
    Ok(Json(page.paginate(views, |v| v.id.clone())))
}

async fn read<T: Item>(
    State(state): State<AppState>,
    caller: Caller,
    Params(OfApiItem { api, id }): Params<OfApiItem>,
) -> Result<Json<ItemView<T>>> {
    let api = authorize_api(&state, &caller, &api, Role::Viewer).await?;
    let rows = db::select_items(&state.db, T::TABLE, &api.id, all()).await?;
    let row = rows
        .into_iter()
        .find(|row| row.id == id)
        .ok_or_else(|| ApiError::NotFound(format!("{} '{id}'", T::WHAT)))?;
    view(row).map(Json)
}

async fn create<T: Item>(
    State(state): State<AppState>,
    caller: Caller,
    Params(OfApi { api }): Params<OfApi>,
    Input(item): Input<T>,
) -> Result<Created<ItemView<T>>> {
    let api = authorize_api(&state, &caller, &api, Role::Editor).await?;
    let _turn = state.write_turn().await;
    let mut tx = state.db.begin().await?;
    let api = db::bump_api_version(&mut *tx, &api.id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("API '{}'", api.slug)))?;
    check(&mut tx, &api, None, Some(&item)).await?;
    let json = serde_json::to_string(&item).map_err(anyhow::Error::from)?;
    let row = db::insert_item(&mut *tx, T::TABLE, &api.id, &item.label(), &json).await?;
    tx.commit().await?;
    state.publisher.wake();
    tracing::info!(api = %api.slug, version = api.version, id = %row.id, "{} created", T::WHAT);
    Ok(Created(view(row)?))
}

async fn replace<T: Item>(
    State(state): State<AppState>,
    caller: Caller,
    Params(OfApiItem { api, id }): Params<OfApiItem>,
    Input(item): Input<T>,
) -> Result<Json<ItemView<T>>> {
    let api = authorize_api(&state, &caller, &api, Role::Editor).await?;
    let _turn = state.write_turn().await;
    let mut tx = state.db.begin().await?;
    let api = db::bump_api_version(&mut *tx, &api.id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("API '{}'", api.slug)))?;
    check(&mut tx, &api, Some(&id), Some(&item)).await?;
    let json = serde_json::to_string(&item).map_err(anyhow::Error::from)?;
    let row = db::update_item(&mut *tx, T::TABLE, &api.id, &id, &item.label(), &json)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("{} '{id}'", T::WHAT)))?;
    tx.commit().await?;
    state.publisher.wake();
    Ok(Json(view(row)?))
}

async fn remove<T: Item>(
    State(state): State<AppState>,
    caller: Caller,
    Params(OfApiItem { api, id }): Params<OfApiItem>,
) -> Result<NoContent> {
    let api = authorize_api(&state, &caller, &api, Role::Editor).await?;
    let _turn = state.write_turn().await;
    let mut tx = state.db.begin().await?;
    // Version first: it takes the API's write lock before anything changes.
    db::bump_api_version(&mut *tx, &api.id).await?;
    if !db::delete_item(&mut *tx, T::TABLE, &api.id, &id).await? {
        return Err(ApiError::NotFound(format!("{} '{id}'", T::WHAT)));
    }
    tx.commit().await?;
    state.publisher.wake();
    Ok(NoContent)
}
