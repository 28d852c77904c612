//! The definition model: what an admin writes and what a snapshot carries.
//!
//! These types are serialized into snapshots that live in Workers KV for a long time and are
//! read by edge builds of other versions. Treat them as an API: add fields with
//! `#[serde(default)]`, never rename or repurpose one. Readers ignore fields they do not
//! know (so an older edge can read a newer snapshot of the same format version); the control
//! plane refuses unknown fields in admin input separately, where a typo must not pass.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Longest slug accepted. Slugs appear in URLs and KV keys, so they stay short.
pub const MAX_SLUG_LEN: usize = 63;
/// Largest static response body accepted, in bytes. A KV value may hold 25 MiB, but a whole
/// API's snapshot must fit in one value, so single bodies are kept well below that.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Checks a slug: 1 to 63 characters of `a-z`, `0-9` and `-`, starting and ending with a
/// letter or digit. Slugs are used verbatim in `/mock/{apiSlug}/…` and in KV keys.
pub fn validate_slug(field: &str, slug: &str) -> Result<()> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    let bytes = slug.as_bytes();
    if slug.is_empty() || slug.len() > MAX_SLUG_LEN {
        return Err(Error::new(field, format!("must be 1 to {MAX_SLUG_LEN} characters long")));
    }
    if !slug.chars().all(ok_char) || bytes[0] == b'-' || bytes[bytes.len() - 1] == b'-' {
        return Err(Error::new(
            field,
            "may contain only lowercase letters, digits and '-', and must start and end with a letter or digit",
        ));
    }
    Ok(())
}

/// The workspace an API belongs to, as far as the edge needs to know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceRef {
    pub id: String,
    pub slug: String,
}

/// The API a snapshot describes. `slug` is globally unique: it is the `{apiSlug}` of
/// `/mock/{apiSlug}/…`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiRef {
    pub id: String,
    pub slug: String,
    pub name: String,
}

/// Which request methods an endpoint answers: one method, or any.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MethodSpec {
    Any,
    /// An upper-case HTTP method token such as `GET` or `PROPFIND`.
    Method(String),
}

impl MethodSpec {
    /// Parses `GET`, `get`, `ANY`, `*`, or any other valid method token (upper-cased).
    pub fn parse(field: &str, raw: &str) -> Result<Self> {
        let upper = raw.trim().to_ascii_uppercase();
        if upper == "ANY" || upper == "*" {
            return Ok(Self::Any);
        }
        http::Method::from_bytes(upper.as_bytes())
            .map(|m| Self::Method(m.as_str().to_owned()))
            .map_err(|_| Error::new(field, format!("'{raw}' is not an HTTP method (or ANY)")))
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Any => "ANY",
            Self::Method(m) => m,
        }
    }
}

impl fmt::Display for MethodSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for MethodSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MethodSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse("method", &raw).map_err(|e| serde::de::Error::custom(e.message))
    }
}

/// A response body: a JSON string is sent as text, byte for byte; any other JSON value is
/// sent as compact JSON (and defaults the `content-type` to `application/json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Body {
    Text(String),
    Json(serde_json::Value),
}

impl Default for Body {
    fn default() -> Self {
        Self::Text(String::new())
    }
}

/// One static response: status, headers, body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StaticResponse {
    #[serde(default = "default_status")]
    pub status: u16,
    /// Header names are matched case-insensitively on the wire; they are stored as written.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Body,
}

fn default_status() -> u16 {
    200
}

impl Default for StaticResponse {
    fn default() -> Self {
        Self { status: default_status(), headers: BTreeMap::new(), body: Body::default() }
    }
}

impl StaticResponse {
    pub fn validate(&self) -> Result<()> {
        if !(100..=599).contains(&self.status) {
            return Err(Error::new("status", "must be between 100 and 599"));
        }
        for (name, value) in &self.headers {
            http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                Error::new(format!("headers.{name}"), "is not a valid HTTP header name")
            })?;
            http::HeaderValue::from_str(value).map_err(|_| {
                Error::new(format!("headers.{name}"), "is not a valid HTTP header value")
            })?;
        }
        let body_len = match &self.body {
            Body::Text(text) => text.len(),
            Body::Json(value) => serde_json::to_vec(value).map(|v| v.len()).unwrap_or(usize::MAX),
        };
        if body_len > MAX_BODY_BYTES {
            return Err(Error::new("body", format!("is larger than {MAX_BODY_BYTES} bytes")));
        }
        Ok(())
    }
}

/// An endpoint as an admin defines it: which requests it answers and with what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointDefinition {
    pub method: MethodSpec,
    /// A path pattern: `/users/:id`, `/users/{id}`, or a trailing wildcard `/files/*` or
    /// `/files/{*rest}`. See [`crate::routing::normalize_pattern`].
    pub path: String,
    #[serde(default)]
    pub response: StaticResponse,
}

impl EndpointDefinition {
    /// Validates the endpoint on its own. Conflicts with other endpoints of the same API are
    /// found when the API is compiled ([`crate::CompiledApi::compile`]).
    pub fn validate(&self) -> Result<()> {
        crate::routing::normalize_pattern(&self.path).map_err(|e| Error::new("path", e.message))?;
        self.response.validate().map_err(|e| e.within("response"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for ok in ["a", "pets", "pet-store-2", &"a".repeat(63)] {
            assert_eq!(validate_slug("slug", ok), Ok(()), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a b", "é", &"a".repeat(64)] {
            assert!(validate_slug("slug", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn methods() {
        let cases = [
            ("get", Some(MethodSpec::Method("GET".into()))),
            ("ANY", Some(MethodSpec::Any)),
            ("*", Some(MethodSpec::Any)),
            ("PROPFIND", Some(MethodSpec::Method("PROPFIND".into()))),
            ("GE T", None),
            ("", None),
        ];
        for (raw, want) in cases {
            assert_eq!(MethodSpec::parse("method", raw).ok(), want, "{raw:?}");
        }
    }

    #[test]
    fn body_text_or_json() {
        let r: StaticResponse = serde_json::from_str(r#"{"body":"plain"}"#).unwrap();
        assert_eq!(r.body, Body::Text("plain".into()));
        assert_eq!(r.status, 200);
        let r: StaticResponse = serde_json::from_str(r#"{"status":201,"body":{"a":1}}"#).unwrap();
        assert_eq!(r.body, Body::Json(serde_json::json!({"a": 1})));
    }

    #[test]
    fn response_validation_names_the_field() {
        let mut r = StaticResponse { status: 700, ..Default::default() };
        assert_eq!(r.validate().unwrap_err().field, "status");
        r.status = 200;
        r.headers.insert("bad header".into(), "x".into());
        assert_eq!(r.validate().unwrap_err().field, "headers.bad header");
        r.headers.clear();
        r.headers.insert("x-ok".into(), "line\nbreak".into());
        assert_eq!(r.validate().unwrap_err().field, "headers.x-ok");
    }
}
