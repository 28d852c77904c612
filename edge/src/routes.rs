//! Request dispatch.
//!
//! - `ANY /mock/{apiSlug}/{path…}`: mock traffic.
//! - `PUT|DELETE /__edgemock/v1/snapshots/{apiSlug}`: the control plane publishes here,
//!   with `Authorization: Bearer $EDGE_PUBLISH_TOKEN`.
//! - `GET /__edgemock/health`: liveness, for `wrangler dev` readiness checks and monitors.
//! - Only when `EDGEMOCK_TEST_ROUTES` is `true` (tests and benchmarks):
//!   `GET /__edgemock/test/panic` panics; `ANY /__edgemock/test/repeat/{apiSlug}/{path…}`
//!   runs the engine `x-edgemock-repeat` times on the request.

use edgemock_shared::analytics::{CacheOutcome, Protocol};
use edgemock_shared::model::validate_slug;
use edgemock_shared::{Engine, OutcomeKind, Snapshot};
use serde_json::json;
use subtle::ConstantTimeEq;
use worker::{Date, Env, Headers, Method, Request, Response, Result};

use crate::analytics::{ApiFacts, Facts};
use crate::config::Config;
use crate::error::{json_error, json_response};
use crate::store::{LoadError, Loaded, Store};

/// Largest snapshot the publish route accepts. Workers KV values may hold 25 MiB.
const MAX_SNAPSHOT_BYTES: usize = 20 * 1024 * 1024;

const MOCK_PREFIX: &str = "/mock/";
const GRAPHQL_PREFIX: &str = "/mock-graphql/";
const WS_PREFIX: &str = "/ws/";

const SNAPSHOTS_PREFIX: &str = "/__edgemock/v1/snapshots/";
const REPEAT_PREFIX: &str = "/__edgemock/test/repeat/";

/// Answers one request; what it learns about mock traffic goes into `facts`, for analytics.
pub async fn handle(
    mut req: Request,
    env: &Env,
    config: &Config,
    facts: &mut Facts,
) -> Result<Response> {
    let path = req.path();
    let mock = if let Some((slug, sub_path)) = split_slug(&path, MOCK_PREFIX) {
        Some((slug, sub_path, Protocol::Rest))
    } else if let Some((slug, sub_path)) = split_slug(&path, WS_PREFIX) {
        Some((slug, sub_path, Protocol::Websocket))
    } else {
        path.strip_prefix(GRAPHQL_PREFIX).map(|rest| {
            (rest.strip_suffix('/').unwrap_or(rest).to_owned(), "/".to_owned(), Protocol::Graphql)
        })
    };
    if let Some((slug, sub_path, protocol)) = mock {
        facts.protocol = protocol;
        facts.path = sub_path.clone();
        facts.method = req.inner().method().to_ascii_uppercase();
        return serve_mock(&mut req, env, config, &slug, &sub_path, facts).await;
    }
    if let Some(slug) = path.strip_prefix(SNAPSHOTS_PREFIX) {
        return publish(req, env, config, slug).await;
    }
    if crate::config::text(env, "EDGEMOCK_TEST_ROUTES").as_deref() == Some("true") {
        if path == "/__edgemock/test/panic" {
            // Proves that a panic does not poison the instance.
            panic!("a panic on purpose (EDGEMOCK_TEST_ROUTES)");
        }
        if let Some((slug, sub_path)) = split_slug(&path, REPEAT_PREFIX) {
            return repeat_engine(&mut req, env, config, &slug, &sub_path).await;
        }
    }
    if path == "/__edgemock/health" {
        return json_response(200, &json!({ "status": "ok" }));
    }
    json_error(404, "not_found", "edgemock serves mocks under /mock/{apiSlug}/…", json!({}))
}

