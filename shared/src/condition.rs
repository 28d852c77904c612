//! Conditions on requests: what rules, `when` clauses, GraphQL variables and WebSocket
//! replies test.
//!
//! Written as JSON objects with one *source* and one *test*:
//!
//! ```json
//! {"query": "type", "equals": "admin"}
//! {"header": "x-api-key", "exists": true}
//! {"cookie": "session", "regex": "^[a-f0-9]{32}$"}
//! {"param": "id", "not_equals": "0"}
//! {"body": "/user/role", "equals": "admin"}          (JSON Pointer)
//! {"body": "$.items[*].sku", "contains": "A-1"}      (JSONPath, RFC 9535)
//! {"body": "", "contains": "hello"}                   (the whole body as text)
//! {"variable": "/id", "equals": 7}                    (GraphQL variables)
//! {"all": [ … ]}   {"any": [ … ]}   {"not": { … }}
//! ```
//!
//! Every test may add `"case_insensitive": true`. When a source has several values (a
//! repeated query parameter or header, a JSONPath selecting many nodes), the test holds if
//! it holds for any of them; `not_equals` holds if none equals; `exists: false` holds if
//! there is no value. Form bodies (`application/x-www-form-urlencoded`) are read like a JSON
//! object of strings.
//!
//! Regexes use the `regex` crate, whose matching time is linear in the input, with compiled
//! size limits: a definition cannot make a request burn CPU.

use std::borrow::Cow;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json_path::JsonPath;

use crate::error::{Error, Result};
use crate::request::RequestView;

/// Longest regex source accepted.
pub const MAX_REGEX_LEN: usize = 1024;
/// Compiled-regex size limit (bytes of the compiled program).
const REGEX_SIZE_LIMIT: usize = 256 * 1024;
/// Lazy DFA cache limit per regex.
const REGEX_DFA_LIMIT: usize = 512 * 1024;
/// Deepest nesting of `all`/`any`/`not`.
pub const MAX_CONDITION_DEPTH: usize = 16;

/// A condition as written in a definition.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
    Test(Predicate),
}

/// One source tested one way.
#[derive(Debug, Clone, PartialEq)]
pub struct Predicate {
    pub source: Source,
    pub test: Test,
    pub case_insensitive: bool,
}

/// Where a predicate reads its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Query(String),
    Header(String),
    Cookie(String),
    Param(String),
    /// A selector into the body: empty for the whole body as text, `/…` a JSON Pointer, `$…`
    /// a JSONPath.
    Body(String),
    /// A selector into GraphQL variables, as for `Body`.
    Variable(String),
}

/// What a predicate checks.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Equals(Value),
    NotEquals(Value),
    Contains(Value),
    Regex(String),
    Exists(bool),
}

/// The JSON shape of a condition; one source and one test, or one combinator.
///
/// Unknown fields are refused even in snapshots: a condition an older edge cannot read must
/// fail the snapshot loudly rather than be half-understood.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schema", schemars(title = "Condition"))]
struct RawCondition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    all: Option<Vec<Condition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    any: Option<Vec<Condition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    not: Option<Box<Condition>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    query: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cookie: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    param: Option<String>,
    /// Empty: the whole body as text; `/a/b`: a JSON Pointer; `$.a.b`: a JSONPath.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    /// A JSON Pointer or JSONPath into GraphQL variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    variable: Option<String>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    equals: Option<Value>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    not_equals: Option<Value>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    contains: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exists: Option<bool>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    case_insensitive: bool,
}

/// Reads a present value as `Some`, even `null` (absent fields stay `None` by `default`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

impl TryFrom<RawCondition> for Condition {
    type Error = String;

