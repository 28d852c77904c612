//! Error responses: every error the edge answers is `{"error": {"code", "message", …}}`.

use serde_json::{Value, json};
use worker::{Response, Result};

/// A JSON error response. `extra` fields are merged into the `error` object.
pub fn json_error(status: u16, code: &str, message: &str, extra: Value) -> Result<Response> {
    let mut error = json!({ "code": code, "message": message });
    if let (Some(error), Value::Object(extra)) = (error.as_object_mut(), extra) {
        error.extend(extra);
    }
    json_response(status, &json!({ "error": error }))
}

pub fn json_response(status: u16, value: &Value) -> Result<Response> {
    let mut response = Response::from_json(value)?.with_status(status);
    response.headers_mut().set("cache-control", "no-store")?;
    Ok(response)
}

/// A response with `status` and `body`; statuses that may carry no body (1xx, 204, 205, 304)
/// get none, since the runtime refuses to build them with one.
pub fn with_body(status: u16, body: Vec<u8>) -> Result<Response> {
    if matches!(status, 100..=199 | 204 | 205 | 304) {
        Ok(Response::empty()?.with_status(status))
    } else {
        Ok(Response::from_bytes(body)?.with_status(status))
    }
}