/// `{prefix}{slug}{/rest}` → (`slug`, `/rest`); the rest is `/` when absent.
fn split_slug(path: &str, prefix: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix(prefix)?;
    let (slug, sub_path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    Some((slug.to_owned(), if sub_path.is_empty() { "/".to_owned() } else { sub_path.to_owned() }))
}

fn now_ms() -> u64 {
    Date::now().as_millis()
}

/// A fresh seed per request: the engine draws every random choice from it.
fn random_seed() -> u64 {
    // Math.random has 52 random bits; two draws fill a u64.
    let hi = (worker::js_sys::Math::random() * f64::from(u32::MAX)) as u64;
    let lo = (worker::js_sys::Math::random() * f64::from(u32::MAX)) as u64;
    (hi << 32) | lo
}

/// The request as the engine sees it: `path` below the API prefix, raw query, headers,
/// body bytes.
async fn to_engine_request(
    req: &mut Request,
    path: &str,
) -> Result<edgemock_shared::Request<'static>> {
    let url = req.url()?;
    // The Worker's request is JavaScript's: its text is copied into the engine's request.
    let headers = req.headers().entries().map(|(k, v)| (k.into(), v.into())).collect();
    // The method as sent: `worker::Method` maps methods it does not know (PROPFIND …) to GET.
    let method = req.inner().method().to_ascii_uppercase();
    let body = match method.as_str() {
        "GET" | "HEAD" => Vec::new(),
        _ => req.bytes().await.unwrap_or_default(),
    };
    Ok(edgemock_shared::Request {
        method: method.into(),
        path: path.to_owned().into(),
        query: url.query().unwrap_or_default().to_owned().into(),
        headers,
        body,
    })
}

