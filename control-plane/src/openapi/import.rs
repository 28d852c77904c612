//! Operations to endpoint definitions: paths the engine accepts, responses with examples or
//! generated data, `Prefer` rules, request validation, and the report.

use std::collections::{BTreeMap, HashMap, HashSet};

use edgemock_shared::model::{MAX_BODY_BYTES, ResponseRef, Rule, Validation};
use edgemock_shared::{
    ApiRef, Body, Condition, EndpointDefinition, Engine, MethodSpec, ResponseDefinition,
    SNAPSHOT_FORMAT_VERSION, Snapshot, SnapshotEndpoint, WorkspaceRef,
};
use serde_json::{Value, json};

use super::document::{Document, Operation, ParameterPlace, Response, child, is_json};
use super::generate::verified;
use super::report::{ImportReport, Note, NoteKind};
use super::schema::{Checker, Converter, Direction, errors, strip_examples};
use super::{ImportError, ImportOptions, Imported};

/// Examples kept per response; more would bloat the snapshot for little use.
const MAX_EXAMPLES: usize = 20;
/// Longest example name that gets a `Prefer: example=` rule (the engine caps regexes).
const MAX_EXAMPLE_NAME: usize = 200;

pub(crate) fn run(doc: &Document, options: &ImportOptions) -> Result<Imported, ImportError> {
    if !(400..=599).contains(&options.validation_status) {
        return Err(ImportError::invalid("validation_status", "must be between 400 and 599"));
    }
    let ops = doc.operations();
    let base_path = doc.base_path();
    let prefix = if options.keep_server_base_path { base_path.clone() } else { None };
    let mut notes = doc.parse_notes().to_vec();
    let paths = plan_paths(ops, prefix.as_deref().unwrap_or_default(), &mut notes);
    let mut ctx = Context {
        doc,
        options,
        request: Converter::new(doc, Direction::Request),
        response: Converter::new(doc, Direction::Response),
        request_checker: Checker::default(),
        response_checker: Checker::default(),
        notes: Vec::new(),
    };
    let mut endpoints = Vec::with_capacity(ops.len());
    for (op, path) in ops.iter().zip(paths) {
        endpoints.push(ctx.endpoint(op, path));
    }
    notes.append(&mut ctx.request.notes);
    notes.append(&mut ctx.response.notes);
    notes.append(&mut ctx.notes);
    document_notes(doc, &mut notes);

    let info = doc.root().get("info");
    let text = |key: &str| {
        info.and_then(|i| i.get(key)).and_then(|v| match v {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    let title = text("title").unwrap_or_else(|| "Imported API".to_owned());
    ensure_compiles(&mut endpoints, ops, &title, &mut notes);

    // The same component reached from many operations is reported once.
    let mut seen = HashSet::new();
    notes.retain(|n| {
        seen.insert((n.kind, n.location.clone(), n.message.clone(), n.operation.clone()))
    });
    Ok(Imported {
        slug: slug(&title),
        title,
        description: text("description"),
        version: text("version"),
        openapi: doc.openapi_version().to_owned(),
        base_path,
        report: ImportReport { operations: ops.len(), endpoints: endpoints.len(), notes },
        endpoints,
        operations: ops.to_vec(),
    })
}

/// A slug valid for an API, from a title: `Swagger Petstore` → `swagger-petstore`.
fn slug(title: &str) -> String {
    let mut out = String::new();
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.truncate(edgemock_shared::model::MAX_SLUG_LEN);
    let out = out.trim_end_matches('-');
    if out.is_empty() { "api".to_owned() } else { out.to_owned() }
}

/// A path segment as the engine will route it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    Rest(String),
}

impl Segment {
    /// The segment with its name erased: two routes with the same shapes are one route.
    fn shape(&self) -> &str {
        match self {
            Self::Literal(s) => s,
            Self::Param(_) => "{}",
            Self::Rest(_) => "{*}",
        }
    }
}

/// Engine paths for every operation: `{param}` segments kept (names reduced to what the
/// engine accepts), mixed segments made one parameter, `x-multi-segment` last parameters
/// made wildcards where no sibling route clashes, and routes that differ only by parameter
/// names given the same names (the engine would refuse them as conflicting).
fn plan_paths(ops: &[Operation], prefix: &str, notes: &mut Vec<Note>) -> Vec<String> {
    let mut planned: Vec<Vec<Segment>> = Vec::with_capacity(ops.len());
    for op in ops {
        let mut segments = Vec::new();
        let full = format!("{prefix}{}", op.path);
        let mut changes = Vec::new();
        for raw in full.trim_start_matches('/').split('/') {
            let whole = raw
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .filter(|s| !s.contains(['{', '}']));
            if let Some(name) = whole {
                let multi = op
                    .parameters
                    .iter()
                    .any(|p| p.place == ParameterPlace::Path && p.name == name && p.multi_segment);
                let clean = param_name(name);
                if clean != name {
                    changes.push(format!("parameter '{name}' is named '{clean}'"));
                }
                segments.push(if multi { Segment::Rest(clean) } else { Segment::Param(clean) });
            } else if raw.contains('{') {
                let names: Vec<String> = raw
                    .split('{')
                    .skip(1)
                    .filter_map(|s| s.split_once('}').map(|(n, _)| param_name(n)))
                    .collect();
                let name = names.join("_");
                changes.push(format!(
                    "segment '{raw}' mixes text and parameters; it is matched as one parameter '{name}' (any value)"
                ));
                segments.push(Segment::Param(name));
            } else {
                let clean = literal(raw);
                if clean != raw {
                    changes.push(format!("segment '{raw}' is written '{clean}'"));
                }
                segments.push(Segment::Literal(clean));
            }
        }
        // Only a last segment can take the rest of the path.
        let last = segments.len().saturating_sub(1);
        for s in &mut segments[..last] {
            if let Segment::Rest(name) = s {
                changes.push(format!(
                    "parameter '{name}' may hold '/' (x-multi-segment) but matches one segment: only a last segment can match several"
                ));
                *s = Segment::Param(std::mem::take(name));
            }
        }
        // Parameter names must be unique within a path.
        let mut used = HashSet::new();
        for s in &mut segments {
            if let Segment::Param(n) | Segment::Rest(n) = s {
                let base = n.clone();
                let mut k = 2;
                while !used.insert(n.clone()) {
                    *n = format!("{base}_{k}");
                    k += 1;
                }
            }
        }
        if !changes.is_empty() {
            notes.push(Note {
                operation: Some(op.label()),
                ..Note::new(NoteKind::PathChanged, child("/paths", &op.path), changes.join("; "))
            });
        }
        planned.push(segments);
    }
    // A wildcard clashes with a parameter (or another wildcard) at its position under the
    // same prefix, for the same method.
    for i in 0..planned.len() {
        let Some(Segment::Rest(name)) = planned[i].last().cloned() else { continue };
        let k = planned[i].len() - 1;
        let prefix_shape: Vec<&str> = planned[i][..k].iter().map(Segment::shape).collect();
        let clash = planned.iter().enumerate().any(|(j, other)| {
            j != i
                && ops[j].method == ops[i].method
                && other.len() > k
                && other[..k].iter().map(Segment::shape).eq(prefix_shape.iter().copied())
                && !matches!(other[k], Segment::Literal(_))
                && !(other.len() == k + 1 && matches!(other[k], Segment::Rest(_)))
        });
        if clash {
            planned[i][k] = Segment::Param(name.clone());
            notes.push(Note {
                operation: Some(ops[i].label()),
                ..Note::new(
                    NoteKind::PathChanged,
                    child("/paths", &ops[i].path),
                    format!("parameter '{name}' may hold '/' (x-multi-segment) but matches one segment: another route has a parameter at that position"),
                )
            });
        }
    }
    // Same method and shape: one route for the engine, so the same names; the first answers.
    let mut first: HashMap<(String, Vec<String>), usize> = HashMap::new();
    for i in 0..planned.len() {
        let key =
            (ops[i].method.clone(), planned[i].iter().map(|s| s.shape().to_owned()).collect());
        match first.get(&key) {
            None => {
                first.insert(key, i);
            }
            Some(&j) => {
                planned[i] = planned[j].clone();
                notes.push(Note {
                    operation: Some(ops[i].label()),
                    ..Note::new(
                        NoteKind::Skipped,
                        ops[i].location.clone(),
                        format!("never answers: {} has the same method and path shape and answers first", ops[j].label()),
                    )
                });
            }
        }
    }
    planned
        .into_iter()
        .map(|segments| {
            let mut path = String::new();
            for s in segments {
                path.push('/');
                match s {
                    Segment::Literal(l) => path.push_str(&l),
                    Segment::Param(n) => path.push_str(&format!("{{{n}}}")),
                    Segment::Rest(n) => path.push_str(&format!("{{*{n}}}")),
                }
            }
            path
        })
        .collect()
}

/// A parameter name the engine accepts: `[A-Za-z0-9_]+`.
fn param_name(name: &str) -> String {
    let clean: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if clean.is_empty() { "param".to_owned() } else { clean }
}

/// A literal segment the engine accepts: characters it reserves percent-encoded, as clients
/// send them.
fn literal(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for (i, c) in raw.chars().enumerate() {
        let reserved = matches!(c, '*' | '{' | '}' | ' ' | '?' | '#')
            || c.is_control()
            || (i == 0 && c == ':');
        if reserved {
            let mut buf = [0; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A response an endpoint may give, with what it answers to.
struct Variant {
    code: String,
    status: u16,
    example: Option<String>,
    response: ResponseDefinition,
}

struct Context<'d> {
    doc: &'d Document,
    options: &'d ImportOptions,
    request: Converter<'d>,
    response: Converter<'d>,
    request_checker: Checker,
    response_checker: Checker,
    notes: Vec<Note>,
}

impl Context<'_> {
    fn note(
        &mut self,
        op: &Operation,
        kind: NoteKind,
        location: impl Into<String>,
        message: impl Into<String>,
    ) -> &mut Note {
        self.notes.push(Note { operation: Some(op.label()), ..Note::new(kind, location, message) });
        let last = self.notes.len() - 1;
        &mut self.notes[last]
    }

    fn endpoint(&mut self, op: &Operation, path: String) -> EndpointDefinition {
        let mut variants = Vec::new();
        for r in &op.responses {
            self.variants(op, r, &mut variants);
        }
        let validation = self.validation(op);
        let method = MethodSpec::Method(op.method.clone());
        let mut variants = variants.into_iter();
        let Some(primary) = variants.next() else {
            let mut e = EndpointDefinition::new(method, path, ResponseDefinition::default());
            e.validation = validation;
            return e;
        };
        let rest: Vec<Variant> = variants.collect();
        let rules = prefer_rules(&primary, &rest);
        let mut e = EndpointDefinition::new(method, path, primary.response);
        e.responses = rest.into_iter().map(|v| v.response).collect();
        e.rules = rules;
        e.validation = validation;
        e
    }

    /// One variant per example of the response (or one generated), named `code[:example]`.
    fn variants(&mut self, op: &Operation, r: &Response, out: &mut Vec<Variant>) {
        let headers = self.headers(op, r);
        let mut bodies: Vec<(Option<String>, Body)> = Vec::new();
        let mut content_type = None;
        let bodiless = matches!(r.status, 204 | 205 | 304);
        if bodiless && r.media_type.is_some() {
            self.note(
                op,
                NoteKind::Skipped,
                child(&r.location, "content"),
                format!("a {} response has no body in HTTP: its content is not served", r.status),
            );
        }
        if let Some(media_type) = r.media_type.as_ref().filter(|_| !bodiless) {
            let content_at = child(&r.location, "content");
            let others: Vec<String> = self
                .doc
                .get(&content_at)
                .and_then(Value::as_object)
                .map(|c| c.keys().filter(|k| *k != media_type).cloned().collect())
                .unwrap_or_default();
            if !others.is_empty() {
                self.note(
                    op,
                    NoteKind::Unsupported,
                    content_at.clone(),
                    format!("only {media_type} is served: the mock does not negotiate content types ({} not served)", others.join(", ")),
                );
            }
            let media_at = child(&content_at, media_type);
            content_type = Some(if media_type.contains('*') {
                if is_json(media_type) {
                    "application/json".to_owned()
                } else {
                    "application/octet-stream".to_owned()
                }
            } else {
                media_type.clone()
            });
            if is_json(media_type) {
                self.json_bodies(op, r, &media_at, &mut bodies);
            } else {
                self.other_bodies(op, r, media_type, &media_at, &mut bodies);
            }
        }
        if bodies.is_empty() {
            bodies.push((None, Body::Text(String::new())));
        }
        for (example, body) in bodies {
            let mut headers = headers.clone();
            if let Some(ct) = &content_type {
                headers.insert("content-type".to_owned(), ct.clone());
            }
            let name = match &example {
                Some(e) => format!("{}:{e}", r.code),
                None => r.code.clone(),
            };
            let mut response = ResponseDefinition {
                name: Some(name),
                status: r.status,
                headers,
                body,
                ..Default::default()
            };
            if response.is_templated() {
                // Example text is data: `{{` in it must reach the client as written.
                response.template = Some(false);
            }
            out.push(Variant { code: r.code.clone(), status: r.status, example, response });
        }
    }

    fn json_bodies(
        &mut self,
        op: &Operation,
        r: &Response,
        media_at: &str,
        out: &mut Vec<(Option<String>, Body)>,
    ) {
        let root = r.schema.as_ref().map(|p| self.response.root_at(p, &mut self.response_checker));
        let validator =
            root.as_ref().and_then(|s| self.response.validator(&mut self.response_checker, s));
        if let (Some(schema_at), None) = (&r.schema, &validator) {
            let why = self.response_checker.failures.last().cloned().unwrap_or_default();
            self.note(
                op,
                NoteKind::Unsupported,
                schema_at.clone(),
                format!("the schema does not compile ({why}): examples and generated data are not checked against it"),
            );
        }
        let mut examples = self.media_examples(op, media_at);
        if examples.len() > MAX_EXAMPLES {
            self.note(
                op,
                NoteKind::Skipped,
                child(media_at, "examples"),
                format!("only the first {MAX_EXAMPLES} of {} examples are kept", examples.len()),
            );
            examples.truncate(MAX_EXAMPLES);
        }
        let mut values = Vec::new();
        for (name, value, location) in examples {
            let broken = validator.as_ref().map(|v| errors(v, &value)).unwrap_or_default();
            let value = if !self.options.use_examples {
                self.generate(op, root.as_ref(), validator.as_deref(), &location)
            } else if broken.is_empty() {
                value
            } else {
                self.note(
                    op,
                    NoteKind::InvalidExample,
                    location.clone(),
                    "the example does not conform to its schema; generated data answers instead",
                )
                .errors = broken;
                self.generate(op, root.as_ref(), validator.as_deref(), &location)
            };
            values.push((name, value, location));
        }
        if values.is_empty() {
            let location = r.schema.clone().unwrap_or_else(|| media_at.to_owned());
            let value = match &root {
                Some(_) => self.generate(op, root.as_ref(), validator.as_deref(), &location),
                None => json!({}),
            };
            values.push((None, value, location));
        }
        for (name, value, location) in values {
            let size = serde_json::to_vec(&value).map_or(usize::MAX, |v| v.len());
            let value = if size > MAX_BODY_BYTES {
                self.note(op, NoteKind::Skipped, location.clone(), format!("the body is {size} bytes, over the {MAX_BODY_BYTES}-byte limit: a smaller generated one answers"));
                self.generate(op, root.as_ref(), validator.as_deref(), &format!("{location}#small"))
            } else {
                value
            };
            // A JSON string body would be sent as bare text: send its JSON text instead.
            let body = match value {
                Value::String(s) => Body::Text(Value::String(s).to_string()),
                other => Body::Json(other),
            };
            out.push((name, body));
        }
    }

    fn other_bodies(
        &mut self,
        op: &Operation,
        r: &Response,
        media_type: &str,
        media_at: &str,
        out: &mut Vec<(Option<String>, Body)>,
    ) {
        let essence = media_type.to_ascii_lowercase();
        let xml = essence.contains("xml");
        for (name, value, location) in
            self.media_examples(op, media_at).into_iter().take(MAX_EXAMPLES)
        {
            match value {
                Value::String(s) if s.len() <= MAX_BODY_BYTES => out.push((name, Body::Text(s))),
                _ => {
                    self.note(
                        op,
                        NoteKind::Unsupported,
                        location,
                        format!("only text examples can be served as {media_type}"),
                    );
                }
            }
        }
        if !out.is_empty() {
            return;
        }
        let text_like = essence.starts_with("text/") || xml || essence.contains("html");
        let root = r.schema.as_ref().map(|p| self.response.root_at(p, &mut self.response_checker));
        let stringy = root.as_ref().is_some_and(|s| {
            let t = s.get("type");
            t == Some(&json!("string")) && s.get("format").is_none_or(|f| f != "binary")
        });
        if stringy && !xml {
            let validator =
                root.as_ref().and_then(|s| self.response.validator(&mut self.response_checker, s));
            let location = r.schema.clone().unwrap_or_default();
            if let Value::String(s) =
                self.generate(op, root.as_ref(), validator.as_deref(), &location)
            {
                out.push((None, Body::Text(s)));
                return;
            }
        }
        let what = if xml {
            "XML bodies are not generated (give a string example to serve one)"
        } else if text_like {
            "no text example or string schema: the body is empty"
        } else {
            "binary bodies are not generated: the body is empty"
        };
        self.note(op, NoteKind::Unsupported, media_at.to_owned(), what);
    }

    /// The media type's examples in document order (`examples`, else `example`), with names
    /// and locations; references followed.
    fn media_examples(
        &mut self,
        op: &Operation,
        media_at: &str,
    ) -> Vec<(Option<String>, Value, String)> {
        let doc = self.doc;
        let Some(media) = doc.get(media_at) else { return Vec::new() };
        let mut out = Vec::new();
        if let Some(Value::Object(examples)) = media.get("examples") {
            let at = child(media_at, "examples");
            for name in doc.keys(&at, examples) {
                let Some(example) = examples.get(name) else { continue };
                let location = child(&at, name);
                match doc.resolve(example, &location) {
                    Ok((found, example)) => {
                        if let Some(value) = example.get("value") {
                            out.push((
                                Some(name.to_owned()),
                                value.clone(),
                                child(&found, "value"),
                            ));
                        } else if example.get("externalValue").is_some() {
                            self.note(
                                op,
                                NoteKind::Unsupported,
                                found,
                                "externalValue examples are not fetched",
                            );
                        } else {
                            self.note(
                                op,
                                NoteKind::Skipped,
                                found,
                                "an Example Object needs a value",
                            );
                        }
                    }
                    Err(message) => {
                        self.note(op, NoteKind::Skipped, location, message);
                    }
                }
            }
        } else if let Some(value) = media.get("example") {
            out.push((None, value.clone(), child(media_at, "example")));
        }
        out
    }

    fn generate(
        &mut self,
        op: &Operation,
        root: Option<&Value>,
        validator: Option<&jsonschema::Validator>,
        location: &str,
    ) -> Value {
        let Some(root) = root else { return json!({}) };
        let seed = seed_for(self.options.seed, location);
        match verified(
            &self.response,
            &mut self.response_checker,
            Direction::Response,
            root,
            validator,
            seed,
            self.options.use_examples,
        ) {
            Ok(generated) => {
                if !generated.example_errors.is_empty() {
                    self.note(
                        op,
                        NoteKind::InvalidExample,
                        location.to_owned(),
                        "data built from the schema's examples did not conform here; generated data answers instead",
                    )
                    .errors = generated.example_errors;
                }
                generated.value
            }
            Err((closest, errs)) => {
                self.note(
                    op,
                    NoteKind::GenerationFailed,
                    location.to_owned(),
                    "no data conforming to the schema was found; the closest attempt answers",
                )
                .errors = errs;
                closest.unwrap_or(Value::Null)
            }
        }
    }

    /// Documented response headers, from their examples or schemas.
    fn headers(&mut self, op: &Operation, r: &Response) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let doc = self.doc;
        let at = child(&r.location, "headers");
        let Some(Value::Object(headers)) = doc.get(&at) else { return out };
        for (name, header) in headers {
            if name.eq_ignore_ascii_case("content-type") {
                continue; // The media type decides it.
            }
            let location = child(&at, name);
            let Ok((location, header)) = doc.resolve(header, &location) else { continue };
            let schema_at = if header.get("schema").is_some() {
                Some(child(&location, "schema"))
            } else {
                None
            };
            let root =
                schema_at.as_ref().map(|p| self.response.root_at(p, &mut self.response_checker));
            let validator =
                root.as_ref().and_then(|s| self.response.validator(&mut self.response_checker, s));
            let example = header
                .get("example")
                .map(|v| (v.clone(), child(&location, "example")))
                .or_else(|| {
                    let examples = header.get("examples")?.as_object()?;
                    let (k, ex) = examples.iter().next()?;
                    let (found, ex) =
                        doc.resolve(ex, &child(&child(&location, "examples"), k)).ok()?;
                    Some((ex.get("value")?.clone(), child(&found, "value")))
                });
            let value = match example {
                Some((value, place)) => {
                    let broken = validator.as_ref().map(|v| errors(v, &value)).unwrap_or_default();
                    if broken.is_empty() {
                        value
                    } else {
                        self.note(op, NoteKind::InvalidExample, place, "the header example does not conform to its schema; generated data answers instead").errors = broken;
                        self.generate(op, root.as_ref(), validator.as_deref(), &location)
                    }
                }
                None if root.is_some() => {
                    self.generate(op, root.as_ref(), validator.as_deref(), &location)
                }
                None => continue,
            };
            let text = header_text(&value);
            let name_ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if name_ok && text.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b)) {
                out.insert(name.clone(), text);
            } else {
                self.note(
                    op,
                    NoteKind::Skipped,
                    location,
                    "the header's name or value cannot be sent in HTTP; it is left out",
                );
            }
        }
        out
    }

    fn validation(&mut self, op: &Operation) -> Option<Validation> {
        let body = op.request_body.as_ref()?;
        let non_json: Vec<&str> =
            body.media_types.iter().map(String::as_str).filter(|m| !is_json(m)).collect();
        let Some(schema_at) = &body.schema else {
            if !non_json.is_empty() {
                self.note(
                    op,
                    NoteKind::NotValidated,
                    body.location.clone(),
                    format!(
                        "{} request bodies are accepted without validation",
                        non_json.join(", ")
                    ),
                );
            }
            return None;
        };
        let root = self.request.root_at(schema_at, &mut self.request_checker);
        let validator = self.request.validator(&mut self.request_checker, &root);
        if let Some(media_type) = &body.media_type {
            let media_at = child(&child(&body.location, "content"), media_type);
            for (_, value, location) in self.media_examples(op, &media_at) {
                let broken = validator.as_ref().map(|v| errors(v, &value)).unwrap_or_default();
                if !broken.is_empty() {
                    self.note(
                        op,
                        NoteKind::InvalidExample,
                        location,
                        "the request example does not conform to its schema",
                    )
                    .errors = broken;
                }
            }
        }
        if !body.required {
            self.note(op, NoteKind::NotValidated, body.location.clone(), "the request body is optional, and the engine's validation refuses requests without one: not validated");
            return None;
        }
        if !non_json.is_empty() {
            self.note(
                op,
                NoteKind::NotValidated,
                body.location.clone(),
                format!(
                    "the body may also be {}, which JSON validation would refuse: not validated",
                    non_json.join(", ")
                ),
            );
            return None;
        }
        if validator.is_none() {
            let why = self.request_checker.failures.last().cloned().unwrap_or_default();
            self.note(
                op,
                NoteKind::NotValidated,
                schema_at.clone(),
                format!("the request schema does not compile: {why}"),
            );
            return None;
        }
        let mut schema = self.request.bundle(&root);
        strip_examples(&mut schema);
        Some(Validation { schema, status: self.options.validation_status })
    }
}

/// A seed per location: stable when other operations are added or removed.
fn seed_for(seed: u64, location: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in location.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A header value in OpenAPI's `simple` style.
fn header_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(items) => items.iter().map(header_text).collect::<Vec<_>>().join(","),
        Value::Object(o) => {
            o.iter().map(|(k, v)| format!("{k},{}", header_text(v))).collect::<Vec<_>>().join(",")
        }
        other => other.to_string(),
    }
}

