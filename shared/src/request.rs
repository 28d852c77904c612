//! The request as the engine sees it: what the host (Worker or native server) hands in, and
//! a parsed view of it built lazily and at most once per request.

use std::borrow::Cow;
use std::cell::OnceCell;

use serde_json::Value;

/// Deepest JSON nesting the engine will parse in a request body. Deeper documents are
/// treated as non-JSON: `serde_json` recurses, and a hostile body must not exhaust the stack.
pub const MAX_JSON_DEPTH: usize = 64;
/// Largest request body the engine will parse as JSON or read as text for conditions and
/// templates. Larger bodies are still hashed and passed through, never parsed.
pub const MAX_PARSED_BODY_BYTES: usize = 1024 * 1024;

/// A request, as the host received it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
///
/// Its text is borrowed from the host's own request where the host has it as text (the
/// native runtime: hyper's parsed request), owned where it does not (the Worker): copying
/// a request's method, path, query and headers into strings of their own was a fifth of
/// the allocations of a mock answer.
pub struct Request<'a> {
    /// Upper-case method token.
    pub method: Cow<'a, str>,
    /// The path below the API's prefix, starting with `/`, still percent-encoded.
    pub path: Cow<'a, str>,
    /// The raw query string, without `?` (may be empty).
    pub query: Cow<'a, str>,
    /// Header names are compared case-insensitively; repeated headers appear repeatedly.
    pub headers: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    pub body: Vec<u8>,
}

impl Request<'_> {
    /// The request with text of its own (for a task that outlives the host's request).
    pub fn into_owned(self) -> Request<'static> {
        let own = |text: std::borrow::Cow<'_, str>| Cow::Owned(text.into_owned());
        Request {
            method: own(self.method),
            path: own(self.path),
            query: own(self.query),
            headers: self.headers.into_iter().map(|(k, v)| (own(k), own(v))).collect(),
            body: self.body,
        }
    }
}

type QueryPairs<'r> = smallvec::SmallVec<[(Cow<'r, str>, Cow<'r, str>); 4]>;

/// Path parameters, name and percent-decoded value. Inline up to three: routes rarely have
/// more, and a vector was an allocation on every request to a route with one.
pub type Params<'r> = smallvec::SmallVec<[(&'r str, Cow<'r, str>); 3]>;

/// A lazily parsed view of a [`Request`] plus the path parameters routing captured.
#[derive(Debug)]
pub struct RequestView<'r> {
    pub request: &'r Request<'r>,
    /// Names as the router holds them; values percent-decoded, borrowed from the path when
    /// they need no decoding.
    pub params: Params<'r>,
    /// GraphQL variables, when the request is a GraphQL operation.
    pub variables: Option<Value>,
    /// Inline up to four pairs: most queries are short, and this is parsed per request.
    query: OnceCell<QueryPairs<'r>>,
    cookies: OnceCell<Vec<(String, String)>>,
    json: OnceCell<Option<Value>>,
}

impl<'r> RequestView<'r> {
    pub fn new(request: &'r Request<'r>, params: impl Into<Params<'r>>) -> Self {
        Self {
            request,
            params: params.into(),
            variables: None,
            query: OnceCell::new(),
            cookies: OnceCell::new(),
            json: OnceCell::new(),
        }
    }

    /// Query pairs, percent-decoded (`+` as space), in request order; borrowed from the
    /// query where they need no decoding.
    pub fn query_pairs(&self) -> &[(Cow<'r, str>, Cow<'r, str>)] {
        self.query.get_or_init(|| form_urlencoded::parse(self.request.query.as_bytes()).collect())
    }

