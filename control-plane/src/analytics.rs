//! Analytics on the control plane's side: the native runtime's tally, the rollups every
//! query reads, the queries behind `GET /api/v1/apis/{api}/analytics`, and retention.
//!
//! - **Rollups** (`analytics_rollups`): one row per API, minute, source, endpoint, status and
//!   country, holding sums, maxima and cumulative latency counts ([`Counts`]). Every query
//!   answer is a sum over rows, so buckets of whole minutes and every grouping cost one pass
//!   over an index range, however many requests the rows stand for.
//! - **The native runtime** adds each request to a [`Tally`] in memory: a hash map update
//!   under a mutex, no allocation for a key seen before, no wake-up of another task. A
//!   [`Flusher`] writes the tally once a second ([`FLUSH_INTERVAL`]) as a few upserts, so
//!   storage costs the same at 10 or 100,000 requests a second. A failed write keeps the
//!   counts for the next one (nothing is dropped while the database restarts); only if the
//!   tally ever held more than [`MAX_KEYS`] distinct rows would a request go uncounted, and
//!   that is counted and logged.
//! - **The edge** sends events, stored one by one in `analytics_events` (their ids make
//!   ingest idempotent); the events new to it are added to the rollups in the same
//!   transaction ([`crate::db::insert_analytics_events`]).
//! - **Queries** bucket by time and group by endpoint, status, country or source in SQL both
//!   databases share. Latency percentiles come from the cumulative counts at
//!   [`LATENCY_BOUNDS_MS`], interpolated within the bound: exact enough for dashboards.
//! - **Retention**: `ANALYTICS_RETENTION_DAYS` (90); a cleanup each day at 02:00 UTC, and on
//!   demand through `POST /api/v1/analytics/cleanup`. Idempotent, so every replica may run it.

use foldhash::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::db::Db;

/// How often the native runtime's tally is written.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Most rows the tally holds between writes (API × minute × endpoint × status): far more
/// than any deployment's endpoints answer in a few seconds, and a bound on memory should
/// the database be down for long.
pub const MAX_KEYS: usize = 100_000;

/// Upper bounds (inclusive, milliseconds) of the latency counts percentiles come from; the
/// `latency_le_{bound}` columns of `analytics_rollups`.
pub const LATENCY_BOUNDS_MS: &[i64] =
    &[1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000];
const BOUNDS: usize = 15;
const _: () = assert!(LATENCY_BOUNDS_MS.len() == BOUNDS);

/// What a rollup row is counted under (its primary key). Shared text is reference-counted:
/// the native runtime builds a key per request from labels its compiled API holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RollupKey {
    pub api_id: Arc<str>,
    /// The start of the minute, milliseconds since the Unix epoch.
    pub minute_ms: i64,
    /// `edge` or `native`.
    pub source: Arc<str>,
    /// `METHOD pattern` of the matched endpoint, or `-`.
    pub endpoint: Arc<str>,
    pub status: u16,
    /// ISO country code, or `-`.
    pub country: Arc<str>,
}

/// One request, as a rollup counts it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub latency_ms: u32,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub validation_failed: bool,
    pub proxied: bool,
    pub deduplicated: bool,
}

/// The sums of a rollup row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: i64,
    pub latency_sum_ms: i64,
    pub latency_max_ms: i64,
    pub request_bytes_sum: i64,
    pub request_bytes_max: i64,
    pub response_bytes_sum: i64,
    pub response_bytes_max: i64,
    pub validation_failures: i64,
    pub proxied: i64,
    pub deduplicated: i64,
    /// Requests that took at most `LATENCY_BOUNDS_MS[i]`.
    pub latency_le: [i64; BOUNDS],
}

impl Counts {
    pub fn add(&mut self, s: &Sample) {
        let latency = i64::from(s.latency_ms);
        let request = i64::try_from(s.request_bytes).unwrap_or(i64::MAX);
        let response = i64::try_from(s.response_bytes).unwrap_or(i64::MAX);
        self.requests += 1;
        self.latency_sum_ms = self.latency_sum_ms.saturating_add(latency);
        self.latency_max_ms = self.latency_max_ms.max(latency);
        self.request_bytes_sum = self.request_bytes_sum.saturating_add(request);
        self.request_bytes_max = self.request_bytes_max.max(request);
        self.response_bytes_sum = self.response_bytes_sum.saturating_add(response);
        self.response_bytes_max = self.response_bytes_max.max(response);
        self.validation_failures += i64::from(s.validation_failed);
        self.proxied += i64::from(s.proxied);
        self.deduplicated += i64::from(s.deduplicated);
        // Cumulative: every bound at or above the latency counts it.
        let first = LATENCY_BOUNDS_MS.partition_point(|b| *b < latency);
        for count in &mut self.latency_le[first..] {
            *count += 1;
        }
    }

