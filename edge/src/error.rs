//! Error responses: every error the edge answers is
//! `{"error": {"code", "message", "request_id", …}}` with `x-edgemock-error: {code}`, so a
//! client can tell edgemock's own 404 from a mocked one.

use edgemock_shared::engine::ERROR_HEADER;
use serde_json::{Value, json};
use worker::{Response, Result};

/// A JSON error response. `extra` fields are merged into the `error` object; the request id
/// is added on the way out ([`finish`]).
pub fn json_error(status: u16, code: &str, message: &str, extra: Value) -> Result<Response> {
    let mut error = json!({ "code": code, "message": message });
    if let (Some(error), Value::Object(extra)) = (error.as_object_mut(), extra) {
        error.extend(extra);
    }
    let mut response = json_response(status, &json!({ "error": error }))?;
    response.headers_mut().set(ERROR_HEADER, code)?;
    Ok(response)
}

pub fn json_response(status: u16, value: &Value) -> Result<Response> {
    let mut response = Response::from_json(value)?.with_status(status);
    response.headers_mut().set("cache-control", "no-store")?;
    Ok(response)
}

/// A response with `status` and `body`; statuses that may carry no body (1xx, 204, 205, 304)
/// get none, since the runtime refuses to build them with one.
pub fn with_body(status: u16, body: impl Into<Vec<u8>>) -> Result<Response> {
    if matches!(status, 100..=199 | 204 | 205 | 304) {
        Ok(Response::empty()?.with_status(status))
    } else {
        Ok(Response::from_bytes(body.into())?.with_status(status))
    }
}

/// Stamps the request id on a response: the `x-request-id` header always, and the
/// `request_id` field of edgemock's own JSON errors (the engine's and the edge's alike).
/// Returns the response and the size of its body when known.
pub async fn finish(mut response: Response, request_id: &str) -> Result<(Response, Option<u64>)> {
    if response.status_code() == 101 {
        // A WebSocket handshake: its headers belong to the runtime.
        return Ok((response, None));
    }
    if response.headers().has(ERROR_HEADER)? {
        let status = response.status_code();
        let headers = response.headers().clone();
        let bytes =
            edgemock_shared::response::with_request_id(response.bytes().await?.into(), request_id);
        let size = bytes.len() as u64;
        headers.set("x-request-id", request_id)?;
        return Ok((with_body(status, bytes)?.with_headers(headers), Some(size)));
    }
    let size =
        response.headers().get("content-length")?.and_then(|length| length.parse::<u64>().ok());
    // Responses replayed from a cache have immutable headers: copy them into a new one.
    if response.headers_mut().set("x-request-id", request_id).is_err() {
        let headers = response.headers().clone();
        headers.set("x-request-id", request_id)?;
        response = response.with_headers(headers);
    }
    Ok((response, size))
}
