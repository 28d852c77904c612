//! Redis as the shared tier (`REDIS_URL`), with real processes: two control planes on one
//! SQLite database and one `redis-server`. Rate limits hold across both; a change made
//! through one is served by the other at once and never rolls back; with Redis stopped or
//! hung, mocks keep answering fast, limits fall back to per-process counts and `/health`
//! says so; with Redis back, sharing resumes. A Redis that answers but refuses writes is
//! down too. A Redis that is not there at start-up never stops a control plane.

// A failed unwrap in a test is a failed test, with the line that failed.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use edgemock_control_plane::Config;
use edgemock_control_plane::auth::Role;
use edgemock_e2e::{ControlPlane, Redis, eventually};
use reqwest::Response;
use serde_json::{Value, json};
use tempfile::TempDir;

/// Waits for a fresh minute if less than `needed` of this one is left: a rate-limit window
/// must not turn mid-phase.
async fn window_with(needed: Duration) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let left = 60_000 - u64::try_from(now.as_millis() % 60_000).unwrap();
    if left < u64::try_from(needed.as_millis()).unwrap() {
        tokio::time::sleep(Duration::from_millis(left + 100)).await;
    }
}

fn header(r: &Response, name: &str) -> String {
    r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("<none>").to_owned()
}

/// The secret of the edge's internal routes, which every replica answers.
const EDGE_TOKEN: &str = "redis-test-edge-token";

/// A control plane on `database` that shares through `redis_url`, waiting at most 1 s for
/// Redis (a loaded test machine must not trip the fall back in the exact-count phases).
async fn replica(
    database: &str,
    redis_url: &str,
    tune: impl FnOnce(&mut Config),
) -> anyhow::Result<ControlPlane> {
    let redis_url = redis_url.to_owned();
    ControlPlane::start_tuned(0, database, None, Some(EDGE_TOKEN.to_owned()), move |c| {
        c.redis_url = Some(redis_url);
        c.redis_timeout = Duration::from_secs(1);
        tune(c);
    })
    .await
}

/// `/health/ready`'s view of Redis.
async fn redis_state(cp: &ControlPlane) -> String {
    let Ok(r) = reqwest::get(format!("{}/health/ready", cp.url)).await else {
        return "<no answer>".into();
    };
    let body: Value = r.json().await.unwrap_or_default();
    body["redis"].as_str().unwrap_or("<none>").to_owned()
}

async fn wait_for_redis(cps: &[&ControlPlane], want: &str) -> anyhow::Result<()> {
    for cp in cps {
        eventually(Duration::from_secs(10), &format!("Redis {want} on {}", cp.url), || async {
            (redis_state(cp).await == want).then_some(())
        })
        .await?;
    }
    Ok(())
}

