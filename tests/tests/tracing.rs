//! OpenTelemetry traces, end to end. The control plane runs with `OTEL_EXPORTER_OTLP_ENDPOINT`
//! pointing at a real OTLP/HTTP receiver in this test, which decodes every
//! `ExportTraceServiceRequest` with the protocol's own types (opentelemetry-proto).
//!
//! The tracing subscriber is global to a process, so each traced control plane is a process
//! of its own: this test binary run again for [`traced_control_plane`] alone, which does what
//! `edgemock serve` does (`Config::from_env`, `telemetry::start`, `serve`), JSON logs to a file.
//!
//! Checked: the resource (`service.name`, `service.version`, …), an admin request continuing
//! a caller's `traceparent`, span names that are route templates, status codes and the error
//! status of a 5xx, the trace id in the request's log lines, the collector's header,
//! publishes and webhook attempts as client spans (a publish an admin asks for is a child of
//! the request), the spans still queued leaving at shutdown, and a collector that is down
//! (answers stay fast, one warning, exports resume when it is back) or hangs (the exit still
//! takes about 5 s).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use edgemock_control_plane::auth::{Claims, Role, Tokens};
use edgemock_e2e::{JWT_SECRET, eventually};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as SpanStatus;
use prost::Message;
use serde_json::{Value, json};
use tempfile::TempDir;

/// Set in the environment of the child process: run the control plane.
const CHILD: &str = "EDGEMOCK_TRACING_TEST_CHILD";
/// The caller's trace and span of the admin request that carries a `traceparent`.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";

/// Not a test: the traced control plane of the tests below, in a process of its own, started
/// by them with the settings in its environment. Without them it does nothing.
#[test]
#[ignore = "the control-plane process of the tracing tests; they start it"]
fn traced_control_plane() -> anyhow::Result<()> {
    if std::env::var_os(CHILD).is_none() {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let config = edgemock_control_plane::Config::from_env()?;
        let telemetry = edgemock_control_plane::telemetry::start(&config)?;
        edgemock_control_plane::serve(config, telemetry).await
    })
}

/// One span as the collector received it, with its resource's attributes.
#[derive(Debug, Clone)]
struct Received {
    resource: HashMap<String, String>,
    scope: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    name: String,
    kind: i32,
    attributes: HashMap<String, String>,
    status: i32,
}

/// An OTLP/HTTP receiver on 127.0.0.1: `POST /v1/traces`, protobuf only. It also stands in
/// for the edge's publish route and for a webhook receiver (`POST /hook`), answering 200.
struct Collector {
    url: String,
    spans: Arc<Mutex<Vec<Received>>>,
    /// The `authorization` header of each export.
    credentials: Arc<Mutex<Vec<String>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Collector {
    async fn start() -> anyhow::Result<Self> {
        Self::start_on(tokio::net::TcpListener::bind("127.0.0.1:0").await?)
    }

    fn start_on(listener: tokio::net::TcpListener) -> anyhow::Result<Self> {
        let url = format!("http://{}", listener.local_addr()?);
        let spans = Arc::new(Mutex::new(Vec::new()));
        let credentials = Arc::new(Mutex::new(Vec::new()));
        let (into, seen) = (spans.clone(), credentials.clone());
        let app = axum::Router::new()
            .route(
                "/v1/traces",
                axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                    let (into, seen) = (into.clone(), seen.clone());
                    async move { receive(&headers, &body, &into, &seen) }
                }),
            )
            .route("/__edgemock/v1/snapshots/{slug}", axum::routing::put(|| async { "{}" }))
            .route("/hook", axum::routing::post(|| async { "" }));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, spans, credentials, server })
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The first span `pick` chooses, once it has arrived.
    async fn span(&self, what: &str, pick: impl Fn(&Received) -> bool) -> anyhow::Result<Received> {
        eventually(Duration::from_secs(30), what, || {
            let found = self.spans().into_iter().find(|s| pick(s));
            async move { found }
        })
        .await
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn receive(
    headers: &HeaderMap,
    body: &[u8],
    into: &Mutex<Vec<Received>>,
    seen: &Mutex<Vec<String>>,
) -> (StatusCode, Vec<u8>) {
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/x-protobuf") {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, Vec::new());
    }
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, Vec::new());
    };
    let credential = headers.get("authorization").and_then(|v| v.to_str().ok());
    if let Ok(mut seen) = seen.lock() {
        seen.push(credential.unwrap_or_default().to_owned());
    }
    let mut received = Vec::new();
    for resource_spans in request.resource_spans {
        let resource =
            attributes(&resource_spans.resource.map(|r| r.attributes).unwrap_or_default());
        for scope_spans in resource_spans.scope_spans {
            let scope = scope_spans.scope.map(|s| s.name).unwrap_or_default();
            for span in scope_spans.spans {
                received.push(Received {
                    resource: resource.clone(),
                    scope: scope.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name,
                    kind: span.kind,
                    attributes: attributes(&span.attributes),
                    status: span.status.map_or(0, |s| s.code),
                });
            }
        }
    }
    if let Ok(mut spans) = into.lock() {
        spans.extend(received);
    }
    (StatusCode::OK, ExportTraceServiceResponse::default().encode_to_vec())
}

