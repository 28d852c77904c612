//! OpenAPI Schema Objects to JSON Schema 2020-12 that the engine's `jsonschema` compiles
//! offline, and the validator cache used to check examples and generated data.
//!
//! Every schema comes out self-contained: each local `$ref` target (a component or any other
//! pointer) becomes an entry of the root's `$defs`, and the reference `#/$defs/{name}`. Names
//! are assigned once per [`Converter`], so two schemas converted by one converter agree on
//! what `#/$defs/Pet` is, which lets validators be cached by the root alone.
//!
//! OpenAPI 3.0 is a dialect of draft 4 and is rewritten: `nullable`, boolean
//! `exclusiveMinimum`/`exclusiveMaximum`, `example`, and `$ref` siblings (ignored, as 3.0
//! says). Both versions lose the keywords only OpenAPI knows (`discriminator`, `xml`,
//! `externalDocs`, `x-*`) and `description` (snapshots carry these schemas; the text is not
//! needed to validate). `readOnly` properties are not required in requests; `writeOnly` ones
//! are removed from responses. Patterns the engine's linear-time regex cannot compile, and
//! keywords with values of the wrong type, are dropped and reported rather than letting one
//! of them make the whole schema unusable.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use edgemock_shared::engine::compile_schema;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::document::{Document, SpecVersion, child, local_pointer};
use super::report::{Note, NoteKind};

/// Which side of an exchange a schema describes; it decides what `readOnly` and `writeOnly`
/// mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// A request body: `readOnly` properties are not required.
    Request,
    /// A response body: `writeOnly` properties are not allowed.
    Response,
}

/// Where the location of a kept example travels inside a converted schema until the
/// examples are checked; removed before anyone else sees the schema.
const EXAMPLE_AT: &str = "x-edgemock-example-at";

/// Keywords whose value is one schema.
const ONE_SCHEMA: [&str; 12] = [
    "additionalProperties",
    "additionalItems",
    "not",
    "if",
    "then",
    "else",
    "propertyNames",
    "contains",
    "unevaluatedProperties",
    "unevaluatedItems",
    "contentSchema",
    "items",
];
/// Keywords whose value is a map of schemas.
const SCHEMA_MAP: [&str; 5] =
    ["properties", "patternProperties", "dependentSchemas", "$defs", "definitions"];
/// Keywords whose value is a list of schemas.
const SCHEMA_LIST: [&str; 4] = ["allOf", "anyOf", "oneOf", "prefixItems"];
/// Keywords that must be non-negative integers.
const COUNTS: [&str; 10] = [
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "minContains",
    "maxContains",
    "maxDepth",
    "minDepth",
];
/// Keywords that only OpenAPI (or only people) read.
const DROPPED: [&str; 7] =
    ["discriminator", "xml", "externalDocs", "description", "$comment", "$schema", "nullable"];

struct Def {
    name: String,
    schema: Value,
    deps: Vec<String>,
    checked: bool,
}

/// Converts the schemas of one document for one direction, sharing `$defs` names.
pub(crate) struct Converter<'d> {
    doc: &'d Document,
    direction: Direction,
    v30: bool,
    /// By the pointer of the schema they were made from.
    defs: HashMap<String, Def>,
    pointer_of: HashMap<String, String>,
    pending: Vec<String>,
    patterns: HashMap<String, bool>,
    pub(crate) notes: Vec<Note>,
}

impl<'d> Converter<'d> {
    pub(crate) fn new(doc: &'d Document, direction: Direction) -> Self {
        Self {
            doc,
            direction,
            v30: doc.version() == SpecVersion::V3_0,
            defs: HashMap::new(),
            pointer_of: HashMap::new(),
            pending: Vec::new(),
            patterns: HashMap::new(),
            notes: Vec::new(),
        }
    }

    /// The schema at `pointer` as one self-contained JSON Schema.
    pub(crate) fn schema_at(&mut self, pointer: &str, checker: &mut Checker) -> Value {
        let root = self.root_at(pointer, checker);
        self.bundle(&root)
    }