/// The value of the series `name` (labels included, as written) in `cp`'s scrape.
async fn series(cp: &ControlPlane, name: &str) -> Option<f64> {
    let scrape = reqwest::get(format!("{}/metrics", cp.url)).await.ok()?.text().await.ok()?;
    scrape.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// An API `slug` in the default workspace with `GET /v` answering `{"v": 1}`; the endpoint's
/// id.
async fn api(cp: &ControlPlane, slug: &str) -> anyhow::Result<String> {
    let (status, body) = cp.post("/api/v1/workspaces/default/apis", &json!({"slug": slug})).await?;
    assert_eq!(status, 201, "{body}");
    let endpoint = json!({"method": "GET", "path": "/v", "response": {"body": {"v": 1}}});
    let (status, body) = cp.post(&format!("/api/v1/apis/{slug}/endpoints"), &endpoint).await?;
    assert_eq!(status, 201, "{body}");
    Ok(body["id"].as_str().unwrap().to_owned())
}

/// One mock request: status, `X-RateLimit-Remaining`, `v` of the body, and how long it took.
async fn mock(
    client: &reqwest::Client,
    cp: &ControlPlane,
    slug: &str,
) -> (u16, String, i64, Duration) {
    let started = Instant::now();
    let r = client.get(format!("{}/mock/{slug}/v", cp.url)).send().await.unwrap();
    let (status, remaining) = (r.status().as_u16(), header(&r, "x-ratelimit-remaining"));
    let body: Value = r.json().await.unwrap_or_default();
    (status, remaining, body["v"].as_i64().unwrap_or(-1), started.elapsed())
}

/// Sends `each` mock requests to every replica in turn: (replica, status, remaining).
async fn alternate(cps: &[&ControlPlane], slug: &str, each: usize) -> Vec<(usize, u16, String)> {
    let client = reqwest::Client::new();
    let mut seen = Vec::new();
    for _ in 0..each {
        for (i, cp) in cps.iter().enumerate() {
            let (status, remaining, _, _) = mock(&client, cp, slug).await;
            seen.push((i, status, remaining));
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_across_replicas_and_fall_back_while_redis_is_down() -> anyhow::Result<()> {
    // A password in the URL, as in production.
    let mut redis = Redis::start_with_password("redis-secret-0123")?;
    let dir = TempDir::new()?;
    let db = ControlPlane::sqlite_url(&dir);
    let limits = |c: &mut Config| {
        c.rate_limits.global_rpm = 20;
        c.rate_limits.free_rpm = 10;
    };
    let a = replica(&db, &redis.url(), limits).await?;
    let b = replica(&db, &redis.url(), limits).await?;
    api(&a, "shared").await?;
    wait_for_redis(&[&a, &b], "ok").await?;

    // Shared: 6 requests to each replica of a workspace limited to 10 → exactly 10 served,
    // and every answer's Remaining is one count, whichever replica gave it.
    window_with(Duration::from_secs(25)).await;
    let seen = alternate(&[&a, &b], "shared", 6).await;
    let served: Vec<_> = seen.iter().filter(|(_, s, _)| *s == 200).collect();
    assert_eq!(served.len(), 10, "{seen:?}");
    let remaining: Vec<String> = served.iter().map(|(_, _, r)| r.clone()).collect();
    let want: Vec<String> = (0..10).rev().map(|n: i32| n.to_string()).collect();
    assert_eq!(remaining, want, "{seen:?}");
    assert!(seen[10..].iter().all(|(_, s, r)| *s == 429 && r == "0"), "{seen:?}");
    let r = reqwest::get(format!("{}/mock/shared/v", b.url)).await?;
    assert_eq!((r.status().as_u16(), header(&r, "x-ratelimit-tier")), (429, "free".into()));
    assert!(header(&r, "retry-after").parse::<u64>().is_ok_and(|s| (1..=60).contains(&s)));

    // The admin API's GLOBAL_RATE_LIMIT_RPM (20) per client, likewise.
    let reader = a.token("reader", Role::Viewer, &["*"]);
    let mut admin = Vec::new();
    for _ in 0..11 {
        for cp in [&a, &b] {
            let r = reqwest::Client::new()
                .get(format!("{}/api/v1/workspaces", cp.url))
                .bearer_auth(&reader)
                .send()
                .await?;
            admin.push((r.status().as_u16(), header(&r, "x-ratelimit-remaining")));
        }
    }
    let allowed: Vec<&str> =
        admin.iter().filter(|(s, _)| *s == 200).map(|(_, r)| r.as_str()).collect();
    let want: Vec<String> = (0..20).rev().map(|n: i32| n.to_string()).collect();
    assert_eq!(allowed, want, "{admin:?}");
    assert!(admin[20..].iter().all(|(s, _)| *s == 429), "{admin:?}");
    // No key names a secret: clients are hashes of their credential.
    let keys = redis.cli(&["KEYS", "*"])?;
    assert!(keys.contains("edgemock:rl:ws:") && keys.contains("edgemock:rl:client:"), "{keys}");
    assert!(!keys.contains(&reader) && !keys.contains("redis-secret"), "{keys}");

    // Redis stops mid-run: every request is still answered, at once, and each replica counts
    // its own share (10 each).
    redis.stop();
    let client = reqwest::Client::new();
    let mut after = Vec::new();
    for _ in 0..11 {
        for (i, cp) in [&a, &b].into_iter().enumerate() {
            after.push((i, mock(&client, cp, "shared").await));
        }
    }
    let slowest = after.iter().map(|(_, (_, _, _, took))| *took).max().unwrap();
    assert!(slowest < Duration::from_millis(250), "slowest answer {slowest:?}: {after:?}");
    for replica in 0..2 {
        let mine: Vec<(u16, &str)> = after
            .iter()
            .filter(|(i, _)| *i == replica)
            .map(|(_, (s, r, _, _))| (*s, r.as_str()))
            .collect();
        let mut want: Vec<(u16, String)> =
            (0..10).rev().map(|n: i32| (200, n.to_string())).collect();
        want.push((429, "0".into()));
        let want: Vec<(u16, &str)> = want.iter().map(|(s, r)| (*s, r.as_str())).collect();
        assert_eq!(mine, want, "replica {replica}: {after:?}");
    }
    println!("with Redis stopped: slowest of {} answers {slowest:?}", after.len());
    wait_for_redis(&[&a, &b], "down").await?;
    for cp in [&a, &b] {
        let (status, body) = cp.get("/health").await?;
        assert_eq!((status, body["status"].as_str()), (200, Some("degraded")), "{body}");
        assert_ne!(body["checks"]["redis"]["status"], "ok", "{body}");
        assert!(body["checks"]["redis"]["response_time_ms"].as_f64().is_some(), "{body}");
        assert!(!body.to_string().contains("redis-secret"), "{body}");
        assert_eq!(series(cp, "edgemock_redis_up").await, Some(0.0));
        assert!(
            series(cp, r#"edgemock_redis_errors_total{operation="rate_limit"}"#).await >= Some(1.0)
        );
    }

    // Redis is back (empty, as a replaced node would be): sharing resumes.
    redis.start_again()?;
    wait_for_redis(&[&a, &b], "ok").await?;
    window_with(Duration::from_secs(10)).await;
    let seen = alternate(&[&a, &b], "shared", 6).await;
    assert_eq!(seen.iter().filter(|(_, s, _)| *s == 200).count(), 10, "{seen:?}");
    for cp in [&a, &b] {
        let (status, body) = cp.get("/health").await?;
        assert_eq!((status, body["status"].as_str()), (200, Some("ok")), "{body}");
        assert_eq!(body["checks"]["redis"]["status"], "ok", "{body}");
        assert_eq!(series(cp, "edgemock_redis_up").await, Some(1.0));
    }
    a.stop().await?;
    b.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_the_other_replica_at_once_and_never_go_back() -> anyhow::Result<()> {
    let mut redis = Redis::start()?;
    let dir = TempDir::new()?;
    let db = ControlPlane::sqlite_url(&dir);
    // The default MOCK_API_CACHE_TTL_SECONDS (60): only an announcement explains a change
    // arriving within seconds.
    let a = replica(&db, &redis.url(), |_| {}).await?;
    let b = replica(&db, &redis.url(), |_| {}).await?;
    let endpoint = api(&a, "cached").await?;
    wait_for_redis(&[&a, &b], "ok").await?;
    let client = reqwest::Client::new();
    assert_eq!(mock(&client, &b, "cached").await.2, 1);

    // B built the snapshot from the database and shared it: a third replica serves it to the
    // edge's fallback route and compiles it from Redis, without building it.
    let key = eventually(Duration::from_secs(5), "the snapshot in Redis", || async {
        let keys = redis.cli(&["KEYS", "edgemock:snapshot:*"]).ok()?;
        keys.lines().find(|k| k.ends_with(":cached:2")).map(str::to_owned)
    })
    .await?;
    assert_eq!(key, "edgemock:snapshot:1:cached:2");
    let c = replica(&db, &redis.url(), |_| {}).await?;
    wait_for_redis(&[&c], "ok").await?;
    let r = client
        .get(format!("{}/internal/v1/snapshots/cached", c.url))
        .bearer_auth(EDGE_TOKEN)
        .send()
        .await?;
    assert_eq!(r.status(), 200);
    let snapshot: Value = r.json().await?;
    assert_eq!((&snapshot["api"]["slug"], &snapshot["version"]), (&json!("cached"), &json!(2)));
    assert_eq!(snapshot["endpoints"][0]["response"]["body"], json!({"v": 1}), "{snapshot}");
    assert_eq!(mock(&client, &c, "cached").await.2, 1);
    assert_eq!(series(&c, r#"cache_hits_total{cache="redis"}"#).await, Some(2.0));
    assert_eq!(series(&c, r#"cache_misses_total{cache="redis"}"#).await, None);
    c.stop().await?;

    // A change through one replica is served by the other within seconds (not the TTL), and
    // once a replica served a version, it never serves an older one.
    let mut last = [1, 1];
    for v in 2..=5 {
        let (writer, reader) = if v % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let body = json!({"method": "GET", "path": "/v", "response": {"body": {"v": v}}});
        let (status, answer) =
            writer.put(&format!("/api/v1/apis/cached/endpoints/{endpoint}"), &body).await?;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(mock(&client, writer, "cached").await.2, v, "the writer serves its change");
        let started = Instant::now();
        let polled = std::sync::Mutex::new(Vec::new());
        eventually(
            Duration::from_secs(3),
            &format!("version {v} on the other replica"),
            || async {
                let got = mock(&client, reader, "cached").await.2;
                polled.lock().unwrap().push(got);
                (got == v).then_some(())
            },
        )
        .await?;
        println!("v{v} reached the other replica after {:?}", started.elapsed());
        let mut seen = polled.into_inner().unwrap();
        for _ in 0..10 {
            for (i, cp) in [&a, &b].into_iter().enumerate() {
                let got = mock(&client, cp, "cached").await.2;
                seen.push(got);
                assert!(got >= last[i], "replica {i} went back from {} to {got}", last[i]);
                last[i] = got;
            }
        }
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
        assert!(seen.iter().all(|&got| got == v - 1 || got == v), "{seen:?}");
    }

    // Redis stops: both keep answering; the writer serves its own change at once, the other
    // replica the last version it had (until its TTL), never an older one.
    redis.stop();
    let body = json!({"method": "GET", "path": "/v", "response": {"body": {"v": 6}}});
    let (status, _) = a.put(&format!("/api/v1/apis/cached/endpoints/{endpoint}"), &body).await?;
    assert_eq!(status, 200);
    for _ in 0..10 {
        let (status, _, v, took) = mock(&client, &a, "cached").await;
        assert_eq!((status, v), (200, 6));
        assert!(took < Duration::from_millis(250), "{took:?}");
        let (status, _, v, took) = mock(&client, &b, "cached").await;
        assert!(status == 200 && (5..=6).contains(&v), "{status} {v}");
        assert!(took < Duration::from_millis(250), "{took:?}");
    }
    // Redis is back: changes are announced again.
    redis.start_again()?;
    wait_for_redis(&[&a, &b], "ok").await?;
    eventually(Duration::from_secs(3), "version 6 on B", || async {
        (mock(&client, &b, "cached").await.2 == 6).then_some(())
    })
    .await?;
    let body = json!({"method": "GET", "path": "/v", "response": {"body": {"v": 7}}});
    let (status, _) = b.put(&format!("/api/v1/apis/cached/endpoints/{endpoint}"), &body).await?;
    assert_eq!(status, 200);
    eventually(Duration::from_secs(3), "version 7 on A", || async {
        (mock(&client, &a, "cached").await.2 == 7).then_some(())
    })
    .await?;
    a.stop().await?;
    b.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_costs_at_most_one_timeout() -> anyhow::Result<()> {
    let redis = Redis::start()?;
    let dir = TempDir::new()?;
    let db = ControlPlane::sqlite_url(&dir);
    let timeout = Duration::from_millis(100);
    let cp = ControlPlane::start_tuned(0, &db, None, None, |c| {
        c.redis_url = Some(redis.url());
        c.redis_timeout = timeout;
        c.health_check_timeout_ms = 500;
        c.rate_limits.free_rpm = 1_000_000;
    })
    .await?;
    api(&cp, "hung").await?;
    wait_for_redis(&[&cp], "ok").await?;
    let client = reqwest::Client::new();
    for _ in 0..5 {
        assert_eq!(mock(&client, &cp, "hung").await.0, 200);
    }

    // SIGSTOP: the connection stays open and nothing answers.
    redis.pause()?;
    let mut took = Vec::new();
    for _ in 0..40 {
        let (status, _, v, t) = mock(&client, &cp, "hung").await;
        assert_eq!((status, v), (200, 1));
        took.push(t);
    }
    let slow = took.iter().filter(|t| **t >= timeout / 2).count();
    let slowest = took.iter().max().unwrap();
    println!("with Redis hung: {slow} of {} answers waited, slowest {slowest:?}", took.len());
    // The first request waits out the timeout; after it, requests skip Redis (the watcher's
    // check may add one more wait if it races the first).
    assert!(slow <= 2, "{took:?}");
    assert!(*slowest < timeout + Duration::from_millis(250), "{took:?}");
    assert_eq!(redis_state(&cp).await, "down");
    let started = Instant::now();
    let (status, body) = cp.get("/health").await?;
    assert_eq!((status, body["status"].as_str()), (200, Some("degraded")), "{body}");
    assert_eq!(body["checks"]["redis"]["status"], "timeout", "{body}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());

    redis.resume()?;
    wait_for_redis(&[&cp], "ok").await?;
    cp.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_refuses_writes_counts_as_down() -> anyhow::Result<()> {
    let redis = Redis::start()?;
    let dir = TempDir::new()?;
    let cp = replica(&ControlPlane::sqlite_url(&dir), &redis.url(), |_| {}).await?;
    api(&cp, "full").await?;
    wait_for_redis(&[&cp], "ok").await?;
    // Out of memory under the default `noeviction`: PING still answers, every write fails.
    redis.cli(&["CONFIG", "SET", "maxmemory", "1"])?;
    let client = reqwest::Client::new();
    eventually(Duration::from_secs(5), "Redis down", || async {
        assert_eq!(mock(&client, &cp, "full").await.0, 200);
        (redis_state(&cp).await == "down").then_some(())
    })
    .await?;
    // And it stays down (a PING would call it up again every second), while mocks answer.
    for _ in 0..20 {
        assert_eq!(mock(&client, &cp, "full").await.0, 200);
        assert_eq!(redis_state(&cp).await, "down");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    redis.cli(&["CONFIG", "SET", "maxmemory", "0"])?;
    wait_for_redis(&[&cp], "ok").await?;
    cp.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_never_stops_the_control_plane() -> anyhow::Result<()> {
    // Nothing listens on one; the other is a plain Redis spoken to over TLS (the handshake
    // fails), which also shows the TLS stack is there and does not panic.
    let mut later = Redis::stopped(None)?;
    let plain = Redis::start()?;
    let dir = TempDir::new()?;
    let db = ControlPlane::sqlite_url(&dir);
    let urls = [later.url(), format!("rediss://127.0.0.1:{}", plain.port)];
    let mut cps = Vec::new();
    for (n, url) in urls.iter().enumerate() {
        let started = Instant::now();
        let cp = ControlPlane::start_tuned(0, &db, None, None, |c| {
            c.redis_url = Some(url.clone());
        })
        .await?;
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        let slug = format!("alone-{n}");
        api(&cp, &slug).await?;
        let r = reqwest::get(format!("{}/mock/{slug}/v", cp.url)).await?;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-ratelimit-remaining"), "499", "counted in this process");
        let (status, body) = cp.get("/health/ready").await?;
        assert_eq!((status, body["redis"].as_str()), (200, Some("down")), "{body}");
        let (status, body) = cp.get("/health").await?;
        assert_eq!((status, body["status"].as_str()), (200, Some("degraded")), "{body}");
        assert_ne!(body["checks"]["redis"]["status"], "ok", "{body}");
        cps.push(cp);
    }
    // The first one's Redis appears: it connects in the background.
    later.start_again()?;
    wait_for_redis(&[&cps[0]], "ok").await?;
    assert_eq!(redis_state(&cps[1]).await, "down");
    for cp in cps {
        cp.stop().await?;
    }
    Ok(())
}
