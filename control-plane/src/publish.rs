//! Publishing: every committed change to an API bumps its version; this module carries the
//! new snapshot to the edge's KV, off the request path, retrying until it lands.
//!
//! The database is the outbox: an API is due while `published_version < version`, so a
//! restart or a crash loses nothing, and several replicas may publish side by side (the edge
//! keeps the highest version it is given). Admin writes only wake the publisher; they never
//! wait for the edge.
//!
//! How snapshots reach KV sits behind [`SnapshotSink`]. The one implementation,
//! [`EdgeSink`], calls the Worker's authenticated internal route, which validates the
//! snapshot with the same engine that will serve it and writes KV through its binding. That
//! works the same against `wrangler dev` and Cloudflare (see ARCHITECTURE.md).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use edgemock_shared::{ApiRef, SNAPSHOT_FORMAT_VERSION, Snapshot, SnapshotEndpoint, WorkspaceRef};
use tokio::sync::Notify;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::db::{self, Db, Page};
use crate::telemetry;

/// Where published snapshots go.
#[async_trait]
pub trait SnapshotSink: Send + Sync + std::fmt::Debug {
    /// Stores `snapshot` (serialized as `body`) as the current one for its API.
    async fn put(&self, snapshot: &Snapshot, body: Vec<u8>) -> anyhow::Result<()>;

    /// Removes the snapshot of the deleted API `slug`, unless the edge holds a version newer
    /// than `version` (the slug was used again meanwhile).
    async fn remove(&self, slug: &str, version: u64) -> anyhow::Result<()>;
}

/// Publishes through the edge Worker's `PUT /__edgemock/v1/snapshots/{slug}`.
#[derive(Debug)]
pub struct EdgeSink {
    client: reqwest::Client,
    base_url: String,
    token: String,
}

impl EdgeSink {
    pub fn new(base_url: String, token: String, timeout: Duration) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self { client, base_url, token })
    }
}

