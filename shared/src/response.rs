//! Static responses rendered to what goes on the wire.

use crate::model::{Body, StaticResponse};

/// A response ready to send: status, headers in order, body bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl MockResponse {
    /// Renders a static response. Text bodies are sent byte for byte; JSON bodies compactly.
    /// A `content-type` is added when the definition has none: `application/json` for JSON
    /// bodies, `text/plain; charset=utf-8` for non-empty text.
    pub fn render(response: &StaticResponse) -> Self {
        let (body, default_type) = match &response.body {
            Body::Text(text) => (text.as_bytes().to_vec(), "text/plain; charset=utf-8"),
            // Serializing a `serde_json::Value` cannot fail: its map keys are always strings.
            Body::Json(value) => {
                (serde_json::to_vec(value).unwrap_or_default(), "application/json")
            }
        };
        let mut headers: Vec<(String, String)> =
            response.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let has_type = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        if !has_type && !body.is_empty() {
            headers.push(("content-type".to_owned(), default_type.to_owned()));
        }
        Self { status: response.status, headers, body }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(json: serde_json::Value) -> MockResponse {
        MockResponse::render(&serde_json::from_value(json).unwrap())
    }

    #[test]
    fn renders_bodies_and_default_content_types() {
        let r = render(serde_json::json!({"body": "héllo\n"}));
        assert_eq!(r.body, "héllo\n".as_bytes());
        assert_eq!(r.headers, [("content-type".into(), "text/plain; charset=utf-8".into())]);

        let r = render(serde_json::json!({"status": 201, "body": {"b": [1, 2], "a": null}}));
        assert_eq!(r.status, 201);
        assert_eq!(r.body, br#"{"a":null,"b":[1,2]}"#);
        assert_eq!(r.headers, [("content-type".into(), "application/json".into())]);

        let r = render(serde_json::json!({"headers": {"Content-Type": "text/csv"}, "body": "a,b"}));
        assert_eq!(r.headers, [("Content-Type".into(), "text/csv".into())]);

        let r = render(serde_json::json!({"status": 204}));
        assert!(r.body.is_empty() && r.headers.is_empty());
    }
}
