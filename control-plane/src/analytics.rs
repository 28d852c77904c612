//! Analytics on the control plane's side: the native runtime's own events, the queries
//! behind `GET /api/v1/apis/{api}/analytics`, and retention.
//!
//! - **Native events** are the edge's wire type (`edgemock_shared::analytics`), with
//!   `source: "native"`. A request only puts its event on a bounded channel; one task writes
//!   them in multi-row batches of up to [`BATCH`] (the same insert as the edge's ingest). The
//!   channel holds [`QUEUE`] events: far more than a second of full load, which one batch
//!   writes in milliseconds. Should it ever fill, events are dropped and counted in the log,
//!   never waited for: a mock answer must not queue behind analytics.
//! - **Queries** bucket by time and group by endpoint, status, country or source in SQL both
//!   databases share. Latency percentiles come from per-bound counts
//!   ([`LATENCY_BOUNDS_MS`]), interpolated within the bound: exact enough for dashboards, and
//!   one pass over the index range, never a sort of every row.
//! - **Retention**: `ANALYTICS_RETENTION_DAYS` (90); a cleanup each day at 02:00 UTC, and on
//!   demand through `POST /api/v1/analytics/cleanup`. Idempotent, so every replica may run it.

use std::time::Duration;

use edgemock_shared::analytics::AnalyticsEvent;
use tokio::sync::mpsc;

use crate::db::Db;

/// Most events written in one statement batch.
pub const BATCH: usize = 1000;
/// Events waiting to be written, at most.
pub const QUEUE: usize = 100_000;

/// Upper bounds (inclusive, milliseconds) of the latency counts percentiles come from.
pub const LATENCY_BOUNDS_MS: &[i64] =
    &[1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000];

/// Hands native events to the writer.
#[derive(Debug, Clone)]
pub struct Recorder {
    events: mpsc::Sender<AnalyticsEvent>,
    dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Recorder {
    /// The recorder, and the writer to run until every recorder is gone.
    pub fn new(db: Db) -> (Self, Writer) {
        let (events, queue) = mpsc::channel(QUEUE);
        let recorder = Self { events, dropped: std::sync::Arc::default() };
        (recorder.clone(), Writer { db, queue, dropped: recorder.dropped.clone() })
    }

    pub fn record(&self, event: AnalyticsEvent) {
        if self.events.try_send(event).is_err() {
            self.dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Writes queued events in batches until every [`Recorder`] is dropped, then flushes.
#[derive(Debug)]
pub struct Writer {
    db: Db,
    queue: mpsc::Receiver<AnalyticsEvent>,
    dropped: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Writer {
    pub async fn run(mut self) {
        let mut batch = Vec::with_capacity(BATCH);
        while self.queue.recv_many(&mut batch, BATCH).await > 0 {
            let received_at_ms = crate::db::now_ms();
            // A failed write is retried a few times (the database may be restarting), then
            // given up: the events are logged as lost.
            let mut tries = 0;
            loop {
                match crate::db::insert_analytics_events(&self.db, &batch, received_at_ms).await {
                    Ok(_) => break,
                    Err(e) if tries < 3 => {
                        tries += 1;
                        tracing::warn!(error = %e, tries, "analytics: writing a batch failed");
                        tokio::time::sleep(Duration::from_millis(500 * tries)).await;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, lost = batch.len(), "analytics: batch lost");
                        break;
                    }
                }
            }
            batch.clear();
            let dropped = self.dropped.swap(0, std::sync::atomic::Ordering::Relaxed);
            if dropped > 0 {
                tracing::warn!(dropped, "analytics: events dropped, the queue was full");
            }
        }
    }
}

/// Deletes events older than `days`; answers how many and the cut-off.
pub async fn cleanup(db: &Db, days: u32) -> sqlx::Result<(u64, i64)> {
    let before_ms = crate::db::now_ms() - i64::from(days) * 86_400_000;
    let deleted = sqlx::query("DELETE FROM analytics_events WHERE occurred_at_ms < $1")
        .bind(before_ms)
        .execute(db)
        .await?
        .rows_affected();
    tracing::info!(deleted, before_ms, retention_days = days, "analytics cleanup");
    Ok((deleted, before_ms))
}

/// Runs [`cleanup`] every day at 02:00 UTC, forever.
pub async fn cleanup_daily(db: Db, days: u32) {
    loop {
        let now = time::OffsetDateTime::now_utc();
        let today_2am =
            now.replace_time(time::Time::from_hms(2, 0, 0).unwrap_or(time::Time::MIDNIGHT));
        let next = if today_2am > now { today_2am } else { today_2am + time::Duration::DAY };
        let wait = (next - now).unsigned_abs();
        tokio::time::sleep(wait).await;
        if let Err(e) = cleanup(&db, days).await {
            tracing::error!(error = %e, "analytics cleanup failed");
        }
    }
}

/// What a query groups by, besides time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    None,
    Endpoint,
    Status,
    Country,
    Source,
}

impl GroupBy {
    fn sql(self) -> &'static str {
        match self {
            Self::None => "''",
            Self::Endpoint => "COALESCE(endpoint_method || ' ' || endpoint_pattern, '-')",
            Self::Status => "CAST(status AS TEXT)",
            Self::Country => "COALESCE(country, '-')",
            Self::Source => "source",
        }
    }
}

/// Filters and shape of a query; times are milliseconds since the Unix epoch.
#[derive(Debug)]
pub struct Query<'a> {
    pub api_id: &'a str,
    pub from_ms: i64,
    pub to_ms: i64,
    pub bucket_ms: i64,
    pub group_by: GroupBy,
    pub status: Option<i32>,
    pub country: Option<&'a str>,
    /// `METHOD pattern`, as the rows of `group_by=endpoint` name it.
    pub endpoint: Option<&'a str>,
}

/// One time bucket of one group.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct Row {
    pub bucket_start_ms: i64,
    /// The group's value (`GET /users/:id`, `404`, `DE`, `edge`); empty without grouping.
    pub group: String,
    pub requests: i64,
    /// Answers with status 400–499 and 500–599.
    pub client_errors: i64,
    pub server_errors: i64,
    pub latency_ms: Latency,
    pub request_bytes: Sizes,
    pub response_bytes: Sizes,
}

