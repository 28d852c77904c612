//! The native runtime's routes: `ANY /mock/{apiSlug}/{path…}`,
//! `POST|GET /mock-graphql/{apiSlug}` and `/ws/{apiSlug}/{path…}` ([`super::ws`]), public
//! like the edge's (see [`crate::runtime`]).

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::routing::any;
use edgemock_shared::MockResponse;
use edgemock_shared::engine::ERROR_HEADER;
use edgemock_shared::model::validate_slug;
use serde_json::{Value, json};

use super::AppState;
use crate::db::now_ms;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/mock/{api}", any(rest_root))
        .route("/mock/{api}/", any(rest_root))
        .route("/mock/{api}/{*path}", any(rest))
        .route("/mock-graphql/{api}", any(graphql))
        .merge(super::ws::router())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Rest,
    Graphql,
}

// The handlers take the request whole: axum's `HeaderMap` and `Uri` extractors clone.

async fn rest_root(
    State(state): State<AppState>,
    Path(api): Path<String>,
    request: Request,
) -> Response {
    serve(&state, &api, "/".to_owned(), Protocol::Rest, request).await
}

async fn rest(
    State(state): State<AppState>,
    Path((api, path)): Path<(String, String)>,
    request: Request,
) -> Response {
    // The raw path below the API prefix, still percent-encoded (as the engine expects).
    let raw = request
        .uri()
        .path()
        .strip_prefix("/mock/")
        .and_then(|p| p.strip_prefix(api.as_str()))
        .map_or_else(|| format!("/{path}"), str::to_owned);
    serve(&state, &api, raw, Protocol::Rest, request).await
}

async fn graphql(
    State(state): State<AppState>,
    Path(api): Path<String>,
    request: Request,
) -> Response {
    serve(&state, &api, "/".to_owned(), Protocol::Graphql, request).await
}

/// The compiled API published under `api`, as REST, GraphQL and WebSocket mocks all need it:
/// a bad slug or no such API is the edge's 404 `api_not_found`, an API that cannot be
/// loaded a 503.
pub(super) async fn load(
    state: &AppState,
    api: &str,
) -> Result<std::sync::Arc<edgemock_shared::Engine>, MockResponse> {
    let not_found = || {
        error(
            404,
            "api_not_found",
            &format!("no API is published with slug '{api}'"),
            json!({ "api": api }),
        )
    };
    if validate_slug("apiSlug", api).is_err() {
        return Err(not_found());
    }
    match state.runtime.engine(api).await {
        Ok(Some(engine)) => Ok(engine),
        Ok(None) => Err(not_found()),
        Err(e) => {
            tracing::error!(api, error = %e, "cannot load the API for the native runtime");
            Err(error(503, "store_unavailable", "the API cannot be loaded", json!({})))
        }
    }
}

/// Counts one request (or WebSocket handshake, as the edge does) against the workspace's
/// rate limit: the verdict, whose headers go on the answer, or the edge's 429.
pub(super) async fn limit(
    state: &AppState,
    engine: &edgemock_shared::Engine,
) -> Result<Option<crate::rate_limit::Verdict>, MockResponse> {
    let workspace = &engine.snapshot().workspace;
    let (limit, tier) = state.rate_limits.for_workspace(workspace);
    let verdict = state.limiter.count(&format!("ws:{}", workspace.id), limit, tier, now_ms()).await;
    let Some(refused) = verdict.filter(|v| !v.allowed) else { return Ok(verdict) };
    if let Some(metrics) = &state.metrics {
        metrics.rate_limited("workspace");
    }
    let mut response = error(
        429,
        "rate_limited",
        &format!(
            "workspace '{}' is limited to {} requests a minute; retry in {} s",
            workspace.slug, refused.limit, refused.reset_seconds
        ),
        json!({ "limit": refused.limit, "retry_after_seconds": refused.reset_seconds }),
    );
    response.headers.push(("retry-after".into(), refused.reset_seconds.to_string()));
    response.headers.extend(refused.headers().map(|(n, v)| (n.to_owned(), v)));
    Err(response)
}

/// Request headers as the engine reads them (values that are not text are left out, as at
/// the edge).
pub(super) fn engine_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().to_owned(), v.to_owned())))
        .collect()
}

/// The request's id. The router's first layer (`http::request_id`) has put one on every
/// request already: the client's `x-request-id` when it is a sane token, otherwise a new one
/// (as the edge). The fallback only serves a handler reached some other way.
pub(super) fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map_or_else(new_request_id, str::to_owned)
}

