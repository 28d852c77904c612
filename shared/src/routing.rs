//! Request routing: path patterns normalised to `matchit` syntax, one router per method plus
//! one for `ANY`, built once per snapshot and reused for every request.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::model::MethodSpec;
use crate::response::MockResponse;
use crate::snapshot::{Snapshot, SnapshotEndpoint};

/// Longest path pattern accepted.
pub const MAX_PATTERN_LEN: usize = 2048;

/// Rewrites a user's path pattern into `matchit` syntax.
///
/// Accepted forms, per `/`-separated segment:
/// - literal text (`users`, `v1.json`);
/// - `:name` or `{name}`: one segment, captured as `name`;
/// - a last segment of `*` (captured as `wildcard`) or `{*name}`: the rest of the path,
///   including further slashes.
///
/// Parameter names are `[A-Za-z0-9_]+`. Braces elsewhere are refused rather than guessed at.
pub fn normalize_pattern(pattern: &str) -> Result<String> {
    let err = |message: String| Error::new("path", message);
    if !pattern.starts_with('/') {
        return Err(err("must start with '/'".into()));
    }
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(err(format!("is longer than {MAX_PATTERN_LEN} characters")));
    }
    if pattern.chars().any(|c| c.is_control() || c == ' ' || c == '?' || c == '#') {
        return Err(err("may not contain spaces, control characters, '?' or '#'".into()));
    }
    let valid_name = |name: &str| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let segments: Vec<&str> = pattern[1..].split('/').collect();
    let last = segments.len() - 1;
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut names = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        out.push('/');
        let (name, catch_all) = if let Some(name) = segment.strip_prefix(':') {
            (Some(name), false)
        } else if *segment == "*" {
            (Some("wildcard"), true)
        } else if let Some(inner) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            match inner.strip_prefix('*') {
                Some(name) => (Some(name), true),
                None => (Some(inner), false),
            }
        } else {
            (None, false)
        };
        match name {
            Some(name) => {
                if !valid_name(name) {
                    return Err(err(format!(
                        "segment '{segment}': parameter names use only letters, digits and '_'"
                    )));
                }
                if catch_all && i != last {
                    return Err(err(format!(
                        "segment '{segment}': a wildcard may only be the last segment"
                    )));
                }
                if names.contains(&name) {
                    return Err(err(format!("parameter '{name}' appears twice")));
                }
                names.push(name);
                out.push('{');
                if catch_all {
                    out.push('*');
                }
                out.push_str(name);
                out.push('}');
            }
            None if segment.contains(['{', '}', '*']) || segment.starts_with(':') => {
                return Err(err(format!(
                    "segment '{segment}': use ':name', '{{name}}' or a final '*' / '{{*name}}'"
                )));
            }
            None => out.push_str(segment),
        }
    }
    Ok(out)
}

/// The outcome of routing one request.
#[derive(Debug)]
pub enum RouteMatch<'a> {
    Found {
        endpoint: &'a SnapshotEndpoint,
        /// The pre-rendered response of the endpoint.
        response: &'a MockResponse,
        /// Captured path parameters, in pattern order.
        params: Vec<(String, String)>,
    },
    /// The path is defined, but not for this method.
    MethodNotAllowed {
        allowed: Vec<String>,
    },
    NotFound,
}

/// A snapshot prepared for serving: routers built and responses rendered once, so that a
/// request costs one tree lookup. Build one per snapshot version and share it.
#[derive(Debug)]
pub struct CompiledApi {
    snapshot: Snapshot,
    responses: Vec<MockResponse>,
    by_method: BTreeMap<String, matchit::Router<usize>>,
    any: matchit::Router<usize>,
}

