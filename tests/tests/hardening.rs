//! The control plane's own answers get security headers, compression over 1 KB (not with
//! `x-no-compression`), a deadline and CORS from `CORS_ALLOWED_ORIGINS`; mock answers get
//! none of it (they are what the mock defines).

use edgemock_e2e::ControlPlane;
use reqwest::header::HeaderMap;
use serde_json::json;
use tempfile::TempDir;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_answers_are_hardened_and_mock_answers_untouched() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let cp = ControlPlane::start_tuned(0, &ControlPlane::sqlite_url(&dir), None, None, |c| {
        c.cors_allowed_origins = vec!["https://admin.example".into()];
    })
    .await?;
    let (status, _) = cp.post("/api/v1/workspaces/default/apis", &json!({"slug": "m"})).await?;
    assert_eq!(status, 201);
    let big: Vec<_> = (0..100).map(|i| json!({"id": i, "name": "a name long enough"})).collect();
    let (status, _) = cp
        .post(
            "/api/v1/apis/m/endpoints",
            &json!({"method": "GET", "path": "/big", "response": {"body": big}}),
        )
        .await?;
    assert_eq!(status, 201);
    let plain = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", cp.url);

    // Security headers on the admin API, a looser CSP on the docs page.
    let r = cp.client.get(url("/api/v1/workspaces")).send().await?;
    let h = r.headers();
    assert_eq!(header(h, "x-content-type-options"), Some("nosniff"));
    assert_eq!(header(h, "x-frame-options"), Some("DENY"));
    assert_eq!(header(h, "referrer-policy"), Some("no-referrer"));
    assert!(header(h, "content-security-policy").is_some_and(|v| v.contains("default-src 'none'")));
    assert!(header(h, "strict-transport-security").is_some());
    let r = plain.get(url("/api/docs")).send().await?;
    assert!(
        header(r.headers(), "content-security-policy")
            .is_some_and(|v| v.contains("script-src 'self'"))
    );
    let r = plain.get(url("/health/live")).send().await?;
    assert_eq!(header(r.headers(), "x-content-type-options"), Some("nosniff"));
    // A wrong method on our own routes is a JSON 405 like the admin API's.
    for path in ["/health/live", "/metrics", "/api/docs"] {
        let r = plain.post(url(path)).send().await?;
        assert_eq!(r.status(), 405, "{path}");
        let body: serde_json::Value = r.json().await?;
        assert_eq!(body["error"]["code"], "method_not_allowed", "{path}");
    }

    // Request ids: the caller's when sane, a new one otherwise, on every answer.
    let r =
        cp.client.get(url("/api/v1/workspaces")).header("x-request-id", "trace-42").send().await?;
    assert_eq!(header(r.headers(), "x-request-id"), Some("trace-42"));
    let r = cp
        .client
        .get(url("/api/v1/workspaces"))
        .header("x-request-id", "bad id\twith tab")
        .send()
        .await?;
    let id = header(r.headers(), "x-request-id").unwrap_or_default().to_owned();
    assert!(id.len() == 36 && !id.contains(' '), "{id}");
    let r = plain.get(url("/health/live")).send().await?;
    assert!(header(r.headers(), "x-request-id").is_some());

    // Compression: over 1 KB when accepted, gzip or brotli; not with x-no-compression; not
    // for small bodies.
    for encoding in ["gzip", "br"] {
        let r = plain
            .get(url("/api/v1/openapi.json"))
            .header("accept-encoding", encoding)
            .send()
            .await?;
        assert_eq!(header(r.headers(), "content-encoding"), Some(encoding));
    }
    let r = plain
        .get(url("/api/v1/openapi.json"))
        .header("accept-encoding", "gzip")
        .header("x-no-compression", "1")
        .send()
        .await?;
    assert_eq!(header(r.headers(), "content-encoding"), None);
    assert!(r.json::<serde_json::Value>().await?["openapi"].is_string());
    let r = plain.get(url("/health/live")).header("accept-encoding", "gzip").send().await?;
    assert_eq!(header(r.headers(), "content-encoding"), None);

    // CORS for the configured origin only.
    let preflight = |origin: &'static str| {
        plain
            .request(reqwest::Method::OPTIONS, url("/api/v1/workspaces"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type")
            .send()
    };
    let r = preflight("https://admin.example").await?;
    assert_eq!(header(r.headers(), "access-control-allow-origin"), Some("https://admin.example"));
    let r = preflight("https://evil.example").await?;
    assert_eq!(header(r.headers(), "access-control-allow-origin"), None);

    // A mock answer: none of ours, even over 1 KB with gzip accepted.
    let r = plain.get(url("/mock/m/big")).header("accept-encoding", "gzip").send().await?;
    assert_eq!(r.status(), 200);
    for name in ["content-encoding", "x-frame-options", "content-security-policy"] {
        assert_eq!(header(r.headers(), name), None, "{name} on a mock answer");
    }
    assert!(r.bytes().await?.len() > 1024);
    cp.stop().await
}

