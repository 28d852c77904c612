//! schemathesis against the admin API's own OpenAPI document (`/api/v1/openapi.json`), on
//! SQLite and on PostgreSQL: thousands of generated requests, valid and invalid, through
//! every documented operation. A run fails on any 5xx, any response that breaks the
//! document (status, content type, headers, schema), an invalid request accepted, a route
//! that ignores its auth, a deleted resource still served, or a created one not found.
//!
//! schemathesis is a Python tool: `scripts/setup` installs it into `target/tools/venv`
//! (`SCHEMATHESIS` overrides the path). Each run uses a random seed, printed in its output
//! with a `st replay` line for every failure.
//!
//! One check is left out, `positive_data_acceptance` ("a request valid by the document must
//! be accepted"): the server also enforces rules a JSON Schema cannot say (a delay's
//! `min_ms <= max_ms`, routes that conflict, slugs already taken, webhook URLs on private
//! networks, the engine's checks of templates and conditions); each of those is a 422 or a
//! 409 naming the field, which the other checks do hold the server to.

use std::path::PathBuf;

use edgemock_e2e::{ControlPlane, Postgres, root};
use serde_json::{Value, json};

fn schemathesis() -> PathBuf {
    std::env::var_os("SCHEMATHESIS")
        .map_or_else(|| root().join("target/tools/venv/bin/st"), PathBuf::from)
}

/// Creates a workspace with one of everything (two: one to read and change, one that the
/// DELETE operations remove), and returns schemathesis' configuration pointing at them.
async fn seed(cp: &ControlPlane) -> anyhow::Result<String> {
    async fn create(cp: &ControlPlane, path: &str, body: Value) -> anyhow::Result<String> {
        let (status, reply) = cp.post(path, &body).await?;
        anyhow::ensure!(status == 201, "seeding {path}: {status} {reply}");
        Ok(reply["id"].as_str().unwrap_or_default().to_owned())
    }
    for slug in ["st", "st-doomed"] {
        create(cp, "/api/v1/workspaces", json!({ "slug": slug })).await?;
    }
    for slug in ["st-api", "st-api-doomed"] {
        create(cp, "/api/v1/workspaces/st/apis", json!({ "slug": slug })).await?;
    }
    let mut config = String::from(
        "# Written by tests/tests/schemathesis.rs for one run.\n\
         [parameters]\nworkspace = \"st\"\napi = \"st-api\"\n\n\
         [[operations]]\ninclude-operation-id = \"deleteWorkspace\"\n\
         parameters = { workspace = \"st-doomed\" }\n\n\
         [[operations]]\ninclude-operation-id = \"deleteApi\"\n\
         parameters = { api = \"st-api-doomed\" }\n",
    );
    let items = [
        (
            "/api/v1/apis/st-api/endpoints",
            json!({"method": "GET", "path": "/users/{id}", "response": {"status": 200, "body": {"json": {"id": "{{ request.params.id }}"}}}}),
            json!({"method": "DELETE", "path": "/users/{id}", "response": {"status": 204}}),
            "Endpoint",
            "replaceEndpoint",
        ),
        (
            "/api/v1/apis/st-api/graphql-operations",
            json!({"name": "user", "response": {"body": {"data": {"user": null}}}}),
            json!({"name": "users", "response": {"body": {"data": {"users": []}}}}),
            "GraphqlOperation",
            "replaceGraphqlOperation",
        ),
        (
            "/api/v1/apis/st-api/websockets",
            json!({"path": "/chat", "on_connect": [{"data": "hi"}]}),
            json!({"path": "/news", "on_connect": [{"data": "hello"}]}),
            "WebSocket",
            "replaceWebSocket",
        ),
        (
            "/api/v1/workspaces/st/members",
            json!({"subject": "alice", "role": "editor"}),
            json!({"subject": "bob", "role": "viewer"}),
            "Member",
            "changeMember",
        ),
        (
            "/api/v1/workspaces/st/api-keys",
            json!({"name": "ci"}),
            json!({"name": "old ci"}),
            "ApiKey",
            "revokeApiKey",
        ),
        (
            "/api/v1/workspaces/st/webhooks",
            json!({"url": "https://hooks.example.com/a", "events": ["*"]}),
            json!({"url": "https://hooks.example.com/b", "events": ["api.created"]}),
            "Webhook",
            "updateWebhook|rotateWebhookSecret",
        ),
    ];
    for (path, kept, doomed, noun, writes) in items {
        let kept = create(cp, path, kept).await?;
        let doomed = create(cp, path, doomed).await?;
        config.push_str(&format!(
            "\n[[operations]]\ninclude-operation-id-regex = \"^(get{noun}|{writes})$\"\n\
             parameters = {{ id = \"{kept}\" }}\n\n\
             [[operations]]\ninclude-operation-id = \"delete{noun}\"\n\
             parameters = {{ id = \"{doomed}\" }}\n"
        ));
    }
    // A delivery to read and redeliver: the kept webhook takes every event (delivery is off
    // in the tests, so it stays in the outbox).
    let (status, _) = cp.patch("/api/v1/apis/st-api", &json!({"name": "st"})).await?;
    anyhow::ensure!(status == 200, "seeding an event: {status}");
    let (_, hooks) = cp.get("/api/v1/workspaces/st/webhooks").await?;
    let hook = hooks["items"]
        .as_array()
        .and_then(|items| items.iter().find(|h| h["url"] == "https://hooks.example.com/a"))
        .and_then(|h| h["id"].as_str())
        .unwrap_or_default()
        .to_owned();
    let (_, deliveries) =
        cp.get(&format!("/api/v1/workspaces/st/webhooks/{hook}/deliveries")).await?;
    let delivery = deliveries["items"][0]["id"].as_str().unwrap_or_default().to_owned();
    anyhow::ensure!(!delivery.is_empty(), "no delivery was queued: {deliveries}");
    config.push_str(&format!(
        "\n[[operations]]\n\
         include-operation-id-regex = \"^(listWebhookDeliveries|getWebhookDelivery|redeliverWebhookDelivery)$\"\n\
         parameters = {{ id = \"{hook}\", delivery = \"{delivery}\" }}\n"
    ));
    Ok(config)
}

