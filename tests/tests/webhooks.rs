//! Webhook delivery against a real receiver: an HTTP server in this process, on loopback,
//! that records every request it gets (arrival time, headers, body) and answers as each test
//! plans. The control plane runs with delivery on and with the proxy policy opened for
//! loopback and plain http (`PROXY_ALLOW_*`), and with small retry delays.
//!
//! - a failing receiver gets exactly the configured retries, with growing gaps; the attempts
//!   are listed through the API; a manual redelivery starts a new round (SQLite, PostgreSQL);
//! - `Retry-After` (seconds and HTTP date) is honoured;
//! - a delivery pending across a restart is delivered after it, and an attempt in flight at
//!   shutdown finishes and is recorded (SQLite, PostgreSQL);
//! - every event type arrives, and every request verifies with the Standard Webhooks
//!   reference library (`standardwebhooks` from PyPI, `tests/webhooks_verify.py`), while a
//!   tampered request or a wrong secret does not.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use edgemock_e2e::{ControlPlane, Postgres, eventually, root};
use serde_json::{Value, json};
use tempfile::TempDir;

/// The retry delay the tests run with (`WEBHOOK_RETRY_DELAY_MS`): short, yet long enough
/// that a loaded machine's latency (a SQLite commit waiting for the disk, a starved thread:
/// a few hundred ms seen with two builds beside the tests) cannot swap two gaps.
const DELAY: Duration = Duration::from_millis(250);
const RETRIES: u32 = 3;
/// The secret the control planes share with the fake edge.
const EDGE_TOKEN: &str = "webhook-tests-edge-token";

/// What the receiver answers to one webhook request.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    retry_after: Option<RetryAfter>,
    /// Wait this long before answering.
    delay: Duration,
}

#[derive(Debug, Clone)]
enum RetryAfter {
    Seconds(u64),
    /// An HTTP date this far from the moment of answering.
    DateIn(Duration),
}

impl Answer {
    fn status(status: u16) -> Self {
        Self { status, retry_after: None, delay: Duration::ZERO }
    }
}

/// One request as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    at: Instant,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Received {
    fn id(&self) -> &str {
        self.headers.get("webhook-id").map_or("", String::as_str)
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

#[derive(Debug)]
struct Plan {
    received: Vec<Received>,
    /// Answers to give, in order; then `otherwise`.
    next: VecDeque<Answer>,
    otherwise: Answer,
    /// What the fake edge answers to snapshot PUTs and DELETEs.
    edge_status: u16,
}

/// A webhook receiver at `{url}/hook`, and a fake edge at `{url}/__edgemock/…` for the
/// publisher (so that `api.published` and `api.publish_failed` happen).
#[derive(Debug, Clone)]
struct Receiver {
    url: String,
    plan: Arc<Mutex<Plan>>,
    _server: Arc<AbortOnDrop>,
}

#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Receiver {
    async fn start(otherwise: Answer) -> anyhow::Result<Self> {
        let plan = Arc::new(Mutex::new(Plan {
            received: Vec::new(),
            next: VecDeque::new(),
            otherwise,
            edge_status: 200,
        }));
        let app = axum::Router::new().fallback(receive).with_state(plan.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, plan, _server: Arc::new(AbortOnDrop(server)) })
    }

    fn hook_url(&self) -> String {
        format!("{}/hook", self.url)
    }

    fn then(&self, answers: impl IntoIterator<Item = Answer>) {
        self.plan.lock().unwrap().next.extend(answers);
    }

    fn otherwise(&self, answer: Answer) {
        self.plan.lock().unwrap().otherwise = answer;
    }

    fn edge_answers(&self, status: u16) {
        self.plan.lock().unwrap().edge_status = status;
    }

    fn received(&self) -> Vec<Received> {
        self.plan.lock().unwrap().received.clone()
    }

    /// Waits until `n` requests have arrived.
    async fn until(&self, n: usize, deadline: Duration) -> anyhow::Result<Vec<Received>> {
        eventually(deadline, &format!("{n} webhook requests"), || async {
            let got = self.received();
            (got.len() >= n).then_some(got)
        })
        .await
    }
}

