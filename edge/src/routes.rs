//! Request dispatch.
//!
//! - `ANY /mock/{apiSlug}/{path…}`: mock traffic.
//! - `PUT|DELETE /__edgemock/v1/snapshots/{apiSlug}`: the control plane publishes here,
//!   with `Authorization: Bearer $EDGE_PUBLISH_TOKEN`.
//! - `GET /__edgemock/health`: liveness, for `wrangler dev` readiness checks and monitors.

use edgemock_shared::model::validate_slug;
use edgemock_shared::{CompiledApi, RouteMatch, Snapshot};
use serde_json::json;
use subtle::ConstantTimeEq;
use worker::{Date, Env, Headers, Method, Request, Response, Result};

use crate::config::Config;
use crate::error::{json_error, json_response};
use crate::store::{LoadError, Store};

/// Largest snapshot the publish route accepts. Workers KV values may hold 25 MiB.
const MAX_SNAPSHOT_BYTES: usize = 20 * 1024 * 1024;

const MOCK_PREFIX: &str = "/mock/";
const SNAPSHOTS_PREFIX: &str = "/__edgemock/v1/snapshots/";

pub async fn handle(req: Request, env: Env) -> Result<Response> {
    let path = req.path();
    let config = Config::from_env(&env);
    if let Some(rest) = path.strip_prefix(MOCK_PREFIX) {
        let (slug, sub_path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        return serve_mock(&req, &env, &config, slug, sub_path).await;
    }
    if let Some(slug) = path.strip_prefix(SNAPSHOTS_PREFIX) {
        return publish(req, &env, &config, slug).await;
    }
    if path == "/__edgemock/health" {
        return json_response(200, &json!({ "status": "ok" }));
    }
    json_error(404, "not_found", "edgemock serves mocks under /mock/{apiSlug}/…", json!({}))
}

fn now_ms() -> u64 {
    Date::now().as_millis()
}

async fn serve_mock(
    req: &Request,
    env: &Env,
    config: &Config,
    slug: &str,
    path: &str,
) -> Result<Response> {
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
    let store = Store::new(env, config.cache_ttl_ms)?;
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
    let method = req.method().to_string();
    let version = api.snapshot().version.to_string();
    let mut response = match api.route(&method, path) {
        RouteMatch::Found { response: mock, .. } => {
            let headers = Headers::new();
            for (name, value) in &mock.headers {
                headers.append(name, value)?;
            }
            // HEAD gets the headers of GET-style endpoints with no body.
            let body = if req.method() == Method::Head { Vec::new() } else { mock.body.clone() };
            Response::from_bytes(body)?.with_status(mock.status).with_headers(headers)
        }
        RouteMatch::MethodNotAllowed { allowed } => {
            let mut response = json_error(
                405,
                "method_not_allowed",
                &format!(
                    "API '{slug}' has no {method} endpoint for {path}; it answers {}",
                    allowed.join(", ")
                ),
                json!({ "api": slug, "method": method, "path": path, "allowed": allowed }),
            )?;
            response.headers_mut().set("allow", &allowed.join(", "))?;
            response
        }
        RouteMatch::NotFound => json_error(
            404,
            "route_not_found",
            &format!("API '{slug}' has no endpoint matching {method} {path}"),
            json!({ "api": slug, "method": method, "path": path }),
        )?,
    };
    let headers = response.headers_mut();
    headers.set("x-edgemock-snapshot-version", &version)?;
    headers.set("x-edgemock-snapshot-source", loaded.source)?;
    Ok(response)
}

/// `PUT` stores a snapshot (validated and compiled first; never older than the one stored),
/// `DELETE` removes one.
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
    let store = Store::new(env, config.cache_ttl_ms)?;
    match req.method() {
        Method::Put => {}
        Method::Delete => {
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
    let compiled = match Snapshot::from_json(&raw).and_then(CompiledApi::compile) {
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
