//! Arbitrary requests against an API that uses every engine feature: no input may panic.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use edgemock_shared::{Engine, Request, Snapshot};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input {
    method: u8,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    now_ms: i64,
    seed: u64,
}

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let snapshot = serde_json::json!({
            "format_version": 1, "version": 1,
            "workspace": {"id": "w", "slug": "w"},
            "api": {"id": "a", "slug": "f", "name": "F", "cors": {}, "base_headers": {"x-b": "1"}},
            "endpoints": [
                {"id": "1", "method": "ANY", "path": "/items/:id", "dedup": true,
                 "when": {"any": [{"header": "x-k", "regex": "^[a-z]+$"}, {"not": {"cookie": "c", "exists": true}}]},
                 "rules": [
                    {"when": {"body": "$..sku", "contains": "A"}, "response": {"status": 201, "body": {"id": "{{ request.params.id }}", "sku": "{{ request.json | json_path('$..sku') }}"}}},
                    {"when": {"query": "q", "equals": "x", "case_insensitive": true}, "response": 0}
                 ],
                 "responses": [{"body": "{{ request.body | length }} {{ faker('person.fullName') }} {{ now('yyyy-MM-dd', offset='+1d') }}"}],
                 "selection": "random",
                 "validation": {"schema": {"type": "object", "properties": {"sku": {"type": "string", "pattern": "^[A-Z]+$"}}}},
                 "fault": {"percent": 5, "kind": "empty_response"},
                 "delay": {"lognormal": {"median_ms": 10, "sigma": 2}}},
                {"id": "2", "method": "GET", "path": "/files/{*rest}", "cache": {"mode": "public", "max_age_seconds": 5},
                 "response": {"body": "{{ request.path_segments | join('/') }} {{ request.query_all | tojson }}"}},
                {"id": "3", "method": "POST", "path": "/proxy/*", "proxy": {"target": "https://example.com"}}
            ],
            "graphql": [{"name": "*", "when": {"variable": "$.id", "exists": true}, "response": {"body": {"data": {"v": "{{ request.json.variables | tojson }}"}}}}],
            "websockets": [{"path": "/ws/:room", "replies": [{"when": {"body": "/t", "exists": true}, "send": [{"data": "{{ message_json.t }}"}]}]}]
        });
        Engine::from_snapshot(serde_json::from_value::<Snapshot>(snapshot).unwrap()).unwrap()
    })
}

fuzz_target!(|input: Input| {
    let methods = ["GET", "POST", "PUT", "HEAD", "OPTIONS", "DELETE", "PATCH", "X-CUSTOM"];
    let request = Request {
        method: methods[usize::from(input.method) % methods.len()].into(),
        path: format!("/{}", input.path),
        query: input.query,
        headers: input.headers,
        body: input.body,
    };
    let engine = engine();
    let _ = engine.handle(&request, input.now_ms, input.seed);
    let _ = engine.handle_graphql(&request, input.now_ms, input.seed);
    if let Some(ws) = engine.websocket(&request.path) {
        let text = String::from_utf8_lossy(&request.body);
        let _ = engine.ws_reply(ws, &request, &text, input.now_ms, input.seed);
    }
});
