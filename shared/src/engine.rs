//! The engine: a snapshot compiled for serving, and the one call that decides a response.
//!
//! ```text
//! let engine = Engine::from_snapshot(snapshot)?;            // once per snapshot version
//! let outcome = engine.handle(&request, now_ms, seed);      // per request
//! ```
//!
//! The outcome is a response plus directives the host carries out: a delay to wait, a
//! proxy target to forward to, a deduplication key, whether the response may be kept in a
//! shared cache, whether to drop the connection. The engine itself does no IO and reads no
//! clock; `now_ms` and `seed` decide every time-dependent and random choice, so a request
//! replayed with the same inputs gets the same bytes.
//!
//! Order of decisions for a request: CORS preflight → routing (method router, then `ANY`)
//! → endpoint `when` and priority → request validation → proxy → fault → rules → selection
//! → rendering → headers (base, content type, cache, ETag, CORS) → `If-None-Match` → delay.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use serde_json::{Value, json};

use crate::condition::CompiledCondition;
use crate::error::{Error, Result};
use crate::graphql;
use crate::hashing;
use crate::http_cache;
use crate::model::{
    Body, CacheMode, CacheSettings, Cors, Delay, EndpointDefinition, Fault, FaultKind,
    GraphqlOperation, HeaderRules, MAX_DELAY_MS, MIN_WS_INTERVAL_MS, MethodSpec, OperationType,
    ProxySettings, ResponseDefinition, ResponseRef, Rule, Selection, Validation, WebSocketEndpoint,
    WsMessage,
};
use crate::request::{Params, Request, RequestView};
use crate::response::{HeaderText, MockResponse};
use crate::routing::normalize_pattern;
use crate::snapshot::Snapshot;
use crate::template::{Context, Fields, RenderInput, TemplateId, Templates};

/// Most validation errors listed in one 400 answer.
pub const MAX_VALIDATION_ERRORS: usize = 50;
/// Most near misses listed in one 404 answer.
pub const MAX_NEAR_MISSES: usize = 3;

/// What happened to a request, for the host's logs and analytics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// A mock response was rendered.
    Served,
    /// The response matched `If-None-Match`: 304, no body.
    NotModified,
    /// A CORS preflight was answered.
    Preflight,
    /// The host must forward the request ([`Outcome::proxy`]); `response` is unused.
    Proxy,
    /// No endpoint matched: 404 with near misses.
    NotFound,
    /// The path exists for other methods: 405 with `Allow`.
    MethodNotAllowed,
    /// The request failed the endpoint's JSON Schema.
    ValidationFailed,
    /// A fault was injected on purpose.
    Fault,
    /// A GraphQL request could not be read (400).
    BadRequest,
    /// A template failed at run time (a definition error: 500 naming the field).
    TemplateError,
}

/// The endpoint that answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Matched {
    pub endpoint_id: Arc<str>,
    /// The method as defined (`ANY` included) and the path pattern as written: safe labels
    /// for metrics and analytics, never the raw path.
    pub method: Arc<str>,
    pub pattern: Arc<str>,
    /// `METHOD pattern`, as metrics and analytics name the endpoint.
    #[serde(skip)]
    pub label: Arc<str>,
    /// The rule that chose the response, by name or `rules[i]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<Arc<str>>,
}

/// Which endpoint (or GraphQL operation) answered, and by which rule: [`Engine::matched`]
/// gives its report. Positions in the engine that made it, not a reference to the report:
/// a reference count would be written twice per request, on a line every core that
/// answers the endpoint shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatchId {
    of: MatchOf,
    /// The rule's index in the responder's rules.
    rule: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MatchOf {
    Endpoint(usize),
    Operation(usize),
}

/// What a match of one endpoint (or operation) reports, built once for it and for each of
/// its rules.
#[derive(Debug)]
struct Reports {
    plain: Matched,
    by_rule: Vec<Matched>,
}

impl Reports {
    fn new(matched: Matched, responder: &Responder) -> Self {
        let by_rule = responder
            .rules
            .iter()
            .map(|rule| Matched { rule: Some(rule.label.clone()), ..matched.clone() })
            .collect();
        Self { plain: matched, by_rule }
    }

    /// The report of a match answered by `rule` (an index in the responder's rules), or by
    /// no rule.
    fn get(&self, rule: Option<usize>) -> &Matched {
        rule.and_then(|i| self.by_rule.get(i)).unwrap_or(&self.plain)
    }
}

impl Matched {
    fn new(endpoint_id: Arc<str>, method: &str, pattern: &str) -> Self {
        Self {
            endpoint_id,
            method: Arc::from(method),
            pattern: Arc::from(pattern),
            label: Arc::from(format!("{method} {pattern}")),
            rule: None,
        }
    }
}

/// What hosts label an API's requests with (metrics, analytics), built once per compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiLabels {
    pub api_id: Arc<str>,
    pub api_slug: Arc<str>,
    pub workspace_id: Arc<str>,
}

/// An endpoint that nearly matched, and why it did not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NearMiss {
    pub endpoint_id: String,
    pub method: String,
    pub path: String,
    pub reasons: Vec<String>,
}

/// Where and how the host forwards a proxied request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyDirective {
    /// Target base joined with the request path (below the API prefix) and query.
    pub url: String,
    pub headers: HeaderRules,
    pub timeout_ms: Option<u32>,
    pub forward_authorization: bool,
    pub forward_cookies: bool,
}

/// The engine's decision for one request.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub kind: OutcomeKind,
    pub response: MockResponse,
    /// What answered: [`Engine::matched`] gives its report.
    pub matched: Option<MatchId>,
    /// Milliseconds to wait before answering.
    pub delay_ms: u32,
    pub proxy: Option<ProxyDirective>,
    /// Set when the endpoint deduplicates: identical requests share this key.
    pub dedup_key: Option<String>,
    /// Seconds a shared cache (the edge's) may keep this exact response for this exact
    /// request: set only for `public` endpoints whose answer cannot vary.
    pub shared_cache_seconds: Option<u32>,
    /// Drop the connection instead of answering, where the host can.
    pub close_connection: bool,
    pub near_misses: Vec<NearMiss>,
}

impl Outcome {
    fn new(kind: OutcomeKind, response: MockResponse) -> Self {
        Self {
            kind,
            response,
            matched: None,
            delay_ms: 0,
            proxy: None,
            dedup_key: None,
            shared_cache_seconds: None,
            close_connection: false,
            near_misses: Vec::new(),
        }
    }
}

fn json_response(status: u16, body: &Value) -> MockResponse {
    MockResponse {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: serde_json::to_vec(body).unwrap_or_default().into(),
    }
}

fn error_response(status: u16, code: &str, message: &str, extra: Value) -> MockResponse {
    let mut error = json!({ "code": code, "message": message });
    if let (Value::Object(e), Value::Object(x)) = (&mut error, extra) {
        e.extend(x);
    }
    let mut response = json_response(status, &json!({ "error": error }));
    // Tells edgemock's own errors apart from mocked ones with the same status (a mocked 404
    // has no such header); hosts add the request id to these bodies.
    response.headers.push((ERROR_HEADER.into(), code.to_owned().into()));
    response
}

/// The header that marks edgemock's own error responses, valued with the error code.
pub const ERROR_HEADER: &str = "x-edgemock-error";

// ---------------------------------------------------------------------------------------
// Compiled pieces

/// A header value or a body fragment: fixed text, or a template.
#[derive(Debug, Clone)]
enum Text {
    Fixed(String),
    Template(TemplateId),
}

#[derive(Debug, Clone)]
enum JsonPlan {
    Fixed(Value),
    Template(TemplateId),
    Array(Vec<JsonPlan>),
    Object(Vec<(String, JsonPlan)>),
}

#[derive(Debug, Clone)]
enum BodyPlan {
    Text(Text),
    Json(JsonPlan),
}

#[derive(Debug)]
struct CompiledResponse {
    /// The definition field, for run-time template errors (`responses[2]`).
    field: String,
    status: u16,
    headers: Vec<(String, Text)>,
    body: BodyPlan,
    /// The body's default content type.
    content_type: &'static str,
    weight: u32,
    delay: Option<Delay>,
    /// The whole response rendered at compile time when nothing in it is a template.
    fixed: Option<MockResponse>,
    /// A templated JSON body as its serialized text between the templates (see
    /// [`JsonSegment`]).
    json_body: Option<Vec<JsonSegment>>,
    /// The parts of the request its templates read: a render builds only those.
    fields: Fields,
}

/// A templated JSON body, serialized once: the text between its templated strings, and
/// the templates. Rendering writes the text and each rendered string, JSON-escaped, which
/// gives the bytes `serde_json::to_vec` gives for the body rendered as a value (keys in the
/// order the value keeps them), without building that value for every request.
#[derive(Debug, Clone, PartialEq)]
enum JsonSegment {
    Text(Vec<u8>),
    Template(TemplateId),
}

fn json_segments(plan: &JsonPlan) -> Vec<JsonSegment> {
    fn text(out: &mut Vec<JsonSegment>, bytes: &[u8]) {
        if let Some(JsonSegment::Text(last)) = out.last_mut() {
            last.extend_from_slice(bytes);
        } else {
            out.push(JsonSegment::Text(bytes.to_vec()));
        }
    }
    fn walk(plan: &JsonPlan, out: &mut Vec<JsonSegment>) {
        match plan {
            JsonPlan::Fixed(value) => text(out, &serde_json::to_vec(value).unwrap_or_default()),
            JsonPlan::Template(id) => out.push(JsonSegment::Template(*id)),
            JsonPlan::Array(items) => {
                text(out, b"[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        text(out, b",");
                    }
                    walk(item, out);
                }
                text(out, b"]");
            }
            JsonPlan::Object(entries) => {
                text(out, b"{");
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        text(out, b",");
                    }
                    text(out, &serde_json::to_vec(key).unwrap_or_default());
                    text(out, b":");
                    walk(value, out);
                }
                text(out, b"}");
            }
        }
    }
    let mut out = Vec::new();
    walk(plan, &mut out);
    out
}

