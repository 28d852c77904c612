//! Storage: one pool over SQLite or PostgreSQL through sqlx's `Any` driver, the migrations in
//! `migrations/`, and every query the control plane runs, each named like its SQL.
//!
//! Queries use only SQL that both databases share, with `$n` placeholders (SQLite reads them
//! as numbered parameters). Timestamps are fixed-width RFC 3339 UTC text.

use anyhow::Context;
use serde::Serialize;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{Migrate, Migrator};
use sqlx::{Any, AnyConnection, AnyPool, Executor, FromRow};
use time::OffsetDateTime;
use time::macros::format_description;

pub type Db = AnyPool;

pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Opens the pool and applies pending migrations ([`migrate`]).
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Db> {
    let pool = open(url, max_connections).await?;
    migrate(&pool).await?;
    Ok(pool)
}

/// Opens the pool, leaving the schema as it is.
pub async fn open(url: &str, max_connections: u32) -> anyhow::Result<Db> {
    install_default_drivers();
    let is_sqlite = url.starts_with("sqlite:");
    AnyPoolOptions::new()
        // An in-memory SQLite database exists per connection; share one.
        .max_connections(if url.contains(":memory:") { 1 } else { max_connections })
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if is_sqlite {
                    // WAL lets readers proceed while the single writer commits. A page cache of
                    // 512 KiB a connection, not SQLite's 2 MiB: the analytics writer, the one
                    // steady user, touches a few dozen pages a second, and the operating
                    // system caches the file anyway; at 2 MiB each connection's cache was
                    // megabytes of a native runtime bounded at 32 MiB (ARCHITECTURE.md,
                    // "Memory").
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
                         PRAGMA cache_size = -512;",
                    )
                    .await?;
                }
                Ok(())
            })
        })
        .connect(url)
        .await
        .with_context(|| format!("cannot open the database {}", crate::config::redact_url(url)))
}

/// Applies the migrations the database lacks, under sqlx's migration lock (an advisory lock
/// on PostgreSQL), and answers the versions that were pending when it began. Migrations newer than this build, applied by a
/// later release, are left alone, so a rolled-back release still starts (see the runbook:
/// every migration stays compatible with the release before it).
pub async fn migrate(db: &Db) -> anyhow::Result<Vec<i64>> {
    let pending = pending_migrations(db).await?;
    let migrator = Migrator {
        migrations: MIGRATOR.migrations.clone(),
        ignore_missing: true,
        ..Migrator::DEFAULT
    };
    migrator.run(db).await.context("cannot apply the database migrations")?;
    Ok(pending)
}

/// The versions of this build's migrations that the database has not applied yet, oldest
/// first. An error if a migration failed half-way or was changed after it was applied.
/// Reads under the migration lock, like `migrate`: concurrent `CREATE TABLE IF NOT EXISTS`
/// of sqlx's bookkeeping table can fail on PostgreSQL.
pub async fn pending_migrations(db: &Db) -> anyhow::Result<Vec<i64>> {
    let mut conn = db.acquire().await?;
    conn.lock().await?;
    let pending = unapplied(&mut conn).await;
    let unlocked = conn.unlock().await;
    let pending = pending?;
    unlocked?;
    Ok(pending)
}

async fn unapplied(conn: &mut sqlx::AnyConnection) -> anyhow::Result<Vec<i64>> {
    conn.ensure_migrations_table().await?;
    if let Some(version) = conn.dirty_version().await? {
        anyhow::bail!("migration {version} failed part-way; repair the database by hand");
    }
    let applied = conn.list_applied_migrations().await?;
    let mut pending = Vec::new();
    for migration in MIGRATOR.iter().filter(|m| m.migration_type.is_up_migration()) {
        match applied.iter().find(|a| a.version == migration.version) {
            Some(a) if a.checksum != migration.checksum => {
                anyhow::bail!(
                    "migration {} was changed after it was applied (a database from an \
                     unreleased build? for a local SQLite file, start again: rm -rf data)",
                    migration.version
                )
            }
            Some(_) => {}
            None => pending.push(migration.version),
        }
    }
    Ok(pending)
}