pub(super) fn error(status: u16, code: &str, message: &str, extra: Value) -> MockResponse {
    let mut error = json!({ "code": code, "message": message });
    if let (Some(e), Value::Object(x)) = (error.as_object_mut(), extra) {
        e.extend(x);
    }
    MockResponse {
        status,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("cache-control".into(), "no-store".into()),
            (ERROR_HEADER.into(), code.into()),
        ],
        body: serde_json::to_vec(&json!({ "error": error })).unwrap_or_default(),
    }
}

async fn serve(
    state: &AppState,
    api: &str,
    path: String,
    protocol: Protocol,
    request: Request,
) -> Response {
    let request_id = request_id(request.headers());
    let started = std::time::Instant::now();
    let method = crate::metrics::method_label(request.method().as_str());
    let raw_method = request.method().as_str().to_owned();
    let (response, counted) = decide(state, api, path, protocol, request).await;
    if let (Some(recorder), Some(facts)) = (&state.recorder, &counted.facts) {
        recorder.record(event(api, &raw_method, protocol, &request_id, &response, facts, started));
    }
    if let Some(metrics) = &state.metrics {
        let labels = crate::metrics::MockLabels {
            runtime: "native",
            api: if counted.api_exists { api } else { "-" },
            method,
            endpoint: counted.endpoint.as_deref().unwrap_or("-"),
            status: response.status,
        };
        metrics.observe_mock(labels, started.elapsed());
    }
    finish(response, &request_id)
}

/// What a mock answer is counted under, beyond the request itself.
#[derive(Default)]
struct Counted {
    api_exists: bool,
    /// `METHOD pattern` of the matched endpoint (or GraphQL operation).
    endpoint: Option<String>,
    /// For the analytics event; `None` when no API answered (as at the edge, which records
    /// events only for APIs it has).
    facts: Option<Facts>,
}

struct Facts {
    workspace_id: String,
    api_id: String,
    path: String,
    request_bytes: u64,
    endpoint: Option<(String, String)>,
    proxied: bool,
    deduplicated: bool,
    validation_failed: bool,
    near_miss: Option<String>,
}

/// The native answer as an analytics event: the edge's wire type, `source: "native"`.
fn event(
    api: &str,
    method: &str,
    protocol: Protocol,
    request_id: &str,
    response: &MockResponse,
    facts: &Facts,
    started: std::time::Instant,
) -> edgemock_shared::analytics::AnalyticsEvent {
    use edgemock_shared::analytics::{self, AnalyticsEvent, CacheOutcome};
    let clip = |text: &str, max: usize| text.chars().take(max).collect::<String>();
    AnalyticsEvent {
        id: new_request_id(),
        request_id: clip(request_id, analytics::MAX_TEXT_CHARS),
        timestamp_ms: now_ms(),
        source: "native".to_owned(),
        workspace_id: facts.workspace_id.clone(),
        api_id: facts.api_id.clone(),
        api_slug: api.to_owned(),
        protocol: match protocol {
            Protocol::Rest => analytics::Protocol::Rest,
            Protocol::Graphql => analytics::Protocol::Graphql,
        },
        endpoint_method: facts.endpoint.as_ref().map(|(m, _)| m.clone()),
        endpoint_pattern: facts.endpoint.as_ref().map(|(_, p)| clip(p, analytics::MAX_PATH_CHARS)),
        method: clip(method, analytics::MAX_TEXT_CHARS),
        path: clip(&facts.path, analytics::MAX_PATH_CHARS),
        status: response.status,
        latency_ms: u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX),
        request_bytes: facts.request_bytes,
        response_bytes: response.body.len() as u64,
        country: None,
        city: None,
        colo: None,
        proxied: facts.proxied,
        deduplicated: facts.deduplicated,
        cache: CacheOutcome::Bypass,
        validation_failed: facts.validation_failed,
        near_miss: facts.near_miss.as_deref().map(|n| clip(n, analytics::MAX_PATH_CHARS)),
        snapshot_source: Some("native".to_owned()),
    }
}

async fn decide(
    state: &AppState,
    api: &str,
    path: String,
    protocol: Protocol,
    request: Request,
) -> (MockResponse, Counted) {
    let mut counted = Counted::default();
    let response = answer(state, api, path, protocol, request, &mut counted).await;
    (response, counted)
}

