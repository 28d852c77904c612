//! The control plane under load, on this machine: `cargo bench -p edgemock-e2e --bench native`
//! (needs `wrk`: `apt-get install wrk`).
//!
//! For SQLite and for PostgreSQL (a server of its own), the `edgemock` binary of the `server`
//! profile (what the container image ships) is started with default settings (analytics and
//! metrics on) and an API of 503 endpoints (500 filler routes, a static 1 KB reply, a
//! path-parameter template, a query rule). Printed, for BENCHMARKS.md:
//! - start-up: process spawned → `/health/ready` answers, with the 503 endpoints stored;
//! - the native runtime under `wrk -t2 -c32` for each scenario, beside a bare hyper server
//!   in this process that replays the native runtime's own answer for that scenario (the
//!   same status, headers and body) with no routing at all, under the same wrk command and
//!   script, taking turns five times (5 s each; the machine's speed drifts): the medians of
//!   requests per second, latency and CPU time per request of each (from /proc), the ratio
//!   to bare as the median of the five turns' ratios (each native turn against the bare
//!   turn right after it, so that both saw the machine at the same speed), and resident
//!   memory;
//! - while each scenario runs, how far the stored analytics are behind the requests the
//!   native runtime answered (sampled each second), and after the last one that every
//!   request was stored and none dropped;
//! - edge analytics ingest: events per second in batches of 100, from 1 and 4 senders;
//! - admin API latency (p50/p99) for reads and writes, 8 concurrent clients.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgemock_control_plane::auth::{Claims, Role, Tokens};
use edgemock_e2e::{Postgres, Server, cpu_seconds, root, rss_mib};
use edgemock_shared::analytics::{AnalyticsBatch, AnalyticsEvent, CacheOutcome, Protocol};
use serde_json::{Value, json};

const SECRET: &str = "bench-secret-bench-secret-bench-secret-01";
const SECONDS: &str = "3";
/// Runs of each server per scenario, alternating; the medians are reported. Nine short
/// turns rather than five long ones: this machine's speed moves within seconds, and a
/// median of more pairs moves less between runs.
const ROUNDS: usize = 9;
const EDGE_TOKEN: &str = "bench-edge-token";
/// Events per ingest batch: what the edge's queue consumer sends (`max_batch_size` in
/// wrangler.toml).
const BATCH: usize = 100;

fn body_1kb() -> Value {
    let items: Vec<Value> = (0..22)
        .map(|i| json!({"id": i, "name": format!("item number {i:03}"), "ok": true}))
        .collect();
    let value = json!({"items": items});
    let len = serde_json::to_vec(&value).unwrap().len();
    assert!((900..1200).contains(&len), "about 1 KB: {len}");
    value
}

/// Starts the binary with default settings; answers it and how long it took to be ready.
async fn start(database_url: &str) -> (Server, Duration) {
    Server::start(&[
        ("DATABASE_URL", database_url),
        ("JWT_SECRET", SECRET),
        // The edge's credential for the analytics ingest route.
        ("EDGE_PUBLISH_TOKEN", EDGE_TOKEN),
        ("LOG_LEVEL", "warn"),
        // The limiter runs on every mock request but never refuses one (as the workerd
        // bench does); the admin part is 8 clients on one token, far over the default 100/min.
        ("WORKSPACE_RATE_LIMIT_RPM", "100000000"),
        ("GLOBAL_RATE_LIMIT_RPM", "0"),
    ])
    .await
    .unwrap()
}

