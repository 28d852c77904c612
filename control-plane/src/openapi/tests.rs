//! Import and export of small documents, checked through the engine that will serve them.

use edgemock_shared::{Engine, Request, SNAPSHOT_FORMAT_VERSION, Snapshot, SnapshotEndpoint};
use serde_json::{Value, json};

use super::*;

fn snapshot(endpoints: &[EndpointDefinition]) -> Snapshot {
    Snapshot {
        format_version: SNAPSHOT_FORMAT_VERSION,
        version: 1,
        workspace: edgemock_shared::WorkspaceRef {
            id: "w".into(),
            slug: "w".into(),
            ..Default::default()
        },
        api: edgemock_shared::ApiRef {
            id: "a".into(),
            slug: "a".into(),
            name: "a".into(),
            ..Default::default()
        },
        endpoints: endpoints
            .iter()
            .enumerate()
            .map(|(i, d)| SnapshotEndpoint { id: format!("e{i}"), definition: d.clone() })
            .collect(),
        graphql: vec![],
        websockets: vec![],
    }
}

fn engine(imported: &Imported) -> Engine {
    Engine::from_snapshot(snapshot(&imported.endpoints)).unwrap()
}

/// Status, content type and body (JSON if it parses, else text) of one request.
fn call(
    engine: &Engine,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, Value) {
    let request = Request {
        method: method.into(),
        path: path.into(),
        query: "".into(),
        headers: headers.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
        body: body.as_bytes().to_vec(),
    };
    let outcome = engine.handle(&request, 0, 1);
    let r = outcome.response;
    let ct = r
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.to_string())
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (r.status, ct, body)
}

fn import_json(doc: Value) -> Imported {
    import(doc.to_string().as_bytes(), &ImportOptions::default()).unwrap()
}

fn notes(imported: &Imported, kind: NoteKind) -> Vec<&Note> {
    imported.report.notes.iter().filter(|n| n.kind == kind).collect()
}

const PETSTORE: &str = r##"
openapi: 3.0.3
info:
  title: Pet Store
  version: "1.0"
  description: Pets.
servers:
  - url: https://pets.example.com/v1
paths:
  /pets:
    get:
      operationId: listPets
      responses:
        200:
          description: pets
          content:
            application/json:
              schema:
                type: array
                items: {$ref: '#/components/schemas/Pet'}
              examples:
                two:
                  value: [{id: 1, name: Rex, born: 2020-01-02}, {id: 2, name: Tom}]
                none:
                  value: []
        default:
          $ref: '#/components/responses/Error'
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: '#/components/schemas/NewPet'}
            example: {name: Rex}
      responses:
        '201':
          description: created
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Pet'}
              example: {id: 3, name: Rex, born: '2020-01-02T10:00:00Z'}
        '422':
          $ref: '#/components/responses/Error'
  /pets/{pet-id}:
    parameters:
      - {name: pet-id, in: path, required: true, schema: {type: integer, minimum: 1}}
    get:
      responses:
        '200':
          description: a pet
          headers:
            X-Rate-Limit: {schema: {type: integer, minimum: 0, maximum: 100}}
          content:
            application/json:
              schema: {$ref: '#/components/schemas/Pet'}
              examples:
                missing-name: {value: {id: 1}}
        '404': {$ref: '#/components/responses/Error'}
components:
  responses:
    Error:
      description: error
      content:
        application/json:
          schema:
            type: object
            required: [code]
            properties:
              code: {type: integer}
              message: {type: string, nullable: true}
  schemas:
    NewPet:
      type: object
      required: [name]
      properties:
        name: {type: string, minLength: 1}
        tag: {type: string, nullable: true}
    Pet:
      allOf:
        - $ref: '#/components/schemas/NewPet'
        - type: object
          required: [id]
          properties:
            id: {type: integer, format: int64, readOnly: true}
            born: {type: string, format: date}
"##;