    /// The first value of query parameter `name`.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query_pairs().iter().find(|(k, _)| k == name).map(|(_, v)| v.as_ref())
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.request
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }

    /// Cookies from every `Cookie` header, in order.
    pub fn cookie_pairs(&self) -> &[(String, String)] {
        self.cookies.get_or_init(|| {
            self.request
                .headers
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case("cookie"))
                .flat_map(|(_, v)| v.split(';'))
                .filter_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    Some((k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
                })
                .collect()
        })
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookie_pairs().iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A captured path parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_ref())
    }

    /// The body as UTF-8 text, if it is text and not too large to read.
    pub fn text(&self) -> Option<&str> {
        if self.request.body.len() > MAX_PARSED_BODY_BYTES {
            return None;
        }
        std::str::from_utf8(&self.request.body).ok()
    }

    /// The body parsed as JSON, if it is JSON within the size and depth limits. A form body
    /// (`application/x-www-form-urlencoded`) reads as an object of strings (the first value
    /// of a repeated field).
    pub fn json(&self) -> Option<&Value> {
        self.json
            .get_or_init(|| {
                let body = &self.request.body;
                if body.is_empty() || body.len() > MAX_PARSED_BODY_BYTES {
                    return None;
                }
                let is_form = self.header("content-type").is_some_and(|t| {
                    t.trim_start()
                        .to_ascii_lowercase()
                        .starts_with("application/x-www-form-urlencoded")
                });
                if is_form {
                    let mut map = serde_json::Map::new();
                    for (k, v) in form_urlencoded::parse(body) {
                        map.entry(k.into_owned()).or_insert_with(|| Value::String(v.into_owned()));
                    }
                    return Some(Value::Object(map));
                }
                if too_deep(body) {
                    return None;
                }
                serde_json::from_slice(body).ok()
            })
            .as_ref()
    }
}

/// Whether `bytes` nests brackets deeper than [`MAX_JSON_DEPTH`], counted without parsing
/// (brackets inside strings are skipped), so the recursive parser never sees such input.
pub fn too_deep(bytes: &[u8]) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// The request id a host answers with: the client's `x-request-id` when it is a sane token
/// (1 to 128 characters of letters, digits and `-_.:`), so ids propagate across services;
/// otherwise `None`, and the host mints one.
pub fn sane_request_id(given: &str) -> Option<&str> {
    let sane = !given.is_empty()
        && given.len() <= 128
        && given.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    sane.then_some(given)
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_propagate_only_when_sane() {
        assert_eq!(super::sane_request_id("abc-123_x.y:z"), Some("abc-123_x.y:z"));
        for bad in ["", "has space", "new\nline", "ü", &"a".repeat(129)] {
            assert_eq!(super::sane_request_id(bad), None, "{bad:?}");
        }
    }

    use super::*;

    fn request() -> Request<'static> {
        Request {
            method: "POST".into(),
            path: "/users/7".into(),
            query: "a=1&b=x+y&a=2&c=%C3%A9".into(),
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("Cookie".into(), "session=abc; theme=\"dark\"".into()),
                ("cookie".into(), "lang=fr".into()),
            ],
            body: br#"{"user": {"name": "Ada", "tags": ["x"]}}"#.to_vec(),
        }
    }

    #[test]
    fn parses_what_conditions_and_templates_read() {
        let r = request();
        let v = RequestView::new(&r, vec![("id", "7".into())]);
        assert_eq!(v.query("a"), Some("1"));
        assert_eq!(v.query("b"), Some("x y"));
        assert_eq!(v.query("c"), Some("é"));
        assert_eq!(v.query("zzz"), None);
        assert_eq!(v.header("content-type"), Some("application/json"));
        assert_eq!(v.cookie("session"), Some("abc"));
        assert_eq!(v.cookie("theme"), Some("dark"));
        assert_eq!(v.cookie("lang"), Some("fr"));
        assert_eq!(v.param("id"), Some("7"));
        assert_eq!(v.json().and_then(|j| j.pointer("/user/name")), Some(&Value::from("Ada")));
    }

    #[test]
    fn hostile_bodies_are_not_parsed() {
        let deep = "[".repeat(100_000);
        let r = Request { body: deep.into_bytes(), ..Default::default() };
        assert!(RequestView::new(&r, vec![]).json().is_none());
        let r = Request { body: vec![0xff, 0xfe, b'{'], ..Default::default() };
        let v = RequestView::new(&r, vec![]);
        assert!(v.json().is_none() && v.text().is_none());
        // Brackets inside strings do not count.
        let ok = format!("{{\"s\": \"{}\"}}", "[".repeat(1000));
        assert!(!too_deep(ok.as_bytes()));
        let form = Request {
            headers: vec![("content-type".into(), "application/x-www-form-urlencoded".into())],
            body: b"name=Ada+L&x=%F0%9F%98%80&name=second".to_vec(),
            ..Default::default()
        };
        let v = RequestView::new(&form, vec![]);
        assert_eq!(v.json(), Some(&serde_json::json!({"name": "Ada L", "x": "😀"})));
        let big = Request { body: vec![b' '; MAX_PARSED_BODY_BYTES + 1], ..Default::default() };
        assert!(RequestView::new(&big, vec![]).text().is_none());
    }
}