    /// The schema at `pointer`, converted, with its `$ref`s pointing into this converter's
    /// `$defs` (see [`Converter::bundle`]); its examples checked.
    pub(crate) fn root_at(&mut self, pointer: &str, checker: &mut Checker) -> Value {
        let mut at = pointer.to_owned();
        let mut deps = Vec::new();
        let mut root = match self.doc.get(pointer) {
            Some(v) => self.convert(v, &mut at, &mut deps),
            None => {
                self.note(NoteKind::Unsupported, pointer, "no schema here; anything is accepted");
                json!({})
            }
        };
        while let Some(p) = self.pending.pop() {
            self.convert_def(&p);
        }
        let mut unchecked: Vec<String> =
            self.defs.iter().filter(|(_, d)| !d.checked).map(|(p, _)| p.clone()).collect();
        unchecked.sort_unstable(); // Notes come out in the same order every time.
        for p in unchecked {
            // A clone, not a take: a recursive schema's examples are checked against itself.
            let Some(mut schema) = self.defs.get_mut(&p).map(|d| {
                d.checked = true;
                d.schema.clone()
            }) else {
                continue;
            };
            self.check_examples(&mut schema, checker);
            if let Some(d) = self.defs.get_mut(&p) {
                d.schema = schema;
            }
        }
        self.check_examples(&mut root, checker);
        root
    }

    /// `schema` with the `$defs` it needs (transitively) attached.
    pub(crate) fn bundle(&self, schema: &Value) -> Value {
        let defs = self.closure(schema);
        match schema {
            Value::Object(o) if !defs.is_empty() => {
                let mut o = o.clone();
                match o.get_mut("$defs") {
                    Some(Value::Object(own)) => own.extend(defs),
                    _ => {
                        o.insert("$defs".to_owned(), Value::Object(defs));
                    }
                }
                Value::Object(o)
            }
            other => other.clone(),
        }
    }

    /// The definitions `schema` reaches through `$ref`s, by name.
    fn closure(&self, schema: &Value) -> Map<String, Value> {
        let mut seen = HashSet::new();
        let mut queue = Vec::new();
        collect_refs(schema, &mut |name| {
            if let Some(p) = self.pointer_of.get(name) {
                queue.push(p.clone());
            }
        });
        let mut out = Map::new();
        while let Some(p) = queue.pop() {
            if !seen.insert(p.clone()) {
                continue;
            }
            if let Some(def) = self.defs.get(&p) {
                out.insert(def.name.clone(), def.schema.clone());
                queue.extend(def.deps.iter().cloned());
            }
        }
        out
    }

    /// What `#/$defs/{name}` (or another pointer into a bundle) refers to.
    pub(crate) fn lookup(&self, reference: &str) -> Option<&Value> {
        let name = reference.strip_prefix("#/$defs/")?;
        let name = name.split('/').next()?;
        let def = self.defs.get(self.pointer_of.get(name)?)?;
        match reference.strip_prefix("#/$defs/").and_then(|r| r.find('/').map(|i| &r[i..])) {
            Some(rest) => def.schema.pointer(rest),
            None => Some(&def.schema),
        }
    }

    /// The validator of a converted schema (its `$defs` attached), compiled once.
    pub(crate) fn validator(
        &self,
        checker: &mut Checker,
        schema: &Value,
    ) -> Option<Rc<jsonschema::Validator>> {
        let key = (self.direction, schema.to_string());
        if let Some(v) = checker.cache.get(&key) {
            return v.clone();
        }
        let bundled = self.bundle(schema);
        checker.compile(key, &bundled)
    }