/// `Prefer` rules, most specific first: `code` and `example` together, then `code`, then
/// `example`. Each points at its response by index into `responses`.
fn prefer_rules(primary: &Variant, rest: &[Variant]) -> Vec<Rule> {
    let mut rules = Vec::new();
    let codes = |v: &Variant| {
        let mut c = vec![v.code.clone()];
        if v.code != v.status.to_string() {
            c.push(v.status.to_string());
        }
        c
    };
    let usable = |e: &String| e.len() <= MAX_EXAMPLE_NAME;
    for (i, v) in rest.iter().enumerate() {
        if let Some(e) = v.example.as_ref().filter(|e| usable(e)) {
            let when = json!({"all": [prefer("code", &codes(v)), prefer("example", std::slice::from_ref(e))]});
            push_rule(&mut rules, format!("Prefer: code={}, example={e}", v.code), when, i);
        }
    }
    let mut seen_codes = HashSet::from([primary.code.clone()]);
    for (i, v) in rest.iter().enumerate() {
        if seen_codes.insert(v.code.clone()) {
            push_rule(&mut rules, format!("Prefer: code={}", v.code), prefer("code", &codes(v)), i);
        }
    }
    let mut seen_examples: HashSet<&String> = primary.example.iter().collect();
    for (i, v) in rest.iter().enumerate() {
        if let Some(e) = v.example.as_ref().filter(|e| usable(e))
            && seen_examples.insert(e)
        {
            push_rule(
                &mut rules,
                format!("Prefer: example={e}"),
                prefer("example", std::slice::from_ref(e)),
                i,
            );
        }
    }
    rules
}

