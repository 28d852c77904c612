//! Reading a document: JSON or YAML, the version check, JSON Pointers, local `$ref`s, and the
//! list of operations with everything about them located by pointer.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::report::{Note, NoteKind};
use super::schema::{Converter, Direction};
use super::{ImportError, ImportOptions, Imported};

/// The OpenAPI line a document follows; it decides how its Schema Objects are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SpecVersion {
    /// 3.0.x: Schema Objects are a JSON Schema draft 4 dialect (`nullable`, boolean
    /// `exclusiveMinimum`, `$ref` without siblings).
    V3_0,
    /// 3.1.x: Schema Objects are JSON Schema 2020-12.
    V3_1,
}

/// The methods an OpenAPI path item may hold, in the order operations are listed.
pub(crate) const METHODS: [&str; 8] =
    ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// A parsed OpenAPI 3.0/3.1 document.
#[derive(Debug, Clone)]
pub struct Document {
    root: Value,
    version: SpecVersion,
    version_text: String,
    /// Key order, as written, of the `content` and `examples` maps: `serde_json`'s map is
    /// sorted, and "the first example" must mean the first one the author wrote.
    order: HashMap<String, Vec<String>>,
    operations: Vec<Operation>,
    /// Found while listing operations; they go into the import report.
    notes: Vec<Note>,
}

/// Where a parameter is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParameterPlace {
    Path,
    Query,
    Header,
    Cookie,
}

/// One operation of the document, with its parts located by JSON Pointer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Operation {
    /// Upper-case: `GET`.
    pub method: String,
    /// The path as the document writes it: `/pets/{petId}`.
    pub path: String,
    /// Pointer to the operation object: `/paths/~1pets~1{petId}/get`.
    pub location: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Path-level and operation-level parameters merged (the operation's win).
    pub parameters: Vec<Parameter>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_body: Option<RequestBody>,
    /// The primary response first, then the others by status.
    pub responses: Vec<Response>,
}