async fn serve_mock(
    req: &mut Request,
    env: &Env,
    config: &Config,
    slug: &str,
    path: &str,
    facts: &mut Facts,
) -> Result<Response> {
    let protocol = facts.protocol;
    let api_not_found = || {
        json_error(
            404,
            "api_not_found",
            &format!("no API is published with slug '{slug}'"),
            json!({ "api": slug }),
        )
    };
    if validate_slug("apiSlug", slug).is_err() {
        return api_not_found();
    }
    let store = Store::new(env, config.isolate_ttl_ms, config.kv_cache_ttl_seconds)?
        .with_fallback(config.control_plane_url.as_deref(), config.publish_token.as_deref());
    let loaded = match store.load(slug, now_ms()).await {
        Ok(loaded) => loaded,
        Err(LoadError::Kv(e)) => {
            worker::console_error!("KV read for '{slug}' failed: {e}");
            return json_error(
                503,
                "store_unavailable",
                "the snapshot store is unavailable",
                json!({}),
            );
        }
        Err(LoadError::Unreadable(e)) => {
            worker::console_error!("snapshot for '{slug}' is unreadable: {e}");
            return json_error(
                503,
                "snapshot_unreadable",
                &format!("the snapshot of API '{slug}' cannot be read by this edge build: {e}"),
                json!({ "api": slug }),
            );
        }
    };
    let Some(api) = loaded.api else { return api_not_found() };
    let version = api.snapshot().version.to_string();
    let workspace = &api.snapshot().workspace;
    facts.api = Some(ApiFacts {
        workspace_id: workspace.id.clone(),
        api_id: api.snapshot().api.id.clone(),
        api_slug: slug.to_owned(),
    });
    facts.snapshot_source = Some(loaded.source);
    let limit = crate::rate_limit::limit_for(env, workspace);
    let verdict = match crate::rate_limit::check(env, workspace, limit).await {
        Ok(verdict) => verdict,
        Err(e) => {
            // A limiter that cannot answer must not take the mocks down with it.
            worker::console_error!("rate limiter for workspace {} failed: {e}", workspace.id);
            None
        }
    };
    if let Some(verdict) = verdict.filter(|v| !v.allowed) {
        let mut response = json_error(
            429,
            "rate_limited",
            &format!(
                "workspace '{}' is limited to {} requests a minute; retry in {} s",
                workspace.slug, verdict.limit, verdict.reset_seconds
            ),
            json!({ "limit": verdict.limit, "retry_after_seconds": verdict.reset_seconds }),
        )?;
        let headers = response.headers_mut();
        headers.set("retry-after", &verdict.reset_seconds.to_string())?;
        for (name, value) in crate::rate_limit::headers(&verdict) {
            headers.set(name, &value)?;
        }
        return Ok(response);
    }
    let request = to_engine_request(req, path).await?;
    facts.request_bytes = request.body.len() as u64;
    let cache_key = (protocol == Protocol::Rest)
        .then(|| {
            let has_cors = api.snapshot().api.cors.is_some();
            crate::shared_cache::key(slug, api.version(), &request, has_cors)
        })
        .flatten();
    if let Some(key) = &cache_key
        && let Some(mut hit) = crate::shared_cache::lookup(key).await?
    {
        facts.cache = CacheOutcome::Hit;
        let headers = hit.headers_mut();
        headers.set("x-edgemock-snapshot-version", &version)?;
        headers.set("x-edgemock-snapshot-source", loaded.source)?;
        if let Some(verdict) = &verdict {
            for (name, value) in crate::rate_limit::headers(verdict) {
                headers.set(name, &value)?;
            }
        }
        return Ok(hit);
    }
    let (now, seed) = (now_ms() as i64, random_seed());
    let outcome = match protocol {
        Protocol::Rest => api.handle(&request, now, seed),
        Protocol::Graphql => api.handle_graphql(&request, now, seed),
        Protocol::Websocket => {
            let Some(ws) = api.websocket(path) else {
                return json_error(
                    404,
                    "websocket_not_found",
                    &format!("API '{slug}' has no WebSocket mock at {path}"),
                    json!({ "api": slug, "path": path }),
                );
            };
            let upgrade = req.headers().get("upgrade")?.unwrap_or_default();
            if !upgrade.eq_ignore_ascii_case("websocket") {
                let mut response = json_error(
                    426,
                    "upgrade_required",
                    "this is a WebSocket mock: connect with Upgrade: websocket",
                    json!({ "api": slug, "path": path }),
                )?;
                response.headers_mut().set("upgrade", "websocket")?;
                return Ok(response);
            }
            return crate::ws::accept(api.clone(), ws, request, random_seed);
        }
    };
    let shared_cache_seconds = outcome.shared_cache_seconds;
    facts.endpoint = outcome
        .matched
        .and_then(|id| api.matched(id))
        .map(|m| (m.method.to_string(), m.pattern.to_string()));
    facts.validation_failed = outcome.kind == OutcomeKind::ValidationFailed;
    facts.near_miss = outcome.near_misses.first().map(|m| format!("{} {}", m.method, m.path));
    // An identical request within the window gets the first answer again.
    let dedup = outcome.dedup_key.as_deref().map(|key| crate::dedup::Dedup::new(slug, key));
    if let Some(dedup) = &dedup
        && let Some(mut replay) = dedup.lookup().await?
    {
        facts.deduplicated = true;
        let headers = replay.headers_mut();
        headers.set("x-edgemock-snapshot-version", &version)?;
        headers.set("x-edgemock-snapshot-source", loaded.source)?;
        return Ok(replay);
    }
    if outcome.delay_ms > 0 {
        worker::Delay::from(std::time::Duration::from_millis(u64::from(outcome.delay_ms))).await;
    }
    let mut response = match (&outcome.kind, &outcome.proxy) {
        (OutcomeKind::Proxy, Some(directive)) => {
            facts.proxied = true;
            let (mut upstream, size) = crate::proxy::forward(
                &request,
                directive,
                config.proxy_policy,
                config.proxy_default_timeout_ms,
                &format!("/mock/{slug}"),
            )
            .await?;
            facts.response_bytes = size;
            // The engine's CORS headers belong on whatever the client gets.
            for (name, value) in &outcome.response.headers {
                let lower = name.to_ascii_lowercase();
                if lower.starts_with("access-control-") || lower == "vary" {
                    upstream.headers_mut().set(name, value)?;
                }
            }
            upstream
        }
        _ => {
            let mock = outcome.response;
            facts.response_bytes = Some(mock.body.len() as u64);
            let headers = Headers::new();
            for (name, value) in &mock.headers {
                headers.append(name, value)?;
            }
            crate::error::with_body(mock.status, mock.body)?.with_headers(headers)
        }
    };
    if let Some(dedup) = &dedup {
        response = dedup.store(response, config.dedup_ttl_seconds).await?;
    }
    if let (Some(key), Some(_)) = (&cache_key, shared_cache_seconds) {
        crate::shared_cache::store(key, &mut response).await?;
        facts.cache = CacheOutcome::Miss;
    }
    let headers = response.headers_mut();
    headers.set("x-edgemock-snapshot-version", &version)?;
    headers.set("x-edgemock-snapshot-source", loaded.source)?;
    if let Some(verdict) = &verdict {
        for (name, value) in crate::rate_limit::headers(verdict) {
            headers.set(name, &value)?;
        }
    }
    Ok(response)
}