#[async_trait]
impl SnapshotSink for EdgeSink {
    async fn put(&self, snapshot: &Snapshot, body: Vec<u8>) -> anyhow::Result<()> {
        let url = format!("{}/__edgemock/v1/snapshots/{}", self.base_url, snapshot.api.slug);
        let span = telemetry::client_span("PUT /__edgemock/v1/snapshots/{slug}", "PUT", &url);
        if !span.is_none() {
            span.set_attribute("edgemock.api", snapshot.api.slug.clone());
            span.set_attribute("edgemock.version", i64::try_from(snapshot.version).unwrap_or(-1));
        }
        let response = self
            .client
            .put(&url)
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .instrument(span.clone())
            .await;
        let response = ended(&span, response).with_context(|| format!("PUT {url}"))?;
        let status = response.status();
        // 409: the edge already holds a newer version; this one has nothing left to do.
        if status.is_success() || status == reqwest::StatusCode::CONFLICT {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err(anyhow!("PUT {url} answered {status}: {}", text.chars().take(500).collect::<String>()))
    }

    async fn remove(&self, slug: &str, version: u64) -> anyhow::Result<()> {
        let url = format!("{}/__edgemock/v1/snapshots/{slug}?version={version}", self.base_url);
        let span = telemetry::client_span("DELETE /__edgemock/v1/snapshots/{slug}", "DELETE", &url);
        if !span.is_none() {
            span.set_attribute("edgemock.api", slug.to_owned());
        }
        let response =
            self.client.delete(&url).bearer_auth(&self.token).send().instrument(span.clone()).await;
        let response = ended(&span, response).with_context(|| format!("DELETE {url}"))?;
        let status = response.status();
        // 409: a newer API with this slug is already there, which must stay.
        if status.is_success() || status == reqwest::StatusCode::CONFLICT {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err(anyhow!(
            "DELETE {url} answered {status}: {}",
            text.chars().take(500).collect::<String>()
        ))
    }
}

/// Records a publish request's outcome on its client span (a no-op with traces off): a 2xx
/// or a 409 (the edge has newer) is done, anything else failed.
fn ended(
    span: &tracing::Span,
    response: reqwest::Result<reqwest::Response>,
) -> reqwest::Result<reqwest::Response> {
    match &response {
        Ok(r) => {
            let status = r.status();
            let done = status.is_success() || status == reqwest::StatusCode::CONFLICT;
            let failure = (!done).then(|| format!("answered {status}"));
            telemetry::client_span_end(span, Some(status.as_u16()), failure.as_deref());
        }
        Err(e) => telemetry::client_span_end(span, None, Some(&e.to_string())),
    }
    response
}

/// Builds an API's snapshot from the database.
///
/// Invariant: the API row (and so the version label) is read *before* the endpoints. A write
/// that commits in between makes the content newer than its label, never older, so the next
/// round publishes the higher version and no change is ever marked published unsent.
pub async fn build_snapshot(db: &Db, api_id: &str) -> anyhow::Result<Option<Snapshot>> {
    let Some(api) = db::select_api(db, api_id).await? else { return Ok(None) };
    let workspace = db::select_workspace(db, &api.workspace_id)
        .await?
        .ok_or_else(|| anyhow!("workspace {} of API {} is missing", api.workspace_id, api.id))?;
    let rows =
        db::select_endpoints_of_api(db, &api.id, Page { after: None, limit: i64::MAX }).await?;
    let mut endpoints = Vec::with_capacity(rows.len());
    for row in rows {
        let definition = serde_json::from_str(&row.definition)
            .with_context(|| format!("endpoint {} has an unreadable definition", row.id))?;
        endpoints.push(SnapshotEndpoint { id: row.id, definition });
    }
    Ok(Some(Snapshot {
        format_version: SNAPSHOT_FORMAT_VERSION,
        version: u64::try_from(api.version).unwrap_or_default(),
        workspace: WorkspaceRef {
            id: workspace.id,
            slug: workspace.slug,
            plan: serde_json::from_value(serde_json::Value::String(workspace.plan))
                .unwrap_or_default(),
            rate_limit_rpm: workspace.rate_limit_rpm.and_then(|r| u32::try_from(r).ok()),
        },
        api: api_ref(&api)?,
        endpoints,
        graphql: items(db, db::ItemTable::GraphqlOperations, &api.id).await?,
        websockets: items(db, db::ItemTable::WebsocketEndpoints, &api.id).await?,
    }))
}

/// An API's GraphQL operations or WebSocket mocks, in creation order.
async fn items<T: serde::de::DeserializeOwned>(
    db: &Db,
    table: db::ItemTable,
    api_id: &str,
) -> anyhow::Result<Vec<T>> {
    db::select_items(db, table, api_id, Page { after: None, limit: i64::MAX })
        .await?
        .into_iter()
        .map(|row| {
            serde_json::from_str(&row.definition)
                .with_context(|| format!("item {} has an unreadable definition", row.id))
        })
        .collect()
}

/// The API as its snapshot names it: identity plus its stored settings.
pub fn api_ref(api: &db::ApiRow) -> anyhow::Result<ApiRef> {
    let settings: crate::http::ApiSettings = serde_json::from_str(&api.settings)
        .with_context(|| format!("API {} has unreadable settings", api.id))?;
    Ok(ApiRef {
        id: api.id.clone(),
        slug: api.slug.clone(),
        name: api.name.clone(),
        base_headers: settings.base_headers,
        default_delay: settings.default_delay,
        cors: settings.cors,
    })
}

/// The delay before retry number `attempt` (1-based): 1 s, 2 s, 4 s … capped at 256 s.
pub fn retry_delay(attempt: u32) -> Duration {
    let secs = 1u64 << attempt.saturating_sub(1).min(8);
    Duration::from_secs(secs)
}

/// The publisher: a handle that admin writes use to wake the background loop.
#[derive(Debug, Clone)]
pub struct Publisher {
    db: Db,
    sink: Option<Arc<dyn SnapshotSink>>,
    wake: Arc<Notify>,
    /// `api.published` and `api.publish_failed` go out through it.
    outbox: crate::webhooks::Outbox,
    /// Bumped by every [`Publisher::wake`], i.e. every committed change: the native
    /// runtime's cache compares against it.
    changes: Arc<std::sync::atomic::AtomicU64>,
    /// `edgemock_publish_failures_total`, when metrics are on.
    failures: Option<prometheus::IntCounter>,
    /// With `REDIS_URL`: rung on every change, so the other replicas hear of it
    /// ([`crate::redis::Redis::announcer`]).
    announce: Option<Arc<Notify>>,
}

impl Publisher {
    /// `sink: None` disables publishing (no `EDGE_URL`); versions still advance, so turning
    /// publishing on later sends everything that is due.
    pub fn new(
        db: Db,
        sink: Option<Arc<dyn SnapshotSink>>,
        outbox: crate::webhooks::Outbox,
    ) -> Self {
        Self {
            db,
            sink,
            wake: Arc::new(Notify::new()),
            outbox,
            changes: Arc::default(),
            failures: None,
            announce: None,
        }
    }

    /// Rings `announce` on every change too.
    #[must_use]
    pub fn with_announcer(mut self, announce: Option<Arc<Notify>>) -> Self {
        self.announce = announce;
        self
    }

    /// Counts failed publish attempts in `failures`.
    #[must_use]
    pub fn with_failure_counter(mut self, failures: Option<prometheus::IntCounter>) -> Self {
        self.failures = failures;
        self
    }

    pub fn enabled(&self) -> bool {
        self.sink.is_some()
    }

    /// Tells the loop that something changed. Cheap and never blocks.
    pub fn wake(&self) {
        self.changes.fetch_add(1, std::sync::atomic::Ordering::Release);
        self.wake.notify_one();
        if let Some(announce) = &self.announce {
            announce.notify_one();
        }
    }

    /// The change counter that [`Publisher::wake`] bumps.
    pub fn changes(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.changes.clone()
    }

    /// Publishes one API now, whatever its state, and records the outcome, with its event
    /// in the same transaction: `api.published` on success, `api.publish_failed` on the
    /// first failure of a streak (not on every retry of a broken edge).
    pub async fn publish_api(&self, api_id: &str) -> anyhow::Result<()> {
        let Some(sink) = &self.sink else {
            return Err(anyhow!("publishing is disabled: EDGE_URL is not set"));
        };
        let Some(snapshot) = build_snapshot(&self.db, api_id).await? else { return Ok(()) };
        let body = serde_json::to_vec(&snapshot)?;
        let version = i64::try_from(snapshot.version).unwrap_or(i64::MAX);
        match sink.put(&snapshot, body).await {
            Ok(()) => {
                let mut tx = self.db.begin().await?;
                db::update_api_published(&mut *tx, api_id, version).await?;
                let queued = match db::select_api(&mut *tx, api_id).await? {
                    Some(api) => {
                        let event = crate::webhooks::Event::api("api.published", &api)
                            .with(serde_json::json!({ "published_version": version }));
                        crate::webhooks::enqueue(&mut tx, &event).await?
                    }
                    None => 0,
                };
                tx.commit().await?;
                if queued > 0 {
                    self.outbox.wake();
                }
                tracing::info!(api = %snapshot.api.slug, version, "published");
                Ok(())
            }
            Err(e) => {
                let attempts = db::select_api(&self.db, api_id)
                    .await?
                    .map(|a| a.publish_attempts)
                    .unwrap_or(0);
                let delay = retry_delay(u32::try_from(attempts + 1).unwrap_or(u32::MAX));
                let next = db::format_timestamp(time::OffsetDateTime::now_utc() + delay);
                let message = format!("{e:#}");
                if let Some(failures) = &self.failures {
                    failures.inc();
                }
                let mut tx = self.db.begin().await?;
                db::update_api_publish_failed(&mut *tx, api_id, &message, &next).await?;
                let mut queued = 0;
                if attempts == 0
                    && let Some(api) = db::select_api(&mut *tx, api_id).await?
                {
                    let event = crate::webhooks::Event::api("api.publish_failed", &api).with(
                        serde_json::json!({
                            "failed_version": version,
                            "error": message,
                            "next_attempt_at": next,
                        }),
                    );
                    queued = crate::webhooks::enqueue(&mut tx, &event).await?;
                }
                tx.commit().await?;
                if queued > 0 {
                    self.outbox.wake();
                }
                tracing::warn!(api = %snapshot.api.slug, version, error = %message, retry_in = ?delay, "publish failed");
                Err(e)
            }
        }
    }

    /// Runs until the process ends: publishes whatever is due, then sleeps until woken or
    /// until the next retry is due (at most `POLL`, which also picks up other replicas' work).
    pub async fn run(self) {
        const POLL: Duration = Duration::from_secs(5);
        if !self.enabled() {
            tracing::warn!("EDGE_URL is not set: changes are stored but not published to the edge");
            return;
        }
        loop {
            if let Err(e) = self.publish_due().await {
                tracing::error!(error = format!("{e:#}"), "publisher round failed");
            }
            if let Err(e) = self.remove_due().await {
                tracing::error!(error = format!("{e:#}"), "removal round failed");
            }
            let sleep = match db::select_next_publish_at(&self.db).await {
                Ok(Some(at)) => {
                    time::OffsetDateTime::parse(&at, &time::format_description::well_known::Rfc3339)
                        .map(|at| {
                            let wait = at - time::OffsetDateTime::now_utc();
                            Duration::try_from(wait).unwrap_or(Duration::ZERO).min(POLL)
                        })
                        .unwrap_or(POLL)
                }
                _ => POLL,
            };
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }

    /// Removes deleted APIs from the edge, with the same back-off as publishing.
    async fn remove_due(&self) -> anyhow::Result<()> {
        let Some(sink) = &self.sink else { return Ok(()) };
        for retired in db::select_due_removals(&self.db, &db::now(), 32).await? {
            let version = u64::try_from(retired.last_version).unwrap_or_default();
            match sink.remove(&retired.slug, version).await {
                Ok(()) => {
                    db::update_removal_done(&self.db, &retired.slug, retired.last_version).await?;
                    tracing::info!(api = %retired.slug, version, "removed from the edge");
                }
                Err(e) => {
                    let attempt = u32::try_from(retired.attempts + 1).unwrap_or(u32::MAX);
                    let next = time::OffsetDateTime::now_utc() + retry_delay(attempt);
                    let message = format!("{e:#}");
                    db::update_removal_failed(
                        &self.db,
                        &retired.slug,
                        &message,
                        &db::format_timestamp(next),
                    )
                    .await?;
                    tracing::warn!(api = %retired.slug, error = %message, "removal failed");
                }
            }
        }
        Ok(())
    }

    async fn publish_due(&self) -> anyhow::Result<()> {
        loop {
            let due = db::select_due_unpublished_apis(&self.db, &db::now(), 32).await?;
            if due.is_empty() {
                return Ok(());
            }
            let mut progressed = false;
            for api in due {
                // Failures are recorded with their retry time; the loop goes on with the rest.
                progressed |= self.publish_api(&api.id).await.is_ok();
            }
            if !progressed {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_and_cap() {
        let secs: Vec<u64> = (1..=11).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 64, 128, 256, 256, 256]);
    }
}