/// The native runtime reads a mock request's body (hyper's own, unboxed) up to the limit the
/// admin API has, 4 MiB; a larger one is the edge's JSON 413, and the server goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_request_bodies_are_read_up_to_the_limit() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let cp = ControlPlane::start(&ControlPlane::sqlite_url(&dir), None).await?;
    let (status, _) = cp.post("/api/v1/workspaces/default/apis", &json!({"slug": "b"})).await?;
    assert_eq!(status, 201);
    let echo = json!({"method": "POST", "path": "/echo",
        "response": {"body": "{{ request.body | length }} bytes"}});
    let (status, _) = cp.post("/api/v1/apis/b/endpoints", &echo).await?;
    assert_eq!(status, 201);
    let plain = reqwest::Client::new();
    let post = |body: Vec<u8>| plain.post(format!("{}/mock/b/echo", cp.url)).body(body).send();
    let limit = 4 * 1024 * 1024;
    // Templates see bodies up to 1 MiB (the engine's limit for parsing); a larger one is
    // still read, and answered.
    let r = post(vec![b'a'; limit]).await?;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await?, "0 bytes");
    let r = post(vec![b'a'; limit + 1]).await?;
    assert_eq!(r.status(), 413);
    let body: serde_json::Value = r.json().await?;
    assert_eq!(body["error"]["code"], "body_too_large", "{body}");
    assert!(body["error"]["request_id"].is_string(), "the request id is in the error: {body}");
    let r = post(b"hello".to_vec()).await?;
    assert_eq!(r.text().await?, "5 bytes");
    cp.stop().await
}

/// A request past `REQUEST_TIMEOUT_MS` is a JSON 503, and its transaction is rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_deadline_is_a_json_503_and_stores_nothing() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let cp = ControlPlane::start_tuned(0, &ControlPlane::sqlite_url(&dir), None, None, |c| {
        c.request_timeout_ms = 1;
    })
    .await?;
    let document =
        std::fs::read(edgemock_e2e::root().join("control-plane/tests/fixtures/catalog-3.1.json"))?;
    let r = cp
        .client
        .post(format!("{}/api/v1/workspaces/default/apis/import", cp.url))
        .header("content-type", "application/json")
        .body(document)
        .send()
        .await?;
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await?;
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    // Listing is fast enough for the deadline only sometimes; read the database instead.
    cp.stop().await?;
    let cp = ControlPlane::start(&ControlPlane::sqlite_url(&dir), None).await?;
    let (_, apis) = cp.get("/api/v1/workspaces/default/apis").await?;
    assert_eq!(apis["items"], json!([]), "{apis}");
    cp.stop().await
}

/// Shutdown (SIGTERM in production, [`ControlPlane::stop`] here runs the same path): requests
/// in flight finish with their answers, idle keep-alive connections do not hold it up, and
/// nothing new is accepted afterwards. A mock's own `x-request-id` gives way to the request's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_requests_in_flight() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let cp = ControlPlane::start(&ControlPlane::sqlite_url(&dir), None).await?;
    let (status, _) = cp.post("/api/v1/workspaces/default/apis", &json!({"slug": "m"})).await?;
    assert_eq!(status, 201);
    let slow = json!({"method": "GET", "path": "/slow", "delay": {"fixed": 1500},
                      "response": {"body": "late", "headers": {"x-request-id": "the-mock's"}}});
    assert_eq!(cp.post("/api/v1/apis/m/endpoints", &slow).await?.0, 201);
    let url = format!("{}/mock/m/slow", cp.url);
    // An idle keep-alive connection: the client's pool keeps it open.
    let idle = reqwest::Client::new();
    assert_eq!(idle.get(format!("{}/health/live", cp.url)).send().await?.status(), 200);

    let in_flight = tokio::spawn({
        let url = url.clone();
        async move {
            let r =
                reqwest::Client::new().get(url).header("x-request-id", "in-flight").send().await?;
            let id = header(r.headers(), "x-request-id").map(str::to_owned);
            anyhow::Ok((r.status().as_u16(), id, r.text().await?))
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    cp.stop().await?;
    let took = started.elapsed();

    let (status, id, body) = in_flight.await??;
    assert_eq!((status, body.as_str()), (200, "late"), "the request in flight was cut off");
    assert_eq!(id.as_deref(), Some("in-flight"));
    assert!(took >= std::time::Duration::from_millis(1000), "stopped before the answer: {took:?}");
    assert!(took < std::time::Duration::from_secs(5), "an idle connection held it up: {took:?}");
    // The listener is closed: a new connection is refused.
    assert!(reqwest::Client::new().get(&url).send().await.is_err(), "still accepting");
    Ok(())
}

/// A control plane dropped rather than stopped (its task aborted, as when a caller gives
/// up on `run_until`) still tells its connections to finish: an idle keep-alive connection
/// is closed, not left serving from a server that no longer exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_server_closes_its_connections() -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = TempDir::new()?;
    let cp = ControlPlane::start(&ControlPlane::sqlite_url(&dir), None).await?;
    let address = cp.url.trim_start_matches("http://").to_owned();
    let mut connection = tokio::net::TcpStream::connect(&address).await?;
    connection
        .write_all(format!("GET /health/live HTTP/1.1\r\nhost: {address}\r\n\r\n").as_bytes())
        .await?;
    let mut answer = vec![0u8; 4096];
    let n = connection.read(&mut answer).await?;
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer[..n]));
    drop(cp);
    // The connection ends (end of stream, or a reset) instead of staying open.
    let ended = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            match connection.read(&mut answer).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the idle connection stayed open after the server was dropped");
    Ok(())
}