    fn try_from(raw: RawCondition) -> std::result::Result<Self, String> {
        let combinators = [raw.all.is_some(), raw.any.is_some(), raw.not.is_some()];
        let sources: Vec<Source> = [
            raw.query.map(Source::Query),
            raw.header.map(Source::Header),
            raw.cookie.map(Source::Cookie),
            raw.param.map(Source::Param),
            raw.body.map(Source::Body),
            raw.variable.map(Source::Variable),
        ]
        .into_iter()
        .flatten()
        .collect();
        let tests: Vec<Test> = [
            raw.equals.map(Test::Equals),
            raw.not_equals.map(Test::NotEquals),
            raw.contains.map(Test::Contains),
            raw.regex.map(Test::Regex),
            raw.exists.map(Test::Exists),
        ]
        .into_iter()
        .flatten()
        .collect();
        let n_comb = combinators.iter().filter(|b| **b).count();
        if n_comb > 0 {
            if n_comb > 1 || !sources.is_empty() || !tests.is_empty() {
                return Err("a condition with all, any or not may hold nothing else".into());
            }
            return Ok(match (raw.all, raw.any, raw.not) {
                (Some(all), _, _) => Self::All(all),
                (_, Some(any), _) => Self::Any(any),
                (_, _, Some(not)) => Self::Not(not),
                _ => unreachable!("one combinator is set"),
            });
        }
        let mut sources = sources.into_iter();
        let mut tests = tests.into_iter();
        match (sources.next(), sources.next(), tests.next(), tests.next()) {
            (Some(source), None, Some(test), None) => {
                Ok(Self::Test(Predicate { source, test, case_insensitive: raw.case_insensitive }))
            }
            (None, ..) | (_, Some(_), ..) => Err(
                "a condition needs exactly one source: query, header, cookie, param, body or variable (or all, any, not)"
                    .into(),
            ),
            _ => Err(
                "a condition needs exactly one test: equals, not_equals, contains, regex or exists"
                    .into(),
            ),
        }
    }
}

impl From<&Condition> for RawCondition {
    fn from(c: &Condition) -> Self {
        let mut raw = Self::default();
        match c {
            Condition::All(all) => raw.all = Some(all.clone()),
            Condition::Any(any) => raw.any = Some(any.clone()),
            Condition::Not(not) => raw.not = Some(not.clone()),
            Condition::Test(p) => {
                match &p.source {
                    Source::Query(n) => raw.query = Some(n.clone()),
                    Source::Header(n) => raw.header = Some(n.clone()),
                    Source::Cookie(n) => raw.cookie = Some(n.clone()),
                    Source::Param(n) => raw.param = Some(n.clone()),
                    Source::Body(s) => raw.body = Some(s.clone()),
                    Source::Variable(s) => raw.variable = Some(s.clone()),
                }
                match &p.test {
                    Test::Equals(v) => raw.equals = Some(v.clone()),
                    Test::NotEquals(v) => raw.not_equals = Some(v.clone()),
                    Test::Contains(v) => raw.contains = Some(v.clone()),
                    Test::Regex(r) => raw.regex = Some(r.clone()),
                    Test::Exists(b) => raw.exists = Some(*b),
                }
                raw.case_insensitive = p.case_insensitive;
            }
        }
        raw
    }
}

impl Serialize for Condition {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        RawCondition::from(self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw = RawCondition::deserialize(d)?;
        Self::try_from(raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for Condition {
    fn schema_name() -> Cow<'static, str> {
        "Condition".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        RawCondition::json_schema(generator)
    }
}

/// A path into a JSON document, compiled once.
#[derive(Debug)]
enum Selector {
    Whole,
    Pointer(String),
    Path(JsonPath),
}

impl Selector {
    fn compile(field: &str, raw: &str) -> Result<Self> {
        if raw.is_empty() {
            Ok(Self::Whole)
        } else if raw.starts_with('/') {
            Ok(Self::Pointer(raw.to_owned()))
        } else if raw.starts_with('$') {
            JsonPath::parse(raw)
                .map(Self::Path)
                .map_err(|e| Error::new(field, format!("is not a valid JSONPath: {e}")))
        } else {
            Err(Error::new(
                field,
                "must be empty (the whole body), a JSON Pointer (/a/0/b) or a JSONPath ($.a[0].b)",
            ))
        }
    }

    fn select<'v>(&self, doc: &'v Value) -> Vec<&'v Value> {
        match self {
            Self::Whole => vec![doc],
            Self::Pointer(p) => doc.pointer(p).into_iter().collect(),
            Self::Path(path) => path.query(doc).all(),
        }
    }
}

/// A condition ready to evaluate: regexes and JSONPaths compiled.
#[derive(Debug)]
pub enum CompiledCondition {
    All(Vec<CompiledCondition>),
    Any(Vec<CompiledCondition>),
    Not(Box<CompiledCondition>),
    Test(CompiledPredicate),
}

#[derive(Debug)]
pub struct CompiledPredicate {
    source: Source,
    selector: Option<Selector>,
    test: CompiledTest,
    case_insensitive: bool,
}

#[derive(Debug)]
enum CompiledTest {
    Equals(Value),
    NotEquals(Value),
    Contains(Value),
    Regex(Regex),
    Exists(bool),
}

