//! End to end: the control plane publishes to the edge Worker running in `wrangler dev`
//! (workerd, local KV), and mocks are read back through the edge over HTTP.

// A failed unwrap in a test is a failed test, with the line that failed.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use edgemock_e2e::{ControlPlane, Edge, eventually};
use serde_json::{Value, json};
use tempfile::TempDir;

/// The isolate cache's staleness bound in this test, in seconds.
const CACHE_TTL_SECONDS: u64 = 2;
/// How long a change may take to show at the edge: the publisher's wake-up plus one cache
/// period, with room for a slow machine.
const VISIBLE_WITHIN: Duration = Duration::from_secs(CACHE_TTL_SECONDS + 8);

struct Seen {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

async fn fetch(client: &reqwest::Client, method: reqwest::Method, url: &str) -> Option<Seen> {
    let response = client.request(method, url).send().await.ok()?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.ok()?.to_vec();
    Some(Seen { status, headers, body })
}

fn json_of(seen: &Seen) -> Value {
    serde_json::from_slice(&seen.body).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mocks_published_by_the_control_plane_are_served_by_the_edge() -> anyhow::Result<()> {
    let edge = Edge::start("e2e-publish-token", CACHE_TTL_SECONDS).await?;
    let dir = TempDir::new()?;
    let cp = ControlPlane::start(&ControlPlane::sqlite_url(&dir), Some(&edge)).await?;
    let client = reqwest::Client::new();
    let result = scenario(&edge, &cp, &client).await;
    if result.is_err() {
        eprintln!("--- wrangler dev log ---\n{}", edge.log_tail());
    }
    result
}

async fn scenario(edge: &Edge, cp: &ControlPlane, client: &reqwest::Client) -> anyhow::Result<()> {
    // Before anything is published the edge says which API is unknown.
    let seen = fetch(client, reqwest::Method::GET, &format!("{}/mock/shop/items", edge.url))
        .await
        .unwrap();
    assert_eq!(seen.status, 404);
    assert_eq!(json_of(&seen)["error"]["code"], "api_not_found");
    assert_eq!(json_of(&seen)["error"]["api"], "shop");

    let (status, _) = cp.post("/api/v1/workspaces", &json!({"slug": "e2e"})).await?;
    assert_eq!(status, 201);
    let (status, _) = cp.post("/api/v1/workspaces/e2e/apis", &json!({"slug": "shop"})).await?;
    assert_eq!(status, 201);
    // Non-ASCII, escapes, trailing whitespace: what goes in must come out byte for byte.
    let body_v1 = "{\"items\": [\"café\", \"naïve \\u00e9\"]}\n\t ";
    let (status, endpoint) = cp
        .post(
            "/api/v1/apis/shop/endpoints",
            &json!({
                "method": "GET",
                "path": "/items/:id",
                "response": {
                    "status": 201,
                    "headers": {"content-type": "application/json; charset=utf-8", "x-mock": "v1"},
                    "body": body_v1
                }
            }),
        )
        .await?;
    assert_eq!(status, 201, "{endpoint}");
    let endpoint_id = endpoint["id"].as_str().unwrap().to_owned();

    let url = format!("{}/mock/shop/items/42", edge.url);
    let seen = eventually(VISIBLE_WITHIN, "the first version at the edge", || async {
        fetch(client, reqwest::Method::GET, &url).await.filter(|s| s.status == 201)
    })
    .await?;
    assert_eq!(seen.body, body_v1.as_bytes(), "byte for byte");
    assert_eq!(seen.headers["content-type"], "application/json; charset=utf-8");
    assert_eq!(seen.headers["x-mock"], "v1");

    // The control plane records what reached the edge.
    let (_, api) = cp.get("/api/v1/apis/shop").await?;
    assert_eq!(api["publish"]["state"], "published", "{api}");
    assert_eq!(api["publish"]["published_version"], api["version"]);

    // Misses say what is missing.
    let seen = fetch(client, reqwest::Method::GET, &format!("{}/mock/shop/nothing", edge.url))
        .await
        .unwrap();
    assert_eq!(
        (seen.status, json_of(&seen)["error"]["code"].clone()),
        (404, json!("route_not_found"))
    );
    assert_eq!(json_of(&seen)["error"]["path"], "/nothing");
    let seen = fetch(client, reqwest::Method::DELETE, &url).await.unwrap();
    assert_eq!(seen.status, 405);
    assert_eq!(json_of(&seen)["error"]["allowed"], json!(["GET"]));
    assert_eq!(seen.headers["allow"], "GET");
    let seen = fetch(client, reqwest::Method::GET, &format!("{}/mock/Bad_Slug/x", edge.url))
        .await
        .unwrap();
    assert_eq!(
        (seen.status, json_of(&seen)["error"]["code"].clone()),
        (404, json!("api_not_found"))
    );

    // A change reaches the edge within the bound.
    let body_v2 = "second version";
    let changed_at = Instant::now();
    let (status, _) = cp
        .put(
            &format!("/api/v1/apis/shop/endpoints/{endpoint_id}"),
            &json!({"method": "GET", "path": "/items/{id}", "response": {"status": 200, "body": body_v2}}),
        )
        .await?;
    assert_eq!(status, 200);
    let seen = eventually(VISIBLE_WITHIN, "the changed endpoint at the edge", || async {
        fetch(client, reqwest::Method::GET, &url).await.filter(|s| s.body == body_v2.as_bytes())
    })
    .await?;
    eprintln!("change visible at the edge after {:?}", changed_at.elapsed());
    assert_eq!(seen.status, 200);
    assert_eq!(seen.headers["content-type"], "text/plain; charset=utf-8");

    // A second endpoint under ANY with a wildcard.
    let (status, _) = cp
        .post(
            "/api/v1/apis/shop/endpoints",
            &json!({"method": "ANY", "path": "/echo/*", "response": {"body": {"ok": true}}}),
        )
        .await?;
    assert_eq!(status, 201);
    let echo = format!("{}/mock/shop/echo/a/b", edge.url);
    let seen = eventually(VISIBLE_WITHIN, "the ANY endpoint at the edge", || async {
        fetch(client, reqwest::Method::PATCH, &echo).await.filter(|s| s.status == 200)
    })
    .await?;
    assert_eq!(seen.body, br#"{"ok":true}"#);

    publish_route_is_guarded(edge, client).await?;
    isolate_cache_expires_within_its_ttl(edge, cp, client).await?;
    deleted_apis_leave_the_edge(edge, cp, client).await
}

/// Deleting an API removes it from the edge; the slug created again serves the new API
/// (its versions continue above the old ones, which the edge requires).
async fn deleted_apis_leave_the_edge(
    edge: &Edge,
    cp: &ControlPlane,
    client: &reqwest::Client,
) -> anyhow::Result<()> {
    let (status, _) = cp.post("/api/v1/workspaces/e2e/apis", &json!({"slug": "gone"})).await?;
    assert_eq!(status, 201);
    let (status, _) = cp
        .post(
            "/api/v1/apis/gone/endpoints",
            &json!({"method": "GET", "path": "/v", "response": {"body": "old"}}),
        )
        .await?;
    assert_eq!(status, 201);
    let url = format!("{}/mock/gone/v", edge.url);
    eventually(VISIBLE_WITHIN, "the API at the edge", || async {
        fetch(client, reqwest::Method::GET, &url).await.filter(|s| s.body == b"old")
    })
    .await?;
    let (status, _) = cp.delete("/api/v1/apis/gone").await?;
    assert_eq!(status, 204);
    eventually(VISIBLE_WITHIN, "the API to leave the edge", || async {
        fetch(client, reqwest::Method::GET, &url).await.filter(|s| s.status == 404)
    })
    .await?;
    let (status, _) = cp.post("/api/v1/workspaces/e2e/apis", &json!({"slug": "gone"})).await?;
    assert_eq!(status, 201);
    let (status, _) = cp
        .post(
            "/api/v1/apis/gone/endpoints",
            &json!({"method": "GET", "path": "/v", "response": {"body": "new"}}),
        )
        .await?;
    assert_eq!(status, 201);
    eventually(VISIBLE_WITHIN, "the new API with the old slug", || async {
        fetch(client, reqwest::Method::GET, &url).await.filter(|s| s.body == b"new")
    })
    .await?;
    // A removal of the old version that arrives late does not take the new one down.
    let r = client
        .delete(format!("{}/__edgemock/v1/snapshots/gone?version=1", edge.url))
        .bearer_auth(&edge.token)
        .send()
        .await?;
    assert_eq!(r.status(), 409);
    Ok(())
}

/// A snapshot that reaches KV without passing through this isolate (as one published through
/// another isolate, or replicated from another location) is served once the isolate's cache
/// period has passed, and not before the isolate re-reads KV.
async fn isolate_cache_expires_within_its_ttl(
    edge: &Edge,
    cp: &ControlPlane,
    client: &reqwest::Client,
) -> anyhow::Result<()> {
    let (_, mut snapshot) = cp.get("/api/v1/apis/shop/snapshot").await?;
    snapshot["version"] = json!(snapshot["version"].as_u64().unwrap() + 100);
    snapshot["endpoints"][0]["response"]["body"] = json!("written behind the isolate's back");
    let url = format!("{}/mock/shop/items/1", edge.url);
    // Warm the isolate cache so that it holds the old version.
    let seen = fetch(client, reqwest::Method::GET, &url).await.unwrap();
    assert_eq!(seen.body, b"second version");
    let written_at = Instant::now();
    edge.kv_put("api:shop", &snapshot.to_string())?;
    let seen = eventually(VISIBLE_WITHIN, "the KV change at the edge", || async {
        fetch(client, reqwest::Method::GET, &url)
            .await
            .filter(|s| s.body == b"written behind the isolate's back")
    })
    .await?;
    eprintln!(
        "KV change visible after {:?} (cache TTL {CACHE_TTL_SECONDS} s)",
        written_at.elapsed()
    );
    assert_eq!(seen.headers["x-edgemock-snapshot-version"], snapshot["version"].to_string());
    Ok(())
}

/// The internal publish route refuses anyone without the token, bad snapshots, and
/// snapshots older than the stored one.
async fn publish_route_is_guarded(edge: &Edge, client: &reqwest::Client) -> anyhow::Result<()> {
    let url = format!("{}/__edgemock/v1/snapshots/shop", edge.url);
    let snapshot = json!({
        "format_version": 1, "version": 1,
        "workspace": {"id": "w", "slug": "e2e"},
        "api": {"id": "a", "slug": "shop", "name": "shop"},
        "endpoints": []
    });
    let put = |token: &str, body: Value| client.put(&url).bearer_auth(token).json(&body).send();
    let response = put("wrong-token", snapshot.clone()).await?;
    assert_eq!(response.status(), 401);
    let response = client.put(&url).json(&snapshot).send().await?;
    assert_eq!(response.status(), 401);

    // Older than what the control plane published: refused, and the edge keeps serving.
    let response = put(&edge.token, snapshot.clone()).await?;
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await?;
    assert_eq!(body["error"]["code"], "stale_snapshot");

    let mut bad = snapshot.clone();
    bad["version"] = json!(999);
    bad["endpoints"] = json!([{"id": "x", "method": "GET", "path": "no-slash"}]);
    let response = put(&edge.token, bad).await?;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await?;
    assert_eq!(body["error"]["field"], "endpoints[0].path", "{body}");

    let mut future = snapshot.clone();
    future["format_version"] = json!(99);
    let response = put(&edge.token, future).await?;
    assert_eq!(response.status(), 422);

    let mut other_slug = snapshot.clone();
    other_slug["version"] = json!(999);
    other_slug["api"]["slug"] = json!("other");
    let response = put(&edge.token, other_slug).await?;
    assert_eq!(response.status(), 422);

    let response = client.put(&url).bearer_auth(&edge.token).body("not json").send().await?;
    assert_eq!(response.status(), 422);

    let seen = fetch(client, reqwest::Method::GET, &format!("{}/mock/shop/items/1", edge.url))
        .await
        .unwrap();
    assert_eq!(seen.body, b"second version", "refused snapshots change nothing");
    Ok(())
}