/// The current time in milliseconds since the Unix epoch: the engine's clock, analytics
/// times, rate-limit windows.
pub fn now_ms() -> i64 {
    // The system clock as a duration, not `OffsetDateTime::now_utc()`, whose calendar fields
    // cost a mock request three times what the clock read does (it runs several times each).
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
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

#[derive(Debug, Clone, FromRow, Serialize, schemars::JsonSchema)]
pub struct WorkspaceRow {
    pub id: String,
    pub slug: String,
    pub name: String,
    /// `free`, `pro` or `enterprise`: picks the edge's default rate limit.
    pub plan: String,
    /// Requests a minute across the workspace's mocks; `None` takes the plan's default.
    pub rate_limit_rpm: Option<i64>,
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
    /// The API's shared response settings, JSON (`http::apis::ApiSettings`).
    pub settings: String,
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

pub async fn insert_api<'c>(
    db: impl Executor<'c, Database = Any>,
    workspace_id: &str,
    slug: &str,
    name: &str,
    settings: &str,
) -> sqlx::Result<ApiRow> {
    let now = now();
    // A slug used before continues its old version numbers (see `retired_apis`).
    sqlx::query_as(
        "INSERT INTO apis (id, workspace_id, slug, name, version, settings, created_at,
                           updated_at)
         VALUES ($1, $2, $3, $4,
                 COALESCE((SELECT last_version FROM retired_apis WHERE slug = $3), 0) + 1,
                 $6, $5, $5)
         RETURNING *",
    )
    .bind(new_id())
    .bind(workspace_id)
    .bind(slug)
    .bind(name)
    .bind(now)
    .bind(settings)
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
pub async fn update_api_published<'c>(
    db: impl Executor<'c, Database = Any>,
    api_id: &str,
    version: i64,
) -> sqlx::Result<()> {
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

pub async fn update_api_publish_failed<'c>(
    db: impl Executor<'c, Database = Any>,
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

// --- workspaces, continued ---

/// The workspaces a caller may see: those whose id or slug is in `keys`, and those where
/// `subject` is a member.
pub async fn select_workspaces_visible(
    db: &Db,
    keys: &[String],
    subject: Option<&str>,
    page: Page<'_>,
) -> sqlx::Result<Vec<WorkspaceRow>> {
    // $1 subject, $2 after, $3 limit, then the keys.
    let listed: Vec<String> = (0..keys.len()).map(|i| format!("${}", i + 4)).collect();
    let listed = if listed.is_empty() { "NULL".to_owned() } else { listed.join(", ") };
    let sql = format!(
        "SELECT * FROM workspaces
         WHERE (id IN ({listed}) OR slug IN ({listed})
                OR id IN (SELECT workspace_id FROM members WHERE subject = $1))
           AND id > $2
         ORDER BY id LIMIT $3"
    );
    let mut query = sqlx::query_as(&sql).bind(subject.unwrap_or("")).bind(page.after.unwrap_or(""));
    query = query.bind(page.limit);
    for key in keys {
        query = query.bind(key.clone());
    }
    query.fetch_all(db).await
}

pub async fn update_workspace<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    name: &str,
    plan: &str,
    rate_limit_rpm: Option<i64>,
) -> sqlx::Result<WorkspaceRow> {
    sqlx::query_as(
        "UPDATE workspaces SET name = $2, plan = $3, rate_limit_rpm = $4, updated_at = $5
         WHERE id = $1 RETURNING *",
    )
    .bind(id)
    .bind(name)
    .bind(plan)
    .bind(rate_limit_rpm)
    .bind(now())
    .fetch_one(db)
    .await
}

/// Sets a workspace's `updated_at`: the first write of a transaction that must read before
/// it changes anything else (on SQLite, it takes the write lock).
pub async fn touch_workspace<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE workspaces SET updated_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now())
        .execute(db)
        .await?;
    Ok(())
}

/// The slugs of a workspace's APIs (what the native runtime and the metrics forget when the
/// workspace goes).
pub async fn api_slugs_of_workspace<'c>(
    db: impl Executor<'c, Database = Any>,
    workspace_id: &str,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("SELECT slug FROM apis WHERE workspace_id = $1")
        .bind(workspace_id)
        .fetch_all(db)
        .await
}

/// Bumps the version of every API of a workspace (its settings are in their snapshots).
pub async fn bump_apis_of_workspace<'c>(
    db: impl Executor<'c, Database = Any>,
    workspace_id: &str,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE apis SET version = version + 1, updated_at = $2 WHERE workspace_id = $1")
        .bind(workspace_id)
        .bind(now())
        .execute(db)
        .await?;
    Ok(())
}

pub async fn update_api_settings<'c>(
    db: impl Executor<'c, Database = Any>,
    id: &str,
    name: &str,
    settings: &str,
) -> sqlx::Result<ApiRow> {
    sqlx::query_as(
        "UPDATE apis SET name = $2, settings = $3, version = version + 1, updated_at = $4
         WHERE id = $1 RETURNING *",
    )
    .bind(id)
    .bind(name)
    .bind(settings)
    .bind(now())
    .fetch_one(db)
    .await
}

/// Creates the workspace `default` if there is no workspace at all (first start).
pub async fn ensure_default_workspace(db: &Db) -> sqlx::Result<Option<WorkspaceRow>> {
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM workspaces").fetch_one(db).await?;
    if count > 0 {
        return Ok(None);
    }
    match insert_workspace(db, "default", "Default").await {
        Ok(row) => Ok(Some(row)),
        // Another replica created it first.
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(None),
        Err(e) => Err(e),
    }
}

// --- deletion ---

/// Retires `api` (its snapshot is to be removed from the edge) inside the transaction.
async fn retire_api(conn: &mut AnyConnection, api: &ApiRow) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO retired_apis (slug, last_version, retired_at) VALUES ($1, $2, $3)
         ON CONFLICT (slug) DO UPDATE SET last_version = excluded.last_version, removed = 0,
             attempts = 0, next_attempt_at = NULL, last_error = NULL,
             retired_at = excluded.retired_at",
    )
    .bind(&api.slug)
    .bind(api.version)
    .bind(now())
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes an API with its endpoints and queues its removal from the edge, inside the
/// caller's transaction (which may queue events in it too). Answers the API as it was last
/// committed, or `None` if it is gone already.
pub async fn delete_api(conn: &mut AnyConnection, api: &ApiRow) -> sqlx::Result<Option<ApiRow>> {
    // Re-read under the write lock: the version to retire is the last one committed.
    let Some(current) = bump_api_version(&mut *conn, &api.id).await? else { return Ok(None) };
    retire_api(conn, &current).await?;
    sqlx::query("DELETE FROM apis WHERE id = $1").bind(&api.id).execute(&mut *conn).await?;
    Ok(Some(current))
}

