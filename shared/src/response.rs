//! A response as it goes on the wire.

use std::borrow::Cow;

use bytes::Bytes;

/// A header name or value: `'static` text for the engine's own (`content-type`,
/// `application/json`, `private, no-cache`…), owned for a mock's. A response is built per
/// request, and allocating each name and value was most of its allocations.
pub type HeaderText = Cow<'static, str>;

/// A response ready to send: status, headers in order, body bytes.
///
/// The body is [`Bytes`]: a pre-rendered answer is shared by every request it answers (a
/// reference count, not a copy of its kilobytes), and hosts hand it to their HTTP stack as
/// it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockResponse {
    pub status: u16,
    /// Names and values as written by the mock, or the engine's own borrowed.
    pub headers: Vec<(HeaderText, HeaderText)>,
    pub body: Bytes,
}

impl MockResponse {
    /// A response with no headers and no body.
    pub fn empty(status: u16) -> Self {
        Self { status, headers: Vec::new(), body: Bytes::new() }
    }
}

/// Adds `request_id` to an edgemock error body (`{"error": {…}}`); any other body is
/// returned as it was.
pub fn with_request_id(body: Bytes, request_id: &str) -> Bytes {
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&body) else { return body };
    let Some(error) = value.get_mut("error").and_then(serde_json::Value::as_object_mut) else {
        return body;
    };
    error.insert("request_id".to_owned(), serde_json::Value::String(request_id.to_owned()));
    serde_json::to_vec(&value).map_or(body, Bytes::from)
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_go_into_error_bodies_only() {
        let with = |body: &'static [u8]| super::with_request_id(body.into(), "r1");
        assert_eq!(
            with(br#"{"error":{"code":"x"}}"#),
            &br#"{"error":{"code":"x","request_id":"r1"}}"#[..]
        );
        assert_eq!(with(b"plain"), &b"plain"[..]);
        assert_eq!(with(br#"{"ok":1}"#), &br#"{"ok":1}"#[..]);
    }
}
