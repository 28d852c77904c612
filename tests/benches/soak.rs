//! A soak run of the control plane: `scripts/soak` (or `cargo bench -p edgemock-e2e --bench
//! soak`), `SOAK_SECONDS` long (180), on SQLite or, with `SOAK_DATABASE=postgres`, on a
//! PostgreSQL server of its own.
//!
//! The `edgemock` binary of the `server` profile runs with default settings (analytics and
//! metrics on), rate limits raised so that the load is not refused, under mixed traffic:
//! - 16 mock clients cycling through a static reply, a template, a rule, 100 routes, a
//!   schema-validated POST (valid and invalid), a conditional GET (304) and a miss (404);
//! - 2 admin clients churning whole APIs: create one with 20 endpoints, call its mocks,
//!   replace an endpoint, list, query its analytics, delete it, and check its mocks are gone;
//! - a scraper of `/metrics` and `/health` once a second.
//!
//! Every answer is checked against the status it must have; any other answer, and any
//! failed connection, is an error. Memory (RSS), threads and open files are sampled every
//! 5 s. The run fails on any error, on dropped analytics, or when memory grows: the mean RSS
//! of the last quarter of the run must stay within 10 % (and 4 MiB) of the second quarter's
//! (the first quarter is warm-up: caches, pools and allocator arenas filling).

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::cast_precision_loss)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use edgemock_control_plane::auth::{Claims, Role, Tokens};
use edgemock_e2e::{Postgres, Server, cpu_seconds, proc_status, rss_mib};
use serde_json::{Value, json};

const SECRET: &str = "soak-secret-soak-secret-soak-secret-0001";
const MOCK_CLIENTS: usize = 16;
const ADMIN_CLIENTS: usize = 2;

#[derive(Default)]
struct Counters {
    mock: AtomicU64,
    admin: AtomicU64,
    scrapes: AtomicU64,
    errors: AtomicU64,
    apis_churned: AtomicU64,
}

impl Counters {
    /// Counts one answer of `kind`; an unexpected one is an error, and the first few are
    /// printed.
    fn check(&self, kind: &AtomicU64, what: &str, got: Result<u16, String>, want: u16) {
        kind.fetch_add(1, Ordering::Relaxed);
        match got {
            Ok(status) if status == want => {}
            other => {
                if self.errors.fetch_add(1, Ordering::Relaxed) < 10 {
                    println!("error: {what}: {other:?}, expected {want}");
                }
            }
        }
    }
}

async fn status(request: reqwest::RequestBuilder) -> Result<u16, String> {
    match request.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            r.bytes().await.map_err(|e| e.to_string())?;
            Ok(status)
        }
        Err(e) => Err(e.to_string()),
    }
}

async fn json_of(request: reqwest::RequestBuilder) -> Value {
    request.send().await.unwrap().json().await.unwrap()
}

fn endpoints(routes: usize) -> Vec<Value> {
    let mut endpoints: Vec<Value> = (0..routes)
        .map(|i| json!({"method": "GET", "path": format!("/r{i}/items/:id"), "response": {"body": {"route": i, "id": "{{ request.params.id }}"}}}))
        .collect();
    let items: Vec<Value> =
        (0..22).map(|i| json!({"id": i, "name": format!("item number {i:03}")})).collect();
    endpoints
        .push(json!({"method": "GET", "path": "/static", "response": {"body": {"items": items}}}));
    endpoints.push(json!({"method": "GET", "path": "/users/:id", "response": {"body": {"id": "{{ request.params.id }}", "name": "user {{ request.params.id }}"}}}));
    endpoints.push(
        json!({"method": "GET", "path": "/search", "response": {"body": {"tier": "basic"}},
        "responses": [{"name": "gold", "body": {"tier": "gold"}}],
        "rules": [{"when": {"query": "tier", "equals": "gold"}, "response": "gold"}]}),
    );
    endpoints.push(json!({"method": "POST", "path": "/orders", "response": {"status": 201, "body": {"ok": true}},
        "validation": {"schema": {"type": "object", "required": ["sku", "quantity"],
            "properties": {"sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]+$"}, "quantity": {"type": "integer", "minimum": 1}}}}}));
    endpoints
}

async fn create_api(client: &reqwest::Client, url: &str, token: &str, slug: &str, routes: usize) {
    let created = status(
        client
            .post(format!("{url}/api/v1/workspaces/default/apis"))
            .bearer_auth(token)
            .json(&json!({"slug": slug})),
    )
    .await;
    assert_eq!(created, Ok(201), "create API {slug}");
    for e in endpoints(routes) {
        let r = status(
            client.post(format!("{url}/api/v1/apis/{slug}/endpoints")).bearer_auth(token).json(&e),
        )
        .await;
        assert_eq!(r, Ok(201), "create an endpoint of {slug}");
    }
}