/// Deletes a workspace with everything in it and queues its APIs' removal from the edge,
/// inside the caller's transaction.
///
/// Its webhook subscriptions go with it, but not their pending deliveries: those keep the
/// subscription's URL and secret (`target_url`, `target_secret`), so events queued before
/// the deletion, `workspace.deleted` among them, still go out.
pub async fn delete_workspace(conn: &mut AnyConnection, workspace_id: &str) -> sqlx::Result<()> {
    let apis: Vec<ApiRow> =
        sqlx::query_as("UPDATE apis SET version = version + 1 WHERE workspace_id = $1 RETURNING *")
            .bind(workspace_id)
            .fetch_all(&mut *conn)
            .await?;
    for api in &apis {
        retire_api(conn, api).await?;
    }
    sqlx::query(
        "UPDATE webhook_deliveries
         SET target_url = (SELECT url FROM webhooks WHERE webhooks.id = webhook_deliveries.webhook_id),
             target_secret = (SELECT secret FROM webhooks
                              WHERE webhooks.id = webhook_deliveries.webhook_id)
         WHERE workspace_id = $1 AND state IN ('pending', 'delivering')",
    )
    .bind(workspace_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM workspaces WHERE id = $1")
        .bind(workspace_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[derive(Debug, Clone, FromRow)]
pub struct RetiredApiRow {
    pub slug: String,
    pub last_version: i64,
    pub attempts: i64,
}

pub async fn select_due_removals(
    db: &Db,
    now: &str,
    limit: i64,
) -> sqlx::Result<Vec<RetiredApiRow>> {
    sqlx::query_as(
        "SELECT slug, last_version, attempts FROM retired_apis
         WHERE removed = 0 AND (next_attempt_at IS NULL OR next_attempt_at <= $1)
         ORDER BY retired_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(db)
    .await
}

pub async fn update_removal_done(db: &Db, slug: &str, version: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE retired_apis SET removed = 1 WHERE slug = $1 AND last_version = $2")
        .bind(slug)
        .bind(version)
        .execute(db)
        .await?;
    Ok(())
}

pub async fn update_removal_failed(
    db: &Db,
    slug: &str,
    error: &str,
    next_attempt_at: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE retired_apis SET attempts = attempts + 1, last_error = $2, next_attempt_at = $3
         WHERE slug = $1",
    )
    .bind(slug)
    .bind(error)
    .bind(next_attempt_at)
    .execute(db)
    .await?;
    Ok(())
}

// --- what belongs to a workspace: members, API keys, webhooks ---

/// The tables of rows that belong to one workspace (`workspace_id`, `id`): one pair of
/// queries serves them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkspaceTable {
    Members,
    ApiKeys,
    Webhooks,
}

impl WorkspaceTable {
    fn name(self) -> &'static str {
        match self {
            Self::Members => "members",
            Self::ApiKeys => "api_keys",
            Self::Webhooks => "webhooks",
        }
    }
}

/// A page of the workspace's rows of `table`, by id.
pub async fn select_of_workspace<T>(
    db: &Db,
    table: WorkspaceTable,
    workspace_id: &str,
    page: Page<'_>,
) -> sqlx::Result<Vec<T>>
where
    T: for<'r> FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
{
    let sql = format!(
        "SELECT * FROM {} WHERE workspace_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        table.name()
    );
    sqlx::query_as(&sql)
        .bind(workspace_id)
        .bind(page.after.unwrap_or(""))
        .bind(page.limit)
        .fetch_all(db)
        .await
}

/// One of the workspace's rows of `table`; another workspace's row is `None`.
pub async fn select_one_of_workspace<T>(
    db: &Db,
    table: WorkspaceTable,
    workspace_id: &str,
    id: &str,
) -> sqlx::Result<Option<T>>
where
    T: for<'r> FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
{
    let sql = format!("SELECT * FROM {} WHERE workspace_id = $1 AND id = $2", table.name());
    sqlx::query_as(&sql).bind(workspace_id).bind(id).fetch_optional(db).await
}

// --- members ---

#[derive(Debug, Clone, FromRow, Serialize, schemars::JsonSchema)]
pub struct MemberRow {
    pub id: String,
    pub workspace_id: String,
    pub subject: String,
    pub role: String,
    pub created_at: String,
    pub updated_at: String,
}

pub async fn select_member(
    db: &Db,
    workspace_id: &str,
    subject: &str,
) -> sqlx::Result<Option<MemberRow>> {
    sqlx::query_as("SELECT * FROM members WHERE workspace_id = $1 AND subject = $2")
        .bind(workspace_id)
        .bind(subject)
        .fetch_optional(db)
        .await
}

pub async fn select_member_by_id(
    db: &Db,
    workspace_id: &str,
    key: &str,
) -> sqlx::Result<Option<MemberRow>> {
    sqlx::query_as("SELECT * FROM members WHERE workspace_id = $1 AND (id = $2 OR subject = $2)")
        .bind(workspace_id)
        .bind(key)
        .fetch_optional(db)
        .await
}

pub async fn insert_member(
    db: &Db,
    workspace_id: &str,
    subject: &str,
    role: &str,
) -> sqlx::Result<MemberRow> {
    sqlx::query_as(
        "INSERT INTO members (id, workspace_id, subject, role, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $5) RETURNING *",
    )
    .bind(new_id())
    .bind(workspace_id)
    .bind(subject)
    .bind(role)
    .bind(now())
    .fetch_one(db)
    .await
}

pub async fn update_member_role(db: &Db, id: &str, role: &str) -> sqlx::Result<MemberRow> {
    sqlx::query_as("UPDATE members SET role = $2, updated_at = $3 WHERE id = $1 RETURNING *")
        .bind(id)
        .bind(role)
        .bind(now())
        .fetch_one(db)
        .await
}

pub async fn delete_member(db: &Db, id: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM members WHERE id = $1").bind(id).execute(db).await?;
    Ok(())
}

// --- API keys ---

/// An API key as stored: never the key itself, only its hash and prefix.
#[derive(Debug, Clone, FromRow, Serialize, schemars::JsonSchema)]
pub struct ApiKeyRow {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub role: String,
    pub prefix: String,
    #[serde(skip)]
    pub key_hash: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

pub async fn insert_api_key(
    db: &Db,
    workspace_id: &str,
    name: &str,
    role: &str,
    prefix: &str,
    key_hash: &str,
) -> sqlx::Result<ApiKeyRow> {
    sqlx::query_as(
        "INSERT INTO api_keys (id, workspace_id, name, role, prefix, key_hash, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
    )
    .bind(new_id())
    .bind(workspace_id)
    .bind(name)
    .bind(role)
    .bind(prefix)
    .bind(key_hash)
    .bind(now())
    .fetch_one(db)
    .await
}

pub async fn select_active_api_key(db: &Db, key_hash: &str) -> sqlx::Result<Option<ApiKeyRow>> {
    sqlx::query_as("SELECT * FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL")
        .bind(key_hash)
        .fetch_optional(db)
        .await
}

/// Revokes a key (kept, so listings show when it stopped working).
pub async fn revoke_api_key(db: &Db, id: &str) -> sqlx::Result<ApiKeyRow> {
    sqlx::query_as(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 RETURNING *",
    )
    .bind(id)
    .bind(now())
    .fetch_one(db)
    .await
}

/// Records a key's use, at most once a minute per key (keeps reads read-only mostly).
pub async fn touch_api_key(db: &Db, id: &str) -> sqlx::Result<()> {
    let now = now();
    let minute_ago = format_timestamp(OffsetDateTime::now_utc() - time::Duration::minutes(1));
    sqlx::query(
        "UPDATE api_keys SET last_used_at = $2
         WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)",
    )
    .bind(id)
    .bind(now)
    .bind(minute_ago)
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

/// Rows per INSERT statement on PostgreSQL: at 26 to 32 parameters a row, far below its
/// 65,535 parameters a statement, and each statement is a round trip.
const ANALYTICS_ROWS_PER_STATEMENT: usize = 200;

/// Rows per INSERT statement on SQLite, which has no round trip to save: a statement is
/// compiled into a program the size of its parameter list, and SQLite allocates it with the
/// C allocator, whose arenas keep what they once held. At 200 rows, each flush of the
/// analytics tally left about a megabyte resident per connection; at 16, a full statement is
/// one small program that each connection keeps prepared.
const SQLITE_ROWS_PER_STATEMENT: usize = 16;

/// How many rows go into one INSERT, and whether a statement of `rows` rows is kept
/// prepared: only SQLite's full-size one is, as one statement per connection. Any other
/// size is another statement, and sqlx would keep up to 100 of them per connection, each a
/// program of thousands of parameters: megabytes that grew with the variety of traffic
/// (found by the benchmark's memory figures).
fn rows_per_statement(sqlite: bool) -> usize {
    if sqlite { SQLITE_ROWS_PER_STATEMENT } else { ANALYTICS_ROWS_PER_STATEMENT }
}

fn keep_prepared(sqlite: bool, rows: usize) -> bool {
    sqlite && rows == SQLITE_ROWS_PER_STATEMENT
}

/// `(…), (…)` placeholders for a multi-row INSERT of `rows` rows of `width` values.
/// SQLite gets anonymous `?`: for a numbered one, sqlx asks SQLite for each parameter's name,
/// which SQLite finds by a linear scan of the statement's names, so binding a
/// 5,200-parameter statement was quadratic (a third of the CPU time of the native runtime
/// under load, in a profile, when it still stored every request). PostgreSQL needs `$n`.
fn row_placeholders(sqlite: bool, rows: usize, width: usize) -> String {
    let mut sql = String::with_capacity(rows * width * 6);
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for col in 0..width {
            if col > 0 {
                sql.push_str(", ");
            }
            if sqlite {
                sql.push('?');
            } else {
                sql.push_str(&format!("${}", row * width + col + 1));
            }
        }
        sql.push(')');
    }
    sql
}

fn is_sqlite(conn: &AnyConnection) -> bool {
    conn.backend_name() == "SQLite"
}

/// Stores `events` in one transaction and returns how many were new: an event whose id is
/// already stored is skipped, so redelivered batches never count twice.
pub async fn insert_analytics_events(
    db: &Db,
    events: &[edgemock_shared::analytics::AnalyticsEvent],
    received_at_ms: i64,
) -> sqlx::Result<Vec<String>> {
    fn text<T: Serialize>(value: &T) -> String {
        serde_json::to_value(value)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }
    let mut tx = db.begin().await?;
    let sqlite = is_sqlite(&tx);
    let mut inserted = Vec::with_capacity(events.len());
    // By id, for the reason the rollups are written in key order: two deliveries of
    // overlapping batches lock the same ids in the same order.
    let mut sorted: Vec<_> = events.iter().collect();
    sorted.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    for chunk in sorted.chunks(rows_per_statement(sqlite)) {
        let sql = format!(
            "INSERT INTO analytics_events ({}) VALUES {} ON CONFLICT (id) DO NOTHING RETURNING id",
            ANALYTICS_COLUMNS.join(", "),
            row_placeholders(sqlite, chunk.len(), ANALYTICS_COLUMNS.len())
        );
        let mut query = sqlx::query(&sql).persistent(keep_prepared(sqlite, chunk.len()));
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
        for row in query.fetch_all(&mut *tx).await? {
            inserted.push(sqlx::Row::try_get::<String, _>(&row, 0)?);
        }
    }
    // The new events (only those) into the rollups the queries read, in the same
    // transaction: an event counts there exactly when it is stored here.
    let new: std::collections::HashSet<&str> = inserted.iter().map(String::as_str).collect();
    let mut rollups = crate::analytics::Rollups::default();
    for e in events.iter().filter(|e| new.contains(e.id.as_str())) {
        let (key, workspace, sample) = crate::analytics::edge_sample(e);
        crate::analytics::add(&mut rollups, key, &workspace, &sample);
    }
    upsert_analytics_rollups(&mut tx, &rollups).await?;
    tx.commit().await?;
    Ok(inserted)
}

/// Columns of `analytics_rollups` after the key and the workspace, in the order
/// [`upsert_analytics_rollups`] binds them; each is added on conflict, except the maxima.
const ROLLUP_SUMS: &[&str] = &[
    "requests",
    "latency_sum_ms",
    "latency_max_ms",
    "request_bytes_sum",
    "request_bytes_max",
    "response_bytes_sum",
    "response_bytes_max",
    "validation_failures",
    "proxied",
    "deduplicated",
];
const ROLLUP_KEY: &[&str] =
    &["api_id", "minute_ms", "source", "endpoint", "status", "country", "workspace_id"];

/// Adds `rollups` to the stored rows (a row not there yet is inserted).
pub async fn upsert_analytics_rollups(
    conn: &mut AnyConnection,
    rollups: &crate::analytics::Rollups,
) -> sqlx::Result<()> {
    let bounds: Vec<String> =
        crate::analytics::LATENCY_BOUNDS_MS.iter().map(|b| format!("latency_le_{b}")).collect();
    let columns: Vec<&str> = ROLLUP_KEY
        .iter()
        .copied()
        .chain(ROLLUP_SUMS.iter().copied())
        .chain(bounds.iter().map(String::as_str))
        .collect();
    let updates: Vec<String> = ROLLUP_SUMS
        .iter()
        .copied()
        .chain(bounds.iter().map(String::as_str))
        .map(|c| {
            if c.ends_with("_max") || c.ends_with("_max_ms") {
                // GREATEST is PostgreSQL's, MAX(a, b) SQLite's: CASE is both databases'.
                format!(
                    "{c} = CASE WHEN excluded.{c} > analytics_rollups.{c} \
                     THEN excluded.{c} ELSE analytics_rollups.{c} END"
                )
            } else {
                format!("{c} = analytics_rollups.{c} + excluded.{c}")
            }
        })
        .collect();
    let sqlite = is_sqlite(conn);
    // In key order: writers that add to the same rows (edge batches, the native tally, on
    // several replicas) then lock them in the same order, and PostgreSQL never has to end a
    // deadlock by failing one of them (which it did with four concurrent ingest batches).
    let mut rows: Vec<_> = rollups.iter().collect();
    rows.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for chunk in rows.chunks(rows_per_statement(sqlite)) {
        let sql = format!(
            "INSERT INTO analytics_rollups ({}) VALUES {} \
             ON CONFLICT (api_id, minute_ms, source, endpoint, status, country) DO UPDATE SET {}",
            columns.join(", "),
            row_placeholders(sqlite, chunk.len(), columns.len()),
            updates.join(", ")
        );
        let mut query = sqlx::query(&sql).persistent(keep_prepared(sqlite, chunk.len()));
        for (key, row) in chunk {
            let c = &row.counts;
            query = query
                .bind(key.api_id.to_string())
                .bind(key.minute_ms)
                .bind(key.source.to_string())
                .bind(key.endpoint.to_string())
                .bind(i32::from(key.status))
                .bind(key.country.to_string())
                .bind(row.workspace_id.to_string())
                .bind(c.requests)
                .bind(c.latency_sum_ms)
                .bind(c.latency_max_ms)
                .bind(c.request_bytes_sum)
                .bind(c.request_bytes_max)
                .bind(c.response_bytes_sum)
                .bind(c.response_bytes_max)
                .bind(c.validation_failures)
                .bind(c.proxied)
                .bind(c.deduplicated);
            for count in c.latency_le {
                query = query.bind(count);
            }
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

// --- GraphQL operations and WebSocket mocks ---

/// The two tables of an API's other protocols; both have the same columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemTable {
    GraphqlOperations,
    WebsocketEndpoints,
}

impl ItemTable {
    fn name(self) -> &'static str {
        match self {
            Self::GraphqlOperations => "graphql_operations",
            Self::WebsocketEndpoints => "websocket_endpoints",
        }
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct ItemRow {
    pub id: String,
    pub api_id: String,
    pub label: String,
    pub definition: String,
    pub created_at: String,
    pub updated_at: String,
}

pub async fn select_items<'c>(
    db: impl Executor<'c, Database = Any>,
    table: ItemTable,
    api_id: &str,
    page: Page<'_>,
) -> sqlx::Result<Vec<ItemRow>> {
    let sql = format!(
        "SELECT * FROM {} WHERE api_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        table.name()
    );
    sqlx::query_as(&sql)
        .bind(api_id)
        .bind(page.after.unwrap_or(""))
        .bind(page.limit)
        .fetch_all(db)
        .await
}

pub async fn insert_item<'c>(
    db: impl Executor<'c, Database = Any>,
    table: ItemTable,
    api_id: &str,
    label: &str,
    definition: &str,
) -> sqlx::Result<ItemRow> {
    let sql = format!(
        "INSERT INTO {} (id, api_id, label, definition, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $5) RETURNING *",
        table.name()
    );
    sqlx::query_as(&sql)
        .bind(new_id())
        .bind(api_id)
        .bind(label)
        .bind(definition)
        .bind(now())
        .fetch_one(db)
        .await
}

pub async fn update_item<'c>(
    db: impl Executor<'c, Database = Any>,
    table: ItemTable,
    api_id: &str,
    id: &str,
    label: &str,
    definition: &str,
) -> sqlx::Result<Option<ItemRow>> {
    let sql = format!(
        "UPDATE {} SET label = $3, definition = $4, updated_at = $5
         WHERE api_id = $1 AND id = $2 RETURNING *",
        table.name()
    );
    sqlx::query_as(&sql)
        .bind(api_id)
        .bind(id)
        .bind(label)
        .bind(definition)
        .bind(now())
        .fetch_optional(db)
        .await
}

pub async fn delete_item<'c>(
    db: impl Executor<'c, Database = Any>,
    table: ItemTable,
    api_id: &str,
    id: &str,
) -> sqlx::Result<bool> {
    let sql = format!("DELETE FROM {} WHERE api_id = $1 AND id = $2", table.name());
    let done = sqlx::query(&sql).bind(api_id).bind(id).execute(db).await?;
    Ok(done.rows_affected() > 0)
}

