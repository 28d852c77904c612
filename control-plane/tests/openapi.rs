//! OpenAPI import at scale, and conformance: every imported operation is served by the
//! engine and every answer is validated against the document's own response schema.
//!
//! The GitHub document comes from the npm package `@octokit/openapi` (a devDependency of the
//! repository; `npm ci` installs it). The fixtures are small hand-written documents that
//! gather the hard cases.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Instant;

use edgemock_control_plane::openapi::{
    self, Direction, Document, ImportOptions, Imported, NoteKind, Operation,
};
use edgemock_shared::engine::compile_schema;
use edgemock_shared::{
    ApiRef, Engine, Request, SNAPSHOT_FORMAT_VERSION, Snapshot, SnapshotEndpoint, WorkspaceRef,
};
use serde_json::{Value, json};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn github_document() -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../node_modules/@octokit/openapi/generated/api.github.com.json");
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. The GitHub OpenAPI document comes from the npm package @octokit/openapi: run `npm ci` in the repository root (scripts/setup does)",
            path.display()
        )
    })
}

fn snapshot(imported: &Imported) -> Snapshot {
    Snapshot {
        format_version: SNAPSHOT_FORMAT_VERSION,
        version: 1,
        workspace: WorkspaceRef { id: "w".into(), slug: "w".into(), ..Default::default() },
        api: ApiRef {
            id: "a".into(),
            slug: imported.slug.clone(),
            name: imported.title.clone(),
            ..Default::default()
        },
        endpoints: imported
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, d)| SnapshotEndpoint { id: format!("e{i}"), definition: d.clone() })
            .collect(),
        graphql: vec![],
        websockets: vec![],
    }
}

