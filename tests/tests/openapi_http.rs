//! OpenAPI import and export over the admin API, on SQLite and on PostgreSQL: GitHub's REST
//! API document (1,000+ operations, 13 MB) becomes an API whose mocks the native runtime
//! serves; bad documents are refused with the field at fault, and nothing is stored.

#![allow(clippy::unwrap_used)]

use std::time::Instant;

use edgemock_control_plane::auth::Role;
use edgemock_e2e::{ControlPlane, Postgres, root};
use reqwest::Method;
use serde_json::{Value, json};
use tempfile::TempDir;

fn github_document() -> Vec<u8> {
    let path = root().join("node_modules/@octokit/openapi/generated/api.github.com.json");
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/setup (npm ci)", path.display()))
}

async fn post_document(
    cp: &ControlPlane,
    query: &str,
    body: Vec<u8>,
) -> anyhow::Result<(u16, Value)> {
    let r = cp
        .client
        .post(format!("{}/api/v1/workspaces/default/apis/import{query}", cp.url))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.json().await.unwrap_or(Value::Null)))
}

async fn scenario(cp: &ControlPlane, label: &str) -> anyhow::Result<()> {
    let document = github_document();
    let started = Instant::now();
    let (status, imported) = post_document(cp, "?slug=github&seed=7", document.clone()).await?;
    let took = started.elapsed();
    assert_eq!(status, 201, "{imported}");
    let report = &imported["import"]["report"];
    let operations = report["operations"].as_u64().unwrap();
    assert!(operations >= 1000, "{operations} operations");
    assert_eq!(report["endpoints"].as_u64(), Some(operations));
    eprintln!(
        "{label}: imported GitHub's REST API ({} bytes, {operations} operations, {} notes) over HTTP in {:.1} s",
        document.len(),
        report["notes"].as_array().unwrap().len(),
        took.as_secs_f64()
    );
    let (_, endpoints) = cp.get("/api/v1/apis/github/endpoints?limit=500").await?;
    assert_eq!(endpoints["items"].as_array().unwrap().len(), 500);

    // The native runtime serves the imported mocks.
    let r = reqwest::get(format!("{}/mock/github/repos/octocat/hello-world", cp.url)).await?;
    assert_eq!(r.status(), 200);
    let repo: Value = r.json().await?;
    assert!(repo["full_name"].is_string() && repo["owner"].is_object(), "{repo}");
    let r = reqwest::Client::new()
        .get(format!("{}/mock/github/repos/octocat/hello-world", cp.url))
        .header("prefer", "code=404")
        .send()
        .await?;
    assert_eq!(r.status(), 404);

    // Export: an OpenAPI 3.1 document with every route, which imports again.
    let (status, exported) = cp.get("/api/v1/apis/github/openapi").await?;
    assert_eq!(status, 200);
    assert!(exported["openapi"].as_str().unwrap().starts_with("3.1"));
    let (status, again) =
        post_document(cp, "?slug=github-again", serde_json::to_vec(&exported)?).await?;
    assert_eq!(status, 201, "{again}");
    // Every exported operation comes back (two of GitHub's operations share one route shape,
    // so the export holds one fewer than the import; the import reported it).
    let exported_operations: usize =
        exported["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
    assert!(exported_operations as u64 >= operations - 1, "{exported_operations}");
    assert_eq!(again["import"]["report"]["endpoints"].as_u64(), Some(exported_operations as u64));

    // Bad input: nothing is stored.
    let (status, body) = post_document(cp, "", b"\x00\x01 not a document".to_vec()).await?;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_document")), "{body}");
    let swagger = json!({"swagger": "2.0", "info": {"title": "old", "version": "1"}, "paths": {}});
    let (status, body) = post_document(cp, "", serde_json::to_vec(&swagger)?).await?;
    assert_eq!((status, body["error"]["field"].as_str()), (422, Some("/swagger")), "{body}");
    let (status, body) = post_document(cp, "?slug=github", document.clone()).await?;
    assert_eq!((status, body["error"]["field"].as_str()), (409, Some("slug")), "{body}");
    let (status, body) = post_document(cp, "?slug=x&surprise=1", document).await?;
    assert_eq!(status, 400, "{body}");
    let (_, apis) = cp.get("/api/v1/workspaces/default/apis").await?;
    let slugs: Vec<&str> =
        apis["items"].as_array().unwrap().iter().map(|a| a["slug"].as_str().unwrap()).collect();
    assert_eq!(slugs, ["github", "github-again"]);

    // A viewer may export but not import; another workspace's caller sees nothing.
    let viewer = cp.token("vic", Role::Viewer, &["default"]);
    let (status, _) =
        cp.send_as(Some(&viewer), Method::GET, "/api/v1/apis/github/openapi", None).await?;
    assert_eq!(status, 200);
    let (status, _) = cp
        .send_as(
            Some(&viewer),
            Method::POST,
            "/api/v1/workspaces/default/apis/import",
            Some(&swagger),
        )
        .await?;
    assert_eq!(status, 403);
    let stranger = cp.token("eve", Role::Owner, &["elsewhere"]);
    let (status, _) =
        cp.send_as(Some(&stranger), Method::GET, "/api/v1/apis/github/openapi", None).await?;
    assert_eq!(status, 404);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_import_and_export_on_sqlite() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let cp = ControlPlane::start(&ControlPlane::sqlite_url(&dir), None).await?;
    scenario(&cp, "SQLite").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_import_and_export_on_postgres() -> anyhow::Result<()> {
    let pg = Postgres::start()?;
    let cp = ControlPlane::start(&pg.fresh_database()?, None).await?;
    scenario(&cp, "PostgreSQL").await
}

/// A document over the 32 MiB limit is edgemock's JSON 413, not axum's plain text. Over a
/// raw socket: the server answers before the upload ends and closes, so an HTTP client
/// fails its write (broken pipe) before it reads the answer; here the upload runs in a task
/// whose write errors are expected, while the answer is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_document_is_a_json_413() -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let dir = TempDir::new()?;
    let cp = ControlPlane::start(&ControlPlane::sqlite_url(&dir), None).await?;
    let length = 33 * 1024 * 1024;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", cp.port)).await?;
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST /api/v1/workspaces/default/apis/import HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\n\r\n",
        cp.owner_token
    );
    let upload = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..length / chunk.len() {
            writer.write_all(&chunk).await?;
        }
        anyhow::Ok(())
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        let mut buf = [0u8; 8192];
        loop {
            let n = reader.read(&mut buf).await?;
            answer.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&answer);
            if n == 0 || text.contains("\r\n\r\n") && text.trim_end().ends_with('}') {
                return anyhow::Ok(());
            }
        }
    })
    .await;
    upload.abort();
    read??;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{head}");
    let body: Value = serde_json::from_str(body.trim())?;
    assert_eq!(body["error"]["code"], "body_too_large", "{body}");
    // Nothing was stored.
    let (_, apis) = cp.get("/api/v1/workspaces/default/apis").await?;
    assert_eq!(apis["items"], json!([]), "{apis}");
    cp.stop().await
}
