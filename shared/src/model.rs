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

use crate::condition::Condition;
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

/// A workspace's plan tier. Tiers carry default rate limits (see the control plane's and
/// the edge's configuration); a workspace may override its limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum PlanTier {
    #[default]
    Free,
    Pro,
    Enterprise,
}

/// The workspace an API belongs to, as far as the edge needs to know it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WorkspaceRef {
    pub id: String,
    pub slug: String,
    #[serde(default)]
    pub plan: PlanTier,
    /// Requests per minute across the workspace's APIs; `None` takes the plan's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_rpm: Option<u32>,
}

/// The API a snapshot describes, with the settings that apply to all its endpoints.
/// `slug` is globally unique: it is the `{apiSlug}` of `/mock/{apiSlug}/…`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ApiRef {
    pub id: String,
    pub slug: String,
    pub name: String,
    /// Headers added to every response of the API unless the response sets the same name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub base_headers: BTreeMap<String, String>,
    /// The delay of endpoints that define none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_delay: Option<Delay>,
    /// CORS: when set, preflight requests are answered and responses carry the CORS headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
}

impl ApiRef {
    pub fn validate(&self) -> Result<()> {
        validate_headers("base_headers", &self.base_headers)?;
        if let Some(delay) = &self.default_delay {
            delay.validate().map_err(|e| e.within("default_delay"))?;
        }
        if let Some(cors) = &self.cors {
            cors.validate().map_err(|e| e.within("cors"))?;
        }
        Ok(())
    }
}

/// Cross-origin settings of an API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Cors {
    /// Allowed origins; `*` allows any. A request's `Origin` is echoed when it is allowed.
    #[serde(default = "any_origin")]
    pub allow_origins: Vec<String>,
    /// Allowed methods for preflight; empty echoes the requested method.
    #[serde(default)]
    pub allow_methods: Vec<String>,
    /// Allowed request headers for preflight; empty echoes the requested headers.
    #[serde(default)]
    pub allow_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    #[serde(default)]
    pub allow_credentials: bool,
    #[serde(default = "default_cors_max_age")]
    pub max_age_seconds: u32,
}

fn any_origin() -> Vec<String> {
    vec!["*".to_owned()]
}

fn default_cors_max_age() -> u32 {
    600
}

impl Default for Cors {
    fn default() -> Self {
        Self {
            allow_origins: any_origin(),
            allow_methods: Vec::new(),
            allow_headers: Vec::new(),
            expose_headers: Vec::new(),
            allow_credentials: false,
            max_age_seconds: default_cors_max_age(),
        }
    }
}

impl Cors {
    pub fn validate(&self) -> Result<()> {
        for (i, origin) in self.allow_origins.iter().enumerate() {
            if http::HeaderValue::from_str(origin).is_err() || origin.is_empty() {
                return Err(Error::new(format!("allow_origins[{i}]"), "is not a valid origin"));
            }
        }
        if self.allow_credentials && self.allow_origins.iter().any(|o| o == "*") {
            return Err(Error::new(
                "allow_credentials",
                "cannot be combined with the origin '*': list the origins that may send credentials",
            ));
        }
        for (i, m) in self.allow_methods.iter().enumerate() {
            MethodSpec::parse(&format!("allow_methods[{i}]"), m)?;
        }
        for (field, names) in
            [("allow_headers", &self.allow_headers), ("expose_headers", &self.expose_headers)]
        {
            for (i, name) in names.iter().enumerate() {
                http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    Error::new(format!("{field}[{i}]"), "is not a valid HTTP header name")
                })?;
            }
        }
        Ok(())
    }
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

#[cfg(feature = "schema")]
impl schemars::JsonSchema for MethodSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Method".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "An HTTP method token (GET, POST, PROPFIND, …, any case) or ANY / * for every method.",
            "pattern": "^([A-Za-z!#$%&'*+.^_`|~0-9-]+)$",
            "examples": ["GET", "POST", "ANY"]
        })
    }
}

/// A response body: a JSON string is sent as text, byte for byte; any other JSON value is
/// sent as compact JSON (and defaults the `content-type` to `application/json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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

impl Body {
    fn len(&self) -> usize {
        match self {
            Self::Text(text) => text.len(),
            Self::Json(value) => serde_json::to_vec(value).map(|v| v.len()).unwrap_or(usize::MAX),
        }
    }

