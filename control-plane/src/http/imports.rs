//! OpenAPI in and out of the admin API:
//! - `POST /api/v1/workspaces/{workspace}/apis/import` creates an API from an OpenAPI 3.0 or
//!   3.1 document (JSON or YAML, the raw body) with one endpoint per operation, in one
//!   transaction, and answers with the import report (see [`crate::openapi`]);
//! - `GET /api/v1/apis/{api}/openapi` exports an API as an OpenAPI 3.1 document.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use edgemock_shared::model::validate_slug;
use edgemock_shared::{Engine, SNAPSHOT_FORMAT_VERSION, Snapshot, SnapshotEndpoint, WorkspaceRef};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::apis::{ApiView, authorize_api};
use super::workspaces::{find_workspace, validate_name};
use crate::auth::{Caller, Role};
use crate::db::{self, Page};
use crate::error::{ApiError, Result};
use crate::openapi::{ImportError, ImportOptions};

/// Largest document accepted: real ones run to megabytes (GitHub's is 13 MB).
pub const MAX_DOCUMENT_BYTES: usize = 32 * 1024 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/workspaces/{workspace}/apis/import",
            post(import).layer(DefaultBodyLimit::max(MAX_DOCUMENT_BYTES)),
        )
        .route("/apis/{api}/openapi", get(export))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportQuery {
    /// The new API's slug; derived from `info.title` when absent.
    slug: Option<String>,
    /// The new API's name; `info.title` when absent.
    name: Option<String>,
    /// Seeds generated data (default 0): the same document and seed give the same mocks.
    seed: Option<u64>,
    /// Keep the first server's base path in every endpoint path (default: strip it).
    keep_base_path: Option<bool>,
    /// The status of a request body that breaks its schema (default 400).
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
    Path(workspace): Path<String>,
    query: Result<Query<ImportQuery>, axum::extract::rejection::QueryRejection>,
    document: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<Value>)> {
    // The body's rejection as edgemock's JSON error, not axum's plain text.
    let document = document.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge { limit: MAX_DOCUMENT_BYTES }
        } else {
            ApiError::BadRequest { code: "unreadable_body", message: e.body_text() }
        }
    })?;
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
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "api": ApiView::new(api, state.publisher.enabled()),
            "import": {
                "openapi": imported.openapi,
                "title": imported.title,
                "version": imported.version,
                "base_path": imported.base_path,
                "report": imported.report,
            },
        })),
    ))
}

async fn export(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
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
