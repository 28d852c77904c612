//! The native runtime's mock requests: `ANY /mock/{apiSlug}/{path…}` and
//! `POST|GET /mock-graphql/{apiSlug}`, public like the edge's (see [`crate::runtime`]);
//! WebSocket mocks at `/ws/{apiSlug}/{path…}` are [`super::ws`].
//!
//! Mock requests do not go through the router: [`super::Dispatch`] hands every request whose
//! path starts with `/mock/` or `/mock-graphql/` to [`serve_native`], which does what the
//! router's layers do for other routes (request id, metrics) and nothing else. Mock answers
//! must be exactly what the mock defines, and a mock server is judged by how many requests a
//! core answers: the layers (middleware futures, a tracing span per request, header copies)
//! cost more than the engine. Slugs and paths are split from the raw path as the edge splits
//! them (`edge/src/routes.rs`), so both answer the same to odd paths.

use std::borrow::Cow;

use axum::body::{Bytes, HttpBody};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use edgemock_shared::MockResponse;
use edgemock_shared::engine::ERROR_HEADER;
use edgemock_shared::model::validate_slug;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Value, json};

use super::AppState;
use crate::db::now_ms;
use crate::runtime::EngineRef;

const MOCK_PREFIX: &str = "/mock/";
const GRAPHQL_PREFIX: &str = "/mock-graphql/";
/// A constant name: a lookup by `&str` parses and hashes the name on every request.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Rest,
    Graphql,
}

/// Whether [`serve_native`] answers this path.
pub fn is_mock_path(path: &str) -> bool {
    path.starts_with(MOCK_PREFIX) || path.starts_with(GRAPHQL_PREFIX)
}

/// The route template a mock path is counted and traced under (as the router would name it);
/// `None` for any other path.
pub fn route_of(path: &str) -> Option<&'static str> {
    split(path).map(|(route, ..)| route)
}

/// A mock path's route template ([`route_of`]), API slug, path below the API (`/` when
/// absent; GraphQL's slug is all that follows its prefix) and protocol.
fn split(path: &str) -> Option<(&'static str, &str, &str, Protocol)> {
    if let Some(rest) = path.strip_prefix(MOCK_PREFIX) {
        let (slug, sub) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let route = if sub.len() > 1 { "/mock/{api}/{*path}" } else { "/mock/{api}" };
        Some((route, slug, if sub.is_empty() { "/" } else { sub }, Protocol::Rest))
    } else {
        let rest = path.strip_prefix(GRAPHQL_PREFIX)?;
        let slug = rest.strip_suffix('/').unwrap_or(rest);
        Some(("/mock-graphql/{api}", slug, "/", Protocol::Graphql))
    }
}

/// A mock answer: its bytes as they are (axum's `Body` would box them, an allocation and
/// dynamic calls per answer).
pub type Answer = axum::http::Response<Full<Bytes>>;

/// Answers a mock request (a path [`is_mock_path`] accepts), with `x-request-id`, counted in
/// `http_requests_*` under the route templates the router would have matched. `B` is hyper's
/// own body type (no box) or, with traces on, axum's.
pub async fn serve_native<B>(state: &AppState, request: Request<B>) -> Answer
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    let started = std::time::Instant::now();
    let (parts, body) = request.into_parts();
    let method = crate::metrics::method_label(parts.method.as_str());
    let (route, api, sub_path, protocol) =
        split(parts.uri.path()).unwrap_or(("unmatched", "", "/", Protocol::Graphql));
    // One reading of the clock for the request id, the rate limit's window, the engine and
    // the analytics' minute.
    let arrived_ms = now_ms();
    let request_id = request_id_at(&parts.headers, arrived_ms);
    let counting = state.metrics.as_ref().map(|m| m.native_request(method, route));
    let mut counted = Counted {
        arrived_ms,
        started,
        engine: None,
        matched: None,
        sample: crate::analytics::Sample::default(),
        verdict: None,
    };
    let response =
        answer(state, api, sub_path, protocol, (&parts, body), &request_id, &mut counted).await;
    count(state, &counted, &response, started.elapsed(), counting);
    finish(response, request_id, counted.verdict)
}

