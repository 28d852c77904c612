//! One scenario list, two runtimes: every request is sent to the edge (the Worker in
//! `wrangler dev`) and to the control plane's native runtime, for the same published
//! snapshot, and the answers must agree: status, body, and the headers the engine decides.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use edgemock_e2e::{ControlPlane, Edge, eventually};
use reqwest::Method;
use serde_json::{Value, json};
use tempfile::TempDir;

/// Headers both runtimes must agree on (the edge adds its own `x-edgemock-snapshot-*` and
/// `x-ratelimit-*`, and every answer has its own `x-request-id`).
const COMPARED: &[&str] = &[
    "content-type",
    "etag",
    "cache-control",
    "allow",
    "location",
    "x-edgemock-error",
    "access-control-allow-origin",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-allow-credentials",
    "access-control-expose-headers",
    "access-control-max-age",
    "vary",
];

struct Case {
    name: &'static str,
    method: Method,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Option<&'static str>,
    status: u16,
    /// A delay both must honour.
    at_least: Duration,
}

fn case(name: &'static str, method: Method, path: &'static str, status: u16) -> Case {
    Case { name, method, path, headers: Vec::new(), body: None, status, at_least: Duration::ZERO }
}

#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

async fn send(
    client: &reqwest::Client,
    base: &str,
    c: &Case,
) -> anyhow::Result<(Answer, Duration)> {
    let prefix = if c.path.starts_with("graphql") { "/mock-graphql/conf" } else { "/mock/conf" };
    let path = c.path.strip_prefix("graphql").unwrap_or(c.path);
    let mut request = client.request(c.method.clone(), format!("{base}{prefix}{path}"));
    for (name, value) in &c.headers {
        request = request.header(*name, value);
    }
    if let Some(body) = c.body {
        request = request.header("content-type", "application/json").body(body);
    }
    let started = Instant::now();
    let response = request.send().await?;
    let took = started.elapsed();
    let status = response.status().as_u16();
    let headers = COMPARED
        .iter()
        .filter_map(|name| {
            response
                .headers()
                .get(*name)
                .map(|v| ((*name).to_owned(), v.to_str().unwrap_or("").to_owned()))
        })
        .collect();
    let bytes = response.bytes().await?;
    let mut body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    // Each answer has its own request id.
    if let Some(error) = body.get_mut("error").and_then(Value::as_object_mut) {
        error.remove("request_id");
    }
    Ok((Answer { status, headers, body }, took))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_and_the_native_runtime_answer_alike() -> anyhow::Result<()> {
    let edge = Edge::start("conf-token", 1).await?;
    let dir = TempDir::new()?;
    let cp = ControlPlane::start(&ControlPlane::sqlite_url(&dir), Some(&edge)).await?;
    let result = scenario(&edge, &cp).await;
    if result.is_err() {
        eprintln!("--- wrangler dev log ---\n{}", edge.log_tail());
    }
    result
}

async fn scenario(edge: &Edge, cp: &ControlPlane) -> anyhow::Result<()> {
    let (status, _) = cp.post("/api/v1/workspaces", &json!({"slug": "c"})).await?;
    assert_eq!(status, 201);
    let (status, body) = cp
        .post(
            "/api/v1/workspaces/c/apis",
            &json!({"slug": "conf", "base_headers": {"x-api": "conf"},
                    "cors": {"allow_origins": ["https://app.example"], "expose_headers": ["x-total"], "max_age_seconds": 60}}),
        )
        .await?;
    assert_eq!(status, 201, "{body}");
    let endpoints = [
        json!({"method": "GET", "path": "/users/:id", "response": {"body": {"id": 1, "name": "Ada"}}}),
        json!({"method": "GET", "path": "/users/:id/greeting", "response": {"body": {"hello": "{{ request.params.id }}", "page": "{{ request.query.page }}"}}}),
        json!({"method": "GET", "path": "/tier", "response": {"body": "basic"},
               "responses": [{"name": "gold", "body": "gold"}],
               "rules": [{"when": {"header": "x-tier", "equals": "gold"}, "response": "gold"}]}),
        json!({"method": "POST", "path": "/orders", "validation": {"schema": {"type": "object", "required": ["sku"], "properties": {"sku": {"type": "string", "pattern": "^[A-Z]+$"}}}},
               "response": {"status": 201, "headers": {"location": "/orders/1"}, "body": {"ok": true}}}),
        json!({"method": "GET", "path": "/public", "cache": {"mode": "public", "max_age_seconds": 30}, "response": {"body": {"p": 1}}}),
        json!({"method": "GET", "path": "/broken", "fault": {"percent": 100, "status": 503, "body": {"down": true}}}),
        json!({"method": "GET", "path": "/slow", "delay": {"fixed": 300}, "response": {"body": "late"}}),
        json!({"method": "DELETE", "path": "/users/:id", "response": {"status": 204}}),
    ];
    for e in &endpoints {
        let (status, body) = cp.post("/api/v1/apis/conf/endpoints", e).await?;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = cp
        .post(
            "/api/v1/apis/conf/graphql-operations",
            &json!({"name": "Me", "response": {"body": {"data": {"me": {"id": "{{ request.json.variables.id }}"}}}}}),
        )
        .await?;
    assert_eq!(status, 201, "{body}");
    let (_, api) = cp.get("/api/v1/apis/conf").await?;
    let version = api["version"].to_string();
    let client = reqwest::Client::new();
    eventually(Duration::from_secs(30), "the last version at the edge", || async {
        let r = client.get(format!("{}/mock/conf/users/1", edge.url)).send().await.ok()?;
        (r.headers().get("x-edgemock-snapshot-version")?.to_str().ok()? == version).then_some(())
    })
    .await?;

    let (first, _) = send(&client, &edge.url, &case("etag", Method::GET, "/users/1", 200)).await?;
    let etag = first.headers.iter().find(|(n, _)| n == "etag").map(|(_, v)| v.clone()).unwrap();
    let cases = vec![
        case("static", Method::GET, "/users/1", 200),
        case("head", Method::HEAD, "/users/1", 200),
        Case {
            headers: vec![("if-none-match", etag)],
            ..case("304", Method::GET, "/users/1", 304)
        },
        case("template", Method::GET, "/users/42/greeting?page=3", 200),
        case("rule default", Method::GET, "/tier", 200),
        Case {
            headers: vec![("x-tier", "gold".into())],
            ..case("rule", Method::GET, "/tier", 200)
        },
        Case { body: Some(r#"{"sku": "AB"}"#), ..case("valid", Method::POST, "/orders", 201) },
        Case { body: Some(r#"{"sku": 7}"#), ..case("invalid", Method::POST, "/orders", 400) },
        Case { body: Some("{not json"), ..case("unparseable", Method::POST, "/orders", 400) },
        case("public", Method::GET, "/public", 200),
        case("fault", Method::GET, "/broken", 503),
        Case { at_least: Duration::from_millis(300), ..case("delay", Method::GET, "/slow", 200) },
        case("no content", Method::DELETE, "/users/1", 204),
        case("near miss", Method::GET, "/Users/1", 404),
        case("nothing near", Method::GET, "/nothing/like/this", 404),
        case("method not allowed", Method::PATCH, "/orders", 405),
        Case {
            headers: vec![
                ("origin", "https://app.example".into()),
                ("access-control-request-method", "POST".into()),
                ("access-control-request-headers", "x-custom".into()),
            ],
            ..case("preflight", Method::OPTIONS, "/orders", 204)
        },
        Case {
            headers: vec![("origin", "https://app.example".into())],
            ..case("cors", Method::GET, "/users/1", 200)
        },
        Case {
            headers: vec![("origin", "https://evil.example".into())],
            ..case("cors refused", Method::GET, "/users/1", 200)
        },
        Case {
            body: Some(
                r#"{"query": "query Me($id: ID) { me(id: $id) { id } }", "variables": {"id": "9"}}"#,
            ),
            ..case("graphql", Method::POST, "graphql", 200)
        },
        Case {
            body: Some(r#"{"query": "query Other { x }"}"#),
            ..case("graphql unknown", Method::POST, "graphql", 404)
        },
        Case {
            body: Some(r#"{"query": "query {"}"#),
            ..case("graphql broken", Method::POST, "graphql", 400)
        },
    ];
    let mut compared = Vec::new();
    for c in &cases {
        let (at_edge, edge_took) = send(&client, &edge.url, c).await?;
        let (native, native_took) = send(&client, &cp.url, c).await?;
        assert_eq!(at_edge.status, c.status, "{}: {at_edge:?}", c.name);
        assert_eq!(native, at_edge, "{}: native (left) and edge (right) differ", c.name);
        assert!(edge_took >= c.at_least && native_took >= c.at_least, "{}: delays", c.name);
        compared.push((c.name, at_edge));
    }
    // The comparison is not vacuous: what the engine decided is there, at both.
    let answer = |name: &str| &compared.iter().find(|(n, _)| *n == name).unwrap().1;
    let header = |name: &str, h: &str| {
        answer(name).headers.iter().find(|(n, _)| n == h).map(|(_, v)| v.clone())
    };
    assert_eq!(answer("static").body, json!({"id": 1, "name": "Ada"}));
    assert!(header("static", "etag").is_some());
    assert_eq!(answer("template").body, json!({"hello": "42", "page": "3"}));
    assert_eq!(answer("rule").body, json!("gold"));
    assert_eq!(
        header("cors", "access-control-allow-origin").as_deref(),
        Some("https://app.example")
    );
    assert_eq!(header("cors refused", "access-control-allow-origin"), None);
    assert_eq!(header("method not allowed", "allow").as_deref(), Some("POST"));
    assert_eq!(answer("graphql").body, json!({"data": {"me": {"id": "9"}}}));
    assert_eq!(answer("invalid").body["error"]["code"], "validation_failed");
    // An unknown API, at both.
    for base in [&edge.url, &cp.url] {
        let r = client.get(format!("{base}/mock/no-such-api/x")).send().await?;
        assert_eq!(r.status(), 404);
        assert!(r.headers().contains_key("x-request-id"));
        let body: Value = r.json().await?;
        assert_eq!(body["error"]["code"], "api_not_found", "{base}");
    }
    Ok(())
}
