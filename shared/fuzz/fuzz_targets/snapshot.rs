//! Arbitrary bytes as a snapshot: parsing and compiling must fail cleanly or succeed, and
//! whatever compiles must answer requests without panicking.
#![no_main]

use edgemock_shared::{Engine, Request, Snapshot};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(snapshot) = Snapshot::from_json(data) else { return };
    let Ok(engine) = Engine::from_snapshot(snapshot) else { return };
    let paths: Vec<String> = engine
        .snapshot()
        .endpoints
        .iter()
        .take(8)
        .map(|e| e.definition.path.replace(":", "x").replace(['{', '}', '*'], "y"))
        .collect();
    for path in paths {
        for method in ["GET", "POST", "HEAD", "OPTIONS"] {
            let request = Request {
                method: method.into(),
                path: path.clone(),
                query: "a=1&b=%ff".into(),
                headers: vec![("content-type".into(), "application/json".into()), ("origin".into(), "https://x".into())],
                body: br#"{"a": [1, {"b": null}], "c": "d"}"#.to_vec(),
            };
            let _ = engine.handle(&request, 1_700_000_000_000, 42);
        }
    }
    let gql = Request { method: "POST".into(), path: "/".into(), body: br#"{"query": "query Q { a }"}"#.to_vec(), ..Default::default() };
    let _ = engine.handle_graphql(&gql, 0, 1);
});