impl Operation {
    /// `GET /pets/{petId}`, for messages.
    pub fn label(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Parameter {
    pub name: String,
    #[serde(rename = "in")]
    pub place: ParameterPlace,
    pub required: bool,
    /// Pointer to the (resolved) parameter object.
    pub location: String,
    /// Pointer to its schema (`schema`, or the schema of its single `content` entry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// GitHub's `x-multi-segment: true`: the value may contain `/`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub multi_segment: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestBody {
    /// Pointer to the (resolved) request body object.
    pub location: String,
    pub required: bool,
    /// The JSON media type whose schema validates requests, if there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Pointer to that media type's schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Every media type, as written.
    pub media_types: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Response {
    /// The key in `responses`: `200`, `4XX`, `default`.
    pub code: String,
    /// The status the mock answers it with (see the module documentation).
    pub status: u16,
    /// Pointer to the (resolved) response object.
    pub location: String,
    /// The media type served, if the response has content.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Pointer to that media type's schema.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
}

impl Document {
    /// Reads a document (JSON when it starts with `{`, YAML otherwise) and checks that it is
    /// OpenAPI 3.0.x or 3.1.x with a readable structure.
    pub fn parse(bytes: &[u8]) -> Result<Self, ImportError> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(bytes);
        let text = std::str::from_utf8(bytes).map_err(|e| ImportError::Unparseable {
            message: format!("it is not UTF-8 text (invalid byte at offset {})", e.valid_up_to()),
            line: None,
            column: None,
        })?;
        // Parsed into YAML's tree even when it is JSON: its maps keep the written order.
        let tree: serde_yaml_ng::Value = if text.trim_start().starts_with('{') {
            match serde_json::from_str(text) {
                Ok(tree) => tree,
                // JSON-looking YAML (flow style) is still YAML; report the JSON error if both fail.
                Err(json) => {
                    serde_yaml_ng::from_str(text).map_err(|_| ImportError::Unparseable {
                        message: format!("invalid JSON: {json}"),
                        line: Some(json.line()),
                        column: Some(json.column()),
                    })?
                }
            }
        } else {
            serde_yaml_ng::from_str(text).map_err(|e| ImportError::Unparseable {
                message: format!("invalid YAML: {e}"),
                line: e.location().map(|l| l.line()),
                column: e.location().map(|l| l.column()),
            })?
        };
        let mut order = HashMap::new();
        let mut pointer = String::new();
        let root = to_json(tree, &mut pointer, false, &mut order);
        Self::from_value(root, order)
    }

    fn from_value(root: Value, order: HashMap<String, Vec<String>>) -> Result<Self, ImportError> {
        let Some(obj) = root.as_object() else {
            return Err(ImportError::invalid(
                "",
                "must be an object: an OpenAPI 3.0 or 3.1 document",
            ));
        };
        if let Some(swagger) = obj.get("swagger") {
            let v = swagger.as_str().map_or_else(|| swagger.to_string(), str::to_owned);
            return Err(ImportError::invalid(
                "/swagger",
                format!(
                    "Swagger {v} is not supported: only OpenAPI 3.0 and 3.1 are; convert the document first (for example with swagger2openapi)"
                ),
            ));
        }
        let version_text = match obj.get("openapi") {
            None => {
                return Err(ImportError::invalid(
                    "/openapi",
                    "is missing: this is not an OpenAPI document (OpenAPI 3.0 and 3.1 are supported)",
                ));
            }
            Some(Value::String(v)) => v.clone(),
            // YAML reads an unquoted `openapi: 3.1` as a number.
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => {
                return Err(ImportError::invalid(
                    "/openapi",
                    "must be a version string such as \"3.1.0\"",
                ));
            }
        };
        let version = match version_text.split('.').take(2).collect::<Vec<_>>()[..] {
            ["3", "0"] => SpecVersion::V3_0,
            ["3", "1"] => SpecVersion::V3_1,
            _ => {
                return Err(ImportError::invalid(
                    "/openapi",
                    format!("version {version_text} is not supported: OpenAPI 3.0.x and 3.1.x are"),
                ));
            }
        };
        for (key, what) in
            [("info", "an object"), ("paths", "an object"), ("components", "an object")]
        {
            if obj.get(key).is_some_and(|v| !v.is_object()) {
                return Err(ImportError::invalid(format!("/{key}"), format!("must be {what}")));
            }
        }
        if obj.get("servers").is_some_and(|v| !v.is_array()) {
            return Err(ImportError::invalid("/servers", "must be an array"));
        }
        let mut doc =
            Self { root, version, version_text, order, operations: Vec::new(), notes: Vec::new() };
        let (operations, notes) = doc.list_operations()?;
        doc.operations = operations;
        doc.notes = notes;
        Ok(doc)
    }

    /// The document as JSON.
    pub fn root(&self) -> &Value {
        &self.root
    }

    pub fn version(&self) -> SpecVersion {
        self.version
    }

    /// The `openapi` field: `3.0.3`.
    pub fn openapi_version(&self) -> &str {
        &self.version_text
    }

    pub fn operations(&self) -> &[Operation] {
        &self.operations
    }

    /// The schema object at `pointer` (which may be a `$ref`) as one self-contained JSON Schema
    /// 2020-12 document: what [`Direction::Request`] validation uses, or what a response of
    /// this schema must conform to ([`Direction::Response`]). Unresolvable parts accept
    /// anything.
    pub fn json_schema(&self, pointer: &str, direction: Direction) -> Value {
        Converter::new(self, direction).schema_at(pointer, &mut super::schema::Checker::default())
    }

    /// Imports the document; see [`super::import`].
    pub fn import(&self, options: &ImportOptions) -> Result<Imported, ImportError> {
        super::import::run(self, options)
    }

    pub(crate) fn parse_notes(&self) -> &[Note] {
        &self.notes
    }

    /// The keys of the map at `pointer`, in the order they were written when that is known.
    pub(crate) fn keys<'a>(&self, pointer: &str, map: &'a Map<String, Value>) -> Vec<&'a str> {
        match self.order.get(pointer) {
            Some(order) => order
                .iter()
                .filter_map(|k| map.get_key_value(k.as_str()).map(|(k, _)| k.as_str()))
                .collect(),
            None => map.keys().map(String::as_str).collect(),
        }
    }