    /// Whether the body contains template syntax (`{{`, `{%` or `{#`) anywhere.
    pub fn looks_templated(&self) -> bool {
        fn has(s: &str) -> bool {
            s.contains("{{") || s.contains("{%") || s.contains("{#")
        }
        fn walk(v: &serde_json::Value) -> bool {
            match v {
                serde_json::Value::String(s) => has(s),
                serde_json::Value::Array(a) => a.iter().any(walk),
                serde_json::Value::Object(o) => o.values().any(walk),
                _ => false,
            }
        }
        match self {
            Self::Text(text) => has(text),
            Self::Json(value) => walk(value),
        }
    }
}

/// One response an endpoint can give.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ResponseDefinition {
    /// A name that rules may refer to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default = "default_status")]
    pub status: u16,
    /// Header names are matched case-insensitively on the wire; they are stored as written.
    /// Values may be templates.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Body,
    /// Whether the body and headers are templates. Unset: they are when they contain `{{`,
    /// `{%` or `{#`. For a JSON body, every string in it is a template of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<bool>,
    /// Relative weight under `selection: weighted`.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Overrides the endpoint's delay for this response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Delay>,
}

fn default_status() -> u16 {
    200
}

fn default_weight() -> u32 {
    1
}

impl Default for ResponseDefinition {
    fn default() -> Self {
        Self {
            name: None,
            status: default_status(),
            headers: BTreeMap::new(),
            body: Body::default(),
            template: None,
            weight: default_weight(),
            delay: None,
        }
    }
}

/// The former name of [`ResponseDefinition`], from when responses were only static.
pub type StaticResponse = ResponseDefinition;

fn validate_headers(field: &str, headers: &BTreeMap<String, String>) -> Result<()> {
    for (name, value) in headers {
        http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            Error::new(format!("{field}.{name}"), "is not a valid HTTP header name")
        })?;
        http::HeaderValue::from_str(value).map_err(|_| {
            Error::new(format!("{field}.{name}"), "is not a valid HTTP header value")
        })?;
    }
    Ok(())
}

impl ResponseDefinition {
    /// Checks what can be checked without compiling (templates are compiled with the API).
    pub fn validate(&self) -> Result<()> {
        // 1xx are interim responses no host can send as an answer.
        if !(200..=599).contains(&self.status) {
            return Err(Error::new("status", "must be between 200 and 599"));
        }
        validate_headers("headers", &self.headers)?;
        if self.body.len() > MAX_BODY_BYTES {
            return Err(Error::new("body", format!("is larger than {MAX_BODY_BYTES} bytes")));
        }
        if let Some(delay) = &self.delay {
            delay.validate().map_err(|e| e.within("delay"))?;
        }
        Ok(())
    }

    pub fn is_templated(&self) -> bool {
        self.template.unwrap_or_else(|| {
            self.body.looks_templated()
                || self.headers.values().any(|v| v.contains("{{") || v.contains("{%"))
        })
    }
}

/// Longest delay a definition may ask for. The host applies it, and Workers bill wall time
/// only loosely, but a minute is already far past what any client waits for.
pub const MAX_DELAY_MS: u32 = 60_000;

/// A response delay, drawn by the engine from the request's seed and applied by the host.
/// Written `{"fixed": 200}`, `{"uniform": {"min_ms": 100, "max_ms": 300}}` or
/// `{"lognormal": {"median_ms": 120, "sigma": 0.5}}`; draws are capped at `MAX_DELAY_MS`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Delay {
    /// Always this many milliseconds.
    Fixed(u32),
    /// Uniformly between the bounds, inclusive.
    Uniform { min_ms: u32, max_ms: u32 },
    /// Log-normally around a median: the long tail of a real service.
    Lognormal { median_ms: u32, sigma: f64 },
}

impl Delay {
    pub fn validate(&self) -> Result<()> {
        match *self {
            Self::Fixed(ms) if ms > MAX_DELAY_MS => {
                Err(Error::new("fixed", format!("must be at most {MAX_DELAY_MS} ms")))
            }
            Self::Uniform { min_ms, max_ms } if min_ms > max_ms || max_ms > MAX_DELAY_MS => {
                Err(Error::new("uniform", format!("needs min_ms <= max_ms <= {MAX_DELAY_MS}")))
            }
            Self::Lognormal { median_ms, sigma }
                if median_ms > MAX_DELAY_MS || !(0.0..=5.0).contains(&sigma) =>
            {
                Err(Error::new(
                    "lognormal",
                    format!("needs median_ms <= {MAX_DELAY_MS} and sigma between 0 and 5"),
                ))
            }
            _ => Ok(()),
        }
    }
}