#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct Latency {
    pub avg: f64,
    pub max: i64,
    /// Interpolated within [`LATENCY_BOUNDS_MS`].
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct Sizes {
    pub total: i64,
    pub avg: f64,
    pub max: i64,
}

pub async fn query(db: &Db, q: &Query<'_>) -> sqlx::Result<Vec<Row>> {
    use sqlx::Row as _;
    let counts: Vec<String> = LATENCY_BOUNDS_MS
        .iter()
        .map(|b| format!("CAST(SUM(CASE WHEN latency_ms <= {b} THEN 1 ELSE 0 END) AS BIGINT)"))
        .collect();
    let mut filters = String::new();
    let mut next = 5;
    for (present, column) in [
        (q.status.is_some(), "status"),
        (q.country.is_some(), "country"),
        (q.endpoint.is_some(), "COALESCE(endpoint_method || ' ' || endpoint_pattern, '-')"),
    ] {
        if present {
            filters.push_str(&format!(" AND {column} = ${next}"));
            next += 1;
        }
    }
    let sql = format!(
        "SELECT (occurred_at_ms / $4) * $4 AS bucket, {group} AS grp, COUNT(*) AS n,
                CAST(SUM(CASE WHEN status >= 400 AND status < 500 THEN 1 ELSE 0 END) AS BIGINT),
                CAST(SUM(CASE WHEN status >= 500 THEN 1 ELSE 0 END) AS BIGINT),
                CAST(SUM(latency_ms) AS BIGINT), MAX(latency_ms),
                CAST(SUM(request_bytes) AS BIGINT), MAX(request_bytes),
                CAST(SUM(response_bytes) AS BIGINT), MAX(response_bytes),
                {counts}
         FROM analytics_events
         WHERE api_id = $1 AND occurred_at_ms >= $2 AND occurred_at_ms < $3{filters}
         GROUP BY 1, 2 ORDER BY 1, 2",
        group = q.group_by.sql(),
        counts = counts.join(", "),
    );
    let mut query =
        sqlx::query(&sql).bind(q.api_id.to_owned()).bind(q.from_ms).bind(q.to_ms).bind(q.bucket_ms);
    if let Some(status) = q.status {
        query = query.bind(status);
    }
    if let Some(country) = q.country {
        query = query.bind(country.to_owned());
    }
    if let Some(endpoint) = q.endpoint {
        query = query.bind(endpoint.to_owned());
    }
    let rows = query.fetch_all(db).await?;
    rows.iter()
        .map(|r| {
            let n: i64 = r.try_get(2)?;
            let per = |total: i64| if n > 0 { total as f64 / n as f64 } else { 0.0 };
            let cumulative = (0..LATENCY_BOUNDS_MS.len())
                .map(|i| r.try_get::<i64, _>(11 + i))
                .collect::<sqlx::Result<Vec<i64>>>()?;
            let max_latency: i64 = r.try_get(6)?;
            let p = |q: f64| percentile(&cumulative, n, max_latency, q);
            let (latency_total, request_total, response_total): (i64, i64, i64) =
                (r.try_get(5)?, r.try_get(7)?, r.try_get(9)?);
            Ok(Row {
                bucket_start_ms: r.try_get(0)?,
                group: r.try_get(1)?,
                requests: n,
                client_errors: r.try_get(3)?,
                server_errors: r.try_get(4)?,
                latency_ms: Latency {
                    avg: per(latency_total),
                    max: max_latency,
                    p50: p(0.50),
                    p95: p(0.95),
                    p99: p(0.99),
                },
                request_bytes: Sizes {
                    total: request_total,
                    avg: per(request_total),
                    max: r.try_get(8)?,
                },
                response_bytes: Sizes {
                    total: response_total,
                    avg: per(response_total),
                    max: r.try_get(10)?,
                },
            })
        })
        .collect()
}

