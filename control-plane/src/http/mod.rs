//! The HTTP layer: one `router()` per resource, merged here, with the shared state, the JSON
//! input extractor and pagination.

mod analytics;
mod api_keys;
mod apis;
pub mod docs;
mod endpoints;
mod hardening;
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

use aide::axum::ApiRouter;
use aide::generate::GenContext;
use aide::openapi::Operation;
use aide::operation::OperationInput;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tower_http::trace::TraceLayer;

use crate::db::Db;
use crate::error::{ApiError, Result};
use crate::publish::Publisher;

/// What `validate_slug` accepts, for the OpenAPI document.
pub const SLUG_PATTERN: &str = "^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$";
/// Names must not be blank (`workspaces::validate_name`).
pub const NAME_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]*\S[^\x00-\x1f\x7f-\x9f]*$";

/// Largest admin request body accepted.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Everything a handler needs, behind one `Arc`: axum clones the state for every request,
/// and one reference count is cheaper than the dozen the handles inside hold (the clones
/// and drops showed in profiles of the native runtime).
#[derive(Debug, Clone)]
pub struct AppState(std::sync::Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(std::sync::Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

#[derive(Debug)]
pub struct Shared {
    pub db: Db,
    pub publisher: Publisher,
    /// Wakes the webhook delivery loop after a write that queued events commits.
    pub outbox: crate::webhooks::Outbox,
    /// The secret the edge presents on internal routes (`EDGE_PUBLISH_TOKEN`); `None`
    /// disables them.
    pub internal_token: Option<std::sync::Arc<str>>,
    /// Verifies admin JWTs (`JWT_SECRET`).
    pub tokens: std::sync::Arc<crate::auth::Tokens>,
    /// The native runtime (`/mock/…`, `/mock-graphql/…`, `/ws/…`).
    pub runtime: crate::runtime::Runtime,
    /// `CORS_ALLOWED_ORIGINS` and `REQUEST_TIMEOUT_MS` (see `hardening`).
    pub cors_allowed_origins: Vec<String>,
    pub request_timeout: std::time::Duration,
    /// When the process started (`/health` reports the uptime).
    pub started: std::time::Instant,
    /// `HEALTH_CHECK_TIMEOUT`.
    pub health_timeout: std::time::Duration,
    /// Where the SQLite database file lives (`/health` reports its free space); `None` on
    /// PostgreSQL.
    pub data_dir: Option<std::path::PathBuf>,
    /// Rate limits and their counters (see [`crate::rate_limit`]).
    pub rate_limits: crate::rate_limit::Limits,
    pub limiter: crate::rate_limit::Limiter,
    /// `REDIS_URL`'s connection, for health; `None` without Redis.
    pub redis: Option<std::sync::Arc<crate::redis::Redis>>,
    /// The native runtime's analytics, counted per minute; `None` with
    /// `ANALYTICS_ENABLED=false`.
    pub tally: Option<crate::analytics::Tally>,
    /// `ANALYTICS_RETENTION_DAYS`, for `POST /api/v1/analytics/cleanup`.
    pub analytics_retention_days: u32,
    /// Prometheus metrics; `None` with `METRICS_ENABLED=false`.
    pub metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
    /// On SQLite: the queue of writers (see [`Shared::write_turn`]); `None` on PostgreSQL.
    pub writes: Option<tokio::sync::Mutex<()>>,
}

impl Shared {
    /// Waits for this request's turn to write, on SQLite. SQLite has one writer; without a
    /// queue, concurrent writers wait in its busy handler, which sleeps with growing back-off
    /// and so oversleeps (a p99 of 1.5 s for 8 clients replacing endpoints, each write
    /// compiling the API under the lock). The tokio mutex hands the turn over in arrival
    /// order the moment the previous writer commits. Hold the guard until the commit.
    /// Wakes the webhook delivery loop if a committed write queued deliveries.
    pub fn wake_outbox(&self, queued: usize) {
        if queued > 0 {
            self.outbox.wake();
        }
    }

    pub async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.writes {
            Some(queue) => Some(queue.lock().await),
            None => None,
        }
    }
}

pub fn router(state: AppState) -> Router {
    // The admin API: every route in the OpenAPI document (see `docs`).
    docs::configure();
    let api = ApiRouter::new()
        .merge(workspaces::router())
        .merge(members::router())
        .merge(api_keys::router())
        .merge(apis::router())
        .merge(imports::router())
        .merge(endpoints::router())
        .merge(items::router())
        .merge(webhooks::router())
        .merge(analytics::router());
    let admin = docs::finish(ApiRouter::new().nest("/api/v1", api))
        .method_not_allowed_fallback(method_not_allowed);
    let timeout = state.request_timeout;
    let cors = hardening::cors(&state.cors_allowed_origins);
    let admin = admin.layer(axum::middleware::from_fn_with_state(state.clone(), limit_clients));
    let admin = hardening::protect(admin, hardening::API_CSP, timeout, cors);
    let own = hardening::protect(
        internal::router().merge(health::router()),
        hardening::API_CSP,
        timeout,
        None,
    );
    let router = Router::new()
        .merge(admin)
        .merge(own)
        // WebSocket mocks (`/mock/…` and `/mock-graphql/…` never reach the router: see
        // `Dispatch`). Mock answers are exactly what the mock defines: no layer of ours on them.
        .merge(ws::router())
        // Health, metrics and the internal routes answer a wrong method in JSON too.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Inside the router: the matched route is known here.
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
        .merge(hardening::protect(
            docs::page().method_not_allowed_fallback(method_not_allowed),
            hardening::DOCS_CSP,
            std::time::Duration::from_secs(30),
            None,
        ));
    // OTEL_EXPORTER_OTLP_ENDPOINT set: the request span is also the trace's server span (see
    // telemetry). Decided here, once: with traces off, requests get exactly the span below.
    if crate::telemetry::traces_enabled() {
        return router
            .layer(crate::telemetry::server_spans())
            .layer(axum::middleware::from_fn(request_id));
    }
    router
        // Every log line of a request carries its id (a span field).
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok());
            tracing::info_span!(
                "request",
                request_id = id.unwrap_or_default(),
                method = %request.method(),
                path = request.uri().path(),
            )
        }))
        .layer(axum::middleware::from_fn(request_id))
}