fn render_json_segments(
    segments: &[JsonSegment],
    templates: &Templates,
    ctx: &Context<'_, '_>,
) -> std::result::Result<Vec<u8>, String> {
    // Sized once for the text and a short value per template: growing the vector as it
    // fills cost a reallocation or two per answer.
    let text: usize = segments
        .iter()
        .map(|s| match s {
            JsonSegment::Text(bytes) => bytes.len(),
            JsonSegment::Template(_) => 32,
        })
        .sum();
    let mut out = Vec::with_capacity(text);
    for segment in segments {
        match segment {
            JsonSegment::Text(bytes) => out.extend_from_slice(bytes),
            JsonSegment::Template(id) => {
                let rendered = templates.render_with(*id, ctx)?;
                serde_json::to_writer(&mut out, &rendered).map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(out)
}

#[derive(Debug)]
enum RuleTarget {
    Alternative(usize),
    Inline(Box<CompiledResponse>),
}

#[derive(Debug)]
struct CompiledRule {
    label: Arc<str>,
    when: CompiledCondition,
    target: RuleTarget,
}

/// The response-choosing part shared by endpoints and GraphQL operations.
#[derive(Debug)]
struct Responder {
    default: CompiledResponse,
    alternatives: Vec<CompiledResponse>,
    selection: Selection,
    rules: Vec<CompiledRule>,
    delay: Option<Delay>,
    fault: Option<Fault>,
    /// Next index for `selection: sequential`.
    sequence: AtomicU64,
}

impl Responder {
    /// Every response it may give: the default, the alternatives and inline rule responses.
    fn responses_mut(&mut self) -> impl Iterator<Item = &mut CompiledResponse> {
        std::iter::once(&mut self.default).chain(self.alternatives.iter_mut()).chain(
            self.rules.iter_mut().filter_map(|rule| match &mut rule.target {
                RuleTarget::Inline(b) => Some(b.as_mut()),
                RuleTarget::Alternative(_) => None,
            }),
        )
    }

    /// Whether every request gets the same bytes (no rules, no choice, no templates, no
    /// faults, no delay): only such answers may sit in a shared cache.
    fn is_constant(&self) -> bool {
        self.rules.is_empty()
            && self.selection == Selection::Default
            && self.fault.is_none()
            && self.delay.is_none()
            && self.default.delay.is_none()
            && self.default.fixed.is_some()
    }
}

#[derive(Debug)]
struct CompiledEndpoint {
    id: String,
    /// What a match reports.
    matched: Reports,
    method: MethodSpec,
    path: String,
    when: Option<CompiledCondition>,
    responder: Responder,
    validator: Option<(jsonschema::Validator, u16)>,
    proxy: Option<ProxySettings>,
    dedup: bool,
    cache: CacheSettings,
    /// Pattern segments, for near-miss reports.
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    Rest,
}

#[derive(Debug)]
struct CompiledOperation {
    /// Its index in the snapshot's `graphql` list, for reports (the list is re-ordered by
    /// priority).
    index: usize,
    matched: Reports,
    operation_type: OperationType,
    name: String,
    when: Option<CompiledCondition>,
    responder: Responder,
}

#[derive(Debug)]
struct CompiledMessage {
    data: BodyPlan,
    delay_ms: u32,
}

#[derive(Debug)]
struct CompiledWebSocket {
    path: String,
    on_connect: Vec<CompiledMessage>,
    intervals: Vec<(u32, Option<u32>, CompiledMessage)>,
    replies: Vec<(CompiledCondition, Vec<CompiledMessage>)>,
}

/// A message for a WebSocket mock to send, after `delay_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsSend {
    pub text: String,
    pub delay_ms: u32,
}

/// A repeating WebSocket message: send `every_ms`, at most `max_count` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsIntervalInfo {
    pub index: usize,
    pub every_ms: u32,
    pub max_count: Option<u32>,
}

// ---------------------------------------------------------------------------------------
// Compilation

/// Compiles definitions into one engine, collecting templates in one set.
struct Compiler {
    templates: Templates,
}

impl Compiler {
    fn text(&mut self, field: &str, text: &str, templated: bool) -> Result<Text> {
        if templated && (text.contains("{{") || text.contains("{%") || text.contains("{#")) {
            Ok(Text::Template(self.templates.add(field, text)?))
        } else {
            Ok(Text::Fixed(text.to_owned()))
        }
    }

    fn json_plan(&mut self, field: &str, value: &Value) -> Result<JsonPlan> {
        Ok(match value {
            Value::String(s) => match self.text(field, s, true)? {
                Text::Fixed(_) => JsonPlan::Fixed(value.clone()),
                Text::Template(id) => JsonPlan::Template(id),
            },
            Value::Array(items) => JsonPlan::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| self.json_plan(&format!("{field}[{i}]"), v))
                    .collect::<Result<_>>()?,
            ),
            Value::Object(map) => JsonPlan::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), self.json_plan(&format!("{field}.{k}"), v)?)))
                    .collect::<Result<_>>()?,
            ),
            other => JsonPlan::Fixed(other.clone()),
        })
    }

    fn body(&mut self, field: &str, body: &Body, templated: bool) -> Result<BodyPlan> {
        Ok(match body {
            Body::Text(text) => BodyPlan::Text(self.text(field, text, templated)?),
            Body::Json(value) if templated => BodyPlan::Json(self.json_plan(field, value)?),
            Body::Json(value) => BodyPlan::Json(JsonPlan::Fixed(value.clone())),
        })
    }

    fn response(&mut self, field: &str, r: &ResponseDefinition) -> Result<CompiledResponse> {
        r.validate().map_err(|e| e.within(field))?;
        let templated = r.is_templated();
        let mut headers = Vec::with_capacity(r.headers.len());
        for (name, value) in &r.headers {
            let text = self.text(&format!("{field}.headers.{name}"), value, templated)?;
            headers.push((name.clone(), text));
        }
        let body = self.body(&format!("{field}.body"), &r.body, templated)?;
        let content_type = match r.body {
            Body::Json(_) => "application/json",
            Body::Text(_) => "text/plain; charset=utf-8",
        };
        let mut compiled = CompiledResponse {
            field: field.to_owned(),
            status: r.status,
            headers,
            body,
            content_type,
            weight: r.weight,
            delay: r.delay.clone(),
            fixed: None,
            json_body: None,
            fields: Fields::NONE,
        };
        compiled.fixed = compiled.render_fixed();
        if let (None, BodyPlan::Json(plan)) = (&compiled.fixed, &compiled.body) {
            compiled.json_body = Some(json_segments(plan));
        }
        compiled.fields = compiled
            .template_ids()
            .into_iter()
            .fold(Fields::NONE, |all, id| all.union(self.templates.fields(id)));
        Ok(compiled)
    }

    fn responder(
        &mut self,
        response: &ResponseDefinition,
        responses: &[ResponseDefinition],
        selection: Selection,
        rules: &[Rule],
        delay: Option<&Delay>,
        fault: Option<&Fault>,
    ) -> Result<Responder> {
        let default = self.response("response", response)?;
        let alternatives = responses
            .iter()
            .enumerate()
            .map(|(i, r)| self.response(&format!("responses[{i}]"), r))
            .collect::<Result<Vec<_>>>()?;
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (i, r) in responses.iter().enumerate() {
            if let Some(name) = &r.name
                && names.insert(name, i).is_some()
            {
                return Err(Error::new(
                    format!("responses[{i}].name"),
                    format!("'{name}' is used twice"),
                ));
            }
        }
        if selection != Selection::Default && responses.is_empty() {
            return Err(Error::new(
                "selection",
                "sequential, random and weighted selection choose among 'responses', which is empty",
            ));
        }
        if selection == Selection::Weighted && responses.iter().all(|r| r.weight == 0) {
            return Err(Error::new("responses", "weighted selection needs a weight above 0"));
        }
        let mut order: Vec<usize> = (0..rules.len()).collect();
        // Stable: equal priorities keep their written order.
        order.sort_by_key(|&i| std::cmp::Reverse(rules[i].priority));
        let mut compiled_rules = Vec::with_capacity(rules.len());
        for i in order {
            let rule = &rules[i];
            let field = format!("rules[{i}]");
            let when = CompiledCondition::compile(&format!("{field}.when"), &rule.when)?;
            let target = match &rule.response {
                ResponseRef::Index(n) if *n < responses.len() => RuleTarget::Alternative(*n),
                ResponseRef::Index(n) => {
                    return Err(Error::new(
                        format!("{field}.response"),
                        format!("responses[{n}] does not exist ({} responses)", responses.len()),
                    ));
                }
                ResponseRef::Name(name) => match names.get(name.as_str()) {
                    Some(&n) => RuleTarget::Alternative(n),
                    None => {
                        return Err(Error::new(
                            format!("{field}.response"),
                            format!("no response is named '{name}'"),
                        ));
                    }
                },
                ResponseRef::Inline(r) => {
                    RuleTarget::Inline(Box::new(self.response(&format!("{field}.response"), r)?))
                }
            };
            let label = Arc::from(rule.name.clone().unwrap_or(field));
            compiled_rules.push(CompiledRule { label, when, target });
        }
        if let Some(delay) = delay {
            delay.validate().map_err(|e| e.within("delay"))?;
        }
        if let Some(fault) = fault {
            fault.validate().map_err(|e| e.within("fault"))?;
        }
        Ok(Responder {
            default,
            alternatives,
            selection,
            rules: compiled_rules,
            delay: delay.cloned(),
            fault: fault.cloned(),
            sequence: AtomicU64::new(0),
        })
    }

    fn endpoint(&mut self, id: &str, d: &EndpointDefinition) -> Result<CompiledEndpoint> {
        let pattern = normalize_pattern(&d.path)?;
        let when = d.when.as_ref().map(|c| CompiledCondition::compile("when", c)).transpose()?;
        let responder = self.responder(
            &d.response,
            &d.responses,
            d.selection,
            &d.rules,
            d.delay.as_ref(),
            d.fault.as_ref(),
        )?;
        let validator = d.validation.as_ref().map(compile_validation).transpose()?;
        if let Some(proxy) = &d.proxy {
            proxy.validate().map_err(|e| e.within("proxy"))?;
        }
        Ok(CompiledEndpoint {
            id: id.to_owned(),
            matched: Reports::new(
                Matched::new(Arc::from(id), d.method.as_str(), &d.path),
                &responder,
            ),
            method: d.method.clone(),
            path: d.path.clone(),
            when,
            responder,
            validator,
            proxy: d.proxy.clone(),
            dedup: d.dedup,
            cache: d.cache,
            segments: segments(&pattern),
        })
    }

    fn operation(&mut self, index: usize, op: &GraphqlOperation) -> Result<CompiledOperation> {
        if op.name.is_empty() || !(op.name == "*" || is_graphql_name(&op.name)) {
            return Err(Error::new("name", "must be a GraphQL name ([_A-Za-z][_0-9A-Za-z]*) or *"));
        }
        for (i, r) in std::iter::once(&op.response).chain(&op.responses).enumerate() {
            let field =
                if i == 0 { "response".to_owned() } else { format!("responses[{}]", i - 1) };
            check_graphql_result(r).map_err(|e| e.within(&field))?;
        }
        for (i, rule) in op.rules.iter().enumerate() {
            if let ResponseRef::Inline(r) = &rule.response {
                check_graphql_result(r).map_err(|e| e.within(&format!("rules[{i}].response")))?;
            }
        }
        let when = op.when.as_ref().map(|c| CompiledCondition::compile("when", c)).transpose()?;
        let mut responder = self.responder(
            &op.response,
            &op.responses,
            op.selection,
            &op.rules,
            op.delay.as_ref(),
            op.fault.as_ref(),
        )?;
        // GraphQL results are JSON whatever the body's spelling (a templated text body too).
        for r in responder.responses_mut() {
            r.content_type = "application/json";
            r.fixed = r.render_fixed();
        }
        let kind = op.operation_type.as_str();
        let id = Arc::from(format!("graphql:{kind}:{}", op.name));
        Ok(CompiledOperation {
            index,
            matched: Reports::new(Matched::new(id, kind, &op.name), &responder),
            operation_type: op.operation_type,
            name: op.name.clone(),
            when,
            responder,
        })
    }

    fn message(&mut self, field: &str, m: &WsMessage) -> Result<CompiledMessage> {
        if m.delay_ms > MAX_DELAY_MS {
            return Err(Error::new(
                format!("{field}.delay_ms"),
                format!("must be at most {MAX_DELAY_MS}"),
            ));
        }
        Ok(CompiledMessage {
            data: self.body(&format!("{field}.data"), &m.data, true)?,
            delay_ms: m.delay_ms,
        })
    }

    fn websocket(&mut self, ws: &WebSocketEndpoint) -> Result<CompiledWebSocket> {
        normalize_pattern(&ws.path)?;
        let on_connect = ws
            .on_connect
            .iter()
            .enumerate()
            .map(|(i, m)| self.message(&format!("on_connect[{i}]"), m))
            .collect::<Result<_>>()?;
        let mut intervals = Vec::new();
        for (i, iv) in ws.intervals.iter().enumerate() {
            if iv.every_ms < MIN_WS_INTERVAL_MS {
                return Err(Error::new(
                    format!("intervals[{i}].every_ms"),
                    format!("must be at least {MIN_WS_INTERVAL_MS}"),
                ));
            }
            intervals.push((
                iv.every_ms,
                iv.max_count,
                self.message(&format!("intervals[{i}].message"), &iv.message)?,
            ));
        }
        let mut replies = Vec::new();
        for (i, reply) in ws.replies.iter().enumerate() {
            let when = CompiledCondition::compile(&format!("replies[{i}].when"), &reply.when)?;
            let send = reply
                .send
                .iter()
                .enumerate()
                .map(|(j, m)| self.message(&format!("replies[{i}].send[{j}]"), m))
                .collect::<Result<_>>()?;
            replies.push((when, send));
        }
        Ok(CompiledWebSocket { path: ws.path.clone(), on_connect, intervals, replies })
    }
}

fn is_graphql_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// A GraphQL response body must be a GraphQL result: an object of `data`, `errors` and
/// `extensions`. Templated text bodies are checked when rendered.
fn check_graphql_result(r: &ResponseDefinition) -> Result<()> {
    let value = match &r.body {
        Body::Json(v) => v.clone(),
        Body::Text(t) if r.is_templated() => return Ok(()),
        Body::Text(t) => serde_json::from_str(t).map_err(|_| {
            Error::new("body", "must be a GraphQL result: {\"data\": …, \"errors\": […]}")
        })?,
    };
    let ok = value.as_object().is_some_and(|o| {
        !o.is_empty()
            && o.keys().all(|k| matches!(k.as_str(), "data" | "errors" | "extensions"))
            && o.get("errors").is_none_or(Value::is_array)
    });
    if ok {
        Ok(())
    } else {
        Err(Error::new("body", "must be a GraphQL result: {\"data\": …, \"errors\": […]}"))
    }
}