/// The `q` quantile from cumulative counts at [`LATENCY_BOUNDS_MS`]: the first bound whose
/// count reaches `q·n`, interpolated linearly from the previous bound; past the last bound,
/// the maximum.
fn percentile(cumulative: &[i64], n: i64, max: i64, q: f64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let rank = q * n as f64;
    let mut below = (0_i64, 0_i64); // (bound, count) of the previous bound
    for (bound, count) in LATENCY_BOUNDS_MS.iter().zip(cumulative) {
        if *count as f64 >= rank {
            let within = (*count - below.1).max(1) as f64;
            let share = ((rank - below.1 as f64) / within).clamp(0.0, 1.0);
            let upper = (*bound).min(max.max(below.0));
            return below.0 as f64 + share * (upper - below.0) as f64;
        }
        below = (*bound, *count);
    }
    max as f64
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentiles_interpolate_within_bounds() {
        // 100 requests: 50 at ≤1 ms, 40 more at ≤2 ms, 10 more at ≤5 ms (max 4 ms).
        let mut cumulative = vec![50, 90, 100];
        cumulative.resize(super::LATENCY_BOUNDS_MS.len(), 100);
        assert_eq!(percentile(&cumulative, 100, 4, 0.5), 1.0);
        assert!((percentile(&cumulative, 100, 4, 0.7) - 1.5).abs() < 1e-9);
        // The 95th lies in (2, 5], capped by the maximum seen.
        assert!((percentile(&cumulative, 100, 4, 0.95) - 3.0).abs() < 1e-9);
        assert_eq!(percentile(&cumulative, 0, 0, 0.5), 0.0);
        // Beyond the last bound: the maximum.
        let mut slow = vec![0; super::LATENCY_BOUNDS_MS.len()];
        slow[0] = 0;
        assert_eq!(percentile(&slow, 3, 90_000, 0.99), 90_000.0);
    }
}
