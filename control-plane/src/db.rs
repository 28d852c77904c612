//! Storage: one pool over SQLite or PostgreSQL through sqlx's `Any` driver, the migrations in
//! `migrations/`, and every query the control plane runs, each named like its SQL.
//!
//! Queries use only SQL that both databases share, with `$n` placeholders (SQLite reads them
//! as numbered parameters). Timestamps are fixed-width RFC 3339 UTC text.

use anyhow::Context;
use serde::Serialize;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, Executor, FromRow};
use time::OffsetDateTime;
use time::macros::format_description;

pub type Db = AnyPool;

pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Opens the pool and applies pending migrations.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Db> {
    install_default_drivers();
    let is_sqlite = url.starts_with("sqlite:");
    let pool = AnyPoolOptions::new()
        // An in-memory SQLite database exists per connection; share one.
        .max_connections(if url.contains(":memory:") { 1 } else { max_connections })
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if is_sqlite {
                    // WAL lets readers proceed while the single writer commits.
                    conn.execute("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON;").await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await
        .with_context(|| format!("cannot open the database {}", crate::config::redact_url(url)))?;
    MIGRATOR.run(&pool).await.context("cannot apply the database migrations")?;
    Ok(pool)
}

/// The current time as stored: `2026-11-23T09:00:00.123456Z` (fixed width, so text order is
/// time order).
pub fn now() -> String {
    format_timestamp(OffsetDateTime::now_utc())
}

pub fn format_timestamp(t: OffsetDateTime) -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");
    t.to_offset(time::UtcOffset::UTC).format(&format).unwrap_or_default()
}

/// A new id: a UUIDv7, so ids sort by creation time and serve as pagination cursors.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[derive(Debug, Clone, FromRow, Serialize)]
pub struct WorkspaceRow {
    pub id: String,
    pub slug: String,
    pub name: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, FromRow)]
pub struct ApiRow {
    pub id: String,
    pub workspace_id: String,
    pub slug: String,
    pub name: String,
    pub version: i64,
    pub published_version: i64,
    pub published_at: Option<String>,
    pub publish_error: Option<String>,
    pub publish_attempts: i64,
    pub next_publish_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, FromRow)]
pub struct EndpointRow {
    pub id: String,
    pub api_id: String,
    pub method: String,
    pub path: String,
    pub definition: String,
    pub created_at: String,
    pub updated_at: String,
}

/// A page of rows after the cursor `after` (an id), at most `limit` long.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    pub after: Option<&'a str>,
    pub limit: i64,
}

pub async fn insert_workspace<'c>(
    db: impl Executor<'c, Database = Any>,
    slug: &str,
    name: &str,
) -> sqlx::Result<WorkspaceRow> {
    let now = now();
    sqlx::query_as(
        "INSERT INTO workspaces (id, slug, name, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $4) RETURNING *",
    )
    .bind(new_id())
    .bind(slug)
    .bind(name)
    .bind(now)
    .fetch_one(db)
    .await
}

pub async fn select_workspaces(db: &Db, page: Page<'_>) -> sqlx::Result<Vec<WorkspaceRow>> {
    sqlx::query_as("SELECT * FROM workspaces WHERE id > $1 ORDER BY id LIMIT $2")
        .bind(page.after.unwrap_or(""))
        .bind(page.limit)
        .fetch_all(db)
        .await
}

/// A workspace by id or by slug.
pub async fn select_workspace(db: &Db, key: &str) -> sqlx::Result<Option<WorkspaceRow>> {
    sqlx::query_as("SELECT * FROM workspaces WHERE id = $1 OR slug = $1")
        .bind(key)
        .fetch_optional(db)
        .await
}

pub async fn insert_api(
    db: &Db,
    workspace_id: &str,
    slug: &str,
    name: &str,
) -> sqlx::Result<ApiRow> {
    let now = now();
    sqlx::query_as(
        "INSERT INTO apis (id, workspace_id, slug, name, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $5) RETURNING *",
    )
    .bind(new_id())
    .bind(workspace_id)
    .bind(slug)
    .bind(name)
    .bind(now)
    .fetch_one(db)
    .await
}