    fn def_name(&mut self, pointer: &str) -> String {
        if let Some(def) = self.defs.get(pointer) {
            return def.name.clone();
        }
        let base = match pointer.strip_prefix("/components/schemas/") {
            Some(name) if !name.contains('/') => name.replace("~1", "/").replace("~0", "~"),
            _ => pointer.trim_start_matches('/').to_owned(),
        };
        let mut base: String = base
            .chars()
            .map(
                |c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') { c } else { '_' },
            )
            .take(100)
            .collect();
        if base.is_empty() {
            base.push_str("schema");
        }
        let mut name = base.clone();
        let mut n = 2;
        while self.pointer_of.contains_key(&name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        self.pointer_of.insert(name.clone(), pointer.to_owned());
        self.defs.insert(
            pointer.to_owned(),
            Def { name: name.clone(), schema: json!({}), deps: Vec::new(), checked: false },
        );
        self.pending.push(pointer.to_owned());
        name
    }

    fn convert_def(&mut self, pointer: &str) {
        let Some(value) = self.doc.get(pointer) else { return };
        let mut at = pointer.to_owned();
        let mut deps = Vec::new();
        let schema = self.convert(value, &mut at, &mut deps);
        if let Some(def) = self.defs.get_mut(pointer) {
            def.schema = schema;
            def.deps = deps;
        }
    }

    fn note(&mut self, kind: NoteKind, at: &str, message: impl Into<String>) {
        self.notes.push(Note::new(kind, at, message));
    }

    fn convert(&mut self, value: &Value, at: &mut String, deps: &mut Vec<String>) -> Value {
        match value {
            Value::Bool(b) => Value::Bool(*b),
            Value::Object(o) => self.convert_object(o, at, deps),
            _ => {
                let at = at.clone();
                self.note(
                    NoteKind::Unsupported,
                    &at,
                    "is not a schema object; anything is accepted here",
                );
                json!({})
            }
        }
    }

    fn reference(&mut self, reference: &Value, at: &str, deps: &mut Vec<String>) -> Value {
        let target = reference.as_str().and_then(local_pointer);
        match target {
            Some(p) if self.doc.get(&p).is_some() => {
                let name = self.def_name(&p);
                deps.push(p);
                json!({ "$ref": format!("#/$defs/{name}") })
            }
            _ => {
                let shown = reference.as_str().unwrap_or("?");
                let why = if target.is_some() {
                    "points to nothing"
                } else {
                    "is not a local reference (nothing is fetched)"
                };
                self.note(
                    NoteKind::Unsupported,
                    &child(at, "$ref"),
                    format!("'{shown}' {why}; anything is accepted in its place"),
                );
                json!({})
            }
        }
    }

    fn convert_object(
        &mut self,
        o: &Map<String, Value>,
        at: &mut String,
        deps: &mut Vec<String>,
    ) -> Value {
        if let Some(reference) = o.get("$ref") {
            let converted = self.reference(reference, at, deps);
            // 3.0: a Reference Object's siblings are ignored. 3.1: they apply alongside.
            if self.v30 || o.len() == 1 || converted.get("$ref").is_none() {
                return converted;
            }
            let mut rest = self.convert_keywords(o, at, deps);
            if let (Value::Object(map), Some(r)) = (&mut rest, converted.get("$ref")) {
                map.insert("$ref".to_owned(), r.clone());
            }
            return rest;
        }
        self.convert_keywords(o, at, deps)
    }

    fn convert_keywords(
        &mut self,
        o: &Map<String, Value>,
        at: &mut String,
        deps: &mut Vec<String>,
    ) -> Value {
        let mut out = Map::new();
        let mut examples: Vec<(Value, String)> = Vec::new();
        for (key, value) in o {
            let len = at.len();
            *at = child(at, key);
            match key.as_str() {
                "$ref" => {}
                k if k.starts_with("x-") || DROPPED.contains(&k) => {}
                "example" => examples.insert(0, (value.clone(), at.clone())),
                "examples" => {
                    if let Some(list) = value.as_array() {
                        for (i, ex) in list.iter().enumerate() {
                            examples.push((ex.clone(), child(at, &i.to_string())));
                        }
                    }
                }
                "$id" | "$anchor" | "$dynamicRef" | "$dynamicAnchor" | "$recursiveRef"
                | "$recursiveAnchor" => {
                    let at = at.clone();
                    self.note(
                        NoteKind::Unsupported,
                        &at,
                        format!("{key} is not supported and is ignored"),
                    );
                }
                "readOnly" | "writeOnly" | "deprecated" | "title" | "default" => {
                    out.insert(key.clone(), value.clone());
                }
                "exclusiveMinimum" | "exclusiveMaximum" if value.is_boolean() => {} // below
                "items" if value.is_array() => {
                    // Draft 4 tuple form.
                    let list = self.convert_list(value, at, deps);
                    out.insert("prefixItems".to_owned(), list);
                }
                k if ONE_SCHEMA.contains(&k) => {
                    let converted = self.convert(value, at, deps);
                    out.insert(key.clone(), converted);
                }
                k if SCHEMA_MAP.contains(&k) => {
                    if let Some(map) = value.as_object() {
                        let mut converted = Map::new();
                        for (name, schema) in map {
                            let len = at.len();
                            *at = child(at, name);
                            converted.insert(name.clone(), self.convert(schema, at, deps));
                            at.truncate(len);
                        }
                        out.insert(key.clone(), Value::Object(converted));
                    } else {
                        let at = at.clone();
                        self.note(
                            NoteKind::Unsupported,
                            &at,
                            "must be an object of schemas; ignored",
                        );
                    }
                }
                k if SCHEMA_LIST.contains(&k) => {
                    if value.as_array().is_some_and(|a| !a.is_empty()) {
                        let list = self.convert_list(value, at, deps);
                        out.insert(key.clone(), list);
                    } else {
                        let at = at.clone();
                        self.note(
                            NoteKind::Unsupported,
                            &at,
                            "must be a non-empty array of schemas; ignored",
                        );
                    }
                }
                "pattern" => match value.as_str() {
                    Some(p) if self.pattern_usable(p) => {
                        out.insert(key.clone(), value.clone());
                    }
                    _ => {
                        let at = at.clone();
                        self.note(
                            NoteKind::Unsupported,
                            &at,
                            format!("pattern {value} is dropped: the engine's linear-time regex cannot compile it"),
                        );
                    }
                },
                "required" => match value.as_array() {
                    Some(list) if list.iter().all(Value::is_string) => {
                        out.insert(key.clone(), value.clone());
                    }
                    _ => {
                        let at = at.clone();
                        self.note(
                            NoteKind::Unsupported,
                            &at,
                            "must be an array of property names; ignored",
                        );
                    }
                },
                "type" => {
                    let names =
                        ["null", "boolean", "object", "array", "number", "string", "integer"];
                    let ok = match value {
                        Value::String(t) => names.contains(&t.as_str()),
                        Value::Array(ts) => {
                            ts.iter().all(|t| t.as_str().is_some_and(|t| names.contains(&t)))
                        }
                        _ => false,
                    };
                    if ok {
                        out.insert(key.clone(), value.clone());
                    } else {
                        let at = at.clone();
                        self.note(
                            NoteKind::Unsupported,
                            &at,
                            format!("type {value} is not a JSON Schema type; ignored"),
                        );
                    }
                }
                "enum" if !value.is_array() => {
                    let at = at.clone();
                    self.note(NoteKind::Unsupported, &at, "enum must be an array; ignored");
                }
                "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" | "multipleOf"
                    if !value.is_number()
                        || (key == "multipleOf" && value.as_f64().is_none_or(|m| m <= 0.0)) =>
                {
                    let at = at.clone();
                    self.note(
                        NoteKind::Unsupported,
                        &at,
                        format!("{key} must be a number (multipleOf above 0); ignored"),
                    );
                }
                k if COUNTS.contains(&k) && value.as_u64().is_none() => {
                    let at = at.clone();
                    self.note(
                        NoteKind::Unsupported,
                        &at,
                        format!("{key} must be a non-negative integer; ignored"),
                    );
                }
                "format" | "uniqueItems" if !(value.is_string() || value.is_boolean()) => {}
                _ => {
                    out.insert(key.clone(), value.clone());
                }
            }
            at.truncate(len);
        }
        // 3.0's boolean exclusive bounds qualify minimum/maximum.
        for (flag, bound) in [("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")] {
            if o.get(flag).and_then(Value::as_bool) == Some(true)
                && let Some(b) = out.remove(bound)
            {
                out.insert(flag.to_owned(), b);
            }
        }
        self.apply_direction(o, &mut out);
        if !examples.is_empty() {
            let (values, places): (Vec<Value>, Vec<String>) = examples.into_iter().unzip();
            out.insert("examples".to_owned(), Value::Array(values));
            out.insert(EXAMPLE_AT.to_owned(), places.into_iter().map(Value::String).collect());
        }
        let nullable = self.v30 && o.get("nullable").and_then(Value::as_bool) == Some(true);
        if !nullable {
            return Value::Object(out);
        }
        let simple =
            !["allOf", "anyOf", "oneOf", "not", "$ref", "if"].iter().any(|k| out.contains_key(*k));
        if simple && let Some(Value::String(t)) = out.get("type") {
            let t = t.clone();
            out.insert("type".to_owned(), json!([t, "null"]));
            if let Some(Value::Array(values)) = out.get_mut("enum")
                && !values.contains(&Value::Null)
            {
                values.push(Value::Null);
            }
            return Value::Object(out);
        }
        if out.keys().all(|k| k == "title" || k == "default") {
            return Value::Object(out); // Accepts anything, null included.
        }
        // Examples stay outside, where they describe the nullable whole.
        let mut outer = Map::new();
        for k in ["examples", EXAMPLE_AT, "title", "default"] {
            if let Some(v) = out.remove(k) {
                outer.insert(k.to_owned(), v);
            }
        }
        outer.insert("anyOf".to_owned(), json!([Value::Object(out), {"type": "null"}]));
        Value::Object(outer)
    }

    fn convert_list(&mut self, value: &Value, at: &mut String, deps: &mut Vec<String>) -> Value {
        let items = value.as_array().map(Vec::as_slice).unwrap_or_default();
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let len = at.len();
            *at = child(at, &i.to_string());
            out.push(self.convert(item, at, deps));
            at.truncate(len);
        }
        Value::Array(out)
    }