/// Test route: runs the engine `x-edgemock-repeat` times (at most 100,000) on this request
/// and answers the last outcome, so a benchmark can read the engine's own CPU cost inside
/// workerd from the process's CPU time.
async fn repeat_engine(
    req: &mut Request,
    env: &Env,
    config: &Config,
    slug: &str,
    path: &str,
) -> Result<Response> {
    let times: u32 = req
        .headers()
        .get("x-edgemock-repeat")?
        .and_then(|t| t.parse().ok())
        .unwrap_or(1)
        .clamp(1, 100_000);
    let store = Store::new(env, config.isolate_ttl_ms, config.kv_cache_ttl_seconds)?;
    let Ok(Loaded { api: Some(api), .. }) = store.load(slug, now_ms()).await else {
        return json_error(404, "api_not_found", "no such API", json!({}));
    };
    let request = to_engine_request(req, path).await?;
    let mut outcome = api.handle(&request, now_ms() as i64, random_seed());
    for _ in 1..times {
        outcome = api.handle(&request, now_ms() as i64, random_seed());
    }
    crate::error::with_body(outcome.response.status, outcome.response.body)
}

/// `PUT` stores a snapshot (validated and compiled first; never older than the one stored),
/// `DELETE` removes one (`?version=N`: only if the stored one is not newer).
async fn publish(mut req: Request, env: &Env, config: &Config, slug: &str) -> Result<Response> {
    let Some(expected) = &config.publish_token else {
        return json_error(
            503,
            "publishing_disabled",
            "this edge has no EDGE_PUBLISH_TOKEN secret, so it accepts no snapshots",
            json!({}),
        );
    };
    let presented = req
        .headers()
        .get("authorization")?
        .and_then(|h| h.strip_prefix("Bearer ").map(str::to_owned))
        .unwrap_or_default();
    // Constant-time comparison: the token must not leak through response timing.
    if !bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
        return json_error(401, "unauthorized", "a valid publish token is required", json!({}));
    }
    if validate_slug("apiSlug", slug).is_err() {
        return json_error(
            400,
            "invalid_slug",
            &format!("'{slug}' is not a valid API slug"),
            json!({}),
        );
    }
    let store = Store::new(env, config.isolate_ttl_ms, config.kv_cache_ttl_seconds)?;
    match req.method() {
        Method::Put => {}
        Method::Delete => {
            // `?version=N`: the version being retired. A newer snapshot means the slug was
            // used again since, and that one stays.
            let retired: Option<u64> = req
                .url()?
                .query_pairs()
                .find(|(k, _)| k == "version")
                .and_then(|(_, v)| v.parse().ok());
            if let (Some(retired), Some(stored)) = (retired, store.stored_version(slug).await?)
                && stored > retired
            {
                return json_error(
                    409,
                    "stale_delete",
                    &format!("version {stored} is newer than the retired version {retired}"),
                    json!({ "stored_version": stored }),
                );
            }
            store.delete(slug, now_ms()).await?;
            return json_response(200, &json!({ "api": slug, "deleted": true }));
        }
        _ => return json_error(405, "method_not_allowed", "use PUT or DELETE", json!({})),
    }
    let raw = req.bytes().await?;
    if raw.len() > MAX_SNAPSHOT_BYTES {
        return json_error(
            413,
            "snapshot_too_large",
            &format!("snapshots may be at most {MAX_SNAPSHOT_BYTES} bytes"),
            json!({}),
        );
    }
    let compiled = match Snapshot::from_json(&raw).and_then(Engine::from_snapshot) {
        Ok(api) => api,
        Err(e) => {
            return json_error(
                422,
                "invalid_snapshot",
                &e.to_string(),
                json!({ "field": e.field }),
            );
        }
    };
    if compiled.snapshot().api.slug != slug {
        return json_error(
            422,
            "invalid_snapshot",
            "the snapshot's api.slug differs from the slug in the URL",
            json!({ "field": "api.slug" }),
        );
    }
    let version = compiled.snapshot().version;
    if let Some(stored) = store.stored_version(slug).await?
        && stored > version
    {
        return json_error(
            409,
            "stale_snapshot",
            &format!("version {version} is older than the stored version {stored}"),
            json!({ "stored_version": stored }),
        );
    }
    store.put(compiled, raw, now_ms()).await?;
    json_response(200, &json!({ "api": slug, "version": version }))
}