/// Counts an answer in the analytics tally and the metrics.
fn count(
    state: &AppState,
    counted: &Counted,
    response: &MockResponse,
    took: std::time::Duration,
    counting: Option<crate::metrics::NativeRequest<'_>>,
) {
    let none = crate::analytics::none_ref();
    let matched = counted.matched.zip(counted.engine.as_ref()).and_then(|(id, e)| e.matched(id));
    let endpoint = matched.map_or(none, |m| &m.label);
    // As at the edge, requests are counted once an API answered them (not a slug that
    // names none).
    if let (Some(tally), Some(engine)) = (&state.tally, &counted.engine) {
        let labels = engine.labels();
        let row = crate::analytics::NativeRow {
            api_id: &labels.api_id,
            workspace_id: &labels.workspace_id,
            endpoint,
            at_ms: counted.arrived_ms,
            status: response.status,
        };
        let sample = crate::analytics::Sample {
            latency_ms: u32::try_from(took.as_millis()).unwrap_or(u32::MAX),
            response_bytes: response.body.len() as u64,
            ..counted.sample
        };
        tally.add(row, &sample);
    }
    if let Some(counting) = counting {
        let api = counted.engine.as_ref().map_or(none, |e| &e.labels().api_slug);
        let mock = crate::metrics::NativeMock { api, endpoint };
        counting.done(response.status, took, mock);
    }
}

/// The compiled API published under `api`, as REST, GraphQL and WebSocket mocks all need it
/// for a request that arrived at `arrived`: a bad slug or no such API is the edge's 404
/// `api_not_found`, an API that cannot be loaded a 503.
pub(super) async fn load(
    state: &AppState,
    api: &str,
    arrived: std::time::Instant,
    request_id: &str,
) -> Result<EngineRef, MockResponse> {
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
    match state.runtime.engine(api, arrived).await {
        Ok(Some(engine)) => Ok(engine),
        Ok(None) => Err(not_found()),
        Err(e) => {
            tracing::error!(
                api,
                request_id,
                error = %e,
                "cannot load the API for the native runtime"
            );
            Err(error(503, "store_unavailable", "the API cannot be loaded", json!({})))
        }
    }
}

/// Counts one request (or WebSocket handshake, as the edge does) against the workspace's
/// rate limit: the verdict, whose headers go on the answer, or the edge's 429.
pub(super) async fn limit(
    state: &AppState,
    engine: &edgemock_shared::Engine,
    now_ms: i64,
) -> Result<Option<crate::rate_limit::Verdict>, MockResponse> {
    let workspace = &engine.snapshot().workspace;
    let (limit, tier) = state.rate_limits.for_workspace(workspace);
    let scope = crate::rate_limit::Scope::Workspace;
    let verdict = state.limiter.count(scope, &workspace.id, limit, tier, now_ms).await;
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
    response.headers.push(("retry-after".into(), refused.reset_seconds.to_string().into()));
    response.headers.extend(refused.headers().map(|(n, v)| (n.into(), v.into())));
    Err(response)
}

/// Request headers as the engine reads them (values that are not text are left out, as at
/// the edge).
pub(super) fn engine_headers(headers: &HeaderMap) -> Vec<(Cow<'_, str>, Cow<'_, str>)> {
    let mut out = Vec::with_capacity(headers.len());
    out.extend(
        headers.iter().filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str().into(), v.into()))),
    );
    out
}

/// The method as the engine reads it, upper-case: hyper's own text (no copy) for the
/// standard methods and any other already in upper case.
pub(super) fn engine_method(method: &Method) -> Cow<'_, str> {
    let text = method.as_str();
    if text.bytes().any(|b| b.is_ascii_lowercase()) {
        Cow::Owned(text.to_ascii_uppercase())
    } else {
        Cow::Borrowed(text)
    }
}

/// The request's id: the client's (or the edge's) `x-request-id` when it is a sane token,
/// otherwise a new one (as the edge does, and as the router's first layer does for other
/// routes).
pub(super) fn request_id(headers: &HeaderMap) -> String {
    request_id_at(headers, now_ms())
}

/// [`request_id`], a new one made at `now_ms`.
fn request_id_at(headers: &HeaderMap, now_ms: i64) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(edgemock_shared::request::sane_request_id)
        .map_or_else(|| new_request_id_at(now_ms), str::to_owned)
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
            (ERROR_HEADER.into(), code.to_owned().into()),
        ],
        body: serde_json::to_vec(&json!({ "error": error })).unwrap_or_default().into(),
    }
}

/// What a mock answer is counted under, beyond the request itself.
struct Counted {
    /// When the request arrived (the engine's clock, and the analytics' minute).
    arrived_ms: i64,
    /// The same moment on the monotonic clock (the cache's TTL, the latency).
    started: std::time::Instant,
    /// The API that answered; `None` when no API has the slug.
    engine: Option<EngineRef>,
    /// The endpoint (or GraphQL operation) that matched.
    matched: Option<edgemock_shared::MatchId>,
    /// What the analytics count besides status, latency and the response's size.
    sample: crate::analytics::Sample,
    /// The rate limit's verdict, for the headers of an answer the mock gave (not of a
    /// replay, as at the edge).
    verdict: Option<crate::rate_limit::Verdict>,
}

