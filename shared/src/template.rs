//! Response templating with [minijinja](https://docs.rs/minijinja): Jinja2 syntax, which
//! reads like the Handlebars of WireMock and Mockoon for the common case
//! (`{{ request.params.id }}`, `{{ request.query.page }}`) and adds real expressions,
//! filters and loops.
//!
//! Templates are compiled once per snapshot. Each render gets its own context: the request,
//! the time the host passed in and a random generator seeded from the host's seed, so the
//! same request, time and seed always render the same bytes. Rendering is bounded: a fuel
//! budget caps the instructions a template may run and the output is capped in size.
//!
//! # Context
//! - `request.method`, `request.path`, `request.path_segments`, `request.url` (path and
//!   query), `request.params.<name>`, `request.query.<name>` (first value),
//!   `request.query_all.<name>` (every value), `request.headers["x-name"]` (lower-case
//!   names), `request.cookies.<name>`, `request.body` (text), `request.json` (the body
//!   parsed as JSON, or a form body as an object).
//! - `message` / `message_json` in WebSocket replies: the received message.
//!
//! # Helpers (functions)
//! `now(format=, offset=)`, `uuid()`, `random_int(min, max)`, `random_float(min, max,
//! decimals=)`, `random_bool(probability=)`, `random_string(length, charset=)`,
//! `pick(list)`, `pick_some(list, count)`, `faker("person.firstName")` (Mockoon's names;
//! see [`FAKERS`]), `json_path(value, "$.a[*]")`, `regex_extract(text, pattern, group=)`;
//! plus minijinja's `range`, `dict`, `namespace`.
//!
//! # Filters
//! `format_date(format)`, `base64`, `base64_decode`, `sha256`, `json_path(path)`, and
//! minijinja's builtins (`tojson`, `urlencode`, `upper`, `lower`, `default`, `length`,
//! `join`, `first`, `last`, `round`, `int`, `float`, `replace`, `trim`, …).

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Write};
use std::sync::Mutex;

use base64::Engine as _;
use fake::Fake;
use minijinja::value::{Kwargs, Object, Value};
use minijinja::{Environment, Error as TemplateError, ErrorKind, State, UndefinedBehavior};
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use sha2::Digest;

use crate::error::{Error, Result};
use crate::request::RequestView;

/// Instructions one render may execute. A plain substitution costs a handful; a loop over
/// a hundred items a few thousand.
pub const TEMPLATE_FUEL: u64 = 100_000;
/// Largest output one render may produce.
pub const MAX_RENDER_BYTES: usize = 1024 * 1024;
/// Longest template source accepted.
pub const MAX_TEMPLATE_LEN: usize = 256 * 1024;

/// Names a template may use without defining them: the context and the helpers.
const CONTEXT_NAMES: &[&str] = &["request", "message", "message_json"];
const FUNCTIONS: &[&str] = &[
    "now",
    "uuid",
    "random_int",
    "random_float",
    "random_bool",
    "random_string",
    "pick",
    "pick_some",
    "faker",
    "json_path",
    "regex_extract",
    "range",
    "dict",
    "namespace",
];
const FILTERS: &[&str] = &[
    "format_date",
    "base64",
    "base64_decode",
    "sha256",
    "json_path",
    // minijinja builtins
    "abs",
    "attr",
    "batch",
    "bool",
    "capitalize",
    "chain",
    "count",
    "default",
    "d",
    "dictsort",
    "e",
    "escape",
    "first",
    "float",
    "format",
    "groupby",
    "indent",
    "int",
    "items",
    "join",
    "last",
    "length",
    "lines",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "pprint",
    "reject",
    "rejectattr",
    "replace",
    "reverse",
    "round",
    "safe",
    "select",
    "selectattr",
    "slice",
    "sort",
    "split",
    "string",
    "sum",
    "title",
    "tojson",
    "trim",
    "unique",
    "upper",
    "urlencode",
    "zip",
];
const TESTS: &[&str] = &[
    "boolean",
    "defined",
    "divisibleby",
    "endingwith",
    "eq",
    "equalto",
    "even",
    "false",
    "filter",
    "float",
    "ge",
    "gt",
    "in",
    "integer",
    "iterable",
    "le",
    "lower",
    "lt",
    "mapping",
    "ne",
    "none",
    "number",
    "odd",
    "safe",
    "sameas",
    "sequence",
    "startingwith",
    "string",
    "test",
    "true",
    "undefined",
    "upper",
];

/// The fake-data generators `faker(name)` knows, by Mockoon's (Faker.js) names.
pub const FAKERS: &[&str] = &[
    "person.firstName",
    "person.lastName",
    "person.fullName",
    "person.prefix",
    "person.jobTitle",
    "internet.email",
    "internet.userName",
    "internet.domainSuffix",
    "internet.ip",
    "internet.ipv4",
    "internet.ipv6",
    "internet.mac",
    "internet.userAgent",
    "internet.password",
    "location.city",
    "location.country",
    "location.countryCode",
    "location.state",
    "location.street",
    "location.streetAddress",
    "location.buildingNumber",
    "location.zipCode",
    "location.latitude",
    "location.longitude",
    "location.timeZone",
    "company.name",
    "company.catchPhrase",
    "company.buzzPhrase",
    "company.industry",
    "lorem.word",
    "lorem.words",
    "lorem.sentence",
    "lorem.paragraph",
    "phone.number",
    "color.hex",
    "string.uuid",
    "finance.creditCardNumber",
    "commerce.isbn",
    "datatype.boolean",
    "number.int",
];

/// One compiled template in a [`Templates`] set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemplateId(usize);

/// The templates of one snapshot, compiled.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
    count: usize,
    /// The parts of `request` each template reads ([`Fields`]), by id.
    fields: Vec<Fields>,
    /// Each template's name in `env` (its id as text), so a render allocates none.
    names: Vec<String>,
    /// Templates that only put request values into text, by id: rendered without minijinja
    /// (see [`Substitution`]).
    substitutions: Vec<Option<Substitution>>,
}

/// Which parts of the `request` context a template reads, found when it is compiled, so a
/// render builds only those: the whole context (headers, query, cookies, the body parsed
/// as JSON …) cost more than rendering a `{{ request.params.id }}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fields(u16);