impl CompiledApi {
    /// Compiles a snapshot. Fails with the offending endpoint named (`endpoints[i].…`) when a
    /// definition is invalid or two patterns of the same method conflict.
    pub fn compile(snapshot: Snapshot) -> Result<Self> {
        let mut by_method: BTreeMap<String, matchit::Router<usize>> = BTreeMap::new();
        let mut any = matchit::Router::new();
        let mut responses = Vec::with_capacity(snapshot.endpoints.len());
        for (i, endpoint) in snapshot.endpoints.iter().enumerate() {
            let at = |e: Error| e.within(&format!("endpoints[{i}]"));
            endpoint.definition.validate().map_err(at)?;
            let pattern = normalize_pattern(&endpoint.definition.path).map_err(at)?;
            let router = match &endpoint.definition.method {
                MethodSpec::Any => &mut any,
                MethodSpec::Method(m) => by_method.entry(m.clone()).or_default(),
            };
            router.insert(pattern, i).map_err(|e| {
                at(Error::new(
                    "path",
                    format!(
                        "'{}' {} conflicts with another endpoint: {e}",
                        endpoint.definition.method, endpoint.definition.path
                    ),
                ))
            })?;
            responses.push(MockResponse::render(&endpoint.definition.response));
        }
        Ok(Self { snapshot, responses, by_method, any })
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Routes `method path`. `path` is the request path below the API's prefix, starting with
    /// `/`. An endpoint for the exact method wins over an `ANY` endpoint.
    pub fn route(&self, method: &str, path: &str) -> RouteMatch<'_> {
        let found = self
            .by_method
            .get(method)
            .and_then(|router| router.at(path).ok())
            .or_else(|| self.any.at(path).ok());
        if let Some(matched) = found {
            let index = *matched.value;
            return RouteMatch::Found {
                endpoint: &self.snapshot.endpoints[index],
                response: &self.responses[index],
                params: matched.params.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
            };
        }
        let allowed: Vec<String> = self
            .by_method
            .iter()
            .filter(|(_, router)| router.at(path).is_ok())
            .map(|(m, _)| m.clone())
            .collect();
        if allowed.is_empty() {
            RouteMatch::NotFound
        } else {
            RouteMatch::MethodNotAllowed { allowed }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ApiRef, WorkspaceRef};
    use crate::snapshot::SNAPSHOT_FORMAT_VERSION;

    #[test]
    fn normalizes_patterns() {
        let cases = [
            ("/", Ok("/")),
            ("/users", Ok("/users")),
            ("/users/:id", Ok("/users/{id}")),
            ("/users/{id}/posts/:post_id", Ok("/users/{id}/posts/{post_id}")),
            ("/files/*", Ok("/files/{*wildcard}")),
            ("/files/{*rest}", Ok("/files/{*rest}")),
            ("/v1.json", Ok("/v1.json")),
            ("users", Err("must start with '/'")),
            ("/files/*/x", Err("only be the last segment")),
            ("/a/:", Err("parameter names")),
            ("/a/{b-c}", Err("parameter names")),
            ("/a/:id/:id", Err("appears twice")),
            ("/a/x{y}", Err("use ':name'")),
            ("/a?b=1", Err("may not contain")),
        ];
        for (input, want) in cases {
            match (normalize_pattern(input), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{input}"),
                (Err(got), Err(want)) => assert!(got.message.contains(want), "{input}: {got}"),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }

    fn api(endpoints: &[(&str, &str, &str)]) -> Result<CompiledApi> {
        let endpoints = endpoints
            .iter()
            .enumerate()
            .map(|(i, (method, path, body))| SnapshotEndpoint {
                id: format!("e{i}"),
                definition: serde_json::from_value(serde_json::json!({
                    "method": method, "path": path, "response": {"body": body}
                }))
                .unwrap(),
            })
            .collect();
        CompiledApi::compile(Snapshot {
            format_version: SNAPSHOT_FORMAT_VERSION,
            version: 1,
            workspace: WorkspaceRef { id: "w".into(), slug: "w".into() },
            api: ApiRef { id: "a".into(), slug: "a".into(), name: "A".into() },
            endpoints,
        })
    }

    fn check(api: &CompiledApi, method: &str, path: &str, want: &str) {
        let got = match api.route(method, path) {
            RouteMatch::Found { response, params, .. } => {
                let params: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("{} {}", String::from_utf8_lossy(&response.body), params.join(","))
                    .trim_end()
                    .to_owned()
            }
            RouteMatch::MethodNotAllowed { allowed } => format!("405 {}", allowed.join(",")),
            RouteMatch::NotFound => "404".to_owned(),
        };
        assert_eq!(got, want, "{method} {path}");
    }

    #[test]
    fn routes_requests() {
        let api = api(&[
            ("GET", "/users", "list"),
            ("GET", "/users/:id", "one"),
            ("GET", "/users/me", "me"),
            ("POST", "/users", "create"),
            ("ANY", "/echo/*", "echo"),
            ("DELETE", "/echo/special", "del"),
        ])
        .unwrap();
        check(&api, "GET", "/users", "list");
        check(&api, "GET", "/users/42", "one id=42");
        check(&api, "GET", "/users/me", "me");
        check(&api, "POST", "/users", "create");
        check(&api, "PUT", "/users", "405 GET,POST");
        check(&api, "GET", "/nothing", "404");
        check(&api, "PATCH", "/echo/a/b/c", "echo wildcard=a/b/c");
        check(&api, "DELETE", "/echo/special", "del");
        check(&api, "GET", "/echo/special", "echo wildcard=special");
    }

    #[test]
    fn conflicting_patterns_name_the_endpoint() {
        let err = api(&[("GET", "/users/:id", "a"), ("GET", "/users/{name}", "b")]).unwrap_err();
        assert_eq!(err.field, "endpoints[1].path");
        assert!(err.message.contains("conflicts"), "{err}");
        // The same pattern under different methods is no conflict.
        assert!(api(&[("GET", "/users/:id", "a"), ("PUT", "/users/:id", "b")]).is_ok());
    }

    #[test]
    fn invalid_endpoints_name_the_field() {
        let err = api(&[("GET", "/ok", "a"), ("GET", "no-slash", "b")]).unwrap_err();
        assert_eq!(err.field, "endpoints[1].path");
    }
}