/// Runs schemathesis twice: the per-operation phases against the seeded data, then the
/// stateful phase on its own, without it (its scenarios create what they use through the
/// document's links, which fixed parameters would override).
async fn run(cp: &ControlPlane, database: &str) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let seeded = dir.path().join("seeded.toml");
    std::fs::write(&seeded, seed(cp).await?)?;
    let bare = dir.path().join("bare.toml");
    std::fs::write(&bare, "# The stateful phase: no fixed parameters.\n")?;
    st(cp, database, &seeded, "examples,coverage,fuzzing").await?;
    st(cp, database, &bare, "stateful").await
}

async fn st(
    cp: &ControlPlane,
    database: &str,
    config: &std::path::Path,
    phases: &str,
) -> anyhow::Result<()> {
    let st = schemathesis();
    anyhow::ensure!(
        st.exists(),
        "schemathesis is not at {} (run scripts/setup, or set SCHEMATHESIS)",
        st.display()
    );
    let started = std::time::Instant::now();
    let output = tokio::process::Command::new(&st)
        .arg("--config-file")
        .arg(config)
        .arg("run")
        .arg(format!("{}/api/v1/openapi.json", cp.url))
        .args(["--phases", phases])
        .args(["--checks", "all", "--exclude-checks", "positive_data_acceptance"])
        .args(["--max-examples", "25", "--max-failures", "50"])
        // One worker: CPython 3.11's `ast` is not thread-safe, and schemathesis' workers
        // are threads (a failure there is schemathesis', not the server's).
        .args(["--workers", "1"])
        .arg("--header")
        .arg(format!("Authorization: Bearer {}", cp.owner_token))
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .env("NO_COLOR", "1")
        .current_dir(config.parent().unwrap_or(config))
        .kill_on_drop(true)
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary = stdout.rfind("SUMMARY").map_or(&stdout[..], |i| &stdout[i..]);
    println!(
        "schemathesis ({phases}) on {database} in {:.1} s:\n{summary}",
        started.elapsed().as_secs_f64()
    );
    anyhow::ensure!(
        output.status.success(),
        "schemathesis ({phases}) found problems on {database}:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_keeps_to_its_openapi_document_on_sqlite() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cp = ControlPlane::start(&ControlPlane::sqlite_url(&dir), None).await?;
    run(&cp, "SQLite").await?;
    cp.stop().await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_keeps_to_its_openapi_document_on_postgres() -> anyhow::Result<()> {
    let pg = Postgres::start()?;
    let cp = ControlPlane::start(&pg.fresh_database()?, None).await?;
    run(&cp, "PostgreSQL").await?;
    cp.stop().await
}
