//! The edge Worker under load in workerd (`wrangler dev`), on this machine:
//! `cargo bench -p edgemock-e2e --bench workerd`.
//!
//! Prints, for BENCHMARKS.md:
//! - cold start: `wrangler dev` spawned → its first answer, and the first mock request of a
//!   fresh isolate (KV read, snapshot compile, rate limiter created) against a warm one;
//! - per request kind (static, templated, schema-validated 1 KB body, and the health route
//!   as the floor of any request): requests per second with 8 concurrent clients, latency
//!   percentiles, and the CPU time workerd spent per request, read from /proc before and
//!   after. That CPU figure is everything workerd did for the request (HTTP parsing, the
//!   JS glue, the rate limiter's Durable Object, queueing the analytics event and its share
//!   of the consumer's batch) — an upper bound on the Worker's own CPU time.
//!
//! The load generator runs on the same two cores as workerd, so requests per second are
//! this machine's, not the platform's.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use edgemock_e2e::{ControlPlane, Edge};
use serde_json::{Value, json};
use tempfile::TempDir;

const TOKEN: &str = "bench-token";
const REQUESTS: usize = 4000;
const CONCURRENCY: usize = 8;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run())
}

fn snapshot() -> Value {
    let mut endpoints: Vec<Value> = (0..200)
        .map(|i| {
            json!({"id": format!("f{i}"), "method": "GET", "path": format!("/svc{}/res{i}/:id", i % 17),
                   "response": {"body": {"i": i}}})
        })
        .collect();
    endpoints.push(json!({
        "id": "static", "method": "GET", "path": "/hot/static",
        "response": {"headers": {"x-a": "1"}, "body": {"id": 1, "name": "Ada", "tags": ["a", "b"]}}
    }));
    endpoints.push(json!({
        "id": "template", "method": "GET", "path": "/hot/users/:id",
        "response": {"body": {"id": "{{ request.params.id }}", "page": "{{ request.query.page }}",
                              "at": "{{ now() }}", "token": "{{ uuid() }}"}}
    }));
    endpoints.push(json!({
        "id": "validate", "method": "POST", "path": "/hot/orders",
        "validation": {"schema": {
            "type": "object", "required": ["customer", "items"],
            "properties": {
                "customer": {"type": "object", "required": ["email"], "properties": {"email": {"type": "string", "format": "email"}, "name": {"type": "string"}}},
                "items": {"type": "array", "items": {"type": "object", "required": ["sku", "qty"], "properties": {"sku": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]+$"}, "qty": {"type": "integer", "minimum": 1}}}},
                "note": {"type": "string", "maxLength": 500}
            }
        }},
        "response": {"status": 201, "body": {"ok": true}}
    }));
    json!({
        "format_version": 1, "version": 1,
        "workspace": {"id": "w", "slug": "w"},
        "api": {"id": "a", "slug": "bench", "name": "Bench"},
        "endpoints": endpoints,
    })
}

fn order_body() -> Vec<u8> {
    let items: Vec<Value> =
        (0..38).map(|i| json!({"sku": format!("AB-{i}"), "qty": i + 1})).collect();
    serde_json::to_vec(&json!({"customer": {"email": "ada@example.com", "name": "Ada Lovelace"},
                               "items": items, "note": "leave at the door"}))
    .unwrap()
}

/// CPU seconds used so far by the processes of `group` whose name is `name`.
fn cpu_seconds(group: u32, name: &str) -> f64 {
    let ticks_per_second: f64 = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0);
    let mut ticks = 0u64;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // pid (comm) state ppid pgrp … utime(14) stime(15); comm may hold spaces.
        let Some((head, rest)) = stat.rsplit_once(") ") else { continue };
        let comm = head.split_once(" (").map(|(_, c)| c).unwrap_or_default();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.get(2).and_then(|g| g.parse::<u32>().ok()) != Some(group)
            || !comm.starts_with(name)
        {
            continue;
        }
        ticks += fields.get(11).and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
        ticks += fields.get(12).and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
    }
    ticks as f64 / ticks_per_second
}

struct Kind {
    name: &'static str,
    method: reqwest::Method,
    path: &'static str,
    body: Vec<u8>,
    status: u16,
}