async fn receive(
    State(plan): State<Arc<Mutex<Plan>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if uri.path().starts_with("/__edgemock/") {
        let status = plan.lock().unwrap().edge_status;
        return (StatusCode::from_u16(status).unwrap(), "{}").into_response();
    }
    if method != Method::POST || uri.path() != "/hook" {
        return StatusCode::NOT_FOUND.into_response();
    }
    let answer = {
        let mut plan = plan.lock().unwrap();
        plan.received.push(Received {
            at: Instant::now(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect(),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        let otherwise = plan.otherwise.clone();
        plan.next.pop_front().unwrap_or(otherwise)
    };
    tokio::time::sleep(answer.delay).await;
    let mut response =
        (StatusCode::from_u16(answer.status).unwrap(), "receiver says no").into_response();
    if answer.status < 300 {
        *response.body_mut() = axum::body::Body::empty();
    }
    let retry_after = match answer.retry_after {
        None => None,
        Some(RetryAfter::Seconds(s)) => Some(s.to_string()),
        Some(RetryAfter::DateIn(d)) => Some(httpdate::fmt_http_date(SystemTime::now() + d)),
    };
    if let Some(value) = retry_after {
        response.headers_mut().insert("retry-after", value.parse().unwrap());
    }
    response
}

/// A control plane that delivers webhooks to loopback (unless `deliver` is false), with the
/// tests' retry settings, publishing to `edge` if given.
async fn control_plane(
    port: u16,
    database_url: &str,
    edge: Option<&Receiver>,
    deliver: bool,
) -> anyhow::Result<ControlPlane> {
    let edge_url = edge.map(|e| e.url.clone());
    ControlPlane::start_tuned(port, database_url, edge_url, Some(EDGE_TOKEN.to_owned()), |c| {
        c.webhooks_enabled = deliver;
        c.webhook_retry_attempts = RETRIES;
        c.webhook_retry_delay = DELAY;
        c.webhook_timeout = Duration::from_secs(5);
        c.proxy_allow_http = true;
        c.proxy_allow_private_networks = true;
    })
    .await
}

/// Creates workspace `ws` and subscribes the receiver to `events`; answers the webhook's id
/// and secret.
async fn subscribe(
    cp: &ControlPlane,
    ws: &str,
    receiver: &Receiver,
    events: &[&str],
) -> anyhow::Result<(String, String)> {
    let (status, body) = cp.post("/api/v1/workspaces", &json!({ "slug": ws })).await?;
    assert_eq!(status, 201, "{body}");
    let (status, hook) = cp
        .post(
            &format!("/api/v1/workspaces/{ws}/webhooks"),
            &json!({ "url": receiver.hook_url(), "events": events }),
        )
        .await?;
    assert_eq!(status, 201, "{hook}");
    Ok((hook["id"].as_str().unwrap().to_owned(), hook["secret"].as_str().unwrap().to_owned()))
}

/// The webhook's deliveries, as the API lists them.
async fn deliveries(cp: &ControlPlane, ws: &str, hook: &str) -> anyhow::Result<Vec<Value>> {
    let (status, page) =
        cp.get(&format!("/api/v1/workspaces/{ws}/webhooks/{hook}/deliveries")).await?;
    assert_eq!(status, 200, "{page}");
    Ok(page["items"].as_array().cloned().unwrap_or_default())
}

/// Waits until the webhook's only delivery is in `state`, and answers it.
async fn settled(
    cp: &ControlPlane,
    ws: &str,
    hook: &str,
    state: &str,
    deadline: Duration,
) -> anyhow::Result<Value> {
    eventually(deadline, &format!("the delivery to be {state}"), || async {
        let list = deliveries(cp, ws, hook).await.ok()?;
        assert!(list.len() <= 1, "one event, one delivery: {list:?}");
        list.into_iter().next().filter(|d| d["state"] == state)
    })
    .await
}

fn gaps(received: &[Received]) -> Vec<Duration> {
    received.windows(2).map(|w| w[1].at - w[0].at).collect()
}

fn statuses(delivery: &Value) -> Vec<Option<u64>> {
    delivery["attempts"].as_array().unwrap().iter().map(|a| a["status"].as_u64()).collect()
}

/// A receiver that always fails gets the first attempt and exactly `RETRIES` retries, each
/// gap about twice the one before (250, 500, 1000 ms, plus up to 20 % jitter), then nothing;
/// the attempts are listed through the API; a redelivery starts a new round.
async fn retries_scenario(database_url: &str) -> anyhow::Result<()> {
    let receiver = Receiver::start(Answer::status(500)).await?;
    let cp = control_plane(0, database_url, None, true).await?;
    let (hook, _) = subscribe(&cp, "retry", &receiver, &["api.created"]).await?;
    let (status, _) =
        cp.post("/api/v1/workspaces/retry/apis", &json!({"slug": "retry-api"})).await?;
    assert_eq!(status, 201);

    let delivery = settled(&cp, "retry", &hook, "failed", Duration::from_secs(20)).await?;
    // Nothing more arrives once the delivery has failed.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let received = receiver.received();
    assert_eq!(received.len(), 1 + RETRIES as usize, "{received:#?}");
    assert!(received.iter().all(|r| r.id() == delivery["id"]), "one webhook-id for every attempt");
    let gaps = gaps(&received);
    println!("gaps between attempts: {gaps:?}");
    for (i, gap) in gaps.iter().enumerate() {
        let scheduled = DELAY * 2u32.pow(u32::try_from(i).unwrap());
        assert!(*gap >= scheduled, "gap {i} is {gap:?}, shorter than {scheduled:?}: {gaps:?}");
        // Jitter adds at most a fifth; the rest is the loop's own latency, well below the
        // 5 s it would take if it waited for its poll instead of the due time.
        assert!(
            *gap < scheduled.mul_f64(1.2) + Duration::from_secs(2),
            "gap {i} is {gap:?}, far past {scheduled:?}: {gaps:?}"
        );
    }
    assert!(gaps.windows(2).all(|w| w[1] > w[0]), "the gaps grow: {gaps:?}");

    // Every attempt is recorded: number, status, latency, error.
    assert_eq!(statuses(&delivery), vec![Some(500); 4], "{delivery}");
    for (i, attempt) in delivery["attempts"].as_array().unwrap().iter().enumerate() {
        assert_eq!(attempt["number"], i + 1, "{attempt}");
        assert!(attempt["latency_ms"].as_u64().is_some(), "{attempt}");
        assert!(
            attempt["error"]
                .as_str()
                .is_some_and(|e| e.contains("500") && e.contains("receiver says no")),
            "{attempt}"
        );
    }
    assert_eq!(delivery["event_type"], "api.created");
    assert_eq!(delivery["payload"]["type"], "api.created");
    assert_eq!(delivery["payload"]["data"]["api"]["slug"], "retry-api");
    assert_eq!(
        (delivery["last_status"].as_u64(), delivery["next_attempt_at"].is_null()),
        (Some(500), true)
    );

    // Manual redelivery: a new round, due at once, with the next attempt number.
    receiver.otherwise(Answer::status(204));
    let path = format!(
        "/api/v1/workspaces/retry/webhooks/{hook}/deliveries/{}",
        delivery["id"].as_str().unwrap()
    );
    let (status, again) = cp.post(&format!("{path}/redeliver"), &json!({})).await?;
    assert_eq!((status, again["state"].as_str()), (200, Some("pending")), "{again}");
    let done = settled(&cp, "retry", &hook, "succeeded", Duration::from_secs(10)).await?;
    assert_eq!(statuses(&done), [vec![Some(500); 4], vec![Some(204)]].concat(), "{done}");
    assert_eq!(done["attempts"][4]["number"], 5);
    assert!(done["attempts"][4]["error"].is_null());
    let (status, read) = cp.get(&path).await?;
    assert_eq!((status, &read), (200, &done));
    assert_eq!(receiver.received().len(), 5);

    // The attempts in the metrics, by event and outcome.
    let scrape = reqwest::get(format!("{}/metrics", cp.url)).await?.text().await?;
    for (outcome, count) in [("retrying", 3), ("failed", 1), ("delivered", 1)] {
        let series = format!(
            "webhook_deliveries_total{{event=\"api.created\",outcome=\"{outcome}\"}} {count}"
        );
        assert!(scrape.lines().any(|l| l == series), "no `{series}` in the scrape");
    }
    assert!(scrape.contains("webhook_delivery_duration_seconds_bucket{event=\"api.created\""));

    // An inactive webhook's delivery fails without a request.
    let hook_path = format!("/api/v1/workspaces/retry/webhooks/{hook}");
    let (status, _) = cp.patch(&hook_path, &json!({"active": false})).await?;
    assert_eq!(status, 200);
    cp.post(&format!("{path}/redeliver"), &json!({})).await?;
    let inactive = settled(&cp, "retry", &hook, "failed", Duration::from_secs(10)).await?;
    assert_eq!(inactive["attempts"].as_array().map(Vec::len), Some(6), "{inactive}");
    assert!(inactive["last_error"].as_str().is_some_and(|e| e.contains("inactive")), "{inactive}");
    assert_eq!(receiver.received().len(), 5, "no request for an inactive webhook");

    // Deliveries belong to their webhook.
    let (status, _) =
        cp.get(&format!("/api/v1/workspaces/retry/webhooks/{hook}/deliveries/{}", "nope")).await?;
    assert_eq!(status, 404);
    cp.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_exactly_the_configured_retries_on_sqlite() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    retries_scenario(&ControlPlane::sqlite_url(&dir)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_exactly_the_configured_retries_on_postgres() -> anyhow::Result<()>
{
    let pg = Postgres::start()?;
    retries_scenario(&pg.fresh_database()?).await
}

/// `Retry-After` in seconds and as an HTTP date: the next attempt waits at least that long,
/// though the schedule alone would wait 250 and 500 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let receiver = Receiver::start(Answer::status(200)).await?;
    receiver.then([
        Answer { retry_after: Some(RetryAfter::Seconds(1)), ..Answer::status(429) },
        Answer {
            retry_after: Some(RetryAfter::DateIn(Duration::from_secs(3))),
            ..Answer::status(503)
        },
    ]);
    let cp = control_plane(0, &ControlPlane::sqlite_url(&dir), None, true).await?;
    let (hook, _) = subscribe(&cp, "later", &receiver, &["api.created"]).await?;
    cp.post("/api/v1/workspaces/later/apis", &json!({"slug": "later-api"})).await?;
    let delivery = settled(&cp, "later", &hook, "succeeded", Duration::from_secs(20)).await?;
    assert_eq!(statuses(&delivery), [Some(429), Some(503), Some(200)], "{delivery}");
    let gaps = gaps(&receiver.received());
    println!("gaps with Retry-After 1 s and a date 3 s ahead: {gaps:?}");
    assert!(gaps[0] >= Duration::from_secs(1), "{gaps:?}");
    // The date has whole seconds: 3 s ahead is more than 2 s ahead, wherever in its second
    // the answer was sent.
    assert!(gaps[1] >= Duration::from_secs(2), "{gaps:?}");
    assert!(gaps.iter().all(|g| *g < Duration::from_secs(6)), "{gaps:?}");
    cp.stop().await
}

/// A delivery pending when the control plane stops is delivered by the next one on the same
/// database; an attempt in flight at shutdown finishes and is recorded, not repeated.
async fn restart_scenario(database_url: &str) -> anyhow::Result<()> {
    let receiver = Receiver::start(Answer::status(200)).await?;

    // 1. Queued while delivery is off, never attempted: the restart sends it.
    let cp = control_plane(0, database_url, None, false).await?;
    let port = cp.port;
    let (hook, _) = subscribe(&cp, "restart", &receiver, &["api.created", "api.updated"]).await?;
    cp.post("/api/v1/workspaces/restart/apis", &json!({"slug": "restart-api"})).await?;
    let listed = deliveries(&cp, "restart", &hook).await?;
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0]["state"].as_str(), statuses(&listed[0]).len()), (Some("pending"), 0));
    cp.stop().await?;
    let cp = control_plane(port, database_url, None, true).await?;
    let first = receiver.until(1, Duration::from_secs(10)).await?;
    assert_eq!(first[0].id(), listed[0]["id"]);

    // 2. Failed once (503, Retry-After: 2), the retry due while no control plane runs: it
    //    is sent after the restart.
    receiver.then([Answer { retry_after: Some(RetryAfter::Seconds(2)), ..Answer::status(503) }]);
    cp.patch("/api/v1/apis/restart-api", &json!({"name": "Restarted"})).await?;
    receiver.until(2, Duration::from_secs(10)).await?;
    cp.stop().await?;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(receiver.received().len(), 2, "nothing is delivered while stopped");
    let cp = control_plane(port, database_url, None, true).await?;
    let received = receiver.until(3, Duration::from_secs(10)).await?;
    assert_eq!(received[1].id(), received[2].id(), "the retry of the same delivery");
    let list = deliveries(&cp, "restart", &hook).await?;
    assert_eq!(statuses(&list[1]), [Some(503), Some(200)], "{list:?}");
    assert_eq!(
        list.iter().map(|d| d["state"].as_str().unwrap()).collect::<Vec<_>>(),
        ["succeeded"; 2]
    );

    // 3. In flight at shutdown: the receiver takes 1.5 s to answer; stopping waits for it,
    //    and the next control plane finds it recorded and does not send it again.
    receiver.then([Answer { delay: Duration::from_millis(1500), ..Answer::status(200) }]);
    cp.patch("/api/v1/apis/restart-api", &json!({"name": "Again"})).await?;
    receiver.until(4, Duration::from_secs(10)).await?;
    let stopping = Instant::now();
    cp.stop().await?;
    assert!(stopping.elapsed() >= Duration::from_millis(500), "stop waited for the attempt");
    let cp = control_plane(port, database_url, None, true).await?;
    let list = deliveries(&cp, "restart", &hook).await?;
    assert_eq!(
        (list[2]["state"].as_str(), statuses(&list[2])),
        (Some("succeeded"), vec![Some(200)])
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.received().len(), 4, "the finished attempt is not repeated");
    cp.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_delivery_survives_a_restart_on_sqlite() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    restart_scenario(&ControlPlane::sqlite_url(&dir)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_delivery_survives_a_restart_on_postgres() -> anyhow::Result<()> {
    let pg = Postgres::start()?;
    restart_scenario(&pg.fresh_database()?).await
}

fn python() -> PathBuf {
    std::env::var_os("WEBHOOKS_PYTHON")
        .map_or_else(|| root().join("target/tools/venv/bin/python"), PathBuf::from)
}

/// Runs `tests/webhooks_verify.py` on `requests` with `secret`: true if all verify.
async fn verify(secret: &str, requests: &[Received]) -> anyhow::Result<(bool, String)> {
    let python = python();
    anyhow::ensure!(
        python.exists(),
        "{} is missing (run scripts/setup, or set WEBHOOKS_PYTHON)",
        python.display()
    );
    let dir = TempDir::new()?;
    let file = dir.path().join("requests.json");
    let recorded: Vec<Value> =
        requests.iter().map(|r| json!({ "headers": r.headers, "body": r.body })).collect();
    std::fs::write(&file, serde_json::to_vec(&recorded)?)?;
    let out = tokio::process::Command::new(&python)
        .arg(root().join("tests/webhooks_verify.py"))
        .arg(secret)
        .arg(&file)
        .kill_on_drop(true)
        .output()
        .await?;
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

/// Every kind of event reaches a `*` subscriber — `workspace.deleted` after the subscription
/// itself went with the workspace — and a Standard Webhooks library verifies every request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_and_verifies_with_standard_webhooks() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let receiver = Receiver::start(Answer::status(204)).await?;
    let cp = control_plane(0, &ControlPlane::sqlite_url(&dir), Some(&receiver), true).await?;
    let (_, secret) = subscribe(&cp, "sig", &receiver, &["*"]).await?;
    let ok = |(status, body): (u16, Value)| {
        assert!((200..300).contains(&status), "{status} {body}");
        body
    };
    ok(cp.patch("/api/v1/workspaces/sig", &json!({"plan": "pro"})).await?);
    let api = ok(cp.post("/api/v1/workspaces/sig/apis", &json!({"slug": "sig-api"})).await?);
    ok(cp.patch("/api/v1/apis/sig-api", &json!({"name": "Signed"})).await?);
    let endpoint = json!({"method": "POST", "path": "/users", "response": {"status": 201},
        "validation": {"schema": {"type": "object", "required": ["email"]}}});
    let created = ok(cp.post("/api/v1/apis/sig-api/endpoints", &endpoint).await?);
    let endpoint_path =
        format!("/api/v1/apis/sig-api/endpoints/{}", created["id"].as_str().unwrap());
    ok(cp.put(&endpoint_path, &endpoint).await?);
    ok(cp.delete(&endpoint_path).await?);
    eventually(Duration::from_secs(10), "api.published", || async {
        receiver.received().iter().any(|r| r.json()["type"] == "api.published").then_some(())
    })
    .await?;

    // The edge fails: one api.publish_failed for the streak, then api.published again.
    receiver.edge_answers(500);
    ok(cp.patch("/api/v1/apis/sig-api", &json!({"name": "Failing"})).await?);
    eventually(Duration::from_secs(10), "api.publish_failed", || async {
        receiver.received().iter().any(|r| r.json()["type"] == "api.publish_failed").then_some(())
    })
    .await?;
    receiver.edge_answers(200);

    // Mock traffic from the edge's analytics: two validation failures and a rate-limited
    // request make one event each; the same again within the minute makes none.
    let event = |id: &str, status: u16, validation_failed: bool, endpoint: Option<&str>| {
        json!({
            "id": id, "request_id": format!("req-{id}"), "timestamp_ms": 1_795_000_000_000i64,
            "source": "edge", "workspace_id": api["workspace_id"], "api_id": api["id"],
            "api_slug": "sig-api", "protocol": "rest",
            "endpoint_method": endpoint.map(|_| "POST"), "endpoint_pattern": endpoint,
            "method": "POST", "path": "/users", "status": status, "latency_ms": 2,
            "request_bytes": 2, "response_bytes": 80, "proxied": false, "deduplicated": false,
            "cache": "bypass", "validation_failed": validation_failed,
        })
    };
    let ingest = |events: Vec<Value>| {
        let cp = &cp;
        async move {
            let response = reqwest::Client::new()
                .post(format!("{}/internal/v1/analytics", cp.url))
                .bearer_auth(EDGE_TOKEN)
                .json(&json!({ "events": events }))
                .send()
                .await?;
            anyhow::ensure!(response.status() == 200, "ingest: {}", response.text().await?);
            anyhow::Ok(())
        }
    };
    ingest(vec![
        event("v1", 400, true, Some("/users")),
        event("v2", 400, true, Some("/users")),
        event("r1", 429, false, None),
        event("m1", 429, false, Some("/users")),
        event("ok", 201, false, Some("/users")),
    ])
    .await?;
    ingest(vec![event("v3", 400, true, Some("/users")), event("r2", 429, false, None)]).await?;

    // Deletions: the API, then the workspace with the subscription in it.
    ok(cp.delete("/api/v1/apis/sig-api").await?);
    ok(cp.delete("/api/v1/workspaces/sig").await?);

    let all: BTreeSet<&str> = edgemock_control_plane::webhooks::EVENTS.iter().copied().collect();
    eventually(Duration::from_secs(20), "every kind of event", || async {
        let kinds: BTreeSet<String> = receiver
            .received()
            .iter()
            .filter_map(|r| r.json()["type"].as_str().map(str::to_owned))
            .collect();
        (kinds.iter().map(String::as_str).collect::<BTreeSet<_>>() == all).then_some(())
    })
    .await?;
    // Give stragglers a moment, then look at everything that arrived.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = receiver.received();
    let count = |kind: &str| received.iter().filter(|r| r.json()["type"] == kind).count();
    assert_eq!(count("api.publish_failed"), 1, "once per failing streak");
    assert_eq!(count("mock.validation_failed"), 1, "at most one a minute per API");
    assert_eq!(count("mock.rate_limited"), 1, "a mock's own 429 is not a rate limit");
    let validation =
        received.iter().find(|r| r.json()["type"] == "mock.validation_failed").unwrap();
    assert_eq!(validation.json()["data"]["count"], 2);
    assert_eq!(validation.json()["data"]["first"]["request_id"], "req-v1");
    let deleted = received.iter().find(|r| r.json()["type"] == "workspace.deleted").unwrap();
    assert_eq!(deleted.json()["data"]["workspace"]["slug"], "sig");
    let ids: BTreeSet<&str> = received.iter().map(Received::id).collect();
    assert_eq!(ids.len(), received.len(), "a webhook-id per delivery");
    for r in &received {
        assert_eq!(r.headers.get("content-type").map(String::as_str), Some("application/json"));
        assert!(r.headers.get("webhook-signature").is_some_and(|s| s.starts_with("v1,")));
    }

    // The reference library verifies every request...
    let (verified, output) = verify(&secret, &received).await?;
    assert!(verified, "standardwebhooks refused a request: {output}");
    println!("{} deliveries, {output}", received.len());
    // ...and refuses a changed body, a changed id, an old timestamp or another secret.
    let mut tampered = received[..1].to_vec();
    tampered[0].body = tampered[0].body.replacen("\"type\"", "\"type\" ", 1);
    let mut renamed = received[..1].to_vec();
    renamed[0].headers.insert("webhook-id".into(), "msg_other".into());
    let mut old = received[..1].to_vec();
    let stale = old[0].headers["webhook-timestamp"].parse::<i64>()? - 3600;
    old[0].headers.insert("webhook-timestamp".into(), stale.to_string());
    for (what, requests, key) in [
        ("a changed body", tampered, secret.as_str()),
        ("a changed webhook-id", renamed, secret.as_str()),
        ("a timestamp an hour old", old, secret.as_str()),
        ("another secret", received[..1].to_vec(), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    ] {
        let (verified, output) = verify(key, &requests).await?;
        assert!(!verified, "{what} passed verification: {output}");
    }
    cp.stop().await
}