async fn answer(
    state: &AppState,
    api: &str,
    path: String,
    protocol: Protocol,
    request: Request,
    counted: &mut Counted,
) -> MockResponse {
    let engine = match load(state, api).await {
        Ok(engine) => engine,
        Err(refusal) => return refusal,
    };
    counted.api_exists = true;
    let verdict = match limit(state, &engine).await {
        Ok(verdict) => verdict,
        Err(refusal) => return refusal,
    };
    let (parts, body) = request.into_parts();
    let body = if matches!(parts.method, Method::GET | Method::HEAD) {
        Vec::new()
    } else {
        match axum::body::to_bytes(body, super::MAX_BODY_BYTES).await {
            Ok(bytes) => bytes.into(),
            Err(_) => {
                return error(
                    413,
                    "body_too_large",
                    &format!("the request body is larger than {} bytes", super::MAX_BODY_BYTES),
                    json!({}),
                );
            }
        }
    };
    let request = edgemock_shared::Request {
        method: parts.method.as_str().to_ascii_uppercase(),
        path,
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers: engine_headers(&parts.headers),
        body,
    };
    let now_ms = now_ms();
    let seed = seed();
    let outcome = match protocol {
        Protocol::Rest => engine.handle(&request, now_ms, seed),
        Protocol::Graphql => engine.handle_graphql(&request, now_ms, seed),
    };
    counted.endpoint = outcome.matched.as_ref().map(|m| format!("{} {}", m.method, m.pattern));
    let snapshot = engine.snapshot();
    let mut facts = Facts {
        workspace_id: snapshot.workspace.id.clone(),
        api_id: snapshot.api.id.clone(),
        path: request.path.clone(),
        request_bytes: request.body.len() as u64,
        endpoint: outcome.matched.as_ref().map(|m| (m.method.clone(), m.pattern.clone())),
        proxied: outcome.kind == edgemock_shared::OutcomeKind::Proxy,
        deduplicated: false,
        validation_failed: outcome.kind == edgemock_shared::OutcomeKind::ValidationFailed,
        near_miss: outcome.near_misses.first().map(|m| format!("{} {}", m.method, m.path)),
    };
    // An identical request within the window gets the first answer again (before the
    // delay, as at the edge).
    let dedup_key = outcome.dedup_key.clone();
    if let Some(key) = &dedup_key
        && let Some(replay) = state.runtime.replay(api, key)
    {
        facts.deduplicated = true;
        counted.facts = Some(facts);
        return replay;
    }
    counted.facts = Some(facts);
    let delay = outcome.delay_ms;
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(u64::from(delay))).await;
    }
    let mut response = crate::runtime::respond(&state.runtime, &request, outcome, api).await;
    if let Some(key) = &dedup_key {
        state.runtime.remember_answer(api, key, &response);
    }
    if let Some(verdict) = verdict {
        response.headers.extend(verdict.headers().map(|(n, v)| (n.to_owned(), v)));
    }
    response
}

thread_local! {
    // Seeds and request ids come from a per-thread generator seeded once from the OS: a
    // system call per request (two, with the request id) showed up in profiles.
    static RNG: std::cell::RefCell<rand::rngs::ChaCha8Rng> = std::cell::RefCell::new({
        let mut seed = [0u8; 32];
        // Never expected to fail; the time still varies the stream between threads and runs.
        if getrandom::fill(&mut seed).is_err() {
            let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
            seed[..16].copy_from_slice(&nanos.to_le_bytes());
        }
        rand::SeedableRng::from_seed(seed)
    });
}

/// A fresh seed per request: every random choice the engine makes is drawn from it.
pub(super) fn seed() -> u64 {
    RNG.with(|rng| rand::Rng::next_u64(&mut *rng.borrow_mut()))
}

/// A UUIDv7 (time-ordered, like the control plane's ids) for a request without one.
pub(super) fn new_request_id() -> String {
    let mut random = [0u8; 10];
    RNG.with(|rng| rand::Rng::fill_bytes(&mut *rng.borrow_mut(), &mut random));
    let millis = u64::try_from(now_ms()).unwrap_or_default();
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid().to_string()
}

/// The response on the wire: `x-request-id` always, the request id in edgemock's own errors.
pub(super) fn finish(mut response: MockResponse, request_id: &str) -> Response {
    if response.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(ERROR_HEADER)) {
        response.body = edgemock_shared::response::with_request_id(response.body, request_id);
    }
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let bodyless = matches!(response.status, 100..=199 | 204 | 205 | 304);
    let mut out = Response::new(if bodyless { Body::empty() } else { Body::from(response.body) });
    *out.status_mut() = status;
    let headers = out.headers_mut();
    for (name, value) in &response.headers {
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value))
        {
            headers.append(name, value);
        }
    }
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", value);
    }
    out
}