    /// `readOnly` properties are not required of requests; `writeOnly` ones are not sent in
    /// responses.
    fn apply_direction(&self, original: &Map<String, Value>, out: &mut Map<String, Value>) {
        let Some(props) = original.get("properties").and_then(Value::as_object) else { return };
        let flag = match self.direction {
            Direction::Request => "readOnly",
            Direction::Response => "writeOnly",
        };
        let flagged: Vec<&String> = props
            .iter()
            .filter(|(_, schema)| {
                let direct = schema.get(flag).and_then(Value::as_bool) == Some(true);
                let referenced = schema
                    .get("$ref")
                    .and_then(Value::as_str)
                    .and_then(local_pointer)
                    .and_then(|p| self.doc.get(&p))
                    .and_then(|s| s.get(flag))
                    .and_then(Value::as_bool)
                    == Some(true);
                direct || referenced
            })
            .map(|(name, _)| name)
            .collect();
        if flagged.is_empty() {
            return;
        }
        if let Some(Value::Array(required)) = out.get_mut("required") {
            required.retain(|r| !flagged.iter().any(|f| r.as_str() == Some(f.as_str())));
        }
        if self.direction == Direction::Response
            && let Some(Value::Object(converted)) = out.get_mut("properties")
        {
            for name in &flagged {
                converted.remove(name.as_str());
            }
        }
    }