/// Compiles a JSON Schema with the engine's limits: `pattern`s run on the linear-time
/// `regex` engine with size limits, formats are checked, and nothing is fetched.
pub fn compile_schema(field: &str, schema: &Value) -> Result<jsonschema::Validator> {
    if crate::request::too_deep(schema.to_string().as_bytes()) {
        return Err(Error::new(field, "nests too deeply"));
    }
    jsonschema::options()
        .should_validate_formats(true)
        .with_pattern_options(
            jsonschema::PatternOptions::regex().size_limit(256 * 1024).dfa_size_limit(512 * 1024),
        )
        .build(schema)
        .map_err(|e| Error::new(field, format!("is not a usable JSON Schema: {e}")))
}

fn compile_validation(v: &Validation) -> Result<(jsonschema::Validator, u16)> {
    if !(400..=599).contains(&v.status) {
        return Err(Error::new("validation.status", "must be between 400 and 599"));
    }
    Ok((compile_schema("validation.schema", &v.schema)?, v.status))
}

fn segments(pattern: &str) -> Vec<Segment> {
    pattern
        .split('/')
        .skip(1)
        .map(|s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(inner) if inner.starts_with('*') => Segment::Rest,
            Some(inner) => Segment::Param(inner.to_owned()),
            None => Segment::Literal(s.to_owned()),
        })
        .collect()
}

/// Checks an endpoint on its own, as [`EndpointDefinition::validate`] promises: everything
/// that compiling it checks (conditions, schema, templates, proxy target).
pub fn check_endpoint(d: &EndpointDefinition) -> Result<()> {
    let mut compiler = Compiler { templates: Templates::new() };
    compiler.endpoint("", d).map(drop)
}

// ---------------------------------------------------------------------------------------
// Rendering

impl CompiledResponse {
    fn template_ids(&self) -> Vec<TemplateId> {
        fn of_plan(plan: &JsonPlan, out: &mut Vec<TemplateId>) {
            match plan {
                JsonPlan::Fixed(_) => {}
                JsonPlan::Template(id) => out.push(*id),
                JsonPlan::Array(items) => items.iter().for_each(|p| of_plan(p, out)),
                JsonPlan::Object(entries) => entries.iter().for_each(|(_, p)| of_plan(p, out)),
            }
        }
        let mut out = Vec::new();
        for (_, text) in &self.headers {
            if let Text::Template(id) = text {
                out.push(*id);
            }
        }
        match &self.body {
            BodyPlan::Text(Text::Template(id)) => out.push(*id),
            BodyPlan::Text(Text::Fixed(_)) => {}
            BodyPlan::Json(plan) => of_plan(plan, &mut out),
        }
        out
    }

    fn is_fixed(&self) -> bool {
        let body_fixed = match &self.body {
            BodyPlan::Text(Text::Fixed(_)) | BodyPlan::Json(JsonPlan::Fixed(_)) => true,
            BodyPlan::Text(Text::Template(_)) => false,
            BodyPlan::Json(plan) => !plan_has_template(plan),
        };
        body_fixed && self.headers.iter().all(|(_, t)| matches!(t, Text::Fixed(_)))
    }

    fn render_fixed(&self) -> Option<MockResponse> {
        if !self.is_fixed() {
            return None;
        }
        let headers = self
            .headers
            .iter()
            .filter_map(|(k, t)| match t {
                Text::Fixed(v) => Some((k.clone().into(), v.clone().into())),
                Text::Template(_) => None,
            })
            .collect();
        let body = match &self.body {
            BodyPlan::Text(Text::Fixed(t)) => t.as_bytes().to_vec(),
            BodyPlan::Json(plan) => serde_json::to_vec(&fixed_json(plan)).unwrap_or_default(),
            BodyPlan::Text(Text::Template(_)) => return None,
        };
        Some(self.finish(headers, body))
    }

    fn finish(&self, mut headers: Vec<(HeaderText, HeaderText)>, body: Vec<u8>) -> MockResponse {
        if !body.is_empty() && !has_header(&headers, "content-type") {
            headers.push(("content-type".into(), self.content_type.into()));
        }
        MockResponse { status: self.status, headers, body: body.into() }
    }

    fn render(
        &self,
        templates: &Templates,
        ctx: &Context<'_, '_>,
    ) -> std::result::Result<MockResponse, (String, String)> {
        // The field is named only when rendering fails: formatting it up front cost more than
        // rendering a short template.
        let text = |t: &Text,
                    field: &dyn Fn() -> String|
         -> std::result::Result<String, (String, String)> {
            match t {
                Text::Fixed(s) => Ok(s.clone()),
                Text::Template(id) => templates.render_with(*id, ctx).map_err(|e| (field(), e)),
            }
        };
        // Room for what `finish` and `decorate` add (content type, cache control, ETag and a
        // base header or two) without growing the vector again.
        let mut headers = Vec::with_capacity(self.headers.len() + 5);
        for (name, value) in &self.headers {
            let rendered = text(value, &|| format!("{}.headers.{name}", self.field))?;
            // A rendered value must still be a valid header value; drop line breaks.
            let clean = if rendered.contains(char::is_control) {
                rendered.chars().filter(|c| !c.is_control()).collect()
            } else {
                rendered
            };
            headers.push((name.clone().into(), clean.into()));
        }
        let field = || format!("{}.body", self.field);
        let body = match &self.body {
            BodyPlan::Text(t) => text(t, &field)?.into_bytes(),
            BodyPlan::Json(_) if self.json_body.is_some() => {
                let segments = self.json_body.as_deref().unwrap_or_default();
                render_json_segments(segments, templates, ctx).map_err(|e| (field(), e))?
            }
            BodyPlan::Json(plan) => {
                let value = render_json(plan, templates, ctx).map_err(|e| (field(), e))?;
                serde_json::to_vec(&value).unwrap_or_default()
            }
        };
        Ok(self.finish(headers, body))
    }
}

fn plan_has_template(plan: &JsonPlan) -> bool {
    match plan {
        JsonPlan::Fixed(_) => false,
        JsonPlan::Template(_) => true,
        JsonPlan::Array(items) => items.iter().any(plan_has_template),
        JsonPlan::Object(entries) => entries.iter().any(|(_, p)| plan_has_template(p)),
    }
}

fn fixed_json(plan: &JsonPlan) -> Value {
    match plan {
        JsonPlan::Fixed(v) => v.clone(),
        JsonPlan::Template(_) => Value::Null,
        JsonPlan::Array(items) => Value::Array(items.iter().map(fixed_json).collect()),
        JsonPlan::Object(entries) => {
            Value::Object(entries.iter().map(|(k, p)| (k.clone(), fixed_json(p))).collect())
        }
    }
}

fn render_json(
    plan: &JsonPlan,
    templates: &Templates,
    ctx: &Context<'_, '_>,
) -> std::result::Result<Value, String> {
    Ok(match plan {
        JsonPlan::Fixed(v) => v.clone(),
        JsonPlan::Template(id) => Value::String(templates.render_with(*id, ctx)?),
        JsonPlan::Array(items) => Value::Array(
            items
                .iter()
                .map(|p| render_json(p, templates, ctx))
                .collect::<std::result::Result<_, _>>()?,
        ),
        JsonPlan::Object(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, p)| Ok((k.clone(), render_json(p, templates, ctx)?)))
                .collect::<std::result::Result<_, String>>()?,
        ),
    })
}

fn has_header<N: AsRef<str>, V>(headers: &[(N, V)], name: &str) -> bool {
    headers.iter().any(|(k, _)| k.as_ref().eq_ignore_ascii_case(name))
}

