//! Proxy mode: forwarding a request to the endpoint's target, as the engine directs.
//!
//! Safe by default: the target must pass the deployment's [`ProxyPolicy`] (https only, no
//! private networks, unless `PROXY_ALLOW_HTTP` / `PROXY_ALLOW_PRIVATE_NETWORKS` say so);
//! the client's `Authorization` and `Cookie` stay behind unless the endpoint forwards them;
//! hop-by-hop and Cloudflare headers are never forwarded; the upstream's cookies are scoped
//! to the API's path, since every API shares the edge's origin. Every answer carries
//! `x-mock-proxied: true`; a timeout is a 504 and an unreachable upstream a 502, both JSON.

use std::time::Duration;

use edgemock_shared::ProxyDirective;
use edgemock_shared::proxy::{
    ProxyPolicy, check_target, forward_request_header, pass_response_header,
};
use futures_util::future::{Either, select};
use serde_json::json;
use worker::{
    AbortController, Delay, Fetch, Headers, Method, Request, RequestInit, RequestRedirect,
    Response, Result,
};

use crate::error::json_error;

/// One of the edge's own errors, whose size `finish` measures.
fn own_error(
    status: u16,
    code: &str,
    message: &str,
    extra: serde_json::Value,
) -> Result<(Response, Option<u64>)> {
    Ok((json_error(status, code, message, extra)?, None))
}

/// Longest timeout any endpoint may ask for.
pub const MAX_TIMEOUT_MS: u32 = 30_000;

/// Forwards `request` as `directive` says and returns the upstream's answer, with the size
/// of its body (`None` for the edge's own errors).
pub async fn forward(
    request: &edgemock_shared::Request<'_>,
    directive: &ProxyDirective,
    policy: ProxyPolicy,
    default_timeout_ms: u32,
    cookie_path: &str,
) -> Result<(Response, Option<u64>)> {
    if let Err(why) = check_target(&directive.url, policy) {
        return own_error(
            502,
            "proxy_target_forbidden",
            &format!("this endpoint's proxy target is not allowed: {why}"),
            json!({ "target": directive.url }),
        );
    }
    let headers = Headers::new();
    for (name, value) in &request.headers {
        if forward_request_header(name, directive) {
            headers.append(name, value)?;
        }
    }
    for (name, value) in &directive.headers.add {
        headers.append(name, value)?;
    }
    for (name, value) in &directive.headers.set {
        headers.set(name, value)?;
    }
    let method = Method::from(request.method.to_string());
    if !method.as_ref().eq_ignore_ascii_case(&request.method) {
        // worker::Method would turn it into GET: refuse rather than send something else.
        return own_error(
            501,
            "proxy_method_not_supported",
            &format!("the edge cannot proxy {} requests", request.method),
            json!({}),
        );
    }
    let mut init = RequestInit::new();
    // Redirects go back to the client: following them would carry the endpoint's headers
    // (and any forwarded credentials) to a host the policy never checked.
    init.with_method(method.clone()).with_headers(headers).with_redirect(RequestRedirect::Manual);
    if !matches!(method, Method::Get | Method::Head) && !request.body.is_empty() {
        let body = worker::js_sys::Uint8Array::from(request.body.as_slice());
        init.with_body(Some(body.into()));
    }
    let upstream = Request::new_with_init(&directive.url, &init)?;
    let timeout_ms = directive.timeout_ms.unwrap_or(default_timeout_ms).clamp(1, MAX_TIMEOUT_MS);

    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Fetch::Request(upstream);
    let sent = Box::pin(fetch.send_with_signal(&signal));
    let timer = Box::pin(Delay::from(Duration::from_millis(u64::from(timeout_ms))));
    let mut upstream_response = match select(sent, timer).await {
        Either::Left((Ok(response), _)) => response,
        Either::Left((Err(e), _)) => {
            return own_error(
                502,
                "proxy_error",
                &format!("the proxy target could not be reached: {e}"),
                json!({ "target": directive.url }),
            );
        }
        Either::Right(_) => {
            controller.abort();
            return own_error(
                504,
                "proxy_timeout",
                &format!("the proxy target did not answer within {timeout_ms} ms"),
                json!({ "target": directive.url, "timeout_ms": timeout_ms }),
            );
        }
    };
    // Buffered: the body is decoded by the runtime, so encoding and length headers of the
    // upstream no longer describe it.
    let body = upstream_response.bytes().await?;
    let out = Headers::new();
    for (name, value) in upstream_response.headers().entries() {
        if let Some(value) = pass_response_header(&name, &value, cookie_path) {
            out.append(&name, &value)?;
        }
    }
    out.set("x-mock-proxied", "true")?;
    let size = body.len() as u64;
    Ok((
        crate::error::with_body(upstream_response.status_code(), body)?.with_headers(out),
        Some(size),
    ))
}