// --- webhooks ---

#[derive(Clone, FromRow)]
pub struct WebhookRow {
    pub id: String,
    pub workspace_id: String,
    pub url: String,
    pub events: String,
    pub description: Option<String>,
    pub secret: String,
    pub active: i32,
    pub created_at: String,
    pub updated_at: String,
}

pub struct NewWebhookRow<'a> {
    pub url: &'a str,
    pub events: &'a str,
    pub description: Option<&'a str>,
    pub secret: &'a str,
    pub active: bool,
}

// Hand-written so that a signing secret never reaches a log line.
impl std::fmt::Debug for WebhookRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookRow")
            .field("id", &self.id)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for NewWebhookRow<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewWebhookRow").field("url", &self.url).finish_non_exhaustive()
    }
}

pub async fn insert_webhook(
    db: &Db,
    workspace_id: &str,
    w: &NewWebhookRow<'_>,
) -> sqlx::Result<WebhookRow> {
    sqlx::query_as(
        "INSERT INTO webhooks (id, workspace_id, url, events, description, secret, active,
                               created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING *",
    )
    .bind(new_id())
    .bind(workspace_id)
    .bind(w.url)
    .bind(w.events)
    .bind(w.description)
    .bind(w.secret)
    .bind(i32::from(w.active))
    .bind(now())
    .fetch_one(db)
    .await
}

