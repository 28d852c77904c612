//! Deduplication: an endpoint with `dedup: true` answers an identical request (the engine's
//! key: API version, endpoint, caller's credentials, canonical request hash) within
//! `DEDUP_TTL_SECONDS` with the first answer, marked `x-mock-deduplicated: true`.
//!
//! Answers are kept in the Workers Cache API of the location, under a synthetic URL, so
//! duplicates are caught across isolates of one location. The Cache API does nothing on
//! `workers.dev` hostnames: there, deduplication is off (README).

use worker::{Cache, Headers, Response, Result};

/// Where a stored answer keeps the `Cache-Control` the client should see; the stored copy
/// itself carries the dedup window so that the cache keeps it.
const ORIGINAL_CACHE_CONTROL: &str = "x-edgemock-original-cache-control";
/// The stored copy is a 200 (caches store other statuses only sometimes, such as 201 in
/// local workerd); the status the client sees is kept here.
const ORIGINAL_STATUS: &str = "x-edgemock-original-status";

#[derive(Debug)]
pub struct Dedup {
    url: String,
}

impl Dedup {
    pub fn new(api_slug: &str, key: &str) -> Self {
        // The key is made of digits, hex and ':' only; the host is never resolved.
        Self { url: format!("https://dedup.edgemock.invalid/{api_slug}/{}", key.replace(':', "/")) }
    }

    /// The stored answer, if an identical request came within the window.
    pub async fn lookup(&self) -> Result<Option<Response>> {
        let Some(stored) = Cache::default().get(self.url.as_str(), false).await? else {
            return Ok(None);
        };
        let headers = Headers::new();
        let mut original = None;
        let mut status = stored.status_code();
        for (name, value) in stored.headers().entries() {
            match name.as_str() {
                ORIGINAL_CACHE_CONTROL => original = Some(value),
                ORIGINAL_STATUS => status = value.parse().unwrap_or(status),
                "cache-control" | "age" | "cf-cache-status" | "expires" => {}
                _ => headers.append(&name, &value)?,
            }
        }
        if let Some(value) = original.filter(|v| !v.is_empty()) {
            headers.set("cache-control", &value)?;
        }
        headers.set("x-mock-deduplicated", "true")?;
        let mut stored = stored;
        let body = stored.bytes().await?;
        Ok(Some(crate::error::with_body(status, body)?.with_headers(headers)))
    }

    /// Stores `response` for the window and hands back an identical one for the client.
    /// Server errors are not stored (a retry should reach the mock or the upstream again), nor
    /// 304s, which answer one client's validators.
    pub async fn store(&self, mut response: Response, ttl_seconds: u32) -> Result<Response> {
        let status = response.status_code();
        if status >= 500 || status == 304 || ttl_seconds == 0 {
            return Ok(response);
        }
        let body = response.bytes().await?;
        let headers = response.headers().clone();
        let stored_headers = Headers::new();
        for (name, value) in headers.entries() {
            if name == "cache-control" {
                stored_headers.set(ORIGINAL_CACHE_CONTROL, &value)?;
            } else if name != "set-cookie" {
                stored_headers.append(&name, &value)?;
            }
        }
        stored_headers.set("cache-control", &format!("public, max-age={ttl_seconds}"))?;
        stored_headers.set(ORIGINAL_STATUS, &status.to_string())?;
        let stored = Response::from_bytes(body.clone())?.with_headers(stored_headers);
        if let Err(e) = Cache::default().put(self.url.as_str(), stored).await {
            // The answer is still right; only the next duplicate will not be caught.
            worker::console_warn!("dedup: storing {} failed: {e}", self.url);
        }
        Ok(crate::error::with_body(status, body)?.with_headers(headers))
    }
}