impl Fields {
    pub const NONE: Self = Self(0);
    pub const ALL: Self = Self(u16::MAX);
    const NAMES: [&'static str; 11] = [
        "method",
        "path",
        "url",
        "path_segments",
        "params",
        "query",
        "query_all",
        "headers",
        "cookies",
        "body",
        "json",
    ];

    fn of(name: &str) -> Self {
        Self::NAMES.iter().position(|n| *n == name).map_or(Self::NONE, |i| Self(1 << i))
    }

    fn has(self, name: &str) -> bool {
        let one = Self::of(name).0;
        one != 0 && self.0 & one != 0
    }

    #[must_use]
    pub fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

/// What a render reads besides the template: the request, the time and the seed.
#[derive(Debug, Clone, Copy)]
pub struct RenderInput<'a, 'r> {
    pub request: &'a RequestView<'r>,
    /// Unix time in milliseconds, from the host.
    pub now_ms: i64,
    /// Seeds every random helper of this render.
    pub seed: u64,
    /// A received WebSocket message, for WebSocket replies.
    pub message: Option<&'a str>,
}

impl Templates {
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_recursion_limit(32);
        // Mocks mostly emit JSON: print booleans and none the JSON way, not Python's.
        env.set_formatter(|out, state, value| {
            use minijinja::value::ValueKind;
            match value.kind() {
                ValueKind::Bool => out.write_str(if value.is_true() { "true" } else { "false" }),
                ValueKind::None => out.write_str("null"),
                _ => return minijinja::escape_formatter(out, state, value),
            }
            .map_err(|_| invalid("write failed"))
        });
        env.add_function("now", now);
        env.add_function("uuid", uuid);
        env.add_function("random_int", random_int);
        env.add_function("random_float", random_float);
        env.add_function("random_bool", random_bool);
        env.add_function("random_string", random_string);
        env.add_function("pick", pick);
        env.add_function("pick_some", pick_some);
        env.add_function("faker", faker);
        env.add_function("json_path", json_path);
        env.add_function("regex_extract", regex_extract);
        env.add_filter("json_path", json_path);
        env.add_filter("format_date", format_date);
        env.add_filter("base64", |s: String| base64::engine::general_purpose::STANDARD.encode(s));
        env.add_filter("base64_decode", |s: String| -> Result<String, TemplateError> {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .map_err(|e| invalid(format!("base64_decode: {e}")))?;
            String::from_utf8(bytes).map_err(|_| invalid("base64_decode: not UTF-8 text"))
        });
        env.add_filter("sha256", |s: String| hex(&sha2::Sha256::digest(s.as_bytes())));
        Self { env, count: 0, fields: Vec::new(), names: Vec::new(), substitutions: Vec::new() }
    }

    /// The parts of `request` the template reads.
    pub fn fields(&self, id: TemplateId) -> Fields {
        self.fields.get(id.0).copied().unwrap_or(Fields::ALL)
    }

    /// Compiles `source`, checking that it uses only known helpers, filters and tests.
    /// `field` names the definition field in errors.
    pub fn add(&mut self, field: &str, source: &str) -> Result<TemplateId> {
        if source.len() > MAX_TEMPLATE_LEN {
            return Err(Error::new(field, format!("is longer than {MAX_TEMPLATE_LEN} bytes")));
        }
        let id = TemplateId(self.count);
        let name = id.0.to_string();
        self.env
            .add_template_owned(name.clone(), source.to_owned())
            .map_err(|e| Error::new(field, format!("is not a valid template: {}", describe(&e))))?;
        let template = self
            .env
            .get_template(&name)
            .map_err(|e| Error::new(field, format!("is not a valid template: {}", describe(&e))))?;
        let known: HashSet<&str> = CONTEXT_NAMES.iter().chain(FUNCTIONS).copied().collect();
        let mut unknown: Vec<String> = template
            .undeclared_variables(false)
            .into_iter()
            .filter(|name| !known.contains(name.as_str()))
            .collect();
        unknown.sort();
        if let Some(name) = unknown.first() {
            return Err(Error::new(
                field,
                format!(
                    "uses '{name}', which is neither a helper nor in the context (helpers: {}; context: {})",
                    FUNCTIONS.join(", "),
                    CONTEXT_NAMES.join(", ")
                ),
            ));
        }
        check_filters_and_tests(source).map_err(|m| Error::new(field, m))?;
        // `request.params.id` is read as `request.params…`; `request` used whole (passed to a
        // filter, assigned, indexed by a variable) needs every part.
        let mut fields = Fields::NONE;
        for used in template.undeclared_variables(true) {
            let mut parts = used.split('.');
            if parts.next() != Some("request") {
                continue;
            }
            fields = fields.union(match parts.next() {
                Some(part) if Fields::of(part) != Fields::NONE => Fields::of(part),
                // An unknown part renders as undefined, as it always did.
                Some(_) => Fields::NONE,
                None => Fields::ALL,
            });
        }
        self.fields.push(fields);
        self.substitutions.push(Substitution::parse(source));
        self.names.push(name);
        self.count += 1;
        Ok(id)
    }

    /// Renders a compiled template. Errors are definition errors met at run time (a value of
    /// the wrong type, fuel or size exhausted); the message says which.
    pub fn render(&self, id: TemplateId, input: &RenderInput<'_, '_>) -> Result<String, String> {
        let context = Context::with_fields(input, self.fields(id));
        self.render_with(id, &context)
    }

    /// Renders with a context built once and shared by several templates of one response.
    pub fn render_with(&self, id: TemplateId, context: &Context<'_, '_>) -> Result<String, String> {
        if let Some(Some(substitution)) = self.substitutions.get(id.0)
            && let Some(text) = substitution.render(context.input.request)
        {
            return Ok(text);
        }
        let name = self.names.get(id.0).map_or("", String::as_str);
        let template = self.env.get_template(name).map_err(|e| describe(&e))?;
        let mut out = CappedWriter { buf: Vec::new(), cap: MAX_RENDER_BYTES };
        template.render_captured_to(context.value().clone(), &mut out).map_err(|e| describe(&e))?;
        String::from_utf8(out.buf).map_err(|_| "template output is not UTF-8".to_owned())
    }