/// Characters a path segment or URI fragment may carry as they are.
fn encode(text: &str, keep: &[u8]) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A value for a path parameter, conforming to its schema, as text.
fn path_value(doc: &Document, op: &Operation, name: &str, seed: u64) -> String {
    let Some(schema) =
        op.parameters.iter().find(|p| p.name == name).and_then(|p| p.schema.as_ref())
    else {
        return "x".to_owned();
    };
    let schema = doc.json_schema(schema, Direction::Request);
    match openapi::generate(&schema, seed).unwrap_or_else(|e| panic!("{} {name}: {e}", op.label()))
    {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// The request path for an operation: every `{param}` of the document's path filled in.
fn request_path(doc: &Document, op: &Operation, seed: u64) -> String {
    let mut out = String::new();
    let mut rest = op.path.as_str();
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else { break };
        let name = &rest[start + 1..start + end];
        out.push_str(&encode(&path_value(doc, op, name, seed), b""));
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

struct Results {
    operations: usize,
    requests: usize,
    validated_bodies: usize,
    invalid_body_checks: usize,
    shadowed: usize,
    failures: Vec<String>,
}

/// Serves every operation of `bytes` through the engine and validates every answer (the
/// primary one and each `Prefer`able one) against the document's schema for its status; then
/// sends a body that breaks the request schema where there is one. `independent`: also
/// validate against the raw document with `jsonschema`'s own `$ref` resolution (OpenAPI 3.1
/// only, whose schemas are JSON Schema 2020-12 as written), so the converter is not the only
/// judge of its own output.
fn conformance(bytes: &[u8], independent: bool) -> (Imported, Results) {
    conformance_with(bytes, independent, |_| {})
}

/// [`conformance`], with the imported endpoints changed by `tamper` before they are served.
fn conformance_with(
    bytes: &[u8],
    independent: bool,
    tamper: impl Fn(&mut Imported),
) -> (Imported, Results) {
    let options = ImportOptions::default();
    let doc = Document::parse(bytes).unwrap();
    let mut imported = doc.import(&options).unwrap();
    tamper(&mut imported);
    assert_eq!(imported.endpoints.len(), doc.operations().len());
    let engine = Engine::from_snapshot(snapshot(&imported)).unwrap();
    let registry = independent.then(|| {
        jsonschema::Registry::new()
            .draft(jsonschema::Draft::Draft202012)
            .add("urn:document", doc.root().clone())
            .unwrap()
            .prepare()
            .unwrap()
    });
    let mut validators: HashMap<String, Vec<Rc<jsonschema::Validator>>> = HashMap::new();
    let mut results = Results {
        operations: doc.operations().len(),
        requests: 0,
        validated_bodies: 0,
        invalid_body_checks: 0,
        shadowed: 0,
        failures: Vec::new(),
    };
    for (i, (op, endpoint)) in doc.operations().iter().zip(&imported.endpoints).enumerate() {
        let shadowed = imported
            .report
            .notes
            .iter()
            .any(|n| n.location == op.location && n.message.starts_with("never answers"));
        if shadowed {
            results.shadowed += 1;
            continue;
        }
        let seed = i as u64;
        let path = request_path(&doc, op, seed);
        // The request schema as the document states it, when the mock must enforce it: a
        // required body whose media types are all JSON.
        let request_schema = op.request_body.as_ref().and_then(|b| {
            let enforced = b.required && b.media_types.iter().all(|m| m.contains("json"));
            let schema = doc.json_schema(b.schema.as_ref()?, Direction::Request);
            Some((schema, enforced))
        });
        let body = match &request_schema {
            Some((schema, _)) => openapi::generate(schema, seed)
                .unwrap_or_else(|e| panic!("{}: request body: {e}", op.label()))
                .to_string(),
            None => String::new(),
        };
        let variants = std::iter::once(&endpoint.response).chain(&endpoint.responses);
        for response in variants {
            let name = response.name.clone().unwrap_or_default();
            let prefer = match name.split_once(':') {
                Some((code, example)) => format!("code={code}, example={example}"),
                None => format!("code={name}"),
            };
            let request = Request {
                method: op.method.as_str().into(),
                path: path.as_str().into(),
                query: "".into(),
                headers: vec![
                    ("content-type".into(), "application/json".into()),
                    ("prefer".into(), prefer.as_str().into()),
                ],
                body: body.clone().into_bytes(),
            };
            results.requests += 1;
            let answer = engine.handle(&request, 0, seed).response;
            let fail = |why: String| format!("{} {path} (Prefer: {prefer}): {why}", op.method);
            if answer.status != response.status {
                let text = String::from_utf8_lossy(&answer.body);
                results.failures.push(fail(format!(
                    "status {} instead of {}: {text}",
                    answer.status, response.status
                )));
                continue;
            }
            let Some(documented) = op.responses.iter().find(|r| r.status == answer.status) else {
                results.failures.push(fail("no documented response has this status".into()));
                continue;
            };
            let (Some(media_type), Some(schema_at)) = (&documented.media_type, &documented.schema)
            else {
                continue;
            };
            let value = if media_type.contains("json") || media_type.contains('*') {
                match serde_json::from_slice::<Value>(&answer.body) {
                    Ok(v) => v,
                    Err(e) => {
                        results.failures.push(fail(format!("the body is not JSON: {e}")));
                        continue;
                    }
                }
            } else if media_type.starts_with("text/") {
                Value::String(String::from_utf8_lossy(&answer.body).into_owned())
            } else {
                continue; // Binary and XML bodies are reported, not generated.
            };
            let checks = validators.entry(schema_at.clone()).or_insert_with(|| {
                let mut list = vec![Rc::new(
                    compile_schema("s", &doc.json_schema(schema_at, Direction::Response)).unwrap(),
                )];
                if let Some(registry) = &registry {
                    let reference =
                        json!({"$ref": format!("urn:document#{}", encode(schema_at, b"/"))});
                    let raw = jsonschema::options()
                        .with_registry(registry)
                        .should_validate_formats(true)
                        .build(&reference)
                        .unwrap();
                    list.push(Rc::new(raw));
                }
                list
            });
            results.validated_bodies += 1;
            for (k, validator) in checks.iter().enumerate() {
                let errors: Vec<String> = validator
                    .iter_errors(&value)
                    .take(3)
                    .map(|e| format!("{}: {e}", e.instance_path()))
                    .collect();
                if !errors.is_empty() {
                    let judge = if k == 0 { "converted schema" } else { "raw document" };
                    results.failures.push(fail(format!("{judge}: {}", errors.join("; "))));
                }
            }
        }
        // A body that breaks the request schema gets the validation status.
        if let Some((schema, true)) = &request_schema {
            let validator = compile_schema("s", schema).unwrap();
            let broken = [json!(null), json!("x"), json!(0), json!([]), json!({}), json!(true)]
                .into_iter()
                .find(|b| !validator.is_valid(b));
            if let Some(broken) = broken {
                let request = Request {
                    method: op.method.as_str().into(),
                    path: path.as_str().into(),
                    query: "".into(),
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: broken.to_string().into_bytes(),
                };
                results.invalid_body_checks += 1;
                let answer = engine.handle(&request, 0, seed).response;
                if answer.status != options.validation_status {
                    results.failures.push(format!(
                        "{} {path} with body {broken}: status {} instead of {}",
                        op.method, answer.status, options.validation_status
                    ));
                }
            }
        }
    }
    (imported, results)
}

/// Import → export → import keeps every route (method and path), the statuses each answers,
/// and request validation; and the result compiles.
fn round_trip(first: &Imported) {
    let exported = openapi::export(&first.title, &first.slug, &snapshot(first).endpoints);
    let again = openapi::import(exported.to_string().as_bytes(), &ImportOptions::default())
        .unwrap_or_else(|e| panic!("the exported document does not import: {e}"));
    type Routes = BTreeMap<(String, String), (BTreeSet<u16>, bool)>;
    let routes = |i: &Imported, add_validation_status: bool| -> Routes {
        let mut out = Routes::new();
        for e in &i.endpoints {
            let entry = out.entry((e.method.to_string(), e.path.clone())).or_default();
            entry.0.extend(std::iter::once(&e.response).chain(&e.responses).map(|r| r.status));
            if let Some(v) = &e.validation {
                entry.1 = true;
                if add_validation_status {
                    entry.0.insert(v.status);
                }
            }
        }
        out
    };
    assert_eq!(routes(&again, false), routes(first, true));
    Engine::from_snapshot(snapshot(&again)).unwrap();
}

fn report(label: &str, imported: &Imported, r: &Results) {
    let mut kinds: Vec<(String, usize)> = [
        NoteKind::InvalidExample,
        NoteKind::GenerationFailed,
        NoteKind::Unsupported,
        NoteKind::NotValidated,
        NoteKind::PathChanged,
        NoteKind::Skipped,
    ]
    .into_iter()
    .map(|k| (format!("{k:?}"), imported.report.count(k)))
    .collect();
    kinds.retain(|(_, n)| *n > 0);
    println!(
        "{label}: {} operations, {} requests, {} bodies validated, {} invalid-body checks, {} shadowed, {} failures; notes {:?}",
        r.operations,
        r.requests,
        r.validated_bodies,
        r.invalid_body_checks,
        r.shadowed,
        r.failures.len(),
        kinds
    );
    // OPENAPI_REPORT=1 shows the whole report.
    if std::env::var_os("OPENAPI_REPORT").is_some() {
        println!("{}", serde_json::to_string_pretty(&imported.report).unwrap());
    }
    for f in r.failures.iter().take(40) {
        println!("  FAIL {f}");
    }
}

#[test]
fn tricky_openapi_30_yaml_conforms() {
    let (imported, r) = conformance(&fixture("tricky-3.0.yaml"), false);
    report("tricky-3.0.yaml", &imported, &r);
    assert!(r.failures.is_empty(), "{} failures", r.failures.len());
    assert_eq!(r.operations, 12);
    assert!(
        r.requests >= 15 && r.invalid_body_checks == 2,
        "the harness ran: {} requests",
        r.requests
    );
    assert_eq!(
        imported.report.count(NoteKind::GenerationFailed),
        0,
        "{:#?}",
        imported.report.notes
    );
    // The broken examples are each reported where they are written.
    let invalid: Vec<&str> = imported
        .report
        .notes
        .iter()
        .filter(|n| n.kind == NoteKind::InvalidExample)
        .map(|n| n.location.as_str())
        .collect();
    for want in [
        "/paths/~1animals/get/responses/200/content/application~1json/examples/broken/value",
        "/paths/~1animals~1{animal-id}/get/responses/200/content/application~1json/example",
        "/paths/~1feedings/post/requestBody/content/application~1json/examples/late/value",
        "/components/schemas/Keeper/properties/homepage/example",
    ] {
        assert!(invalid.contains(&want), "{want} in {invalid:#?}");
    }
    assert_eq!(imported.base_path.as_deref(), Some("/api/v1"));
    round_trip(&imported);
}

#[test]
fn catalog_openapi_31_json_conforms() {
    let (imported, r) = conformance(&fixture("catalog-3.1.json"), true);
    report("catalog-3.1.json", &imported, &r);
    assert!(r.failures.is_empty(), "{} failures", r.failures.len());
    assert_eq!(r.operations, 8);
    assert!(r.validated_bodies >= 10 && r.invalid_body_checks >= 3, "the harness ran");
    assert_eq!(
        imported.report.count(NoteKind::GenerationFailed),
        0,
        "{:#?}",
        imported.report.notes
    );
    let invalid: Vec<&str> = imported
        .report
        .notes
        .iter()
        .filter(|n| n.kind == NoteKind::InvalidExample)
        .map(|n| n.location.as_str())
        .collect();
    assert!(
        invalid.contains(
            &"/paths/~1products/get/responses/200/content/application~1json/examples/bad-sku/value"
        ),
        "{invalid:#?}"
    );
    assert!(
        invalid.contains(&"/components/schemas/Money/properties/currency/examples/1"),
        "{invalid:#?}"
    );
}

/// The harness itself: answers that break their schema, a wrong status, and a validation
/// that lets everything through must each be caught.
#[test]
fn conformance_catches_broken_answers() {
    let (_, r) = conformance_with(&fixture("catalog-3.1.json"), true, |imported| {
        let e = &mut imported.endpoints[0]; // GET /categories/{id}
        assert_eq!(e.path, "/categories/{id}");
        e.response.body = edgemock_shared::Body::Json(json!({"id": 0, "name": "x"}));
        let e = &mut imported.endpoints[1]; // GET /files/{name}
        e.response.status = 202;
        let post = imported.endpoints.iter_mut().find(|e| e.path == "/search").unwrap();
        post.validation = None;
    });
    let caught: Vec<&String> = r.failures.iter().collect();
    assert!(
        caught.iter().any(|f| f.contains("/categories/")
            && f.contains("converted schema")
            && f.contains("/id")),
        "{caught:#?}"
    );
    assert!(
        caught.iter().any(|f| f.contains("/categories/") && f.contains("raw document")),
        "{caught:#?}"
    );
    assert!(
        caught
            .iter()
            .any(|f| f.contains("/files/") && f.contains("no documented response has this status")),
        "{caught:#?}"
    );
    assert!(
        caught.iter().any(|f| f.contains("POST /search") && f.contains("instead of 400")),
        "{caught:#?}"
    );
}

#[test]
fn github_rest_api_imports_and_conforms() {
    let bytes = github_document();
    let started = Instant::now();
    let imported = openapi::import(&bytes, &ImportOptions::default()).unwrap();
    let import_time = started.elapsed();
    let operations = imported.report.operations;
    println!(
        "GitHub api.github.com.json ({} MB, OpenAPI {}): {operations} operations imported in {:.2?}, {} notes",
        bytes.len() / 1_000_000,
        imported.openapi,
        import_time,
        imported.report.notes.len()
    );
    assert!(operations > 1000, "{operations}");
    assert_eq!(imported.endpoints.len(), operations);
    let snapshot_bytes = serde_json::to_vec(&snapshot(&imported)).unwrap().len();
    println!("snapshot: {:.1} MB", snapshot_bytes as f64 / 1e6);

    let started = Instant::now();
    let (imported, r) = conformance(&bytes, false);
    report("api.github.com.json", &imported, &r);
    println!("conformance run (import, compile, serve, validate): {:.2?}", started.elapsed());
    assert!(r.failures.is_empty(), "{} failures", r.failures.len());
    assert_eq!(imported.report.count(NoteKind::GenerationFailed), 0);

    let started = Instant::now();
    round_trip(&imported);
    println!("export and re-import: {:.2?}", started.elapsed());
}