    pub fn merge(&mut self, o: &Counts) {
        self.requests += o.requests;
        self.latency_sum_ms = self.latency_sum_ms.saturating_add(o.latency_sum_ms);
        self.latency_max_ms = self.latency_max_ms.max(o.latency_max_ms);
        self.request_bytes_sum = self.request_bytes_sum.saturating_add(o.request_bytes_sum);
        self.request_bytes_max = self.request_bytes_max.max(o.request_bytes_max);
        self.response_bytes_sum = self.response_bytes_sum.saturating_add(o.response_bytes_sum);
        self.response_bytes_max = self.response_bytes_max.max(o.response_bytes_max);
        self.validation_failures += o.validation_failures;
        self.proxied += o.proxied;
        self.deduplicated += o.deduplicated;
        for (mine, theirs) in self.latency_le.iter_mut().zip(&o.latency_le) {
            *mine += theirs;
        }
    }
}

/// A row's workspace (not part of its key: an API belongs to one) and its counts.
#[derive(Debug, Clone, Default)]
pub struct RollupRow {
    pub workspace_id: Arc<str>,
    pub counts: Counts,
}

/// Rollup rows by key, as they are written.
pub type Rollups = HashMap<RollupKey, RollupRow>;

/// Adds `sample` under `key` to `rollups`.
pub fn add(rollups: &mut Rollups, key: RollupKey, workspace_id: &Arc<str>, sample: &Sample) {
    rollups
        .entry(key)
        .or_insert_with(|| RollupRow {
            workspace_id: workspace_id.clone(),
            counts: Counts::default(),
        })
        .counts
        .add(sample);
}

/// An edge event as a rollup counts it.
pub fn edge_sample(
    e: &edgemock_shared::analytics::AnalyticsEvent,
) -> (RollupKey, Arc<str>, Sample) {
    let endpoint = match (&e.endpoint_method, &e.endpoint_pattern) {
        (Some(method), Some(pattern)) => Arc::from(format!("{method} {pattern}")),
        _ => none_label(),
    };
    let key = RollupKey {
        api_id: Arc::from(e.api_id.as_str()),
        minute_ms: minute_of(e.timestamp_ms),
        source: Arc::from(e.source.as_str()),
        endpoint,
        status: e.status,
        country: Arc::from(e.country.as_deref().unwrap_or("-")),
    };
    let sample = Sample {
        latency_ms: e.latency_ms,
        request_bytes: e.request_bytes,
        response_bytes: e.response_bytes,
        validation_failed: e.validation_failed,
        proxied: e.proxied,
        deduplicated: e.deduplicated,
    };
    (key, Arc::from(e.workspace_id.as_str()), sample)
}

static NATIVE: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from("native"));
static NONE: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| Arc::from("-"));

/// `native`, the source of the native runtime's requests (shared, not allocated per request).
pub fn native_source() -> Arc<str> {
    NATIVE.clone()
}

/// `-`: no endpoint matched, or no country is known.
pub fn none_label() -> Arc<str> {
    NONE.clone()
}

/// [`none_label`], borrowed: no reference count every thread writes.
pub fn none_ref() -> &'static Arc<str> {
    &NONE
}

/// The start of the minute `ms` falls in.
pub fn minute_of(ms: i64) -> i64 {
    ms - ms.rem_euclid(60_000)
}

/// The native runtime's requests since the last write. Cheap to clone (one handle).
///
/// Each thread counts into a shard of its own ([`crate::shards`]), keyed by the addresses
/// of the labels its compiled API holds: a request hashes a few words, takes a lock no other
/// thread wants and writes lines no other core reads. The flusher folds the shards into
/// rows once a second ([`Tally::take`]).
#[derive(Debug, Clone, Default)]
pub struct Tally(Arc<TallyInner>);

