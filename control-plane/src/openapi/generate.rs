//! Sample data from JSON Schema, deterministic for a seed and verified with `jsonschema`.
//!
//! The generator reads a schema the way a validator would, merging `$ref` and `allOf` into one
//! set of constraints ([`Flat`]) before choosing a value, then builds the value from them:
//! `const`, then `oneOf` (each candidate checked to match exactly one branch, other branches and
//! a leaner variant tried when it does not), `anyOf`, `enum`, conforming examples, and
//! otherwise a value of an allowed type within its bounds (`format`s, `pattern`s via
//! `rand_regex`, lengths, `multipleOf`, item and property counts, `required`,
//! `additionalProperties`, `patternProperties`, `uniqueItems`, `contains`).
//!
//! Recursion is bounded: past [`SOFT_DEPTH`] levels (or [`NODE_BUDGET`] values) objects get
//! only their required properties, arrays their minimum items, and nullable values `null`;
//! past [`HARD_DEPTH`] generation gives up. Whatever comes out is then validated against the
//! whole schema; a value that fails is regenerated (without examples, with other draws, then
//! leaner) and, if no attempt conforms, the closest is returned with its errors.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use base64::Engine as _;
use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use regex_syntax::hir::{
    Class, ClassBytes, ClassBytesRange, ClassUnicode, ClassUnicodeRange, Hir, HirKind,
};
use serde_json::{Map, Value, json};

use super::document::local_pointer;
use super::schema::{Checker, Direction, errors};

/// Depth after which only what is required is generated.
const SOFT_DEPTH: usize = 5;
/// Depth at which generation gives up (a schema that requires infinite nesting).
const HARD_DEPTH: usize = 40;
/// Values generated per attempt after which only what is required is generated.
const NODE_BUDGET: usize = 4000;
/// Attempts before giving up on a schema.
const ATTEMPTS: u64 = 6;

const NULL: u8 = 1;
const BOOL: u8 = 2;
const OBJ: u8 = 4;
const ARR: u8 = 8;
/// Numbers that are not integers.
const NUM: u8 = 16;
const STR: u8 = 32;
const INT: u8 = 64;
const ANY: u8 = 127;

const WORDS: [&str; 32] = [
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
    "enim",
    "ad",
    "minim",
    "veniam",
    "quis",
    "nostrud",
    "exercitation",
    "ullamco",
    "laboris",
    "nisi",
    "aliquip",
    "ex",
    "commodo",
];

/// Why no conforming value was found.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GenerateError {
    /// The schema does not compile with the engine's JSON Schema options.
    #[error("the schema is not usable: {0}")]
    Schema(String),
    /// Every attempt broke the schema; `closest` is the last attempt, `errors` why it fails.
    #[error("no value conforming to the schema was found: {}", errors.join("; "))]
    NoConformingValue { closest: Option<Value>, errors: Vec<String> },
}

/// Generates a value that conforms to `schema`, a self-contained JSON Schema (local `$ref`s
/// only, as [`super::Document::json_schema`] produces), deterministic for `seed`, verified with
/// the engine's `jsonschema` options (formats asserted).
pub fn generate(schema: &Value, seed: u64) -> Result<Value, GenerateError> {
    let validator = edgemock_shared::engine::compile_schema("schema", schema)
        .map_err(|e| GenerateError::Schema(e.message))?;
    let lookup = SelfContained(schema);
    let mut checker = Checker::default();
    verified(&lookup, &mut checker, Direction::Response, schema, Some(&validator), seed, true)
        .map(|g| g.value)
        .map_err(|(closest, errors)| GenerateError::NoConformingValue { closest, errors })
}

/// How the generator finds what a `$ref` names.
pub(crate) trait Lookup {
    fn resolve(&self, reference: &str) -> Option<&Value>;
}

/// A schema that carries its own `$defs`.
struct SelfContained<'v>(&'v Value);

impl Lookup for SelfContained<'_> {
    fn resolve(&self, reference: &str) -> Option<&Value> {
        self.0.pointer(&local_pointer(reference)?)
    }
}

/// `schema` with every `#/$defs/…` it reaches (through `lookup`) attached.
pub(crate) fn bundle(lookup: &dyn Lookup, schema: &Value) -> Value {
    let mut defs = Map::new();
    let mut queue = Vec::new();
    refs(schema, &mut queue);
    while let Some(name) = queue.pop() {
        if defs.contains_key(&name) {
            continue;
        }
        if let Some(target) = lookup.resolve(&format!("#/$defs/{name}")) {
            refs(target, &mut queue);
            defs.insert(name, target.clone());
        }
    }
    match schema {
        Value::Object(o) if !defs.is_empty() => {
            let mut o = o.clone();
            o.insert("$defs".to_owned(), Value::Object(defs));
            Value::Object(o)
        }
        other => other.clone(),
    }
}

fn refs(schema: &Value, out: &mut Vec<String>) {
    super::schema::each_schema(schema, &mut |o| {
        if let Some(name) =
            o.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/"))
        {
            out.push(name.split('/').next().unwrap_or(name).to_owned());
        }
    });
}

/// A value that passed verification.
pub(crate) struct Generated {
    pub(crate) value: Value,
    /// Set when the first attempt, built from schema examples, failed verification: why.
    pub(crate) example_errors: Vec<String>,
}