/// The whole server as one service: mock requests ([`mocks::is_mock_path`]) go straight to
/// the native runtime ([`mocks::serve_native`]), everything else through the router and its
/// layers.
///
/// With traces on (`OTEL_EXPORTER_OTLP_ENDPOINT`), mock requests get their server span too:
/// they pass through a router of their own that has only the span layer and the request id.
/// What [`Dispatch`] answers with: a mock answer's bytes ([`mocks::Answer`]), or axum's body.
pub type AnswerBody = http_body_util::Either<http_body_util::Full<Bytes>, axum::body::Body>;

#[derive(Debug, Clone)]
pub struct Dispatch {
    state: AppState,
    router: Router,
    traced_mocks: Option<Router>,
}

impl Dispatch {
    pub fn new(state: AppState) -> Self {
        let traced_mocks = crate::telemetry::traces_enabled().then(|| {
            let serve = |axum::extract::State(state): axum::extract::State<AppState>,
                         request: Request| async move {
                mocks::serve_native(&state, request).await
            };
            Router::new()
                .fallback(serve)
                .with_state(state.clone())
                .layer(crate::telemetry::server_spans())
                .layer(axum::middleware::from_fn(request_id))
        });
        Self { router: router(state.clone()), state, traced_mocks }
    }

    /// Answers one request: mock paths straight to the native runtime, the rest through the
    /// router (with its layers). A mock answer's body is its bytes, unboxed, and so is the
    /// request's when it goes to the native runtime.
    pub async fn handle(
        &self,
        request: axum::http::Request<hyper::body::Incoming>,
    ) -> axum::http::Response<AnswerBody> {
        use http_body_util::Either::{Left, Right};
        if let Some(traced) = &self.traced_mocks
            && let Some(route) = mocks::route_of(request.uri().path())
        {
            let mut request = request.map(axum::body::Body::new);
            request.extensions_mut().insert(crate::telemetry::Route(route));
            let Ok(response) = tower_service::Service::call(&mut traced.clone(), request).await;
            response.map(Right)
        } else if mocks::is_mock_path(request.uri().path()) {
            mocks::serve_native(&self.state, request).await.map(Left)
        } else {
            let request = request.map(axum::body::Body::new);
            let Ok(response) =
                tower_service::Service::call(&mut self.router.clone(), request).await;
            response.map(Right)
        }
    }
}