/// Runs wrk; answers (requests per second, p50 ms, p99 ms, requests).
fn wrk(url: &str, script: Option<&str>) -> (f64, f64, f64, f64) {
    let mut command = Command::new("wrk");
    command.args(["-t2", "-c32", "-d", &format!("{SECONDS}s"), "--latency"]);
    if let Some(script) = script {
        command.args(["-s", script]);
    }
    let out = command.arg(url).output().expect("wrk is missing: apt-get install wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    let number = |prefix: &str| -> f64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .map(|v| v.split_whitespace().next().unwrap_or("0").to_owned())
            .map_or(0.0, |v| {
                let (n, unit) = v.split_at(v.find(|c: char| c.is_alphabetic()).unwrap_or(v.len()));
                let n: f64 = n.parse().unwrap_or(0.0);
                match unit {
                    "us" => n / 1000.0,
                    "s" => n * 1000.0,
                    _ => n,
                }
            })
    };
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    let errors = text.lines().any(|l| l.contains("Non-2xx") || l.contains("Socket errors"));
    assert!(!errors, "wrk saw errors:\n{text}");
    (number("Requests/sec:"), number("50%"), number("99%"), requests)
}

/// One answer, as the native runtime gave it: what the bare server replays.
#[derive(Clone)]
struct Answer {
    status: u16,
    headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
    body: bytes::Bytes,
}

/// Fetches `url` once from the native runtime. The bare server sends these very bytes (every
/// header but `date` and `content-length`, which hyper writes itself), so that the two
/// servers write the same response and the difference is the work in between.
async fn capture(url: &str) -> Answer {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    let headers = response
        .headers()
        .iter()
        .filter(|(name, _)| *name != "date" && *name != "content-length")
        .map(|(name, value)| {
            (
                hyper::header::HeaderName::from_bytes(name.as_str().as_bytes()).unwrap(),
                hyper::header::HeaderValue::from_bytes(value.as_bytes()).unwrap(),
            )
        })
        .collect();
    Answer { status: 200, headers, body: response.bytes().await.unwrap() }
}