/// Compiles a regex from a definition with the engine's limits.
pub fn compile_regex(field: &str, pattern: &str, case_insensitive: bool) -> Result<Regex> {
    if pattern.len() > MAX_REGEX_LEN {
        return Err(Error::new(field, format!("is longer than {MAX_REGEX_LEN} characters")));
    }
    RegexBuilder::new(pattern)
        .case_insensitive(case_insensitive)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_DFA_LIMIT)
        .build()
        .map_err(|e| Error::new(field, format!("is not a valid regex: {e}")))
}

impl CompiledCondition {
    /// Compiles `condition`; errors name the field below `field` (e.g. `when.any[1].regex`).
    pub fn compile(field: &str, condition: &Condition) -> Result<Self> {
        Self::compile_at(field, condition, 0)
    }

    fn compile_at(field: &str, condition: &Condition, depth: usize) -> Result<Self> {
        if depth > MAX_CONDITION_DEPTH {
            return Err(Error::new(
                field,
                format!("nests all/any/not deeper than {MAX_CONDITION_DEPTH} levels"),
            ));
        }
        let list = |name: &str, items: &[Condition]| -> Result<Vec<Self>> {
            if items.is_empty() {
                return Err(Error::new(format!("{field}.{name}"), "must not be empty"));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, c)| Self::compile_at(&format!("{field}.{name}[{i}]"), c, depth + 1))
                .collect()
        };
        Ok(match condition {
            Condition::All(items) => Self::All(list("all", items)?),
            Condition::Any(items) => Self::Any(list("any", items)?),
            Condition::Not(inner) => {
                Self::Not(Box::new(Self::compile_at(&format!("{field}.not"), inner, depth + 1)?))
            }
            Condition::Test(p) => Self::Test(CompiledPredicate::compile(field, p)?),
        })
    }

    /// Whether the condition holds for `request`.
    pub fn eval(&self, request: &RequestView<'_>) -> bool {
        match self {
            Self::All(items) => items.iter().all(|c| c.eval(request)),
            Self::Any(items) => items.iter().any(|c| c.eval(request)),
            Self::Not(inner) => !inner.eval(request),
            Self::Test(p) => p.eval(request),
        }
    }

    /// Why the condition does not hold, in words for a near-miss report; `None` if it holds.
    pub fn explain(&self, request: &RequestView<'_>) -> Option<String> {
        match self {
            Self::All(items) => items.iter().find_map(|c| c.explain(request)),
            Self::Any(items) => {
                let reasons: Option<Vec<String>> =
                    items.iter().map(|c| c.explain(request)).collect();
                reasons.map(|r| format!("none of: {}", r.join("; ")))
            }
            Self::Not(inner) => {
                inner.eval(request).then(|| "a 'not' condition holds the other way".to_owned())
            }
            Self::Test(p) => (!p.eval(request)).then(|| p.describe_failure(request)),
        }
    }
}

/// A value a source yielded: text from the request line or headers, or a JSON node.
#[derive(Debug, Clone, Copy)]
enum Actual<'a> {
    Text(&'a str),
    Json(&'a Value),
}

impl Actual<'_> {
    fn text(&self) -> Cow<'_, str> {
        match *self {
            Self::Text(s) => Cow::Borrowed(s),
            Self::Json(Value::String(s)) => Cow::Borrowed(s.as_str()),
            Self::Json(v) => Cow::Owned(v.to_string()),
        }
    }
}

fn expected_text(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        v => Cow::Owned(v.to_string()),
    }
}

fn text_eq(a: &str, b: &str, ci: bool) -> bool {
    if ci { a.to_lowercase() == b.to_lowercase() } else { a == b }
}

fn equals(actual: Actual<'_>, expected: &Value, ci: bool) -> bool {
    match actual {
        // Same JSON type: structural equality (strings still honour case_insensitive).
        Actual::Json(v)
            if !v.is_string() && std::mem::discriminant(v) == std::mem::discriminant(expected) =>
        {
            v == expected
        }
        _ => text_eq(&actual.text(), &expected_text(expected), ci),
    }
}

fn contains(actual: Actual<'_>, expected: &Value, ci: bool) -> bool {
    match actual {
        Actual::Json(Value::Array(items)) => {
            items.iter().any(|i| equals(Actual::Json(i), expected, ci))
        }
        Actual::Json(Value::Object(map)) => map.contains_key(expected_text(expected).as_ref()),
        _ => {
            let (hay, needle) = (actual.text(), expected_text(expected));
            if ci {
                hay.to_lowercase().contains(&needle.to_lowercase())
            } else {
                hay.contains(needle.as_ref())
            }
        }
    }
}

