//! Engine benchmarks: snapshot load time and per-request cost for 10, 1,000 and 10,000
//! endpoints in one API. Routing is a tree lookup, so per-request figures should not grow
//! with the endpoint count. Run with `cargo bench -p edgemock-shared --bench engine`;
//! figures are recorded in BENCHMARKS.md.
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use edgemock_shared::{Engine, OutcomeKind, Request, Snapshot};
use serde_json::{Value, json};

const SIZES: [usize; 3] = [10, 1_000, 10_000];

/// An API with `n` endpoints: filler endpoints spread over many path shapes, plus the four
/// measured ones.
fn snapshot_json(n: usize) -> Vec<u8> {
    let mut endpoints: Vec<Value> = (0..n.saturating_sub(4))
        .map(|i| {
            let method = ["GET", "POST", "PUT", "DELETE"][i % 4];
            json!({
                "id": format!("f{i}"),
                "method": method,
                "path": format!("/svc{}/res{}/:id/sub{}", i % 97, i, i % 13),
                "response": {"body": {"i": i, "name": format!("resource {i}")}}
            })
        })
        .collect();
    endpoints.push(json!({
        "id": "static", "method": "GET", "path": "/hot/static",
        "response": {"headers": {"x-a": "1"}, "body": {"id": 1, "name": "Ada", "tags": ["a", "b"]}}
    }));
    endpoints.push(json!({
        "id": "template", "method": "GET", "path": "/hot/users/:id",
        "response": {"body": {"id": "{{ request.params.id }}", "page": "{{ request.query.page }}", "at": "{{ now() }}", "token": "{{ uuid() }}"}}
    }));
    endpoints.push(json!({
        "id": "rules", "method": "GET", "path": "/hot/rules",
        "responses": [{"name": "a", "body": "a"}, {"name": "b", "body": "b"}, {"name": "c", "body": "c"}],
        "rules": [
            {"when": {"header": "x-tier", "equals": "gold"}, "response": "a"},
            {"when": {"query": "mode", "regex": "^fa(st|ir)$"}, "response": "b"},
            {"when": {"any": [{"cookie": "beta", "exists": true}, {"query": "v", "equals": "2"}]}, "response": "c"}
        ],
        "response": {"body": "default"}
    }));
    endpoints.push(json!({
        "id": "validate", "method": "POST", "path": "/hot/orders",
        "validation": {"schema": {
            "type": "object", "required": ["customer", "items"],
            "properties": {
                "customer": {"type": "object", "required": ["email"], "properties": {"email": {"type": "string", "format": "email"}, "name": {"type": "string"}}},
                "items": {"type": "array", "items": {"type": "object", "required": ["sku", "qty"], "properties": {"sku": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]+$"}, "qty": {"type": "integer", "minimum": 1}}}},
                "note": {"type": "string", "maxLength": 500}
            }
        }},
        "response": {"status": 201, "body": {"ok": true}}
    }));
    serde_json::to_vec(&json!({
        "format_version": 1, "version": 1,
        "workspace": {"id": "w", "slug": "w"},
        "api": {"id": "a", "slug": "bench", "name": "Bench"},
        "endpoints": endpoints,
    }))
    .unwrap()
}

fn order_body() -> Vec<u8> {
    let items: Vec<Value> =
        (0..38).map(|i| json!({"sku": format!("AB-{i}"), "qty": i + 1})).collect();
    let body = json!({"customer": {"email": "ada@example.com", "name": "Ada Lovelace"}, "items": items, "note": "leave at the door"});
    let bytes = serde_json::to_vec(&body).unwrap();
    assert!((900..1200).contains(&bytes.len()), "about 1 KB: {}", bytes.len());
    bytes
}

fn request<'a>(method: &'a str, path: &'a str, query: &'a str, body: Vec<u8>) -> Request<'a> {
    Request {
        method: method.into(),
        path: path.into(),
        query: query.into(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("cookie".into(), "beta=1".into()),
        ],
        body,
    }
}

fn benches(c: &mut Criterion) {
    let mut load = c.benchmark_group("snapshot_load");
    load.sample_size(10).measurement_time(Duration::from_secs(4));
    for n in SIZES {
        let bytes = snapshot_json(n);
        load.bench_with_input(BenchmarkId::from_parameter(n), &bytes, |b, bytes| {
            b.iter(|| {
                Engine::from_snapshot(Snapshot::from_json(black_box(bytes)).unwrap()).unwrap()
            });
        });
    }
    load.finish();

    let cases = [
        ("static", request("GET", "/hot/static", "", vec![]), OutcomeKind::Served),
        ("template", request("GET", "/hot/users/42", "page=3", vec![]), OutcomeKind::Served),
        ("rules", request("GET", "/hot/rules", "mode=slow", vec![]), OutcomeKind::Served),
        ("validated_1kb", request("POST", "/hot/orders", "", order_body()), OutcomeKind::Served),
    ];
    for (name, req, want) in cases {
        let mut group = c.benchmark_group(format!("request_{name}"));
        group.measurement_time(Duration::from_secs(2)).warm_up_time(Duration::from_millis(500));
        for n in SIZES {
            let engine =
                Engine::from_snapshot(Snapshot::from_json(&snapshot_json(n)).unwrap()).unwrap();
            let outcome = engine.handle(&req, 1_767_225_600_000, 1);
            assert_eq!(
                outcome.kind,
                want,
                "{name} at {n}: {}",
                String::from_utf8_lossy(&outcome.response.body)
            );
            group.bench_with_input(BenchmarkId::from_parameter(n), &engine, |b, engine| {
                b.iter(|| engine.handle(black_box(&req), 1_767_225_600_000, 7));
            });
        }
        group.finish();
    }
}

criterion_group!(engine, benches);
criterion_main!(engine);
