//! Authentication and tenant isolation of the admin API, over HTTP, on SQLite and on a real
//! PostgreSQL server: every route refuses anonymous and forged callers, never shows one
//! workspace's data to a caller of another, and enforces roles.

#![allow(clippy::unwrap_used)]

use edgemock_control_plane::auth::Role;
use edgemock_e2e::{ControlPlane, Postgres};
use reqwest::Method;
use serde_json::{Value, json};
use tempfile::TempDir;

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

/// Workspace `slug` with an API `{slug}-api` holding one endpoint; answers the endpoint id.
async fn seed(cp: &ControlPlane, slug: &str) -> anyhow::Result<String> {
    let (status, body) = cp.post("/api/v1/workspaces", &json!({"slug": slug})).await?;
    assert_eq!(status, 201, "{body}");
    let (status, body) = cp
        .post(&format!("/api/v1/workspaces/{slug}/apis"), &json!({"slug": format!("{slug}-api")}))
        .await?;
    assert_eq!(status, 201, "{body}");
    let (status, body) = cp
        .post(
            &format!("/api/v1/apis/{slug}-api/endpoints"),
            &json!({"method": "GET", "path": "/x", "response": {"body": "x"}}),
        )
        .await?;
    assert_eq!(status, 201, "{body}");
    Ok(body["id"].as_str().unwrap().to_owned())
}

