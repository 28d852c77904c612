//! `edgemock apply | import | export` against a real control plane (in this process, on
//! SQLite), and `edgemock migrate` beside a server that does not migrate, through the real
//! binary.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use edgemock_control_plane::auth::{Claims, Role, Tokens};
use edgemock_control_plane::{Application, Config};
use serde_json::Value;

const SECRET: &str = "cli-test-secret-cli-test-secret-0123456";

struct Server {
    url: String,
    token: String,
}

async fn start(dir: &Path) -> Server {
    let config = Config {
        host: [127, 0, 0, 1].into(),
        port: 0,
        database_url: format!("sqlite://{}?mode=rwc", dir.join("cli.db").display()),
        jwt_secret: SECRET.into(),
        log_level: "warn".into(),
        ..Config::default()
    };
    let app = Application::build(config).await.unwrap();
    let url = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until(std::future::pending()));
    let claims = Claims {
        sub: "cli".into(),
        role: Role::Owner,
        workspaces: vec!["*".into()],
        exp: 4_000_000_000,
    };
    Server { url, token: Tokens::new(SECRET).mint(&claims).unwrap() }
}

/// Runs the binary; answers (exit code, stdout, stderr).
async fn edgemock(server: &Server, args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_edgemock"));
    command.args(args).env("EDGEMOCK_URL", &server.url).env("EDGEMOCK_TOKEN", &server.token);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const MOCKS: &str = r#"
api: pets
name: Pet store
base_headers: {x-env: test}
endpoints:
  - {method: GET, path: /pets/:id, response: {body: {id: "{{ request.params.id }}", name: Rex}}}
  - {method: POST, path: /pets, response: {status: 201, body: {created: true}}}
  - {method: GET, path: /pets, when: {query: tag, equals: dog}, priority: 1, response: {body: [dogs]}}
graphql:
  - {name: GetPet, response: {body: {data: {pet: {id: 1}}}}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_import_export() {
    let dir = tempfile::TempDir::new().unwrap();
    let server = start(dir.path()).await;
    let mocks = dir.path().join("mocks");
    std::fs::create_dir(&mocks).unwrap();
    std::fs::write(mocks.join("pets.yaml"), MOCKS).unwrap();
    let dir_arg = mocks.to_str().unwrap();

    // A dry run changes nothing.
    let (code, out, err) = edgemock(&server, &["apply", "-f", dir_arg, "--dry-run"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("[dry run]") && out.contains("+ api pets"), "{out}");
    let (code, _, _) = edgemock(&server, &["export", "pets"]).await;
    assert_eq!(code, 1, "the dry run created nothing");

    // Apply creates everything; a second apply changes nothing.
    let (code, out, err) = edgemock(&server, &["apply", "-f", dir_arg]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("+ api pets in workspace default"), "{out}");
    assert!(
        out.contains("+ endpoint GET /pets/:id") && out.contains("+ graphql query GetPet"),
        "{out}"
    );
    assert!(out.contains("5 created, 0 updated, 0 deleted"), "{out}");
    let (code, out, _) = edgemock(&server, &["apply", "-f", dir_arg]).await;
    assert_eq!(code, 0);
    assert!(out.contains("0 created, 0 updated, 0 deleted, 5 unchanged"), "{out}");

    // A changed body is an update; a dropped endpoint is reported, and deleted with --prune.
    let changed = MOCKS.replace("name: Rex", "name: Fido").replace(
        "  - {method: POST, path: /pets, response: {status: 201, body: {created: true}}}\n",
        "",
    );
    std::fs::write(mocks.join("pets.yaml"), changed).unwrap();
    let (_, out, _) = edgemock(&server, &["apply", "-f", dir_arg]).await;
    assert!(out.contains("~ endpoint GET /pets/:id"), "{out}");
    assert!(out.contains("! endpoint POST /pets is not in the file"), "{out}");
    let (_, out, _) = edgemock(&server, &["apply", "-f", dir_arg, "--prune"]).await;
    assert!(
        out.contains("- endpoint POST /pets") && out.contains("0 created, 0 updated, 1 deleted"),
        "{out}"
    );

    // Export gives a file that applies as it is: nothing to change.
    let (code, exported, err) = edgemock(&server, &["export", "pets", "--yaml"]).await;
    assert_eq!(code, 0, "{err}");
    std::fs::write(mocks.join("pets.yaml"), &exported).unwrap();
    let (_, out, _) = edgemock(&server, &["apply", "-f", dir_arg]).await;
    assert!(out.contains("0 created, 0 updated, 0 deleted, 4 unchanged"), "{exported}\n{out}");
    let (code, openapi, _) = edgemock(&server, &["export", "pets", "--openapi"]).await;
    assert_eq!(code, 0);
    let openapi: Value = serde_json::from_str(&openapi).unwrap();
    assert!(openapi["paths"]["/pets/{id}"]["get"].is_object(), "{openapi}");

    // Import an OpenAPI document.
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/catalog-3.1.json");
    let (code, out, err) =
        edgemock(&server, &["import", fixture.to_str().unwrap(), "--slug", "catalog"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("created API catalog with 8 endpoints from 8 operations"), "{out}");

    // Errors are explained, with a failing exit code.
    std::fs::write(mocks.join("bad.json"), r#"{"api": "bad", "endpoints": [{"method": "GET", "path": "/x", "response": {"status": 42}}]}"#).unwrap();
    let (code, _, err) =
        edgemock(&server, &["apply", "-f", mocks.join("bad.json").to_str().unwrap()]).await;
    assert_eq!(code, 1);
    assert!(err.contains("422") && err.contains("response.status"), "{err}");
    std::fs::write(mocks.join("typo.json"), r#"{"api": "typo", "endpoint": []}"#).unwrap();
    let (code, _, err) =
        edgemock(&server, &["apply", "-f", mocks.join("typo.json").to_str().unwrap()]).await;
    assert_eq!(code, 1);
    assert!(err.contains("endpoint"), "{err}");
    let bad_token = Server { url: server.url.clone(), token: "nope".into() };
    let (code, _, err) = edgemock(&bad_token, &["export", "pets"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("401"), "{err}");
}

/// Runs the binary with only `envs` added to the environment; answers (exit code, stdout,
/// stderr).
async fn edgemock_with(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_edgemock"));
    command.args(args).envs(envs.iter().copied());
    let out = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What Kubernetes does (k8s/base/migrate-job.yaml): replicas start with
/// `DATABASE_MIGRATE=false` and wait, and `edgemock migrate` applies the migrations once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_applies_once_and_a_server_without_migrations_waits_for_it() {
    let dir = tempfile::TempDir::new().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("migrate.db").display());
    let config = Config {
        host: [127, 0, 0, 1].into(),
        port: 0,
        database_url: url.clone(),
        database_migrate: false,
        jwt_secret: SECRET.into(),
        log_level: "warn".into(),
        ..Config::default()
    };
    let build = tokio::spawn(Application::build(config));
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(!build.is_finished(), "the server waits while migrations are pending");

    let env = [("DATABASE_URL", url.as_str()), ("LOG_FORMAT", "json"), ("LOG_LEVEL", "info")];
    let (code, out, err) = edgemock_with(&["migrate"], &env).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("applied a database migration"), "{err}");
    assert!(err.contains("the database is up to date"), "{err}");
    assert!(!err.contains("JWT_SECRET"), "migrate needs no server secrets: {err}");

    let app = tokio::time::timeout(std::time::Duration::from_secs(10), build)
        .await
        .expect("the server starts once the migrations are applied")
        .unwrap()
        .unwrap();
    let url_base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until(std::future::pending()));
    let ready = reqwest::get(format!("{url_base}/health/ready")).await.unwrap();
    assert_eq!(ready.status(), 200);
    // The image's HEALTHCHECK.
    let port = url_base.rsplit(':').next().unwrap().to_owned();
    let (code, _, err) = edgemock_with(&["healthcheck", "--port", &port], &[]).await;
    assert_eq!(code, 0, "{err}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (code, _, err) = edgemock_with(&["healthcheck", "--port", &closed.to_string()], &[]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unhealthy"), "{err}");

    // A second run has nothing to do.
    let (code, out, err) = edgemock_with(&["migrate"], &env).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(!err.contains("applied a database migration"), "{err}");
    assert!(err.contains("\"applied\":0"), "{err}");

    // A database it cannot open is an exit code, not a hang.
    let missing = format!("sqlite://{}", dir.path().join("no/such/dir.db").display());
    let bad = [("DATABASE_URL", missing.as_str()), ("LOG_FORMAT", "json")];
    let (code, _, err) = edgemock_with(&["migrate"], &bad).await;
    assert_eq!(code, 1, "{err}");
}