fn push_rule(rules: &mut Vec<Rule>, name: String, when: Value, index: usize) {
    if let Ok(when) = serde_json::from_value::<Condition>(when) {
        rules.push(Rule {
            name: Some(name),
            priority: 0,
            when,
            response: ResponseRef::Index(index),
        });
    }
}

/// A condition on `Prefer` holding `key=value` (one of `values`) as one of its preferences:
/// `Prefer: code=404, example=missing` (RFC 7240; values may be quoted).
fn prefer(key: &str, values: &[String]) -> Value {
    let alternatives: Vec<String> = values.iter().map(|v| regex_syntax::escape(v)).collect();
    json!({
        "header": "prefer",
        // ASCII blanks, not `\s`: thousands of these compile with every snapshot, and a
        // Unicode class costs far more to compile.
        "regex": format!(r#"(?:^|[,;])[ \t]*{key}[ \t]*=[ \t]*"?(?:{})"?[ \t]*(?:[,;]|$)"#, alternatives.join("|")),
        "case_insensitive": true,
    })
}

/// Notes about the document as a whole: what the mock never checks.
fn document_notes(doc: &Document, notes: &mut Vec<Note>) {
    let root = doc.root();
    let schemes = root.pointer("/components/securitySchemes").and_then(Value::as_object);
    let secured = root.get("security").and_then(Value::as_array).is_some_and(|s| !s.is_empty())
        || schemes.is_some_and(|s| !s.is_empty());
    if secured {
        notes.push(Note::new(
            NoteKind::Unsupported,
            "/components/securitySchemes",
            "security is not enforced: requests are answered with or without credentials",
        ));
    }
    for (name, scheme) in schemes.into_iter().flatten() {
        if scheme.get("type").and_then(Value::as_str) == Some("apiKey")
            && scheme.get("in").and_then(Value::as_str) == Some("cookie")
        {
            let cookie = scheme.get("name").and_then(Value::as_str).unwrap_or("?");
            notes.push(Note::new(
                NoteKind::Unsupported,
                child("/components/securitySchemes", name),
                format!("cookie authentication (cookie '{cookie}') is not checked"),
            ));
        }
    }
    if root.get("webhooks").and_then(Value::as_object).is_some_and(|w| !w.is_empty()) {
        notes.push(Note::new(
            NoteKind::Unsupported,
            "/webhooks",
            "webhooks are not mocked: the mock never calls out",
        ));
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for op in doc.operations() {
        let mut places: Vec<&str> = op
            .parameters
            .iter()
            .filter_map(|p| match p.place {
                ParameterPlace::Path => None,
                ParameterPlace::Query => Some("query"),
                ParameterPlace::Header => Some("header"),
                ParameterPlace::Cookie => Some("cookie"),
            })
            .collect();
        places.dedup();
        places.sort_unstable();
        places.dedup();
        for p in places {
            *counts.entry(p).or_default() += 1;
        }
    }
    if !counts.is_empty() {
        let list: Vec<String> = counts
            .iter()
            .map(|(p, n)| {
                format!("{p} parameters in {n} operation{}", if *n == 1 { "" } else { "s" })
            })
            .collect();
        notes.push(Note::new(
            NoteKind::Unsupported,
            "/paths",
            format!("parameters other than path segments are not checked ({}): every request is answered", list.join(", ")),
        ));
    }
}

/// Compiles the endpoints as one snapshot, as the control plane will, and repairs what the
/// engine refuses (dropping a validation, a wildcard, or in the last resort the endpoint's
/// responses), noting each repair. Every endpoint then compiles, alone and together.
///
/// The first failure switches to checking endpoints one by one, so that many bad endpoints
/// cost one pass rather than one whole-snapshot compile each; what is left after that are
/// conflicts between routes, which only the snapshot shows.
fn ensure_compiles(
    endpoints: &mut [EndpointDefinition],
    ops: &[Operation],
    title: &str,
    notes: &mut Vec<Note>,
) {
    let mut checked_one_by_one = false;
    for _ in 0..=endpoints.len() {
        let snapshot = Snapshot {
            format_version: SNAPSHOT_FORMAT_VERSION,
            version: 1,
            workspace: WorkspaceRef {
                id: "import".into(),
                slug: "import".into(),
                ..Default::default()
            },
            api: ApiRef {
                id: "import".into(),
                slug: "import".into(),
                name: title.to_owned(),
                ..Default::default()
            },
            endpoints: endpoints
                .iter()
                .enumerate()
                .map(|(i, d)| SnapshotEndpoint { id: i.to_string(), definition: d.clone() })
                .collect(),
            graphql: Vec::new(),
            websockets: Vec::new(),
        };
        let Err(e) = Engine::from_snapshot(snapshot) else { return };
        if !checked_one_by_one {
            checked_one_by_one = true;
            for (i, endpoint) in endpoints.iter_mut().enumerate() {
                // Each repair makes the endpoint simpler; three always reach one that compiles.
                for _ in 0..3 {
                    let Err(e) = endpoint.validate() else { break };
                    if !repair(endpoint, &e, ops.get(i), notes) {
                        break;
                    }
                }
            }
            continue;
        }
        let Some((i, field)) = e
            .field
            .strip_prefix("endpoints[")
            .and_then(|rest| rest.split_once("]."))
            .and_then(|(i, field)| Some((i.parse::<usize>().ok()?, field)))
            .filter(|(i, _)| *i < endpoints.len())
        else {
            notes.push(Note::new(
                NoteKind::Skipped,
                "",
                format!("the endpoints do not compile: {e}"),
            ));
            return;
        };
        let local = edgemock_shared::Error::new(field, e.message.clone());
        if !repair(&mut endpoints[i], &local, ops.get(i), notes) {
            return;
        }
    }
}

/// Makes `endpoint` simpler where `error` says the engine refuses it; `false` when nothing
/// more can be done (a route conflict without a wildcard to give up), which is noted.
fn repair(
    endpoint: &mut EndpointDefinition,
    error: &edgemock_shared::Error,
    op: Option<&Operation>,
    notes: &mut Vec<Note>,
) -> bool {
    let field = error.field.as_str();
    let done = if field.starts_with("validation") && endpoint.validation.is_some() {
        endpoint.validation = None;
        Some("its request validation is dropped")
    } else if field.starts_with("path") && endpoint.path.contains("{*") {
        endpoint.path = endpoint.path.replace("{*", "{");
        Some("its wildcard matches one segment")
    } else if field.starts_with("path") {
        None
    } else if !endpoint.rules.is_empty()
        || !endpoint.responses.is_empty()
        || endpoint.response != ResponseDefinition::default()
    {
        endpoint.responses.clear();
        endpoint.rules.clear();
        endpoint.response =
            ResponseDefinition { status: endpoint.response.status, ..Default::default() };
        Some("its responses are replaced by an empty one")
    } else {
        None
    };
    notes.push(Note {
        operation: op.map(Operation::label),
        ..Note::new(
            NoteKind::Skipped,
            op.map(|o| o.location.clone()).unwrap_or_default(),
            match done {
                Some(repair) => format!("the engine refused the endpoint ({error}); {repair}"),
                None => format!("the engine refuses the endpoint: {error}"),
            },
        )
    });
    done.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_and_names() {
        assert_eq!(slug("Swagger Petstore - OpenAPI 3.0"), "swagger-petstore-openapi-3-0");
        assert_eq!(slug("  ###  "), "api");
        assert_eq!(param_name("pet-id"), "pet_id");
        assert_eq!(literal(":cancel*"), "%3Acancel%2A");
        assert_eq!(literal("v1.json"), "v1.json");
    }

    #[test]
    fn what_the_engine_refuses_is_repaired_and_noted() {
        let endpoint = |path: &str| {
            EndpointDefinition::new(
                MethodSpec::Method("GET".into()),
                path,
                ResponseDefinition::default(),
            )
        };
        let mut bad_schema = endpoint("/a");
        bad_schema.validation = Some(Validation { schema: json!({"type": 5}), status: 400 });
        let mut bad_header = endpoint("/b");
        bad_header.response.headers.insert("x".into(), "line\nbreak".into());
        let mut endpoints =
            vec![bad_schema, bad_header, endpoint("/c/{id}/x"), endpoint("/c/{*rest}")];
        let mut notes = Vec::new();
        ensure_compiles(&mut endpoints, &[], "t", &mut notes);
        assert!(endpoints[0].validation.is_none());
        assert!(endpoints[1].response.headers.is_empty());
        assert_eq!(endpoints[3].path, "/c/{rest}");
        assert_eq!(notes.len(), 3, "{notes:#?}");
        let snapshot = Snapshot {
            format_version: SNAPSHOT_FORMAT_VERSION,
            version: 1,
            workspace: WorkspaceRef::default(),
            api: ApiRef::default(),
            endpoints: endpoints
                .into_iter()
                .enumerate()
                .map(|(i, definition)| SnapshotEndpoint { id: i.to_string(), definition })
                .collect(),
            graphql: vec![],
            websockets: vec![],
        };
        assert!(Engine::from_snapshot(snapshot).is_ok());
    }

    #[test]
    fn prefer_conditions() {
        let when: Condition =
            serde_json::from_value(prefer("code", &["4XX".into(), "400".into()])).unwrap();
        let engine_check = |header: &str| {
            let request = edgemock_shared::Request {
                method: "GET".into(),
                path: "/".into(),
                headers: vec![("Prefer".into(), header.into())],
                ..Default::default()
            };
            let view = edgemock_shared::RequestView::new(&request, vec![]);
            edgemock_shared::condition::CompiledCondition::compile("when", &when)
                .unwrap()
                .eval(&view)
        };
        assert!(engine_check("code=400"));
        assert!(engine_check("code=4xx"));
        assert!(engine_check("respond-async, code=\"400\"; wait=5"));
        assert!(!engine_check("code=4000"));
        assert!(!engine_check("xcode=400"));
    }
}