    /// Renders with minijinja even where the template is a [`Substitution`] (tests compare
    /// the two).
    #[cfg(test)]
    fn render_with_minijinja(
        &self,
        id: TemplateId,
        input: &RenderInput<'_, '_>,
    ) -> Result<String, String> {
        let template = self.env.get_template(&self.names[id.0]).map_err(|e| describe(&e))?;
        let context = Context::with_fields(input, self.fields(id));
        template.render(context.value().clone()).map_err(|e| describe(&e))
    }
}

/// A template that is only text and request values, `{{ request.params.id }}`,
/// `{{ request.query.page }}`, `{{ request.headers['x-name'] }}`: what most mocks' templates
/// are (WireMock's and Mockoon's common case). It renders by copying the values in, with
/// exactly minijinja's output (tested against it), but without building a template context
/// or running the VM, which cost a templated answer more than everything else it does.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Substitution(Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Method,
    Path,
    Url,
    Param(String),
    Query(String),
    Header(String),
    Cookie(String),
}

impl Substitution {
    /// `source` as text and request values, or `None` if it is anything more (a filter, a
    /// tag, a comment, whitespace control, any other expression): minijinja renders those.
    fn parse(source: &str) -> Option<Self> {
        if source.contains("{%") || source.contains("{#") {
            return None;
        }
        // As minijinja's lexer (without `keep_trailing_newline`): one `\n`, then one `\r`.
        let mut source = source.strip_suffix('\n').unwrap_or(source);
        source = source.strip_suffix('\r').unwrap_or(source);
        let mut pieces = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}")?;
            let expression = &after[..close];
            if expression.starts_with(['-', '+']) || expression.ends_with(['-', '+']) {
                return None;
            }
            pieces.push(Self::piece(expression.trim())?);
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Some(Self(pieces))
    }

    /// `request.<part>` or `request.<part>.<name>` (or `["name"]`), for the parts whose
    /// values are text.
    fn piece(expression: &str) -> Option<Piece> {
        let mut rest = expression.strip_prefix("request")?;
        let mut names = Vec::new();
        while !rest.is_empty() {
            let (name, after) = if let Some(attribute) = rest.strip_prefix('.') {
                let end = attribute
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(attribute.len());
                let name = &attribute[..end];
                if !name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
                    return None;
                }
                (name, &attribute[end..])
            } else {
                let quoted = rest.strip_prefix('[')?;
                let quote = quoted.chars().next().filter(|q| matches!(q, '\'' | '"'))?;
                let inner = &quoted[1..];
                let end = inner.find(quote)?;
                let name = &inner[..end];
                // No escapes to interpret: names of letters, digits, `-` and `_` only.
                if name.is_empty()
                    || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    return None;
                }
                (name, inner[end + 1..].strip_prefix(']')?)
            };
            names.push(name);
            rest = after;
        }
        match names.as_slice() {
            ["method"] => Some(Piece::Method),
            ["path"] => Some(Piece::Path),
            ["url"] => Some(Piece::Url),
            ["params", name] => Some(Piece::Param((*name).to_owned())),
            ["query", name] => Some(Piece::Query((*name).to_owned())),
            ["headers", name] => Some(Piece::Header((*name).to_owned())),
            ["cookies", name] => Some(Piece::Cookie((*name).to_owned())),
            _ => None,
        }
    }

    /// The text, or `None` past [`MAX_RENDER_BYTES`] (minijinja then says so).
    fn render(&self, view: &RequestView<'_>) -> Option<String> {
        let r = view.request;
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Method => out.push_str(&r.method),
                Piece::Path => out.push_str(&r.path),
                Piece::Url => {
                    out.push_str(&r.path);
                    if !r.query.is_empty() {
                        out.push('?');
                        out.push_str(&r.query);
                    }
                }
                // The context's maps: the last of equal path parameters (collected into a
                // map), the first query value, cookie and header of a name; header names are
                // lower-cased there, so a name with capitals is never found.
                Piece::Param(name) => out.push_str(
                    view.params.iter().rev().find(|(k, _)| k == name).map_or("", |(_, v)| v),
                ),
                Piece::Query(name) => out.push_str(view.query(name).unwrap_or_default()),
                Piece::Cookie(name) => out.push_str(view.cookie(name).unwrap_or_default()),
                Piece::Header(name) => {
                    if !name.bytes().any(|b| b.is_ascii_uppercase()) {
                        out.push_str(view.header(name).unwrap_or_default());
                    }
                }
            }
            if out.len() > MAX_RENDER_BYTES {
                return None;
            }
        }
        Some(out)
    }
}

/// A render context: the request as template values plus the per-render clock and RNG,
/// built when a template first needs it (a [`Substitution`] never does).
#[derive(Debug)]
pub struct Context<'a, 'r> {
    input: RenderInput<'a, 'r>,
    fields: Fields,
    value: std::cell::OnceCell<Value>,
}

impl<'a, 'r> Context<'a, 'r> {
    /// The whole context.
    pub fn new(input: &RenderInput<'a, 'r>) -> Self {
        Self::with_fields(input, Fields::ALL)
    }

    /// A context whose `request` holds only `fields` (what the templates to render read, by
    /// [`Templates::fields`]); the rest is undefined.
    pub fn with_fields(input: &RenderInput<'a, 'r>, fields: Fields) -> Self {
        Self { input: *input, fields, value: std::cell::OnceCell::new() }
    }

    fn value(&self) -> &Value {
        self.value.get_or_init(|| Self::build(&self.input, self.fields))
    }

    fn build(input: &RenderInput<'_, '_>, fields: Fields) -> Value {
        let runtime = Runtime {
            now_ms: input.now_ms,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(input.seed)),
        };
        let mut map: BTreeMap<&str, Value> = BTreeMap::new();
        map.insert("request", request_value(input.request, fields));
        map.insert("__edgemock", Value::from_object(runtime));
        if let Some(message) = input.message {
            map.insert("message", Value::from(message));
            let json = serde_json::from_str::<serde_json::Value>(message)
                .ok()
                .filter(|_| !crate::request::too_deep(message.as_bytes()));
            map.insert("message_json", json.map(|j| to_value(&j)).unwrap_or(Value::UNDEFINED));
        }
        Value::from(map)
    }
}