/// The seed of a rendering's own random choices: the request's seed, mixed (splitmix64's
/// finaliser), so that the two streams differ. Drawn from the seed rather than the stream:
/// the first draw computes a ChaCha block, which cost a templated answer as much as
/// rendering its template, and most templates draw nothing.
fn render_seed(rng: &ChaCha8Rng) -> u64 {
    let seed = rng.get_seed();
    let mut z = u64::from_le_bytes(seed[..8].try_into().unwrap_or_default())
        ^ u64::from_le_bytes(seed[8..16].try_into().unwrap_or_default())
        ^ 0x9e37_79b9_7f4a_7c15;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn sample_delay(delay: &Delay, rng: &mut ChaCha8Rng) -> u32 {
    let ms = match *delay {
        Delay::Fixed(ms) => f64::from(ms),
        Delay::Uniform { min_ms, max_ms } => f64::from(rng.random_range(min_ms..=max_ms)),
        Delay::Lognormal { median_ms, sigma } => {
            // Box–Muller: one standard normal draw from two uniforms in (0, 1].
            let u1: f64 = 1.0 - rng.random::<f64>();
            let u2: f64 = rng.random::<f64>();
            let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            f64::from(median_ms) * (sigma * z).exp()
        }
    };
    // Saturating float-to-int conversion; NaN becomes 0.
    (ms.round() as u32).min(MAX_DELAY_MS)
}

// ---------------------------------------------------------------------------------------
// The engine

/// A snapshot compiled for serving. Build one per snapshot version and share it.
#[derive(Debug)]
pub struct Engine {
    snapshot_version: u64,
    labels: ApiLabels,
    api_slug: String,
    endpoints: Vec<CompiledEndpoint>,
    /// Endpoints sharing one method and pattern, best first.
    groups: Vec<Vec<usize>>,
    by_method: BTreeMap<String, matchit::Router<usize>>,
    /// `None` when no endpoint takes any method (most APIs): their requests skip a lookup.
    any: Option<matchit::Router<usize>>,
    operations: Vec<CompiledOperation>,
    websockets: Vec<CompiledWebSocket>,
    ws_router: matchit::Router<usize>,
    templates: Templates,
    base_headers: Vec<(String, String)>,
    cors: Option<Cors>,
    default_delay: Option<Delay>,
    snapshot: Snapshot,
}

impl Engine {
    /// Compiles a snapshot: routers, conditions, schemas and templates, once. Fails with the
    /// offending field named (`endpoints[3].rules[0].when.regex`).
    pub fn from_snapshot(snapshot: Snapshot) -> Result<Self> {
        snapshot.api.validate().map_err(|e| e.within("api"))?;
        let mut compiler = Compiler { templates: Templates::new() };
        let mut endpoints = Vec::with_capacity(snapshot.endpoints.len());
        let mut group_of: HashMap<(String, String), usize> = HashMap::new();
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut by_method: BTreeMap<String, matchit::Router<usize>> = BTreeMap::new();
        let mut any: Option<matchit::Router<usize>> = None;
        for (i, e) in snapshot.endpoints.iter().enumerate() {
            let at = |err: Error| err.within(&format!("endpoints[{i}]"));
            let compiled = compiler.endpoint(&e.id, &e.definition).map_err(at)?;
            let pattern = normalize_pattern(&e.definition.path).map_err(at)?;
            let key = (e.definition.method.as_str().to_owned(), pattern.clone());
            if let Some(&g) = group_of.get(&key) {
                groups[g].push(i);
            } else {
                let g = groups.len();
                let router = match &e.definition.method {
                    MethodSpec::Any => any.get_or_insert_with(matchit::Router::new),
                    MethodSpec::Method(m) => by_method.entry(m.clone()).or_default(),
                };
                router.insert(pattern, g).map_err(|err| {
                    at(Error::new(
                        "path",
                        format!(
                            "'{}' {} conflicts with another endpoint: {err}",
                            e.definition.method, e.definition.path
                        ),
                    ))
                })?;
                group_of.insert(key, g);
                groups.push(vec![i]);
            }
            endpoints.push(compiled);
        }
        for group in &mut groups {
            // Stable: equal priorities keep definition order.
            group
                .sort_by_key(|&i| std::cmp::Reverse(endpoints[i].responder_priority(&snapshot, i)));
        }
        let mut operations = Vec::with_capacity(snapshot.graphql.len());
        for (i, op) in snapshot.graphql.iter().enumerate() {
            operations
                .push(compiler.operation(i, op).map_err(|e| e.within(&format!("graphql[{i}]")))?);
        }
        let mut order: Vec<usize> = (0..operations.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(snapshot.graphql[i].priority));
        let mut slots: Vec<Option<CompiledOperation>> = operations.into_iter().map(Some).collect();
        let operations = order.into_iter().filter_map(|i| slots[i].take()).collect();
        let mut websockets = Vec::with_capacity(snapshot.websockets.len());
        let mut ws_router = matchit::Router::new();
        for (i, ws) in snapshot.websockets.iter().enumerate() {
            let at = |e: Error| e.within(&format!("websockets[{i}]"));
            websockets.push(compiler.websocket(ws).map_err(at)?);
            let pattern = normalize_pattern(&ws.path).map_err(at)?;
            ws_router.insert(pattern, i).map_err(|err| {
                at(Error::new("path", format!("conflicts with another WebSocket mock: {err}")))
            })?;
        }
        let base_headers =
            snapshot.api.base_headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let labels = ApiLabels {
            api_id: Arc::from(snapshot.api.id.as_str()),
            api_slug: Arc::from(snapshot.api.slug.as_str()),
            workspace_id: Arc::from(snapshot.workspace.id.as_str()),
        };
        let mut engine = Self {
            snapshot_version: snapshot.version,
            labels,
            api_slug: snapshot.api.slug.clone(),
            endpoints,
            groups,
            by_method,
            any,
            operations,
            websockets,
            ws_router,
            templates: compiler.templates,
            base_headers,
            cors: snapshot.api.cors.clone(),
            default_delay: snapshot.api.default_delay.clone(),
            snapshot,
        };
        engine.prepare_fixed();
        Ok(engine)
    }

    /// Adds the API-wide headers to every pre-rendered response once, at compile time.
    fn prepare_fixed(&mut self) {
        let base = self.base_headers.clone();
        for e in &mut self.endpoints {
            let cache = e.cache;
            for resp in e.responder.responses_mut() {
                if let Some(fixed) = &mut resp.fixed {
                    decorate(fixed, &base, Some(&cache));
                }
            }
        }
        for op in &mut self.operations {
            for resp in op.responder.responses_mut() {
                if let Some(fixed) = &mut resp.fixed {
                    decorate(fixed, &base, None);
                }
            }
        }
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// The API's and workspace's ids and slug, shared: hosts label every request with them.
    pub fn labels(&self) -> &ApiLabels {
        &self.labels
    }

    pub fn version(&self) -> u64 {
        self.snapshot_version
    }

    /// The report of what answered a request ([`Outcome::matched`]); `None` for a
    /// [`MatchId`] of another engine that this one has no endpoint or operation for.
    pub fn matched(&self, id: MatchId) -> Option<&Matched> {
        let reports = match id.of {
            MatchOf::Endpoint(i) => &self.endpoints.get(i)?.matched,
            MatchOf::Operation(i) => &self.operations.get(i)?.matched,
        };
        Some(reports.get(id.rule))
    }

    /// Decides the answer to `request` (a path below `/mock/{apiSlug}`). `now_ms` is Unix
    /// time in milliseconds; `seed` decides every random choice (take it from a random
    /// source per request, or fix it to replay).
    pub fn handle(&self, request: &Request, now_ms: i64, seed: u64) -> Outcome {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut outcome = self.decide(request, now_ms, &mut rng);
        self.add_cors(request, &mut outcome.response);
        if request.method == "HEAD" {
            outcome.response.body.clear();
        }
        // Only a full 200 answer to a GET may be stored for others: never a 304 or a HEAD.
        if outcome.kind != OutcomeKind::Served
            || request.method != "GET"
            || outcome.response.status != 200
        {
            outcome.shared_cache_seconds = None;
        }
        outcome
    }

    fn decide(&self, request: &Request, now_ms: i64, rng: &mut ChaCha8Rng) -> Outcome {
        if let Some(preflight) = self.preflight(request) {
            return preflight;
        }
        let method = &*request.method;
        let (candidates, params) = self.candidates(method, &request.path);
        let view = RequestView::new(request, params);
        let Some(index) = candidates
            .iter()
            .copied()
            .find(|&i| self.endpoints[i].when.as_ref().is_none_or(|c| c.eval(&view)))
        else {
            if candidates.is_empty() {
                return self.no_route(request);
            }
            let near_misses = candidates
                .iter()
                .take(MAX_NEAR_MISSES)
                .map(|&i| {
                    let e = &self.endpoints[i];
                    let reason = e.when.as_ref().and_then(|c| c.explain(&view)).unwrap_or_default();
                    NearMiss {
                        endpoint_id: e.id.clone(),
                        method: e.method.to_string(),
                        path: e.path.clone(),
                        reasons: vec![reason],
                    }
                })
                .collect();
            return self.not_found(request, near_misses);
        };
        let endpoint = &self.endpoints[index];
        // The key holds the API version (a new definition must not replay old answers) and
        // who asked (a templated answer may quote the caller's credentials).
        let dedup_key = endpoint.dedup.then(|| {
            format!(
                "{}:{}:{}:{}",
                self.snapshot_version,
                endpoint.id,
                hashing::principal(request),
                hashing::request_hash(request)
            )
        });

        if let Some((validator, status)) = &endpoint.validator
            && let Some(errors) = validation_errors(validator, &view)
        {
            let mut outcome = Outcome::new(
                OutcomeKind::ValidationFailed,
                error_response(
                    *status,
                    "validation_failed",
                    "the request body does not match the endpoint's JSON Schema",
                    json!({ "errors": errors }),
                ),
            );
            outcome.matched = Some(MatchId { of: MatchOf::Endpoint(index), rule: None });
            return outcome;
        }

        if let Some(proxy) = &endpoint.proxy {
            let mut url = format!("{}{}", proxy.target.trim_end_matches('/'), request.path);
            if !request.query.is_empty() {
                url.push('?');
                url.push_str(&request.query);
            }
            let mut outcome = Outcome::new(OutcomeKind::Proxy, MockResponse::empty(502));
            outcome.proxy = Some(ProxyDirective {
                url,
                headers: proxy.headers.clone(),
                timeout_ms: proxy.timeout_ms,
                forward_authorization: proxy.forward_authorization,
                forward_cookies: proxy.forward_cookies,
            });
            outcome.delay_ms = self.delay_for(&endpoint.responder, None, rng);
            outcome.matched = Some(MatchId { of: MatchOf::Endpoint(index), rule: None });
            outcome.dedup_key = dedup_key;
            return outcome;
        }

        let (mut outcome, rule) =
            self.respond(&endpoint.responder, Some(&endpoint.cache), &view, now_ms, rng);
        if outcome.kind == OutcomeKind::Served {
            if endpoint.responder.is_constant()
                && endpoint.cache.mode == CacheMode::Public
                && endpoint.cache.max_age_seconds > 0
            {
                outcome.shared_cache_seconds = Some(endpoint.cache.max_age_seconds);
            }
            conditional(request, &mut outcome);
        }
        outcome.matched = Some(MatchId { of: MatchOf::Endpoint(index), rule });
        outcome.dedup_key = dedup_key;
        outcome
    }

    /// Chooses and renders a response: fault, then rules, then selection.
    fn respond(
        &self,
        responder: &Responder,
        cache: Option<&CacheSettings>,
        view: &RequestView<'_>,
        now_ms: i64,
        rng: &mut ChaCha8Rng,
    ) -> (Outcome, Option<usize>) {
        if let Some(fault) = &responder.fault
            && rng.random::<f64>() * 100.0 < fault.percent
        {
            let mut outcome = match fault.kind {
                FaultKind::Status => {
                    let (body, ct) = match &fault.body {
                        Some(Body::Json(v)) => (serde_json::to_vec(v).unwrap_or_default(), "application/json"),
                        Some(Body::Text(t)) => (t.clone().into_bytes(), "text/plain; charset=utf-8"),
                        None => (
                            serde_json::to_vec(&json!({"error": {"code": "injected_fault", "message": "fault injected by the mock's definition"}}))
                                .unwrap_or_default(),
                            "application/json",
                        ),
                    };
                    Outcome::new(
                        OutcomeKind::Fault,
                        MockResponse {
                            status: fault.status,
                            headers: vec![("content-type".into(), ct.into())],
                            body: body.into(),
                        },
                    )
                }
                FaultKind::EmptyResponse => {
                    Outcome::new(OutcomeKind::Fault, MockResponse::empty(200))
                }
                FaultKind::ConnectionClose => {
                    let mut o = Outcome::new(OutcomeKind::Fault, MockResponse::empty(502));
                    o.close_connection = true;
                    o
                }
            };
            outcome.delay_ms = self.delay_for(responder, None, rng);
            return (outcome, None);
        }
        let (response, rule) = match responder.rules.iter().position(|r| r.when.eval(view)) {
            Some(i) => {
                let response = match &responder.rules[i].target {
                    RuleTarget::Alternative(i) => &responder.alternatives[*i],
                    RuleTarget::Inline(r) => r.as_ref(),
                };
                (response, Some(i))
            }
            None => (self.select(responder, rng), None),
        };
        let delay_ms = self.delay_for(responder, Some(response), rng);
        // Pre-rendered responses already carry the API's headers, cache headers and ETag.
        let rendered = match &response.fixed {
            Some(fixed) => Ok(fixed.clone()),
            None => {
                let input =
                    RenderInput { request: view, now_ms, seed: render_seed(rng), message: None };
                let context = Context::with_fields(&input, response.fields);
                response.render(&self.templates, &context).map(|mut r| {
                    decorate(&mut r, &self.base_headers, cache);
                    r
                })
            }
        };
        let mut outcome = match rendered {
            Ok(r) => Outcome::new(OutcomeKind::Served, r),
            Err((field, message)) => Outcome::new(
                OutcomeKind::TemplateError,
                error_response(
                    500,
                    "template_error",
                    &format!("the mock's template at {field} failed: {message}"),
                    json!({ "field": field }),
                ),
            ),
        };
        outcome.delay_ms = delay_ms;
        (outcome, rule)
    }

    fn select<'a>(&self, responder: &'a Responder, rng: &mut ChaCha8Rng) -> &'a CompiledResponse {
        let alts = &responder.alternatives;
        match responder.selection {
            Selection::Default => &responder.default,
            _ if alts.is_empty() => &responder.default,
            Selection::Sequential => {
                let n = responder.sequence.fetch_add(1, Ordering::Relaxed);
                &alts[(n % alts.len() as u64) as usize]
            }
            Selection::Random => &alts[rng.random_range(0..alts.len())],
            Selection::Weighted => {
                let total: u64 = alts.iter().map(|r| u64::from(r.weight)).sum();
                let mut pick = rng.random_range(0..total.max(1));
                alts.iter()
                    .find(|r| {
                        let w = u64::from(r.weight);
                        if pick < w {
                            true
                        } else {
                            pick -= w;
                            false
                        }
                    })
                    .unwrap_or(&responder.default)
            }
        }
    }

    fn delay_for(
        &self,
        responder: &Responder,
        response: Option<&CompiledResponse>,
        rng: &mut ChaCha8Rng,
    ) -> u32 {
        let delay = response
            .and_then(|r| r.delay.as_ref())
            .or(responder.delay.as_ref())
            .or(self.default_delay.as_ref());
        delay.map_or(0, |d| sample_delay(d, rng))
    }

    /// Endpoints whose method and pattern match, best first, with the captured parameters.
    fn candidates<'a>(
        &'a self,
        method: &str,
        path: &'a str,
    ) -> (std::borrow::Cow<'a, [usize]>, Params<'a>) {
        let lookup = |router: &'a matchit::Router<usize>| {
            router.at(path).ok().map(|m| (*m.value, decode_params(&m.params)))
        };
        let exact = self.by_method.get(method).and_then(lookup).or_else(|| {
            // HEAD is answered by GET endpoints, as HTTP servers do.
            (method == "HEAD").then(|| self.by_method.get("GET").and_then(lookup)).flatten()
        });
        let any = self.any.as_ref().and_then(lookup);
        match (exact, any) {
            (Some((g, p)), Some((h, q))) => {
                let mut out = Vec::new();
                // Merge by priority; an exact method wins ties over ANY.
                let (a, b) = (&self.groups[g], &self.groups[h]);
                let (mut i, mut j) = (0, 0);
                while i < a.len() || j < b.len() {
                    let take_a =
                        j >= b.len() || (i < a.len() && self.priority(a[i]) >= self.priority(b[j]));
                    if take_a {
                        out.push(a[i]);
                        i += 1;
                    } else {
                        out.push(b[j]);
                        j += 1;
                    }
                }
                // Parameters of the best match; both patterns rarely capture differently.
                let params = if out.first() == a.first() { p } else { q };
                (out.into(), params)
            }
            // One group (nearly always): borrowed as the engine holds it.
            (Some((g, p)), None) | (None, Some((g, p))) => (self.groups[g].as_slice().into(), p),
            (None, None) => (Vec::new().into(), Params::new()),
        }
    }

    fn priority(&self, endpoint: usize) -> i32 {
        self.snapshot.endpoints[endpoint].definition.priority
    }

    fn preflight(&self, request: &Request) -> Option<Outcome> {
        let cors = self.cors.as_ref()?;
        let view = RequestView::new(request, vec![]);
        if request.method != "OPTIONS" || view.header("access-control-request-method").is_none() {
            return None;
        }
        // An endpoint defined for OPTIONS itself answers instead.
        if self.by_method.get("OPTIONS").is_some_and(|r| r.at(&request.path).is_ok()) {
            return None;
        }
        let mut response = MockResponse::empty(204);
        let methods = if cors.allow_methods.is_empty() {
            view.header("access-control-request-method").unwrap_or_default().to_owned()
        } else {
            cors.allow_methods.join(", ")
        };
        response.headers.push(("access-control-allow-methods".into(), methods.into()));
        let headers = if cors.allow_headers.is_empty() {
            view.header("access-control-request-headers").map(str::to_owned)
        } else {
            Some(cors.allow_headers.join(", "))
        };
        if let Some(h) = headers {
            response.headers.push(("access-control-allow-headers".into(), h.into()));
        }
        response
            .headers
            .push(("access-control-max-age".into(), cors.max_age_seconds.to_string().into()));
        Some(Outcome::new(OutcomeKind::Preflight, response))
    }

    fn add_cors(&self, request: &Request, response: &mut MockResponse) {
        let Some(cors) = &self.cors else { return };
        let any = cors.allow_origins.iter().any(|o| o == "*");
        // The answer depends on Origin whenever origins are listed, even when this request
        // sent none: caches must not hand it to another origin.
        if (!any || cors.allow_credentials) && !has_header(&response.headers, "vary") {
            response.headers.push(("vary".into(), "Origin".into()));
        }
        let view = RequestView::new(request, vec![]);
        let Some(origin) = view.header("origin") else { return };
        let allowed = any || cors.allow_origins.iter().any(|o| o == origin);
        if !allowed || has_header(&response.headers, "access-control-allow-origin") {
            return;
        }
        // With credentials, `*` is not allowed by browsers: echo the origin instead.
        let value = if any && !cors.allow_credentials { "*" } else { origin };
        response.headers.push(("access-control-allow-origin".into(), value.to_owned().into()));
        if cors.allow_credentials {
            response.headers.push(("access-control-allow-credentials".into(), "true".into()));
        }
        if !cors.expose_headers.is_empty() {
            response.headers.push((
                "access-control-expose-headers".into(),
                cors.expose_headers.join(", ").into(),
            ));
        }
    }

    /// No endpoint's method and pattern match: 405 when the path exists for other methods,
    /// otherwise 404 with the closest endpoints.
    fn no_route(&self, request: &Request) -> Outcome {
        let allowed: Vec<String> = self
            .by_method
            .iter()
            .filter(|(_, router)| router.at(&request.path).is_ok())
            .map(|(m, _)| m.clone())
            .collect();
        if !allowed.is_empty() {
            let mut response = error_response(
                405,
                "method_not_allowed",
                &format!(
                    "API '{}' has no {} endpoint for {}; it answers {}",
                    self.api_slug,
                    request.method,
                    request.path,
                    allowed.join(", ")
                ),
                json!({ "api": self.api_slug, "method": request.method, "path": request.path, "allowed": allowed }),
            );
            response.headers.push(("allow".into(), allowed.join(", ").into()));
            return Outcome::new(OutcomeKind::MethodNotAllowed, response);
        }
        let near = self.nearest(request);
        self.not_found(request, near)
    }

    fn not_found(&self, request: &Request, near_misses: Vec<NearMiss>) -> Outcome {
        let response = error_response(
            404,
            "route_not_found",
            &format!(
                "API '{}' has no endpoint matching {} {}",
                self.api_slug, request.method, request.path
            ),
            json!({
                "api": self.api_slug,
                "method": request.method,
                "path": request.path,
                "near_misses": near_misses,
            }),
        );
        let mut outcome = Outcome::new(OutcomeKind::NotFound, response);
        outcome.near_misses = near_misses;
        outcome
    }

    /// The endpoints closest to a request that routed nowhere, by a segment-wise distance.
    /// Linear in the endpoint count, but only on the 404 path, and cheap per endpoint.
    fn nearest(&self, request: &Request) -> Vec<NearMiss> {
        let path: Vec<&str> = request.path.split('/').skip(1).collect();
        let mut scored: Vec<(usize, usize, Vec<String>)> = Vec::new();
        for (i, e) in self.endpoints.iter().enumerate() {
            let (mut distance, mut reasons) = path_distance(&e.segments, &path);
            if let MethodSpec::Method(m) = &e.method
                && *m != request.method
            {
                distance += 1;
                reasons.push(format!("method: the endpoint answers {m}, not {}", request.method));
            }
            // Worth showing only if about half the path agrees or better (a differing
            // segment weighs 2, a case-only difference, a trailing '/' or the method 1).
            if distance <= path.len().max(e.segments.len()).max(2) {
                scored.push((distance, i, reasons));
            }
        }
        scored.sort_by_key(|(d, i, _)| (*d, *i));
        scored
            .into_iter()
            .take(MAX_NEAR_MISSES)
            .map(|(_, i, reasons)| {
                let e = &self.endpoints[i];
                NearMiss {
                    endpoint_id: e.id.clone(),
                    method: e.method.to_string(),
                    path: e.path.clone(),
                    reasons,
                }
            })
            .collect()
    }

    // ---- GraphQL ----

    /// Decides the answer to a GraphQL request (`/mock-graphql/{apiSlug}`): the operation is
    /// matched by type and name, then by `when` (usually on variables); the answer has
    /// GraphQL's response shape.
    pub fn handle_graphql(&self, request: &Request, now_ms: i64, seed: u64) -> Outcome {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let gql = match graphql::read_request(request).and_then(|r| {
            let op = graphql::select_operation(&r)?;
            Ok((r, op))
        }) {
            Ok(ok) => ok,
            Err(message) => {
                return Outcome::new(
                    OutcomeKind::BadRequest,
                    json_response(400, &json!({ "errors": [{ "message": message }] })),
                );
            }
        };
        let (gql, op) = gql;
        let mut view = RequestView::new(request, vec![]);
        view.variables = Some(gql.variables);
        let name = op.name.clone().unwrap_or_default();
        let mut tried = Vec::new();
        for (at, candidate) in self.operations.iter().enumerate() {
            if candidate.operation_type != op.operation_type
                || !(candidate.name == "*" || candidate.name == name)
            {
                continue;
            }
            if let Some(reason) = candidate.when.as_ref().and_then(|c| c.explain(&view)) {
                tried.push(NearMiss {
                    endpoint_id: format!("graphql[{}]", candidate.index),
                    method: candidate.operation_type.as_str().to_owned(),
                    path: candidate.name.clone(),
                    reasons: vec![reason],
                });
                continue;
            }
            let (mut outcome, rule) =
                self.respond(&candidate.responder, None, &view, now_ms, &mut rng);
            outcome.matched = Some(MatchId { of: MatchOf::Operation(at), rule });
            self.add_cors(request, &mut outcome.response);
            return outcome;
        }
        let label = op.name.as_deref().unwrap_or("(anonymous)");
        let message = format!(
            "edgemock: API '{}' has no mock for {} {label}",
            self.api_slug,
            op.operation_type.as_str()
        );
        let mut outcome = Outcome::new(
            OutcomeKind::NotFound,
            json_response(
                404,
                &json!({ "errors": [{ "message": message, "extensions": { "code": "MOCK_NOT_FOUND", "near_misses": tried } }] }),
            ),
        );
        outcome.near_misses = tried;
        self.add_cors(request, &mut outcome.response);
        outcome
    }

    // ---- WebSocket ----

    /// The WebSocket mock at `path` (below `/ws/{apiSlug}`), if any.
    pub fn websocket(&self, path: &str) -> Option<usize> {
        self.ws_router.at(path).ok().map(|m| *m.value)
    }

    /// The pattern of WebSocket mock `ws`, for logs and analytics.
    pub fn websocket_pattern(&self, ws: usize) -> &str {
        &self.websockets[ws].path
    }

    /// Messages to send when a connection opens.
    pub fn ws_on_connect(
        &self,
        ws: usize,
        handshake: &Request,
        now_ms: i64,
        seed: u64,
    ) -> Vec<WsSend> {
        let view = self.ws_view(ws, handshake);
        self.ws_render(&self.websockets[ws].on_connect, &view, None, now_ms, seed)
    }

    /// The repeating messages of WebSocket mock `ws`.
    pub fn ws_intervals(&self, ws: usize) -> Vec<WsIntervalInfo> {
        self.websockets[ws]
            .intervals
            .iter()
            .enumerate()
            .map(|(index, (every_ms, max_count, _))| WsIntervalInfo {
                index,
                every_ms: *every_ms,
                max_count: *max_count,
            })
            .collect()
    }

    /// Renders repeating message `index` for one tick.
    pub fn ws_interval_message(
        &self,
        ws: usize,
        index: usize,
        handshake: &Request,
        now_ms: i64,
        seed: u64,
    ) -> Option<WsSend> {
        let (_, _, message) = self.websockets[ws].intervals.get(index)?;
        let view = self.ws_view(ws, handshake);
        self.ws_render(std::slice::from_ref(message), &view, None, now_ms, seed).pop()
    }

    /// Replies to a received text message: the messages of the first reply whose `when`
    /// holds (conditions read the message as the body).
    pub fn ws_reply(
        &self,
        ws: usize,
        handshake: &Request,
        message: &str,
        now_ms: i64,
        seed: u64,
    ) -> Vec<WsSend> {
        let mut as_request = handshake.clone();
        as_request.body = message.as_bytes().to_vec();
        let view = self.ws_view(ws, &as_request);
        let Some((_, send)) = self.websockets[ws].replies.iter().find(|(when, _)| when.eval(&view))
        else {
            return Vec::new();
        };
        self.ws_render(send, &view, Some(message), now_ms, seed)
    }

    fn ws_view<'r>(&'r self, ws: usize, request: &'r Request) -> RequestView<'r> {
        let params = self
            .ws_router
            .at(&request.path)
            .ok()
            .filter(|m| *m.value == ws)
            .map(|m| decode_params(&m.params))
            .unwrap_or_default();
        RequestView::new(request, params)
    }

    fn ws_render(
        &self,
        messages: &[CompiledMessage],
        view: &RequestView<'_>,
        message: Option<&str>,
        now_ms: i64,
        seed: u64,
    ) -> Vec<WsSend> {
        let input = RenderInput { request: view, now_ms, seed, message };
        let ctx = Context::new(&input);
        messages
            .iter()
            .map(|m| {
                let text = match &m.data {
                    BodyPlan::Text(Text::Fixed(t)) => Ok(t.clone()),
                    BodyPlan::Text(Text::Template(id)) => self.templates.render_with(*id, &ctx),
                    BodyPlan::Json(plan) => {
                        render_json(plan, &self.templates, &ctx).map(|v| v.to_string())
                    }
                };
                let text = text.unwrap_or_else(|e| {
                    json!({ "error": { "code": "template_error", "message": e } }).to_string()
                });
                WsSend { text, delay_ms: m.delay_ms }
            })
            .collect()
    }
}

