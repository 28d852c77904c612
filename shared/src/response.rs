//! A response as it goes on the wire.

/// A response ready to send: status, headers in order, body bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl MockResponse {
    /// A response with no headers and no body.
    pub fn empty(status: u16) -> Self {
        Self { status, headers: Vec::new(), body: Vec::new() }
    }
}

/// Adds `request_id` to an edgemock error body (`{"error": {…}}`); any other body is
/// returned as it was.
pub fn with_request_id(body: Vec<u8>, request_id: &str) -> Vec<u8> {
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&body) else { return body };
    let Some(error) = value.get_mut("error").and_then(serde_json::Value::as_object_mut) else {
        return body;
    };
    error.insert("request_id".to_owned(), serde_json::Value::String(request_id.to_owned()));
    serde_json::to_vec(&value).unwrap_or(body)
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_go_into_error_bodies_only() {
        let body = super::with_request_id(br#"{"error":{"code":"x"}}"#.to_vec(), "r1");
        assert_eq!(body, br#"{"error":{"code":"x","request_id":"r1"}}"#);
        assert_eq!(super::with_request_id(b"plain".to_vec(), "r1"), b"plain");
        assert_eq!(super::with_request_id(br#"{"ok":1}"#.to_vec(), "r1"), br#"{"ok":1}"#);
    }
}
