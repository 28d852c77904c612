//! The JSON Schema of the definition format is generated from the types and checked in at
//! `schema/definition.schema.json` for editors. This test fails when the file is stale;
//! `EDGEMOCK_UPDATE_SCHEMA=1 cargo test -p edgemock-shared --features schema --test schema`
//! rewrites it.
#![cfg(feature = "schema")]
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

#[test]
fn checked_in_schema_is_current_and_validates_snapshots() {
    let schema = edgemock_shared::definition_schema();
    let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schema/definition.schema.json");
    if std::env::var_os("EDGEMOCK_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == text,
        "{} is stale: run EDGEMOCK_UPDATE_SCHEMA=1 cargo test -p edgemock-shared --features schema --test schema",
        path.display()
    );

    // The schema accepts a full-featured snapshot and refuses a broken one.
    let validator = jsonschema::validator_for(&schema).unwrap();
    let good = serde_json::json!({
        "format_version": 1, "version": 3,
        "workspace": {"id": "w", "slug": "acme", "plan": "pro"},
        "api": {"id": "a", "slug": "shop", "name": "Shop", "cors": {}, "default_delay": {"fixed": 10}},
        "endpoints": [{
            "id": "e1", "method": "POST", "path": "/orders/:id", "priority": 2,
            "when": {"all": [{"header": "x-key", "exists": true}, {"not": {"query": "debug", "equals": "1"}}]},
            "response": {"status": 201, "body": {"id": "{{ request.params.id }}"}},
            "responses": [{"name": "slow", "body": "x", "delay": {"lognormal": {"median_ms": 100, "sigma": 0.3}}}],
            "rules": [{"when": {"body": "$.items[*].sku", "contains": "A"}, "response": "slow"}],
            "selection": "weighted",
            "validation": {"schema": {"type": "object"}},
            "fault": {"percent": 1.5, "kind": "connection_close"},
            "cache": {"mode": "public", "max_age_seconds": 60},
            "dedup": true
        }],
        "graphql": [{"type": "query", "name": "GetUser", "response": {"body": {"data": {}}}}],
        "websockets": [{"path": "/feed", "intervals": [{"every_ms": 1000, "message": {"data": "tick"}}]}]
    });
    let errors: Vec<String> = validator.iter_errors(&good).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    // And the engine agrees with the schema about the same document.
    let snapshot: edgemock_shared::Snapshot = serde_json::from_value(good.clone()).unwrap();
    edgemock_shared::Engine::from_snapshot(snapshot).unwrap();

    let mut bad = good;
    bad["endpoints"][0]["selection"] = serde_json::json!("sometimes");
    assert!(!validator.is_valid(&bad));
}