pub async fn select_apis_of_workspace(
    db: &Db,
    workspace_id: &str,
    page: Page<'_>,
) -> sqlx::Result<Vec<ApiRow>> {
    sqlx::query_as("SELECT * FROM apis WHERE workspace_id = $1 AND id > $2 ORDER BY id LIMIT $3")
        .bind(workspace_id)
        .bind(page.after.unwrap_or(""))
        .bind(page.limit)
        .fetch_all(db)
        .await
}

/// An API by id or by slug.
pub async fn select_api<'c>(
    db: impl Executor<'c, Database = Any>,
    key: &str,
) -> sqlx::Result<Option<ApiRow>> {
    sqlx::query_as("SELECT * FROM apis WHERE id = $1 OR slug = $1")
        .bind(key)
        .fetch_optional(db)
        .await
}

/// Bumps the snapshot version of the API with id or slug `key` and returns its row. Run it
/// first in a write transaction: it takes the write lock (PostgreSQL: the row; SQLite: the
/// database) before anything is read, so concurrent changes to one API are serialized and
/// each validates against what the others committed.
pub async fn bump_api_version<'c>(
    db: impl Executor<'c, Database = Any>,
    key: &str,
) -> sqlx::Result<Option<ApiRow>> {
    sqlx::query_as(
        "UPDATE apis SET version = version + 1, updated_at = $2
         WHERE id = $1 OR slug = $1 RETURNING *",
    )
    .bind(key)
    .bind(now())
    .fetch_optional(db)
    .await
}

pub async fn select_endpoints_of_api<'c>(
    db: impl Executor<'c, Database = Any>,
    api_id: &str,
    page: Page<'_>,
) -> sqlx::Result<Vec<EndpointRow>> {
    sqlx::query_as("SELECT * FROM endpoints WHERE api_id = $1 AND id > $2 ORDER BY id LIMIT $3")
        .bind(api_id)
        .bind(page.after.unwrap_or(""))
        .bind(page.limit)
        .fetch_all(db)
        .await
}

pub async fn select_endpoint<'c>(
    db: impl Executor<'c, Database = Any>,
    api_id: &str,
    id: &str,
) -> sqlx::Result<Option<EndpointRow>> {
    sqlx::query_as("SELECT * FROM endpoints WHERE api_id = $1 AND id = $2")
        .bind(api_id)
        .bind(id)
        .fetch_optional(db)
        .await
}

pub async fn insert_endpoint<'c>(
    db: impl Executor<'c, Database = Any>,
    api_id: &str,
    method: &str,
    path: &str,
    definition: &str,
) -> sqlx::Result<EndpointRow> {
    sqlx::query_as(
        "INSERT INTO endpoints (id, api_id, method, path, definition, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING *",
    )
    .bind(new_id())
    .bind(api_id)
    .bind(method)
    .bind(path)
    .bind(definition)
    .bind(now())
    .fetch_one(db)
    .await
}

pub async fn update_endpoint<'c>(
    db: impl Executor<'c, Database = Any>,
    api_id: &str,
    id: &str,
    method: &str,
    path: &str,
    definition: &str,
) -> sqlx::Result<Option<EndpointRow>> {
    sqlx::query_as(
        "UPDATE endpoints SET method = $3, path = $4, definition = $5, updated_at = $6
         WHERE api_id = $1 AND id = $2 RETURNING *",
    )
    .bind(api_id)
    .bind(id)
    .bind(method)
    .bind(path)
    .bind(definition)
    .bind(now())
    .fetch_optional(db)
    .await
}

pub async fn delete_endpoint<'c>(
    db: impl Executor<'c, Database = Any>,
    api_id: &str,
    id: &str,
) -> sqlx::Result<bool> {
    let done = sqlx::query("DELETE FROM endpoints WHERE api_id = $1 AND id = $2")
        .bind(api_id)
        .bind(id)
        .execute(db)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// APIs whose latest version has not reached the edge and whose retry time has come.
pub async fn select_due_unpublished_apis(
    db: &Db,
    now: &str,
    limit: i64,
) -> sqlx::Result<Vec<ApiRow>> {
    sqlx::query_as(
        "SELECT * FROM apis
         WHERE published_version < version AND (next_publish_at IS NULL OR next_publish_at <= $1)
         ORDER BY updated_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// The earliest retry time among APIs waiting to be published, if any.
pub async fn select_next_publish_at(db: &Db) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT MIN(next_publish_at) FROM apis WHERE published_version < version")
        .fetch_one(db)
        .await
}

/// Records a successful publish. Never lowers `published_version`: a slower publisher of an
/// older version must not undo a newer one's record.
pub async fn update_api_published(db: &Db, api_id: &str, version: i64) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE apis SET published_version = $2, published_at = $3, publish_error = NULL,
                publish_attempts = 0, next_publish_at = NULL
         WHERE id = $1 AND published_version <= $2",
    )
    .bind(api_id)
    .bind(version)
    .bind(now())
    .execute(db)
    .await?;
    Ok(())
}

