//! The location's cache in front of the engine: an answer the engine marks shareable
//! (`shared_cache_seconds`: a `public` endpoint whose 200 answer to GET cannot vary) is kept
//! in the Workers Cache API, and repeats are served from there without running the engine.
//! Requests whose answer depends on their headers (`If-None-Match`, CORS `Origin`) skip it.
//! The Cache API does nothing on `workers.dev` hostnames (README).

use edgemock_shared::Request;
use worker::{Cache, Headers, Response, Result};

/// The cache key of a request to `slug` at snapshot `version`, if it may use the cache.
pub fn key(slug: &str, version: u64, request: &Request, has_cors: bool) -> Option<String> {
    let header = |name: &str| request.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    if request.method != "GET" || has_cors || header("if-none-match") || header("origin") {
        return None;
    }
    let query =
        if request.query.is_empty() { String::new() } else { format!("?{}", request.query) };
    Some(format!("https://shared.edgemock.invalid/{slug}/{version}{}{query}", request.path))
}

/// The stored answer for `key`, as a new response (a cached response's headers are
/// immutable).
pub async fn lookup(key: &str) -> Result<Option<Response>> {
    let Some(mut hit) = Cache::default().get(key, false).await? else { return Ok(None) };
    let headers = Headers::new();
    for (name, value) in hit.headers().entries() {
        if !matches!(name.as_str(), "age" | "cf-cache-status") {
            headers.append(&name, &value)?;
        }
    }
    headers.set("x-edgemock-cache", "hit")?;
    let status = hit.status_code();
    let body = hit.bytes().await?;
    Ok(Some(crate::error::with_body(status, body)?.with_headers(headers)))
}

/// Stores a copy of `response` (whose own Cache-Control sets the lifetime).
pub async fn store(key: &str, response: &mut Response) -> Result<()> {
    let copy = response.cloned()?;
    if let Err(e) = Cache::default().put(key, copy).await {
        worker::console_warn!("shared cache: storing {key} failed: {e}");
    }
    response.headers_mut().set("x-edgemock-cache", "miss")?;
    Ok(())
}