fn request_value(view: &RequestView<'_>, fields: Fields) -> Value {
    let r = view.request;
    let mut m: BTreeMap<&str, Value> = BTreeMap::new();
    let want = |name| fields.has(name);
    if want("method") {
        m.insert("method", Value::from(&*r.method));
    }
    if want("path") {
        m.insert("path", Value::from(&*r.path));
    }
    if want("url") {
        let url =
            if r.query.is_empty() { r.path.to_string() } else { format!("{}?{}", r.path, r.query) };
        m.insert("url", Value::from(url));
    }
    if want("path_segments") {
        let segments: Vec<Value> =
            r.path.split('/').filter(|s| !s.is_empty()).map(Value::from).collect();
        m.insert("path_segments", Value::from(segments));
    }
    if want("params") {
        let params: BTreeMap<String, Value> =
            view.params.iter().map(|(k, v)| ((*k).to_owned(), Value::from(v.as_ref()))).collect();
        m.insert("params", Value::from(params));
    }
    if want("query") || want("query_all") {
        let mut query: BTreeMap<String, Value> = BTreeMap::new();
        let mut query_all: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for (k, v) in view.query_pairs() {
            query.entry(k.to_string()).or_insert_with(|| Value::from(v.as_ref()));
            query_all.entry(k.to_string()).or_default().push(Value::from(v.as_ref()));
        }
        m.insert("query", Value::from(query));
        m.insert("query_all", Value::from(query_all));
    }
    if want("headers") {
        let mut headers: BTreeMap<String, Value> = BTreeMap::new();
        for (k, v) in &r.headers {
            headers.entry(k.to_ascii_lowercase()).or_insert_with(|| Value::from(&**v));
        }
        m.insert("headers", Value::from(headers));
    }
    if want("cookies") {
        let mut cookies: BTreeMap<String, Value> = BTreeMap::new();
        for (k, v) in view.cookie_pairs() {
            cookies.entry(k.clone()).or_insert_with(|| Value::from(v.as_str()));
        }
        m.insert("cookies", Value::from(cookies));
    }
    if want("body") {
        m.insert("body", view.text().map(Value::from).unwrap_or(Value::from("")));
    }
    if want("json") {
        m.insert("json", view.json().map(to_value).unwrap_or(Value::UNDEFINED));
    }
    Value::from(m)
}

/// Converts JSON into a template value (objects keep their keys, numbers their kind).
pub fn to_value(json: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match json {
        J::Null => Value::from(()),
        J::Bool(b) => Value::from(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::from(i),
            (_, Some(u), _) => Value::from(u),
            (_, _, Some(f)) => Value::from(f),
            _ => Value::from(n.to_string()),
        },
        J::String(s) => Value::from(s.as_str()),
        J::Array(items) => Value::from(items.iter().map(to_value).collect::<Vec<_>>()),
        J::Object(map) => Value::from(
            map.iter().map(|(k, v)| (k.clone(), to_value(v))).collect::<BTreeMap<String, Value>>(),
        ),
    }
}

/// Converts a template value back into JSON (for `json_path`). Values nested deeper than
/// [`crate::request::MAX_JSON_DEPTH`] (a namespace that contains itself, say) become null.
fn to_json(value: &Value) -> serde_json::Value {
    to_json_at(value, 0)
}

fn to_json_at(value: &Value, depth: usize) -> serde_json::Value {
    use minijinja::value::ValueKind as K;
    if depth > crate::request::MAX_JSON_DEPTH {
        return serde_json::Value::Null;
    }
    let to_json = |v: &Value| to_json_at(v, depth + 1);
    match value.kind() {
        K::Undefined | K::None => serde_json::Value::Null,
        K::Bool => serde_json::Value::Bool(value.is_true()),
        K::Number => value
            .as_i64()
            .map(serde_json::Value::from)
            .or_else(|| f64::try_from(value.clone()).ok().map(serde_json::Value::from))
            .unwrap_or(serde_json::Value::Null),
        K::String => serde_json::Value::String(value.as_str().unwrap_or_default().to_owned()),
        K::Seq | K::Iterable => serde_json::Value::Array(
            value.try_iter().map(|it| it.map(|v| to_json(&v)).collect()).unwrap_or_default(),
        ),
        K::Map => {
            let mut map = serde_json::Map::new();
            if let Ok(keys) = value.try_iter() {
                for key in keys {
                    let v = value.get_item(&key).unwrap_or(Value::UNDEFINED);
                    map.insert(key.to_string(), to_json(&v));
                }
            }
            serde_json::Value::Object(map)
        }
        _ => serde_json::Value::String(value.to_string()),
    }
}

/// Per-render clock and RNG, reachable from helpers through the context.
#[derive(Debug)]
struct Runtime {
    now_ms: i64,
    rng: Mutex<ChaCha8Rng>,
}

impl Object for Runtime {}

fn with_runtime<R>(state: &State, f: impl FnOnce(&Runtime) -> R) -> Result<R, TemplateError> {
    let value = state.lookup("__edgemock").ok_or_else(|| invalid("no render context"))?;
    let runtime =
        value.downcast_object_ref::<Runtime>().ok_or_else(|| invalid("no render context"))?;
    Ok(f(runtime))
}

fn with_rng<R>(state: &State, f: impl FnOnce(&mut ChaCha8Rng) -> R) -> Result<R, TemplateError> {
    with_runtime(state, |rt| {
        let mut rng = rt.rng.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut rng)
    })
}

fn invalid(message: impl Into<String>) -> TemplateError {
    TemplateError::new(ErrorKind::InvalidOperation, message.into())
}

fn describe(e: &TemplateError) -> String {
    let mut text = match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    };
    if let Some(line) = e.line() {
        text.push_str(&format!(" (line {line})"));
    }
    text
}

struct CappedWriter {
    buf: Vec<u8>,
    cap: usize,
}