#[derive(Debug, Default)]
struct TallyInner {
    shards: crate::shards::Sharded<Shard>,
    /// Rows whose write failed, written with the next ones.
    retry: std::sync::Mutex<Rollups>,
    /// Rows held (in the shards and `retry`): at most [`MAX_KEYS`].
    rows: std::sync::atomic::AtomicUsize,
    /// Requests that could not be counted (the tally was full).
    dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct Shard {
    rows: HashMap<ShardKey, ShardRow>,
    /// Requests this shard counted since start.
    counted: u64,
}

/// A label by [`crate::shards::address`].
type Label = (usize, usize);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ShardKey {
    api: Label,
    endpoint: Label,
    minute_ms: i64,
    status: u16,
}

#[derive(Debug)]
struct ShardRow {
    /// The labels the key points into (held, so their addresses stay theirs).
    api_id: Arc<str>,
    endpoint: Arc<str>,
    workspace_id: Arc<str>,
    counts: Counts,
}

/// A native request's row, by the labels of the API that answered it.
#[derive(Debug, Clone, Copy)]
pub struct NativeRow<'a> {
    pub api_id: &'a Arc<str>,
    pub workspace_id: &'a Arc<str>,
    /// `METHOD pattern` of the matched endpoint, or [`none_label`].
    pub endpoint: &'a Arc<str>,
    /// When it arrived, milliseconds since the Unix epoch.
    pub at_ms: i64,
    pub status: u16,
}

impl Tally {
    /// Counts one request.
    pub fn add(&self, row: NativeRow<'_>, sample: &Sample) {
        use crate::shards::address;
        let key = ShardKey {
            api: address(row.api_id),
            endpoint: address(row.endpoint),
            minute_ms: minute_of(row.at_ms),
            status: row.status,
        };
        let mut shard = self.0.shards.mine();
        if let Some(counted) = shard.rows.get_mut(&key) {
            counted.counts.add(sample);
        } else {
            // A new row: the only time the shards' threads touch a shared line.
            if !self.reserve_row() {
                drop(shard);
                self.0.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let mut counts = Counts::default();
            counts.add(sample);
            shard.rows.insert(
                key,
                ShardRow {
                    api_id: row.api_id.clone(),
                    endpoint: row.endpoint.clone(),
                    workspace_id: row.workspace_id.clone(),
                    counts,
                },
            );
        }
        shard.counted += 1;
    }

    /// Room for one more row, if the tally holds fewer than [`MAX_KEYS`].
    fn reserve_row(&self) -> bool {
        let held = self.0.rows.fetch_add(1, Ordering::Relaxed);
        if held >= MAX_KEYS {
            self.0.rows.fetch_sub(1, Ordering::Relaxed);
        }
        held < MAX_KEYS
    }

    /// Requests counted since start, and requests that could not be counted.
    pub fn totals(&self) -> (u64, u64) {
        let mut counted = 0;
        self.0.shards.each(|shard| counted += shard.counted);
        (counted, self.0.dropped.load(Ordering::Relaxed))
    }

    /// Rows waiting to be written (a row per thread that counted into it, until written).
    pub fn pending_rows(&self) -> usize {
        self.0.rows.load(Ordering::Relaxed)
    }

    /// Every row held, the shards' folded together, and the tally emptied.
    fn take(&self) -> Rollups {
        let mut rows = std::mem::take(&mut *crate::shards::lock(&self.0.retry));
        let mut taken = rows.len();
        self.0.shards.each(|shard| {
            taken += shard.rows.len();
            // Taken whole, not drained: a drained map keeps its capacity, and a thread that
            // once counted many rows would hold their room for good.
            for (key, row) in std::mem::take(&mut shard.rows) {
                let key = RollupKey {
                    api_id: row.api_id,
                    minute_ms: key.minute_ms,
                    source: native_source(),
                    endpoint: row.endpoint,
                    status: key.status,
                    country: none_label(),
                };
                merge(&mut rows, key, row.workspace_id, &row.counts);
            }
        });
        self.0.rows.fetch_sub(taken, Ordering::Relaxed);
        rows
    }

    /// Puts rows whose write failed back, to be written with the next ones.
    fn restore(&self, failed: Rollups) {
        let mut retry = crate::shards::lock(&self.0.retry);
        for (key, row) in failed {
            if let Some(mine) = retry.get_mut(&key) {
                mine.counts.merge(&row.counts);
            } else if self.reserve_row() {
                retry.insert(key, row);
            } else {
                let lost = u64::try_from(row.counts.requests).unwrap_or_default();
                self.0.dropped.fetch_add(lost, Ordering::Relaxed);
            }
        }
    }
}

/// Adds `counts` to `rows` under `key`.
fn merge(rows: &mut Rollups, key: RollupKey, workspace_id: Arc<str>, counts: &Counts) {
    match rows.entry(key) {
        std::collections::hash_map::Entry::Occupied(mut row) => row.get_mut().counts.merge(counts),
        std::collections::hash_map::Entry::Vacant(slot) => {
            slot.insert(RollupRow { workspace_id, counts: counts.clone() });
        }
    }
}

/// Writes the [`Tally`] every [`FLUSH_INTERVAL`] until told to stop, then once more.
#[derive(Debug)]
pub struct Flusher {
    db: Db,
    tally: Tally,
}

impl Flusher {
    pub fn new(db: Db, tally: Tally) -> Self {
        Self { db, tally }
    }

    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(FLUSH_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reported_drops = 0;
        loop {
            let stopping = tokio::select! {
                _ = ticks.tick() => false,
                _ = stop.changed() => true,
            };
            self.flush().await;
            let (_, dropped) = self.tally.totals();
            if dropped > reported_drops {
                tracing::warn!(
                    dropped = dropped - reported_drops,
                    max_rows = MAX_KEYS,
                    "analytics: requests not counted, the tally was full"
                );
                reported_drops = dropped;
            }
            if stopping || *stop.borrow() {
                return;
            }
        }
    }