async fn answer<B>(
    state: &AppState,
    api: &str,
    path: &str,
    protocol: Protocol,
    (parts, body): (&Parts, B),
    request_id: &str,
    counted: &mut Counted,
) -> MockResponse
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    let engine = match load(state, api, counted.started, request_id).await {
        Ok(engine) => engine,
        Err(refusal) => return refusal,
    };
    let response = answer_with(state, &engine, api, path, protocol, (parts, body), counted).await;
    // Moved, not cloned: every clone of the engine's reference count is a write to a line
    // that every core answering the API shares.
    counted.engine = Some(engine);
    response
}

/// [`answer`], once the API is loaded.
async fn answer_with<B>(
    state: &AppState,
    engine: &edgemock_shared::Engine,
    api: &str,
    path: &str,
    protocol: Protocol,
    (parts, body): (&Parts, B),
    counted: &mut Counted,
) -> MockResponse
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    let now_ms = counted.arrived_ms;
    let verdict = match limit(state, engine, now_ms).await {
        Ok(verdict) => verdict,
        Err(refusal) => return refusal,
    };
    let body = if matches!(parts.method, Method::GET | Method::HEAD) {
        Vec::new()
    } else {
        match Limited::new(body, super::MAX_BODY_BYTES).collect().await {
            Ok(collected) => collected.to_bytes().into(),
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
        method: engine_method(&parts.method),
        path: path.into(),
        query: parts.uri.query().unwrap_or_default().into(),
        headers: engine_headers(&parts.headers),
        body,
    };
    let seed = seed();
    let mut outcome = match protocol {
        Protocol::Rest => engine.handle(&request, now_ms, seed),
        Protocol::Graphql => engine.handle_graphql(&request, now_ms, seed),
    };
    counted.matched = outcome.matched.take();
    counted.sample.request_bytes = request.body.len() as u64;
    counted.sample.proxied = outcome.kind == edgemock_shared::OutcomeKind::Proxy;
    counted.sample.validation_failed =
        outcome.kind == edgemock_shared::OutcomeKind::ValidationFailed;
    // An identical request within the window gets the first answer again (before the
    // delay, as at the edge).
    let dedup_key = outcome.dedup_key.take();
    if let Some(key) = &dedup_key
        && let Some(replay) = state.runtime.replay(api, key)
    {
        counted.sample.deduplicated = true;
        return replay;
    }
    let delay = outcome.delay_ms;
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(u64::from(delay))).await;
    }
    let response = crate::runtime::respond(&state.runtime, &request, outcome, api).await;
    if let Some(key) = &dedup_key {
        state.runtime.remember_answer(api, key, &response);
    }
    counted.verdict = verdict;
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
    new_request_id_at(now_ms())
}

/// [`new_request_id`], made at `now_ms`.
fn new_request_id_at(now_ms: i64) -> String {
    let mut random = [0u8; 10];
    RNG.with(|rng| rand::Rng::fill_bytes(&mut *rng.borrow_mut(), &mut random));
    let millis = u64::try_from(now_ms).unwrap_or_default();
    let uuid = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
    // Encoded directly: `to_string` goes through the formatting machinery.
    uuid.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()).to_owned()
}

/// The engine's own header names on nearly every answer, as `http`'s constants: comparing
/// the text with a few literals is a fraction of what parsing a name costs.
fn known_name(name: &'static str) -> Option<HeaderName> {
    use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG};
    match name {
        "content-type" => Some(CONTENT_TYPE),
        "cache-control" => Some(CACHE_CONTROL),
        "etag" => Some(ETAG),
        _ => None,
    }
}

/// The engine's constant header values on nearly every answer, checked once (at compile
/// time, being constants) rather than byte by byte on each answer.
fn known_value(value: &'static str) -> Option<HeaderValue> {
    const JSON: HeaderValue = HeaderValue::from_static("application/json");
    const REVALIDATE: HeaderValue = HeaderValue::from_static("private, no-cache");
    const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
    match value {
        "application/json" => Some(JSON),
        "private, no-cache" => Some(REVALIDATE),
        "no-store" => Some(NO_STORE),
        _ => None,
    }
}

