//! End to end through `wrangler dev`: the edge carrying out what the engine decides —
//! proxying under the deployment's policy, conditional requests with the engine's ETags.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use axum::response::IntoResponse;
use edgemock_e2e::{ControlPlane, Edge, eventually};
use serde_json::{Value, json};
use tempfile::TempDir;

/// An upstream on loopback: `/slow…` answers after 3 s; anything else echoes the request.
async fn start_upstream() -> anyhow::Result<u16> {
    async fn echo(request: Request) -> impl IntoResponse {
        if request.uri().path().starts_with("/base/slow") {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
        let headers: BTreeMap<String, String> = request
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let method = request.method().to_string();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or("").to_owned();
        let body = axum::body::to_bytes(request.into_body(), 1 << 20).await.unwrap_or_default();
        (
            [
                ("x-upstream", "yes"),
                ("connection", "keep-alive"),
                ("set-cookie", "up=1; Path=/; Domain=example.com; HttpOnly"),
            ],
            axum::Json(json!({
                "method": method, "path": path, "query": query, "headers": headers,
                "body": String::from_utf8_lossy(&body),
            })),
        )
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move { axum::serve(listener, Router::new().fallback(echo)).await });
    Ok(port)
}

async fn publish(cp: &ControlPlane, api: &str, endpoints: &[Value]) -> anyhow::Result<()> {
    let (status, body) = cp.post("/api/v1/workspaces/rt/apis", &json!({"slug": api})).await?;
    assert_eq!(status, 201, "{body}");
    for e in endpoints {
        let (status, body) = cp.post(&format!("/api/v1/apis/{api}/endpoints"), e).await?;
        assert_eq!(status, 201, "{body}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_mode_and_conditional_requests() -> anyhow::Result<()> {
    let upstream = start_upstream().await?;
    // This deployment allows loopback over http, as local development does.
    let edge = Edge::start_with(
        "rt-token",
        1,
        &[
            ("PROXY_ALLOW_HTTP", "true"),
            ("PROXY_ALLOW_PRIVATE_NETWORKS", "true"),
            ("PROXY_DEFAULT_TIMEOUT", "800"),
        ],
    )
    .await?;
    // And this one is a default, safe deployment.
    let strict = Edge::start("rt-token-strict", 1).await?;
    let dir = TempDir::new()?;
    let strict_dir = TempDir::new()?;
    let cp = ControlPlane::start(&ControlPlane::sqlite_url(&dir), Some(&edge)).await?;
    let strict_cp =
        ControlPlane::start(&ControlPlane::sqlite_url(&strict_dir), Some(&strict)).await?;
    let result = scenario(&edge, &strict, &cp, &strict_cp, upstream).await;
    if result.is_err() {
        eprintln!(
            "--- wrangler dev log ---\n{}\n--- strict ---\n{}",
            edge.log_tail(),
            strict.log_tail()
        );
    }
    result
}

async fn scenario(
    edge: &Edge,
    strict: &Edge,
    cp: &ControlPlane,
    strict_cp: &ControlPlane,
    upstream: u16,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let target = format!("http://127.0.0.1:{upstream}/base");
    for cp in [cp, strict_cp] {
        let (status, _) = cp.post("/api/v1/workspaces", &json!({"slug": "rt"})).await?;
        assert_eq!(status, 201);
    }
    publish(cp, "px", &[
        json!({"method": "ANY", "path": "/up/*", "proxy": {"target": target,
            "headers": {"add": {"x-added": "1"}, "override": {"x-over": "set"}, "remove": ["x-drop"]}}}),
        json!({"method": "GET", "path": "/auth", "proxy": {"target": target, "forward_authorization": true, "forward_cookies": true}}),
        json!({"method": "GET", "path": "/slow", "proxy": {"target": target}}),
        json!({"method": "GET", "path": "/fast-timeout", "proxy": {"target": format!("{target}/slow"), "timeout_ms": 300}}),
        json!({"method": "GET", "path": "/page/:id", "cache": {"mode": "public", "max_age_seconds": 30},
               "response": {"body": {"page": "{{ request.params.id }}"}}}),
        json!({"method": "GET", "path": "/catalog", "cache": {"mode": "public", "max_age_seconds": 30},
               "response": {"body": {"items": ["a", "b"]}}}),
        json!({"method": "POST", "path": "/orders", "dedup": true,
               "response": {"status": 201, "body": {"order": "{{ uuid() }}"}}}),
    ])
    .await?;

    let url = |path: &str| format!("{}/mock/px{path}", edge.url);
    let echo = eventually(Duration::from_secs(15), "the proxy endpoint at the edge", || async {
        let r = client
            .post(url("/up/users/7?b=2&a=1"))
            .header("authorization", "Bearer secret")
            .header("cookie", "session=1")
            .header("x-drop", "gone")
            .header("x-over", "client")
            .header("x-keep", "kept")
            .body("hello upstream")
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(r)
    })
    .await?;
    assert_eq!(echo.headers()["x-mock-proxied"], "true");
    assert_eq!(echo.headers()["x-upstream"], "yes");
    assert_eq!(echo.headers()["set-cookie"], "up=1; HttpOnly; Path=/mock/px", "scoped to the API");
    let seen: Value = echo.json().await?;
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/base/up/users/7");
    assert_eq!(seen["query"], "b=2&a=1");
    assert_eq!(seen["body"], "hello upstream");
    let h = &seen["headers"];
    assert_eq!(
        (h["x-keep"].as_str(), h["x-added"].as_str(), h["x-over"].as_str()),
        (Some("kept"), Some("1"), Some("set")),
        "{h}"
    );
    assert!(
        h.get("authorization").is_none() && h.get("cookie").is_none() && h.get("x-drop").is_none(),
        "{h}"
    );

    let r = client
        .get(url("/auth"))
        .header("authorization", "Bearer secret")
        .header("cookie", "s=1")
        .send()
        .await?;
    let seen: Value = r.json().await?;
    assert_eq!(
        (seen["headers"]["authorization"].as_str(), seen["headers"]["cookie"].as_str()),
        (Some("Bearer secret"), Some("s=1"))
    );

    // Timeouts: the deployment's default (800 ms here) and the endpoint's own (300 ms).
    for (path, timeout) in [("/slow", 800), ("/fast-timeout", 300)] {
        let started = Instant::now();
        let r = client.get(url(path)).send().await?;
        let took = started.elapsed();
        assert_eq!(r.status(), 504, "{path}");
        let body: Value = r.json().await?;
        assert_eq!(
            (body["error"]["code"].as_str(), body["error"]["timeout_ms"].as_u64()),
            (Some("proxy_timeout"), Some(timeout))
        );
        assert!(
            took >= Duration::from_millis(timeout) && took < Duration::from_millis(2500),
            "{path}: {took:?}"
        );
    }

    // The engine's ETag and Cache-Control reach the client; a matching If-None-Match is a 304.
    let r = client.get(url("/page/3")).send().await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "public, max-age=30");
    let etag = r.headers()["etag"].to_str()?.to_owned();
    assert_eq!(r.text().await?, r#"{"page":"3"}"#);
    let r = client.get(url("/page/3")).header("if-none-match", format!("W/{etag}")).send().await?;
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"].to_str()?, etag);
    let r = client.get(url("/page/4")).header("if-none-match", &etag).send().await?;
    assert_eq!(r.status(), 200, "another page, another ETag");
    // Shareable answers go through the location's cache: a repeat is a hit, same bytes.
    let first = client.get(url("/catalog?x=1")).send().await?;
    assert_eq!(first.headers()["x-edgemock-cache"], "miss");
    let first_etag = first.headers()["etag"].clone();
    let first_body = first.text().await?;
    let again = client.get(url("/catalog?x=1")).send().await?;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["x-edgemock-cache"], "hit");
    assert_eq!(again.headers()["etag"], first_etag);
    assert_eq!(again.text().await?, first_body);
    let templated = client.get(url("/page/9")).send().await?;
    assert!(templated.headers().get("x-edgemock-cache").is_none(), "templated answers vary");

    // Deduplication: the same request (key order and query order aside) gets the first
    // answer again; another body or other credentials do not.
    let order = |query: &str, body: &str, auth: &str| {
        client
            .post(url(&format!("/orders?{query}")))
            .header("authorization", auth)
            .body(body.to_owned())
            .send()
    };
    let first = order("a=1&b=2", r#"{"sku": "A", "qty": 1}"#, "Bearer one").await?;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("x-mock-deduplicated").is_none());
    let first: Value = first.json().await?;
    let again = order("b=2&a=1", r#"{"qty": 1, "sku": "A"}"#, "Bearer one").await?;
    assert_eq!(
        (again.status().as_u16(), again.headers()["x-mock-deduplicated"].to_str()?),
        (201, "true")
    );
    assert_eq!(again.json::<Value>().await?, first);
    let other_body: Value =
        order("a=1&b=2", r#"{"sku": "B", "qty": 1}"#, "Bearer one").await?.json().await?;
    assert_ne!(other_body, first);
    let other_caller = order("a=1&b=2", r#"{"sku": "A", "qty": 1}"#, "Bearer two").await?;
    assert!(other_caller.headers().get("x-mock-deduplicated").is_none());
    assert_ne!(other_caller.json::<Value>().await?, first);

    // Latency, faults and CORS, from a snapshot written straight into KV (the admin API
    // cannot set an API's CORS settings yet).
    let snapshot = json!({
        "format_version": 1, "version": 1,
        "workspace": {"id": "w", "slug": "rt"},
        "api": {"id": "lf", "slug": "lat", "name": "Latency",
                "cors": {"allow_origins": ["https://app.example"], "allow_credentials": true,
                         "expose_headers": ["x-total"], "max_age_seconds": 120}},
        "endpoints": [
            {"id": "e1", "method": "GET", "path": "/slow", "delay": {"fixed": 600},
             "response": {"body": "late"}},
            {"id": "e2", "method": "GET", "path": "/broken",
             "fault": {"percent": 100, "status": 503, "body": {"down": true}},
             "response": {"body": "never"}},
            {"id": "e3", "method": "GET", "path": "/empty",
             "fault": {"percent": 100, "kind": "empty_response"}, "response": {"body": "never"}},
            {"id": "e4", "method": "GET", "path": "/drop",
             "fault": {"percent": 100, "kind": "connection_close"}, "response": {"body": "never"}},
            {"id": "e5", "method": "PUT", "path": "/items/:id", "response": {"body": {"ok": true}}}
        ]
    });
    edge.kv_put("api:lat", &snapshot.to_string())?;
    let lat = |path: &str| format!("{}/mock/lat{path}", edge.url);
    let started = Instant::now();
    let r = client.get(lat("/slow")).send().await?;
    let took = started.elapsed();
    assert_eq!((r.status().as_u16(), r.text().await?), (200, "late".to_owned()));
    assert!(took >= Duration::from_millis(600) && took < Duration::from_millis(2000), "{took:?}");
    let r = client.get(lat("/broken")).send().await?;
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<Value>().await?, json!({"down": true}));
    let r = client.get(lat("/empty")).send().await?;
    assert_eq!((r.status().as_u16(), r.text().await?), (200, String::new()));
    let r = client.get(lat("/drop")).send().await?;
    assert_eq!(r.status(), 502, "workers cannot drop a connection: an empty 502 instead");
    assert_eq!(r.text().await?, "");
    // A preflight from an allowed origin, then the actual request.
    let r = client
        .request(reqwest::Method::OPTIONS, lat("/items/3"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "PUT")
        .header("access-control-request-headers", "x-custom")
        .send()
        .await?;
    assert_eq!(r.status(), 204);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    assert_eq!(h["access-control-allow-methods"], "PUT");
    assert_eq!(h["access-control-allow-headers"], "x-custom");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(h["access-control-max-age"], "120");
    let r = client.put(lat("/items/3")).header("origin", "https://app.example").send().await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "https://app.example");
    assert_eq!(r.headers()["access-control-expose-headers"], "x-total");
    let r = client.put(lat("/items/3")).header("origin", "https://evil.example").send().await?;
    assert!(r.headers().get("access-control-allow-origin").is_none(), "not an allowed origin");

    // GraphQL at /mock-graphql/{apiSlug}, from a snapshot written straight into KV.
    let snapshot = json!({
        "format_version": 1, "version": 1,
        "workspace": {"id": "w", "slug": "rt"},
        "api": {"id": "g", "slug": "gql", "name": "GraphQL"},
        "endpoints": [],
        "graphql": [
            {"name": "GetUser", "response": {"body": {"data": {"user": {"id": "{{ request.json.variables.id }}"}}}},
             "rules": [{"when": {"variable": "/id", "equals": "0"}, "response": {"body": {"data": null, "errors": [{"message": "no such user"}]}}}]}
        ]
    });
    edge.kv_put("api:gql", &snapshot.to_string())?;
    let gql =
        |body: Value| client.post(format!("{}/mock-graphql/gql", edge.url)).json(&body).send();
    let r = gql(json!({"query": "query GetUser($id: ID!) { user(id: $id) { id } }", "variables": {"id": "7"}})).await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await?, json!({"data": {"user": {"id": "7"}}}));
    let r =
        gql(json!({"query": "query GetUser { user { id } }", "variables": {"id": "0"}})).await?;
    assert_eq!(r.json::<Value>().await?["errors"][0]["message"], "no such user");
    let r = gql(json!({"query": "query Nope { x }"})).await?;
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await?["errors"][0]["extensions"]["code"], "MOCK_NOT_FOUND");
    let r = gql(json!({"query": "query { broken"})).await?;
    assert_eq!(r.status(), 400);

    // WebSocket mocks at /ws/{apiSlug}{path}: a greeting on connect, ticks on an interval
    // (at most 2), replies to matching messages.
    let snapshot = json!({
        "format_version": 1, "version": 1,
        "workspace": {"id": "w", "slug": "rt"},
        "api": {"id": "l", "slug": "live", "name": "Live"},
        "endpoints": [],
        "websockets": [{
            "path": "/rooms/:room",
            "on_connect": [{"data": {"type": "welcome", "room": "{{ request.params.room }}"}}],
            "intervals": [{"every_ms": 300, "max_count": 2, "message": {"data": "tick"}}],
            "replies": [{"when": {"body": "/type", "equals": "ping"}, "send": [{"data": {"type": "pong", "id": "{{ message_json.id }}"}}]}]
        }]
    });
    edge.kv_put("api:live", &snapshot.to_string())?;
    let ws_url = format!("{}/ws/live/rooms/lobby", edge.url.replace("http://", "ws://"));
    let (mut socket, _) = tokio_tungstenite::connect_async(&ws_url).await?;
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let greeting = loop {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("the socket closed"))??;
        if let Message::Text(text) = message {
            break text.to_string();
        }
    };
    assert_eq!(
        serde_json::from_str::<Value>(&greeting)?,
        json!({"type": "welcome", "room": "lobby"})
    );
    socket.send(Message::text(r#"{"type": "ping", "id": 5}"#)).await?;
    socket.send(Message::text("no reply to this")).await?;
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => seen.push(text.to_string()),
            Ok(Some(Ok(_))) => {}
            Ok(other) => anyhow::bail!("socket ended: {other:?}"),
            Err(_) => {}
        }
    }
    let ticks = seen.iter().filter(|m| *m == "tick").count();
    let pongs: Vec<Value> = seen.iter().filter_map(|m| serde_json::from_str(m).ok()).collect();
    assert_eq!(ticks, 2, "{seen:?}");
    assert_eq!(pongs, [json!({"type": "pong", "id": "5"})], "{seen:?}");
    socket.close(None).await?;
    let r = client.get(format!("{}/ws/live/rooms/lobby", edge.url)).send().await?;
    assert_eq!(r.status(), 426);
    let r = client.get(format!("{}/ws/live/nowhere", edge.url)).send().await?;
    assert_eq!(r.status(), 404);

    // Rate limits per workspace hold across requests (a Durable Object per workspace): this
    // workspace allows 3 a minute.
    let snapshot = json!({
        "format_version": 1, "version": 1,
        "workspace": {"id": "wl", "slug": "limited", "rate_limit_rpm": 3},
        "api": {"id": "lim", "slug": "limited", "name": "Limited"},
        "endpoints": [{"id": "e", "method": "GET", "path": "/x", "response": {"body": "ok"}}]
    });
    edge.kv_put("api:limited", &snapshot.to_string())?;
    let limited = format!("{}/mock/limited/x", edge.url);
    let r = client.get(&limited).send().await?;
    assert_eq!(r.status(), 200);
    let reset: u64 = r.headers()["x-ratelimit-reset"].to_str()?.parse()?;
    if reset < 5 {
        // Too close to the end of the minute: start in the next window.
        tokio::time::sleep(Duration::from_secs(reset + 1)).await;
        assert_eq!(client.get(&limited).send().await?.status(), 200);
    }
    let mut remaining = Vec::new();
    for _ in 0..2 {
        let r = client.get(&limited).send().await?;
        assert_eq!((r.status().as_u16(), r.headers()["x-ratelimit-limit"].to_str()?), (200, "3"));
        remaining.push(r.headers()["x-ratelimit-remaining"].to_str()?.to_owned());
    }
    assert_eq!(remaining, ["1", "0"]);
    let r = client.get(&limited).send().await?;
    assert_eq!(r.status(), 429);
    let retry_after: u64 = r.headers()["retry-after"].to_str()?.parse()?;
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    assert_eq!(r.json::<Value>().await?["error"]["code"], "rate_limited");

    // A default deployment refuses private and plain-http targets.
    publish(strict_cp, "px", &[
        json!({"method": "GET", "path": "/up", "proxy": {"target": target}}),
        json!({"method": "GET", "path": "/loop", "proxy": {"target": format!("https://127.0.0.1:{upstream}")}}),
    ])
    .await?;
    for (path, why) in [("/up", "only https://"), ("/loop", "loopback, private or link-local")] {
        let r = eventually(Duration::from_secs(15), "the strict edge to serve the API", || async {
            let r = client.get(format!("{}/mock/px{path}", strict.url)).send().await.ok()?;
            (r.status() != 404).then_some(r)
        })
        .await?;
        assert_eq!(r.status(), 502, "{path}");
        let body: Value = r.json().await?;
        assert_eq!(body["error"]["code"], "proxy_target_forbidden", "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(why), "{body}");
    }
    Ok(())
}

/// A KV miss falls back to the control plane's internal snapshot route, and the answer is
/// written back to KV: the edge keeps serving it when the control plane is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_misses_fall_back_to_the_control_plane() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    // This control plane never publishes: the edge can only learn of the API by asking.
    let cp =
        ControlPlane::start_with(&ControlPlane::sqlite_url(&dir), None, Some("fb-token".into()))
            .await?;
    let edge = Edge::start_with("fb-token", 1, &[("CONTROL_PLANE_URL", &cp.url)]).await?;
    let result = fallback_scenario(&edge, cp).await;
    if result.is_err() {
        eprintln!("--- wrangler dev log ---\n{}", edge.log_tail());
    }
    result
}

async fn fallback_scenario(edge: &Edge, cp: ControlPlane) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    // The internal route wants the shared secret.
    let r = client.get(format!("{}/internal/v1/snapshots/late", cp.url)).send().await?;
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await?["error"]["code"], "unauthorized");

    let (status, _) = cp.post("/api/v1/workspaces", &json!({"slug": "rt"})).await?;
    assert_eq!(status, 201);
    let hello =
        json!({"method": "GET", "path": "/hello", "response": {"body": "from the control plane"}});
    publish(&cp, "late", &[hello]).await?;
    let r = client.get(format!("{}/mock/late/hello", edge.url)).send().await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-edgemock-snapshot-source"], "control-plane");
    assert_eq!(r.text().await?, "from the control plane");
    let r = client.get(format!("{}/mock/unknown-api/x", edge.url)).send().await?;
    assert_eq!(r.status(), 404, "the control plane does not know it either");

    // With the control plane gone, the snapshot written back to KV still serves, after the
    // isolate's own copy has expired.
    drop(cp);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = client.get(format!("{}/mock/late/hello", edge.url)).send().await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-edgemock-snapshot-source"], "kv");
    assert_eq!(r.text().await?, "from the control plane");
    Ok(())
}