/// A bare hyper server answering `answer` to everything, with no routing, no rendering, no
/// metrics: the ceiling for this machine. Stops when the handle is aborted.
async fn bare(answer: Answer) -> (String, tokio::task::JoinHandle<()>) {
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let answer = Arc::new(answer);
    let server = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let answer = answer.clone();
            connections.spawn(async move {
                let service = service_fn(move |_request| {
                    let answer = answer.clone();
                    async move {
                        let mut response =
                            hyper::Response::new(http_body_util::Full::new(answer.body.clone()));
                        *response.status_mut() =
                            hyper::StatusCode::from_u16(answer.status).unwrap();
                        let headers = response.headers_mut();
                        for (name, value) in &answer.headers {
                            headers.append(name.clone(), value.clone());
                        }
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    (url, server)
}

/// The native runtime's analytics as of now: requests counted in the tally and requests not
/// counted (from `/metrics`), and requests stored (the analytics API's sum over the last day).
async fn analytics_state(url: &str, token: &str) -> (f64, f64, f64) {
    let client = reqwest::Client::new();
    let scrape = client.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
    let series = |name: &str| {
        scrape
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let counted = series("edgemock_analytics_native_requests_total{outcome=\"counted\"}");
    let dropped = series("edgemock_analytics_native_requests_total{outcome=\"dropped\"}");
    let answer: Value = client
        .get(format!("{url}/api/v1/apis/bench/analytics?bucket=day"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stored =
        answer["rows"].as_array().unwrap().iter().map(|r| r["requests"].as_f64().unwrap()).sum();
    (counted, dropped, stored)
}

async fn seed(url: &str, token: &str) {
    let client = reqwest::Client::new();
    let post = |path: String, body: Value| {
        client.post(format!("{url}/api/v1{path}")).bearer_auth(token).json(&body).send()
    };
    assert_eq!(
        post("/workspaces/default/apis".into(), json!({"slug": "bench"})).await.unwrap().status(),
        201
    );
    let mut endpoints: Vec<Value> = (0..500)
        .map(|i| json!({"method": "GET", "path": format!("/r{i}/items/:id"), "response": {"body": {"route": i}}}))
        .collect();
    endpoints.push(json!({"method": "GET", "path": "/static", "response": {"body": body_1kb()}}));
    endpoints.push(json!({"method": "GET", "path": "/users/:id", "response": {"body": {"id": "{{ request.params.id }}", "name": "user {{ request.params.id }}"}}}));
    endpoints.push(
        json!({"method": "GET", "path": "/search", "response": {"body": {"tier": "basic"}},
        "responses": [{"name": "gold", "body": {"tier": "gold"}}],
        "rules": [{"when": {"query": "tier", "equals": "gold"}, "response": "gold"}]}),
    );
    for e in endpoints {
        let r = post("/apis/bench/endpoints".into(), e).await.unwrap();
        assert_eq!(r.status(), 201);
    }
}

/// Admin latency: `n` requests from 8 clients; answers (p50, p99) in ms.
async fn admin_latency(url: &str, token: &str, write: bool, n: usize) -> (f64, f64) {
    let client = reqwest::Client::new();
    let list: Value = client
        .get(format!("{url}/api/v1/apis/bench/endpoints?limit=10"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    let ids = Arc::new(ids);
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (client, url, token, ids) =
            (client.clone(), url.to_owned(), token.to_owned(), ids.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for i in 0..n / 8 {
                let started = Instant::now();
                let response = if write {
                    // Each worker rewrites its own endpoint: a real write, compiled and versioned.
                    let id = &ids[worker];
                    client
                        .put(format!("{url}/api/v1/apis/bench/endpoints/{id}"))
                        .bearer_auth(&token)
                        .json(&json!({"method": "GET", "path": format!("/r{worker}/items/:id"), "response": {"body": {"route": worker, "rev": i}}}))
                        .send()
                        .await
                        .unwrap()
                } else {
                    client
                        .get(format!("{url}/api/v1/apis/bench/endpoints?limit=50"))
                        .bearer_auth(&token)
                        .send()
                        .await
                        .unwrap()
                };
                assert!(response.status().is_success(), "{}", response.status());
                response.bytes().await.unwrap();
                latencies.push(started.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(all[all.len() / 2]), ms(all[all.len() * 99 / 100]))
}

/// Edge analytics ingest: `senders` concurrent clients post `batches` batches of [`BATCH`]
/// events each, as the edge's queue consumer does, against the API `api_id`. Prints events
/// per second and batch latency, then checks that every event is stored, once.
async fn ingest(
    url: &str,
    token: &str,
    api_id: &str,
    workspace_id: &str,
    senders: usize,
    batches: usize,
) {
    let client = reqwest::Client::new();
    let now = edgemock_control_plane::db::now_ms();
    let before = analytics_state(url, token).await.2;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for sender in 0..senders {
        let (client, url) = (client.clone(), url.to_owned());
        let (api_id, workspace_id) = (api_id.to_owned(), workspace_id.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for b in 0..batches / senders {
                // The edge's own wire type, so that this cannot drift from what it sends.
                let events: Vec<AnalyticsEvent> = (0..BATCH)
                    .map(|i| {
                        let n = (sender * batches + b) * BATCH + i;
                        AnalyticsEvent {
                            id: uuid::Uuid::now_v7().to_string(),
                            request_id: uuid::Uuid::now_v7().to_string(),
                            // Spread over the last ten minutes, as a backlog would be.
                            timestamp_ms: now - i64::try_from(n % 600_000).unwrap(),
                            source: "edge".into(),
                            workspace_id: workspace_id.clone(),
                            api_id: api_id.clone(),
                            api_slug: "bench".into(),
                            protocol: Protocol::Rest,
                            endpoint_method: Some("GET".into()),
                            endpoint_pattern: Some(format!("/r{}/items/:id", n % 50)),
                            method: "GET".into(),
                            path: format!("/r{}/items/{n}", n % 50),
                            status: [200, 200, 200, 404, 500][n % 5],
                            latency_ms: u32::try_from(n % 40).unwrap(),
                            request_bytes: 0,
                            response_bytes: 1024 + (n % 300) as u64,
                            country: Some(["DE", "US", "JP", "BR"][n % 4].into()),
                            city: None,
                            colo: Some("FRA".into()),
                            proxied: false,
                            deduplicated: n.is_multiple_of(10),
                            cache: CacheOutcome::Hit,
                            validation_failed: false,
                            near_miss: None,
                            snapshot_source: Some("isolate".into()),
                        }
                    })
                    .collect();
                let sent = Instant::now();
                let answer: Value = client
                    .post(format!("{url}/internal/v1/analytics"))
                    .bearer_auth(EDGE_TOKEN)
                    .json(&AnalyticsBatch { events })
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert_eq!(answer["stored"], BATCH, "{answer}");
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let took = started.elapsed();
    all.sort();
    let events = (all.len() * BATCH) as f64;
    let stored = analytics_state(url, token).await.2 - before;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "| {senders} | {} | {:.0} | {:.1} | {:.1} | {stored:.0} of {events:.0} |",
        all.len(),
        events / took.as_secs_f64(),
        ms(all[all.len() / 2]),
        ms(all[all.len() * 99 / 100]),
    );
    assert!((stored - events).abs() < 0.5, "stored {stored} of {events} events");
}

async fn run_on(label: &str, database_url: &str) {
    let token = Tokens::new(SECRET)
        .mint(&Claims {
            sub: "bench".into(),
            role: Role::Owner,
            workspaces: vec!["*".into()],
            exp: 4_000_000_000,
        })
        .unwrap();
    let (native, _) = start(database_url).await;
    seed(&native.url, &token).await;
    drop(native);
    // Start-up with the 503 endpoints stored.
    let (native, startup) = start(database_url).await;
    let pid = native.pid();
    let routes = root().join("target/bench-500-routes.lua");
    std::fs::write(
        &routes,
        "local i = 0\nrequest = function()\n  i = i + 1\n  return wrk.format(\"GET\", \"/mock/bench/r\" .. (i % 500) .. \"/items/\" .. i)\nend\n",
    )
    .unwrap();
    println!(
        "\n{label}: start-up to ready {:.0} ms; RSS after start {:.1} MiB",
        startup.as_secs_f64() * 1000.0,
        rss_mib(pid)
    );
    println!(
        "| scenario | req/s | bare req/s | ratio | p50 ms | p99 ms | CPU per request | bare CPU per request | RSS after | analytics behind (most, 1 s samples) | each turn's ratio | every run, native / bare |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let scenarios: [(&str, &str, Option<&str>); 4] = [
        ("static 1 KB", "/mock/bench/static", None),
        ("path-parameter template", "/mock/bench/users/42", None),
        ("query rule", "/mock/bench/search?tier=gold", None),
        ("500 routes, spread", "/mock/bench/r7/items/7", Some(routes.to_str().unwrap())),
    ];
    let mut most_rss: f64 = 0.0;
    for (name, path, script) in scenarios {
        let url =
            if script.is_some() { native.url.clone() } else { format!("{}{path}", native.url) };
        let (bare_url, bare_server) = bare(capture(&format!("{}{path}", native.url)).await).await;
        // This machine's speed drifts by tens of percent over minutes (other tenants of the
        // host): the two servers take turns, ROUNDS times each. The ratio is the median of
        // each turn's (native and bare one right after the other): a median of native's
        // turns against a median of bare's compared moments minutes apart, and moved by
        // ±0.1 between runs. Every other turn bare goes first, so that a machine slowing
        // down (or speeding up) within a turn favours neither.
        let (mut runs, mut bare_runs) = (Vec::new(), Vec::new());
        let mut behind: f64 = 0.0;
        let bare_turn = || {
            let own0 = cpu_seconds(std::process::id());
            let (bare_rps, _, _, bare_requests) = wrk(&bare_url, script);
            let bare_cpu = cpu_seconds(std::process::id()) - own0;
            (bare_rps, bare_cpu / bare_requests * 1e6)
        };
        for round in 0..ROUNDS {
            let bare_first = round % 2 == 1;
            if bare_first {
                bare_runs.push(bare_turn());
            }
            let cpu0 = cpu_seconds(pid);
            let run = {
                let (url, script) = (url.clone(), script.map(str::to_owned));
                tokio::task::spawn_blocking(move || wrk(&url, script.as_deref()))
            };
            // While wrk runs: how far the stored analytics are behind the requests answered.
            while !run.is_finished() {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let (counted, _, stored) = analytics_state(&native.url, &token).await;
                behind = behind.max(counted - stored);
                most_rss = most_rss.max(rss_mib(pid));
            }
            let (rps, p50, p99, requests) = run.await.unwrap();
            runs.push((rps, p50, p99, (cpu_seconds(pid) - cpu0) / requests * 1e6));
            if !bare_first {
                bare_runs.push(bare_turn());
            }
        }
        bare_server.abort();
        let mut ratios: Vec<f64> = runs.iter().zip(&bare_runs).map(|(n, b)| n.0 / b.0).collect();
        ratios.sort_by(f64::total_cmp);
        let ratio = ratios[ROUNDS / 2];
        let by_rps = |a: &(f64, f64, f64, f64), b: &(f64, f64, f64, f64)| a.0.total_cmp(&b.0);
        runs.sort_by(by_rps);
        bare_runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (rps, p50, p99, cpu) = runs[ROUNDS / 2];
        let (bare_rps, bare_cpu) = bare_runs[ROUNDS / 2];
        let all = |v: Vec<f64>| v.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ");
        println!(
            "| {name} | {rps:.0} | {bare_rps:.0} | {ratio:.2} | {p50:.2} | {p99:.2} | {cpu:.1} µs | {bare_cpu:.1} µs | {:.1} MiB | {behind:.0} requests | {} | {} / {} |",
            rss_mib(pid),
            ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(", "),
            all(runs.iter().map(|r| r.0).collect()),
            all(bare_runs.iter().map(|r| r.0).collect()),
        );
    }
    // Every request answered is in the tally, and a write (once a second) later, stored.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (counted, dropped, stored) = analytics_state(&native.url, &token).await;
    println!(
        "analytics of the native runtime: {counted:.0} requests counted, {stored:.0} stored 2.5 s after the load, {dropped:.0} dropped; most RSS under load {most_rss:.1} MiB"
    );
    let api: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/apis/bench", native.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (api_id, workspace_id) =
        (api["id"].as_str().unwrap().to_owned(), api["workspace_id"].as_str().unwrap().to_owned());
    println!(
        "\n{label}: edge analytics ingest, batches of {BATCH} events (each event stored and rolled up in the batch's transaction)"
    );
    println!("| senders | batches | events/s | batch p50 ms | batch p99 ms | stored |");
    println!("|---|---|---|---|---|---|");
    ingest(&native.url, &token, &api_id, &workspace_id, 1, 200).await;
    ingest(&native.url, &token, &api_id, &workspace_id, 4, 400).await;
    let (read50, read99) = admin_latency(&native.url, &token, false, 800).await;
    let (write50, write99) = admin_latency(&native.url, &token, true, 400).await;
    println!(
        "admin API, 8 clients: read (list 50 endpoints) p50 {read50:.2} ms, p99 {read99:.2} ms; write (replace an endpoint of a 503-endpoint API) p50 {write50:.2} ms, p99 {write99:.2} ms"
    );
}

fn main() {
    // The `server` profile: what the container image ships (the release profile is sized
    // for the Worker's WASM).
    Server::build().unwrap();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let dir = tempfile::TempDir::new().unwrap();
        let sqlite = format!("sqlite://{}?mode=rwc", dir.path().join("bench.db").display());
        run_on("SQLite", &sqlite).await;
        let pg = Postgres::start().unwrap();
        run_on("PostgreSQL", &pg.fresh_database().unwrap()).await;
    });
}