/// Generates from `schema` until a value passes `validator` (when there is one); see the
/// module documentation. The error carries the closest attempt and its errors.
pub(crate) fn verified(
    lookup: &dyn Lookup,
    checker: &mut Checker,
    direction: Direction,
    schema: &Value,
    validator: Option<&jsonschema::Validator>,
    seed: u64,
    use_examples: bool,
) -> Result<Generated, (Option<Value>, Vec<String>)> {
    let mut example_errors = Vec::new();
    let mut closest = None;
    let mut closest_errors = Vec::new();
    for attempt in 0..ATTEMPTS {
        let with_examples = use_examples && attempt == 0;
        // Attempt 1 repeats attempt 0's draws without examples: if it passes, examples were
        // the problem.
        let draw = if attempt == 0 { 0 } else { attempt - 1 };
        let mut g = Generator {
            lookup,
            checker: &mut *checker,
            direction,
            rng: ChaCha8Rng::seed_from_u64(seed ^ draw.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            use_examples: with_examples,
            minimal: attempt >= 4,
            nodes: 0,
            level: 0,
            regexes: HashMap::new(),
        };
        match g.gen_value(schema, 0) {
            Ok(value) => {
                let errs = validator.map(|v| errors(v, &value)).unwrap_or_default();
                if errs.is_empty() {
                    return Ok(Generated { value, example_errors });
                }
                if with_examples {
                    example_errors.clone_from(&errs);
                }
                closest = Some(value);
                closest_errors = errs;
            }
            Err(e) => {
                if closest.is_none() {
                    closest_errors = vec![e.to_owned()];
                }
            }
        }
    }
    Err((closest, closest_errors))
}

/// The constraints of one schema with its `$ref`s and `allOf`s merged in.
#[derive(Clone)]
struct Flat<'a> {
    types: u8,
    consts: Vec<&'a Value>,
    enums: Vec<&'a Vec<Value>>,
    examples: Vec<&'a Value>,
    properties: BTreeMap<&'a str, Vec<&'a Value>>,
    required: BTreeSet<&'a str>,
    additional: Vec<&'a Value>,
    pattern_properties: Vec<(&'a str, &'a Value)>,
    property_names: Vec<&'a Value>,
    dependent_required: Vec<(&'a str, &'a Vec<Value>)>,
    min_properties: Option<u64>,
    max_properties: Option<u64>,
    items: Vec<&'a Value>,
    prefix_items: Option<&'a Vec<Value>>,
    contains: Vec<&'a Value>,
    min_contains: Option<u64>,
    min_items: Option<u64>,
    max_items: Option<u64>,
    unique_items: bool,
    min_length: Option<u64>,
    max_length: Option<u64>,
    patterns: Vec<&'a str>,
    format: Option<&'a str>,
    content_encoding: Option<&'a str>,
    minimum: Option<f64>,
    exclusive_minimum: Option<f64>,
    maximum: Option<f64>,
    exclusive_maximum: Option<f64>,
    multiple_of: Vec<f64>,
    one_ofs: Vec<&'a Vec<Value>>,
    any_ofs: Vec<&'a Vec<Value>>,
    /// `if`, `then`, `else`.
    conditions: Vec<(&'a Value, Option<&'a Value>, Option<&'a Value>)>,
    unsatisfiable: bool,
}

impl Default for Flat<'_> {
    fn default() -> Self {
        Self {
            types: ANY,
            consts: Vec::new(),
            enums: Vec::new(),
            examples: Vec::new(),
            properties: BTreeMap::new(),
            required: BTreeSet::new(),
            additional: Vec::new(),
            pattern_properties: Vec::new(),
            property_names: Vec::new(),
            dependent_required: Vec::new(),
            min_properties: None,
            max_properties: None,
            items: Vec::new(),
            prefix_items: None,
            contains: Vec::new(),
            min_contains: None,
            min_items: None,
            max_items: None,
            unique_items: false,
            min_length: None,
            max_length: None,
            patterns: Vec::new(),
            format: None,
            content_encoding: None,
            minimum: None,
            exclusive_minimum: None,
            maximum: None,
            exclusive_maximum: None,
            multiple_of: Vec::new(),
            one_ofs: Vec::new(),
            any_ofs: Vec::new(),
            conditions: Vec::new(),
            unsatisfiable: false,
        }
    }
}

fn type_bits(name: &str) -> u8 {
    match name {
        "null" => NULL,
        "boolean" => BOOL,
        "object" => OBJ,
        "array" => ARR,
        "number" => NUM | INT,
        "string" => STR,
        "integer" => INT,
        _ => ANY,
    }
}

fn bits_of(value: &Value) -> u8 {
    match value {
        Value::Null => NULL,
        Value::Bool(_) => BOOL,
        Value::Object(_) => OBJ,
        Value::Array(_) => ARR,
        Value::String(_) => STR,
        Value::Number(n) => {
            if n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0) {
                INT
            } else {
                NUM
            }
        }
    }
}

fn max_opt(a: Option<f64>, b: f64) -> Option<f64> {
    Some(a.map_or(b, |a| a.max(b)))
}

fn min_opt(a: Option<f64>, b: f64) -> Option<f64> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// Keys that do not constrain anything: a schema of only these and `$ref` is the referenced
/// schema itself, so the referenced schema's examples describe it.
fn only_annotations(o: &Map<String, Value>) -> bool {
    o.keys().all(|k| {
        matches!(
            k.as_str(),
            "$ref" | "title" | "description" | "readOnly" | "writeOnly" | "deprecated" | "default"
        )
    })
}

struct Generator<'a, 'c> {
    lookup: &'a dyn Lookup,
    checker: &'c mut Checker,
    direction: Direction,
    rng: ChaCha8Rng,
    use_examples: bool,
    minimal: bool,
    nodes: usize,
    /// Nesting of `gen_flat` calls: `oneOf`/`anyOf` recurse without going deeper in the value.
    level: usize,
    regexes: HashMap<String, Option<Pattern>>,
}

type Gen<T> = Result<T, &'static str>;

/// A `pattern` compiled twice: to sample strings from, and to check strings with.
struct Pattern {
    sampler: Option<rand_regex::Regex>,
    matcher: Option<regex::Regex>,
}

