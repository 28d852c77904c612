//! Rate limits: per client on the admin API (`GLOBAL_RATE_LIMIT_RPM`), per workspace on the
//! native runtime (the workspace's own limit, else its plan's), with `Retry-After` and
//! `X-RateLimit-*`, in fixed one-minute windows.

// A failed unwrap in a test is a failed test, with the line that failed.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use edgemock_control_plane::auth::Role;
use edgemock_e2e::ControlPlane;
use reqwest::Response;
use serde_json::{Value, json};
use tempfile::TempDir;

/// Waits for a fresh minute if this one is nearly over: a window must not turn mid-test.
async fn early_in_a_minute() {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let into = now.as_millis() % 60_000;
    if into > 45_000 {
        tokio::time::sleep(Duration::from_millis(u64::try_from(60_100 - into).unwrap())).await;
    }
}

fn header(r: &Response, name: &str) -> String {
    r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("<none>").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_per_client_and_per_workspace() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let cp = ControlPlane::start_tuned(0, &ControlPlane::sqlite_url(&dir), None, None, |c| {
        c.rate_limits.global_rpm = 12;
        c.rate_limits.pro_rpm = 4;
    })
    .await?;
    early_in_a_minute().await;
    // Setup: 6 admin requests of the owner's 12.
    cp.post("/api/v1/workspaces", &json!({"slug": "small"})).await?;
    cp.patch("/api/v1/workspaces/small", &json!({"rate_limit_rpm": 3})).await?;
    cp.post("/api/v1/workspaces", &json!({"slug": "paying"})).await?;
    cp.patch("/api/v1/workspaces/paying", &json!({"plan": "pro"})).await?;
    for (ws, api) in [("small", "s"), ("paying", "p")] {
        let (status, body) =
            cp.post(&format!("/api/v1/workspaces/{ws}/apis"), &json!({"slug": api})).await?;
        assert_eq!(status, 201, "{body}");
    }

    // The admin API, per client: the owner has 6 left.
    let url = |path: &str| format!("{}{path}", cp.url);
    for left in (0..6).rev() {
        let r = cp.client.get(url("/api/v1/workspaces")).send().await?;
        assert_eq!(r.status(), 200);
        assert_eq!(
            (
                header(&r, "x-ratelimit-limit"),
                header(&r, "x-ratelimit-remaining"),
                header(&r, "x-ratelimit-tier")
            ),
            ("12".into(), left.to_string(), "client".into())
        );
    }
    let r = cp.client.get(url("/api/v1/workspaces")).send().await?;
    assert_eq!(r.status(), 429);
    let retry: u64 = header(&r, "retry-after").parse()?;
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(header(&r, "x-ratelimit-remaining"), "0");
    let body: Value = r.json().await?;
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    // Another client is counted apart; health and metrics are not limited.
    let other = cp.token("someone", Role::Viewer, &["*"]);
    let (status, _) =
        cp.send_as(Some(&other), reqwest::Method::GET, "/api/v1/workspaces", None).await?;
    assert_eq!(status, 200);
    assert_eq!(reqwest::get(url("/health/ready")).await?.status(), 200);

    // The native runtime, per workspace: its own limit (3), then its plan's (pro: 4).
    let plain = reqwest::Client::new();
    for (api, limit, tier) in [("s", 3, "free"), ("p", 4, "pro")] {
        for left in (0..limit).rev() {
            let r = plain.get(url(&format!("/mock/{api}/anything"))).send().await?;
            assert_eq!(r.status(), 404, "the API has no endpoints: the engine answers");
            assert_eq!(
                (
                    header(&r, "x-ratelimit-limit"),
                    header(&r, "x-ratelimit-remaining"),
                    header(&r, "x-ratelimit-tier")
                ),
                (limit.to_string(), left.to_string(), tier.to_owned())
            );
        }
        let r = plain.get(url(&format!("/mock/{api}/anything"))).send().await?;
        assert_eq!(r.status(), 429, "{api}");
        assert!(header(&r, "retry-after").parse::<u64>().is_ok());
        let body: Value = r.json().await?;
        assert_eq!(
            (body["error"]["code"].as_str(), body["error"]["limit"].as_u64()),
            (Some("rate_limited"), Some(limit))
        );
    }
    // A WebSocket handshake counts too (as at the edge): the workspace is over its limit.
    let r = plain.get(url("/ws/s/feed")).header("upgrade", "websocket").send().await?;
    assert_eq!(r.status(), 429);
    // Every refusal is counted, by scope.
    let scrape = plain.get(url("/metrics")).send().await?.text().await?;
    for (series, want) in [
        (r#"rate_limit_exceeded_total{scope="client"} "#, "1"),
        (r#"rate_limit_exceeded_total{scope="workspace"} "#, "3"),
    ] {
        let line = scrape.lines().find(|l| l.starts_with(series)).unwrap_or_default();
        assert_eq!(line.strip_prefix(series), Some(want), "{series} in:\n{scrape}");
    }
    cp.stop().await
}
