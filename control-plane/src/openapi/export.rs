//! Endpoint definitions to an OpenAPI 3.1 document.

use std::collections::{BTreeMap, HashMap, HashSet};

use edgemock_shared::{Body, MethodSpec, ResponseDefinition, SnapshotEndpoint};
use serde_json::{Map, Value, json};

use super::document::{METHODS, is_json};

/// The methods an `ANY` endpoint is listed under (those the path does not define itself).
const ANY_METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// Describes an API's endpoints as an OpenAPI 3.1 document.
///
/// - Paths in `{param}` form, each parameter a required string; a trailing wildcard
///   (`/files/*`, `{*rest}`) is a parameter marked `x-multi-segment: true` (GitHub's
///   convention, which [`super::import`] reads back).
/// - One operation per method and path: endpoints sharing them (told apart by `when` or
///   priority) contribute their responses to the first one's. `ANY` is listed under each of
///   `get put post delete patch` the path does not define; other methods OpenAPI 3.1 cannot
///   name (`PROPFIND`), and anything unlisted, are in the root's `x-edgemock-unexported`.
/// - Responses by status, with their bodies as examples (named after the response:
///   `200:ok` → `ok`), content types and headers; template bodies are marked
///   `x-edgemock-template: true`. Proxy endpoints answer `default`, described as proxied.
/// - A `validation` schema becomes the required JSON request body (its `$defs` moved to
///   `components/schemas`), plus a response for the validation status.
/// - `servers` is the API's mock URL, `/mock/{api_slug}`.
pub fn export(api_name: &str, api_slug: &str, endpoints: &[SnapshotEndpoint]) -> Value {
    let mut components = Map::new();
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut unexported = Vec::new();
    let mut operation_ids = HashSet::new();

    // Group by path and method, in priority order, so each operation has one owner.
    let mut groups: BTreeMap<(String, String), Vec<&SnapshotEndpoint>> = BTreeMap::new();
    let mut wildcard: HashMap<String, String> = HashMap::new();
    for e in endpoints {
        let Ok(pattern) = edgemock_shared::routing::normalize_pattern(&e.definition.path) else {
            unexported.push(json!({"id": e.id, "path": e.definition.path, "reason": "the path is not a valid pattern"}));
            continue;
        };
        let path = pattern.replace("{*", "{");
        if let Some(rest) =
            pattern.rsplit_once("{*").map(|(_, r)| r.trim_end_matches('}').to_owned())
        {
            wildcard.insert(path.clone(), rest);
        }
        let method = match &e.definition.method {
            MethodSpec::Any => "any".to_owned(),
            MethodSpec::Method(m) if METHODS.contains(&m.to_ascii_lowercase().as_str()) => {
                m.to_ascii_lowercase()
            }
            MethodSpec::Method(m) => {
                unexported.push(json!({"id": e.id, "method": m, "path": e.definition.path, "reason": "OpenAPI 3.1 has no field for this method"}));
                continue;
            }
        };
        groups.entry((path, method)).or_default().push(e);
    }
    for group in groups.values_mut() {
        group.sort_by_key(|e| std::cmp::Reverse(e.definition.priority));
    }
    let defined: HashSet<(String, String)> =
        groups.keys().filter(|(_, m)| m != "any").cloned().collect();
    for ((path, method), group) in &groups {
        let methods: Vec<&str> = if method == "any" {
            ANY_METHODS
                .iter()
                .copied()
                .filter(|m| !defined.contains(&(path.clone(), (*m).to_owned())))
                .collect()
        } else {
            vec![method.as_str()]
        };
        for m in methods {
            let op =
                operation(path, m, group, wildcard.get(path), &mut components, &mut operation_ids);
            paths.entry(path.clone()).or_default().insert(m.to_owned(), op);
        }
    }
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {"title": api_name, "version": "1.0.0", "description": format!("Mocked by edgemock at /mock/{api_slug}.")},
        "servers": [{"url": format!("/mock/{api_slug}"), "description": "edgemock"}],
        "paths": paths,
    });
    if !components.is_empty() {
        doc["components"] = json!({ "schemas": components });
    }
    if !unexported.is_empty() {
        doc["x-edgemock-unexported"] = Value::Array(unexported);
    }
    doc
}

fn operation(
    path: &str,
    method: &str,
    group: &[&SnapshotEndpoint],
    wildcard: Option<&String>,
    components: &mut Map<String, Value>,
    ids: &mut HashSet<String>,
) -> Value {
    let mut op = Map::new();
    op.insert("operationId".to_owned(), json!(operation_id(method, path, ids)));
    let params: Vec<Value> = path
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            let mut p =
                json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}});
            if wildcard.is_some_and(|w| w == name) {
                p["x-multi-segment"] = json!(true);
            }
            p
        })
        .collect();
    if !params.is_empty() {
        op.insert("parameters".to_owned(), Value::Array(params));
    }
    let mut by_status: BTreeMap<u16, Vec<&ResponseDefinition>> = BTreeMap::new();
    let mut proxied = None;
    let mut validation = None;
    for e in group {
        let d = &e.definition;
        if let Some(proxy) = &d.proxy {
            proxied.get_or_insert_with(|| proxy.target.clone());
            continue;
        }
        for r in std::iter::once(&d.response).chain(&d.responses) {
            by_status.entry(r.status).or_default().push(r);
        }
        if validation.is_none() {
            validation = d.validation.as_ref();
        }
    }
    let mut responses = Map::new();
    for (status, list) in &by_status {
        responses.insert(status.to_string(), response(*status, list));
    }
    if let Some(v) = validation {
        let schema = hoist(&v.schema, components);
        op.insert(
            "requestBody".to_owned(),
            json!({"required": true, "content": {"application/json": {"schema": schema}}}),
        );
        responses.entry(v.status.to_string()).or_insert_with(|| {
            json!({
                "description": "The request body does not match the schema.",
                "content": {"application/json": {"schema": {
                    "type": "object", "required": ["error"],
                    "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
                        "code": {"const": "validation_failed"},
                        "message": {"type": "string"},
                        "errors": {"type": "array", "items": {"type": "object", "properties": {"path": {"type": "string"}, "message": {"type": "string"}}}}
                    }}}
                }}}
            })
        });
    }
    if let Some(target) = proxied
        && responses.is_empty()
    {
        responses
            .insert("default".to_owned(), json!({"description": format!("Proxied to {target}.")}));
    }
    if responses.is_empty() {
        responses.insert("default".to_owned(), json!({"description": "No response defined."}));
    }
    op.insert("responses".to_owned(), Value::Object(responses));
    Value::Object(op)
}

