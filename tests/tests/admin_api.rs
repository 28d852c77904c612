//! The admin API over HTTP, against real SQLite and a real PostgreSQL server.
//! The same scenario runs on both databases.

// A failed unwrap in a test is a failed test, with the line that failed.
#![allow(clippy::unwrap_used)]

use edgemock_e2e::{ControlPlane, Postgres};
use serde_json::{Value, json};
use tempfile::TempDir;

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

fn field(body: &Value) -> &str {
    body["error"]["field"].as_str().unwrap_or("<no field>")
}

async fn admin_api_scenario(cp: &ControlPlane) -> anyhow::Result<()> {
    // Workspaces: create, conflicts, validation.
    let (status, ws) =
        cp.post("/api/v1/workspaces", &json!({"slug": "acme", "name": "Acme"})).await?;
    assert_eq!(status, 201, "{ws}");
    assert_eq!(ws["slug"], "acme");
    let (status, body) = cp.post("/api/v1/workspaces", &json!({"slug": "acme"})).await?;
    assert_eq!((status, code(&body), field(&body)), (409, "conflict", "slug"), "{body}");
    for (bad, want_field) in [
        (json!({"slug": "Not A Slug"}), "slug"),
        (json!({"slug": ""}), "slug"),
        (json!({"slug": "ok", "name": "   "}), "name"),
        (json!({"slug": "ok", "nmae": "typo"}), "nmae"),
        (json!({"slug": 7}), "slug"),
        (json!({}), "body"),
    ] {
        let (status, body) = cp.post("/api/v1/workspaces", &bad).await?;
        assert_eq!((status, field(&body)), (422, want_field), "{bad} -> {body}");
    }
    let (status, body) = cp.post_raw("/api/v1/workspaces", "{\"slug\": ").await?;
    assert_eq!((status, code(&body)), (400, "invalid_json"), "{body}");
    let (status, body) = cp.post_raw("/api/v1/workspaces", vec![b'x'; 5 * 1024 * 1024]).await?;
    assert_eq!((status, code(&body)), (413, "body_too_large"), "{body}");

    // Addressed by id or slug.
    let (status, by_id) =
        cp.get(&format!("/api/v1/workspaces/{}", ws["id"].as_str().unwrap())).await?;
    assert_eq!((status, &by_id["slug"]), (200, &json!("acme")));
    let (status, body) = cp.get("/api/v1/workspaces/nobody").await?;
    assert_eq!((status, code(&body)), (404, "not_found"));

    // Pagination: a cursor walks every workspace exactly once.
    for i in 0..4 {
        let (status, _) =
            cp.post("/api/v1/workspaces", &json!({"slug": format!("ws-{i}")})).await?;
        assert_eq!(status, 201);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("?limit=2&after={c}"),
            None => "?limit=2".to_owned(),
        };
        let (status, page) = cp.get(&format!("/api/v1/workspaces{query}")).await?;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|w| w["slug"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["default", "acme", "ws-0", "ws-1", "ws-2", "ws-3"]);
    let (status, body) = cp.get("/api/v1/workspaces?limit=100000").await?;
    assert_eq!((status, field(&body)), (422, "limit"));
    let (status, body) = cp.get("/api/v1/workspaces?limit=abc").await?;
    assert_eq!((status, code(&body)), (400, "invalid_query"));

    // APIs: slugs are global across workspaces.
    let (status, api) =
        cp.post("/api/v1/workspaces/acme/apis", &json!({"slug": "pets", "name": "Pets"})).await?;
    assert_eq!(status, 201, "{api}");
    assert_eq!(api["version"], 1);
    assert_eq!(api["publish"]["state"], "disabled", "no EDGE_URL in this test");
    let (status, body) =
        cp.post("/api/v1/workspaces/acme/apis", &json!({"slug": "typo", "cros": {}})).await?;
    assert_eq!((status, field(&body)), (422, "cros"), "an unknown field is refused: {body}");
    let (status, body) = cp.post("/api/v1/workspaces/ws-0/apis", &json!({"slug": "pets"})).await?;
    assert_eq!((status, field(&body)), (409, "slug"), "{body}");
    let (status, body) =
        cp.post("/api/v1/workspaces/nobody/apis", &json!({"slug": "other"})).await?;
    assert_eq!(status, 404, "{body}");
    let (status, list) = cp.get("/api/v1/workspaces/acme/apis").await?;
    assert_eq!((status, list["items"].as_array().unwrap().len()), (200, 1));

    // Endpoints: create, validate, conflict, replace, delete.
    let endpoint = json!({
        "method": "get", "path": "/pets/:id",
        "response": {"status": 200, "headers": {"x-kind": "pet"}, "body": {"id": 1, "name": "Rex"}}
    });
    let (status, created) = cp.post("/api/v1/apis/pets/endpoints", &endpoint).await?;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["method"], "GET");
    assert_eq!(created["response"]["body"]["name"], "Rex");
    let endpoint_id = created["id"].as_str().unwrap().to_owned();

    for (bad, want_field) in [
        (json!({"method": "GET", "path": "/pets/{name}"}), "path"),
        (json!({"method": "GET", "path": "no-slash"}), "path"),
        (json!({"method": "GE T", "path": "/x"}), "method"),
        (json!({"method": "GET", "path": "/x", "response": {"status": 42}}), "response.status"),
        (
            json!({"method": "GET", "path": "/x", "response": {"headers": {"bad header": "v"}}}),
            "response.headers.bad header",
        ),
        (json!({"method": "GET", "path": "/x", "response": {"stauts": 200}}), "response.stauts"),
        (json!({"path": "/x"}), "body"),
        // What only compiling finds: regexes, schemas, templates, rule targets, proxy targets.
        (
            json!({"method": "GET", "path": "/x", "rules": [{"when": {"query": "q", "regex": "(("}, "response": {}}]}),
            "rules[0].when.regex",
        ),
        (
            json!({"method": "GET", "path": "/x", "when": {"header": "h", "exists": true, "regex": "x"}}),
            "when",
        ),
        (
            json!({"method": "GET", "path": "/x", "when": {"header": "h", "exits": true}}),
            "when.exits",
        ),
        (
            json!({"method": "POST", "path": "/x", "validation": {"schema": {"type": "nope"}}}),
            "validation.schema",
        ),
        (
            json!({"method": "GET", "path": "/x", "response": {"body": "{{ nosuch() }}"}}),
            "response.body",
        ),
        (
            json!({"method": "GET", "path": "/x", "response": {"body": "{{ 1 | nosuch }}"}}),
            "response.body",
        ),
        (
            json!({"method": "GET", "path": "/x", "rules": [{"when": {"query": "q", "exists": true}, "response": "ghost"}]}),
            "rules[0].response",
        ),
        (
            json!({"method": "ANY", "path": "/x/*", "proxy": {"target": "file:///etc/passwd"}}),
            "proxy.target",
        ),
    ] {
        let (status, body) = cp.post("/api/v1/apis/pets/endpoints", &bad).await?;
        assert_eq!((status, field(&body)), (422, want_field), "{bad} -> {body}");
    }
    // Refused writes leave nothing behind: one endpoint, and the version of one change.
    let (_, list) = cp.get("/api/v1/apis/pets/endpoints").await?;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    let (_, api) = cp.get("/api/v1/apis/pets").await?;
    assert_eq!(api["version"], 2, "{api}");

    let replaced = json!({"method": "GET", "path": "/pets/{id}", "response": {"status": 203, "body": "changed"}});
    let (status, body) =
        cp.put(&format!("/api/v1/apis/pets/endpoints/{endpoint_id}"), &replaced).await?;
    assert_eq!((status, &body["response"]["body"]), (200, &json!("changed")), "{body}");
    let (status, _) = cp.put("/api/v1/apis/pets/endpoints/missing", &replaced).await?;
    assert_eq!(status, 404);
    let (status, body) = cp.get(&format!("/api/v1/apis/pets/endpoints/{endpoint_id}")).await?;
    assert_eq!((status, &body["response"]["status"]), (200, &json!(203)));

    // The snapshot is what the edge will get.
    let (status, snapshot) = cp.get("/api/v1/apis/pets/snapshot").await?;
    assert_eq!(status, 200);
    assert_eq!(snapshot["format_version"], 1);
    assert_eq!(snapshot["version"], 3);
    assert_eq!(snapshot["workspace"]["slug"], "acme");
    assert_eq!(snapshot["endpoints"][0]["response"]["body"], "changed");

    let (status, _) = cp.delete(&format!("/api/v1/apis/pets/endpoints/{endpoint_id}")).await?;
    assert_eq!(status, 204);
    let (status, _) = cp.delete(&format!("/api/v1/apis/pets/endpoints/{endpoint_id}")).await?;
    assert_eq!(status, 404);
    let (_, api) = cp.get("/api/v1/apis/pets").await?;
    assert_eq!(api["version"], 4, "a refused delete does not bump the version: {api}");

    // Concurrent writers to one API are serialized: every write lands, each bumps once.
    let writes = (0..16).map(|i| {
        let body = json!({"method": "GET", "path": format!("/c/{i}"), "response": {"body": i.to_string()}});
        async move { cp.post("/api/v1/apis/pets/endpoints", &body).await }
    });
    for result in futures::future::join_all(writes).await {
        let (status, body) = result?;
        assert_eq!(status, 201, "{body}");
    }
    let (_, api) = cp.get("/api/v1/apis/pets").await?;
    assert_eq!(api["version"], 4 + 16, "{api}");

    // GraphQL operations and WebSocket mocks: validated whole, listed, in the snapshot.
    let (status, op) = cp
        .post(
            "/api/v1/apis/pets/graphql-operations",
            &json!({"name": "GetPet", "response": {"body": {"data": {"pet": {"id": "{{ request.json.variables.id }}"}}}}}),
        )
        .await?;
    assert_eq!((status, op["name"].as_str()), (201, Some("GetPet")), "{op}");
    let (status, body) = cp
        .post(
            "/api/v1/apis/pets/graphql-operations",
            &json!({"name": "Bad", "response": {"body": "{{ nope( }}"}}),
        )
        .await?;
    assert_eq!((status, field(&body)), (422, "response.body"), "{body}");
    let (status, ws) = cp
        .post(
            "/api/v1/apis/pets/websockets",
            &json!({"path": "/feed", "on_connect": [{"data": "hello"}], "intervals": [{"every_ms": 1000, "message": {"data": "tick"}}]}),
        )
        .await?;
    assert_eq!(status, 201, "{ws}");
    let (status, body) = cp
        .post(
            "/api/v1/apis/pets/websockets",
            &json!({"path": "/feed2", "intervals": [{"every_ms": 0, "message": {"data": "x"}}]}),
        )
        .await?;
    assert_eq!((status, field(&body)), (422, "intervals[0].every_ms"), "{body}");
    let (_, snapshot) = cp.get("/api/v1/apis/pets/snapshot").await?;
    assert_eq!(snapshot["graphql"][0]["name"], "GetPet");
    assert_eq!(snapshot["websockets"][0]["path"], "/feed");
    let (status, list) = cp.get("/api/v1/apis/pets/websockets").await?;
    assert_eq!((status, list["items"].as_array().unwrap().len()), (200, 1));
    let ws_id = ws["id"].as_str().unwrap();
    let (status, _) = cp.delete(&format!("/api/v1/apis/pets/websockets/{ws_id}")).await?;
    assert_eq!(status, 204);
    let (status, _) = cp.get(&format!("/api/v1/apis/pets/websockets/{ws_id}")).await?;
    assert_eq!(status, 404);
    let op_id = op["id"].as_str().unwrap();
    let (status, _) = cp.delete(&format!("/api/v1/apis/pets/graphql-operations/{op_id}")).await?;
    assert_eq!(status, 204);

    // Unknown routes and methods answer JSON.
    let (status, body) = cp.get("/api/v1/nothing-here").await?;
    assert_eq!((status, code(&body)), (404, "not_found"));
    let (status, body) = cp.delete("/api/v1/workspaces").await?;
    assert_eq!((status, code(&body)), (405, "method_not_allowed"));
    let (status, body) = cp.get("/health/ready").await?;
    assert_eq!((status, &body["database"]), (200, &json!("ok")));
    Ok(())
}