    /// Writes what the tally holds; on failure keeps it for the next round.
    pub async fn flush(&self) {
        let rows = self.tally.take();
        if rows.is_empty() {
            return;
        }
        let result = async {
            let mut tx = self.db.begin().await?;
            crate::db::upsert_analytics_rollups(&mut tx, &rows).await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, rows = rows.len(), "analytics: writing the tally failed; kept for the next try");
            self.tally.restore(rows);
        }
    }
}

/// What a cleanup removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cleaned {
    /// Requests whose analytics were deleted (from the rollups).
    pub requests: u64,
    /// Stored edge events deleted.
    pub events: u64,
    /// Everything before this time went (whole minutes for the rollups).
    pub before_ms: i64,
}

/// Deletes analytics older than `days`.
pub async fn cleanup(db: &Db, days: u32) -> sqlx::Result<Cleaned> {
    let before_ms = crate::db::now_ms() - i64::from(days) * 86_400_000;
    // Rollup rows whose whole minute lies before the cut-off.
    let before_minute = minute_of(before_ms) - 60_000;
    let mut tx = db.begin().await?;
    // The deletes first: on SQLite a transaction that reads first may be refused its write.
    let events = sqlx::query("DELETE FROM analytics_events WHERE occurred_at_ms < $1")
        .bind(before_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let requests: Vec<i64> = sqlx::query_scalar(
        "DELETE FROM analytics_rollups WHERE minute_ms <= $1 RETURNING requests",
    )
    .bind(before_minute)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let requests = requests.iter().map(|n| u64::try_from(*n).unwrap_or_default()).sum();
    tracing::info!(requests, events, before_ms, retention_days = days, "analytics cleanup");
    Ok(Cleaned { requests, events, before_ms })
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
            Self::Endpoint => "endpoint",
            Self::Status => "CAST(status AS TEXT)",
            Self::Country => "country",
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
    let counts: Vec<String> =
        LATENCY_BOUNDS_MS.iter().map(|b| format!("CAST(SUM(latency_le_{b}) AS BIGINT)")).collect();
    let mut filters = String::new();
    let mut next = 5;
    for (present, column) in [
        (q.status.is_some(), "status"),
        (q.country.is_some(), "country"),
        (q.endpoint.is_some(), "endpoint"),
    ] {
        if present {
            filters.push_str(&format!(" AND {column} = ${next}"));
            next += 1;
        }
    }
    // Rows are whole minutes: a window takes the minutes that start inside it.
    let sql = format!(
        "SELECT (minute_ms / $4) * $4 AS bucket, {group} AS grp, CAST(SUM(requests) AS BIGINT),
                CAST(SUM(CASE WHEN status >= 400 AND status < 500 THEN requests ELSE 0 END) AS BIGINT),
                CAST(SUM(CASE WHEN status >= 500 THEN requests ELSE 0 END) AS BIGINT),
                CAST(SUM(latency_sum_ms) AS BIGINT), MAX(latency_max_ms),
                CAST(SUM(request_bytes_sum) AS BIGINT), MAX(request_bytes_max),
                CAST(SUM(response_bytes_sum) AS BIGINT), MAX(response_bytes_max),
                {counts}
         FROM analytics_rollups
         WHERE api_id = $1 AND minute_ms >= $2 AND minute_ms < $3{filters}
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
    use std::sync::Arc;

    use super::{Counts, NativeRow, RollupKey, Sample, Tally, percentile};

    fn key(status: u16) -> RollupKey {
        RollupKey {
            api_id: Arc::from("a"),
            minute_ms: 60_000,
            source: super::native_source(),
            endpoint: Arc::from("GET /x"),
            status,
            country: super::none_label(),
        }
    }

    #[test]
    fn counts_are_sums_maxima_and_cumulative_latency() {
        let mut c = Counts::default();
        for (latency_ms, bytes) in [(0, 10), (3, 30), (70_000, 20)] {
            c.add(&Sample { latency_ms, response_bytes: bytes, ..Sample::default() });
        }
        assert_eq!((c.requests, c.latency_sum_ms, c.latency_max_ms), (3, 70_003, 70_000));
        assert_eq!((c.response_bytes_sum, c.response_bytes_max), (60, 30));
        // ≤1 ms: 1; ≤2: 1; ≤5: 2; … ≤60 s: 2 (70 s is past every bound).
        assert_eq!(&c.latency_le[..3], &[1, 1, 2]);
        assert_eq!(c.latency_le[14], 2);
        let mut twice = c.clone();
        twice.merge(&c);
        assert_eq!((twice.requests, twice.latency_max_ms, twice.latency_le[2]), (6, 70_000, 4));
    }

    #[test]
    fn a_tally_keeps_what_failed_to_be_written() {
        let tally = Tally::default();
        let (api, ws) = (Arc::from("a"), Arc::from("w"));
        // Equal labels from two compiles of the API: one row.
        let (endpoint, again): (Arc<str>, Arc<str>) = (Arc::from("GET /x"), Arc::from("GET /x"));
        let row = |endpoint, status| NativeRow {
            api_id: &api,
            workspace_id: &ws,
            endpoint,
            at_ms: 60_000 + 59_999,
            status,
        };
        tally.add(row(&endpoint, 200), &Sample::default());
        tally.add(row(&again, 200), &Sample::default());
        tally.add(row(&endpoint, 404), &Sample::default());
        assert_eq!((tally.pending_rows(), tally.totals()), (3, (3, 0)));
        let taken = tally.take();
        assert_eq!(taken.len(), 2);
        assert_eq!(tally.pending_rows(), 0);
        tally.add(row(&endpoint, 200), &Sample::default());
        // The write failed: its rows come back, merged with what arrived meanwhile.
        tally.restore(taken);
        let rows = tally.take();
        assert_eq!(rows[&key(200)].counts.requests, 3);
        assert_eq!(rows[&key(404)].counts.requests, 1);
        assert_eq!((tally.pending_rows(), tally.totals()), (0, (4, 0)));
    }

    #[test]
    fn a_full_tally_drops_and_counts_new_rows_only() {
        let tally = Tally::default();
        let (api, ws) = (Arc::from("a"), Arc::from("w"));
        let endpoints: Vec<Arc<str>> =
            (0..=super::MAX_KEYS).map(|i| Arc::from(format!("GET /{i}"))).collect();
        let row = |endpoint| NativeRow {
            api_id: &api,
            workspace_id: &ws,
            endpoint,
            at_ms: 0,
            status: 200,
        };
        for endpoint in &endpoints {
            tally.add(row(endpoint), &Sample::default());
        }
        assert_eq!(tally.totals(), (super::MAX_KEYS as u64, 1));
        // A row it holds still counts.
        tally.add(row(&endpoints[0]), &Sample::default());
        assert_eq!(tally.totals(), (super::MAX_KEYS as u64 + 1, 1));
        assert_eq!(tally.take().len(), super::MAX_KEYS);
    }

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