impl CompiledPredicate {
    fn compile(field: &str, p: &Predicate) -> Result<Self> {
        let (source_field, name) = match &p.source {
            Source::Query(n) => ("query", n),
            Source::Header(n) => ("header", n),
            Source::Cookie(n) => ("cookie", n),
            Source::Param(n) => ("param", n),
            Source::Body(s) => ("body", s),
            Source::Variable(s) => ("variable", s),
        };
        let selector = match &p.source {
            Source::Body(s) | Source::Variable(s) => {
                Some(Selector::compile(&format!("{field}.{source_field}"), s)?)
            }
            _ if name.is_empty() => {
                return Err(Error::new(format!("{field}.{source_field}"), "must name a value"));
            }
            _ => None,
        };
        let test = match &p.test {
            Test::Equals(v) => CompiledTest::Equals(v.clone()),
            Test::NotEquals(v) => CompiledTest::NotEquals(v.clone()),
            Test::Contains(v) => CompiledTest::Contains(v.clone()),
            Test::Exists(b) => CompiledTest::Exists(*b),
            Test::Regex(r) => CompiledTest::Regex(compile_regex(
                &format!("{field}.regex"),
                r,
                p.case_insensitive,
            )?),
        };
        Ok(Self { source: p.source.clone(), selector, test, case_insensitive: p.case_insensitive })
    }

    /// Runs `f` over the values the source yields.
    fn with_values<R>(&self, request: &RequestView<'_>, f: impl FnOnce(&[Actual<'_>]) -> R) -> R {
        match (&self.source, &self.selector) {
            (Source::Query(n), _) => f(&texts(
                request.query_pairs().iter().filter(|(k, _)| k == n).map(|(_, v)| v.as_ref()),
            )),
            (Source::Header(n), _) => f(&texts(
                request
                    .request
                    .headers
                    .iter()
                    .filter(|(k, _)| k.eq_ignore_ascii_case(n))
                    .map(|(_, v)| v.as_ref()),
            )),
            (Source::Cookie(n), _) => f(&texts(
                request.cookie_pairs().iter().filter(|(k, _)| k == n).map(|(_, v)| v.as_str()),
            )),
            (Source::Param(n), _) => f(&texts(request.param(n).into_iter())),
            (Source::Body(_), Some(Selector::Whole)) => {
                let text = request.text().filter(|t| !t.is_empty());
                f(&text.map(Actual::Text).into_iter().collect::<Vec<_>>())
            }
            (Source::Body(_), Some(selector)) => match request.json() {
                Some(doc) => {
                    f(&selector.select(doc).into_iter().map(Actual::Json).collect::<Vec<_>>())
                }
                None => f(&[]),
            },
            (Source::Variable(_), Some(selector)) => match request.variables.as_ref() {
                Some(doc) => {
                    f(&selector.select(doc).into_iter().map(Actual::Json).collect::<Vec<_>>())
                }
                None => f(&[]),
            },
            (Source::Body(_) | Source::Variable(_), None) => f(&[]),
        }
    }

    fn eval(&self, request: &RequestView<'_>) -> bool {
        let ci = self.case_insensitive;
        self.with_values(request, |values| match &self.test {
            CompiledTest::Exists(want) => values.is_empty() != *want,
            CompiledTest::Equals(e) => values.iter().any(|v| equals(*v, e, ci)),
            CompiledTest::NotEquals(e) => !values.iter().any(|v| equals(*v, e, ci)),
            CompiledTest::Contains(e) => values.iter().any(|v| contains(*v, e, ci)),
            CompiledTest::Regex(re) => values.iter().any(|v| re.is_match(&v.text())),
        })
    }

    fn describe_failure(&self, request: &RequestView<'_>) -> String {
        let what = match &self.source {
            Source::Query(n) => format!("query parameter '{n}'"),
            Source::Header(n) => format!("header '{n}'"),
            Source::Cookie(n) => format!("cookie '{n}'"),
            Source::Param(n) => format!("path parameter '{n}'"),
            Source::Body(s) if s.is_empty() => "the body".to_owned(),
            Source::Body(s) => format!("body '{s}'"),
            Source::Variable(s) => format!("variable '{s}'"),
        };
        let wanted = match &self.test {
            CompiledTest::Exists(true) => "to be present".to_owned(),
            CompiledTest::Exists(false) => "to be absent".to_owned(),
            CompiledTest::Equals(e) => format!("to equal {e}"),
            CompiledTest::NotEquals(e) => format!("not to equal {e}"),
            CompiledTest::Contains(e) => format!("to contain {e}"),
            CompiledTest::Regex(re) => format!("to match /{}/", re.as_str()),
        };
        let got = self.with_values(request, |values| {
            if values.is_empty() {
                "it is absent".to_owned()
            } else {
                let shown: Vec<String> =
                    values.iter().take(3).map(|v| truncate(&v.text(), 80)).collect();
                format!("got {}", shown.join(", "))
            }
        });
        let ci = if self.case_insensitive { " (ignoring case)" } else { "" };
        format!("expected {what} {wanted}{ci}; {got}")
    }
}

