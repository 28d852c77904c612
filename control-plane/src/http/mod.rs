//! The HTTP layer: one `router()` per resource, merged here, with the shared state, the JSON
//! input extractor and pagination.

mod api_keys;
mod apis;
mod endpoints;
mod health;
mod imports;
mod internal;
mod items;
mod members;
mod mocks;
mod webhooks;
mod workspaces;
mod ws;

pub use apis::ApiSettings;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tower_http::trace::TraceLayer;

use crate::db::Db;
use crate::error::{ApiError, Result};
use crate::publish::Publisher;

/// Largest admin request body accepted.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Everything a handler needs. Cloned for every request (axum's `State`), so every field is
/// a handle: an `Arc` or a pool, never owned data.
#[derive(Debug, Clone)]
pub struct AppState {
    pub db: Db,
    pub publisher: Publisher,
    /// The secret the edge presents on internal routes (`EDGE_PUBLISH_TOKEN`); `None`
    /// disables them.
    pub internal_token: Option<std::sync::Arc<str>>,
    /// Verifies admin JWTs (`JWT_SECRET`).
    pub tokens: std::sync::Arc<crate::auth::Tokens>,
    /// The native runtime (`/mock/…`, `/mock-graphql/…`, `/ws/…`).
    pub runtime: crate::runtime::Runtime,
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(workspaces::router())
        .merge(apis::router())
        .merge(endpoints::router())
        .merge(items::router())
        .merge(imports::router())
        .merge(members::router())
        .merge(api_keys::router())
        .merge(webhooks::router())
        .method_not_allowed_fallback(method_not_allowed);
    Router::new()
        .nest("/api/v1", api)
        .merge(internal::router())
        .merge(mocks::router())
        .merge(health::router())
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("route".to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// A JSON request body, read strictly: malformed JSON is a 400; a missing, mistyped or
/// unknown field is a 422 that names the field by its path (`response.status`).
#[derive(Debug)]
pub struct Input<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Input<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge { limit: MAX_BODY_BYTES }
            } else {
                ApiError::BadRequest { code: "unreadable_body", message: e.body_text() }
            }
        })?;
        parse_json(&bytes).map(Input)
    }
}

/// Parses `bytes` as a `T`, refusing unknown fields (a typo must not pass silently).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let mut unknown = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let mut on_unknown = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
    let ignored = serde_ignored::Deserializer::new(&mut de, &mut on_unknown);
    let value: T = serde_path_to_error::deserialize(ignored).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() || inner.is_io() {
            ApiError::BadRequest {
                code: "invalid_json",
                message: format!("the body is not valid JSON: {inner}"),
            }
        } else {
            ApiError::invalid(
                if field == "." { "body".to_owned() } else { field },
                strip_position(&inner),
            )
        }
    })?;
    de.end().map_err(|e| ApiError::BadRequest {
        code: "invalid_json",
        message: format!("the body is not valid JSON: {e}"),
    })?;
    if let Some(field) = unknown.into_iter().next() {
        return Err(ApiError::invalid(field, "is not a known field"));
    }
    Ok(value)
}

/// serde_json's messages end in "at line 1 column 42", which says nothing to an API client.
fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// `?limit=&after=`: cursor pagination over ids, newest last.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub limit: Option<i64>,
    pub after: Option<String>,
}

pub const DEFAULT_PAGE_SIZE: i64 = 50;
pub const MAX_PAGE_SIZE: i64 = 500;

impl<S: Send + Sync> FromRequestParts<S> for PageQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self> {
        let query = parts.uri.query().unwrap_or("");
        let page: PageQuery = serde_urlencoded::from_str(query)
            .map_err(|e| ApiError::BadRequest { code: "invalid_query", message: e.to_string() })?;
        if let Some(limit) = page.limit
            && !(1..=MAX_PAGE_SIZE).contains(&limit)
        {
            return Err(ApiError::invalid(
                "limit",
                format!("must be between 1 and {MAX_PAGE_SIZE}"),
            ));
        }
        Ok(page)
    }
}

impl PageQuery {
    /// The page to fetch: one more row than asked, to know whether another page follows.
    pub fn fetch(&self) -> crate::db::Page<'_> {
        crate::db::Page { after: self.after.as_deref(), limit: self.limit() + 1 }
    }

    fn limit(&self) -> i64 {
        self.limit.unwrap_or(DEFAULT_PAGE_SIZE)
    }

    /// Wraps fetched rows as a page: `{"items": […], "next_cursor": id | null}`.
    pub fn paginate<T: Serialize>(
        &self,
        mut items: Vec<T>,
        id: impl Fn(&T) -> String,
    ) -> Paginated<T> {
        let limit = usize::try_from(self.limit()).unwrap_or(usize::MAX);
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(&id)
        } else {
            None
        };
        Paginated { items, next_cursor }
    }
}

#[derive(Debug, Serialize)]
pub struct Paginated<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// For `Option<Option<T>>` fields: absent stays `None` (keep the value), `null` becomes
/// `Some(None)` (clear it).
pub fn explicit_null<'de, D, T>(deserializer: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}