    pub(crate) fn get(&self, pointer: &str) -> Option<&Value> {
        self.root.pointer(pointer)
    }

    /// Follows `$ref`s from `value` (found at `location`) to the object they name. Errors say
    /// why a reference could not be followed.
    pub(crate) fn resolve<'a>(
        &'a self,
        value: &'a Value,
        location: &str,
    ) -> Result<(String, &'a Value), String> {
        let mut location = location.to_owned();
        let mut value = value;
        for _ in 0..32 {
            let Some(reference) = value.get("$ref").and_then(Value::as_str) else {
                return Ok((location, value));
            };
            let pointer = local_pointer(reference).ok_or_else(|| {
                format!(
                    "the reference '{reference}' is not local; external documents are not fetched"
                )
            })?;
            value = self
                .get(&pointer)
                .ok_or_else(|| format!("the reference '{reference}' points to nothing"))?;
            location = pointer;
        }
        Err("references loop or chain more than 32 times".to_owned())
    }

    /// The first server's path, with server variables at their defaults: `/v1`, or `None`.
    pub(crate) fn base_path(&self) -> Option<String> {
        let server = self.root.get("servers")?.get(0)?;
        let mut url = server.get("url")?.as_str()?.to_owned();
        if let Some(vars) = server.get("variables").and_then(Value::as_object) {
            for (name, var) in vars {
                if let Some(default) = var.get("default").and_then(Value::as_str) {
                    url = url.replace(&format!("{{{name}}}"), default);
                }
            }
        }
        let path = match url.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
            None => url.as_str(),
        };
        let path = path.split(['?', '#']).next().unwrap_or_default().trim_end_matches('/');
        if path.is_empty() || path.contains(['{', '}', ' ']) {
            return None;
        }
        Some(if path.starts_with('/') { path.to_owned() } else { format!("/{path}") })
    }

    fn list_operations(&self) -> Result<(Vec<Operation>, Vec<Note>), ImportError> {
        let mut operations = Vec::new();
        let mut notes = Vec::new();
        let Some(paths) = self.root.get("paths").and_then(Value::as_object) else {
            notes.push(Note::new(
                NoteKind::Skipped,
                "",
                "the document has no paths: nothing to mock",
            ));
            return Ok((operations, notes));
        };
        for (path, item) in paths {
            let item_location = child("/paths", path);
            if !path.starts_with('/') {
                return Err(ImportError::invalid(item_location, "a path must start with '/'"));
            }
            let (item_location, item) = self
                .resolve(item, &item_location)
                .map_err(|message| ImportError::invalid(item_location.clone(), message))?;
            let Some(item) = item.as_object() else {
                return Err(ImportError::invalid(item_location, "a path item must be an object"));
            };
            let shared = self.parameters(item.get("parameters"), &item_location, &mut notes)?;
            for method in METHODS {
                let Some(op) = item.get(method) else { continue };
                let location = child(&item_location, method);
                let Some(op) = op.as_object() else {
                    return Err(ImportError::invalid(location, "an operation must be an object"));
                };
                let mut parameters = shared.clone();
                for p in self.parameters(op.get("parameters"), &location, &mut notes)? {
                    parameters.retain(|q| q.name != p.name || q.place != p.place);
                    parameters.push(p);
                }
                if op.contains_key("callbacks") {
                    notes.push(Note {
                        operation: Some(format!("{} {path}", method.to_uppercase())),
                        ..Note::new(
                            NoteKind::Unsupported,
                            child(&location, "callbacks"),
                            "callbacks are not mocked: the mock never calls back",
                        )
                    });
                }
                let request_body = match op.get("requestBody") {
                    None => None,
                    Some(body) => Some(self.request_body(body, &child(&location, "requestBody"))?),
                };
                let label = format!("{} {path}", method.to_uppercase());
                let responses =
                    self.responses(op.get("responses"), &location, &label, &mut notes)?;
                operations.push(Operation {
                    method: method.to_uppercase(),
                    path: path.clone(),
                    location,
                    operation_id: op.get("operationId").and_then(Value::as_str).map(str::to_owned),
                    summary: op.get("summary").and_then(Value::as_str).map(str::to_owned),
                    parameters,
                    request_body,
                    responses,
                });
            }
        }
        Ok((operations, notes))
    }

    fn parameters(
        &self,
        list: Option<&Value>,
        owner: &str,
        notes: &mut Vec<Note>,
    ) -> Result<Vec<Parameter>, ImportError> {
        let Some(list) = list else { return Ok(Vec::new()) };
        let base = child(owner, "parameters");
        let Some(list) = list.as_array() else {
            return Err(ImportError::invalid(base, "must be an array"));
        };
        let mut out = Vec::new();
        for (i, p) in list.iter().enumerate() {
            let at = child(&base, &i.to_string());
            let (location, p) = match self.resolve(p, &at) {
                Ok(found) => found,
                Err(message) => {
                    notes.push(Note::new(
                        NoteKind::Skipped,
                        at,
                        format!("parameter skipped: {message}"),
                    ));
                    continue;
                }
            };
            let name = p.get("name").and_then(Value::as_str);
            let place = match p.get("in").and_then(Value::as_str) {
                Some("path") => ParameterPlace::Path,
                Some("query") => ParameterPlace::Query,
                Some("header") => ParameterPlace::Header,
                Some("cookie") => ParameterPlace::Cookie,
                _ => {
                    return Err(ImportError::invalid(
                        child(&location, "in"),
                        "must be one of path, query, header, cookie",
                    ));
                }
            };
            let Some(name) = name else {
                return Err(ImportError::invalid(child(&location, "name"), "is required"));
            };
            let schema = if p.get("schema").is_some() {
                Some(child(&location, "schema"))
            } else {
                p.get("content").and_then(Value::as_object).and_then(|content| {
                    let (media, _) = content.iter().next()?;
                    Some(child(&child(&child(&location, "content"), media), "schema"))
                })
            };
            out.push(Parameter {
                name: name.to_owned(),
                place,
                required: p.get("required").and_then(Value::as_bool).unwrap_or(false)
                    || place == ParameterPlace::Path,
                schema,
                multi_segment: p.get("x-multi-segment").and_then(Value::as_bool) == Some(true),
                location,
            });
        }
        Ok(out)
    }

    fn request_body(&self, body: &Value, at: &str) -> Result<RequestBody, ImportError> {
        let (location, body) =
            self.resolve(body, at).map_err(|message| ImportError::invalid(at, message))?;
        let content_at = child(&location, "content");
        let content = match body.get("content") {
            None => None,
            Some(Value::Object(content)) => Some(content),
            Some(_) => return Err(ImportError::invalid(content_at, "must be an object")),
        };
        let media_types: Vec<String> = content
            .map(|c| self.keys(&content_at, c).into_iter().map(str::to_owned).collect())
            .unwrap_or_default();
        let media_type = media_types.iter().find(|m| is_json(m)).cloned();
        let schema = media_type.as_ref().and_then(|m| {
            let media_at = child(&content_at, m);
            self.get(&media_at)?.get("schema")?;
            Some(child(&media_at, "schema"))
        });
        Ok(RequestBody {
            required: body.get("required").and_then(Value::as_bool).unwrap_or(false),
            location,
            media_type,
            schema,
            media_types,
        })
    }

    fn responses(
        &self,
        responses: Option<&Value>,
        op_location: &str,
        label: &str,
        notes: &mut Vec<Note>,
    ) -> Result<Vec<Response>, ImportError> {
        let at = child(op_location, "responses");
        let Some(responses) = responses else {
            notes.push(Note {
                operation: Some(label.to_owned()),
                ..Note::new(
                    NoteKind::Skipped,
                    &at,
                    "no responses documented: the mock answers 200 with an empty body",
                )
            });
            return Ok(Vec::new());
        };
        let Some(responses) = responses.as_object() else {
            return Err(ImportError::invalid(at, "must be an object"));
        };
        let codes: Vec<&str> =
            responses.keys().map(String::as_str).filter(|c| !c.starts_with("x-")).collect();
        let statuses = assign_statuses(&codes);
        let mut out = Vec::new();
        for code in codes {
            let code_at = child(&at, code);
            let Some(status) = statuses.get(code).copied() else {
                let why = if code.starts_with('1') {
                    "informational (1xx) responses cannot be mocked"
                } else {
                    "is not a status code, a range such as 4XX, or default"
                };
                notes.push(Note {
                    operation: Some(label.to_owned()),
                    ..Note::new(
                        NoteKind::Skipped,
                        code_at,
                        format!("response '{code}' skipped: {why}"),
                    )
                });
                continue;
            };
            let Some(response) = responses.get(code) else { continue };
            let (location, response) = match self.resolve(response, &code_at) {
                Ok(found) => found,
                Err(message) => {
                    notes.push(Note {
                        operation: Some(label.to_owned()),
                        ..Note::new(
                            NoteKind::Skipped,
                            code_at,
                            format!("response skipped: {message}"),
                        )
                    });
                    continue;
                }
            };
            if !response.is_object() {
                return Err(ImportError::invalid(location, "a response must be an object"));
            }
            if response.get("links").is_some() {
                notes.push(Note {
                    operation: Some(label.to_owned()),
                    ..Note::new(
                        NoteKind::Unsupported,
                        child(&location, "links"),
                        "links are not mocked",
                    )
                });
            }
            let content_at = child(&location, "content");
            let (media_type, schema) = match response.get("content") {
                Some(Value::Object(content)) if !content.is_empty() => {
                    let keys = self.keys(&content_at, content);
                    let chosen = choose_media_type(&keys).map(str::to_owned);
                    let schema = chosen.as_ref().and_then(|m| {
                        let media_at = child(&content_at, m);
                        self.get(&media_at)?.get("schema")?;
                        Some(child(&media_at, "schema"))
                    });
                    (chosen, schema)
                }
                Some(Value::Object(_)) | None => (None, None),
                Some(_) => return Err(ImportError::invalid(content_at, "must be an object")),
            };
            out.push(Response { code: code.to_owned(), status, location, media_type, schema });
        }
        // Primary first (the status assignment marks it 'primary' by order), then by status.
        let primary = primary_code(&out.iter().map(|r| r.code.as_str()).collect::<Vec<_>>())
            .map(str::to_owned);
        out.sort_by_key(|r| (Some(&r.code) != primary.as_ref(), r.status));
        Ok(out)
    }
}