    fn pattern_usable(&mut self, pattern: &str) -> bool {
        if let Some(ok) = self.patterns.get(pattern) {
            return *ok;
        }
        let ok = compile_schema("pattern", &json!({ "pattern": pattern })).is_ok();
        self.patterns.insert(pattern.to_owned(), ok);
        ok
    }

    /// Checks every kept example in `schema` against the schema it belongs to; an example
    /// that breaks it is dropped (so data is generated instead) and reported.
    fn check_examples(&mut self, schema: &mut Value, checker: &mut Checker) {
        let Value::Object(o) = schema else { return };
        if let Some(Value::Array(places)) = o.remove(EXAMPLE_AT) {
            let examples = match o.remove("examples") {
                Some(Value::Array(e)) => e,
                _ => Vec::new(),
            };
            let validator = self.validator(checker, &Value::Object(o.clone()));
            let mut kept = Vec::new();
            for (example, place) in examples.into_iter().zip(places) {
                let place = place.as_str().unwrap_or_default().to_owned();
                match &validator {
                    Some(v) => {
                        let errors = errors(v, &example);
                        if errors.is_empty() {
                            kept.push(example);
                        } else {
                            self.notes.push(
                                Note::new(
                                    NoteKind::InvalidExample,
                                    place,
                                    "this schema example does not conform to its schema; data is generated instead",
                                )
                                .with_errors(errors),
                            );
                        }
                    }
                    None => kept.push(example),
                }
            }
            if !kept.is_empty() {
                o.insert("examples".to_owned(), Value::Array(kept));
            }
        }
        for (key, value) in o.iter_mut() {
            let key = key.as_str();
            if ONE_SCHEMA.contains(&key) {
                self.check_examples(value, checker);
            } else if SCHEMA_MAP.contains(&key) {
                if let Value::Object(map) = value {
                    for v in map.values_mut() {
                        self.check_examples(v, checker);
                    }
                }
            } else if SCHEMA_LIST.contains(&key)
                && let Value::Array(list) = value
            {
                for v in list {
                    self.check_examples(v, checker);
                }
            }
        }
    }
}