async fn load(client: &reqwest::Client, edge: &Edge, kind: &Kind, n: usize) -> Vec<Duration> {
    let kind = Arc::new((
        kind.method.clone(),
        format!("{}{}", edge.url, kind.path),
        kind.body.clone(),
        kind.status,
    ));
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let client = client.clone();
        let kind = kind.clone();
        tasks.push(tokio::spawn(async move {
            let (method, url, body, status) = &*kind;
            let mut latencies = Vec::with_capacity(n / CONCURRENCY);
            for _ in 0..n / CONCURRENCY {
                let started = Instant::now();
                let r = client
                    .request(method.clone(), url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), *status, "{url}");
                r.bytes().await.unwrap();
                latencies.push(started.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort();
    all
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn measure(edge: &Edge, label: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let kinds = [
        Kind {
            name: "health route (floor)",
            method: reqwest::Method::GET,
            path: "/__edgemock/health",
            body: vec![],
            status: 200,
        },
        Kind {
            name: "static",
            method: reqwest::Method::GET,
            path: "/mock/bench/hot/static",
            body: vec![],
            status: 200,
        },
        Kind {
            name: "templated",
            method: reqwest::Method::GET,
            path: "/mock/bench/hot/users/42?page=3",
            body: vec![],
            status: 200,
        },
        Kind {
            name: "validated 1 KB",
            method: reqwest::Method::POST,
            path: "/mock/bench/hot/orders",
            body: order_body(),
            status: 201,
        },
    ];
    println!("\n{label}: {REQUESTS} requests each, {CONCURRENCY} concurrent clients");
    println!(
        "| request | req/s | p50 ms | p99 ms | workerd CPU per request | node CPU per request |"
    );
    println!("|---|---|---|---|---|---|");
    for kind in &kinds {
        load(&client, edge, kind, 400).await; // warm-up
        let group = edge.process_group();
        let (workerd0, node0) = (cpu_seconds(group, "workerd"), cpu_seconds(group, "node"));
        let started = Instant::now();
        let latencies = load(&client, edge, kind, REQUESTS).await;
        let elapsed = started.elapsed();
        // Let the analytics consumer finish the batches these requests queued.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let workerd = cpu_seconds(group, "workerd") - workerd0;
        let node = cpu_seconds(group, "node") - node0;
        let n = latencies.len() as f64;
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.3} ms | {:.3} ms |",
            kind.name,
            n / elapsed.as_secs_f64(),
            ms(latencies[latencies.len() / 2]),
            ms(latencies[latencies.len() * 99 / 100]),
            workerd * 1000.0 / n,
            node * 1000.0 / n,
        );
    }
    Ok(())
}

/// The engine's own CPU per call inside workerd's WASM: the test route runs it `times`
/// times in one request, so the difference between many and one call per request, read
/// from workerd's CPU time, is the engine alone (no HTTP, no JS glue, no bindings).
async fn engine_in_workerd(edge: &Edge) -> anyhow::Result<()> {
    const REQUESTS: u32 = 10;
    const TIMES: u32 = 2000;
    let client = reqwest::Client::new();
    println!(
        "\nthe engine alone inside workerd ({REQUESTS} requests × {TIMES} engine calls, minus {REQUESTS} × 1)"
    );
    println!("| request | CPU per engine call |");
    println!("|---|---|");
    let kinds = [
        ("static", reqwest::Method::GET, "hot/static", vec![]),
        ("templated", reqwest::Method::GET, "hot/users/42?page=3", vec![]),
        ("validated 1 KB", reqwest::Method::POST, "hot/orders", order_body()),
    ];
    for (name, method, path, body) in kinds {
        let url = format!("{}/__edgemock/test/repeat/bench/{path}", edge.url);
        let run = |times: u32| {
            let (client, url, method, body) =
                (client.clone(), url.clone(), method.clone(), body.clone());
            async move {
                let group = edge.process_group();
                let before = cpu_seconds(group, "workerd");
                for _ in 0..REQUESTS {
                    let r = client
                        .request(method.clone(), &url)
                        .header("x-edgemock-repeat", times.to_string())
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert!(r.status().is_success(), "{url}: {}", r.status());
                    r.bytes().await.unwrap();
                }
                cpu_seconds(group, "workerd") - before
            }
        };
        run(200).await; // warm-up: lets V8 tier the WASM up
        let many = run(TIMES).await;
        let one = run(1).await;
        let per_call = (many - one) / f64::from(REQUESTS * (TIMES - 1));
        println!("| {name} | {:.1} µs |", per_call * 1e6);
    }
    Ok(())
}

async fn run() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let cp =
        ControlPlane::start_with(&ControlPlane::sqlite_url(&dir), None, Some(TOKEN.into())).await?;
    let vars = [
        ("CONTROL_PLANE_URL", cp.url.as_str()),
        ("WORKSPACE_RATE_LIMIT_RPM", "100000000"),
        ("EDGEMOCK_TEST_ROUTES", "true"),
    ];
    // Once to build the Worker if needed, so the measured start is a start, not a build.
    drop(Edge::start_with(TOKEN, 300, &vars).await?);

    let spawned = Instant::now();
    let edge = Edge::start_with(TOKEN, 300, &vars).await?;
    let first_answer = spawned.elapsed();
    edge.kv_put("api:bench", &snapshot().to_string())?;
    let client = reqwest::Client::new();
    let url = format!("{}/mock/bench/hot/static", edge.url);
    let started = Instant::now();
    assert_eq!(client.get(&url).send().await?.status(), 200);
    let first_mock = started.elapsed();
    let started = Instant::now();
    assert_eq!(client.get(&url).send().await?.status(), 200);
    let warm_mock = started.elapsed();
    println!("cold start");
    println!(
        "- wrangler dev spawned → first answer from workerd: {:.2} s",
        first_answer.as_secs_f64()
    );
    println!(
        "- first mock request of the isolate (KV read, compile 203 endpoints, new rate limiter): {:.1} ms; the next: {:.1} ms",
        ms(first_mock),
        ms(warm_mock)
    );
    engine_in_workerd(&edge).await?;
    measure(&edge, "with the rate limiter (a Durable Object call per request) and analytics")
        .await?;
    drop(edge);

    let vars = [("CONTROL_PLANE_URL", cp.url.as_str()), ("WORKSPACE_RATE_LIMIT_RPM", "0")];
    let edge = Edge::start_with(TOKEN, 300, &vars).await?;
    edge.kv_put("api:bench", &snapshot().to_string())?;
    measure(&edge, "without a rate limit (WORKSPACE_RATE_LIMIT_RPM=0), with analytics").await?;
    let db = edgemock_control_plane::db::connect(&ControlPlane::sqlite_url(&dir), 1).await?;
    let events: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM analytics_events").fetch_one(&db).await?;
    println!("\nanalytics events stored meanwhile: {events}");
    Ok(())
}