impl<'a> Generator<'a, '_> {
    fn flatten(&self, f: &mut Flat<'a>, schema: &'a Value, hops: usize, take_examples: bool) {
        let o = match schema {
            Value::Bool(true) => return,
            Value::Object(o) => o,
            _ => {
                f.unsatisfiable = true;
                return;
            }
        };
        // A `$ref` cycle that never reaches a value (`A: {allOf: [A]}`) stops here.
        if hops > 48 {
            return;
        }
        if let Some(target) =
            o.get("$ref").and_then(Value::as_str).and_then(|r| self.lookup.resolve(r))
        {
            self.flatten(f, target, hops + 1, take_examples && only_annotations(o));
        }
        if let Some(Value::Array(all)) = o.get("allOf") {
            for member in all {
                self.flatten(f, member, hops + 1, false);
            }
        }
        for (key, value) in o {
            let num = value.as_f64();
            let count = value.as_u64();
            match key.as_str() {
                "type" => {
                    let bits = match value {
                        Value::String(t) => type_bits(t),
                        Value::Array(ts) => {
                            ts.iter().filter_map(Value::as_str).fold(0, |b, t| b | type_bits(t))
                        }
                        _ => ANY,
                    };
                    f.types &= bits;
                }
                "const" => f.consts.push(value),
                "enum" => {
                    if let Value::Array(values) = value {
                        f.enums.push(values);
                    }
                }
                "examples" if take_examples => {
                    if let Value::Array(values) = value {
                        f.examples.extend(values.iter());
                    }
                }
                "properties" => {
                    if let Value::Object(props) = value {
                        for (name, s) in props {
                            f.properties.entry(name.as_str()).or_default().push(s);
                        }
                    }
                }
                "required" => {
                    if let Value::Array(names) = value {
                        f.required.extend(names.iter().filter_map(Value::as_str));
                    }
                }
                "additionalProperties" => f.additional.push(value),
                "patternProperties" => {
                    if let Value::Object(props) = value {
                        f.pattern_properties.extend(props.iter().map(|(p, s)| (p.as_str(), s)));
                    }
                }
                "propertyNames" => f.property_names.push(value),
                "dependentRequired" => {
                    if let Value::Object(deps) = value {
                        for (name, list) in deps {
                            if let Value::Array(list) = list {
                                f.dependent_required.push((name.as_str(), list));
                            }
                        }
                    }
                }
                "minProperties" => f.min_properties = count.max(f.min_properties),
                "maxProperties" => {
                    f.max_properties = count.into_iter().chain(f.max_properties).min()
                }
                "items" => f.items.push(value),
                "prefixItems" => {
                    if let (Value::Array(list), None) = (value, f.prefix_items) {
                        f.prefix_items = Some(list);
                    }
                }
                "contains" => f.contains.push(value),
                "minContains" => f.min_contains = count.max(f.min_contains),
                "minItems" => f.min_items = count.max(f.min_items),
                "maxItems" => f.max_items = count.into_iter().chain(f.max_items).min(),
                "uniqueItems" => f.unique_items |= value.as_bool() == Some(true),
                "minLength" => f.min_length = count.max(f.min_length),
                "maxLength" => f.max_length = count.into_iter().chain(f.max_length).min(),
                "pattern" => f.patterns.extend(value.as_str()),
                "format" => f.format = f.format.or(value.as_str()),
                "contentEncoding" => f.content_encoding = value.as_str(),
                "minimum" => f.minimum = num.and_then(|n| max_opt(f.minimum, n)).or(f.minimum),
                "exclusiveMinimum" => {
                    f.exclusive_minimum =
                        num.and_then(|n| max_opt(f.exclusive_minimum, n)).or(f.exclusive_minimum);
                }
                "maximum" => f.maximum = num.and_then(|n| min_opt(f.maximum, n)).or(f.maximum),
                "exclusiveMaximum" => {
                    f.exclusive_maximum =
                        num.and_then(|n| min_opt(f.exclusive_maximum, n)).or(f.exclusive_maximum);
                }
                "multipleOf" => f.multiple_of.extend(num.filter(|m| *m > 0.0)),
                "oneOf" => {
                    if let Value::Array(branches) = value {
                        f.one_ofs.push(branches);
                    }
                }
                "anyOf" => {
                    if let Value::Array(branches) = value {
                        f.any_ofs.push(branches);
                    }
                }
                "if" => f.conditions.push((value, o.get("then"), o.get("else"))),
                _ => {}
            }
        }
    }

    fn gen_value(&mut self, schema: &'a Value, depth: usize) -> Gen<Value> {
        let mut f = Flat::default();
        self.flatten(&mut f, schema, 0, true);
        self.gen_flat(f, depth)
    }

    fn deep(&self, depth: usize) -> bool {
        self.minimal || depth >= SOFT_DEPTH || self.nodes > NODE_BUDGET
    }

    fn gen_flat(&mut self, f: Flat<'a>, depth: usize) -> Gen<Value> {
        if self.level > 4 * HARD_DEPTH || self.nodes > 20 * NODE_BUDGET {
            return Err("the schema is too large or recursive to generate from");
        }
        self.level += 1;
        let result = self.gen_flat_inner(f, depth);
        self.level -= 1;
        result
    }

    fn gen_flat_inner(&mut self, mut f: Flat<'a>, depth: usize) -> Gen<Value> {
        self.nodes += 1;
        if depth > HARD_DEPTH {
            return Err("the schema nests without end: no finite value found");
        }
        if f.unsatisfiable || f.types == 0 {
            return Err(
                "the schema allows no value (a false schema, or types that exclude each other)",
            );
        }
        if let Some(c) = f.consts.first() {
            return Ok((*c).clone());
        }
        if !f.one_ofs.is_empty() {
            let branches = f.one_ofs.remove(0);
            return self.gen_one_of(f, branches, depth);
        }
        if !f.any_ofs.is_empty() {
            let branches = f.any_ofs.remove(0);
            for i in self.branch_order(branches, depth) {
                let mut g = f.clone();
                self.flatten(&mut g, &branches[i], 0, true);
                if let Ok(v) = self.gen_flat(g, depth) {
                    return Ok(v);
                }
            }
            return Err("no anyOf branch could be satisfied");
        }
        if let Some((condition, then, otherwise)) = f.conditions.pop() {
            // A value made to meet `if` and `then` holds; so may one made to meet `else`
            // (verification decides).
            let mut met = f.clone();
            self.flatten(&mut met, condition, 0, false);
            if let Some(then) = then {
                self.flatten(&mut met, then, 0, false);
            }
            if let Ok(v) = self.gen_flat(met, depth) {
                return Ok(v);
            }
            if let Some(otherwise) = otherwise {
                self.flatten(&mut f, otherwise, 0, false);
            }
            return self.gen_flat(f, depth);
        }
        if !f.enums.is_empty() {
            return self.gen_enum(&f, depth);
        }
        if self.use_examples
            && let Some(example) = f.examples.iter().find(|e| fits(&f, e))
        {
            return Ok((*example).clone());
        }
        match self.choose_type(&f, depth) {
            NULL => Ok(Value::Null),
            BOOL => Ok(Value::Bool(self.rng.random_bool(0.5))),
            OBJ => self.gen_object(&f, depth),
            ARR => self.gen_array(&f, depth),
            STR => self.gen_string(&f),
            INT => self.gen_integer(&f),
            _ => self.gen_number(&f),
        }
    }

    fn choose_type(&self, f: &Flat<'a>, depth: usize) -> u8 {
        let allowed = f.types;
        if self.deep(depth) && allowed & NULL != 0 && allowed != ANY {
            return NULL;
        }
        let object_hint = !f.properties.is_empty()
            || !f.required.is_empty()
            || !f.additional.is_empty()
            || !f.pattern_properties.is_empty()
            || f.min_properties.is_some();
        let array_hint = !f.items.is_empty()
            || f.prefix_items.is_some()
            || f.min_items.is_some()
            || !f.contains.is_empty();
        let string_hint = f.min_length.is_some()
            || !f.patterns.is_empty()
            || f.format.is_some()
            || f.max_length.is_some();
        let number_hint = f.minimum.is_some()
            || f.maximum.is_some()
            || f.exclusive_minimum.is_some()
            || f.exclusive_maximum.is_some()
            || !f.multiple_of.is_empty();
        let numeric = if allowed & NUM != 0 { NUM } else { INT };
        let hinted =
            [(object_hint, OBJ), (array_hint, ARR), (string_hint, STR), (number_hint, numeric)];
        if let Some((_, t)) = hinted.iter().find(|(hint, t)| *hint && allowed & t != 0) {
            return *t;
        }
        [STR, OBJ, ARR, NUM, INT, BOOL, NULL].into_iter().find(|t| allowed & t != 0).unwrap_or(NULL)
    }

    /// Branches in a random order; when deep, those that allow only `null` first, so that a
    /// recursive `anyOf: [Node, null]` ends.
    fn branch_order(&mut self, branches: &'a [Value], depth: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..branches.len()).collect();
        self.shuffle(&mut order);
        if self.deep(depth) {
            let null_only: Vec<bool> = branches
                .iter()
                .map(|b| {
                    let mut f = Flat::default();
                    self.flatten(&mut f, b, 0, false);
                    f.types == NULL
                })
                .collect();
            order.sort_by_key(|i| !null_only[*i]);
        }
        order
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.rng.random_range(0..=i);
            items.swap(i, j);
        }
    }

    fn gen_one_of(&mut self, f: Flat<'a>, branches: &'a [Value], depth: usize) -> Gen<Value> {
        let validators: Vec<Option<Rc<jsonschema::Validator>>> =
            branches.iter().map(|b| self.branch_validator(b)).collect();
        let order = self.branch_order(branches, depth);
        let mut closest = None;
        let saved = self.minimal;
        let modes: &[bool] = if saved { &[true] } else { &[false, true] };
        for &minimal in modes {
            self.minimal = minimal;
            for &i in &order {
                for _ in 0..2 {
                    let mut g = f.clone();
                    self.flatten(&mut g, &branches[i], 0, true);
                    let Ok(mut value) = self.gen_flat(g, depth) else { break };
                    let mut matching = matching_branches(&validators, i, &value);
                    if matching != [i] && value.is_object() {
                        value = self.distinguish(branches, &validators, i, value);
                        matching = matching_branches(&validators, i, &value);
                    }
                    if matching == [i] {
                        self.minimal = saved;
                        return Ok(value);
                    }
                    closest = Some(value);
                }
            }
        }
        self.minimal = saved;
        closest.ok_or("no oneOf branch could be satisfied")
    }

    /// Objects that match branch `i` and others too: sets a property that another branch
    /// constrains and branch `i` leaves open to a value the other branch refuses (two
    /// branches of optional properties each accept every object, `{}` included, but not
    /// `{"metadata": "x"}` when one of them says `metadata` is an object).
    fn distinguish(
        &mut self,
        branches: &'a [Value],
        validators: &[Option<Rc<jsonschema::Validator>>],
        i: usize,
        mut value: Value,
    ) -> Value {
        let mine = {
            let mut f = Flat::default();
            self.flatten(&mut f, &branches[i], 0, false);
            f
        };
        let Some(own) = validators[i].clone() else { return value };
        let fillers = [json!("x"), json!(0), json!(true), json!(null), json!([]), json!({})];
        for (j, branch) in branches.iter().enumerate() {
            let Some(other) = validators[j].clone() else { continue };
            if j == i || !other.is_valid(&value) {
                continue;
            }
            let mut theirs = Flat::default();
            self.flatten(&mut theirs, branch, 0, false);
            let open = mine.additional.iter().all(|a| **a != Value::Bool(false));
            let names: Vec<&str> = theirs
                .properties
                .keys()
                .copied()
                .filter(|n| open && !mine.properties.contains_key(n))
                .collect();
            'names: for name in names {
                for filler in &fillers {
                    let mut candidate = value.clone();
                    if let Value::Object(o) = &mut candidate {
                        o.insert(name.to_owned(), filler.clone());
                    }
                    if own.is_valid(&candidate) && !other.is_valid(&candidate) {
                        value = candidate;
                        break 'names;
                    }
                }
            }
        }
        value
    }

    fn branch_validator(&mut self, branch: &Value) -> Option<Rc<jsonschema::Validator>> {
        let bundled = bundle(self.lookup, branch);
        self.checker.get((self.direction, bundled.to_string()), &bundled)
    }

    fn gen_enum(&mut self, f: &Flat<'a>, depth: usize) -> Gen<Value> {
        let (first, rest) = f.enums.split_first().ok_or("no enum")?;
        let candidates: Vec<&Value> = first
            .iter()
            .filter(|v| rest.iter().all(|other| other.contains(v)) && fits(f, v))
            .collect();
        let preferred: Vec<&Value> = if self.deep(depth) && candidates.contains(&&Value::Null) {
            vec![&Value::Null]
        } else {
            let non_null: Vec<&Value> =
                candidates.iter().copied().filter(|v| !v.is_null()).collect();
            if non_null.is_empty() { candidates } else { non_null }
        };
        if preferred.is_empty() {
            return Err("no enum value fits the other constraints");
        }
        let i = self.rng.random_range(0..preferred.len());
        Ok(preferred[i].clone())
    }

    fn gen_object(&mut self, f: &Flat<'a>, depth: usize) -> Gen<Value> {
        let deep = self.deep(depth);
        let mut names: Vec<&'a str> = f.required.iter().copied().collect();
        let max = f.max_properties.map_or(usize::MAX, |m| usize::try_from(m).unwrap_or(usize::MAX));
        if !deep {
            for name in f.properties.keys() {
                if names.len() >= max {
                    break;
                }
                if !f.required.contains(name) {
                    names.push(name);
                }
            }
        }
        // dependentRequired: a present property brings the ones it needs.
        let mut i = 0;
        while i < names.len() {
            for (name, needed) in &f.dependent_required {
                if *name == names[i] {
                    for n in needed.iter().filter_map(Value::as_str) {
                        if !names.contains(&n) {
                            names.push(n);
                        }
                    }
                }
            }
            i += 1;
        }
        let mut out = Map::new();
        for name in names {
            let required = f.required.contains(name);
            match self.property_value(f, name, depth) {
                Ok(Some(v)) => {
                    out.insert(name.to_owned(), v);
                }
                Ok(None) if !required => {}
                Ok(None) => {
                    return Err("a required property is not allowed by additionalProperties");
                }
                Err(_) if !required => {}
                Err(e) => return Err(e),
            }
        }
        let min = f.min_properties.map_or(0, |m| usize::try_from(m).unwrap_or(usize::MAX));
        let wants_entry = !deep
            && f.properties.is_empty()
            && out.is_empty()
            && max > 0
            && f.additional.iter().any(|a| a.is_object());
        let target = if wants_entry { min.max(1) } else { min };
        let mut n = 0;
        while out.len() < target && n < target + 64 {
            n += 1;
            let key = self.extra_key(f, n);
            if out.contains_key(&key) {
                continue;
            }
            if let Ok(Some(v)) = self.property_value(f, &key, depth) {
                out.insert(key, v);
            }
        }
        if out.len() < min {
            return Err("minProperties cannot be met");
        }
        Ok(Value::Object(out))
    }

    /// The value of property `name` from every schema that applies to it (`properties`,
    /// matching `patternProperties`, else `additionalProperties`); `None` when no property of
    /// that name is allowed.
    fn property_value(&mut self, f: &Flat<'a>, name: &str, depth: usize) -> Gen<Option<Value>> {
        let mut g = Flat::default();
        let mut applies = false;
        if let Some(schemas) = f.properties.get(name) {
            applies = true;
            for s in schemas {
                self.flatten(&mut g, s, 0, true);
            }
        }
        for (pattern, s) in &f.pattern_properties {
            if self.matches(pattern, name) {
                applies = true;
                self.flatten(&mut g, s, 0, true);
            }
        }
        if !applies {
            for s in &f.additional {
                self.flatten(&mut g, s, 0, true);
            }
        }
        if g.unsatisfiable && !applies {
            return Ok(None);
        }
        self.gen_flat(g, depth + 1).map(Some)
    }

    fn extra_key(&mut self, f: &Flat<'a>, n: usize) -> String {
        let patterns: Vec<&'a str> = f
            .property_names
            .iter()
            .filter_map(|s| s.get("pattern").and_then(Value::as_str))
            .chain(if f.additional.iter().any(|a| a == &&Value::Bool(false)) {
                f.pattern_properties.first().map(|(p, _)| *p)
            } else {
                None
            })
            .collect();
        if let Some(p) = patterns.first()
            && let Some(key) = self.sample_pattern(p, 1, 64)
        {
            return key;
        }
        format!("key{n}")
    }

    fn gen_array(&mut self, f: &Flat<'a>, depth: usize) -> Gen<Value> {
        let deep = self.deep(depth);
        let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let min = f.min_items.map_or(0, to_usize);
        let prefix: &'a [Value] = f.prefix_items.map(Vec::as_slice).unwrap_or_default();
        let closed = f.items.iter().any(|s| **s == Value::Bool(false));
        let mut cap = f.max_items.map_or(usize::MAX, to_usize);
        if closed {
            cap = cap.min(prefix.len());
        }
        let contains = if f.contains.is_empty() { 0 } else { f.min_contains.map_or(1, to_usize) };
        let mut target = if deep { min } else { min.max(1).max(prefix.len()) };
        target = target.max(contains).min(cap).min(min.max(64));
        if target < min {
            return Err("minItems cannot be met");
        }
        let mut out: Vec<Value> = Vec::with_capacity(target);
        for i in 0..target {
            let mut value = None;
            for _ in 0..if f.unique_items { 12 } else { 1 } {
                let mut g = Flat::default();
                match prefix.get(i) {
                    Some(s) => self.flatten(&mut g, s, 0, true),
                    None => {
                        for s in &f.items {
                            self.flatten(&mut g, s, 0, true);
                        }
                    }
                }
                if i < contains {
                    for s in &f.contains {
                        self.flatten(&mut g, s, 0, true);
                    }
                }
                let v = self.gen_flat(g, depth + 1)?;
                if !(f.unique_items && out.contains(&v)) {
                    value = Some(v);
                    break;
                }
            }
            match value {
                Some(v) => out.push(v),
                None if out.len() >= min => break,
                None => return Err("uniqueItems cannot be met"),
            }
        }
        Ok(Value::Array(out))
    }

    fn gen_string(&mut self, f: &Flat<'a>) -> Gen<Value> {
        let min = f.min_length.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
        let max = f.max_length.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        if min > max {
            return Err("minLength is above maxLength");
        }
        let fits_length = |s: &str| (min..=max).contains(&s.chars().count());
        if let Some(format) = f.format
            && let Some(s) = self.format_value(format, min)
        {
            return Ok(Value::String(s));
        }
        if !f.patterns.is_empty() {
            // One pattern's matches rarely match another (`^a` and `b$` from an allOf), but
            // since patterns search, a match of one followed by a match of the next often
            // matches both.
            let mut last = None;
            for attempt in 0..32 {
                let mut s = String::new();
                let parts: Vec<&str> = if attempt % 2 == 0 {
                    vec![f.patterns[(attempt / 2) % f.patterns.len()]]
                } else {
                    f.patterns.clone()
                };
                let lower = if parts.len() == 1 { min } else { 0 };
                for p in parts {
                    match self.sample_pattern(p, lower, max) {
                        Some(part) => s.push_str(&part),
                        None => {
                            return last
                                .map(Value::String)
                                .ok_or("the pattern cannot be generated from");
                        }
                    }
                }
                if fits_length(&s) && f.patterns.clone().iter().all(|p| self.matches(p, &s)) {
                    return Ok(Value::String(s));
                }
                last = Some(s);
            }
            return last.map(Value::String).ok_or("no string matching the pattern was found");
        }
        if f.content_encoding.is_some_and(|e| e.eq_ignore_ascii_case("base64")) {
            let bytes = (min.div_ceil(4) * 3).max(6).min(max / 4 * 3);
            return Ok(Value::String(self.base64(bytes)));
        }
        Ok(Value::String(self.words(min, max)))
    }

    /// Text of lorem-ipsum words between `min` and `max` characters.
    fn words(&mut self, min: usize, max: usize) -> String {
        let target = if max < 6 {
            max.min(min.max(max))
        } else {
            self.rng.random_range(6..=max.min(16)).max(min)
        };
        let target = target.min(min.max(4096));
        let mut s = String::new();
        while s.len() < target {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(WORDS[self.rng.random_range(0..WORDS.len())]);
        }
        s.truncate(target);
        if s.ends_with(' ') {
            s.pop();
            s.push('x');
        }
        s
    }

    fn base64(&mut self, bytes: usize) -> String {
        let data: Vec<u8> = (0..bytes).map(|_| self.rng.random()).collect();
        base64::engine::general_purpose::STANDARD.encode(data)
    }

    /// A value of a known `format`; `None` for formats the validator does not check (any
    /// string passes) or that do not fit `min` characters.
    fn format_value(&mut self, format: &str, min: usize) -> Option<String> {
        let r = &mut self.rng;
        let word = WORDS[r.random_range(0..WORDS.len())];
        let n: u32 = r.random_range(1..1000);
        let date = format!(
            "{:04}-{:02}-{:02}",
            r.random_range(2000..2031),
            r.random_range(1..13),
            r.random_range(1..29)
        );
        let time = format!(
            "{:02}:{:02}:{:02}Z",
            r.random_range(0..24),
            r.random_range(0..60),
            r.random_range(0..60)
        );
        let s = match format {
            "date" => date,
            "date-time" => format!("{date}T{time}"),
            "time" => time,
            "duration" => format!("P{}DT{}H", r.random_range(1..30), r.random_range(1..24)),
            "email" | "idn-email" => format!("{word}{n}@example.com"),
            "hostname" | "idn-hostname" => format!("{word}{n}.example.com"),
            "ipv4" => format!("192.0.2.{}", r.random_range(1..255)),
            "ipv6" => format!("2001:db8::{:x}", r.random_range(1..0xffff)),
            "uri" | "iri" | "url" => format!("https://example.com/{word}/{n}"),
            "uri-reference" | "iri-reference" => format!("/{word}/{n}"),
            "uri-template" => format!("https://example.com/{word}/{{id}}"),
            "uuid" => {
                let b: [u8; 16] = r.random();
                let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
                format!(
                    "{}-{}-4{}-{}{}-{}",
                    &h[0..8],
                    &h[8..12],
                    &h[13..16],
                    ["8", "9", "a", "b"][usize::from(b[8] & 3)],
                    &h[17..20],
                    &h[20..32]
                )
            }
            "json-pointer" => format!("/{word}/{n}"),
            "relative-json-pointer" => format!("0/{word}"),
            "regex" => "^[a-z]+$".to_owned(),
            "byte" => {
                let bytes = (min.div_ceil(4) * 3).max(6);
                return Some(self.base64(bytes));
            }
            _ => return None,
        };
        (s.len() >= min).then_some(s)
    }

    fn compiled_pattern(&mut self, pattern: &str) -> Option<&Pattern> {
        if !self.regexes.contains_key(pattern) {
            let compiled = jsonschema_regex::to_rust_regex(pattern).ok().map(|rust| {
                let sampler = regex_syntax::ParserBuilder::new()
                    .build()
                    .parse(&rust)
                    .ok()
                    .and_then(|hir| rand_regex::Regex::with_hir(printable(&hir), 8).ok());
                let matcher = regex::RegexBuilder::new(&rust).size_limit(1 << 20).build().ok();
                Pattern { sampler, matcher }
            });
            self.regexes.insert(pattern.to_owned(), compiled);
        }
        self.regexes.get(pattern).and_then(Option::as_ref)
    }

    fn matches(&mut self, pattern: &str, text: &str) -> bool {
        self.compiled_pattern(pattern)
            .and_then(|p| p.matcher.as_ref())
            .is_some_and(|m| m.is_match(text))
    }

    fn sample_pattern(&mut self, pattern: &str, min: usize, max: usize) -> Option<String> {
        let sampler = self.compiled_pattern(pattern)?.sampler.clone()?;
        let mut last = None;
        for _ in 0..16 {
            let sampled: Result<String, _> = self.rng.sample(&sampler);
            let Ok(s) = sampled else { continue };
            if (min..=max).contains(&s.chars().count()) {
                return Some(s);
            }
            last = Some(s);
        }
        last
    }

    fn gen_integer(&mut self, f: &Flat<'a>) -> Gen<Value> {
        let mut lo = f.minimum.map(f64::ceil);
        if let Some(x) = f.exclusive_minimum {
            lo = max_opt(lo, x.floor() + 1.0);
        }
        let mut hi = f.maximum.map(f64::floor);
        if let Some(x) = f.exclusive_maximum {
            hi = min_opt(hi, x.ceil() - 1.0);
        }
        // The format bounds the range, but does not make it: an unbounded int64 is a small
        // positive number like any other integer, not one near -2^53.
        let (mut a, mut b) = default_range(lo, hi, 1.0, 1000.0);
        let limit = match f.format {
            Some("int32") => f64::from(i32::MAX),
            // Beyond 2^53 JSON numbers lose precision in most clients.
            _ => 9_007_199_254_740_991.0,
        };
        a = a.max(-limit - 1.0);
        b = b.min(limit);
        if a > b {
            return Err("the integer bounds leave no value");
        }
        let mut step: i128 = 1;
        let mut only_zero = false;
        for m in &f.multiple_of {
            // m = n / 2^j exactly (floats are dyadic): an integer v is a multiple of m when
            // n / gcd(n, 2^j) divides it. A decimal fraction such as 0.1 has no such small
            // form (its float is a 55-bit fraction): only 0 is safely a multiple of it.
            match (0..24).find(|j| (m * f64::from(1u32 << j)).fract() == 0.0) {
                Some(j) if m * f64::from(1u32 << j) < 1e15 => {
                    // Integral and below 1e15, so the cast is exact.
                    let n = (m * f64::from(1u32 << j)) as i128;
                    let n = n / gcd(n, 1 << j);
                    step = lcm(step, n).min(1_000_000_000_000_000);
                }
                _ => only_zero = true,
            }
        }
        if only_zero {
            return if a <= 0.0 && b >= 0.0 {
                Ok(json!(0))
            } else {
                Err("no integer is a multiple of multipleOf")
            };
        }
        let (ka, kb) = ((a / step as f64).ceil() as i128, (b / step as f64).floor() as i128);
        if ka > kb {
            return Err("no multiple of multipleOf within the bounds");
        }
        let k = self.rng.random_range(ka..=kb.min(ka + 1000));
        let v = k * step;
        Ok(i64::try_from(v).map(Value::from).unwrap_or_else(|_| json!(v as f64)))
    }

    fn gen_number(&mut self, f: &Flat<'a>) -> Gen<Value> {
        let lo = f.minimum.into_iter().chain(f.exclusive_minimum).reduce(f64::max);
        let hi = f.maximum.into_iter().chain(f.exclusive_maximum).reduce(f64::min);
        let ok = |v: f64| {
            f.minimum.is_none_or(|m| v >= m)
                && f.exclusive_minimum.is_none_or(|m| v > m)
                && f.maximum.is_none_or(|m| v <= m)
                && f.exclusive_maximum.is_none_or(|m| v < m)
        };
        if let Some((m, others)) = f.multiple_of.split_first() {
            // m·2^j is exact in binary floating point, and so is its quotient by m.
            let mut candidates = vec![0.0];
            for j in 0..60 {
                let k = f64::from(2u32).powi(j);
                candidates.push(m * k);
                candidates.push(-m * k);
            }
            let valid: Vec<f64> = candidates
                .into_iter()
                .filter(|v| ok(*v) && others.iter().all(|o| (v / o).fract() == 0.0))
                .collect();
            let positive: Vec<f64> = valid.iter().copied().filter(|v| *v > 0.0).take(6).collect();
            let pool = if positive.is_empty() { &valid } else { &positive };
            if pool.is_empty() {
                return Err("no multiple of multipleOf within the bounds");
            }
            let v = pool[self.rng.random_range(0..pool.len())];
            return serde_json::Number::from_f64(v).map(Value::Number).ok_or("not a finite number");
        }
        let (a, b) = default_range(lo, hi, 0.0, 1000.0);
        if a > b {
            return Err("the number bounds leave no value");
        }
        let mut v = ((a + (b - a) * self.rng.random::<f64>()) * 100.0).round() / 100.0;
        if !ok(v) {
            v = f64::midpoint(a, b);
        }
        if !ok(v) {
            return Err("the number bounds leave no value");
        }
        serde_json::Number::from_f64(v).map(Value::Number).ok_or("not a finite number")
    }
}

