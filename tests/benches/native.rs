//! The control plane under load, on this machine: `cargo bench -p edgemock-e2e --bench native`
//! (needs `wrk`: `apt-get install wrk`).
//!
//! For SQLite and for PostgreSQL (a server of its own), the release binary `edgemock` is
//! started with default settings and an API of 503 endpoints (500 filler routes, a static
//! 1 KB reply, a path-parameter template, a query rule). Printed, for BENCHMARKS.md:
//! - start-up: process spawned → `/health/ready` answers, with the 503 endpoints stored;
//! - the native runtime under `wrk -t2 -c32` for each scenario, beside a bare hyper server
//!   in this process that answers the same 1 KB with no routing at all: requests per second,
//!   the ratio to bare, latency, CPU time per request (from /proc) and resident memory;
//! - admin API latency (p50/p99) for reads and writes, 8 concurrent clients.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edgemock_control_plane::auth::{Claims, Role, Tokens};
use edgemock_e2e::{Postgres, free_port, root};
use serde_json::{Value, json};

const SECRET: &str = "bench-secret-bench-secret-bench-secret-01";
const SECONDS: &str = "8";

fn body_1kb() -> Value {
    let items: Vec<Value> = (0..22)
        .map(|i| json!({"id": i, "name": format!("item number {i:03}"), "ok": true}))
        .collect();
    let value = json!({"items": items});
    let len = serde_json::to_vec(&value).unwrap().len();
    assert!((900..1200).contains(&len), "about 1 KB: {len}");
    value
}

struct Native {
    child: Child,
    url: String,
}

impl Drop for Native {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the release binary; answers it and how long it took to be ready.
async fn start(database_url: &str) -> (Native, Duration) {
    let port = free_port();
    let started = Instant::now();
    let child = Command::new(root().join("target/release/edgemock"))
        .env("DATABASE_URL", database_url)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("JWT_SECRET", SECRET)
        .env("LOG_LEVEL", "warn")
        // The limiter runs on every mock request but never refuses one (as the workerd
        // bench does); the admin part is 8 clients on one token, far over the default 100/min.
        .env("WORKSPACE_RATE_LIMIT_RPM", "100000000")
        .env("GLOBAL_RATE_LIMIT_RPM", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    loop {
        if let Ok(r) = client.get(format!("{url}/health/ready")).send().await
            && r.status() == 200
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the control plane did not start");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    (Native { child, url }, started.elapsed())
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|t| t.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|t| t.parse().ok()).unwrap_or(0);
    ticks as f64 / 100.0
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
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

/// A bare hyper server answering `body` to everything: the ceiling for this machine.
async fn bare(body: Arc<Vec<u8>>) -> String {
    use hyper::service::service_fn;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let body = body.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_request| {
                    let body = body.clone();
                    async move {
                        let mut response = hyper::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from((*body).clone()),
                        ));
                        response
                            .headers_mut()
                            .insert("content-type", "application/json".parse().unwrap());
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    url
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

async fn run_on(label: &str, database_url: &str, bare_url: &str) {
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
    let pid = native.child.id();
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
        "| scenario | req/s | bare req/s | ratio | p50 ms | p99 ms | CPU per request | RSS after |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let scenarios: [(&str, String, Option<&str>); 4] = [
        ("static 1 KB", format!("{}/mock/bench/static", native.url), None),
        ("path-parameter template", format!("{}/mock/bench/users/42", native.url), None),
        ("query rule", format!("{}/mock/bench/search?tier=gold", native.url), None),
        ("500 routes, spread", native.url.clone(), Some(routes.to_str().unwrap())),
    ];
    for (name, url, script) in scenarios {
        let cpu0 = cpu_seconds(pid);
        let (rps, p50, p99, requests) = wrk(&url, script);
        let cpu = cpu_seconds(pid) - cpu0;
        let (bare_rps, _, _, _) = wrk(bare_url, None);
        println!(
            "| {name} | {rps:.0} | {bare_rps:.0} | {:.2} | {p50:.2} | {p99:.2} | {:.1} µs | {:.1} MiB |",
            rps / bare_rps,
            cpu / requests * 1e6,
            rss_mib(pid)
        );
    }
    let (read50, read99) = admin_latency(&native.url, &token, false, 800).await;
    let (write50, write99) = admin_latency(&native.url, &token, true, 400).await;
    println!(
        "admin API, 8 clients: read (list 50 endpoints) p50 {read50:.2} ms, p99 {read99:.2} ms; write (replace an endpoint of a 503-endpoint API) p50 {write50:.2} ms, p99 {write99:.2} ms"
    );
}

fn main() {
    let status = Command::new("cargo")
        .current_dir(root())
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            "edgemock-control-plane",
            "--bin",
            "edgemock",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let bare_body = Arc::new(serde_json::to_vec(&body_1kb()).unwrap());
        let bare_url = bare(bare_body).await;
        let dir = tempfile::TempDir::new().unwrap();
        let sqlite = format!("sqlite://{}?mode=rwc", dir.path().join("bench.db").display());
        run_on("SQLite", &sqlite, &bare_url).await;
        let pg = Postgres::start().unwrap();
        run_on("PostgreSQL", &pg.fresh_database().unwrap(), &bare_url).await;
    });
}