fn response(status: u16, list: &[&ResponseDefinition]) -> Value {
    let description = axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Response")
        .to_owned();
    let mut out = json!({ "description": description });
    let Some(first) = list.first() else { return out };
    let content_type = first
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.clone())
        .or_else(|| match &first.body {
            Body::Json(_) => Some("application/json".to_owned()),
            Body::Text(t) if !t.is_empty() => Some("text/plain".to_owned()),
            Body::Text(_) => None,
        });
    let headers: Map<String, Value> = first
        .headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("content-type"))
        .map(|(k, v)| (k.clone(), json!({"schema": {"type": "string"}, "example": v})))
        .collect();
    if !headers.is_empty() {
        out["headers"] = Value::Object(headers);
    }
    let Some(content_type) = content_type else { return out };
    let json_media = is_json(&content_type);
    let mut examples = Map::new();
    for (i, r) in list.iter().enumerate() {
        let value = match &r.body {
            Body::Json(v) => v.clone(),
            Body::Text(t) if json_media && !r.is_templated() => {
                serde_json::from_str(t).unwrap_or_else(|_| Value::String(t.clone()))
            }
            Body::Text(t) => Value::String(t.clone()),
        };
        let base = r
            .name
            .as_deref()
            .map(|n| {
                n.split_once(':').map_or(n, |(code, rest)| {
                    if code.parse::<u16>().is_ok() || code.ends_with("XX") || code == "default" {
                        rest
                    } else {
                        n
                    }
                })
            })
            .filter(|n| !n.is_empty() && n.parse::<u16>().is_err())
            .map_or_else(
                || if i == 0 { "default".to_owned() } else { format!("example{}", i + 1) },
                str::to_owned,
            );
        let mut name = base.clone();
        let mut k = 2;
        while examples.contains_key(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        let mut example = json!({ "value": value });
        if r.is_templated() {
            example["x-edgemock-template"] = json!(true);
        }
        examples.insert(name, example);
    }
    let media = if examples.len() == 1 && examples.contains_key("default") {
        let mut single = examples.remove("default").unwrap_or_default();
        let mut m = json!({ "example": single["value"].take() });
        if single.get("x-edgemock-template").is_some() {
            m["x-edgemock-template"] = json!(true);
        }
        m
    } else {
        json!({ "examples": examples })
    };
    out["content"] = json!({ content_type: media });
    out
}

fn operation_id(method: &str, path: &str, ids: &mut HashSet<String>) -> String {
    let mut base = method.to_owned();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        base.push('_');
        let word = segment.trim_matches(['{', '}']);
        if segment.starts_with('{') {
            base.push_str("by_");
        }
        base.extend(word.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }));
    }
    let mut id = base.clone();
    let mut k = 2;
    while !ids.insert(id.clone()) {
        id = format!("{base}_{k}");
        k += 1;
    }
    id
}

/// A schema whose `$defs` move to `components/schemas` (OpenAPI resolves `#/…` against the
/// whole document, not the schema), renamed where a different schema holds the name.
fn hoist(schema: &Value, components: &mut Map<String, Value>) -> Value {
    let mut schema = schema.clone();
    let Some(Value::Object(defs)) = schema.as_object_mut().and_then(|o| o.remove("$defs")) else {
        return schema;
    };
    let identity: HashMap<String, String> = defs.keys().map(|k| (k.clone(), k.clone())).collect();
    let mut names = HashMap::new();
    for (name, def) in &defs {
        let same = rewrite(def, &identity);
        let mut target = name.clone();
        let mut k = 2;
        while components.get(&target).is_some_and(|existing| *existing != same) {
            target = format!("{name}_{k}");
            k += 1;
        }
        names.insert(name.clone(), target);
    }
    for (name, def) in &defs {
        if let Some(target) = names.get(name) {
            let def = rewrite(def, &names);
            components.entry(target.clone()).or_insert(def);
        }
    }
    rewrite(&schema, &names)
}

/// `#/$defs/{name}…` references rewritten to `#/components/schemas/{names[name]}…`.
fn rewrite(schema: &Value, names: &HashMap<String, String>) -> Value {
    let mut schema = schema.clone();
    super::schema::each_schema_mut(&mut schema, &mut |o| {
        if let Some(Value::String(r)) = o.get_mut("$ref")
            && let Some(rest) = r.strip_prefix("#/$defs/")
        {
            let (name, tail) = rest.split_once('/').map_or((rest, ""), |(n, t)| (n, t));
            let name = names.get(name).map_or(name, String::as_str);
            let tail = if tail.is_empty() { String::new() } else { format!("/{tail}") };
            *r = format!("#/components/schemas/{name}{tail}");
        }
    });
    schema
}