/// What an injected fault does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer with `status` (and `body`) instead of the mock.
    #[default]
    Status,
    /// Answer 200 with no headers of the mock and an empty body.
    EmptyResponse,
    /// Drop the connection without an answer, where the host can; otherwise an empty 502.
    ConnectionClose,
}

/// Fault injection: a share of requests fail on purpose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Fault {
    /// Share of requests that fail, from 0 to 100.
    pub percent: f64,
    #[serde(default)]
    pub kind: FaultKind,
    /// The status of a `status` fault.
    #[serde(default = "default_fault_status")]
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Body>,
}

fn default_fault_status() -> u16 {
    500
}

impl Fault {
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=100.0).contains(&self.percent) {
            return Err(Error::new("percent", "must be between 0 and 100"));
        }
        if !(200..=599).contains(&self.status) {
            return Err(Error::new("status", "must be between 200 and 599"));
        }
        Ok(())
    }
}

/// How a response is chosen when no rule matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// The endpoint's `response`.
    #[default]
    Default,
    /// `responses` in turn, starting over after the last (per engine instance: at the edge,
    /// per isolate).
    Sequential,
    /// One of `responses`, uniformly, drawn from the request's seed.
    Random,
    /// One of `responses` by `weight`, drawn from the request's seed.
    Weighted,
}

/// Which response a rule picks: a name from `responses`, an index into it, or one inline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
pub enum ResponseRef {
    Index(usize),
    Name(String),
    Inline(Box<ResponseDefinition>),
}

/// A rule: when its condition holds, its response is given. Rules are tried by descending
/// `priority`, then in order; the first that holds wins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub priority: i32,
    pub when: Condition,
    pub response: ResponseRef,
}

/// JSON Schema validation of request bodies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Validation {
    /// A JSON Schema (drafts 4 to 2020-12; `$schema` picks one, 2020-12 otherwise). Only
    /// local `$ref`s resolve: the engine fetches nothing.
    pub schema: serde_json::Value,
    /// The status of an invalid request.
    #[serde(default = "default_validation_status")]
    pub status: u16,
}

fn default_validation_status() -> u16 {
    400
}

/// Header rewriting for proxied requests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HeaderRules {
    /// Added to what the client sent.
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    /// Replace what the client sent.
    #[serde(default, rename = "override")]
    pub set: BTreeMap<String, String>,
    /// Not forwarded (case-insensitive).
    #[serde(default)]
    pub remove: Vec<String>,
}

/// Longest proxy timeout a definition may set.
pub const MAX_PROXY_TIMEOUT_MS: u32 = 30_000;

/// Proxy mode: the request is forwarded to `target` (joined with the request's path below
/// the API prefix, and its query) instead of answered from the definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ProxySettings {
    /// `https://host[:port][/base]`. Whether `http` or private addresses are allowed is the
    /// deployment's decision, checked by the host.
    pub target: String,
    #[serde(default)]
    pub headers: HeaderRules,
    /// Unset: the deployment's default (`PROXY_DEFAULT_TIMEOUT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u32>,
    /// Forward the client's `Authorization` header (off by default).
    #[serde(default)]
    pub forward_authorization: bool,
    /// Forward the client's `Cookie` header (off by default).
    #[serde(default)]
    pub forward_cookies: bool,
}

impl ProxySettings {
    pub fn validate(&self) -> Result<()> {
        let target = self.target.as_str();
        let rest = target
            .strip_prefix("https://")
            .or_else(|| target.strip_prefix("http://"))
            .ok_or_else(|| Error::new("target", "must be an http:// or https:// URL"))?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.is_empty() || authority.contains('@') || target.contains(['?', '#']) {
            return Err(Error::new(
                "target",
                "must be scheme://host[:port][/path], without credentials, query or fragment",
            ));
        }
        if http::Uri::try_from(target).is_err() {
            return Err(Error::new("target", "is not a valid URL"));
        }
        if let Some(ms) = self.timeout_ms
            && (ms == 0 || ms > MAX_PROXY_TIMEOUT_MS)
        {
            return Err(Error::new(
                "timeout_ms",
                format!("must be between 1 and {MAX_PROXY_TIMEOUT_MS}"),
            ));
        }
        validate_headers("headers.add", &self.headers.add)?;
        validate_headers("headers.override", &self.headers.set)?;
        Ok(())
    }
}