impl Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > self.cap {
            return Err(io::Error::other(format!("template output exceeds {} bytes", self.cap)));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Finds filter (`| name`) and test (`is [not] name`) names inside template tags, skipping
/// string literals, and refuses unknown ones: minijinja resolves them only at render time,
/// and a typo must fail when the definition is saved, not when a client calls.
fn check_filters_and_tests(source: &str) -> std::result::Result<(), String> {
    let filters: HashSet<&str> = FILTERS.iter().copied().collect();
    let tests: HashSet<&str> = TESTS.iter().copied().collect();
    let mut rest = source;
    while let Some(start) = rest.find(['{']) {
        let after = &rest[start + 1..];
        let close = match after.chars().next() {
            Some('{') => "}}",
            Some('%') => "%}",
            _ => {
                rest = after;
                continue;
            }
        };
        let body_start = 1;
        let end = after[body_start..].find(close).map_or(after.len(), |i| i + body_start);
        let tag = &after[body_start..end];
        let words = tokens(tag);
        for (i, w) in words.iter().enumerate() {
            if *w == "|" {
                if let Some(name) = words.get(i + 1)
                    && !filters.contains(name)
                {
                    return Err(format!(
                        "uses the unknown filter '{name}' (filters: {})",
                        FILTERS[..5].join(", ") + ", and minijinja's builtins"
                    ));
                }
            } else if *w == "is" {
                let name = match words.get(i + 1) {
                    Some(&"not") => words.get(i + 2),
                    other => other,
                };
                if let Some(name) = name
                    && !tests.contains(name)
                {
                    return Err(format!("uses the unknown test '{name}'"));
                }
            }
        }
        rest = &after[end.min(after.len())..];
    }
    Ok(())
}

/// Splits a tag into identifiers and `|`, dropping string literals and other punctuation.
fn tokens(tag: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = tag.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'"' || c == b'\'' {
            i += 1;
            while i < bytes.len() && bytes[i] != c {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == b'|' {
            out.push("|");
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            // `a.b` attribute names are not filter names: skip identifiers after a dot.
            if start == 0 || bytes[start - 1] != b'.' {
                out.push(&tag[start..i]);
            }
        } else {
            i += 1;
        }
    }
    out
}

// ---- helpers ----

fn now(state: &State, format: Option<String>, kwargs: Kwargs) -> Result<String, TemplateError> {
    let format: Option<String> = match format {
        Some(f) => Some(f),
        None => kwargs.get("format")?,
    };
    let offset: Option<String> = kwargs.get("offset")?;
    kwargs.assert_all_used()?;
    let mut ms = with_runtime(state, |rt| rt.now_ms)?;
    if let Some(offset) = offset {
        ms = ms.saturating_add(crate::dates::parse_offset_ms(&offset).map_err(invalid)?);
    }
    crate::dates::format_ms(ms, format.as_deref().unwrap_or("iso")).map_err(invalid)
}

fn format_date(value: Value, format: String) -> Result<String, TemplateError> {
    let ms = match value.as_i64() {
        // Numbers below 10^11 are seconds (until the year 5138), others milliseconds.
        Some(n) if n.unsigned_abs() < 100_000_000_000 => n * 1000,
        Some(n) => n,
        None => {
            crate::dates::parse_rfc3339_ms(value.as_str().unwrap_or_default()).map_err(invalid)?
        }
    };
    crate::dates::format_ms(ms, &format).map_err(invalid)
}

fn uuid(state: &State) -> Result<String, TemplateError> {
    let bytes: [u8; 16] = with_rng(state, |rng| rng.random())?;
    Ok(uuid::Builder::from_random_bytes(bytes).into_uuid().hyphenated().to_string())
}

fn random_int(state: &State, min: Option<i64>, max: Option<i64>) -> Result<i64, TemplateError> {
    let (min, max) = (min.unwrap_or(0), max.unwrap_or(100));
    if min > max {
        return Err(invalid("random_int: min is above max"));
    }
    with_rng(state, |rng| rng.random_range(min..=max))
}

fn random_float(
    state: &State,
    min: Option<f64>,
    max: Option<f64>,
    kwargs: Kwargs,
) -> Result<f64, TemplateError> {
    let decimals: Option<i32> = kwargs.get("decimals")?;
    kwargs.assert_all_used()?;
    let (min, max) = (min.unwrap_or(0.0), max.unwrap_or(1.0));
    if min > max || !min.is_finite() || !max.is_finite() {
        return Err(invalid("random_float: needs finite min <= max"));
    }
    let x = with_rng(state, |rng| min + (max - min) * rng.random::<f64>())?;
    Ok(match decimals {
        Some(d) => {
            let p = 10f64.powi(d.clamp(0, 12));
            (x * p).round() / p
        }
        None => x,
    })
}

fn random_bool(state: &State, probability: Option<f64>) -> Result<bool, TemplateError> {
    let p = probability.unwrap_or(0.5).clamp(0.0, 1.0);
    with_rng(state, |rng| rng.random::<f64>() < p)
}

fn random_string(
    state: &State,
    length: Option<usize>,
    kwargs: Kwargs,
) -> Result<String, TemplateError> {
    let charset: Option<String> = kwargs.get("charset")?;
    kwargs.assert_all_used()?;
    let length = length.unwrap_or(16);
    if length > 10_000 {
        return Err(invalid("random_string: length is at most 10000"));
    }
    let alphabet: &[u8] = match charset.as_deref().unwrap_or("alphanumeric") {
        "alphanumeric" => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        "alphabetic" => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        "numeric" => b"0123456789",
        "hex" => b"0123456789abcdef",
        "lowercase" => b"abcdefghijklmnopqrstuvwxyz",
        "uppercase" => b"ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        other => {
            return Err(invalid(format!(
                "random_string: unknown charset '{other}' (alphanumeric, alphabetic, numeric, hex, lowercase, uppercase)"
            )));
        }
    };
    with_rng(state, |rng| {
        (0..length).map(|_| alphabet[rng.random_range(0..alphabet.len())] as char).collect()
    })
}

fn items(list: &Value) -> Result<Vec<Value>, TemplateError> {
    Ok(list.try_iter()?.collect())
}

fn pick(state: &State, list: Value) -> Result<Value, TemplateError> {
    let items = items(&list)?;
    if items.is_empty() {
        return Ok(Value::UNDEFINED);
    }
    let i = with_rng(state, |rng| rng.random_range(0..items.len()))?;
    Ok(items[i].clone())
}

fn pick_some(state: &State, list: Value, count: Option<usize>) -> Result<Value, TemplateError> {
    let mut items = items(&list)?;
    let count = count.unwrap_or(1).min(items.len());
    with_rng(state, |rng| {
        // A partial Fisher–Yates shuffle: the first `count` items are a uniform sample.
        for i in 0..count {
            let j = rng.random_range(i..items.len());
            items.swap(i, j);
        }
    })?;
    items.truncate(count);
    Ok(Value::from(items))
}

fn json_path(value: Value, path: String) -> Result<Value, TemplateError> {
    let path = serde_json_path::JsonPath::parse(&path)
        .map_err(|e| invalid(format!("json_path: invalid JSONPath: {e}")))?;
    let doc = match value.as_str() {
        Some(text) if !crate::request::too_deep(text.as_bytes()) => {
            serde_json::from_str(text).unwrap_or_else(|_| to_json(&value))
        }
        _ => to_json(&value),
    };
    let found = path.query(&doc).all();
    Ok(match found.as_slice() {
        [] => Value::UNDEFINED,
        [one] => to_value(one),
        many => Value::from(many.iter().map(|v| to_value(v)).collect::<Vec<_>>()),
    })
}

fn regex_extract(
    text: String,
    pattern: String,
    group: Option<usize>,
) -> Result<Value, TemplateError> {
    let re = crate::condition::compile_regex("regex_extract", &pattern, false)
        .map_err(|e| invalid(e.message))?;
    Ok(re
        .captures(&text)
        .and_then(|c| c.get(group.unwrap_or(0)))
        .map(|m| Value::from(m.as_str()))
        .unwrap_or(Value::UNDEFINED))
}

fn faker(state: &State, name: String) -> Result<Value, TemplateError> {
    use fake::faker::address::en as address;
    use fake::faker::company::en as company;
    use fake::faker::internet::en as internet;
    use fake::faker::lorem::en as lorem;
    use fake::faker::name::en as person;
    with_rng(state, |rng| -> Result<Value, TemplateError> {
        let s = |v: String| Ok(Value::from(v));
        match name.as_str() {
            "person.firstName" => s(person::FirstName().fake_with_rng(rng)),
            "person.lastName" => s(person::LastName().fake_with_rng(rng)),
            "person.fullName" => s(person::Name().fake_with_rng(rng)),
            "person.prefix" => s(person::Title().fake_with_rng(rng)),
            "person.jobTitle" => s(fake::faker::job::en::Title().fake_with_rng(rng)),
            "internet.email" => s(internet::SafeEmail().fake_with_rng(rng)),
            "internet.userName" => s(internet::Username().fake_with_rng(rng)),
            "internet.domainSuffix" => s(internet::DomainSuffix().fake_with_rng(rng)),
            "internet.ip" | "internet.ipv4" => s(internet::IPv4().fake_with_rng(rng)),
            "internet.ipv6" => s(internet::IPv6().fake_with_rng(rng)),
            "internet.mac" => s(internet::MACAddress().fake_with_rng(rng)),
            "internet.userAgent" => s(internet::UserAgent().fake_with_rng(rng)),
            "internet.password" => s(internet::Password(10..20).fake_with_rng(rng)),
            "location.city" => s(address::CityName().fake_with_rng(rng)),
            "location.country" => s(address::CountryName().fake_with_rng(rng)),
            "location.countryCode" => s(address::CountryCode().fake_with_rng(rng)),
            "location.state" => s(address::StateName().fake_with_rng(rng)),
            "location.street" => s(address::StreetName().fake_with_rng(rng)),
            "location.streetAddress" => {
                let number: String = address::BuildingNumber().fake_with_rng(rng);
                let street: String = address::StreetName().fake_with_rng(rng);
                s(format!("{number} {street}"))
            }
            "location.buildingNumber" => s(address::BuildingNumber().fake_with_rng(rng)),
            "location.zipCode" => s(address::ZipCode().fake_with_rng(rng)),
            "location.latitude" => s(address::Latitude().fake_with_rng(rng)),
            "location.longitude" => s(address::Longitude().fake_with_rng(rng)),
            "location.timeZone" => s(address::TimeZone().fake_with_rng(rng)),
            "company.name" => s(company::CompanyName().fake_with_rng(rng)),
            "company.catchPhrase" => s(company::CatchPhrase().fake_with_rng(rng)),
            "company.buzzPhrase" => s(company::Bs().fake_with_rng(rng)),
            "company.industry" => s(company::Industry().fake_with_rng(rng)),
            "lorem.word" => s(lorem::Word().fake_with_rng(rng)),
            "lorem.words" => {
                let words: Vec<String> = lorem::Words(3..6).fake_with_rng(rng);
                s(words.join(" "))
            }
            "lorem.sentence" => s(lorem::Sentence(4..10).fake_with_rng(rng)),
            "lorem.paragraph" => s(lorem::Paragraph(3..6).fake_with_rng(rng)),
            "phone.number" => s(fake::faker::phone_number::en::PhoneNumber().fake_with_rng(rng)),
            "color.hex" => s(format!("#{:06x}", rng.random_range(0..0x0100_0000u32))),
            "string.uuid" => {
                let bytes: [u8; 16] = rng.random();
                s(uuid::Builder::from_random_bytes(bytes).into_uuid().hyphenated().to_string())
            }
            "finance.creditCardNumber" => {
                s(fake::faker::creditcard::en::CreditCardNumber().fake_with_rng(rng))
            }
            "commerce.isbn" => s(fake::faker::barcode::en::Isbn13().fake_with_rng(rng)),
            "datatype.boolean" => Ok(Value::from(rng.random::<bool>())),
            "number.int" => Ok(Value::from(rng.random_range(0..=99_999i64))),
            other => Err(invalid(format!(
                "faker: unknown generator '{other}' (known: {})",
                FAKERS.join(", ")
            ))),
        }
    })?
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// Checks that every name in [`FAKERS`] is implemented, for tests and `edgemock` docs.
#[cfg(test)]
fn all_fakers_render() -> Vec<(String, std::result::Result<String, String>)> {
    let mut templates = Templates::new();
    let request = crate::request::Request::default();
    let view = RequestView::new(&request, vec![]);
    let input = RenderInput { request: &view, now_ms: 0, seed: 1, message: None };
    FAKERS
        .iter()
        .map(|name| {
            let id =
                templates.add("t", &format!("{{{{ faker('{name}') }}}}")).unwrap_or(TemplateId(0));
            ((*name).to_owned(), templates.render(id, &input))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Request;

    fn request() -> Request<'static> {
        Request {
            method: "POST".into(),
            path: "/users/42/posts".into(),
            query: "page=2&tag=a&tag=b".into(),
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("X-Trace".into(), "t-1".into()),
                ("Cookie".into(), "session=s3".into()),
            ],
            body: br#"{"user": {"name": "Ada", "langs": ["rust", "go"]}, "n": 3}"#.to_vec(),
        }
    }

    /// Renders `source` for the sample request at 2026-01-02T03:04:05.678Z, seed 7.
    fn render(source: &str) -> std::result::Result<String, String> {
        let mut t = Templates::new();
        let id = t.add("body", source).map_err(|e| e.to_string())?;
        let r = request();
        let view = RequestView::new(&r, vec![("id", "42".into())]);
        t.render(
            id,
            &RenderInput { request: &view, now_ms: 1_767_323_045_678, seed: 7, message: None },
        )
    }

    #[test]
    fn context_and_helpers() {
        let cases: &[(&str, &str)] = &[
            ("{{ request.method }} {{ request.path }}", "POST /users/42/posts"),
            ("{{ request.url }}", "/users/42/posts?page=2&tag=a&tag=b"),
            ("{{ request.path_segments[1] }}", "42"),
            ("{{ request.params.id }}", "42"),
            ("{{ request.query.page }}", "2"),
            ("{{ request.query_all.tag | join(',') }}", "a,b"),
            ("{{ request.headers['x-trace'] }}", "t-1"),
            ("{{ request.cookies.session }}", "s3"),
            // The request used whole, or by a computed name, gets every part
            // (`Templates::render` builds only the parts a template reads).
            ("{% set r = request %}{{ r.method }} {{ r.params.id }}", "POST 42"),
            ("{{ request['method'] }} {{ request['query']['page'] }}", "POST 2"),
            ("{% set part = 'path' %}{{ request[part] }}", "/users/42/posts"),
            ("{{ request | length }}", "11"),
            (
                "{% for k, v in request.headers | dictsort %}{{ k }} {% endfor %}",
                "content-type cookie x-trace ",
            ),
            ("{{ request.nothing }}|{{ request.params.nope }}", "|"),
            ("{{ request.json.user.name }}", "Ada"),
            ("{{ request.json.user.langs | length }}", "2"),
            ("{{ request.json.n * 2 }}", "6"),
            ("{{ request.json.nothing.deeper }}", ""),
            ("{{ request.body | length }}", "58"),
            ("{{ now() }}", "2026-01-02T03:04:05.678Z"),
            ("{{ now('yyyy-MM-dd HH:mm:ss.SSS') }}", "2026-01-02 03:04:05.678"),
            ("{{ now(format='unix') }}", "1767323045"),
            ("{{ now('unix_ms') }}", "1767323045678"),
            ("{{ now('http') }}", "Fri, 02 Jan 2026 03:04:05 GMT"),
            ("{{ now('yyyy-MM-dd', offset='+3 days') }}", "2026-01-05"),
            ("{{ now('HH:mm', offset='-90m') }}", "01:34"),
            ("{{ '2024-02-29T12:00:00Z' | format_date('dd/MM/yyyy') }}", "29/02/2024"),
            ("{{ 0 | format_date('iso') }}", "1970-01-01T00:00:00Z"),
            ("{{ 'hi' | base64 }}", "aGk="),
            ("{{ 'aGk=' | base64_decode }}", "hi"),
            (
                "{{ 'abc' | sha256 }}",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            ("{{ request.body | json_path('$.user.langs[1]') }}", "go"),
            ("{{ json_path(request.json, '$.user.name') }}", "Ada"),
            ("{{ regex_extract(request.path, '/users/([0-9]+)', 1) }}", "42"),
            (
                "{{ request.json | tojson }}",
                r#"{"n": 3, "user": {"langs": ["rust", "go"], "name": "Ada"}}"#,
            ),
            ("{{ 'a b' | urlencode }}", "a%20b"),
            ("{% for i in range(3) %}{{ i }}{% endfor %}", "012"),
            ("{{ random_string(8, charset='numeric') | length }}", "8"),
            ("{{ random_int(5, 5) }}", "5"),
            ("{{ random_float(1, 1, decimals=2) }}", "1.0"),
            ("{{ pick(['x']) }}", "x"),
            ("{{ pick_some([1, 2, 3], 2) | length }}", "2"),
            ("{{ uuid() | length }}", "36"),
            ("{{ random_bool(1.0) }}", "true"),
            ("{{ request.json.n > 5 }} {{ none }}", "false null"),
        ];
        for (source, want) in cases {
            assert_eq!(render(source).as_deref(), Ok(*want), "{source}");
        }
    }

    #[test]
    fn the_seed_decides_every_random_helper() {
        let source = "{{ uuid() }} {{ random_int(0, 1000000) }} {{ faker('person.fullName') }} {{ faker('internet.email') }}";
        let a = render(source).unwrap();
        assert_eq!(a, render(source).unwrap(), "same seed, same output");
        let mut t = Templates::new();
        let id = t.add("body", source).unwrap();
        let r = request();
        let view = RequestView::new(&r, vec![]);
        let other = t
            .render(id, &RenderInput { request: &view, now_ms: 0, seed: 8, message: None })
            .unwrap();
        assert_ne!(a, other, "another seed, other output");
        // uuid() is a version 4 UUID.
        assert_eq!(&a[14..15], "4", "{a}");
    }

    #[test]
    fn every_faker_works() {
        for (name, result) in all_fakers_render() {
            let text = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!text.is_empty(), "{name}");
        }
        assert!(render("{{ faker('nope.nothing') }}").unwrap_err().contains("unknown generator"));
    }

    #[test]
    fn bad_templates_are_refused_when_saved() {
        let cases = [
            ("{{ request.method ", "not a valid template"),
            ("{{ nosuchhelper() }}", "uses 'nosuchhelper'"),
            ("{{ user.name }}", "uses 'user'"),
            ("{{ request.path | nosuchfilter }}", "unknown filter 'nosuchfilter'"),
            ("{{ request.path | upper | bogus(1) }}", "unknown filter 'bogus'"),
            ("{% if request.path is bogus %}x{% endif %}", "unknown test 'bogus'"),
            ("{% if request.path is not bogus %}x{% endif %}", "unknown test 'bogus'"),
        ];
        for (source, want) in cases {
            let err = render(source).unwrap_err();
            assert!(err.contains(want), "{source}: {err}");
            assert!(err.starts_with("body: "), "{source}: {err}");
        }
        // Filter-like text in strings and attribute names is not a filter.
        assert_eq!(render("{{ 'a | b' }}{{ request.json.user.name }}").unwrap(), "a | bAda");
        assert_eq!(render("{% set ns = namespace(n=1) %}{{ ns.n }}").unwrap(), "1");
    }

    #[test]
    fn runaway_templates_stop() {
        let err = render(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        )
        .unwrap_err();
        assert!(err.contains("fuel"), "{err}");
        let err = render("{{ 'x' * 50000000 }}").unwrap_err();
        assert!(["exceeds", "too large", "fuel"].iter().any(|w| err.contains(w)), "{err}");
        let err = render("{{ -9223372036854775808 | format_date('iso') }}").unwrap_err();
        assert!(err.contains("range"), "{err}");
        // A namespace that contains itself: converting it to JSON stops at a depth limit.
        let out =
            render("{% set ns = namespace(a=1) %}{% set ns.me = ns %}{{ json_path(ns, '$.a') }}");
        assert_eq!(out.as_deref(), Ok("1"));
        let err = render("{{ now(offset='soon') }}").unwrap_err();
        assert!(err.contains("offset"), "{err}");
    }

    /// Requests with the awkward cases of each part: repeated and encoded query values,
    /// headers in mixed case and repeated, several cookies, no query at all, Unicode.
    fn borrowed(params: &[(String, String)]) -> Vec<(&str, std::borrow::Cow<'_, str>)> {
        params.iter().map(|(k, v)| (k.as_str(), v.as_str().into())).collect()
    }

    fn substitution_requests() -> Vec<(Request<'static>, Vec<(String, String)>)> {
        vec![
            (request(), vec![("id".into(), "42".into())]),
            (
                Request {
                    method: "GET".into(),
                    path: "/caf\u{e9}/x".into(),
                    query: "q=a%20b&q=c&e=&plus=1+2&%C3%A9=\u{fc}".into(),
                    headers: vec![
                        ("X-Name".into(), "first".into()),
                        ("x-name".into(), "second".into()),
                        ("cookie".into(), "a=1; b=\"two\"; a=3".into()),
                        ("Cookie".into(), "c=4".into()),
                    ],
                    body: Vec::new(),
                },
                vec![("id".into(), "1".into()), ("id".into(), "2".into())],
            ),
            (Request::default(), Vec::new()),
        ]
    }

    #[test]
    fn substitutions_render_exactly_as_minijinja() {
        let sources = [
            "{{ request.params.id }}",
            "user {{request.params.id}}!",
            "{{ request.method }} {{ request.path }} {{ request.url }}",
            "{{ request.query.q }}|{{ request.query.e }}|{{ request.query.plus }}|{{ request.query.nope }}",
            "{{ request['query']['q'] }}",
            "{{ request.headers['x-name'] }}|{{ request.headers[\"X-Name\"] }}|{{ request.headers.x_none }}",
            "{{ request.headers['content-type'] }}|{{ request.headers.cookie }}",
            "{{ request.cookies.a }}|{{ request.cookies.b }}|{{ request.cookies.c }}|{{ request.cookies.session }}",
            "{{ request.params.nope }}{{ request.params.id }}",
            "no template at all }} {",
            "trailing newline {{ request.method }}\n",
            "two newlines\n\n",
            "crlf\r\n",
            "cr only\r",
            "{ {{ request.path }} }}",
            "\u{1f600} {{ request.params.id }} \u{e9}",
        ];
        let mut templates = Templates::new();
        for source in sources {
            let id = templates.add("t", source).unwrap();
            assert!(templates.substitutions[id.0].is_some(), "a substitution: {source}");
            for (r, params) in substitution_requests() {
                let view = RequestView::new(&r, borrowed(&params));
                let input = RenderInput { request: &view, now_ms: 0, seed: 1, message: None };
                assert_eq!(
                    templates.render(id, &input),
                    templates.render_with_minijinja(id, &input),
                    "{source} for {r:?}"
                );
            }
        }
    }

    #[test]
    fn anything_more_than_a_substitution_goes_to_minijinja() {
        for source in [
            "{{ request.params.id | upper }}",
            "{{- request.params.id }}",
            "{{ request.params.id +}}",
            "{% if true %}x{% endif %}",
            "{# comment #}{{ request.path }}",
            "{{ request.path_segments }}",
            "{{ request.params }}",
            "{{ request }}",
            "{{ request.json.a }}",
            "{{ request.query.a.b }}",
            "{{ request.headers['a b'] }}",
            "{{ request.query['\u{e9}'] }}",
            "{{ request.headers['it\\'s'] }}",
            "{{ request.params[name] }}",
            "{{ now() }}",
            "{{ 'request.path' }}",
            "{{ request .path }}",
        ] {
            let mut templates = Templates::new();
            let Ok(id) = templates.add("t", source) else { continue };
            assert!(templates.substitutions[id.0].is_none(), "not a substitution: {source}");
        }
    }

    use proptest::strategy::Strategy as _;

    proptest::proptest! {
        /// Any text with request values in it renders as minijinja renders it.
        #[test]
        fn substitutions_match_minijinja_for_any_text(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    "[a-z {}\\n\r\u{e9}]{0,6}",
                    proptest::sample::select(vec![
                        "{{ request.params.id }}", "{{request.query.q}}", "{{ request.method }}",
                        "{{ request.headers['x-name'] }}", "{{ request.cookies.a }}", "{{ request.url }}",
                    ]).prop_map(str::to_owned),
                ],
                0..8,
            ),
        ) {
            let source: String = parts.concat();
            let mut templates = Templates::new();
            if let Ok(id) = templates.add("t", &source) {
                for (r, params) in substitution_requests() {
                    let view = RequestView::new(&r, borrowed(&params));
                    let input = RenderInput { request: &view, now_ms: 0, seed: 1, message: None };
                    proptest::prop_assert_eq!(
                        templates.render(id, &input),
                        templates.render_with_minijinja(id, &input),
                        "{:?}", source
                    );
                }
            }
        }
    }
}