fn attributes(list: &[KeyValue]) -> HashMap<String, String> {
    list.iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::IntValue(i)) => i.to_string(),
                Some(any_value::Value::BoolValue(b)) => b.to_string(),
                Some(any_value::Value::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A control plane in a process of its own (see [`traced_control_plane`]), on SQLite, with
/// JSON logs at `info` (`tower_http` at `debug`: a line for every request) in a file.
struct Traced {
    child: Child,
    url: String,
    log: PathBuf,
    client: reqwest::Client,
    _dir: TempDir,
}

impl Traced {
    async fn start(settings: &[(&str, &str)]) -> anyhow::Result<Self> {
        let dir = TempDir::new()?;
        let log = dir.path().join("control-plane.log");
        let database = format!("sqlite://{}?mode=rwc", dir.path().join("edgemock.db").display());
        let child = Command::new(std::env::current_exe()?)
            .args(["traced_control_plane", "--exact", "--ignored", "--nocapture"])
            .args(["--test-threads", "1"])
            // Nothing from this environment (an OTEL_* of the machine) but the settings.
            .env_clear()
            .env(CHILD, "1")
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("DATABASE_URL", database)
            .env("JWT_SECRET", JWT_SECRET)
            .env("LOG_FORMAT", "json")
            .env("LOG_LEVEL", "info,tower_http=debug")
            .env("GLOBAL_RATE_LIMIT_RPM", "0")
            .env("WEBHOOKS_ENABLED", "false")
            .envs(settings.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log)?)
            .spawn()
            .context("cannot start the traced control plane")?;
        let mut traced =
            Self { child, url: String::new(), log, client: reqwest::Client::new(), _dir: dir };
        // Port 0: the address it got is in its log.
        let addr = eventually(Duration::from_secs(60), "the control plane to listen", || {
            let found = lines(&traced.log).into_iter().find_map(|line| {
                (line["message"] == "control plane listening")
                    .then(|| line["addr"].as_str().map(str::to_owned))
                    .flatten()
            });
            async move { found }
        })
        .await
        .with_context(|| traced.log_tail())?;
        traced.url = format!("http://{addr}");
        Ok(traced)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn owner_token(&self) -> anyhow::Result<String> {
        let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
        Tokens::new(JWT_SECRET).mint(&Claims {
            sub: "tracing-test".to_owned(),
            role: Role::Owner,
            workspaces: vec!["*".to_owned()],
            exp: exp + 3600,
        })
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Value) -> anyhow::Result<u16> {
        let response = self
            .client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(self.owner_token()?)
            .json(&body)
            .send()
            .await?;
        Ok(response.status().as_u16())
    }

    async fn get(&self, path: &str) -> anyhow::Result<u16> {
        Ok(self.client.get(format!("{}{path}", self.url)).send().await?.status().as_u16())
    }

    /// An API `shop` with `GET /items/:id` (200) and `GET /boom` (a 500 the mock defines).
    async fn create_shop(&self) -> anyhow::Result<()> {
        use reqwest::Method;
        let status =
            self.admin(Method::POST, "/api/v1/workspaces/default/apis", json!({"slug": "shop"}));
        anyhow::ensure!(status.await? == 201, "creating the API");
        for (path, status) in [("/items/:id", 200), ("/boom", 500)] {
            let endpoint = json!({"method": "GET", "path": path,
                                  "response": {"status": status, "body": {"status": status}}});
            let created = self.admin(Method::POST, "/api/v1/apis/shop/endpoints", endpoint);
            anyhow::ensure!(created.await? == 201, "creating {path}");
        }
        Ok(())
    }

    /// SIGTERM, as Kubernetes stops a pod.
    fn terminate(&self) -> anyhow::Result<()> {
        let status =
            Command::new("kill").args(["-s", "TERM"]).arg(self.child.id().to_string()).status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        Ok(())
    }

    async fn exited(&mut self, deadline: Duration) -> anyhow::Result<ExitStatus> {
        let child = &mut self.child;
        let mut exited = None;
        eventually(deadline, "the control plane to exit", || {
            if exited.is_none() {
                exited = child.try_wait().ok().flatten();
            }
            let done = exited;
            async move { done }
        })
        .await
    }
}

impl Drop for Traced {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The log file's JSON lines.
fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
}

fn attr<'a>(span: &'a Received, key: &str) -> &'a str {
    span.attributes.get(key).map_or("", String::as_str)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_reach_the_collector_and_join_the_logs() -> anyhow::Result<()> {
    let collector = Collector::start().await?;
    let mut cp = Traced::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url.as_str()),
        ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20collector-secret"),
        ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=e2e"),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ])
    .await?;
    cp.create_shop().await?;

    // An admin request from a caller that is itself traced.
    let response = cp
        .client
        .get(format!("{}/api/v1/apis/shop", cp.url))
        .bearer_auth(cp.owner_token()?)
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01"))
        .header("x-request-id", "traced-admin-request")
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    // The native runtime: a hit, and a 500 the mock defines; a route nobody has; an API
    // nobody has (a matched route, a 404).
    assert_eq!(cp.get("/mock/shop/items/42").await?, 200);
    assert_eq!(cp.get("/mock/shop/boom").await?, 500);
    assert_eq!(cp.get("/api/v1/no-such-thing/123").await?, 404);
    assert_eq!(cp.admin(reqwest::Method::GET, "/api/v1/apis/nope-77", json!({})).await?, 404);

    let admin = collector
        .span("the admin request's span", |s| attr(s, "request_id") == "traced-admin-request")
        .await?;
    // Its caller's trace, under its caller's span; named by the route, not the path.
    assert_eq!(admin.trace_id, TRACE_ID);
    assert_eq!(admin.parent_span_id, PARENT_SPAN_ID);
    assert!(admin.span_id.len() == 16 && admin.span_id != PARENT_SPAN_ID, "{}", admin.span_id);
    assert_eq!(admin.name, "GET /api/v1/apis/{api}");
    assert_eq!(admin.kind, SpanKind::Server as i32);
    assert_eq!(attr(&admin, "http.request.method"), "GET");
    assert_eq!(attr(&admin, "http.route"), "/api/v1/apis/{api}");
    assert_eq!(attr(&admin, "url.path"), "/api/v1/apis/shop");
    assert_eq!(attr(&admin, "url.scheme"), "http");
    assert_eq!(attr(&admin, "http.response.status_code"), "200");
    assert_eq!(admin.status, SpanStatus::Unset as i32);
    assert_eq!(admin.scope, "edgemock-control-plane");
    // Who sent it.
    assert_eq!(admin.resource["service.name"], "edgemock-control-plane");
    assert_eq!(admin.resource["service.version"], env!("CARGO_PKG_VERSION"));
    assert!(admin.resource.get("service.instance.id").is_some_and(|id| id.len() >= 32));
    assert_eq!(admin.resource["deployment.environment.name"], "e2e");
    assert_eq!(admin.resource["telemetry.sdk.language"], "rust");
    assert!(!admin.resource["host.name"].is_empty());

    let hit =
        collector.span("the mock hit", |s| attr(s, "url.path") == "/mock/shop/items/42").await?;
    assert_eq!(hit.name, "GET /mock/{api}/{*path}");
    assert_eq!(attr(&hit, "http.response.status_code"), "200");
    assert_eq!(hit.status, SpanStatus::Unset as i32);
    // Not part of the admin request's trace: a trace of its own.
    assert_ne!(hit.trace_id, TRACE_ID);
    assert_eq!(hit.parent_span_id, "");

    // A 5xx is the server's error (semantic conventions: status Error, error.type).
    let boom =
        collector.span("the mock's 500", |s| attr(s, "url.path") == "/mock/shop/boom").await?;
    assert_eq!(attr(&boom, "http.response.status_code"), "500");
    assert_eq!(boom.status, SpanStatus::Error as i32);
    assert_eq!(attr(&boom, "error.type"), "500");

    // A 4xx is the client's: unset. No route matched: the method alone names the span.
    let unrouted =
        collector.span("the unrouted 404", |s| attr(s, "url.path") == "/api/v1/no-such-thing/123");
    let unrouted = unrouted.await?;
    assert_eq!(unrouted.name, "GET");
    assert_eq!(attr(&unrouted, "http.response.status_code"), "404");
    assert_eq!(unrouted.status, SpanStatus::Unset as i32);
    assert!(!unrouted.attributes.contains_key("http.route"));
    let missing =
        collector.span("the 404 of a route", |s| attr(s, "url.path") == "/api/v1/apis/nope-77");
    let missing = missing.await?;
    assert_eq!(missing.name, "GET /api/v1/apis/{api}");
    assert_eq!(missing.status, SpanStatus::Unset as i32);

    // No span is named by a raw path: names are route templates.
    let spans = collector.spans();
    for span in &spans {
        for raw in ["shop", "42", "boom", "nope-77", "no-such-thing"] {
            assert!(!span.name.contains(raw), "a raw path in the span name {:?}", span.name);
        }
        assert_eq!(span.resource["service.name"], "edgemock-control-plane");
    }
    // The collector's credential came with every export.
    let credentials = collector.credentials.lock().map(|c| c.clone()).unwrap_or_default();
    assert!(!credentials.is_empty());
    assert!(credentials.iter().all(|c| c == "Bearer collector-secret"), "{credentials:?}");

    // The request's log lines carry its trace id: logs and traces join up.
    let logged = lines(&cp.log);
    let admin_lines: Vec<&Value> =
        logged.iter().filter(|l| l["span"]["request_id"] == "traced-admin-request").collect();
    assert!(!admin_lines.is_empty(), "no log line of the admin request:\n{}", cp.log_tail());
    for line in &admin_lines {
        assert_eq!(line["span"]["trace_id"], TRACE_ID, "{line}");
    }
    let hit_line = logged
        .iter()
        .find(|l| l["span"]["path"] == "/mock/shop/items/42")
        .context("no log line of the mock hit")?;
    assert_eq!(hit_line["span"]["trace_id"].as_str(), Some(hit.trace_id.as_str()));

    // SIGTERM: a clean exit, promptly.
    cp.terminate()?;
    let status = cp.exited(Duration::from_secs(15)).await?;
    assert!(status.success(), "exit status {status}:\n{}", cp.log_tail());
    // Only request spans: nothing of other crates' (aide opens hundreds while starting).
    let names: std::collections::BTreeSet<String> = spans.iter().map(|s| s.name.clone()).collect();
    assert!(spans.iter().all(|s| s.kind == SpanKind::Server as i32), "{names:?}");
    eprintln!("tracing: the collector saw {} spans: {names:?}", spans.len());

    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_still_queued_leave_at_shutdown() -> anyhow::Result<()> {
    let collector = Collector::start().await?;
    // Batches wait ten minutes: only the shutdown can send this one.
    let mut cp = Traced::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
    ])
    .await?;
    assert_eq!(cp.get("/health/live").await?, 200);
    assert!(collector.spans().is_empty(), "the batch left before shutdown");
    cp.terminate()?;
    let status = cp.exited(Duration::from_secs(15)).await?;
    assert!(status.success(), "exit status {status}:\n{}", cp.log_tail());
    // The exporter answered before the process ended: nothing to wait for.
    let live: Vec<Received> =
        collector.spans().into_iter().filter(|s| attr(s, "url.path") == "/health/live").collect();
    assert_eq!(live.len(), 1, "{:?}", collector.spans());
    assert_eq!(live[0].name, "GET /health/live");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_costs_nothing() -> anyhow::Result<()> {
    // A port where nothing listens (yet).
    let reserved = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = reserved.local_addr()?;
    drop(reserved);
    let mut cp = Traced::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &format!("http://{addr}")),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ])
    .await?;
    cp.create_shop().await?;
    // Requests are answered as fast as ever while exports fail, for long enough that several
    // exports (each with its retries) fail.
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut answered = 0;
    while started.elapsed() < Duration::from_secs(4) {
        let sent = Instant::now();
        assert_eq!(cp.get("/mock/shop/items/1").await?, 200);
        slowest = slowest.max(sent.elapsed());
        answered += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(slowest < Duration::from_millis(500), "the slowest answer took {slowest:?}");
    eprintln!("tracing: {answered} answers with the collector down, the slowest in {slowest:?}");
    let warnings = |log: &Path| {
        lines(log)
            .into_iter()
            .filter(|l| {
                l["message"].as_str().is_some_and(|m| m.starts_with("traces: cannot export spans"))
            })
            .collect::<Vec<_>>()
    };
    let first = eventually(Duration::from_secs(30), "a warning about the exports", || {
        let found = warnings(&cp.log).into_iter().next();
        async move { found }
    })
    .await?;
    assert_eq!(first["level"], "WARN");
    assert!(first["cause"].as_str().is_some_and(|c| c.contains("onnect")), "{first}");

    // The collector comes back where it was expected.
    let collector = Collector::start_on(tokio::net::TcpListener::bind(addr).await?)?;
    let back = eventually(Duration::from_secs(30), "the exports to resume", || {
        let found = lines(&cp.log)
            .into_iter()
            .find(|l| l["message"] == "traces: the OTLP endpoint takes spans again");
        async move { found }
    });
    // New spans have to be made for an export to happen.
    let traffic = async {
        loop {
            let _ = cp.get("/health/live").await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let back = tokio::select! {
        back = back => back?,
        () = traffic => unreachable!(),
    };
    let failed = back["failed_exports"].as_u64().unwrap_or_default();
    assert!(failed >= 2, "{back}");
    assert!(back["lost_spans"].as_u64().unwrap_or_default() >= failed, "{back}");
    // Several failed exports, one warning: the rest were held back (at most one a minute).
    assert_eq!(warnings(&cp.log).len(), 1, "{}", cp.log_tail());
    collector.span("a span after the outage", |s| attr(s, "url.path") == "/health/live").await?;

    cp.terminate()?;
    let status = cp.exited(Duration::from_secs(15)).await?;
    assert!(status.success(), "exit status {status}:\n{}", cp.log_tail());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_hangs_cannot_delay_the_exit() -> anyhow::Result<()> {
    // A collector that takes connections and never answers.
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = black_hole.local_addr()?;
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((connection, _)) = black_hole.accept().await {
            connections.push(connection);
        }
    });
    let mut cp = Traced::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &format!("http://{addr}")),
        // An export may wait 30 s for its answer.
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "30000"),
        ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
    ])
    .await?;
    assert_eq!(cp.get("/health/live").await?, 200);
    let stopping = Instant::now();
    cp.terminate()?;
    let status = cp.exited(Duration::from_secs(20)).await?;
    let took = stopping.elapsed();
    assert!(status.success(), "exit status {status}:\n{}", cp.log_tail());
    // The flush waits at most telemetry::FLUSH_TIMEOUT (5 s), then gives up and says so.
    assert!(took < Duration::from_secs(9), "the exit took {took:?}");
    let gave_up = lines(&cp.log).into_iter().find(|l| {
        l["message"].as_str().is_some_and(|m| m.starts_with("traces: spans still queued"))
    });
    assert!(gave_up.is_some_and(|l| l["level"] == "WARN"), "{}", cp.log_tail());
    eprintln!("tracing: with the collector hanging, the exit took {took:?}");
    held.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_and_webhook_attempts_are_client_spans() -> anyhow::Result<()> {
    let collector = Collector::start().await?;
    let hook = format!("{}/hook", collector.url);
    let mut cp = Traced::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        // The collector plays the edge and the webhook receiver too.
        ("EDGE_URL", collector.url.as_str()),
        ("EDGE_PUBLISH_TOKEN", "edge-secret"),
        ("WEBHOOKS_ENABLED", "true"),
        ("PROXY_ALLOW_HTTP", "true"),
        ("PROXY_ALLOW_PRIVATE_NETWORKS", "true"),
    ])
    .await?;
    let subscribe = json!({"url": hook, "events": ["api.created"]});
    let created =
        cp.admin(reqwest::Method::POST, "/api/v1/workspaces/default/webhooks", subscribe).await?;
    assert_eq!(created, 201);
    cp.create_shop().await?;
    // A publish an admin asks for, from a traced caller: its PUT is a child of the request.
    let response = cp
        .client
        .post(format!("{}/api/v1/apis/shop/publish", cp.url))
        .bearer_auth(cp.owner_token()?)
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01"))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let request = collector
        .span("the publish request", |s| s.name == "POST /api/v1/apis/{api}/publish")
        .await?;
    assert_eq!(request.trace_id, TRACE_ID);
    let put = collector
        .span("its PUT to the edge", |s| {
            s.kind == SpanKind::Client as i32 && s.parent_span_id == request.span_id
        })
        .await?;
    assert_eq!(put.name, "PUT /__edgemock/v1/snapshots/{slug}");
    assert_eq!(put.trace_id, TRACE_ID);
    assert_eq!(attr(&put, "http.request.method"), "PUT");
    assert_eq!(attr(&put, "http.response.status_code"), "200");
    assert_eq!(attr(&put, "server.address"), "127.0.0.1");
    assert_eq!(attr(&put, "edgemock.api"), "shop");
    assert_eq!(put.status, SpanStatus::Unset as i32);
    // The publisher's own rounds (after each write) are traces of their own.
    let background = collector
        .span("a publish of the background loop", |s| {
            s.name == "PUT /__edgemock/v1/snapshots/{slug}" && s.parent_span_id.is_empty()
        })
        .await?;
    assert_ne!(background.trace_id, TRACE_ID);
    // The webhook attempt of api.created: named by its method alone, and no URL recorded
    // (a webhook URL may hold a secret), only its host.
    let attempt = collector
        .span("the webhook attempt", |s| attr(s, "edgemock.webhook.event") == "api.created")
        .await?;
    assert_eq!(attempt.name, "POST");
    assert_eq!(attempt.kind, SpanKind::Client as i32);
    assert_eq!(attr(&attempt, "http.response.status_code"), "200");
    assert_eq!(attr(&attempt, "server.address"), "127.0.0.1");
    assert_eq!(attr(&attempt, "edgemock.webhook.attempt"), "1");
    assert!(attempt.attributes.values().all(|v| !v.contains("/hook")), "{attempt:?}");
    cp.terminate()?;
    let status = cp.exited(Duration::from_secs(15)).await?;
    assert!(status.success(), "exit status {status}:\n{}", cp.log_tail());
    Ok(())
}