/// Who may store a response, and for how long.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum CacheMode {
    /// `private, no-cache`: clients may keep it but revalidate every time (cheap with the
    /// ETag), shared caches never keep it. The default: a mock can change at any moment.
    #[default]
    Revalidate,
    /// `private, max-age=N`.
    Private,
    /// `public, max-age=N`: shared caches (and the edge's cache) may keep it.
    Public,
    /// `no-store`.
    NoStore,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CacheSettings {
    #[serde(default)]
    pub mode: CacheMode,
    #[serde(default)]
    pub max_age_seconds: u32,
}

/// An endpoint as an admin defines it: which requests it answers and with what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EndpointDefinition {
    pub method: MethodSpec,
    /// A path pattern: `/users/:id`, `/users/{id}`, or a trailing wildcard `/files/*` or
    /// `/files/{*rest}`. See [`crate::routing::normalize_pattern`].
    #[cfg_attr(feature = "schema", schemars(pattern("^/")))]
    pub path: String,
    /// Among endpoints whose method and pattern both match, the highest priority whose
    /// `when` holds answers (ties: an exact method before `ANY`, then definition order).
    #[serde(default)]
    pub priority: i32,
    /// A condition the request must meet for this endpoint to answer at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Condition>,
    /// The default response.
    #[serde(default)]
    pub response: ResponseDefinition,
    /// Further responses, for rules and for `selection`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub responses: Vec<ResponseDefinition>,
    #[serde(default)]
    pub selection: Selection,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<Validation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Delay>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxySettings>,
    /// Identical requests (same canonical hash) within the host's window get the first
    /// answer again.
    #[serde(default)]
    pub dedup: bool,
    #[serde(default)]
    pub cache: CacheSettings,
}

impl EndpointDefinition {
    /// A plain endpoint: `method path` answering `response`.
    pub fn new(method: MethodSpec, path: impl Into<String>, response: ResponseDefinition) -> Self {
        Self {
            method,
            path: path.into(),
            priority: 0,
            when: None,
            response,
            responses: Vec::new(),
            selection: Selection::Default,
            rules: Vec::new(),
            validation: None,
            delay: None,
            fault: None,
            proxy: None,
            dedup: false,
            cache: CacheSettings::default(),
        }
    }

    /// Validates the endpoint on its own, compiling its conditions, schema and templates.
    /// Conflicts with other endpoints of the same API are found when the API is compiled
    /// ([`crate::Engine::from_snapshot`]).
    pub fn validate(&self) -> Result<()> {
        crate::routing::normalize_pattern(&self.path).map_err(|e| Error::new("path", e.message))?;
        crate::engine::check_endpoint(self)
    }
}

/// A GraphQL operation type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum OperationType {
    #[default]
    Query,
    Mutation,
    Subscription,
}

impl OperationType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::Mutation => "mutation",
            Self::Subscription => "subscription",
        }
    }
}

/// A mocked GraphQL operation, answered at the API's GraphQL endpoint. Responses are
/// GraphQL results: their bodies are objects with `data` and/or `errors`. Rules and `when`
/// read the operation's variables with `{"variable": "/pointer", …}`.
///
/// The response fields repeat [`EndpointDefinition`]'s rather than flatten a shared struct:
/// serde's `flatten` swallows unknown fields, and the control plane must refuse a typo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct GraphqlOperation {
    #[serde(default, rename = "type")]
    pub operation_type: OperationType,
    /// The operation name; `*` answers any name of this type (including anonymous ones).
    pub name: String,
    #[serde(default)]
    pub priority: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Condition>,
    #[serde(default)]
    pub response: ResponseDefinition,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub responses: Vec<ResponseDefinition>,
    #[serde(default)]
    pub selection: Selection,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Delay>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
}

/// A message a WebSocket mock sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WsMessage {
    /// Text, or JSON sent as compact text; may be a template (with the handshake request and
    /// the received `message` in its context).
    pub data: Body,
    #[serde(default)]
    pub delay_ms: u32,
}

/// Messages sent again and again while a connection is open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WsInterval {
    pub every_ms: u32,
    pub message: WsMessage,
    /// Stop after this many; unset: until the connection closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<u32>,
}

/// Replies to received messages: the first reply whose `when` holds (read the message with
/// `{"body": …}`) sends its messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WsReply {
    pub when: Condition,
    pub send: Vec<WsMessage>,
}

/// Shortest interval a WebSocket mock may send on.
pub const MIN_WS_INTERVAL_MS: u32 = 100;

/// A WebSocket mock at `/ws/{apiSlug}{path}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WebSocketEndpoint {
    #[cfg_attr(feature = "schema", schemars(pattern("^/")))]
    pub path: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_connect: Vec<WsMessage>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intervals: Vec<WsInterval>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replies: Vec<WsReply>,
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