pub async fn update_webhook(db: &Db, id: &str, w: &NewWebhookRow<'_>) -> sqlx::Result<WebhookRow> {
    sqlx::query_as(
        "UPDATE webhooks SET url = $2, events = $3, description = $4, secret = $5, active = $6,
                updated_at = $7
         WHERE id = $1 RETURNING *",
    )
    .bind(id)
    .bind(w.url)
    .bind(w.events)
    .bind(w.description)
    .bind(w.secret)
    .bind(i32::from(w.active))
    .bind(now())
    .fetch_one(db)
    .await
}

/// Deletes a subscription with its deliveries (and so their attempts).
pub async fn delete_webhook(db: &Db, id: &str) -> sqlx::Result<()> {
    let mut tx = db.begin().await?;
    sqlx::query("DELETE FROM webhooks WHERE id = $1").bind(id).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// A workspace's active subscriptions (the candidates for its events).
pub async fn select_active_webhooks<'c>(
    db: impl Executor<'c, Database = Any>,
    workspace_id: &str,
) -> sqlx::Result<Vec<WebhookRow>> {
    sqlx::query_as("SELECT * FROM webhooks WHERE workspace_id = $1 AND active = 1 ORDER BY id")
        .bind(workspace_id)
        .fetch_all(db)
        .await
}