impl super::generate::Lookup for Converter<'_> {
    fn resolve(&self, reference: &str) -> Option<&Value> {
        self.lookup(reference)
    }
}

/// Calls `found` with the `$defs` name of every `#/$defs/…` reference in `schema`.
fn collect_refs(schema: &Value, found: &mut impl FnMut(&str)) {
    each_schema(schema, &mut |o| {
        if let Some(name) =
            o.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/"))
        {
            found(name.split('/').next().unwrap_or(name));
        }
    });
}

/// The subschemas directly under a schema object's keywords, with their keywords.
fn subschemas(o: &Map<String, Value>) -> impl Iterator<Item = &Value> {
    o.iter().flat_map(|(k, v)| {
        let k = k.as_str();
        let list: Vec<&Value> = if ONE_SCHEMA.contains(&k) || SCHEMA_LIST.contains(&k) {
            // `items` may be draft 4's array form.
            match v {
                Value::Array(a) => a.iter().collect(),
                v => vec![v],
            }
        } else if SCHEMA_MAP.contains(&k) {
            v.as_object().map(|m| m.values().collect()).unwrap_or_default()
        } else {
            Vec::new()
        };
        list
    })
}

/// Calls `f` with every schema object in `schema`, itself first, following only keywords
/// that hold schemas: a property named `enum` or `examples` is a schema like any other, and
/// an `enum` value that looks like a schema is not one.
pub(crate) fn each_schema<'v>(schema: &'v Value, f: &mut impl FnMut(&'v Map<String, Value>)) {
    if let Value::Object(o) = schema {
        f(o);
        for sub in subschemas(o) {
            each_schema(sub, f);
        }
    }
}

/// Like [`each_schema`], mutably.
pub(crate) fn each_schema_mut(schema: &mut Value, f: &mut impl FnMut(&mut Map<String, Value>)) {
    let Value::Object(o) = schema else { return };
    f(o);
    for (k, v) in o.iter_mut() {
        let k = k.as_str();
        if ONE_SCHEMA.contains(&k) || SCHEMA_LIST.contains(&k) {
            match v {
                Value::Array(a) => a.iter_mut().for_each(|s| each_schema_mut(s, f)),
                v => each_schema_mut(v, f),
            }
        } else if SCHEMA_MAP.contains(&k)
            && let Value::Object(m) = v
        {
            m.values_mut().for_each(|s| each_schema_mut(s, f));
        }
    }
}

/// Removes `examples` from every schema object: validation schemas travel in every
/// snapshot, and examples are not needed to validate.
pub(crate) fn strip_examples(schema: &mut Value) {
    each_schema_mut(schema, &mut |o| {
        o.remove("examples");
    });
}

/// Compiled validators, by a key that identifies the schema (see the module docs), compiled
/// with the engine's own options so that what passes here passes there.
#[derive(Default)]
pub(crate) struct Checker {
    cache: HashMap<(Direction, String), Option<Rc<jsonschema::Validator>>>,
    /// Schemas that did not compile, with why: reported once by whoever asked.
    pub(crate) failures: Vec<String>,
}

impl Checker {
    /// The validator of a self-contained schema, compiled once per `key`.
    pub(crate) fn get(
        &mut self,
        key: (Direction, String),
        schema: &Value,
    ) -> Option<Rc<jsonschema::Validator>> {
        match self.cache.get(&key) {
            Some(v) => v.clone(),
            None => self.compile(key, schema),
        }
    }