async fn mock_client(url: String, n: usize, etag: String, c: Arc<Counters>, stop: Arc<AtomicBool>) {
    let client = reqwest::Client::new();
    let base = format!("{url}/mock/soak");
    let mut i = n * 1_000_003;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let (what, request, want) = match i % 8 {
            0 => ("static", client.get(format!("{base}/static")), 200),
            1 => ("template", client.get(format!("{base}/users/{i}")), 200),
            2 => ("rule", client.get(format!("{base}/search?tier=gold")), 200),
            3 | 4 => ("route", client.get(format!("{base}/r{}/items/{i}", i % 100)), 200),
            5 => (
                "valid POST",
                client.post(format!("{base}/orders")).json(&json!({"sku": "ABC-1", "quantity": 2})),
                201,
            ),
            6 if i % 16 == 6 => (
                "invalid POST",
                client.post(format!("{base}/orders")).json(&json!({"sku": "abc", "quantity": 0})),
                400,
            ),
            6 => (
                "conditional GET",
                client.get(format!("{base}/static")).header("if-none-match", &etag),
                304,
            ),
            _ => ("miss", client.get(format!("{base}/nowhere/{i}")), 404),
        };
        c.check(&c.mock, what, status(request).await, want);
    }
}

async fn admin_client(
    url: String,
    token: String,
    n: usize,
    c: Arc<Counters>,
    stop: Arc<AtomicBool>,
) {
    let client = reqwest::Client::new();
    let api = |path: &str| format!("{url}/api/v1{path}");
    let mut round = 0;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let slug = format!("churn-{n}-{round}");
        c.check(
            &c.admin,
            "create API",
            status(
                client
                    .post(api("/workspaces/default/apis"))
                    .bearer_auth(&token)
                    .json(&json!({"slug": slug})),
            )
            .await,
            201,
        );
        let mut ids = Vec::new();
        for e in endpoints(20) {
            let r = client
                .post(api(&format!("/apis/{slug}/endpoints")))
                .bearer_auth(&token)
                .json(&e)
                .send()
                .await;
            let ok = matches!(&r, Ok(r) if r.status() == 201);
            c.check(
                &c.admin,
                "create endpoint",
                r.as_ref().map(|r| r.status().as_u16()).map_err(ToString::to_string),
                201,
            );
            if ok {
                let body: Value = r.unwrap().json().await.unwrap_or_default();
                ids.push(body["id"].as_str().unwrap_or_default().to_owned());
            }
        }
        for i in 0..20 {
            let path = format!("{url}/mock/{slug}/r{}/items/{i}", i % 20);
            c.check(&c.mock, "churned API's mock", status(client.get(path)).await, 200);
        }
        if let Some(id) = ids.first() {
            let replaced = json!({"method": "GET", "path": "/r0/items/:id", "response": {"body": {"replaced": round}}});
            c.check(
                &c.admin,
                "replace endpoint",
                status(
                    client
                        .put(api(&format!("/apis/{slug}/endpoints/{id}")))
                        .bearer_auth(&token)
                        .json(&replaced),
                )
                .await,
                200,
            );
        }
        c.check(
            &c.admin,
            "list endpoints",
            status(
                client.get(api(&format!("/apis/{slug}/endpoints?limit=50"))).bearer_auth(&token),
            )
            .await,
            200,
        );
        c.check(
            &c.admin,
            "list APIs",
            status(client.get(api("/workspaces/default/apis?limit=20")).bearer_auth(&token)).await,
            200,
        );
        c.check(
            &c.admin,
            "analytics",
            status(
                client
                    .get(api("/apis/soak/analytics?bucket=minute&group_by=endpoint"))
                    .bearer_auth(&token),
            )
            .await,
            200,
        );
        c.check(
            &c.admin,
            "delete API",
            status(client.delete(api(&format!("/apis/{slug}"))).bearer_auth(&token)).await,
            204,
        );
        c.check(
            &c.mock,
            "deleted API's mock",
            status(client.get(format!("{url}/mock/{slug}/r0/items/1"))).await,
            404,
        );
        c.apis_churned.fetch_add(1, Ordering::Relaxed);
    }
}

