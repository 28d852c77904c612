//! OpenAPI in and out of the admin API:
//! - `POST /api/v1/workspaces/{workspace}/apis/import` creates an API from an OpenAPI 3.0 or
//!   3.1 document (JSON or YAML, the raw body) with one endpoint per operation, in one
//!   transaction, and answers with the import report (see [`crate::openapi`]);
//! - `GET /api/v1/apis/{api}/openapi` exports an API as an OpenAPI 3.1 document.

use aide::axum::ApiRouter;
use aide::axum::routing::{get_with, post_with};
use axum::Json;
use axum::extract::{DefaultBodyLimit, Query, State};
use edgemock_shared::model::validate_slug;
use edgemock_shared::{Engine, SNAPSHOT_FORMAT_VERSION, Snapshot, SnapshotEndpoint, WorkspaceRef};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::apis::{ApiView, authorize_api};
use super::docs::{Created, Document, doc};
use super::workspaces::{find_workspace, validate_name};
use super::{AppState, InWorkspace, OfApi, Params};
use crate::auth::{Caller, Role};
use crate::db::{self, Page};
use crate::error::{ApiError, Result};
use crate::openapi::{ImportError, ImportOptions};

/// Largest document accepted: real ones run to megabytes (GitHub's is 13 MB).
pub const MAX_DOCUMENT_BYTES: usize = 32 * 1024 * 1024;

pub fn router() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/workspaces/{workspace}/apis/import",
            post_with(import, doc("importOpenApi", "Create an API from an OpenAPI document"))
                .layer(DefaultBodyLimit::max(MAX_DOCUMENT_BYTES)),
        )
        .api_route(
            "/apis/{api}/openapi",
            get_with(export, doc("exportOpenApi", "Export an API as OpenAPI 3.1")),
        )
        .with_path_items(|p| p.tag("apis"))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ImportQuery {
    /// The new API's slug; derived from `info.title` when absent.
    #[schemars(pattern(super::SLUG_PATTERN))]
    slug: Option<String>,
    /// The new API's name; `info.title` when absent.
    #[schemars(length(min = 1, max = 200), pattern(super::NAME_PATTERN))]
    name: Option<String>,
    /// Seeds generated data (default 0): the same document and seed give the same mocks.
    seed: Option<u64>,
    /// Keep the first server's base path in every endpoint path (default: strip it).
    keep_base_path: Option<bool>,
    /// The status of a request body that breaks its schema (default 400).
    #[schemars(range(min = 400, max = 599))]
    validation_status: Option<u16>,
    /// `false`: generate every body from its schema instead of using examples.
    use_examples: Option<bool>,
}

impl From<ImportError> for ApiError {
    fn from(e: ImportError) -> Self {
        match e {
            ImportError::Unparseable { .. } => {
                ApiError::BadRequest { code: "invalid_document", message: e.to_string() }
            }
            ImportError::Invalid { field, message } => ApiError::Invalid { field, message },
        }
    }
}

async fn import(
    State(state): State<AppState>,
    caller: Caller,
    Params(InWorkspace { workspace }): Params<InWorkspace>,
    query: Result<Query<ImportQuery>, axum::extract::rejection::QueryRejection>,
    Document(document): Document,
) -> Result<Created<ImportResult>> {
    let workspace = find_workspace(&state, &caller, &workspace, Role::Editor).await?;
    let Query(query) = query
        .map_err(|e| ApiError::BadRequest { code: "invalid_query", message: e.body_text() })?;
    if document.is_empty() {
        return Err(ApiError::invalid(
            "body",
            "send the OpenAPI document (JSON or YAML) as the body",
        ));
    }
    let options = ImportOptions {
        seed: query.seed.unwrap_or(0),
        keep_server_base_path: query.keep_base_path.unwrap_or(false),
        validation_status: query.validation_status.unwrap_or(400),
        use_examples: query.use_examples.unwrap_or(true),
    };
    // Seconds of CPU for a large document: off the async workers.
    let imported = tokio::task::spawn_blocking(move || crate::openapi::import(&document, &options))
        .await
        .map_err(|e| anyhow::anyhow!("the import task failed: {e}"))??;
    let slug = query.slug.unwrap_or_else(|| imported.slug.clone());
    validate_slug("slug", &slug)?;
    let name = query.name.unwrap_or_else(|| imported.title.clone());
    validate_name("name", &name)?;

    let _turn = state.write_turn().await;
    let mut tx = state.db.begin().await?;
    let api = db::insert_api(&mut *tx, &workspace.id, &slug, &name, "{}").await.map_err(|e| {
        match ApiError::from(e) {
            ApiError::Conflict { .. } => ApiError::Conflict {
                field: Some("slug".into()),
                message: format!(
                    "an API with slug '{slug}' already exists; pass ?slug= to choose another"
                ),
            },
            other => other,
        }
    })?;
    // The whole API is compiled once more, as every write is, before anything is stored.
    let endpoints: Vec<SnapshotEndpoint> = imported
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, definition)| SnapshotEndpoint {
            id: format!("import-{i}"),
            definition: definition.clone(),
        })
        .collect();
    let snapshot = Snapshot {
        format_version: SNAPSHOT_FORMAT_VERSION,
        version: 0,
        workspace: WorkspaceRef { id: workspace.id.clone(), ..Default::default() },
        api: crate::publish::api_ref(&api)?,
        endpoints,
        graphql: Vec::new(),
        websockets: Vec::new(),
    };
    Engine::from_snapshot(snapshot).map_err(ApiError::from)?;
    for definition in &imported.endpoints {
        let json = serde_json::to_string(definition).map_err(anyhow::Error::from)?;
        db::insert_endpoint(&mut *tx, &api.id, definition.method.as_str(), &definition.path, &json)
            .await?;
    }
    let api = db::bump_api_version(&mut *tx, &api.id).await?.unwrap_or(api);
    tx.commit().await?;
    state.publisher.wake();
    tracing::info!(
        api = %api.slug, operations = imported.report.operations, notes = imported.report.notes.len(),
        by = %caller.who(), "OpenAPI document imported"
    );
    Ok(Created(ImportResult {
        api: ApiView::new(api, state.publisher.enabled()),
        import: ImportSummary {
            openapi: imported.openapi,
            title: imported.title,
            version: imported.version,
            base_path: imported.base_path,
            report: imported.report,
        },
    }))
}

/// The created API, and how the import went.
#[derive(Debug, Serialize, JsonSchema)]
struct ImportResult {
    api: ApiView,
    import: ImportSummary,
}

#[derive(Debug, Serialize, JsonSchema)]
struct ImportSummary {
    /// The document's `openapi` version.
    openapi: String,
    title: String,
    /// `info.version`.
    version: Option<String>,
    /// The first server's path, stripped from the endpoint paths unless `keep_base_path`.
    base_path: Option<String>,
    report: crate::openapi::ImportReport,
}

async fn export(
    State(state): State<AppState>,
    caller: Caller,
    Params(OfApi { api: key }): Params<OfApi>,
) -> Result<Json<Value>> {
    let api = authorize_api(&state, &caller, &key, Role::Viewer).await?;
    let rows =
        db::select_endpoints_of_api(&state.db, &api.id, Page { after: None, limit: i64::MAX })
            .await?;
    let endpoints = rows
        .into_iter()
        .map(|row| {
            serde_json::from_str(&row.definition)
                .map(|definition| SnapshotEndpoint { id: row.id.clone(), definition })
                .map_err(|e| anyhow::anyhow!("endpoint {} is unreadable: {e}", row.id).into())
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Json(crate::openapi::export(&api.name, &api.slug, &endpoints)))
}