pub async fn update_api_publish_failed(
    db: &Db,
    api_id: &str,
    error: &str,
    next_publish_at: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE apis SET publish_error = $2, publish_attempts = publish_attempts + 1,
                next_publish_at = $3
         WHERE id = $1",
    )
    .bind(api_id)
    .bind(error)
    .bind(next_publish_at)
    .execute(db)
    .await?;
    Ok(())
}

// --- analytics ---

/// Columns of `analytics_events`, in the order [`insert_analytics_events`] binds them.
const ANALYTICS_COLUMNS: &[&str] = &[
    "id",
    "request_id",
    "occurred_at_ms",
    "received_at_ms",
    "source",
    "workspace_id",
    "api_id",
    "api_slug",
    "protocol",
    "endpoint_method",
    "endpoint_pattern",
    "method",
    "path",
    "status",
    "latency_ms",
    "request_bytes",
    "response_bytes",
    "country",
    "city",
    "colo",
    "proxied",
    "deduplicated",
    "cache",
    "validation_failed",
    "near_miss",
    "snapshot_source",
];

/// Rows per INSERT statement: 26 parameters a row stays far below SQLite's 32,766 and
/// PostgreSQL's 65,535 parameters a statement.
const ANALYTICS_ROWS_PER_STATEMENT: usize = 200;

/// Stores `events` in one transaction and returns how many were new: an event whose id is
/// already stored is skipped, so redelivered batches never count twice.
pub async fn insert_analytics_events(
    db: &Db,
    events: &[edgemock_shared::analytics::AnalyticsEvent],
    received_at_ms: i64,
) -> sqlx::Result<u64> {
    fn text<T: Serialize>(value: &T) -> String {
        serde_json::to_value(value)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
    let mut tx = db.begin().await?;
    let mut inserted = 0;
    for chunk in events.chunks(ANALYTICS_ROWS_PER_STATEMENT) {
        let width = ANALYTICS_COLUMNS.len();
        let rows: Vec<String> = (0..chunk.len())
            .map(|row| {
                let params: Vec<String> =
                    (1..=width).map(|col| format!("${}", row * width + col)).collect();
                format!("({})", params.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO analytics_events ({}) VALUES {} ON CONFLICT (id) DO NOTHING",
            ANALYTICS_COLUMNS.join(", "),
            rows.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for e in chunk {
            query = query
                .bind(e.id.clone())
                .bind(e.request_id.clone())
                .bind(e.timestamp_ms)
                .bind(received_at_ms)
                .bind(e.source.clone())
                .bind(e.workspace_id.clone())
                .bind(e.api_id.clone())
                .bind(e.api_slug.clone())
                .bind(text(&e.protocol))
                .bind(e.endpoint_method.clone())
                .bind(e.endpoint_pattern.clone())
                .bind(e.method.clone())
                .bind(e.path.clone())
                .bind(i32::from(e.status))
                .bind(i64::from(e.latency_ms))
                .bind(i64::try_from(e.request_bytes).unwrap_or(i64::MAX))
                .bind(i64::try_from(e.response_bytes).unwrap_or(i64::MAX))
                .bind(e.country.clone())
                .bind(e.city.clone())
                .bind(e.colo.clone())
                .bind(i32::from(e.proxied))
                .bind(i32::from(e.deduplicated))
                .bind(text(&e.cache))
                .bind(i32::from(e.validation_failed))
                .bind(e.near_miss.clone())
                .bind(e.snapshot_source.clone());
        }
        inserted += query.execute(&mut *tx).await?.rows_affected();
    }
    tx.commit().await?;
    Ok(inserted)
}