/// A subscription by id alone (the delivery loop; handlers go through the workspace).
pub async fn select_webhook(db: &Db, id: &str) -> sqlx::Result<Option<WebhookRow>> {
    sqlx::query_as("SELECT * FROM webhooks WHERE id = $1").bind(id).fetch_optional(db).await
}

// --- webhook deliveries (the outbox) and their attempts ---

#[derive(Clone, FromRow)]
pub struct DeliveryRow {
    pub id: String,
    pub webhook_id: String,
    pub workspace_id: String,
    pub event_type: String,
    pub payload: String,
    /// `pending`, `delivering`, `succeeded` or `failed`.
    pub state: String,
    pub attempts: i64,
    pub round_attempts: i64,
    pub next_attempt_at: Option<String>,
    pub claim: Option<String>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub target_url: Option<String>,
    pub target_secret: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

// Hand-written so that a kept secret never reaches a log line.
impl std::fmt::Debug for DeliveryRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryRow")
            .field("id", &self.id)
            .field("webhook_id", &self.webhook_id)
            .field("event_type", &self.event_type)
            .field("state", &self.state)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub struct NewDelivery<'a> {
    pub webhook_id: &'a str,
    pub workspace_id: &'a str,
    pub event_type: &'a str,
    pub payload: &'a str,
}

