//! HTTP caching: strong ETags from the body, `If-None-Match` evaluation and the
//! `Cache-Control` an endpoint's settings give.

use std::borrow::Cow;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::model::{CacheMode, CacheSettings};

/// A strong ETag for `body`: the unpadded base64url SHA-256 of the bytes, quoted. The same
/// body always gets the same tag, on every edge location and in the control plane.
pub fn etag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    // 32 bytes are 43 base64 characters; written in place, not through `format!`, which
    // showed up in the profile of every templated answer.
    let mut tag = String::with_capacity(45);
    tag.push('"');
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(digest, &mut tag);
    tag.push('"');
    tag
}

/// Whether an `If-None-Match` header value matches `etag` (RFC 9110 §13.1.2): `*` matches
/// any current representation; otherwise a comma-separated list of entity tags compared
/// weakly, so `W/"x"` matches `"x"`. A malformed list matches nothing.
pub fn if_none_match(header: &str, etag: &str) -> bool {
    let header = header.trim();
    if header == "*" {
        return true;
    }
    let opaque = |tag: &str| -> Option<String> {
        let tag = tag.trim();
        let tag = tag.strip_prefix("W/").unwrap_or(tag);
        (tag.len() >= 2 && tag.starts_with('"') && tag.ends_with('"')).then(|| tag.to_owned())
    };
    let Some(ours) = opaque(etag) else { return false };
    // Our tags are base64url and hold no ','; a foreign tag that does is split into pieces
    // that cannot equal ours, so splitting on every ',' is exact for the question asked.
    header.split(',').any(|tag| opaque(tag).is_some_and(|theirs| theirs == ours))
}

/// The `Cache-Control` value for an endpoint's settings (borrowed where it is constant).
pub fn cache_control(settings: &CacheSettings) -> Cow<'static, str> {
    match settings.mode {
        CacheMode::Revalidate => "private, no-cache".into(),
        CacheMode::Private => format!("private, max-age={}", settings.max_age_seconds).into(),
        CacheMode::Public => format!("public, max-age={}", settings.max_age_seconds).into(),
        CacheMode::NoStore => "no-store".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_strong_and_stable() {
        // SHA-256 of "hello", base64url: LPJNul-wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ
        assert_eq!(etag(b"hello"), "\"LPJNul-wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ\"");
        assert_ne!(etag(b"hello"), etag(b"hello "));
        assert_eq!(etag(b"").len(), 45);
    }

    #[test]
    fn if_none_match_lists_and_weak_tags() {
        let tag = etag(b"x");
        let cases = [
            (tag.clone(), true),
            (format!("W/{tag}"), true),
            ("*".to_owned(), true),
            (format!("\"other\", {tag}"), true),
            (format!("W/\"a\",W/{tag}"), true),
            (format!("\"a\" ,\t {tag}"), true),
            ("\"other\"".to_owned(), false),
            (String::new(), false),
            ("garbage".to_owned(), false),
            (tag.trim_matches('"').to_owned(), false),
            ("\"unterminated".to_owned(), false),
        ];
        for (header, want) in cases {
            assert_eq!(if_none_match(&header, &tag), want, "{header}");
        }
    }

    #[test]
    fn cache_control_per_mode() {
        let s = |mode, max_age_seconds| cache_control(&CacheSettings { mode, max_age_seconds });
        assert_eq!(s(CacheMode::Revalidate, 0), "private, no-cache");
        assert_eq!(s(CacheMode::Private, 30), "private, max-age=30");
        assert_eq!(s(CacheMode::Public, 300), "public, max-age=300");
        assert_eq!(s(CacheMode::NoStore, 0), "no-store");
    }
}