/// A source's values: nearly always one or none, so kept inline (a `Vec` was an allocation
/// per condition per request).
fn texts<'a>(it: impl Iterator<Item = &'a str>) -> smallvec::SmallVec<[Actual<'a>; 2]> {
    it.map(Actual::Text).collect()
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{:?}…", &s[..i]),
        None => format!("{s:?}"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::request::Request;

    fn request() -> Request<'static> {
        Request {
            method: "POST".into(),
            path: "/orders/42".into(),
            query: "status=open&tag=a&tag=b&empty=".into(),
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("X-Api-Key".into(), "Secret-1".into()),
                ("Cookie".into(), "session=abc123; theme=dark".into()),
            ],
            body: json!({
                "user": {"name": "Ada", "role": "admin", "age": 36, "vip": true},
                "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": 1}],
                "note": null
            })
            .to_string()
            .into_bytes(),
        }
    }

    fn check(condition: Value, want: bool) {
        let c: Condition = serde_json::from_value(condition.clone()).unwrap();
        let compiled = CompiledCondition::compile("when", &c).unwrap();
        let r = request();
        let mut view = RequestView::new(&r, vec![("id", "42".into())]);
        view.variables = Some(json!({"id": 7, "filter": {"tags": ["x", "y"]}}));
        assert_eq!(compiled.eval(&view), want, "{condition}");
        assert_eq!(compiled.explain(&view).is_none(), want, "{condition}");
    }

    #[test]
    fn every_source_and_test() {
        let cases = [
            (json!({"query": "status", "equals": "open"}), true),
            (json!({"query": "status", "equals": "OPEN"}), false),
            (json!({"query": "status", "equals": "OPEN", "case_insensitive": true}), true),
            (json!({"query": "tag", "equals": "b"}), true),
            (json!({"query": "tag", "not_equals": "b"}), false),
            (json!({"query": "tag", "not_equals": "c"}), true),
            (json!({"query": "missing", "not_equals": "c"}), true),
            (json!({"query": "empty", "exists": true}), true),
            (json!({"query": "missing", "exists": false}), true),
            (json!({"query": "status", "contains": "pe"}), true),
            (json!({"query": "status", "regex": "^o.e"}), true),
            (json!({"header": "x-api-key", "equals": "Secret-1"}), true),
            (json!({"header": "X-API-KEY", "exists": true}), true),
            (json!({"header": "x-api-key", "regex": "^secret", "case_insensitive": true}), true),
            (json!({"header": "x-api-key", "regex": "^secret"}), false),
            (json!({"header": "authorization", "exists": true}), false),
            (json!({"cookie": "session", "regex": "^[a-z0-9]+$"}), true),
            (json!({"cookie": "theme", "equals": "light"}), false),
            (json!({"param": "id", "equals": 42}), true),
            (json!({"param": "id", "equals": "42"}), true),
            (json!({"param": "nope", "exists": true}), false),
            (json!({"body": "/user/role", "equals": "admin"}), true),
            (json!({"body": "/user/age", "equals": 36}), true),
            (json!({"body": "/user/age", "equals": "36"}), true),
            (json!({"body": "/user/vip", "equals": true}), true),
            (json!({"body": "/note", "exists": true}), true),
            (json!({"body": "/note", "equals": null}), true),
            (json!({"body": "/user/missing", "exists": false}), true),
            (json!({"body": "$.items[*].sku", "equals": "B-2"}), true),
            (json!({"body": "$.items[?@.qty > 1].sku", "equals": "A-1"}), true),
            (json!({"body": "$.items[?@.qty > 5]", "exists": true}), false),
            (json!({"body": "/items", "contains": {"sku": "A-1", "qty": 2}}), true),
            (json!({"body": "/user", "contains": "name"}), true),
            (json!({"body": "", "contains": "\"Ada\""}), true),
            (json!({"body": "", "regex": "ad+a", "case_insensitive": true}), true),
            (json!({"variable": "/id", "equals": 7}), true),
            (json!({"variable": "/filter/tags", "contains": "y"}), true),
            (json!({"variable": "$.filter.tags[0]", "equals": "x"}), true),
            (
                json!({"all": [{"query": "status", "equals": "open"}, {"param": "id", "equals": "42"}]}),
                true,
            ),
            (
                json!({"all": [{"query": "status", "equals": "open"}, {"param": "id", "equals": "1"}]}),
                false,
            ),
            (
                json!({"any": [{"query": "status", "equals": "x"}, {"param": "id", "equals": "42"}]}),
                true,
            ),
            (
                json!({"any": [{"query": "status", "equals": "x"}, {"param": "id", "equals": "1"}]}),
                false,
            ),
            (json!({"not": {"header": "authorization", "exists": true}}), true),
        ];
        for (condition, want) in cases {
            check(condition, want);
        }
    }

    #[test]
    fn malformed_conditions_are_refused_with_a_reason() {
        let parse_errors = [
            (json!({"query": "a"}), "exactly one test"),
            (json!({"equals": "a"}), "exactly one source"),
            (json!({"query": "a", "header": "b", "exists": true}), "exactly one source"),
            (json!({"query": "a", "equals": "x", "regex": "y"}), "exactly one test"),
            (json!({"all": [], "query": "a"}), "may hold nothing else"),
            (json!({"query": 5, "exists": true}), "invalid type"),
        ];
        for (raw, want) in parse_errors {
            let err = serde_json::from_value::<Condition>(raw.clone()).unwrap_err().to_string();
            assert!(err.contains(want), "{raw}: {err}");
        }
        let compile_errors = [
            (json!({"query": "a", "regex": "(unclosed"}), "when.regex", "not a valid regex"),
            (json!({"query": "a", "regex": "a{1000}{1000}"}), "when.regex", "not a valid regex"),
            (json!({"body": "user.name", "exists": true}), "when.body", "JSON Pointer"),
            (json!({"body": "$[?", "exists": true}), "when.body", "JSONPath"),
            (json!({"header": "", "exists": true}), "when.header", "must name"),
            (json!({"any": []}), "when.any", "must not be empty"),
            (
                json!({"all": [{"query": "a", "exists": true}, {"not": {"cookie": "c", "regex": "["}}]}),
                "when.all[1].not.regex",
                "not a valid regex",
            ),
        ];
        for (raw, field, message) in compile_errors {
            let c: Condition = serde_json::from_value(raw.clone()).unwrap();
            let err = CompiledCondition::compile("when", &c).unwrap_err();
            assert_eq!(err.field, field, "{raw}");
            assert!(err.message.contains(message), "{raw}: {err}");
        }
        let mut deep = json!({"query": "a", "exists": true});
        for _ in 0..=MAX_CONDITION_DEPTH {
            deep = json!({"not": deep});
        }
        let c: Condition = serde_json::from_value(deep).unwrap();
        assert!(CompiledCondition::compile("when", &c).unwrap_err().message.contains("deeper"));
    }

    #[test]
    fn round_trips_through_json() {
        let raw = json!({"any": [{"body": "/a", "regex": "x", "case_insensitive": true}, {"not": {"cookie": "c", "exists": true}}]});
        let c: Condition = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!(serde_json::to_value(&c).unwrap(), raw);
    }

    #[test]
    fn explains_failures() {
        let c: Condition =
            serde_json::from_value(json!({"query": "status", "equals": "closed"})).unwrap();
        let compiled = CompiledCondition::compile("when", &c).unwrap();
        let r = request();
        let why = compiled.explain(&RequestView::new(&r, vec![])).unwrap();
        assert_eq!(why, r#"expected query parameter 'status' to equal "closed"; got "open""#);
    }

    #[test]
    fn hostile_inputs_do_not_explode() {
        // A regex that backtracking engines take exponential time on is linear here.
        let c: Condition = serde_json::from_value(json!({"body": "", "regex": "^(a+)+$"})).unwrap();
        let compiled = CompiledCondition::compile("when", &c).unwrap();
        let mut body = "a".repeat(100_000);
        body.push('!');
        let r = Request { body: body.into_bytes(), ..Default::default() };
        assert!(!compiled.eval(&RequestView::new(&r, vec![])));
    }
}