impl CompiledEndpoint {
    fn responder_priority(&self, snapshot: &Snapshot, index: usize) -> i32 {
        snapshot.endpoints[index].definition.priority
    }
}

/// Adds API base headers, `Cache-Control` and the `ETag` unless the response sets them.
fn decorate(response: &mut MockResponse, base: &[(String, String)], cache: Option<&CacheSettings>) {
    for (k, v) in base {
        if !has_header(&response.headers, k) {
            response.headers.push((k.clone().into(), v.clone().into()));
        }
    }
    if let Some(cache) = cache
        && !has_header(&response.headers, "cache-control")
    {
        response.headers.push(("cache-control".into(), http_cache::cache_control(cache)));
    }
    if !has_header(&response.headers, "etag") {
        let tag = http_cache::etag(&response.body);
        response.headers.push(("etag".into(), tag.into()));
    }
}

/// Turns a served response into a 304 when `If-None-Match` matches its ETag.
fn conditional(request: &Request, outcome: &mut Outcome) {
    let r = &outcome.response;
    if !matches!(&*request.method, "GET" | "HEAD") || !(200..300).contains(&r.status) {
        return;
    }
    let view = RequestView::new(request, vec![]);
    let (Some(header), Some(etag)) = (
        view.header("if-none-match"),
        r.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("etag")).map(|(_, v)| v.as_ref()),
    ) else {
        return;
    };
    if !http_cache::if_none_match(header, etag) {
        return;
    }
    // RFC 9110 §15.4.5: a 304 carries the validators and caching headers, no content.
    let keep = ["etag", "cache-control", "vary", "expires", "content-location", "date"];
    let headers = r
        .headers
        .iter()
        .filter(|(k, _)| keep.iter().any(|h| k.eq_ignore_ascii_case(h)))
        .cloned()
        .collect();
    outcome.response = MockResponse { status: 304, headers, body: bytes::Bytes::new() };
    outcome.kind = OutcomeKind::NotModified;
}