    fn compile(
        &mut self,
        key: (Direction, String),
        schema: &Value,
    ) -> Option<Rc<jsonschema::Validator>> {
        let compiled = match compile_schema("schema", schema) {
            Ok(v) => Some(Rc::new(v)),
            Err(e) => {
                self.failures.push(e.message);
                None
            }
        };
        self.cache.insert(key, compiled.clone());
        compiled
    }
}

/// A value's schema errors, as `/pointer: message`, at most 8, each at most 400 characters.
/// Messages leave the instance out (it may be a whole response); for `oneOf` and `anyOf` they
/// say why each branch failed, since "valid under none of the schemas" alone helps nobody.
pub(crate) fn errors(validator: &jsonschema::Validator, value: &Value) -> Vec<String> {
    validator.iter_errors(value).take(8).map(|e| truncate(describe(&e), 400)).collect()
}

fn describe(e: &jsonschema::ValidationError<'_>) -> String {
    let path = e.instance_path().to_string();
    let base = format!("{}: {}", if path.is_empty() { "/" } else { &path }, e.masked());
    match e.kind() {
        jsonschema::error::ValidationErrorKind::AnyOf { context }
        | jsonschema::error::ValidationErrorKind::OneOfNotValid { context } => {
            let branches: Vec<String> = context
                .iter()
                .enumerate()
                .map(|(i, errs)| {
                    let why: Vec<String> = errs
                        .iter()
                        .take(2)
                        .map(|e| {
                            let p = e.instance_path().to_string();
                            format!("{} {}", if p.is_empty() { "/" } else { &p }, e.masked())
                        })
                        .collect();
                    format!("branch {i}: {}", why.join(", "))
                })
                .collect();
            format!("{base} ({})", branches.join("; "))
        }
        _ => base,
    }
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max - 3;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(version: &str, schemas: Value) -> Document {
        let text = json!({
            "openapi": version, "info": {"title": "t", "version": "1"}, "paths": {},
            "components": {"schemas": schemas}
        });
        Document::parse(text.to_string().as_bytes()).unwrap()
    }

    fn convert(
        version: &str,
        schemas: Value,
        name: &str,
        direction: Direction,
    ) -> (Value, Vec<Note>) {
        let d = doc(version, schemas);
        let mut c = Converter::new(&d, direction);
        let v = c.schema_at(&format!("/components/schemas/{name}"), &mut Checker::default());
        (v, c.notes)
    }

    #[test]
    fn openapi_30_keywords_become_json_schema() {
        let (v, notes) = convert(
            "3.0.3",
            json!({"A": {
                "type": "object", "required": ["n", "e", "r"], "description": "dropped",
                "x-internal": true, "discriminator": {"propertyName": "n"},
                "properties": {
                    "n": {"type": "integer", "nullable": true, "minimum": 1, "exclusiveMinimum": true, "example": 5},
                    "e": {"type": "string", "enum": ["a"], "nullable": true},
                    "r": {"nullable": true, "allOf": [{"$ref": "#/components/schemas/B"}]},
                    "s": {"$ref": "#/components/schemas/B", "description": "ignored in 3.0"},
                }
            }, "B": {"type": "string", "maxLength": 3}}),
            "A",
            Direction::Response,
        );
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(
            v,
            json!({
                "type": "object", "required": ["n", "e", "r"],
                "properties": {
                    "n": {"type": ["integer", "null"], "exclusiveMinimum": 1, "examples": [5]},
                    "e": {"type": ["string", "null"], "enum": ["a", null]},
                    "r": {"anyOf": [{"allOf": [{"$ref": "#/$defs/B"}]}, {"type": "null"}]},
                    "s": {"$ref": "#/$defs/B"},
                },
                "$defs": {"B": {"type": "string", "maxLength": 3}}
            })
        );
        let validator = compile_schema("s", &v).unwrap();
        assert!(validator.is_valid(&json!({"n": null, "e": null, "r": null})));
        assert!(validator.is_valid(&json!({"n": 2, "e": "a", "r": "abc", "s": "x"})));
        assert!(!validator.is_valid(&json!({"n": 1, "e": "a", "r": "abc"})), "exclusive minimum");
        assert!(
            !validator.is_valid(&json!({"n": 2, "e": "a", "r": "abcd"})),
            "the $ref'd maxLength"
        );
    }

    #[test]
    fn recursive_refs_and_read_write_only() {
        let schemas = json!({
            "Node": {"type": "object", "required": ["id", "secret"], "properties": {
                "id": {"type": "integer", "readOnly": true},
                "secret": {"type": "string", "writeOnly": true},
                "children": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
            }}
        });
        let (req, _) = convert("3.1.0", schemas.clone(), "Node", Direction::Request);
        assert_eq!(req["$ref"], json!(null));
        assert_eq!(req["required"], json!(["secret"]));
        assert_eq!(req["properties"]["children"]["items"], json!({"$ref": "#/$defs/Node"}));
        let (resp, _) = convert("3.1.0", schemas, "Node", Direction::Response);
        assert_eq!(resp["required"], json!(["id"]));
        assert!(resp["properties"].get("secret").is_none());
        let v = compile_schema("s", &resp).unwrap();
        assert!(v.is_valid(&json!({"id": 1, "children": [{"id": 2, "children": []}]})));
        assert!(!v.is_valid(&json!({"id": 1, "children": [{"children": []}]})));
    }

    #[test]
    fn keywords_are_told_from_property_names() {
        let (mut v, _) = convert(
            "3.1.0",
            json!({"A": {"type": "object", "properties": {
                "examples": {"$ref": "#/components/schemas/B", "examples": [1]},
                "enum": {"$ref": "#/components/schemas/C"},
                "default": {"type": "string", "enum": [{"$ref": "not a reference"}]},
            }}, "B": {"type": "integer"}, "C": {"type": "boolean"}}),
            "A",
            Direction::Request,
        );
        assert_eq!(v["$defs"], json!({"B": {"type": "integer"}, "C": {"type": "boolean"}}));
        strip_examples(&mut v);
        assert!(v["properties"].get("examples").is_some(), "a property, not the keyword");
        assert_eq!(v["properties"]["examples"].get("examples"), None);
        assert_eq!(v["properties"]["default"]["enum"], json!([{"$ref": "not a reference"}]));
        assert!(compile_schema("s", &v).is_ok());
    }

    #[test]
    fn openapi_31_ref_siblings_apply() {
        let (v, _) = convert(
            "3.1.0",
            json!({"A": {"$ref": "#/components/schemas/B", "maxLength": 2}, "B": {"type": "string"}}),
            "A",
            Direction::Response,
        );
        let v = compile_schema("s", &v).unwrap();
        assert!(v.is_valid(&json!("ab")));
        assert!(!v.is_valid(&json!("abc")));
        assert!(!v.is_valid(&json!(1)));
    }

    #[test]
    fn bad_parts_are_dropped_and_reported() {
        let (v, notes) = convert(
            "3.1.0",
            json!({"A": {"type": "object", "properties": {
                "look": {"type": "string", "pattern": "^(a)\\1$"},
                "ext": {"$ref": "other.yaml#/Pet"},
                "gone": {"$ref": "#/components/schemas/Missing"},
                "bad": {"type": "strin", "minLength": -1, "required": true},
                "ex": {"type": "string", "format": "date", "examples": ["2024-01-01T00:00:00Z", "2024-01-01"]},
            }}}),
            "A",
            Direction::Response,
        );
        let places: Vec<&str> = notes.iter().map(|n| n.location.as_str()).collect();
        assert_eq!(
            places,
            [
                "/components/schemas/A/properties/bad/minLength",
                "/components/schemas/A/properties/bad/required",
                "/components/schemas/A/properties/bad/type",
                "/components/schemas/A/properties/ext/$ref",
                "/components/schemas/A/properties/gone/$ref",
                "/components/schemas/A/properties/look/pattern",
                "/components/schemas/A/properties/ex/examples/0",
            ],
            "{notes:#?}"
        );
        assert_eq!(notes[6].kind, NoteKind::InvalidExample);
        assert_eq!(v["properties"]["ex"]["examples"], json!(["2024-01-01"]));
        assert!(compile_schema("s", &v).is_ok());
    }
}