fn event(id: &str, status: u16) -> Value {
    json!({
        "id": id, "request_id": format!("req-{id}"), "timestamp_ms": 1_795_000_000_000_i64,
        "source": "edge", "workspace_id": "w1", "api_id": "a1", "api_slug": "pets",
        "protocol": "rest", "endpoint_method": "GET", "endpoint_pattern": "/pets/:id",
        "method": "GET", "path": "/pets/1", "status": status, "latency_ms": 4,
        "request_bytes": 0, "response_bytes": 120, "country": "DE", "city": "Berlin",
        "colo": "FRA", "proxied": false, "deduplicated": false, "cache": "bypass",
        "validation_failed": false, "near_miss": null, "snapshot_source": "kv"
    })
}

/// The edge's analytics ingest route: authenticated, strict, and idempotent by event id.
async fn ingest_scenario(url: &str) -> anyhow::Result<()> {
    let cp = ControlPlane::start_with(url, None, Some("ingest-token".into())).await?;
    let ingest = format!("{}/internal/v1/analytics", cp.url);
    let post = |body: Value, token: &'static str| {
        cp.client.post(&ingest).bearer_auth(token).json(&body).send()
    };
    let batch = json!({"events": [event("e1", 200), event("e2", 404), event("e3", 201)]});

    let r = post(batch.clone(), "wrong").await?;
    assert_eq!(r.status().as_u16(), 401);
    let r = post(batch.clone(), "ingest-token").await?;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await?, json!({"received": 3, "stored": 3, "duplicates": 0}));
    // A redelivered batch, partly overlapping: only the new event counts.
    let again = json!({"events": [event("e2", 404), event("e3", 201), event("e4", 500)]});
    let r = post(again, "ingest-token").await?;
    assert_eq!(r.json::<Value>().await?, json!({"received": 3, "stored": 1, "duplicates": 2}));

    // Bad input is refused whole, naming the event and field; nothing of it is stored.
    let mut bad = event("e5", 200);
    bad["status"] = json!(42);
    let r = post(json!({"events": [event("e6", 200), bad]}), "ingest-token").await?;
    assert_eq!(r.status().as_u16(), 422);
    let body = r.json::<Value>().await?;
    assert_eq!((code(&body), field(&body)), ("invalid_field", "events[1].status"), "{body}");
    let mut unknown = event("e7", 200);
    unknown["surprise"] = json!(1);
    let r = post(json!({"events": [unknown]}), "ingest-token").await?;
    assert_eq!(r.status().as_u16(), 422);
    let r = cp
        .client
        .post(&ingest)
        .bearer_auth("ingest-token")
        .header("content-type", "application/json")
        .body("{\"events\": [")
        .send()
        .await?;
    assert_eq!(r.status().as_u16(), 400);

    let db = edgemock_control_plane::db::connect(url, 1).await?;
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM analytics_events ORDER BY id").fetch_all(&db).await?;
    assert_eq!(ids, ["e1", "e2", "e3", "e4"]);
    let (status, bytes, proxied): (i32, i64, i32) = sqlx::query_as(
        "SELECT status, response_bytes, proxied FROM analytics_events WHERE id = 'e2'",
    )
    .fetch_one(&db)
    .await?;
    assert_eq!((status, bytes, proxied), (404, 120, 0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_on_sqlite() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let url = ControlPlane::sqlite_url(&dir);
    let cp = ControlPlane::start(&url, None).await?;
    admin_api_scenario(&cp).await?;
    drop(cp);

    // Everything survives a restart on the same file; migrations are not re-applied.
    let cp = ControlPlane::start(&url, None).await?;
    let (status, list) = cp.get("/api/v1/workspaces?limit=10").await?;
    assert_eq!((status, list["items"].as_array().unwrap().len()), (200, 6));
    let (_, api) = cp.get("/api/v1/apis/pets").await?;
    assert_eq!(api["version"], 24, "20 endpoint writes, 4 GraphQL and WebSocket writes");
    drop(cp);
    ingest_scenario(&url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_on_postgres() -> anyhow::Result<()> {
    let pg = Postgres::start()?;
    let url = pg.fresh_database()?;
    let cp = ControlPlane::start(&url, None).await?;
    admin_api_scenario(&cp).await?;
    drop(cp);

    let cp = ControlPlane::start(&url, None).await?;
    let (_, api) = cp.get("/api/v1/apis/pets").await?;
    assert_eq!(api["version"], 24, "20 endpoint writes, 4 GraphQL and WebSocket writes");
    drop(cp);
    migrations_race_safely(&pg.fresh_database()?).await?;
    ingest_scenario(&url).await
}

/// The migration Job and replicas checking for pending migrations, all at once on a fresh
/// PostgreSQL database (k8s/base/migrate-job.yaml): the migration lock serializes them, and
/// every migration is applied exactly once.
async fn migrations_race_safely(url: &str) -> anyhow::Result<()> {
    use edgemock_control_plane::db;
    let mut racers = Vec::new();
    for _ in 0..4 {
        let url = url.to_owned();
        racers.push(tokio::spawn(async move {
            let db = db::open(&url, 2).await?;
            db::pending_migrations(&db).await?;
            let applied = db::migrate(&db).await?;
            anyhow::Ok(applied)
        }));
    }
    for racer in racers {
        racer.await??;
    }
    let db = db::open(url, 1).await?;
    assert!(db::pending_migrations(&db).await?.is_empty());
    let rows: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations").fetch_one(&db).await?;
    assert_eq!(rows, i64::try_from(db::MIGRATOR.iter().count())?);
    Ok(())
}