/// The branches `value` matches; a branch whose validator did not compile counts as
/// matching only values made for it.
fn matching_branches(
    validators: &[Option<Rc<jsonschema::Validator>>],
    i: usize,
    value: &Value,
) -> Vec<usize> {
    validators
        .iter()
        .enumerate()
        .filter(|(j, v)| v.as_ref().map_or(*j == i, |v| v.is_valid(value)))
        .map(|(j, _)| j)
        .collect()
}

/// Bounds for a number: as given, or a default span next to the one bound given.
fn default_range(lo: Option<f64>, hi: Option<f64>, default_lo: f64, span: f64) -> (f64, f64) {
    match (lo, hi) {
        (Some(a), Some(b)) => (a, b),
        (Some(a), None) => (a, a + span),
        (None, Some(b)) if b >= default_lo => (default_lo, b),
        (None, Some(b)) => (b - span, b),
        (None, None) => (default_lo, default_lo + span),
    }
}

fn gcd(a: i128, b: i128) -> i128 {
    if b == 0 { a.abs() } else { gcd(b, a % b) }
}

fn lcm(a: i128, b: i128) -> i128 {
    if a == 0 || b == 0 { 0 } else { (a / gcd(a, b) * b).abs() }
}

/// A cheap check that `value` could satisfy `f` where it stands: type, `const`, `enum`,
/// lengths, bounds and required properties.
fn fits(f: &Flat<'_>, value: &Value) -> bool {
    let bits = bits_of(value);
    let type_ok = f.types & bits != 0 || (bits == INT && f.types & NUM != 0);
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    type_ok
        && f.consts.iter().all(|c| *c == value)
        && f.enums.iter().all(|e| e.contains(value))
        && match value {
            Value::String(s) => {
                let n = count(s.chars().count());
                f.min_length.is_none_or(|m| n >= m) && f.max_length.is_none_or(|m| n <= m)
            }
            Value::Array(a) => {
                f.min_items.is_none_or(|m| count(a.len()) >= m)
                    && f.max_items.is_none_or(|m| count(a.len()) <= m)
            }
            Value::Object(o) => f.required.iter().all(|r| o.contains_key(*r)),
            Value::Number(n) => n.as_f64().is_some_and(|v| {
                f.minimum.is_none_or(|m| v >= m)
                    && f.maximum.is_none_or(|m| v <= m)
                    && f.exclusive_minimum.is_none_or(|m| v > m)
                    && f.exclusive_maximum.is_none_or(|m| v < m)
            }),
            _ => true,
        }
}