/// Queues a delivery, due at once.
pub async fn insert_delivery<'c>(
    db: impl Executor<'c, Database = Any>,
    d: &NewDelivery<'_>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, webhook_id, workspace_id, event_type, payload, state,
                                         next_attempt_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6, $6)",
    )
    .bind(new_id())
    .bind(d.webhook_id)
    .bind(d.workspace_id)
    .bind(d.event_type)
    .bind(d.payload)
    .bind(now())
    .execute(db)
    .await?;
    Ok(())
}

/// Claims up to `limit` due deliveries for one attempt each: they become `delivering` under
/// `claim` until `lease_until` (then another claimant may take them: this one died), and
/// their attempt counters count the attempt about to be made.
///
/// Safe with several replicas: the UPDATE re-checks state and time on every row it changes
/// (PostgreSQL re-evaluates them after waiting for a row lock; SQLite has one writer), so a
/// row is claimed once.
pub async fn claim_due_deliveries(
    db: &Db,
    now: &str,
    lease_until: &str,
    claim: &str,
    limit: i64,
) -> sqlx::Result<Vec<DeliveryRow>> {
    sqlx::query_as(
        "UPDATE webhook_deliveries
         SET state = 'delivering', claim = $1, next_attempt_at = $2, attempts = attempts + 1,
             round_attempts = round_attempts + 1, updated_at = $3
         WHERE id IN (SELECT id FROM webhook_deliveries
                      WHERE state IN ('pending', 'delivering') AND next_attempt_at <= $3
                      ORDER BY next_attempt_at LIMIT $4)
           AND state IN ('pending', 'delivering') AND next_attempt_at <= $3
         RETURNING *",
    )
    .bind(claim)
    .bind(lease_until)
    .bind(now)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// When the next delivery falls due (or the next claim expires), if any is waiting.
pub async fn select_next_delivery_at(db: &Db) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(
        "SELECT MIN(next_attempt_at) FROM webhook_deliveries
         WHERE state IN ('pending', 'delivering')",
    )
    .fetch_one(db)
    .await
}

/// One attempt, as recorded.
#[derive(Debug, Clone, FromRow)]
pub struct AttemptRow {
    pub delivery_id: String,
    pub number: i64,
    pub attempted_at: String,
    pub status: Option<i32>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

/// What becomes of a delivery after an attempt.
#[derive(Debug)]
pub struct DeliveryOutcome<'a> {
    /// `pending` (retry at `next_attempt_at`), `succeeded` or `failed`.
    pub state: &'a str,
    pub next_attempt_at: Option<&'a str>,
}

