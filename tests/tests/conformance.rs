//! One scenario list, two runtimes: every request is sent to the edge (the Worker in
//! `wrangler dev`) and to the control plane's native runtime, for the same published
//! snapshot, and the answers must agree: status, body, and the headers the engine decides.
//! The same goes for WebSocket mocks: one session is played against both, and what each
//! sends back (on connect, on intervals, in reply) must agree.

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
    /// `x-request-id` is there, and edgemock's own errors quote it as `request_id`.
    request_id: bool,
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
    Ok((answer(response).await?, took))
}

/// What both runtimes must agree on in an answer.
async fn answer(response: reqwest::Response) -> anyhow::Result<Answer> {
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
    let header_id = response.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_owned());
    let bytes = response.bytes().await?;
    let mut body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    // Each answer has its own request id.
    let quoted =
        body.get_mut("error").and_then(Value::as_object_mut).map(|e| e.remove("request_id"));
    let request_id = header_id.is_some()
        && quoted.is_none_or(|id| id.as_ref().and_then(Value::as_str) == header_id.as_deref());
    Ok(Answer { status, headers, body, request_id })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_and_the_native_runtime_answer_alike() -> anyhow::Result<()> {
    let edge = Edge::start("conf-token", 1).await?;
    let dir = TempDir::new()?;
    let cp = ControlPlane::start(&ControlPlane::sqlite_url(&dir), Some(&edge)).await?;
    let mut result = scenario(&edge, &cp).await;
    if result.is_ok() {
        result = websocket_scenario(&edge, &cp).await;
    }
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
        json!({"method": "POST", "path": "/dedup", "dedup": true,
               "response": {"status": 201, "body": {"order": "{{ uuid() }}"}}}),
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
        assert!(at_edge.request_id, "{}: request ids at the edge: {at_edge:?}", c.name);
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
    // Deduplication, at both: the same request again gets the first answer, marked; another
    // body does not. (The answers themselves differ between runtimes: each draws a uuid.)
    for base in [&edge.url, &cp.url] {
        let order = |body: &'static str| {
            client
                .post(format!("{base}/mock/conf/dedup"))
                .header("authorization", "Bearer d")
                .body(body)
                .send()
        };
        let first = order(r#"{"sku": "A"}"#).await?;
        assert_eq!(first.status(), 201, "{base}");
        assert!(first.headers().get("x-mock-deduplicated").is_none(), "{base}");
        let first: Value = first.json().await?;
        let again = order(r#"{"sku": "A"}"#).await?;
        assert_eq!(
            (
                again.status().as_u16(),
                again.headers().get("x-mock-deduplicated").map(|v| v.as_bytes())
            ),
            (201, Some(&b"true"[..])),
            "{base}"
        );
        assert_eq!(again.json::<Value>().await?, first, "{base}");
        let other = order(r#"{"sku": "B"}"#).await?;
        assert!(other.headers().get("x-mock-deduplicated").is_none(), "{base}");
        assert_ne!(other.json::<Value>().await?, first, "{base}");
    }
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

/// A WebSocket client's view of a session: the first message, then everything else sent
/// within the session's window, sorted (intervals and replies race by design).
#[derive(Debug, PartialEq)]
struct Session {
    greeting: String,
    later: Vec<String>,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn ws_url(base: &str, path: &str) -> String {
    format!("{}{path}", base.replacen("http://", "ws://", 1))
}

/// The next text message, skipping control frames; an error if the socket ends or nothing
/// comes within `wait`.
async fn next_text(socket: &mut Socket, wait: Duration) -> anyhow::Result<Option<String>> {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return Ok(None),
            Ok(Some(Ok(Message::Text(text)))) => return Ok(Some(text.to_string())),
            Ok(Some(Ok(Message::Binary(_)))) => anyhow::bail!("a binary message"),
            Ok(Some(Ok(_))) => {}
            Ok(other) => anyhow::bail!("the socket ended: {other:?}"),
        }
    }
}

/// Connects to the WebSocket mock, waits for the greeting, sends a message that matches no
/// reply, a binary one, then one that matches, and collects what comes for 1.5 s.
async fn play(base: &str) -> anyhow::Result<Session> {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let started = Instant::now();
    let url = ws_url(base, "/ws/conf/rooms/lobby?user=ada");
    let (mut socket, switching) = tokio_tungstenite::connect_async(&url).await?;
    assert_eq!(switching.status(), 101, "{base}");
    let greeting = next_text(&mut socket, Duration::from_secs(5))
        .await?
        .ok_or_else(|| anyhow::anyhow!("{base}: no greeting"))?;
    // The non-matching messages go first: a reply to them would come before the pong.
    socket.send(Message::text(r#"{"type": "hello", "id": 4}"#)).await?;
    socket.send(Message::text("not even JSON")).await?;
    socket.send(Message::binary(br#"{"type": "ping", "id": 3}"#.to_vec())).await?;
    socket.send(Message::text(r#"{"type": "ping", "id": 5}"#)).await?;
    let mut later = Vec::new();
    let window = Duration::from_millis(1500);
    while let Some(text) = next_text(&mut socket, window.saturating_sub(started.elapsed())).await? {
        later.push(text);
    }
    socket.close(None).await?;
    later.sort();
    Ok(Session { greeting, later })
}

async fn websocket_scenario(edge: &Edge, cp: &ControlPlane) -> anyhow::Result<()> {
    let (status, body) = cp
        .post(
            "/api/v1/apis/conf/websockets",
            &json!({
                "path": "/rooms/:room",
                "on_connect": [{"data": {"type": "welcome", "room": "{{ request.params.room }}", "user": "{{ request.query.user }}"}}],
                "intervals": [{"every_ms": 300, "max_count": 2, "message": {"data": {"type": "tick", "room": "{{ request.params.room }}"}}}],
                "replies": [{"when": {"body": "/type", "equals": "ping"},
                             "send": [{"data": {"type": "pong", "id": "{{ message_json.id }}"}},
                                      {"data": "and later", "delay_ms": 200}]}]
            }),
        )
        .await?;
    assert_eq!(status, 201, "{body}");
    let (_, api) = cp.get("/api/v1/apis/conf").await?;
    let version = api["version"].to_string();
    let client = reqwest::Client::new();
    eventually(Duration::from_secs(30), "the WebSocket mock at the edge", || async {
        let r = client.get(format!("{}/mock/conf/users/1", edge.url)).send().await.ok()?;
        (r.headers().get("x-edgemock-snapshot-version")?.to_str().ok()? == version).then_some(())
    })
    .await?;

    // One session at each, side by side (the windows are timed).
    let (at_edge, native) = tokio::join!(play(&edge.url), play(&cp.url));
    let (at_edge, native) = (at_edge?, native?);
    assert_eq!(native, at_edge, "WebSocket session: native (left) and edge (right) differ");
    // Not vacuous: the greeting, both ticks and no third, one pong and its delayed follower,
    // and nothing for the text that matches no reply or the binary message.
    let parse = |m: &String| serde_json::from_str::<Value>(m).unwrap_or(Value::String(m.clone()));
    assert_eq!(
        parse(&at_edge.greeting),
        json!({"type": "welcome", "room": "lobby", "user": "ada"})
    );
    let mut expected: Vec<String> = [
        json!({"type": "pong", "id": "5"}).to_string(),
        "and later".to_owned(),
        json!({"type": "tick", "room": "lobby"}).to_string(),
        json!({"type": "tick", "room": "lobby"}).to_string(),
    ]
    .into();
    expected.sort();
    let later: Vec<Value> = at_edge.later.iter().map(parse).collect();
    let expected: Vec<Value> = expected.iter().map(parse).collect();
    assert_eq!(later, expected, "{at_edge:?}");

    // The largest message a mock reads (1 MiB) is read at both.
    let padded = |size: usize| {
        let head = r#"{"type": "ping", "id": 6, "pad": ""#;
        format!("{head}{}\"}}", "x".repeat(size - head.len() - 2))
    };
    for base in [&edge.url, &cp.url] {
        use futures::SinkExt;
        use tokio_tungstenite::tungstenite::Message;
        let (mut socket, _) =
            tokio_tungstenite::connect_async(ws_url(base, "/ws/conf/rooms/big")).await?;
        next_text(&mut socket, Duration::from_secs(5)).await?;
        socket.send(Message::text(padded(1024 * 1024))).await?;
        // Ticks may come first.
        let pong = loop {
            match next_text(&mut socket, Duration::from_secs(5)).await? {
                Some(tick) if tick.contains("tick") => {}
                other => break other,
            }
        };
        assert_eq!(pong.as_deref(), Some(r#"{"id":"6","type":"pong"}"#), "{base}");
        socket.close(None).await?;
    }
    // A burst of matching messages, more than the native runtime keeps replies in flight
    // for (64): every one is answered at both, the native runtime just reads them later.
    for base in [&edge.url, &cp.url] {
        use futures::SinkExt;
        use tokio_tungstenite::tungstenite::Message;
        let (mut socket, _) =
            tokio_tungstenite::connect_async(ws_url(base, "/ws/conf/rooms/burst")).await?;
        next_text(&mut socket, Duration::from_secs(5)).await?;
        for id in 0..150 {
            socket.feed(Message::text(format!(r#"{{"type": "ping", "id": {id}}}"#))).await?;
        }
        socket.flush().await?;
        let (mut pongs, mut followers) = (Vec::new(), 0);
        while pongs.len() < 150 || followers < 150 {
            let Some(text) = next_text(&mut socket, Duration::from_secs(10)).await? else {
                anyhow::bail!("{base}: {} pongs, {followers} followers", pongs.len());
            };
            if text == "and later" {
                followers += 1;
            } else if let Some(id) = parse(&text).get("id").and_then(Value::as_str) {
                pongs.push(id.parse::<u32>()?);
            }
        }
        pongs.sort_unstable();
        assert_eq!(pongs, (0..150).collect::<Vec<_>>(), "{base}");
        socket.close(None).await?;
    }
    // Where the two differ on purpose: a longer one is ignored at the edge, whose runtime
    // buffers up to 32 MiB before it closes with 1009; the native runtime buffers no more
    // than it reads and closes with 1009 as soon as the frame header says too much.
    {
        use futures::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
        let (socket, _) =
            tokio_tungstenite::connect_async(ws_url(&cp.url, "/ws/conf/rooms/big")).await?;
        let (mut sink, mut stream) = socket.split();
        // The server stops reading mid-message, so this send may never finish: it runs on
        // its own while the close frame is read.
        let sending =
            tokio::spawn(async move { sink.send(Message::text(padded(1024 * 1024 + 1))).await });
        let closed = loop {
            match tokio::time::timeout(Duration::from_secs(5), stream.next()).await? {
                Some(Ok(Message::Close(frame))) => break frame.map(|f| f.code),
                Some(Ok(_)) => {}
                other => anyhow::bail!("no close frame for an oversized message: {other:?}"),
            }
        };
        sending.abort();
        assert_eq!(closed, Some(CloseCode::Size));
    }

    // What is not a connection: a plain request (426), no such mock, no such API; asked
    // over HTTP and as a WebSocket handshake.
    let cases = [
        ("no upgrade", "/ws/conf/rooms/lobby", 426, "upgrade_required"),
        ("no such mock", "/ws/conf/nowhere", 404, "websocket_not_found"),
        ("no mock at the root", "/ws/conf", 404, "websocket_not_found"),
        ("no such API", "/ws/no-such-api/rooms/lobby", 404, "api_not_found"),
    ];
    for (name, path, status, code) in cases {
        let at_edge = answer(client.get(format!("{}{path}", edge.url)).send().await?).await?;
        let native = answer(client.get(format!("{}{path}", cp.url)).send().await?).await?;
        assert_eq!(native, at_edge, "{name}: native (left) and edge (right) differ");
        assert_eq!((at_edge.status, &at_edge.body["error"]["code"]), (status, &json!(code)));
        assert!(at_edge.request_id, "{name}: {at_edge:?}");
        if status == 404 {
            // As a handshake, too (the body may not come with the head, so the error code
            // is read from its header).
            let mut refused = Vec::new();
            for base in [&edge.url, &cp.url] {
                match tokio_tungstenite::connect_async(ws_url(base, path)).await {
                    Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                        let code = response.headers().get("x-edgemock-error").cloned();
                        refused.push((response.status().as_u16(), code));
                    }
                    other => anyhow::bail!("{name}: {base} did not refuse: {other:?}"),
                }
            }
            assert_eq!(refused[0].0, status, "{name}: the handshake at the edge");
            assert_eq!(refused[0].1.as_ref().map(|v| v.to_str().unwrap()), Some(code), "{name}");
            assert_eq!(refused[1], refused[0], "{name}: the handshake, native and edge");
        }
    }
    // RFC 9110 asks a 426 to name the protocol; the native runtime does. (The edge sets it
    // too, but its answer reaches the client without it in wrangler dev.)
    let r = client.get(format!("{}/ws/conf/rooms/lobby", cp.url)).send().await?;
    assert_eq!(r.headers().get("upgrade").map(|v| v.to_str().unwrap()), Some("websocket"));
    Ok(())
}