/// Which response a plain request gets: the lowest 2xx, else `2XX`, else `default`, else the
/// lowest other code.
pub(crate) fn primary_code<'a>(codes: &[&'a str]) -> Option<&'a str> {
    let numeric = |range: std::ops::Range<u16>| {
        codes
            .iter()
            .filter_map(|c| Some((c.parse::<u16>().ok().filter(|s| range.contains(s))?, *c)))
            .min()
            .map(|(_, c)| c)
    };
    numeric(200..300)
        .or_else(|| codes.iter().find(|c| c.eq_ignore_ascii_case("2XX")).copied())
        .or_else(|| codes.iter().find(|c| **c == "default").copied())
        .or_else(|| numeric(200..600))
        .or_else(|| {
            codes
                .iter()
                .find(|c| c.len() == 3 && c[1..].eq_ignore_ascii_case("XX") && !c.starts_with('1'))
                .copied()
        })
}

/// The status each response code is answered with: numeric codes as themselves; a range the
/// lowest status of it not documented on its own; `default` 200 when it is the primary
/// response, else the first 5xx not documented. 1xx and malformed codes get none.
fn assign_statuses<'a>(codes: &[&'a str]) -> HashMap<&'a str, u16> {
    let mut taken: Vec<u16> = codes.iter().filter_map(|c| c.parse::<u16>().ok()).collect();
    let mut out = HashMap::new();
    for code in codes {
        if let Ok(s) = code.parse::<u16>()
            && (200..600).contains(&s)
        {
            out.insert(*code, s);
        }
    }
    let primary = primary_code(codes);
    let free = |range: std::ops::Range<u16>, taken: &mut Vec<u16>| {
        let s = range.clone().find(|s| !taken.contains(s))?;
        taken.push(s);
        Some(s)
    };
    for code in codes {
        let upper = code.to_ascii_uppercase();
        let range = match upper.as_str() {
            "2XX" => 200..300,
            "3XX" => 300..400,
            "4XX" => 400..500,
            "5XX" => 500..600,
            "DEFAULT" if primary == Some(*code) => 200..300,
            "DEFAULT" => 500..600,
            _ => continue,
        };
        if let Some(s) = free(range, &mut taken) {
            out.insert(*code, s);
        }
    }
    out
}