async fn scraper(url: String, c: Arc<Counters>, stop: Arc<AtomicBool>) {
    let client = reqwest::Client::new();
    while !stop.load(Ordering::Relaxed) {
        c.check(&c.scrapes, "metrics", status(client.get(format!("{url}/metrics"))).await, 200);
        c.check(&c.scrapes, "health", status(client.get(format!("{url}/health"))).await, 200);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

fn mean(samples: &[f64]) -> f64 {
    samples.iter().sum::<f64>() / samples.len().max(1) as f64
}

async fn soak(database_url: &str, seconds: u64) {
    let (server, startup) = Server::start(&[
        ("DATABASE_URL", database_url),
        ("JWT_SECRET", SECRET),
        ("LOG_LEVEL", "warn"),
        ("WORKSPACE_RATE_LIMIT_RPM", "100000000"),
        ("GLOBAL_RATE_LIMIT_RPM", "0"),
    ])
    .await
    .unwrap();
    let (url, pid) = (server.url.clone(), server.pid());
    let token = Tokens::new(SECRET)
        .mint(&Claims {
            sub: "soak".into(),
            role: Role::Owner,
            workspaces: vec!["*".into()],
            exp: 4_000_000_000,
        })
        .unwrap();
    let client = reqwest::Client::new();
    create_api(&client, &url, &token, "soak", 100).await;
    let etag =
        client.get(format!("{url}/mock/soak/static")).send().await.unwrap().headers()["etag"]
            .to_str()
            .unwrap()
            .to_owned();
    println!("started in {:.0} ms; {seconds} s of mixed traffic", startup.as_secs_f64() * 1000.0);

    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for n in 0..MOCK_CLIENTS {
        tasks.push(tokio::spawn(mock_client(
            url.clone(),
            n,
            etag.clone(),
            counters.clone(),
            stop.clone(),
        )));
    }
    for n in 0..ADMIN_CLIENTS {
        tasks.push(tokio::spawn(admin_client(
            url.clone(),
            token.clone(),
            n,
            counters.clone(),
            stop.clone(),
        )));
    }
    tasks.push(tokio::spawn(scraper(url.clone(), counters.clone(), stop.clone())));

    println!(
        "| time s | mock req/s | admin req/s | APIs churned | errors | RSS MiB | threads | open files | CPU % |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let started = Instant::now();
    let mut rss = Vec::new();
    let (mut last_mock, mut last_admin, mut last_cpu, mut last_t) = (0, 0, cpu_seconds(pid), 0.0);
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let t = started.elapsed().as_secs_f64();
        let (mock, admin) =
            (counters.mock.load(Ordering::Relaxed), counters.admin.load(Ordering::Relaxed));
        let cpu = cpu_seconds(pid);
        rss.push(rss_mib(pid));
        // A row every 30 s, and the samples in between for the memory check.
        if rss.len() % 6 == 0 || t >= seconds as f64 {
            println!(
                "| {t:.0} | {:.0} | {:.0} | {} | {} | {:.1} | {} | {} | {:.0} |",
                (mock - last_mock) as f64 / (t - last_t),
                (admin - last_admin) as f64 / (t - last_t),
                counters.apis_churned.load(Ordering::Relaxed),
                counters.errors.load(Ordering::Relaxed),
                rss.last().unwrap(),
                proc_status(pid, "Threads:"),
                open_files(pid),
                (cpu - last_cpu) / (t - last_t) * 100.0,
            );
            (last_mock, last_admin, last_cpu, last_t) = (mock, admin, cpu, t);
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }

    // The native runtime's analytics: none dropped, all stored once the tally is written.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let scrape = client.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
    let series = |name: &str| {
        scrape
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let dropped = series("edgemock_analytics_native_requests_total{outcome=\"dropped\"}");
    let pending = series("edgemock_analytics_native_pending_rows");
    let stored: f64 = json_of(
        client.get(format!("{url}/api/v1/apis/soak/analytics?bucket=day")).bearer_auth(&token),
    )
    .await["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["requests"].as_f64().unwrap())
        .sum();

    let quarter = rss.len() / 4;
    let (second, last) = (mean(&rss[quarter..2 * quarter]), mean(&rss[rss.len() - quarter..]));
    let most = rss.iter().copied().fold(0.0, f64::max);
    let errors = counters.errors.load(Ordering::Relaxed);
    let (mock, admin) =
        (counters.mock.load(Ordering::Relaxed), counters.admin.load(Ordering::Relaxed));
    println!(
        "\n{mock} mock and {admin} admin requests, {} scrapes, {} APIs created and deleted, {errors} errors",
        counters.scrapes.load(Ordering::Relaxed),
        counters.apis_churned.load(Ordering::Relaxed),
    );
    println!(
        "RSS: mean {second:.1} MiB in the second quarter, {last:.1} MiB in the last ({:+.1} %), most {most:.1} MiB",
        (last / second - 1.0) * 100.0
    );
    println!(
        "analytics of the soak API: {stored:.0} requests stored, {dropped:.0} dropped, {pending:.0} rows pending"
    );
    drop(server);
    assert_eq!(errors, 0, "answers other than expected");
    assert!(dropped == 0.0, "analytics dropped");
    assert!(last <= second * 1.10 + 4.0, "memory grew: {second:.1} → {last:.1} MiB");
}

fn main() {
    let seconds: u64 =
        std::env::var("SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(180);
    assert!(seconds >= 40, "SOAK_SECONDS: at least 40");
    Server::build().unwrap();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        match std::env::var("SOAK_DATABASE").as_deref() {
            Ok("postgres") => {
                let pg = Postgres::start().unwrap();
                println!("soak on PostgreSQL");
                soak(&pg.fresh_database().unwrap(), seconds).await;
            }
            Ok("sqlite") | Err(_) => {
                let dir = tempfile::TempDir::new().unwrap();
                println!("soak on SQLite");
                soak(
                    &format!("sqlite://{}?mode=rwc", dir.path().join("soak.db").display()),
                    seconds,
                )
                .await;
            }
            Ok(other) => panic!("SOAK_DATABASE={other}: sqlite or postgres"),
        }
    });
}