#[test]
fn imports_a_yaml_document_and_serves_it() {
    let imported = import(PETSTORE.as_bytes(), &ImportOptions::default()).unwrap();
    assert_eq!((imported.title.as_str(), imported.slug.as_str()), ("Pet Store", "pet-store"));
    assert_eq!(imported.description.as_deref(), Some("Pets."));
    assert_eq!(imported.base_path.as_deref(), Some("/v1"));
    assert_eq!(imported.report.operations, 3);
    let paths: Vec<String> =
        imported.endpoints.iter().map(|e| format!("{} {}", e.method, e.path)).collect();
    assert_eq!(paths, ["GET /pets", "POST /pets", "GET /pets/{pet_id}"]);
    assert_eq!(imported.operations[0].operation_id.as_deref(), Some("listPets"));
    let engine = engine(&imported);

    // The first example in document order ("two", not the alphabetically first "none").
    let (status, ct, body) = call(&engine, "GET", "/pets", &[], "");
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    assert_eq!(
        body,
        json!([{"id": 1, "name": "Rex", "born": "2020-01-02"}, {"id": 2, "name": "Tom"}])
    );
    let (status, _, body) = call(&engine, "GET", "/pets", &[("Prefer", "example=none")], "");
    assert_eq!((status, body), (200, json!([])));
    // `default` is reachable as code=default and as the status it was given.
    let (status, _, body) = call(&engine, "GET", "/pets", &[("prefer", "code=default")], "");
    assert_eq!(status, 500);
    assert!(body["code"].is_i64(), "{body}");
    assert_eq!(call(&engine, "GET", "/pets", &[("Prefer", "code=500")], "").0, 500);

    // The 201 example breaks `format: date`: generated data answers, and the report says so.
    let (status, _, body) = call(
        &engine,
        "POST",
        "/pets",
        &[("content-type", "application/json")],
        r#"{"name": "Rex"}"#,
    );
    assert_eq!(status, 201);
    assert!(body["born"].as_str().is_none_or(|b| b.len() == 10), "{body}");
    assert!(body["id"].is_i64() && body["name"].is_string(), "{body}");
    let invalid = notes(&imported, NoteKind::InvalidExample);
    let places: Vec<&str> = invalid.iter().map(|n| n.location.as_str()).collect();
    assert!(
        places.contains(&"/paths/~1pets/post/responses/201/content/application~1json/example"),
        "{invalid:#?}"
    );
    assert!(places.contains(&"/paths/~1pets~1{pet-id}/get/responses/200/content/application~1json/examples/missing-name/value"), "{invalid:#?}");
    assert!(invalid.iter().any(|n| n.errors.iter().any(|e| e.contains("born"))), "{invalid:#?}");

    // Validation: required fields, types, nullable; readOnly `id` is not required in requests.
    let (status, _, body) = call(&engine, "POST", "/pets", &[], r#"{"tag": 5}"#);
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "validation_failed");
    assert_eq!(call(&engine, "POST", "/pets", &[], r#"{"name": "a", "tag": null}"#).0, 201);
    assert_eq!(call(&engine, "POST", "/pets", &[], r#"{"name": ""}"#).0, 400);
    assert_eq!(
        call(&engine, "POST", "/pets", &[("Prefer", "code=422")], r#"{"name": "x"}"#).0,
        422
    );

    // Named examples keep their names even when replaced by generated data.
    let (status, _, body) =
        call(&engine, "GET", "/pets/7", &[("Prefer", "example=missing-name")], "");
    assert_eq!(status, 200);
    assert!(body["name"].is_string(), "{body}");
    let e = &imported.endpoints[2];
    assert_eq!(e.response.name.as_deref(), Some("200:missing-name"));
    let limit: i64 = e.response.headers["X-Rate-Limit"].parse().unwrap();
    assert!((0..=100).contains(&limit));
    assert_eq!(call(&engine, "GET", "/pets/7", &[("Prefer", "code=404")], "").0, 404);
    assert_eq!(call(&engine, "GET", "/pets/7", &[("Prefer", "code=404, example=x")], "").0, 404);
}

#[test]
fn paths_fit_the_engine() {
    let op = json!({"responses": {"204": {"description": "ok"}}});
    let multi = json!({"parameters": [{"name": "path", "in": "path", "required": true, "x-multi-segment": true, "schema": {"type": "string"}}], "responses": {"204": {"description": "ok"}}});
    let imported = import_json(json!({
        "openapi": "3.1.0", "info": {"title": "t", "version": "1"},
        "servers": [{"url": "/api/{v}", "variables": {"v": {"default": "v2"}}}],
        "paths": {
            "/compare/{base}...{head}": {"get": op},
            "/users/{id}": {"get": op},
            "/users/{name}": {"get": op},
            "/files/{path}": {"get": multi},
            "/blobs/{path}": {"get": multi},
            "/blobs/{id}/meta": {"get": op},
            "/v1/{name}:cancel": {"post": op},
            "/things/:x": {"get": op},
        }
    }));
    let paths: Vec<&str> = imported.endpoints.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/blobs/{id}/meta",
            "/blobs/{path}",
            "/compare/{base_head}",
            "/files/{*path}",
            "/things/%3Ax",
            "/users/{id}",
            "/users/{id}",
            "/v1/{name}",
        ]
    );
    let changed = notes(&imported, NoteKind::PathChanged);
    assert_eq!(changed.len(), 4, "{changed:#?}");
    assert_eq!(notes(&imported, NoteKind::Skipped).len(), 1, "the shadowed /users/{{name}}");
    let engine = engine(&imported);
    assert_eq!(call(&engine, "GET", "/files/a/b/c.txt", &[], "").0, 204);
    assert_eq!(call(&engine, "GET", "/compare/main...dev", &[], "").0, 204);
    assert_eq!(call(&engine, "GET", "/things/%3Ax", &[], "").0, 204);

    let kept = import(
        json!({"openapi": "3.0.0", "info": {"title": "t", "version": "1"}, "servers": [{"url": "https://x.io/base/"}], "paths": {"/a": {"get": op}}})
            .to_string()
            .as_bytes(),
        &ImportOptions { keep_server_base_path: true, ..Default::default() },
    )
    .unwrap();
    assert_eq!(kept.endpoints[0].path, "/base/a");
}

#[test]
fn refuses_what_it_cannot_read() {
    let cases: [(&[u8], Option<&str>, &str); 8] = [
        (br#"{"swagger": "2.0", "info": {}}"#, Some("/swagger"), "Swagger 2.0 is not supported"),
        (b"swagger: '2.0'\n", Some("/swagger"), "convert"),
        (br#"{"info": {"title": "x"}}"#, Some("/openapi"), "not an OpenAPI document"),
        (
            b"openapi: 3.2.0\ninfo: {title: t, version: '1'}\n",
            Some("/openapi"),
            "3.2.0 is not supported",
        ),
        (b"[1, 2]", Some(""), "must be an object"),
        (
            br#"{"openapi": "3.1.0", "paths": {"/a": {"get": 5}}}"#,
            Some("/paths/~1a/get"),
            "must be an object",
        ),
        (b"{\"openapi\": \"3.1.0\",\n \"paths\": {", None, "invalid JSON"),
        (b"openapi: [3\npaths: x", None, "invalid YAML"),
    ];
    for (doc, field, message) in cases {
        let err = import(doc, &ImportOptions::default()).unwrap_err();
        assert_eq!(err.field(), field, "{err}");
        assert!(err.to_string().contains(message), "{err}");
    }
    let err =
        import(b"{\"openapi\": \"3.1.0\",\n \"paths\": {", &ImportOptions::default()).unwrap_err();
    assert!(matches!(err, ImportError::Unparseable { line: Some(2), .. }), "{err:?}");
    assert!(matches!(
        import(&[0xff, 0xfe, 0], &ImportOptions::default()),
        Err(ImportError::Unparseable { .. })
    ));
}

#[test]
fn reports_what_it_does_not_mock() {
    let imported = import_json(json!({
        "openapi": "3.1.0", "info": {"title": "t", "version": "1"},
        "security": [{"session": []}],
        "webhooks": {"newPet": {"post": {"responses": {"200": {"description": "ok"}}}}},
        "components": {"securitySchemes": {"session": {"type": "apiKey", "in": "cookie", "name": "sid"}}},
        "paths": {
            "/upload": {"post": {
                "parameters": [{"name": "q", "in": "query", "schema": {"type": "string"}}],
                "requestBody": {"required": true, "content": {
                    "multipart/form-data": {"schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}}
                }},
                "callbacks": {"done": {}},
                "responses": {
                    "200": {"description": "xml", "content": {"application/xml": {"schema": {"type": "object"}}}},
                    "202": {"description": "xml example", "content": {"application/xml": {"example": "<ok/>"}}},
                    "203": {"description": "file", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                    "204": {"description": "text", "content": {"text/plain": {"schema": {"type": "string", "maxLength": 5}}}},
                    "205": {"description": "reset", "content": {"application/json": {"schema": {"type": "object"}}}},
                    "206": {"description": "text", "content": {"text/plain": {"schema": {"type": "string", "maxLength": 5}}}},
                    "101": {"description": "switching"},
                    "400": {"description": "bad", "links": {"x": {}}},
                }
            }}
        }
    }));
    let by_kind =
        |kind| notes(&imported, kind).into_iter().map(|n| n.location.clone()).collect::<Vec<_>>();
    let unsupported = by_kind(NoteKind::Unsupported);
    for want in [
        "/paths/~1upload/post/callbacks",
        "/paths/~1upload/post/responses/400/links",
        "/paths/~1upload/post/responses/200/content/application~1xml",
        "/paths/~1upload/post/responses/203/content/application~1octet-stream",
        "/webhooks",
        "/components/securitySchemes",
        "/components/securitySchemes/session",
        "/paths",
    ] {
        assert!(unsupported.iter().any(|l| l == want), "{want} in {unsupported:#?}");
    }
    assert_eq!(by_kind(NoteKind::NotValidated), ["/paths/~1upload/post/requestBody"]);
    assert_eq!(
        by_kind(NoteKind::Skipped),
        [
            "/paths/~1upload/post/responses/101",
            "/paths/~1upload/post/responses/204/content",
            "/paths/~1upload/post/responses/205/content"
        ]
    );
    let e = &imported.endpoints[0];
    assert!(e.validation.is_none());
    let engine = engine(&imported);
    let (status, ct, body) = call(&engine, "POST", "/upload", &[("Prefer", "code=202")], "--x");
    assert_eq!((status, ct.as_str(), body), (202, "application/xml", json!("<ok/>")));
    let (status, ct, body) = call(&engine, "POST", "/upload", &[("Prefer", "code=204")], "");
    assert_eq!((status, ct.as_str(), body), (204, "", json!("")), "no body for a 204");
    let (status, ct, body) = call(&engine, "POST", "/upload", &[("Prefer", "code=206")], "");
    assert_eq!((status, ct.as_str()), (206, "text/plain"));
    assert!(body.as_str().is_some_and(|s| s.len() <= 5), "{body}");
}

#[test]
fn template_like_examples_are_sent_verbatim() {
    let imported = import_json(json!({
        "openapi": "3.1.0", "info": {"title": "t", "version": "1"},
        "paths": {"/t": {"get": {"responses": {"200": {"description": "ok", "content": {
            "application/json": {"schema": {"type": "object"}, "example": {"greeting": "{{ name }} {% if x %}"}},
        }}}}}}
    }));
    assert_eq!(imported.endpoints[0].response.template, Some(false));
    let (_, _, body) = call(&engine(&imported), "GET", "/t", &[], "");
    assert_eq!(body, json!({"greeting": "{{ name }} {% if x %}"}));
}

#[test]
fn json_string_bodies_stay_json() {
    let imported = import_json(json!({
        "openapi": "3.1.0", "info": {"title": "t", "version": "1"},
        "paths": {"/s": {"get": {"responses": {"200": {"description": "ok", "content": {
            "application/json": {"schema": {"type": "string", "format": "uuid"}}
        }}}}}}
    }));
    let (_, ct, body) = call(&engine(&imported), "GET", "/s", &[], "");
    assert_eq!(ct, "application/json");
    assert!(body.as_str().is_some_and(|s| s.len() == 36), "a JSON string, quoted: {body}");
}

#[test]
fn deterministic_for_a_seed() {
    let doc = PETSTORE.as_bytes();
    let options = ImportOptions { use_examples: false, ..Default::default() };
    let a = import(doc, &options).unwrap();
    let b = import(doc, &options).unwrap();
    assert_eq!(a, b);
    let c = import(doc, &ImportOptions { seed: 99, ..options }).unwrap();
    assert_ne!(a.endpoints, c.endpoints);
}

#[test]
fn export_then_import_keeps_the_operations() {
    let imported = import(PETSTORE.as_bytes(), &ImportOptions::default()).unwrap();
    let endpoints: Vec<SnapshotEndpoint> = snapshot(&imported.endpoints).endpoints;
    let exported = export("Pet Store", "pets", &endpoints);
    assert_eq!(exported["openapi"], "3.1.0");
    assert_eq!(exported["servers"][0]["url"], "/mock/pets");
    assert_eq!(exported["paths"]["/pets/{pet_id}"]["get"]["parameters"][0]["name"], "pet_id");
    assert_eq!(
        exported["paths"]["/pets"]["get"]["responses"]["200"]["content"]["application/json"]["examples"]
            ["none"]["value"],
        json!([])
    );
    let schema =
        &exported["paths"]["/pets"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    assert!(schema.to_string().contains("#/components/schemas/"), "{schema}");
    let again = import(exported.to_string().as_bytes(), &ImportOptions::default()).unwrap();
    let ops = |i: &Imported| {
        i.endpoints.iter().map(|e| format!("{} {}", e.method, e.path)).collect::<Vec<_>>()
    };
    assert_eq!(ops(&again), ops(&imported));
    for (a, b) in again.endpoints.iter().zip(&imported.endpoints) {
        let statuses = |e: &EndpointDefinition| {
            let mut s: Vec<u16> =
                std::iter::once(&e.response).chain(&e.responses).map(|r| r.status).collect();
            s.sort_unstable();
            s.dedup();
            s
        };
        let mut want = statuses(b);
        if b.validation.is_some() {
            want.push(400);
            want.sort_unstable();
        }
        assert_eq!(statuses(a), want, "{} {}", a.method, a.path);
        assert_eq!(a.validation.is_some(), b.validation.is_some());
    }
    let engine = engine(&again);
    assert_eq!(call(&engine, "POST", "/pets", &[], r#"{"tag": 5}"#).0, 400);
    assert_eq!(call(&engine, "GET", "/pets", &[("Prefer", "example=none")], "").2, json!([]));
}

#[test]
fn exports_hand_written_endpoints() {
    let endpoints: Vec<EndpointDefinition> = serde_json::from_value(json!([
        {"method": "GET", "path": "/users/:id", "response": {"body": {"id": "{{ request.params.id }}"}},
         "responses": [{"name": "gone", "status": 410, "body": "bye", "headers": {"x-reason": "left"}}]},
        {"method": "GET", "path": "/users/:id", "priority": 5, "when": {"header": "x-admin", "exists": true},
         "response": {"name": "admin", "body": {"id": "admin"}}},
        {"method": "ANY", "path": "/files/*", "response": {"status": 204}},
        {"method": "PUT", "path": "/files/*", "response": {"status": 201}},
        {"method": "PROPFIND", "path": "/dav", "response": {"status": 207}},
        {"method": "POST", "path": "/proxy", "proxy": {"target": "https://api.example.com"}},
        {"method": "POST", "path": "/a", "validation": {"schema": {"$defs": {"N": {"type": "string"}}, "properties": {"n": {"$ref": "#/$defs/N"}}}}},
        {"method": "POST", "path": "/b", "validation": {"schema": {"$defs": {"N": {"type": "integer"}}, "properties": {"n": {"$ref": "#/$defs/N"}}}, "status": 422}},
    ]))
    .unwrap();
    let doc = export("Users", "users", &snapshot(&endpoints).endpoints);
    let paths = &doc["paths"];
    let get = &paths["/users/{id}"]["get"];
    let examples = &get["responses"]["200"]["content"]["application/json"]["examples"];
    assert_eq!(
        examples["admin"]["value"],
        json!({"id": "admin"}),
        "the higher priority first: {examples}"
    );
    assert_eq!(examples["example2"]["x-edgemock-template"], json!(true));
    assert_eq!(
        get["responses"]["410"]["content"]["text/plain"]["examples"]["gone"]["value"],
        "bye"
    );
    assert_eq!(get["responses"]["410"]["headers"]["x-reason"]["example"], "left");
    assert_eq!(paths["/files/{wildcard}"]["put"]["responses"]["201"]["description"], "Created");
    for m in ["get", "post", "delete", "patch"] {
        assert!(paths["/files/{wildcard}"][m]["responses"]["204"].is_object(), "ANY under {m}");
        assert_eq!(paths["/files/{wildcard}"][m]["parameters"][0]["x-multi-segment"], true);
    }
    assert_eq!(doc["x-edgemock-unexported"][0]["method"], "PROPFIND");
    assert_eq!(
        paths["/proxy"]["post"]["responses"]["default"]["description"],
        "Proxied to https://api.example.com."
    );
    assert_eq!(doc["components"]["schemas"]["N"], json!({"type": "string"}));
    assert_eq!(doc["components"]["schemas"]["N_2"], json!({"type": "integer"}));
    assert_eq!(
        paths["/b"]["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]["n"]
            ["$ref"],
        "#/components/schemas/N_2"
    );
    assert!(paths["/b"]["post"]["responses"]["422"].is_object());
    // And it reads back.
    let again = import(doc.to_string().as_bytes(), &ImportOptions::default()).unwrap();
    let engine = engine(&again);
    // The validation status is the importer's option: OpenAPI has no field for it.
    assert_eq!(call(&engine, "POST", "/b", &[], r#"{"n": "x"}"#).0, 400);
    assert_eq!(call(&engine, "POST", "/b", &[], r#"{"n": 1}"#).0, 200);
    assert_eq!(call(&engine, "POST", "/b", &[("Prefer", "code=422")], r#"{"n": 1}"#).0, 422);
    assert_eq!(call(&engine, "GET", "/files/a/b", &[], "").0, 204);
}

#[test]
fn schemas_the_engine_cannot_compile_are_reported() {
    // Deeper than the engine's 64 levels of nesting.
    let mut schema = json!({"type": "string"});
    for _ in 0..40 {
        schema = json!({"type": "object", "properties": {"a": schema}});
    }
    let imported = import_json(json!({
        "openapi": "3.1.0", "info": {"title": "t", "version": "1"},
        "paths": {"/deep": {"post": {
            "requestBody": {"required": true, "content": {"application/json": {"schema": schema.clone()}}},
            "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": schema}}}}
        }}}
    }));
    let locations: Vec<(NoteKind, &str)> =
        imported.report.notes.iter().map(|n| (n.kind, n.location.as_str())).collect();
    assert!(
        locations.contains(&(
            NoteKind::NotValidated,
            "/paths/~1deep/post/requestBody/content/application~1json/schema"
        )),
        "{locations:?}"
    );
    assert!(
        locations.contains(&(
            NoteKind::Unsupported,
            "/paths/~1deep/post/responses/200/content/application~1json/schema"
        )),
        "{locations:?}"
    );
    assert!(imported.endpoints[0].validation.is_none());
    engine(&imported);
}
