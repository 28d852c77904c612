//! Request hashing for deduplication.
//!
//! The hash is SHA-256, in lower-case hex, over this canonical form (format `v1`; it never
//! changes meaning: a new form gets a new version prefix):
//!
//! ```text
//! edgemock-request-v1\n
//! <METHOD>\n
//! <path, as received>\n
//! <query pairs, percent-decoded, sorted by name then value, each name=value
//!  form-encoded, joined with &>\n
//! <body>
//! ```
//!
//! where `<body>` is, for a JSON body, `json:` and the body re-serialized compactly with
//! the keys of every object sorted (so key order and whitespace do not matter); otherwise
//! `raw:` and the bytes as received. Headers are not part of the hash: they carry request
//! ids, dates and tracing that differ between otherwise identical requests; who is asking is
//! a separate part of the deduplication key ([`principal`]).

use sha2::{Digest, Sha256};

use crate::request::{MAX_PARSED_BODY_BYTES, Request, too_deep};

/// The canonical form of `request` (see the module docs).
pub fn canonical_form(request: &Request) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + request.path.len() + request.body.len());
    out.extend_from_slice(b"edgemock-request-v1\n");
    out.extend_from_slice(request.method.to_ascii_uppercase().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(request.path.as_bytes());
    out.push(b'\n');
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(request.query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    pairs.sort();
    let query = form_urlencoded::Serializer::new(String::new()).extend_pairs(&pairs).finish();
    out.extend_from_slice(query.as_bytes());
    out.push(b'\n');
    let body = &request.body;
    let json = (!body.is_empty() && body.len() <= MAX_PARSED_BODY_BYTES && !too_deep(body))
        .then(|| serde_json::from_slice::<serde_json::Value>(body).ok())
        .flatten();
    match json {
        Some(value) => {
            out.extend_from_slice(b"json:");
            write_canonical_json(&value, &mut out);
        }
        None => {
            out.extend_from_slice(b"raw:");
            out.extend_from_slice(body);
        }
    }
    out
}

/// The deduplication hash of `request`: SHA-256 of [`canonical_form`], lower-case hex.
pub fn request_hash(request: &Request) -> String {
    crate::template::hex(&Sha256::digest(canonical_form(request)))
}

/// Who sent `request`, as far as deduplication must tell callers apart: SHA-256 (first 16
/// hex digits) of its `Authorization` and `Cookie` headers, or `anonymous`. A deduplicated
/// answer is only ever replayed to the same credentials: a templated reply may quote them.
pub fn principal(request: &Request) -> String {
    let mut credentials = Vec::new();
    for (name, value) in &request.headers {
        if name.eq_ignore_ascii_case("authorization") || name.eq_ignore_ascii_case("cookie") {
            credentials.extend_from_slice(name.to_ascii_lowercase().as_bytes());
            credentials.push(b':');
            credentials.extend_from_slice(value.as_bytes());
            credentials.push(b'\n');
        }
    }
    if credentials.is_empty() {
        return "anonymous".to_owned();
    }
    let mut hex = crate::template::hex(&Sha256::digest(&credentials));
    hex.truncate(16);
    hex
}

/// Compact JSON with object keys sorted at every depth, whatever map order serde_json was
/// built with.
fn write_canonical_json(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String((*key).clone()).to_string().as_bytes());
                out.push(b':');
                write_canonical_json(&map[*key], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical_json(item, out);
            }
            out.push(b']');
        }
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    use super::*;

    fn req(query: &str, body: &str) -> Request<'static> {
        Request {
            method: "POST".into(),
            path: "/orders".into(),
            query: query.to_owned().into(),
            headers: vec![],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn canonical_form_is_documented_and_stable() {
        let r = req(
            "b=2&a=1&a=0",
            "{ \"z\": {\"y\": 1, \"x\": [2, {\"d\": 1, \"c\": 2}]}, \"a\": null }",
        );
        assert_eq!(
            String::from_utf8(canonical_form(&r)).unwrap(),
            "edgemock-request-v1\nPOST\n/orders\na=0&a=1&b=2\njson:{\"a\":null,\"z\":{\"x\":[2,{\"c\":2,\"d\":1}],\"y\":1}}"
        );
        // Pinned: a change here breaks deduplication across versions; bump the prefix instead.
        assert_eq!(
            request_hash(&r),
            request_hash(&req(
                "a=0&b=2&a=1",
                "{\"a\":null,\"z\":{\"y\":1,\"x\":[2,{\"c\":2,\"d\":1}]}}"
            ))
        );
        assert_eq!(
            String::from_utf8(canonical_form(&req("", "not json"))).unwrap().lines().last(),
            Some("raw:not json")
        );
        assert_ne!(request_hash(&req("", "[1,2]")), request_hash(&req("", "[2,1]")));
        assert_ne!(request_hash(&req("a=1", "")), request_hash(&req("a=2", "")));
    }

    fn shuffled(value: &Value, seed: u64) -> Value {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                // Rotate by the seed: a different insertion order for preserve_order builds.
                let n = entries.len().max(1);
                entries.rotate_left((seed as usize) % n);
                let mut out = Map::new();
                for (k, v) in entries {
                    out.insert(k.clone(), shuffled(v, seed / 3 + 1));
                }
                Value::Object(out)
            }
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| shuffled(v, seed + 7)).collect())
            }
            other => other.clone(),
        }
    }

    /// Serializes with the keys in insertion order reversed, whatever the map type does.
    fn reversed_text(value: &Value) -> String {
        match value {
            Value::Object(map) => {
                let parts: Vec<String> = map
                    .iter()
                    .rev()
                    .map(|(k, v)| format!("{} : {}", Value::String(k.clone()), reversed_text(v)))
                    .collect();
                format!("{{ {} }}", parts.join(" , "))
            }
            Value::Array(items) => {
                format!("[{}]", items.iter().map(reversed_text).collect::<Vec<_>>().join(","))
            }
            other => other.to_string(),
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z\\\\\"é ]{0,6}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
                prop::collection::btree_map("[a-z]{1,4}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn key_order_and_query_order_do_not_matter(
            body in json_value(),
            pairs in prop::collection::vec(("[a-c]{1,2}", "[a-z0-9 &=%]{0,4}"), 0..6),
            seed in any::<u64>(),
        ) {
            let query = |pairs: &[(String, String)]| {
                form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
            };
            let mut rotated = pairs.clone();
            if !rotated.is_empty() {
                let n = rotated.len();
                rotated.rotate_left((seed as usize) % n);
            }
            let a = req(&query(&pairs), &body.to_string());
            let b = req(&query(&rotated), &reversed_text(&shuffled(&body, seed)));
            prop_assert_eq!(request_hash(&a), request_hash(&b));
        }

        #[test]
        fn different_bodies_hash_differently(a in json_value(), b in json_value()) {
            prop_assume!(a != b);
            prop_assert_ne!(request_hash(&req("", &a.to_string())), request_hash(&req("", &b.to_string())));
        }
    }

    #[test]
    fn principals_tell_credentials_apart() {
        let with = |h: &[(&str, &str)]| Request {
            headers: h
                .iter()
                .map(|(k, v)| ((*k).to_owned().into(), (*v).to_owned().into()))
                .collect(),
            ..Default::default()
        };
        assert_eq!(principal(&with(&[("x-trace", "1")])), "anonymous");
        let a = principal(&with(&[("Authorization", "Bearer a")]));
        assert_eq!(a, principal(&with(&[("authorization", "Bearer a"), ("x-trace", "2")])));
        assert_ne!(a, principal(&with(&[("authorization", "Bearer b")])));
        assert_ne!(a, principal(&with(&[("cookie", "Bearer a")])));
        assert_eq!(a.len(), 16);
    }

    #[test]
    fn hostile_bodies_hash_raw() {
        let deep = "[".repeat(10_000);
        let r = req("", &deep);
        assert!(String::from_utf8_lossy(&canonical_form(&r)).contains("raw:[[["));
        let _ = json!(null);
    }
}