/// Records an attempt, and the delivery's new state if the claim is still `claim` (a manual
/// redelivery meanwhile took the delivery over: the attempt is kept, the state is the
/// redelivery's). Answers whether the state was written.
pub async fn record_attempt(
    db: &Db,
    claim: &str,
    attempt: &AttemptRow,
    outcome: &DeliveryOutcome<'_>,
) -> sqlx::Result<bool> {
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO webhook_attempts (delivery_id, number, attempted_at, status, latency_ms,
                                       error)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (delivery_id, number) DO NOTHING",
    )
    .bind(&attempt.delivery_id)
    .bind(attempt.number)
    .bind(&attempt.attempted_at)
    .bind(attempt.status)
    .bind(attempt.latency_ms)
    .bind(&attempt.error)
    .execute(&mut *tx)
    .await?;
    let done = sqlx::query(
        "UPDATE webhook_deliveries
         SET state = $3, next_attempt_at = $4, claim = NULL, last_status = $5, last_error = $6,
             updated_at = $7
         WHERE id = $1 AND claim = $2",
    )
    .bind(&attempt.delivery_id)
    .bind(claim)
    .bind(outcome.state)
    .bind(outcome.next_attempt_at)
    .bind(attempt.status)
    .bind(&attempt.error)
    .bind(now())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected() > 0)
}

/// A page of a subscription's deliveries, by id (creation order).
pub async fn select_deliveries_of_webhook(
    db: &Db,
    webhook_id: &str,
    page: Page<'_>,
) -> sqlx::Result<Vec<DeliveryRow>> {
    sqlx::query_as(
        "SELECT * FROM webhook_deliveries WHERE webhook_id = $1 AND id > $2 ORDER BY id LIMIT $3",
    )
    .bind(webhook_id)
    .bind(page.after.unwrap_or(""))
    .bind(page.limit)
    .fetch_all(db)
    .await
}

pub async fn select_delivery(
    db: &Db,
    webhook_id: &str,
    id: &str,
) -> sqlx::Result<Option<DeliveryRow>> {
    sqlx::query_as("SELECT * FROM webhook_deliveries WHERE webhook_id = $1 AND id = $2")
        .bind(webhook_id)
        .bind(id)
        .fetch_optional(db)
        .await
}

/// The attempts of the deliveries `ids`, in order of delivery and number.
pub async fn select_attempts(db: &Db, ids: &[&str]) -> sqlx::Result<Vec<AttemptRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let listed: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT * FROM webhook_attempts WHERE delivery_id IN ({}) ORDER BY delivery_id, number",
        listed.join(", ")
    );
    let mut query = sqlx::query_as(&sql);
    for id in ids {
        query = query.bind(*id);
    }
    query.fetch_all(db).await
}

/// Starts a new round for a delivery, whatever its state: due at once, with the whole retry
/// schedule again. An attempt in flight finishes and is recorded, but no longer decides the
/// state (its claim is void).
pub async fn redeliver(db: &Db, webhook_id: &str, id: &str) -> sqlx::Result<Option<DeliveryRow>> {
    let now = now();
    sqlx::query_as(
        "UPDATE webhook_deliveries
         SET state = 'pending', round_attempts = 0, next_attempt_at = $3, claim = NULL,
             updated_at = $3
         WHERE webhook_id = $1 AND id = $2 RETURNING *",
    )
    .bind(webhook_id)
    .bind(id)
    .bind(now)
    .fetch_optional(db)
    .await
}

/// Takes the minute `minute` for events `event_type` of API `api_id`: true once per minute,
/// whichever replica asks first.
pub async fn claim_event_window<'c>(
    db: impl Executor<'c, Database = Any>,
    api_id: &str,
    event_type: &str,
    minute: i64,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO webhook_event_windows (api_id, event_type, minute) VALUES ($1, $2, $3)
         ON CONFLICT (api_id, event_type) DO UPDATE SET minute = excluded.minute
         WHERE webhook_event_windows.minute < excluded.minute",
    )
    .bind(api_id)
    .bind(event_type)
    .bind(minute)
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions() -> Vec<i64> {
        MIGRATOR.iter().map(|m| m.version).collect()
    }

    #[tokio::test]
    async fn migrate_applies_what_is_pending_once() {
        let db = open("sqlite::memory:", 1).await.unwrap();
        assert_eq!(pending_migrations(&db).await.unwrap(), versions());
        assert_eq!(migrate(&db).await.unwrap(), versions());
        assert!(pending_migrations(&db).await.unwrap().is_empty());
        assert!(migrate(&db).await.unwrap().is_empty(), "a second run applies nothing");
    }

    #[tokio::test]
    async fn a_newer_release_s_migrations_are_left_alone() {
        // A rolled-back release meets the migrations of the release it replaced.
        let db = connect("sqlite::memory:", 1).await.unwrap();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99991231000000, 'from the future', TRUE, x'00', 0)",
        )
        .execute(&db)
        .await
        .unwrap();
        assert!(pending_migrations(&db).await.unwrap().is_empty());
        assert!(migrate(&db).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_changed_or_failed_migration_is_an_error() {
        let db = connect("sqlite::memory:", 1).await.unwrap();
        let first = versions()[0];
        sqlx::query("UPDATE _sqlx_migrations SET checksum = x'00' WHERE version = $1")
            .bind(first)
            .execute(&db)
            .await
            .unwrap();
        let err = pending_migrations(&db).await.unwrap_err().to_string();
        assert!(err.contains("changed after it was applied"), "{err}");
        sqlx::query("UPDATE _sqlx_migrations SET success = FALSE WHERE version = $1")
            .bind(first)
            .execute(&db)
            .await
            .unwrap();
        let err = pending_migrations(&db).await.unwrap_err().to_string();
        assert!(err.contains("failed part-way"), "{err}");
    }
}