/// Every schema error, located by JSON Pointer into the body; `None` when the body is valid.
fn validation_errors(
    validator: &jsonschema::Validator,
    view: &RequestView<'_>,
) -> Option<Vec<Value>> {
    let Some(body) = view.json() else {
        let why = if view.request.body.is_empty() {
            "the request has no body"
        } else {
            "the body is not JSON (or nests too deeply)"
        };
        return Some(vec![json!({ "path": "", "message": why })]);
    };
    let errors: Vec<Value> = validator
        .iter_errors(body)
        .take(MAX_VALIDATION_ERRORS)
        .map(|e| json!({ "path": e.instance_path().to_string(), "message": e.to_string() }))
        .collect();
    (!errors.is_empty()).then_some(errors)
}

/// Captured path parameters: names as the router holds them, values percent-decoded (a
/// value without escapes is borrowed from the path, not copied).
fn decode_params<'a>(params: &matchit::Params<'a, 'a>) -> Params<'a> {
    params
        .iter()
        .map(|(k, v)| (k, percent_encoding::percent_decode_str(v).decode_utf8_lossy()))
        .collect()
}

/// How far a request path is from a pattern, with the reasons in words.
fn path_distance(pattern: &[Segment], path: &[&str]) -> (usize, Vec<String>) {
    let mut distance = 0;
    let mut reasons = Vec::new();
    for (i, seg) in pattern.iter().enumerate() {
        match (seg, path.get(i)) {
            (Segment::Rest, _) => return (distance, reasons),
            (_, None) => {
                distance += 2 * (pattern.len() - i);
                reasons.push(format!(
                    "path: the endpoint has {} segments, the request {}",
                    pattern.len(),
                    path.len()
                ));
                return (distance, reasons);
            }
            (Segment::Param(_), Some(_)) => {}
            (Segment::Literal(want), Some(got)) if want == got => {}
            (Segment::Literal(want), Some(got)) => {
                // A case-only difference is the likeliest typo: it weighs half.
                let case_only = want.eq_ignore_ascii_case(got);
                distance += if case_only { 1 } else { 2 };
                let hint = if case_only { " (only the case differs)" } else { "" };
                reasons.push(format!(
                    "path: segment {} is '{got}', the endpoint expects '{want}'{hint}",
                    i + 1
                ));
            }
        }
    }
    if path.len() > pattern.len() {
        let trailing_slash = path.len() == pattern.len() + 1 && path.last() == Some(&"");
        distance += if trailing_slash { 1 } else { 2 * (path.len() - pattern.len()) };
        let extra = if trailing_slash {
            "path: the request has a trailing '/' the endpoint does not".to_owned()
        } else {
            format!("path: the endpoint has {} segments, the request {}", pattern.len(), path.len())
        };
        reasons.push(extra);
    }
    (distance, reasons)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A templated JSON body renders through its segments to exactly the bytes of the body
    /// rendered as a value and serialized.
    #[test]
    fn json_segments_serialize_as_the_rendered_value() {
        let body = json!({
            "id": "{{ request.params.id }}",
            "quote": "she said \"{{ request.query.q }}\"\n",
            "n": 1.5e300, "neg": -0.0, "big": 18446744073709551615_u64, "none": null, "t": true,
            "nested": {"z": ["{{ request.method }}", 2, {"a": "x{{ request.path }}y", "é\u{1}": []}], "a": {}},
            "list": [[], [[]], "{{ request.headers['x-h'] }}"],
            "unicode": "\u{1f600} {{ request.query.u }}",
        });
        let mut compiler = Compiler { templates: Templates::new() };
        let plan = compiler.json_plan("body", &body).unwrap();
        let segments = json_segments(&plan);
        let request = crate::request::Request {
            method: "GET".into(),
            path: "/p/\"q\"".into(),
            query: "q=%22hi%22%5C&u=%E2%9C%93%0A".into(),
            headers: vec![("X-H".into(), "tab\there".into())],
            body: Vec::new(),
        };
        let view = RequestView::new(&request, vec![("id", "7\u{7f}<".into())]);
        let input = RenderInput { request: &view, now_ms: 0, seed: 1, message: None };
        let ctx = Context::new(&input);
        let want =
            serde_json::to_vec(&render_json(&plan, &compiler.templates, &ctx).unwrap()).unwrap();
        let got = render_json_segments(&segments, &compiler.templates, &ctx).unwrap();
        assert_eq!(String::from_utf8(got).unwrap(), String::from_utf8(want).unwrap());
    }

    fn snapshot(endpoints: Value, extra: Value) -> Snapshot {
        let endpoints: Vec<Value> = endpoints
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let mut e = e.clone();
                e["id"] = json!(format!("e{i}"));
                e
            })
            .collect();
        let mut doc = json!({
            "format_version": 1,
            "version": 1,
            "workspace": {"id": "w", "slug": "w"},
            "api": {"id": "a", "slug": "shop", "name": "Shop"},
            "endpoints": endpoints,
        });
        if let (Value::Object(d), Value::Object(x)) = (&mut doc, extra) {
            for (k, v) in x {
                if k == "api" {
                    d["api"].as_object_mut().unwrap().extend(v.as_object().unwrap().clone());
                } else {
                    d.insert(k, v);
                }
            }
        }
        serde_json::from_value(doc).unwrap()
    }

    fn engine(endpoints: Value) -> Engine {
        Engine::from_snapshot(snapshot(endpoints, json!({}))).unwrap()
    }

    fn req<'a>(method: &'a str, target: &'a str) -> Request<'a> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Request {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            ..Default::default()
        }
    }

    fn with<'a>(mut r: Request<'a>, headers: &[(&str, &str)], body: &str) -> Request<'a> {
        r.headers =
            headers.iter().map(|(k, v)| ((*k).to_owned().into(), (*v).to_owned().into())).collect();
        r.body = body.as_bytes().to_vec();
        r
    }

    fn header<'a>(o: &'a Outcome, name: &str) -> Option<&'a str> {
        o.response
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }

    fn body(o: &Outcome) -> String {
        String::from_utf8(o.response.body.to_vec()).unwrap()
    }

    fn body_json(o: &Outcome) -> Value {
        serde_json::from_slice(&o.response.body).unwrap()
    }

    /// `status body` of the outcome, for table-driven checks.
    fn brief(o: &Outcome) -> String {
        format!("{} {}", o.response.status, body(o))
    }

    #[test]
    fn routes_methods_params_and_wildcards() {
        let e = engine(json!([
            {"method": "GET", "path": "/users", "response": {"body": "list"}},
            {"method": "GET", "path": "/users/:id", "response": {"body": "one {{ request.params.id }}"}},
            {"method": "GET", "path": "/users/me", "response": {"body": "me"}},
            {"method": "POST", "path": "/users", "response": {"status": 201, "body": "created"}},
            {"method": "ANY", "path": "/echo/*", "response": {"body": "echo {{ request.params.wildcard }}"}},
            {"method": "DELETE", "path": "/echo/special", "response": {"body": "del"}},
        ]));
        let cases = [
            ("GET", "/users", "200 list"),
            ("GET", "/users/42", "200 one 42"),
            ("GET", "/users/J%C3%B6rg", "200 one Jörg"),
            ("GET", "/users/me", "200 me"),
            ("POST", "/users", "201 created"),
            ("HEAD", "/users", "200 "),
            ("PATCH", "/echo/a/b/c", "200 echo a/b/c"),
            ("DELETE", "/echo/special", "200 del"),
            ("GET", "/echo/special", "200 echo special"),
        ];
        for (method, path, want) in cases {
            assert_eq!(brief(&e.handle(&req(method, path), 0, 1)), want, "{method} {path}");
        }
        let o = e.handle(&req("PUT", "/users"), 0, 1);
        assert_eq!(
            (o.kind, o.response.status, header(&o, "allow")),
            (OutcomeKind::MethodNotAllowed, 405, Some("GET, POST"))
        );
        let o = e.handle(&req("GET", "/users/42"), 0, 1);
        let m = e.matched(o.matched.unwrap()).unwrap();
        assert_eq!((&*m.endpoint_id, &*m.method, &*m.pattern), ("e1", "GET", "/users/:id"));
        // Another engine's id names nothing here.
        assert!(engine(json!([])).matched(o.matched.unwrap()).is_none());
    }

    #[test]
    fn near_misses_say_what_to_fix() {
        let e = engine(json!([
            {"method": "GET", "path": "/users/:id/orders", "response": {}},
            {"method": "POST", "path": "/carts", "response": {}},
            {"method": "GET", "path": "/products", "when": {"header": "x-tenant", "exists": true}, "response": {}},
        ]));
        let reasons = |o: &Outcome| -> Vec<String> { o.near_misses[0].reasons.clone() };
        let o = e.handle(&req("GET", "/users/1/order"), 0, 1);
        assert_eq!(o.kind, OutcomeKind::NotFound);
        assert_eq!(o.near_misses[0].endpoint_id, "e0");
        assert_eq!(reasons(&o), ["path: segment 3 is 'order', the endpoint expects 'orders'"]);
        let o = e.handle(&req("GET", "/Carts"), 0, 1);
        assert_eq!(
            reasons(&o),
            [
                "path: segment 1 is 'Carts', the endpoint expects 'carts' (only the case differs)",
                "method: the endpoint answers POST, not GET"
            ]
        );
        let o = e.handle(&req("GET", "/users/1/orders/"), 0, 1);
        assert_eq!(reasons(&o), ["path: the request has a trailing '/' the endpoint does not"]);
        let o = e.handle(&req("GET", "/products"), 0, 1);
        assert_eq!(reasons(&o), ["expected header 'x-tenant' to be present; it is absent"]);
        let b = body_json(&o);
        assert_eq!(b["error"]["code"], "route_not_found");
        assert_eq!(b["error"]["near_misses"][0]["path"], "/products");
        assert!(e.handle(&req("GET", "/nothing/like/this/at/all"), 0, 1).near_misses.is_empty());
    }

    #[test]
    fn endpoint_priority_and_when() {
        let e = engine(json!([
            {"method": "GET", "path": "/items", "response": {"body": "plain"}},
            {"method": "GET", "path": "/items", "priority": 10, "when": {"header": "x-beta", "equals": "1"}, "response": {"body": "beta"}},
            {"method": "ANY", "path": "/items", "priority": 5, "when": {"query": "any", "exists": true}, "response": {"body": "any"}},
        ]));
        assert_eq!(body(&e.handle(&req("GET", "/items"), 0, 1)), "plain");
        assert_eq!(
            body(&e.handle(&with(req("GET", "/items"), &[("X-Beta", "1")], ""), 0, 1)),
            "beta"
        );
        assert_eq!(body(&e.handle(&req("GET", "/items?any"), 0, 1)), "any");
        assert_eq!(body(&e.handle(&req("POST", "/items?any"), 0, 1)), "any");
        assert_eq!(e.handle(&req("POST", "/items"), 0, 1).kind, OutcomeKind::NotFound);
    }

    #[test]
    fn rules_then_selection() {
        let e = engine(json!([{
            "method": "POST", "path": "/login",
            "response": {"status": 401, "body": "default"},
            "responses": [{"name": "ok", "body": "welcome"}, {"name": "locked", "status": 423, "body": "locked"}],
            "rules": [
                {"when": {"body": "/user", "equals": "ada"}, "response": "ok"},
                {"when": {"body": "/user", "equals": "bob"}, "response": 1},
                {"name": "vip", "priority": 5, "when": {"body": "/vip", "equals": true}, "response": {"status": 202, "body": "vip {{ request.json.user }}"}},
            ]
        }]));
        let login = |b: &str| e.handle(&with(req("POST", "/login"), &[], b), 0, 1);
        let rule = |o: Outcome| e.matched(o.matched.unwrap()).unwrap().rule.clone();
        assert_eq!(brief(&login(r#"{"user": "ada"}"#)), "200 welcome");
        assert_eq!(brief(&login(r#"{"user": "bob"}"#)), "423 locked");
        assert_eq!(brief(&login(r#"{"user": "ada", "vip": true}"#)), "202 vip ada");
        assert_eq!(rule(login(r#"{"user": "ada", "vip": true}"#)).as_deref(), Some("vip"));
        assert_eq!(rule(login(r#"{"user": "ada"}"#)).as_deref(), Some("rules[0]"));
        assert_eq!(brief(&login(r#"{"user": "eve"}"#)), "401 default");
    }

    #[test]
    fn sequential_random_and_weighted() {
        let seq = engine(json!([{"method": "GET", "path": "/", "selection": "sequential",
            "responses": [{"body": "a"}, {"body": "b"}, {"body": "c"}]}]));
        let got: Vec<String> = (0..5).map(|s| body(&seq.handle(&req("GET", "/"), 0, s))).collect();
        assert_eq!(got, ["a", "b", "c", "a", "b"]);

        let random = engine(json!([{"method": "GET", "path": "/", "selection": "random",
            "responses": [{"body": "a"}, {"body": "b"}, {"body": "c"}]}]));
        let pick = |seed| body(&random.handle(&req("GET", "/"), 0, seed));
        assert_eq!(pick(7), pick(7), "the seed decides");
        let seen: std::collections::BTreeSet<String> = (0..50).map(pick).collect();
        assert_eq!(seen.len(), 3);

        let weighted = engine(json!([{"method": "GET", "path": "/", "selection": "weighted",
            "responses": [{"body": "never", "weight": 0}, {"body": "rare", "weight": 1}, {"body": "often", "weight": 9}]}]));
        let mut counts = BTreeMap::new();
        for seed in 0..2000 {
            *counts.entry(body(&weighted.handle(&req("GET", "/"), 0, seed))).or_insert(0) += 1;
        }
        assert_eq!(counts.get("never"), None);
        let often = counts["often"];
        assert!((1700..1900).contains(&often), "{counts:?}");
    }

    #[test]
    fn validates_request_bodies() {
        let e = engine(json!([
            {"method": "POST", "path": "/users", "response": {"status": 201},
             "validation": {"schema": {
                "type": "object", "required": ["name", "email"],
                "properties": {"name": {"type": "string", "minLength": 2}, "email": {"type": "string", "format": "email"},
                               "code": {"type": "string", "pattern": "^[A-Z]{3}$"}}}}},
            {"method": "PUT", "path": "/users", "response": {}, "validation": {"status": 422, "schema": {"type": "array"}}},
        ]));
        let post = |b: &str| {
            e.handle(&with(req("POST", "/users"), &[("content-type", "application/json")], b), 0, 1)
        };
        assert_eq!(
            post(r#"{"name": "Ada", "email": "ada@example.com", "code": "ABC"}"#).response.status,
            201
        );
        let o = post(r#"{"name": "A", "email": "not-an-email", "code": "abcd"}"#);
        assert_eq!((o.kind, o.response.status), (OutcomeKind::ValidationFailed, 400));
        let b = body_json(&o);
        let paths: Vec<&str> = b["error"]["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["path"].as_str().unwrap())
            .collect();
        assert_eq!(paths.len(), 3, "{b}");
        for p in ["/name", "/email", "/code"] {
            assert!(paths.contains(&p), "{p} in {paths:?}");
        }
        let o = post("{}");
        assert_eq!(body_json(&o)["error"]["errors"].as_array().unwrap().len(), 2);
        assert!(body(&post("not json")).contains("not JSON"));
        assert!(body(&post("")).contains("no body"));
        let o = e.handle(&with(req("PUT", "/users"), &[], "{}"), 0, 1);
        assert_eq!(o.response.status, 422);
    }

    #[test]
    fn templates_in_bodies_and_headers() {
        let e = engine(json!([{
            "method": "GET", "path": "/orders/:id",
            "response": {
                "headers": {"x-order": "{{ request.params.id }}", "x-static": "s"},
                "body": {"id": "{{ request.params.id }}", "at": "{{ now('yyyy-MM-dd') }}", "n": 5, "tags": ["{{ request.query.tag }}", "fixed"], "literal": "no template"}
            }
        }]));
        let o = e.handle(&req("GET", "/orders/7?tag=x"), 1_709_208_000_000, 1);
        assert_eq!(
            body_json(&o),
            json!({"id": "7", "at": "2024-02-29", "n": 5, "tags": ["x", "fixed"], "literal": "no template"})
        );
        assert_eq!(header(&o, "x-order"), Some("7"));
        assert_eq!(header(&o, "content-type"), Some("application/json"));
        // `template: false` sends template syntax as is.
        let e = engine(
            json!([{"method": "GET", "path": "/", "response": {"template": false, "body": "{{ raw }}"}}]),
        );
        assert_eq!(body(&e.handle(&req("GET", "/"), 0, 1)), "{{ raw }}");
    }

    #[test]
    fn delays() {
        let e = Engine::from_snapshot(snapshot(
            json!([
                {"method": "GET", "path": "/fixed", "delay": {"fixed": 250}, "response": {}},
                {"method": "GET", "path": "/uniform", "delay": {"uniform": {"min_ms": 100, "max_ms": 200}}, "response": {}},
                {"method": "GET", "path": "/lognormal", "delay": {"lognormal": {"median_ms": 100, "sigma": 0.5}}, "response": {}},
                {"method": "GET", "path": "/huge", "delay": {"lognormal": {"median_ms": 60000, "sigma": 5.0}}, "response": {}},
                {"method": "GET", "path": "/default", "response": {}},
                {"method": "GET", "path": "/override", "delay": {"fixed": 1}, "response": {"delay": {"fixed": 2}}},
            ]),
            json!({"api": {"default_delay": {"fixed": 30}}}),
        ))
        .unwrap();
        let d = |p: &str, seed| e.handle(&req("GET", p), 0, seed).delay_ms;
        assert_eq!(d("/fixed", 1), 250);
        assert_eq!(d("/default", 1), 30);
        assert_eq!(d("/override", 1), 2);
        let uniform: Vec<u32> = (0..200).map(|s| d("/uniform", s)).collect();
        assert!(uniform.iter().all(|ms| (100..=200).contains(ms)));
        assert!(uniform.iter().min() < Some(&110) && uniform.iter().max() > Some(&190));
        let mut logn: Vec<u32> = (0..1001).map(|s| d("/lognormal", s)).collect();
        logn.sort_unstable();
        assert!((85..=115).contains(&logn[500]), "median {}", logn[500]);
        assert!((0..100).all(|s| d("/huge", s) <= MAX_DELAY_MS));
    }

    #[test]
    fn faults() {
        let e = engine(json!([
            {"method": "GET", "path": "/always", "fault": {"percent": 100, "status": 503}, "response": {"body": "ok"}},
            {"method": "GET", "path": "/never", "fault": {"percent": 0}, "response": {"body": "ok"}},
            {"method": "GET", "path": "/half", "fault": {"percent": 50, "kind": "empty_response"}, "response": {"body": "ok"}},
            {"method": "GET", "path": "/close", "fault": {"percent": 100, "kind": "connection_close"}, "response": {}},
        ]));
        let o = e.handle(&req("GET", "/always"), 0, 1);
        assert_eq!((o.kind, o.response.status), (OutcomeKind::Fault, 503));
        assert_eq!(body_json(&o)["error"]["code"], "injected_fault");
        assert!(
            (0..100).all(|s| e.handle(&req("GET", "/never"), 0, s).kind == OutcomeKind::Served)
        );
        let faults = (0..1000)
            .filter(|&s| e.handle(&req("GET", "/half"), 0, s).kind == OutcomeKind::Fault)
            .count();
        assert!((430..570).contains(&faults), "{faults}");
        assert!(e.handle(&req("GET", "/close"), 0, 1).close_connection);
    }

    #[test]
    fn proxy_and_dedup_directives() {
        let e = engine(json!([
            {"method": "ANY", "path": "/v1/*", "dedup": true, "proxy": {"target": "https://api.example.com/base/", "timeout_ms": 2000, "headers": {"remove": ["x-debug"]}}},
            {"method": "POST", "path": "/pay", "dedup": true, "response": {"body": "paid"}},
        ]));
        let o = e.handle(&req("GET", "/v1/users/1?b=2&a=1"), 0, 1);
        assert_eq!(o.kind, OutcomeKind::Proxy);
        let p = o.proxy.unwrap();
        assert_eq!(p.url, "https://api.example.com/base/v1/users/1?b=2&a=1");
        assert_eq!(
            (p.timeout_ms, p.forward_authorization, p.headers.remove.clone()),
            (Some(2000), false, vec!["x-debug".to_owned()])
        );
        let key = |q: &str, b: &str| {
            e.handle(&with(req("POST", &format!("/pay?{q}")), &[], b), 0, 1).dedup_key.unwrap()
        };
        assert_eq!(
            key("a=1&b=2", r#"{"x": 1, "y": [1, 2]}"#),
            key("b=2&a=1", r#"{"y":[1,2],"x":1}"#)
        );
        assert_ne!(key("a=1", "{}"), key("a=2", "{}"));
        assert!(key("", "").starts_with("1:e1:anonymous:"), "{}", key("", ""));
    }

    #[test]
    fn etags_conditional_requests_and_cache_headers() {
        let e = engine(json!([
            {"method": "GET", "path": "/static", "cache": {"mode": "public", "max_age_seconds": 60}, "response": {"body": "hello"}},
            {"method": "GET", "path": "/dynamic", "cache": {"mode": "public", "max_age_seconds": 60}, "response": {"body": "{{ uuid() }}"}},
            {"method": "GET", "path": "/default", "response": {"body": "x"}},
            {"method": "GET", "path": "/own", "response": {"headers": {"Cache-Control": "max-age=5", "ETag": "\"mine\""}, "body": "x"}},
            {"method": "POST", "path": "/default", "response": {"body": "x"}},
        ]));
        let o = e.handle(&req("GET", "/static"), 0, 1);
        let tag = header(&o, "etag").unwrap().to_owned();
        assert_eq!(tag, http_cache::etag(b"hello"));
        assert_eq!(header(&o, "cache-control"), Some("public, max-age=60"));
        assert_eq!(o.shared_cache_seconds, Some(60));
        for inm in [tag.clone(), format!("W/{tag}"), format!("\"zzz\", {tag}"), "*".to_owned()] {
            let o = e.handle(&with(req("GET", "/static"), &[("If-None-Match", &inm)], ""), 0, 1);
            assert_eq!(
                (o.kind, o.response.status, o.response.body.len()),
                (OutcomeKind::NotModified, 304, 0),
                "{inm}"
            );
            assert_eq!(header(&o, "etag"), Some(tag.as_str()));
            assert_eq!(header(&o, "content-type"), None);
        }
        let o = e.handle(&with(req("GET", "/static"), &[("If-None-Match", "\"other\"")], ""), 0, 1);
        assert_eq!(o.response.status, 200);
        let o = e.handle(&with(req("GET", "/static"), &[("If-None-Match", &tag)], ""), 0, 1);
        assert_eq!(o.shared_cache_seconds, None, "a 304 is never stored for others");
        let o = e.handle(&req("HEAD", "/static"), 0, 1);
        assert_eq!((o.response.body.len(), o.shared_cache_seconds), (0, None));
        assert_eq!(header(&o, "etag"), Some(tag.as_str()), "HEAD carries GET's validators");
        let o = e.handle(&req("HEAD", "/nothing"), 0, 1);
        assert_eq!((o.response.status, o.response.body.len()), (404, 0));
        let o = e.handle(&req("GET", "/dynamic"), 0, 1);
        assert_eq!(o.shared_cache_seconds, None, "a varying answer never sits in a shared cache");
        assert_eq!(header(&o, "etag").map(str::to_owned), Some(http_cache::etag(&o.response.body)));
        assert_eq!(
            header(&e.handle(&req("GET", "/default"), 0, 1), "cache-control"),
            Some("private, no-cache")
        );
        let o = e.handle(&req("GET", "/own"), 0, 1);
        assert_eq!(
            (header(&o, "cache-control"), header(&o, "etag")),
            (Some("max-age=5"), Some("\"mine\""))
        );
        let o = e.handle(&with(req("POST", "/default"), &[("If-None-Match", "*")], ""), 0, 1);
        assert_eq!(o.response.status, 200, "If-None-Match only turns GET and HEAD into 304");
    }

    #[test]
    fn cors_and_base_headers() {
        let e = Engine::from_snapshot(snapshot(
            json!([{"method": "GET", "path": "/x", "response": {"headers": {"x-own": "1"}, "body": "x"}}]),
            json!({"api": {"base_headers": {"x-powered-by": "edgemock", "x-own": "base"}, "cors": {"allow_origins": ["https://app.example"], "expose_headers": ["x-own"]}}}),
        ))
        .unwrap();
        let o = e.handle(&with(req("GET", "/x"), &[("Origin", "https://app.example")], ""), 0, 1);
        assert_eq!(header(&o, "x-powered-by"), Some("edgemock"));
        assert_eq!(header(&o, "x-own"), Some("1"));
        assert_eq!(header(&o, "access-control-allow-origin"), Some("https://app.example"));
        assert_eq!(header(&o, "vary"), Some("Origin"));
        assert_eq!(header(&o, "access-control-expose-headers"), Some("x-own"));
        let o = e.handle(&with(req("GET", "/x"), &[("Origin", "https://evil.example")], ""), 0, 1);
        assert_eq!(header(&o, "access-control-allow-origin"), None);
        assert_eq!(header(&e.handle(&req("GET", "/x"), 0, 1), "vary"), Some("Origin"));
        let o = e.handle(
            &with(
                req("OPTIONS", "/x"),
                &[
                    ("Origin", "https://app.example"),
                    ("Access-Control-Request-Method", "PUT"),
                    ("Access-Control-Request-Headers", "x-a"),
                ],
                "",
            ),
            0,
            1,
        );
        assert_eq!((o.kind, o.response.status), (OutcomeKind::Preflight, 204));
        assert_eq!(header(&o, "access-control-allow-methods"), Some("PUT"));
        assert_eq!(header(&o, "access-control-allow-headers"), Some("x-a"));
    }

    #[test]
    fn graphql_operations() {
        let e = Engine::from_snapshot(snapshot(
            json!([]),
            json!({"graphql": [
                {"name": "GetUser", "response": {"body": {"data": {"user": {"id": "{{ request.json.variables.id }}", "name": "Ada"}}}},
                 "rules": [{"when": {"variable": "/id", "equals": "0"}, "response": {"body": {"data": {"user": null}, "errors": [{"message": "not found"}]}}}]},
                {"type": "mutation", "name": "*", "response": {"body": {"data": {"ok": true}}}},
                {"name": "Count", "response": {"body": "{\"data\": {\"n\": {{ request.json.variables.n * 2 }}}}"}},
            ]}),
        ))
        .unwrap();
        let gql = |body: Value| {
            e.handle_graphql(
                &with(req("POST", "/"), &[("content-type", "application/json")], &body.to_string()),
                0,
                1,
            )
        };
        let o = gql(
            json!({"query": "query GetUser($id: ID!) { user(id: $id) { id name } }", "variables": {"id": "7"}}),
        );
        assert_eq!(body_json(&o), json!({"data": {"user": {"id": "7", "name": "Ada"}}}));
        assert_eq!(&*e.matched(o.matched.unwrap()).unwrap().pattern, "GetUser");
        let o = gql(json!({"query": "query GetUser { user { id } }", "variables": {"id": "0"}}));
        assert_eq!(body_json(&o)["errors"][0]["message"], "not found");
        let o = gql(json!({"query": "mutation Anything { x }"}));
        assert_eq!(body_json(&o), json!({"data": {"ok": true}}));
        assert_eq!(header(&o, "content-type"), Some("application/json"));
        assert!(header(&o, "etag").is_some());
        let o = gql(json!({"query": "query Count { n }", "variables": {"n": 21}}));
        assert_eq!(body_json(&o), json!({"data": {"n": 42}}));
        assert_eq!(
            header(&o, "content-type"),
            Some("application/json"),
            "a templated text result is JSON too"
        );
        let o = gql(json!({"query": "query Other { x }"}));
        assert_eq!((o.kind, o.response.status), (OutcomeKind::NotFound, 404));
        assert_eq!(body_json(&o)["errors"][0]["extensions"]["code"], "MOCK_NOT_FOUND");
        let o = gql(json!({"query": "query { broken"}));
        assert_eq!((o.kind, o.response.status), (OutcomeKind::BadRequest, 400));
    }

    #[test]
    fn websocket_mocks() {
        let e = Engine::from_snapshot(snapshot(
            json!([]),
            json!({"websockets": [{
                "path": "/rooms/:room",
                "on_connect": [{"data": {"type": "welcome", "room": "{{ request.params.room }}"}}],
                "intervals": [{"every_ms": 1000, "max_count": 3, "message": {"data": "tick"}}],
                "replies": [
                    {"when": {"body": "/type", "equals": "ping"}, "send": [{"data": {"type": "pong", "echo": "{{ message_json.id }}"}, "delay_ms": 5}]},
                    {"when": {"body": "", "contains": "hello"}, "send": [{"data": "hi {{ message }}"}]}
                ]
            }]}),
        ))
        .unwrap();
        let ws = e.websocket("/rooms/lobby").unwrap();
        assert!(e.websocket("/nope").is_none());
        let hs = req("GET", "/rooms/lobby");
        assert_eq!(
            e.ws_on_connect(ws, &hs, 0, 1),
            [WsSend { text: r#"{"room":"lobby","type":"welcome"}"#.into(), delay_ms: 0 }]
        );
        assert_eq!(
            e.ws_reply(ws, &hs, r#"{"type": "ping", "id": 9}"#, 0, 1),
            [WsSend { text: r#"{"echo":"9","type":"pong"}"#.into(), delay_ms: 5 }]
        );
        assert_eq!(e.ws_reply(ws, &hs, "hello there", 0, 1)[0].text, "hi hello there");
        assert!(e.ws_reply(ws, &hs, "nothing", 0, 1).is_empty());
        assert_eq!(
            e.ws_intervals(ws),
            [WsIntervalInfo { index: 0, every_ms: 1000, max_count: Some(3) }]
        );
        assert_eq!(e.ws_interval_message(ws, 0, &hs, 0, 1).unwrap().text, "tick");
    }

    #[test]
    fn malformed_definitions_name_the_field() {
        let cases = [
            (
                json!([{"method": "GET", "path": "/a", "rules": [{"when": {"query": "q", "regex": "(("}, "response": {}}]}]),
                "endpoints[0].rules[0].when.regex",
            ),
            (
                json!([{"method": "GET", "path": "/a", "when": {"body": "nope", "exists": true}}]),
                "endpoints[0].when.body",
            ),
            (
                json!([{"method": "GET", "path": "/a", "validation": {"schema": {"type": 5}}}]),
                "endpoints[0].validation.schema",
            ),
            (
                json!([{"method": "GET", "path": "/a", "validation": {"schema": {"$ref": "https://example.com/s.json"}}}]),
                "endpoints[0].validation.schema",
            ),
            (
                json!([{"method": "GET", "path": "/a", "validation": {"schema": {"type": "string", "pattern": "(?<=x)y"}}}]),
                "endpoints[0].validation.schema",
            ),
            (
                json!([{"method": "GET", "path": "/a", "response": {"body": "{{ bogus() }}"}}]),
                "endpoints[0].response.body",
            ),
            (
                json!([{"method": "GET", "path": "/a", "responses": [{"body": {"k": ["{{ x | nofilter }}"]}}], "selection": "random"}]),
                "endpoints[0].responses[0].body.k[0]",
            ),
            (
                json!([{"method": "GET", "path": "/a", "response": {"headers": {"x": "{{ request.path"}}}]),
                "endpoints[0].response.headers.x",
            ),
            (
                json!([{"method": "GET", "path": "/a", "proxy": {"target": "ftp://x"}}]),
                "endpoints[0].proxy.target",
            ),
            (
                json!([{"method": "GET", "path": "/a", "proxy": {"target": "https://u:p@x"}}]),
                "endpoints[0].proxy.target",
            ),
            (
                json!([{"method": "GET", "path": "/a", "proxy": {"target": "https://x", "timeout_ms": 60000}}]),
                "endpoints[0].proxy.timeout_ms",
            ),
            (
                json!([{"method": "GET", "path": "/a", "rules": [{"when": {"query": "q", "exists": true}, "response": "missing"}]}]),
                "endpoints[0].rules[0].response",
            ),
            (
                json!([{"method": "GET", "path": "/a", "rules": [{"when": {"query": "q", "exists": true}, "response": 3}]}]),
                "endpoints[0].rules[0].response",
            ),
            (
                json!([{"method": "GET", "path": "/a", "selection": "sequential"}]),
                "endpoints[0].selection",
            ),
            (
                json!([{"method": "GET", "path": "/a", "delay": {"fixed": 999999}}]),
                "endpoints[0].delay.fixed",
            ),
            (
                json!([{"method": "GET", "path": "/a", "fault": {"percent": 101}}]),
                "endpoints[0].fault.percent",
            ),
            (
                json!([{"method": "GET", "path": "/a", "responses": [{"name": "x"}, {"name": "x"}]}]),
                "endpoints[0].responses[1].name",
            ),
            (
                json!([{"method": "GET", "path": "/a/:id"}, {"method": "GET", "path": "/a/{name}"}]),
                "endpoints[1].path",
            ),
            (json!([{"method": "GET", "path": "a"}]), "endpoints[0].path"),
        ];
        for (endpoints, field) in cases {
            let err = Engine::from_snapshot(snapshot(endpoints.clone(), json!({}))).unwrap_err();
            assert_eq!(err.field, field, "{endpoints}: {err}");
        }
        let err = Engine::from_snapshot(snapshot(
            json!([]),
            json!({"graphql": [{"name": "Q", "response": {"body": {"nodata": 1}}}]}),
        ))
        .unwrap_err();
        assert_eq!(err.field, "graphql[0].response.body");
        let err = Engine::from_snapshot(snapshot(json!([]), json!({"websockets": [{"path": "/w", "intervals": [{"every_ms": 1, "message": {"data": "x"}}]}]}))).unwrap_err();
        assert_eq!(err.field, "websockets[0].intervals[0].every_ms");
        let err = Engine::from_snapshot(snapshot(
            json!([]),
            json!({"api": {"cors": {"allow_methods": ["GE T"]}}}),
        ))
        .unwrap_err();
        assert_eq!(err.field, "api.cors.allow_methods[0]");
    }

    #[test]
    fn hostile_requests_never_panic() {
        let e = engine(json!([
            {"method": "POST", "path": "/x/:p", "rules": [{"when": {"body": "$..a", "exists": true}, "response": {"body": "a"}}],
             "validation": {"schema": {"type": "object"}}, "response": {"body": "{{ request.json | tojson }} {{ request.params.p }}"}},
        ]));
        let deep = "[".repeat(200_000);
        let huge = format!("{{\"a\": \"{}\"}}", "x".repeat(3 * 1024 * 1024));
        let bodies: [&[u8]; 5] = [
            deep.as_bytes(),
            huge.as_bytes(),
            &[0xff, 0xfe, 0x00],
            b"{\"a\":1e999999}",
            b"{\"\\ud800\": 1}",
        ];
        for b in bodies {
            for path in ["/x/%ff%fe", "/x/%", "/x/\u{0}", "/x/..%2F..%2F", "/x/ok"] {
                let r = Request {
                    method: "POST".into(),
                    path: path.into(),
                    query: "%zz=%%&&=".into(),
                    headers: vec![("cookie".into(), ";;=;a".into())],
                    body: b.to_vec(),
                };
                let o = e.handle(&r, i64::MAX, u64::MAX);
                assert!(o.response.status >= 200, "{path}");
                let _ = e.handle_graphql(&r, i64::MIN, 0);
            }
        }
    }
}