/// The response on the wire: `x-request-id` always, the request id in edgemock's own errors,
/// and the `X-RateLimit-*` headers of `verdict`.
pub(super) fn finish(
    mut response: MockResponse,
    request_id: String,
    verdict: Option<crate::rate_limit::Verdict>,
) -> Answer {
    if response.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(ERROR_HEADER)) {
        response.body = edgemock_shared::response::with_request_id(response.body, &request_id);
    }
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let bodyless = matches!(response.status, 100..=199 | 204 | 205 | 304);
    let mut out = Answer::new(Full::new(if bodyless { Bytes::new() } else { response.body }));
    *out.status_mut() = status;
    let headers = out.headers_mut();
    headers.reserve(response.headers.len() + 5);
    // Ours replace the mock's own `x-request-id` and `x-ratelimit-*`; when it set none (as
    // nearly every mock), they are appended, which skips looking for values to remove.
    let mut overridden = false;
    for (name, value) in response.headers {
        overridden |= name.len() >= 12
            && (name.eq_ignore_ascii_case("x-request-id")
                || name.as_bytes()[..12].eq_ignore_ascii_case(b"x-ratelimit-"));
        // The value's bytes move into the header as they are (no copy), or are the engine's
        // constant text; a standard name is a constant of `http`, only other names are copied.
        let value = match value {
            Cow::Borrowed(text) => known_value(text).map_or_else(
                || HeaderValue::from_maybe_shared(bytes::Bytes::from_static(text.as_bytes())),
                Ok,
            ),
            Cow::Owned(text) => HeaderValue::from_maybe_shared(bytes::Bytes::from(text)),
        };
        let name = match name {
            Cow::Borrowed(text) => {
                known_name(text).map_or_else(|| HeaderName::from_bytes(text.as_bytes()), Ok)
            }
            Cow::Owned(text) => HeaderName::from_bytes(text.as_bytes()),
        };
        if let (Ok(name), Ok(value)) = (name, value) {
            headers.append(name, value);
        }
    }
    let mut set = |name: HeaderName, value: HeaderValue| {
        if overridden {
            headers.insert(name, value);
        } else {
            headers.append(name, value);
        }
    };
    // The id's own bytes become the value (no copy).
    if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(request_id)) {
        set(REQUEST_ID, value);
    }
    if let Some(verdict) = verdict {
        for (name, value) in verdict.header_values() {
            set(name, value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use edgemock_shared::MockResponse;

    use super::{Protocol, finish, split};

    /// Paths split as the edge splits them (`edge/src/routes.rs`), and counted under the
    /// router's templates.
    #[test]
    fn paths_split_as_the_edge_splits_them() {
        let rest = |route, api, path| Some((route, api, path, Protocol::Rest));
        let graphql = |api| Some(("/mock-graphql/{api}", api, "/", Protocol::Graphql));
        assert_eq!(split("/mock/shop"), rest("/mock/{api}", "shop", "/"));
        assert_eq!(split("/mock/shop/"), rest("/mock/{api}", "shop", "/"));
        assert_eq!(split("/mock/shop/a/b"), rest("/mock/{api}/{*path}", "shop", "/a/b"));
        assert_eq!(split("/mock/shop//"), rest("/mock/{api}/{*path}", "shop", "//"));
        assert_eq!(split("/mock/"), rest("/mock/{api}", "", "/"));
        assert_eq!(split("/mock-graphql/shop"), graphql("shop"));
        assert_eq!(split("/mock-graphql/shop/"), graphql("shop"));
        assert_eq!(split("/mock-graphql/"), graphql(""));
        assert_eq!(split("/mocks/shop"), None);
        assert_eq!(split("/api/v1/apis"), None);
    }

    /// Every header reaches the wire with its value, whichever way it is converted: the
    /// engine's constant names and values, other borrowed ones, and a mock's own (in its
    /// own case); a value that cannot be a header value is left out, and the request id
    /// is added.
    #[test]
    fn headers_reach_the_wire_as_written() {
        let response = MockResponse {
            status: 200,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("cache-control".into(), "private, no-cache".into()),
                ("etag".into(), String::from("\"abc\"").into()),
                ("vary".into(), "Origin".into()),
                (String::from("X-Own").into(), String::from("mine").into()),
                ("cache-control".into(), "no-store".into()),
                (String::from("x-bad").into(), String::from("a\nb").into()),
            ],
            body: bytes::Bytes::from_static(b"{}"),
        };
        let out = finish(response, "req-1".to_owned(), None);
        let values = |name: &str| -> Vec<&str> {
            out.headers().get_all(name).iter().map(|v| v.to_str().unwrap()).collect()
        };
        assert_eq!(values("content-type"), ["application/json"]);
        assert_eq!(values("cache-control"), ["private, no-cache", "no-store"]);
        assert_eq!(values("etag"), ["\"abc\""]);
        assert_eq!(values("vary"), ["Origin"]);
        assert_eq!(values("x-own"), ["mine"]);
        assert!(values("x-bad").is_empty());
        assert_eq!(values("x-request-id"), ["req-1"]);
        assert_eq!(out.status(), 200);
    }
}