/// Whether a media type carries JSON: `application/json`, `…+json`, `text/json`, and the
/// wildcards that generated documents use for JSON (`*/*`, `application/*`).
pub(crate) fn is_json(media_type: &str) -> bool {
    let essence = media_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json"
        || essence.ends_with("+json")
        || essence == "text/json"
        || essence == "*/*"
        || essence == "application/*"
}

/// The media type a response is served as: `application/json`, else another JSON type, else
/// the first one written.
pub(crate) fn choose_media_type<'a>(keys: &[&'a str]) -> Option<&'a str> {
    keys.iter()
        .find(|k| {
            k.split(';').next().is_some_and(|e| e.trim().eq_ignore_ascii_case("application/json"))
        })
        .or_else(|| keys.iter().find(|k| is_json(k) && !k.contains('*')))
        .or_else(|| keys.iter().find(|k| is_json(k)))
        .or_else(|| keys.first())
        .copied()
}

/// `base` + `/` + `segment` escaped as a JSON Pointer token.
pub(crate) fn child(base: &str, segment: &str) -> String {
    let mut out = String::with_capacity(base.len() + segment.len() + 1);
    out.push_str(base);
    push_token(&mut out, segment);
    out
}

fn push_token(out: &mut String, segment: &str) {
    out.push('/');
    for c in segment.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
}

