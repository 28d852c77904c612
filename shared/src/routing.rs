//! Path patterns: what users write, normalised to `matchit` syntax. The routers themselves
//! (one per method plus one for `ANY`, built once per snapshot) live in [`crate::engine`].

use crate::error::{Error, Result};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