/// The same regex with every class narrowed to printable ASCII where that leaves something
/// (so `\S` or `.` give readable text, and values fit in headers and URLs) and anchors and
/// word boundaries removed (`rand_regex` refuses them; the generated text is the whole
/// match, so `^` and `$` hold anyway).
fn printable(hir: &Hir) -> Hir {
    match hir.kind() {
        HirKind::Class(Class::Unicode(class)) => {
            let mut ascii = ClassUnicode::new([ClassUnicodeRange::new(' ', '~')]);
            ascii.intersect(class);
            if ascii.ranges().is_empty() { hir.clone() } else { Hir::class(Class::Unicode(ascii)) }
        }
        HirKind::Class(Class::Bytes(class)) => {
            let mut ascii = ClassBytes::new([ClassBytesRange::new(b' ', b'~')]);
            ascii.intersect(class);
            if ascii.ranges().is_empty() { hir.clone() } else { Hir::class(Class::Bytes(ascii)) }
        }
        HirKind::Look(_) => Hir::empty(),
        HirKind::Repetition(r) => {
            let mut r = r.clone();
            r.sub = Box::new(printable(&r.sub));
            Hir::repetition(r)
        }
        HirKind::Capture(c) => {
            let mut c = c.clone();
            c.sub = Box::new(printable(&c.sub));
            Hir::capture(c)
        }
        HirKind::Concat(subs) => Hir::concat(subs.iter().map(printable).collect()),
        HirKind::Alternation(subs) => Hir::alternation(subs.iter().map(printable).collect()),
        _ => hir.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Generates with several seeds and checks each value with the engine's validator.
    fn check(schema: Value) -> Vec<Value> {
        let validator = edgemock_shared::engine::compile_schema("s", &schema).unwrap();
        (0..8)
            .map(|seed| {
                let v = generate(&schema, seed).unwrap_or_else(|e| panic!("{schema}: {e}"));
                assert!(validator.is_valid(&v), "{schema} → {v}");
                v
            })
            .collect()
    }

    #[test]
    fn deterministic_for_a_seed() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}, "n": {"type": "number"}}});
        assert_eq!(generate(&schema, 7).unwrap(), generate(&schema, 7).unwrap());
        assert_ne!(generate(&schema, 7).unwrap(), generate(&schema, 8).unwrap());
    }

    #[test]
    fn formats() {
        for format in [
            "date",
            "date-time",
            "time",
            "duration",
            "email",
            "idn-email",
            "hostname",
            "ipv4",
            "ipv6",
            "uri",
            "uri-reference",
            "iri",
            "uri-template",
            "uuid",
            "byte",
            "binary",
            "password",
            "json-pointer",
            "relative-json-pointer",
            "regex",
            "int64",
            "anything-else",
        ] {
            let values = check(json!({"type": "string", "format": format}));
            assert!(values.iter().all(Value::is_string), "{format}");
        }
        let byte = generate(&json!({"type": "string", "format": "byte"}), 1).unwrap();
        assert!(base64::engine::general_purpose::STANDARD.decode(byte.as_str().unwrap()).is_ok());
    }

    #[test]
    fn patterns_and_lengths() {
        for schema in [
            json!({"type": "string", "pattern": "^[A-Z]{3}-\\d{4}$"}),
            json!({"type": "string", "pattern": "^sha256:[a-f0-9]{64}$"}),
            json!({"type": "string", "pattern": "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$"}),
            json!({"type": "string", "pattern": "github"}),
            json!({"type": "string", "pattern": "\\w+@\\w+\\.com", "maxLength": 20}),
            json!({"type": "string", "pattern": "^\\S+$", "minLength": 3, "maxLength": 5}),
            json!({"type": "string", "minLength": 30, "maxLength": 30}),
            json!({"type": "string", "maxLength": 2}),
            json!({"type": "string", "minLength": 0, "maxLength": 0}),
            json!({"allOf": [{"type": "string", "pattern": "^a"}, {"pattern": "b$"}], "maxLength": 6}),
        ] {
            check(schema);
        }
        let v = generate(&json!({"type": "string", "pattern": "^[A-Z]{3}-\\d{4}$"}), 3).unwrap();
        assert!(v.as_str().unwrap().is_ascii(), "\\d gives ASCII digits: {v}");
    }

    #[test]
    fn numbers() {
        for schema in [
            json!({"type": "integer", "minimum": 5, "maximum": 5}),
            json!({"type": "integer", "exclusiveMinimum": 4, "exclusiveMaximum": 6}),
            json!({"type": "integer", "multipleOf": 7, "minimum": 50, "maximum": 60}),
            json!({"type": "integer", "multipleOf": 4, "allOf": [{"multipleOf": 6}]}),
            json!({"type": "integer", "maximum": -10}),
            json!({"type": "integer", "format": "int32", "minimum": 2147483000}),
            json!({"type": "number", "multipleOf": 0.01, "minimum": 0.5, "maximum": 100}),
            json!({"type": "number", "multipleOf": 0.1}),
            json!({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 0.001}),
            json!({"type": "number", "minimum": -1.5, "maximum": -1.5}),
            json!({"type": "integer", "multipleOf": 0.5, "minimum": 3, "maximum": 3}),
            json!({"type": "integer", "multipleOf": 2.5, "minimum": 1}),
            json!({"type": "integer", "multipleOf": 0.75, "maximum": -1}),
            json!({"type": "integer", "multipleOf": 0.1, "minimum": -5, "maximum": 5}),
            json!({"type": "integer", "format": "int64"}),
        ] {
            check(schema);
        }
    }

    #[test]
    fn objects_and_arrays() {
        for schema in [
            json!({"type": "object", "required": ["a", "b"], "properties": {"a": {"type": "integer"}}, "additionalProperties": {"type": "boolean"}}),
            json!({"type": "object", "additionalProperties": false, "minProperties": 2, "properties": {"x": {}, "y": {}, "z": {}}}),
            json!({"type": "object", "minProperties": 3, "propertyNames": {"pattern": "^[a-z]{2}$"}}),
            json!({"type": "object", "maxProperties": 1, "properties": {"a": {}, "b": {}}}),
            json!({"type": "object", "additionalProperties": false, "patternProperties": {"^x-": {"type": "string"}}, "minProperties": 1}),
            json!({"type": "object", "properties": {"a": {"type": "string"}}, "dependentRequired": {"a": ["b"]}}),
            json!({"type": "object", "additionalProperties": {"type": "integer", "minimum": 3}}),
            json!({"type": "array", "items": {"type": "integer", "enum": [1, 2, 3]}, "minItems": 3, "uniqueItems": true}),
            json!({"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": false, "minItems": 2}),
            json!({"type": "array", "contains": {"const": 42}, "minContains": 2, "items": {"type": "integer"}}),
            json!({"type": "array", "maxItems": 0}),
        ] {
            check(schema);
        }
        let v =
            generate(&json!({"type": "object", "additionalProperties": {"type": "integer"}}), 0)
                .unwrap();
        assert_eq!(v.as_object().map(Map::len), Some(1), "a map gets an entry: {v}");
    }

    #[test]
    fn unbounded_integers_are_small() {
        for format in ["int32", "int64", "other"] {
            let v = generate(&json!({"type": "integer", "format": format}), 1).unwrap();
            assert!((1..=1001).contains(&v.as_i64().unwrap()), "{format}: {v}");
        }
        let v = generate(&json!({"type": "integer", "multipleOf": 2.5, "minimum": 1}), 1).unwrap();
        assert_eq!(v.as_i64().unwrap() % 5, 0, "{v}");
    }

    #[test]
    fn enums_consts_and_nullable() {
        for schema in [
            json!({"enum": ["a", "b", null]}),
            json!({"type": "string", "enum": ["a", 1, null]}),
            json!({"const": {"x": [1, 2]}}),
            json!({"type": ["string", "null"], "format": "date"}),
            json!({"anyOf": [{"type": "null"}, {"$ref": "#/$defs/A"}], "$defs": {"A": {"type": "integer", "minimum": 10}}}),
            json!({"allOf": [{"enum": [1, 2, 3]}, {"enum": [3, 4]}]}),
            json!({"type": "object", "properties": {"kind": {"enum": ["a", "b"]}}, "required": ["kind"],
                   "if": {"properties": {"kind": {"const": "a"}}}, "then": {"required": ["x"], "properties": {"x": {"type": "integer"}}},
                   "else": {"required": ["y"]}}),
            json!({"type": "null"}),
            json!(true),
            json!({}),
        ] {
            check(schema);
        }
        let v = generate(&json!({"type": ["string", "null"], "minLength": 2}), 0).unwrap();
        assert!(v.is_string(), "nullable values are generated, not null: {v}");
    }

    #[test]
    fn refs_all_of_and_recursion() {
        let tree = json!({
            "$ref": "#/$defs/Node",
            "$defs": {
                "Node": {"type": "object", "required": ["id", "children", "parent"], "properties": {
                    "id": {"type": "integer"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                    "parent": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]},
                }},
            }
        });
        check(tree);
        let merged = json!({
            "allOf": [
                {"$ref": "#/$defs/Base"},
                {"type": "object", "required": ["extra"], "properties": {"extra": {"type": "string", "format": "email"}, "id": {"minimum": 100}}},
            ],
            "$defs": {"Base": {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer", "maximum": 100}}}}
        });
        let v = check(merged);
        assert!(v.iter().all(|v| v["id"] == json!(100)), "{v:?}");
        // Infinite required nesting has no finite value: reported, not looped.
        let endless = json!({"$ref": "#/$defs/L", "$defs": {"L": {"type": "object", "required": ["next"], "properties": {"next": {"$ref": "#/$defs/L"}}}}});
        assert!(matches!(generate(&endless, 0), Err(GenerateError::NoConformingValue { .. })));
    }

    #[test]
    fn one_of_must_match_exactly_one() {
        for schema in [
            // Integers match both branches: a non-integer number must be chosen for the first.
            json!({"oneOf": [{"type": "number"}, {"type": "integer"}], "not": {"type": "integer"}}),
            json!({"oneOf": [{"type": "number"}, {"type": "integer"}]}),
            // Overlapping objects: only required-only variants separate them.
            json!({"oneOf": [
                {"type": "object", "required": ["a"], "properties": {"a": {"type": "string"}, "b": {"type": "string"}}},
                {"type": "object", "required": ["b"], "properties": {"a": {"type": "string"}, "b": {"type": "string"}}},
            ]}),
            json!({"oneOf": [{"type": "string"}, {"type": "string", "format": "email"}]}),
            // Every object matches both (GitHub's 409 answers): only a property one branch
            // constrains and the other leaves open tells them apart.
            json!({"oneOf": [
                {"type": "object", "properties": {"message": {"type": "string"}, "url": {"type": "string"}}},
                {"type": "object", "properties": {"message": {"type": "string"}, "metadata": {"type": "object"}}},
            ]}),
            json!({"oneOf": [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}], "$defs": {
                "Cat": {"type": "object", "required": ["kind"], "properties": {"kind": {"const": "cat"}}},
                "Dog": {"type": "object", "required": ["kind"], "properties": {"kind": {"const": "dog"}}},
            }}),
            json!({"type": "object", "properties": {"v": {"oneOf": [{"type": "integer", "multipleOf": 2}, {"type": "integer", "multipleOf": 3}]}}, "required": ["v"]}),
        ] {
            check(schema);
        }
    }

    #[test]
    fn examples_are_used_when_they_conform() {
        let schema = json!({"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "examples": ["Rex"]}}});
        assert_eq!(generate(&schema, 0).unwrap(), json!({"name": "Rex"}));
        let broken = json!({"type": "string", "format": "date", "examples": ["yesterday"]});
        let v = generate(&broken, 0).unwrap();
        assert_ne!(v, json!("yesterday"));
    }

    #[test]
    fn unsatisfiable_schemas_are_errors() {
        for schema in [
            json!(false),
            json!({"type": "string", "minLength": 5, "maxLength": 2}),
            json!({"allOf": [{"type": "string"}, {"type": "integer"}]}),
            json!({"type": "integer", "minimum": 3, "maximum": 2}),
        ] {
            assert!(generate(&schema, 0).is_err(), "{schema}");
        }
    }
}