/// The JSON Pointer a local reference (`#/components/schemas/Pet`) names, percent-decoded;
/// `None` for references into other documents.
pub(crate) fn local_pointer(reference: &str) -> Option<String> {
    let fragment = reference.strip_prefix('#')?;
    if !fragment.is_empty() && !fragment.starts_with('/') {
        return None; // A plain-name fragment (`#foo`) is an anchor, not a pointer.
    }
    if !fragment.contains('%') {
        return Some(fragment.to_owned());
    }
    let bytes = fragment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) =
                (bytes.get(i + 1).and_then(|b| hex(*b)), bytes.get(i + 2).and_then(|b| hex(*b)))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Converts YAML's tree into JSON, recording the written key order of every map that sits
/// under a `content` or `examples` key.
fn to_json(
    value: serde_yaml_ng::Value,
    pointer: &mut String,
    record: bool,
    order: &mut HashMap<String, Vec<String>>,
) -> Value {
    use serde_yaml_ng::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                // JSON has no NaN or infinities; YAML's `.nan` and `.inf` become null.
                n.as_f64().and_then(serde_json::Number::from_f64).map_or(Value::Null, Value::Number)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&i.to_string());
                out.push(to_json(item, pointer, false, order));
                pointer.truncate(len);
            }
            Value::Array(out)
        }
        Y::Mapping(map) => {
            let mut out = Map::new();
            let mut keys = Vec::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    Y::Null => "null".to_owned(),
                    other => serde_yaml_ng::to_string(&other).unwrap_or_default().trim().to_owned(),
                };
                let len = pointer.len();
                push_token(pointer, &key);
                let below = matches!(key.as_str(), "content" | "examples");
                let v = to_json(v, pointer, below, order);
                pointer.truncate(len);
                if record {
                    keys.push(key.clone());
                }
                out.insert(key, v);
            }
            if record && keys.len() > 1 {
                order.insert(pointer.clone(), keys);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => to_json(tagged.value, pointer, record, order),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_for_codes() {
        let s = assign_statuses(&["200", "4XX", "404", "default"]);
        assert_eq!((s["200"], s["404"], s["4XX"], s["default"]), (200, 404, 400, 500));
        let s = assign_statuses(&["default", "400"]);
        assert_eq!((s["default"], s["400"]), (200, 400));
        let s = assign_statuses(&["2XX", "200", "101", "abc"]);
        assert_eq!((s["200"], s["2XX"], s.get("101"), s.get("abc")), (200, 201, None, None));
        assert_eq!(primary_code(&["404", "201", "204"]), Some("201"));
        assert_eq!(primary_code(&["404", "302"]), Some("302"));
        assert_eq!(primary_code(&["4XX"]), Some("4XX"));
    }

    #[test]
    fn media_types() {
        assert_eq!(
            choose_media_type(&["text/html", "application/json; charset=utf-8"]),
            Some("application/json; charset=utf-8")
        );
        assert_eq!(
            choose_media_type(&["application/xml", "application/problem+json"]),
            Some("application/problem+json")
        );
        assert_eq!(choose_media_type(&["*/*", "text/plain"]), Some("*/*"));
        assert_eq!(choose_media_type(&["application/xml", "text/plain"]), Some("application/xml"));
        assert!(!is_json("application/x-ndjson"));
    }

    #[test]
    fn pointers() {
        assert_eq!(child("/paths", "/pets/{id}"), "/paths/~1pets~1{id}");
        assert_eq!(child("", "a~b"), "/a~0b");
        assert_eq!(
            local_pointer("#/components/schemas/Pet").as_deref(),
            Some("/components/schemas/Pet")
        );
        assert_eq!(
            local_pointer("#/paths/~1pets~1%7Bid%7D").as_deref(),
            Some("/paths/~1pets~1{id}")
        );
        assert_eq!(local_pointer("#"), Some(String::new()));
        assert_eq!(local_pointer("other.yaml#/a"), None);
        assert_eq!(local_pointer("#anchor"), None);
    }

    #[test]
    fn base_paths() {
        let doc = |servers: Value| {
            Document::from_value(
                serde_json::json!({"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "servers": servers}),
                HashMap::new(),
            )
            .unwrap()
        };
        assert_eq!(
            doc(serde_json::json!([{"url": "https://api.example.com/v1/"}])).base_path().as_deref(),
            Some("/v1")
        );
        assert_eq!(doc(serde_json::json!([{"url": "https://api.example.com"}])).base_path(), None);
        assert_eq!(
            doc(serde_json::json!([{"url": "/api/v3"}])).base_path().as_deref(),
            Some("/api/v3")
        );
        assert_eq!(
            doc(serde_json::json!([{"url": "https://{region}.example.com/{version}", "variables": {"region": {"default": "eu"}, "version": {"default": "v2"}}}]))
                .base_path()
                .as_deref(),
            Some("/v2")
        );
    }
}