/// Every admin route, addressed at workspace `ws` (API `{ws}-api`, endpoint `endpoint` (also
/// standing in for GraphQL and WebSocket ids), member `member`, key `key`), with a valid
/// body where it takes one.
fn routes(
    ws: &str,
    endpoint: &str,
    member: &str,
    key: &str,
) -> Vec<(Method, String, Option<Value>)> {
    let api = format!("{ws}-api");
    let e = json!({"method": "GET", "path": "/y", "response": {"body": "y"}});
    vec![
        (Method::GET, format!("/api/v1/workspaces/{ws}"), None),
        (Method::PATCH, format!("/api/v1/workspaces/{ws}"), Some(json!({"name": "N"}))),
        (Method::DELETE, format!("/api/v1/workspaces/{ws}"), None),
        (Method::GET, format!("/api/v1/workspaces/{ws}/apis"), None),
        (
            Method::POST,
            format!("/api/v1/workspaces/{ws}/apis"),
            Some(json!({"slug": format!("{ws}-new")})),
        ),
        (Method::GET, format!("/api/v1/apis/{api}"), None),
        (Method::PATCH, format!("/api/v1/apis/{api}"), Some(json!({"name": "N"}))),
        (Method::DELETE, format!("/api/v1/apis/{api}"), None),
        (Method::POST, format!("/api/v1/apis/{api}/publish"), None),
        (Method::GET, format!("/api/v1/apis/{api}/snapshot"), None),
        (Method::GET, format!("/api/v1/apis/{api}/endpoints"), None),
        (Method::POST, format!("/api/v1/apis/{api}/endpoints"), Some(e.clone())),
        (Method::GET, format!("/api/v1/apis/{api}/endpoints/{endpoint}"), None),
        (Method::PUT, format!("/api/v1/apis/{api}/endpoints/{endpoint}"), Some(e)),
        (Method::DELETE, format!("/api/v1/apis/{api}/endpoints/{endpoint}"), None),
        (
            Method::POST,
            format!("/api/v1/workspaces/{ws}/apis/import"),
            Some(json!({"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {}})),
        ),
        (Method::GET, format!("/api/v1/apis/{api}/openapi"), None),
        (Method::GET, format!("/api/v1/apis/{api}/analytics"), None),
        (Method::GET, format!("/api/v1/apis/{api}/graphql-operations"), None),
        (
            Method::POST,
            format!("/api/v1/apis/{api}/graphql-operations"),
            Some(json!({"name": "Q"})),
        ),
        (Method::GET, format!("/api/v1/apis/{api}/graphql-operations/{endpoint}"), None),
        (
            Method::PUT,
            format!("/api/v1/apis/{api}/graphql-operations/{endpoint}"),
            Some(json!({"name": "Q"})),
        ),
        (Method::DELETE, format!("/api/v1/apis/{api}/graphql-operations/{endpoint}"), None),
        (Method::GET, format!("/api/v1/apis/{api}/websockets"), None),
        (Method::POST, format!("/api/v1/apis/{api}/websockets"), Some(json!({"path": "/w"}))),
        (Method::GET, format!("/api/v1/apis/{api}/websockets/{endpoint}"), None),
        (
            Method::PUT,
            format!("/api/v1/apis/{api}/websockets/{endpoint}"),
            Some(json!({"path": "/w"})),
        ),
        (Method::DELETE, format!("/api/v1/apis/{api}/websockets/{endpoint}"), None),
        (Method::GET, format!("/api/v1/workspaces/{ws}/members"), None),
        (
            Method::POST,
            format!("/api/v1/workspaces/{ws}/members"),
            Some(json!({"subject": "z", "role": "viewer"})),
        ),
        (Method::GET, format!("/api/v1/workspaces/{ws}/members/{member}"), None),
        (
            Method::PATCH,
            format!("/api/v1/workspaces/{ws}/members/{member}"),
            Some(json!({"role": "editor"})),
        ),
        (Method::DELETE, format!("/api/v1/workspaces/{ws}/members/{member}"), None),
        (Method::GET, format!("/api/v1/workspaces/{ws}/webhooks"), None),
        (
            Method::POST,
            format!("/api/v1/workspaces/{ws}/webhooks"),
            Some(json!({"url": "https://hooks.example.com/x", "events": ["*"]})),
        ),
        (Method::GET, format!("/api/v1/workspaces/{ws}/webhooks/{key}"), None),
        (
            Method::PATCH,
            format!("/api/v1/workspaces/{ws}/webhooks/{key}"),
            Some(json!({"active": false})),
        ),
        (Method::POST, format!("/api/v1/workspaces/{ws}/webhooks/{key}/rotate-secret"), None),
        (Method::DELETE, format!("/api/v1/workspaces/{ws}/webhooks/{key}"), None),
        (Method::GET, format!("/api/v1/workspaces/{ws}/api-keys"), None),
        (Method::POST, format!("/api/v1/workspaces/{ws}/api-keys"), Some(json!({"name": "ci"}))),
        (Method::GET, format!("/api/v1/workspaces/{ws}/api-keys/{key}"), None),
        (Method::POST, format!("/api/v1/workspaces/{ws}/api-keys/{key}/revoke"), None),
        (Method::DELETE, format!("/api/v1/workspaces/{ws}/api-keys/{key}"), None),
    ]
}

async fn scenario(cp: &ControlPlane) -> anyhow::Result<()> {
    // First start made a default workspace.
    let (status, body) = cp.get("/api/v1/workspaces/default").await?;
    assert_eq!((status, body["slug"].as_str()), (200, Some("default")), "{body}");

    seed(cp, "a").await?;
    let b_endpoint = seed(cp, "b").await?;
    let (_, b_member) = cp
        .post("/api/v1/workspaces/b/members", &json!({"subject": "bob", "role": "editor"}))
        .await?;
    let (status, b_key) =
        cp.post("/api/v1/workspaces/b/api-keys", &json!({"name": "b ci"})).await?;
    assert_eq!(status, 201, "{b_key}");
    let b_routes =
        routes("b", &b_endpoint, b_member["id"].as_str().unwrap(), b_key["id"].as_str().unwrap());

    // Anonymous, malformed, forged and expired credentials: 401 on every route.
    let forged = edgemock_control_plane::auth::Tokens::new(&"x".repeat(40)).mint(
        &edgemock_control_plane::auth::Claims {
            sub: "eve".into(),
            role: Role::Owner,
            workspaces: vec!["*".into()],
            exp: u64::MAX / 2,
        },
    )?;
    let expired = cp.tokens.mint(&edgemock_control_plane::auth::Claims {
        sub: "old".into(),
        role: Role::Owner,
        workspaces: vec!["*".into()],
        exp: 1_000_000,
    })?;
    for (method, path, body) in &b_routes {
        for credential in [
            None,
            Some("not-a-jwt"),
            Some(forged.as_str()),
            Some(expired.as_str()),
            Some("emk_0000"),
        ] {
            let (status, reply) =
                cp.send_as(credential, method.clone(), path, body.as_ref()).await?;
            assert_eq!(
                (status, code(&reply)),
                (401, "unauthorized"),
                "{method} {path} with {credential:?}: {reply}"
            );
        }
    }

    // Callers of workspace a — by token, by membership, by API key — never reach b: 404.
    let (_, a_key) =
        cp.post("/api/v1/workspaces/a/api-keys", &json!({"name": "a ci", "role": "admin"})).await?;
    let a_key = a_key["key"].as_str().unwrap().to_owned();
    let (status, _) = cp
        .post("/api/v1/workspaces/a/members", &json!({"subject": "ann", "role": "owner"}))
        .await?;
    assert_eq!(status, 201);
    let a_token = cp.token("alice", Role::Owner, &["a"]);
    let a_member = cp.token("ann", Role::Viewer, &[]);
    for credential in [&a_token, &a_member, &a_key] {
        for (method, path, body) in &b_routes {
            let (status, reply) =
                cp.send_as(Some(credential), method.clone(), path, body.as_ref()).await?;
            assert_eq!(status, 404, "{method} {path}: {reply}");
        }
        // Listing shows only workspace a.
        let (status, list) =
            cp.send_as(Some(credential), Method::GET, "/api/v1/workspaces", None).await?;
        let slugs: Vec<&str> =
            list["items"].as_array().unwrap().iter().map(|w| w["slug"].as_str().unwrap()).collect();
        assert_eq!((status, slugs), (200, vec!["a"]));
        // Creating workspaces needs a token for every workspace.
        let (status, _) = cp
            .send_as(
                Some(credential),
                Method::POST,
                "/api/v1/workspaces",
                Some(&json!({"slug": "c"})),
            )
            .await?;
        assert_eq!(status, 403);
    }
    // And b is untouched.
    let (status, api) = cp.get("/api/v1/apis/b-api").await?;
    assert_eq!((status, api["name"].as_str()), (200, Some("b-api")));
    let (_, endpoints) = cp.get("/api/v1/apis/b-api/endpoints").await?;
    assert_eq!(endpoints["items"].as_array().unwrap().len(), 1);

    // Roles inside a workspace.
    let viewer = cp.token("vic", Role::Viewer, &["a"]);
    let editor = cp.token("ed", Role::Editor, &["a"]);
    let admin = cp.token("ada", Role::Admin, &["a"]);
    let endpoint = json!({"method": "GET", "path": "/z", "response": {"body": "z"}});
    let cases: Vec<(&str, Method, &str, Option<Value>, u16)> = vec![
        (&viewer, Method::GET, "/api/v1/apis/a-api/endpoints", None, 200),
        (&viewer, Method::POST, "/api/v1/apis/a-api/endpoints", Some(endpoint.clone()), 403),
        (&editor, Method::POST, "/api/v1/apis/a-api/endpoints", Some(endpoint), 201),
        (&editor, Method::GET, "/api/v1/workspaces/a/api-keys", None, 403),
        (&editor, Method::DELETE, "/api/v1/apis/a-api", None, 403),
        (&editor, Method::PATCH, "/api/v1/workspaces/a", Some(json!({"plan": "pro"})), 403),
        (&admin, Method::PATCH, "/api/v1/workspaces/a", Some(json!({"plan": "pro"})), 200),
        (
            &admin,
            Method::POST,
            "/api/v1/workspaces/a/members",
            Some(json!({"subject": "x", "role": "owner"})),
            403,
        ),
        (
            &admin,
            Method::POST,
            "/api/v1/workspaces/a/members",
            Some(json!({"subject": "x", "role": "admin"})),
            201,
        ),
        (
            &admin,
            Method::POST,
            "/api/v1/workspaces/a/api-keys",
            Some(json!({"name": "k", "role": "owner"})),
            403,
        ),
        (&admin, Method::DELETE, "/api/v1/workspaces/a", None, 403),
    ];
    for (credential, method, path, body, want) in cases {
        let (status, reply) =
            cp.send_as(Some(credential), method.clone(), path, body.as_ref()).await?;
        assert_eq!(status, want, "{method} {path}: {reply}");
        if status == 403 {
            assert_eq!(code(&reply), "forbidden");
        }
    }

    // API keys: shown once, listed without the secret, revocable.
    let (status, created) = cp
        .send_as(
            Some(&admin),
            Method::POST,
            "/api/v1/workspaces/a/api-keys",
            Some(&json!({"name": "deploy"})),
        )
        .await?;
    assert_eq!((status, created["role"].as_str()), (201, Some("editor")));
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("emk_"));
    let (_, list) = cp.get("/api/v1/workspaces/a/api-keys").await?;
    assert!(!list.to_string().contains(&key), "the key is never shown again");
    assert!(list.to_string().contains(created["prefix"].as_str().unwrap()));
    let (status, _) = cp.send_as(Some(&key), Method::GET, "/api/v1/apis/a-api", None).await?;
    assert_eq!(status, 200);
    let (status, revoked) = cp
        .delete(&format!("/api/v1/workspaces/a/api-keys/{}", created["id"].as_str().unwrap()))
        .await?;
    assert_eq!((status, revoked["revoked_at"].is_string()), (200, true), "{revoked}");
    let (status, _) = cp.send_as(Some(&key), Method::GET, "/api/v1/apis/a-api", None).await?;
    assert_eq!(status, 401);

    // Webhooks: the secret is shown at creation and rotation only; URLs pass the proxy
    // policy; events are checked by name.
    let (status, hook) = cp
        .post("/api/v1/workspaces/a/webhooks", &json!({"url": "https://hooks.example.com/in", "events": ["api.published", "api.deleted"]}))
        .await?;
    assert_eq!(status, 201, "{hook}");
    let secret = hook["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let hook_path = format!("/api/v1/workspaces/a/webhooks/{}", hook["id"].as_str().unwrap());
    let (_, read) = cp.get(&hook_path).await?;
    assert!(read.get("secret").is_none(), "{read}");
    let (_, rotated) = cp.post(&format!("{hook_path}/rotate-secret"), &json!({})).await?;
    assert_ne!(rotated["secret"].as_str().unwrap(), secret);
    for (body, want) in [
        (json!({"url": "http://hooks.example.com/in", "events": ["*"]}), "url"),
        (json!({"url": "https://127.0.0.1/in", "events": ["*"]}), "url"),
        (json!({"url": "https://169.254.169.254/latest", "events": ["*"]}), "url"),
        (json!({"url": "https://hooks.example.com/in", "events": ["api.exploded"]}), "events[0]"),
        (json!({"url": "https://hooks.example.com/in", "events": []}), "events"),
    ] {
        let (status, reply) = cp.post("/api/v1/workspaces/a/webhooks", &body).await?;
        assert_eq!(
            (status, reply["error"]["field"].as_str()),
            (422, Some(want)),
            "{body}: {reply}"
        );
    }
    let (status, changed) = cp.patch(&hook_path, &json!({"active": false})).await?;
    assert_eq!((status, changed["active"].as_bool()), (200, Some(false)));
    let (status, _) = cp.delete(&hook_path).await?;
    assert_eq!(status, 204);

    // Settings reach the snapshot; a deleted API's slug continues its versions.
    let (status, api) = cp
        .patch("/api/v1/apis/a-api", &json!({"base_headers": {"x-env": "test"}, "cors": {"allow_origins": ["https://app.example"]}}))
        .await?;
    assert_eq!(status, 200, "{api}");
    let (_, snapshot) = cp.get("/api/v1/apis/a-api/snapshot").await?;
    assert_eq!(snapshot["api"]["base_headers"]["x-env"], "test");
    assert_eq!(snapshot["workspace"]["plan"], "pro");
    let (status, bad) =
        cp.patch("/api/v1/apis/a-api", &json!({"base_headers": {"bad header": "x"}})).await?;
    assert_eq!(
        (status, bad["error"]["field"].as_str()),
        (422, Some("base_headers.bad header")),
        "{bad}"
    );
    let version = snapshot["version"].as_u64().unwrap();
    let (status, _) = cp.delete("/api/v1/apis/a-api").await?;
    assert_eq!(status, 204);
    let (status, _) = cp.get("/api/v1/apis/a-api").await?;
    assert_eq!(status, 404);
    let (_, again) = cp.post("/api/v1/workspaces/a/apis", &json!({"slug": "a-api"})).await?;
    assert!(again["version"].as_u64().unwrap() > version, "{again}");

    // Deleting a workspace takes everything in it, and only the owner may.
    let (status, _) =
        cp.send_as(Some(&a_token), Method::DELETE, "/api/v1/workspaces/a", None).await?;
    assert_eq!(status, 204);
    let (status, _) = cp.get("/api/v1/apis/a-api").await?;
    assert_eq!(status, 404);
    let (status, _) = cp.send_as(Some(&a_key), Method::GET, "/api/v1/workspaces", None).await?;
    assert_eq!(status, 401, "the workspace's keys went with it");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_control_on_sqlite() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let cp = ControlPlane::start(&ControlPlane::sqlite_url(&dir), None).await?;
    scenario(&cp).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_control_on_postgres() -> anyhow::Result<()> {
    let pg = Postgres::start()?;
    let cp = ControlPlane::start(&pg.fresh_database()?, None).await?;
    scenario(&cp).await
}

/// Every route this file tests is in the OpenAPI document, with its security requirement,
/// and the document and its docs page are served without credentials (they hold nothing
/// secret, and a client generator must be able to fetch the document).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_in_the_openapi_document() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let cp = ControlPlane::start(&ControlPlane::sqlite_url(&dir), None).await?;
    let anonymous = reqwest::Client::new();
    let response = anonymous.get(format!("{}/api/v1/openapi.json", cp.url)).send().await?;
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await?;
    assert_eq!(doc["openapi"].as_str().map(|v| &v[..4]), Some("3.1."), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().expect("paths");
    // `/api/v1/apis/{api}/endpoints/{id}` matches `/api/v1/apis/w-api/endpoints/E`.
    let matches = |template: &str, path: &str| {
        let (t, p): (Vec<_>, Vec<_>) = (template.split('/').collect(), path.split('/').collect());
        t.len() == p.len() && t.iter().zip(&p).all(|(t, p)| t.starts_with('{') || t == p)
    };
    let mut operations = 0;
    // The routes of the matrix above, and the three that are not in a workspace.
    let all = routes("w", "E", "M", "K").into_iter().chain([
        (Method::GET, "/api/v1/workspaces".to_owned(), None),
        (Method::POST, "/api/v1/workspaces".to_owned(), None),
        (Method::POST, "/api/v1/analytics/cleanup".to_owned(), None),
    ]);
    for (method, path, _) in all {
        let (template, item) = paths
            .iter()
            .find(|(template, item)| {
                matches(template, &path) && item.get(method.as_str().to_lowercase()).is_some()
            })
            .unwrap_or_else(|| panic!("{method} {path} is not in the OpenAPI document"));
        let operation = &item[method.as_str().to_lowercase()];
        assert!(operation["operationId"].is_string(), "{method} {template}: no operationId");
        assert_eq!(operation["security"], json!([{"bearer": []}]), "{method} {template}");
        for status in ["401", "404"] {
            assert!(operation["responses"][status].is_object(), "{method} {template}: {status}");
        }
        operations += 1;
    }
    let documented: usize =
        paths.values().map(|item| item.as_object().map_or(0, |o| o.len())).sum();
    assert_eq!(
        operations, documented,
        "the document has operations this file does not test (or the other way round)"
    );
    // Every `$ref` resolves.
    let text = doc.to_string();
    for reference in text.split("\"$ref\":\"").skip(1) {
        let name = reference.split('"').next().unwrap_or_default();
        let name = name.strip_prefix("#/components/schemas/").expect("a component reference");
        assert!(doc["components"]["schemas"][name].is_object(), "dangling $ref {name}");
    }

    let page = anonymous.get(format!("{}/api/docs", cp.url)).send().await?;
    assert_eq!(page.status(), 200);
    let html = page.text().await?;
    assert!(
        html.contains("/api/v1/openapi.json") && html.contains("/api/docs/swagger-ui-bundle.js")
    );
    // Served by the control plane itself: the page works offline.
    for (asset, at_least) in [("swagger-ui-bundle.js", 1_000_000), ("swagger-ui.css", 100_000)] {
        let response = anonymous.get(format!("{}/api/docs/{asset}", cp.url)).send().await?;
        assert_eq!(response.status(), 200, "{asset}");
        assert!(response.bytes().await?.len() > at_least, "{asset}");
    }
    cp.stop().await
}