/// `GLOBAL_RATE_LIMIT_RPM` per client of the admin API: its credential (hashed: the
/// limiter keeps no secret) or, without one, all anonymous callers together.
async fn limit_clients(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let key = match request.headers().get(axum::http::header::AUTHORIZATION) {
        Some(credential) => {
            use sha2::Digest;
            hex::encode(&sha2::Sha256::digest(credential.as_bytes())[..16])
        }
        None => "anonymous".to_owned(),
    };
    let now = crate::db::now_ms();
    let Some(verdict) = state
        .limiter
        .count(crate::rate_limit::Scope::Client, &key, state.rate_limits.global_rpm, "client", now)
        .await
    else {
        return next.run(request).await;
    };
    let mut response = if verdict.allowed {
        next.run(request).await
    } else {
        if let Some(metrics) = &state.metrics {
            metrics.rate_limited("client");
        }
        let mut response = ApiError::RateLimited(format!(
            "this client is limited to {} requests a minute (GLOBAL_RATE_LIMIT_RPM); retry in {} s",
            verdict.limit, verdict.reset_seconds
        ))
        .into_response();
        if let Ok(value) = verdict.reset_seconds.to_string().parse() {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, value);
        }
        response
    };
    for (name, value) in verdict.headers() {
        if let Ok(value) = axum::http::HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

/// Every request gets an id before anything else sees it: the client's (or the edge's)
/// `x-request-id` when it is a sane token, a new UUIDv7 otherwise; every answer carries it.
async fn request_id(
    mut request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let given = request.headers().get("x-request-id").and_then(|v| v.to_str().ok());
    let id = match given.and_then(edgemock_shared::request::sane_request_id) {
        Some(id) => id.to_owned(),
        // From the per-thread generator: `Uuid::now_v7` asks the OS for randomness each time.
        None => mocks::new_request_id(),
    };
    let value = axum::http::HeaderValue::from_str(&id).ok();
    if let Some(value) = &value {
        request.headers_mut().insert("x-request-id", value.clone());
    }
    let mut response = next.run(request).await;
    if let Some(value) = value
        && !response.headers().contains_key("x-request-id")
    {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Counts and times every request by method, matched route, status and workspace.
async fn track(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let Some(metrics) = state.metrics.clone() else {
        return next.run(request).await;
    };
    let method = crate::metrics::method_label(request.method().as_str());
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    // The workspace of workspace-scoped admin routes, as the caller named it (looked up only
    // where the route has one: not on the mock routes' hot path).
    let (request, workspace) = if route.contains("{workspace}") {
        let (mut parts, body) = request.into_parts();
        let workspace = axum::extract::RawPathParams::from_request_parts(&mut parts, &())
            .await
            .ok()
            .and_then(|params| {
                params.iter().find(|(name, _)| *name == "workspace").map(|(_, v)| v.to_owned())
            });
        (Request::from_parts(parts, body), workspace)
    } else {
        (request, None)
    };
    let started = std::time::Instant::now();
    let in_progress = metrics.start(method, &route);
    let response = next.run(request).await;
    drop(in_progress);
    let status = response.status().as_u16();
    // Only on success: a failed guess must not become a label.
    let workspace = workspace.filter(|_| status < 400);
    metrics.observe_http(
        method,
        &route,
        status,
        workspace.as_deref().unwrap_or(""),
        started.elapsed(),
    );
    response
}

async fn not_found() -> ApiError {
    ApiError::NotFound("route".to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Path parameters, as axum's `Path` but with edgemock's JSON error when they cannot be read
/// (a percent-encoding that is not UTF-8).
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        // No id or slug holds a NUL (and PostgreSQL cannot even compare one): not found.
        if let Ok(raw) = axum::extract::RawPathParams::from_request_parts(parts, state).await
            && let Some((name, _)) = raw.iter().find(|(_, value)| value.contains('\0'))
        {
            return Err(ApiError::NotFound(format!("{name} with a NUL character")));
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(t)| Params(t))
            .map_err(|e| ApiError::BadRequest { code: "invalid_path", message: e.body_text() })
    }
}

impl<T: JsonSchema> OperationInput for Params<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        axum::extract::Path::<T>::operation_input(ctx, operation);
    }
}

/// `{workspace}`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct InWorkspace {
    /// The workspace's id or slug.
    pub workspace: String,
}

/// `{workspace}/…/{id}`: a member, API key or webhook.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct InWorkspaceItem {
    /// The workspace's id or slug.
    pub workspace: String,
    /// The item's id.
    pub id: String,
}

/// `{api}`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct OfApi {
    /// The API's id or slug.
    pub api: String,
}

/// `{api}/…/{id}`: an endpoint, GraphQL operation or WebSocket mock.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct OfApiItem {
    /// The API's id or slug.
    pub api: String,
    /// The item's id.
    pub id: String,
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
///
/// Every admin body is a JSON object: serde would also read a struct from an array, by
/// position (`[null, null]` as a change of nothing), so anything else is refused first.
///
/// A NUL character (`\u0000`) anywhere is refused too: PostgreSQL cannot store one in text,
/// and both databases must answer alike.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    if has_escaped_nul(bytes) {
        return Err(ApiError::invalid("body", "must not contain NUL characters (\\u0000)"));
    }
    match bytes.trim_ascii_start().first() {
        Some(b'{') => {}
        Some(b'[' | b'"' | b't' | b'f' | b'n' | b'-' | b'0'..=b'9') => {
            return Err(ApiError::invalid("body", "must be a JSON object"));
        }
        // Empty or not JSON at all: serde says why.
        _ => {}
    }
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

/// Whether JSON text holds `\u0000`. Backslashes occur only in strings, and each starts a
/// two-character escape (or `\uXXXX`), so skipping pairs never misreads `\\u0000`.
fn has_escaped_nul(bytes: &[u8]) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes.get(i + 1) == Some(&b'u') && bytes.get(i + 2..i + 6) == Some(b"0000") {
                return true;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    false
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
        // Cursors are ids: printable and short.
        if page.after.as_deref().is_some_and(|a| a.len() > 200 || a.chars().any(char::is_control)) {
            return Err(ApiError::invalid("after", "must be the next_cursor of a previous page"));
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

/// A page of a listing.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(rename = "PageOf{T}")]
pub struct Paginated<T> {
    pub items: Vec<T>,
    /// Pass as `after` for the next page; `null` on the last page.
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
