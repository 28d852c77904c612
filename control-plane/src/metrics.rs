//! Prometheus metrics at `GET /metrics` (`METRICS_ENABLED`, default true), with the
//! `prometheus` crate and a registry of this process's own (so several control planes in one
//! test process keep separate counts).
//!
//! Labels never carry a raw path, a query or an id a client can make up: routes are the
//! router's templates (`/api/v1/apis/{api}`), mock endpoints are the patterns as defined
//! (`GET /users/{id}`), an API is named only once it exists, and `workspace` only on a
//! successful answer (so failed guesses cannot grow the series).

use std::time::Duration;

use foldhash::HashMap;
use std::sync::Arc;

use prometheus::local::{LocalHistogram, LocalIntCounter};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::db::Db;
use crate::shards::{Sharded, address, lock};

/// Latency buckets, in seconds: sub-millisecond mocks up to slow proxies and imports.
const BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

pub struct Metrics {
    /// The native runtime's counts, per thread, folded into the series at each scrape (see
    /// [`Shard`]).
    native: Sharded<Shard>,
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    http_in_progress: IntGaugeVec,
    /// `mock_requests_total` and `mock_response_duration_seconds` (see [`MockSeries`]).
    mock: std::sync::Mutex<HashMap<SeriesKey, Totals>>,
    cache_hits: IntCounterVec,
    engine_loads: IntCounterVec,
    cache_misses: IntCounterVec,
    db_connections: IntGaugeVec,
    db_max_connections: IntGauge,
    webhook_deliveries: IntCounterVec,
    webhook_duration: HistogramVec,
    publish_failures: prometheus::IntCounter,
    analytics_lag: prometheus::Gauge,
    native_counted: IntCounterVec,
    native_pending: IntGauge,
    rate_limited: IntCounterVec,
    /// Registered only with `REDIS_URL` ([`Metrics::register_redis`]): a deployment without
    /// Redis shows no Redis series (and no alert on a Redis it does not have).
    redis_up: IntGauge,
    redis_errors: IntCounterVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// What a mock answer is counted under.
#[derive(Debug, Clone, Copy)]
pub struct MockLabels<'a> {
    /// `edge` or `native`.
    pub runtime: &'a str,
    /// The API's slug, or `-` when no API has that slug.
    pub api: &'a str,
    pub method: &'a str,
    /// The matched endpoint as `METHOD pattern`, or `-`.
    pub endpoint: &'a str,
    pub status: u16,
}

impl Metrics {
    pub fn new(max_connections: u32) -> anyhow::Result<Self> {
        let registry = Registry::new();
        let http_labels = &["method", "route", "status", "workspace"];
        let metrics = Self {
            native: Sharded::default(),
            http_requests: IntCounterVec::new(
                Opts::new("http_requests_total", "HTTP requests answered, by matched route"),
                http_labels,
            )?,
            http_duration: HistogramVec::new(
                HistogramOpts::new(
                    "http_request_duration_seconds",
                    "Time to answer an HTTP request, by matched route",
                )
                .buckets(BUCKETS.to_vec()),
                http_labels,
            )?,
            http_in_progress: IntGaugeVec::new(
                Opts::new("http_requests_in_progress", "HTTP requests being answered"),
                &["method", "route"],
            )?,
            mock: std::sync::Mutex::default(),
            cache_hits: IntCounterVec::new(
                Opts::new("cache_hits_total", "Lookups answered from a cache"),
                &["cache"],
            )?,
            cache_misses: IntCounterVec::new(
                Opts::new("cache_misses_total", "Lookups a cache could not answer"),
                &["cache"],
            )?,
            engine_loads: IntCounterVec::new(
                Opts::new(
                    "edgemock_engine_loads_total",
                    "APIs compiled by the native runtime, by where their snapshot came from",
                ),
                &["source"],
            )?,
            db_connections: IntGaugeVec::new(
                Opts::new("db_pool_connections", "Database connections, by state"),
                &["state"],
            )?,
            db_max_connections: IntGauge::new(
                "db_pool_max_connections",
                "Most database connections the pool opens",
            )?,
            publish_failures: prometheus::IntCounter::new(
                "edgemock_publish_failures_total",
                "Snapshot publishes to the edge that failed (each is retried)",
            )?,
            analytics_lag: prometheus::Gauge::new(
                "edgemock_analytics_lag_seconds",
                "How long the newest event of the last stored edge analytics batch took to arrive",
            )?,
            native_counted: IntCounterVec::new(
                Opts::new(
                    "edgemock_analytics_native_requests_total",
                    "Native runtime requests added to the analytics tally (counted), or not \
                     (dropped: the tally was full)",
                ),
                &["outcome"],
            )?,
            native_pending: IntGauge::new(
                "edgemock_analytics_native_pending_rows",
                "Analytics rows of the native runtime waiting for the next write (once a second)",
            )?,
            rate_limited: IntCounterVec::new(
                Opts::new("rate_limit_exceeded_total", "Requests refused with a 429"),
                &["scope"],
            )?,
            webhook_deliveries: IntCounterVec::new(
                Opts::new(
                    "webhook_deliveries_total",
                    "Webhook delivery attempts, by event type and outcome (delivered, retrying, \
                     failed: the last attempt failed)",
                ),
                &["event", "outcome"],
            )?,
            webhook_duration: HistogramVec::new(
                HistogramOpts::new(
                    "webhook_delivery_duration_seconds",
                    "Time from sending a webhook to the receiver's answer (or giving up)",
                )
                .buckets(BUCKETS.to_vec()),
                &["event", "outcome"],
            )?,
            redis_up: IntGauge::new(
                "edgemock_redis_up",
                "1 while Redis (REDIS_URL) answers and is used, 0 while requests fall back",
            )?,
            redis_errors: IntCounterVec::new(
                Opts::new(
                    "edgemock_redis_errors_total",
                    "Redis calls that failed or timed out, by operation (rate_limit, cache_get, \
                     cache_set, publish, subscribe, check)",
                ),
                &["operation"],
            )?,
            registry,
        };
        metrics.db_max_connections.set(i64::from(max_connections));
        let r = &metrics.registry;
        r.register(Box::new(metrics.http_requests.clone()))?;
        r.register(Box::new(metrics.http_duration.clone()))?;
        r.register(Box::new(metrics.http_in_progress.clone()))?;
        r.register(Box::new(metrics.cache_hits.clone()))?;
        r.register(Box::new(metrics.engine_loads.clone()))?;
        r.register(Box::new(metrics.cache_misses.clone()))?;
        r.register(Box::new(metrics.db_connections.clone()))?;
        r.register(Box::new(metrics.db_max_connections.clone()))?;
        r.register(Box::new(metrics.publish_failures.clone()))?;
        r.register(Box::new(metrics.analytics_lag.clone()))?;
        r.register(Box::new(metrics.native_counted.clone()))?;
        r.register(Box::new(metrics.native_pending.clone()))?;
        r.register(Box::new(metrics.rate_limited.clone()))?;
        r.register(Box::new(metrics.webhook_deliveries.clone()))?;
        r.register(Box::new(metrics.webhook_duration.clone()))?;
        // CPU, memory, open files, threads, start time (Linux).
        r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        Ok(metrics)
    }

    /// The text exposition format, with the pool's and the analytics tally's figures as of now.
    pub fn render(&self, db: &Db, tally: Option<&crate::analytics::Tally>) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail on I/O; a failure would be a registry bug.
        if let Err(e) = self.render_to(db, tally, &mut out) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// [`Metrics::render`], written to `out` as it is encoded: a scrape of a few hundred
    /// endpoints' series is a megabyte of text that need not exist at once (see
    /// `http::health`, which streams it).
    pub fn render_to(
        &self,
        db: &Db,
        tally: Option<&crate::analytics::Tally>,
        out: &mut dyn std::io::Write,
    ) -> prometheus::Result<()> {
        let size = i64::from(db.size());
        let idle = i64::try_from(db.num_idle()).unwrap_or(i64::MAX);
        self.native.each(|shard| shard.fold(&self.mock));
        self.db_connections.with_label_values(&["idle"]).set(idle);
        self.db_connections.with_label_values(&["in_use"]).set(size - idle);
        // The tally keeps its own totals (the hot path touches no registry); the counters
        // catch up to them at each scrape, so they stay counters for rate().
        if let Some(tally) = tally {
            let (counted, dropped) = tally.totals();
            for (outcome, total) in [("counted", counted), ("dropped", dropped)] {
                let counter = self.native_counted.with_label_values(&[outcome]);
                counter.inc_by(total.saturating_sub(counter.get()));
            }
            self.native_pending.set(i64::try_from(tally.pending_rows()).unwrap_or(i64::MAX));
        }
        TextEncoder::new().encode(&self.registry.gather(), &mut &mut *out)?;
        self.render_mock_series(out)?;
        Ok(())
    }

    /// The `mock_*` families in the text exposition format, written series by series.
    fn render_mock_series(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        use std::fmt::Write as _;
        // Copied out, then written with the lock released: `out` may block on a slow scraper
        // (`http::health` sends its chunks through a channel of two), and the edge's
        // analytics ingest counts into these series meanwhile.
        let mut sorted: Vec<(String, Totals)> =
            lock(&self.mock).iter().map(|(key, totals)| (key.labels(), *totals)).collect();
        if sorted.is_empty() {
            return Ok(());
        }
        // Sorted, as the registry's own series are: a scrape reads the same twice.
        sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut text = String::with_capacity(4096);
        text.push_str(
            "# HELP mock_requests_total Mock answers, at the edge (from analytics) and in the \
             native runtime\n# TYPE mock_requests_total counter\n",
        );
        for (labels, totals) in &sorted {
            let _ = writeln!(text, "mock_requests_total{{{labels}}} {}", totals.count);
            flush_past(&mut text, out)?;
        }
        text.push_str(
            "# HELP mock_response_duration_seconds Time to produce a mock answer, delays and \
             proxying included\n# TYPE mock_response_duration_seconds histogram\n",
        );
        for (labels, totals) in &sorted {
            let mut cumulative = 0u64;
            for (bound, count) in BUCKETS.iter().zip(totals.buckets) {
                cumulative += count;
                let _ = writeln!(
                    text,
                    "mock_response_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let count = totals.count;
            let _ = writeln!(
                text,
                "mock_response_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}\n\
                 mock_response_duration_seconds_sum{{{labels}}} {}\n\
                 mock_response_duration_seconds_count{{{labels}}} {count}",
                totals.sum
            );
            flush_past(&mut text, out)?;
        }
        out.write_all(text.as_bytes())
    }

    /// The guard counts the request as in progress until it drops.
    pub fn start(&self, method: &str, route: &str) -> InProgress {
        let gauge = self.http_in_progress.with_label_values(&[method, route]);
        gauge.inc();
        InProgress(gauge)
    }

    pub fn observe_http(
        &self,
        method: &str,
        route: &str,
        status: u16,
        workspace: &str,
        took: Duration,
    ) {
        let status = status_label(status);
        let labels = [method, route, status.as_str(), workspace];
        self.http_requests.with_label_values(&labels).inc();
        self.http_duration.with_label_values(&labels).observe(took.as_secs_f64());
    }

    /// A native mock request (`route` one of the native runtime's templates): in
    /// `http_requests_in_progress` until [`NativeRequest::done`] counts it, or until it is
    /// dropped (a request whose client went away).
    pub fn native_request(&self, method: &'static str, route: &'static str) -> NativeRequest<'_> {
        self.native.mine().move_in_progress(self, method, route, 1);
        NativeRequest { metrics: self, method, route, done: false }
    }

    pub fn observe_mock(&self, labels: MockLabels<'_>, took: Duration) {
        let key = SeriesKey {
            runtime: if labels.runtime == "edge" { "edge" } else { "native" },
            api: labels.api.into(),
            method: method_label(labels.method),
            endpoint: labels.endpoint.into(),
            status: status_key(labels.status),
        };
        lock(&self.mock).entry(key).or_default().observe(took.as_secs_f64());
    }

    /// Removes every `mock_*` series of the API `slug` (edge and native): an API that is
    /// deleted must not keep its series, or APIs that come and go (a CI pipeline's, one per
    /// run) grow the registry, and every scrape, without bound. A later API of the same slug
    /// starts from zero, as a new series does.
    pub fn forget_api(&self, slug: &str) {
        // The shards first: folded after the removal, their counts would bring it back.
        self.native.each(|shard| shard.mock.retain(|_, series| &*series.key.api != slug));
        lock(&self.mock).retain(|key, _| &*key.api != slug);
    }

    /// One webhook attempt. `event` is one of `webhooks::EVENTS` (the delivery loop only sends
    /// those), `outcome` `delivered`, `retrying` or `failed`.
    pub fn observe_webhook(&self, event: &str, outcome: &str, took: Duration) {
        let labels = [event, outcome];
        self.webhook_deliveries.with_label_values(&labels).inc();
        self.webhook_duration.with_label_values(&labels).observe(took.as_secs_f64());
    }

    /// The counter the publisher increments on a failed attempt.
    pub fn publish_failures(&self) -> prometheus::IntCounter {
        self.publish_failures.clone()
    }

    /// Sets the analytics lag from the newest event of a stored batch.
    pub fn analytics_lag(&self, seconds: f64) {
        self.analytics_lag.set(seconds.max(0.0));
    }

    /// A 429, by `scope`: `client` (admin API) or `workspace` (native runtime).
    pub fn rate_limited(&self, scope: &str) {
        self.rate_limited.with_label_values(&[scope]).inc();
    }

    /// Adds the Redis series (`REDIS_URL` is set).
    pub fn register_redis(&self) -> anyhow::Result<()> {
        self.registry.register(Box::new(self.redis_up.clone()))?;
        self.registry.register(Box::new(self.redis_errors.clone()))?;
        Ok(())
    }

    pub fn redis_up(&self, up: bool) {
        self.redis_up.set(i64::from(up));
    }

    /// A failed Redis call; `operation` is one of the fixed names in the help text.
    pub fn redis_error(&self, operation: &'static str) {
        self.redis_errors.with_label_values(&[operation]).inc();
    }

    /// A lookup in `cache` (`engine`, `redis`): every native mock request makes one.
    pub fn cache(&self, cache: &'static str, hit: bool) {
        // Each series only once it counts something (a cache that never missed shows no
        // misses series, as before).
        let mut shard = self.native.mine();
        let (_, pending) = shard.caches.entry((address(cache), hit)).or_insert_with(|| {
            let vec = if hit { &self.cache_hits } else { &self.cache_misses };
            (vec.with_label_values(&[cache]), 0)
        });
        *pending += 1;
    }

    /// One API compiled by the native runtime from a snapshot of `source` (`database` or
    /// `redis`): compiling is the expensive part of a cache miss, so a rate that keeps up
    /// means the cache is too small or the APIs change all the time.
    pub fn engine_loaded(&self, source: &'static str) {
        self.engine_loads.with_label_values(&[source]).inc();
    }
}

/// A thread's counts of the native runtime's series (see [`crate::shards`]), by label
/// values (the addresses of labels the compiled API holds: no text is hashed or compared).
/// Finding a series in a prometheus vector hashes its labels and takes a lock every thread
/// shares, and each update of a shared series is an atomic write to a line every core
/// writes; a shard's series are local copies ([`LocalIntCounter`], [`LocalHistogram`],
/// [`Totals`]), added to the process's series when a scrape folds the shards
/// ([`Shard::fold`]). A shard folds and empties its mock series past [`Shard::MAX`], so APIs
/// and endpoints that come and go cannot grow it without bound.
#[derive(Default)]
struct Shard {
    in_progress: HashMap<(Label, Label), Pending>,
    http: HashMap<(Label, Label, u16), (LocalIntCounter, LocalHistogram)>,
    mock: HashMap<MockKey, MockSeries>,
    caches: HashMap<(Label, bool), (IntCounter, u64)>,
}

/// A label by [`address`].
type Label = (usize, usize);

/// `http_requests_in_progress` of one route, and how far this thread moved it since the
/// last fold (a request may start on one thread and end on another: the sum is right).
struct Pending {
    gauge: IntGauge,
    delta: i64,
}

impl Pending {
    fn new(metrics: &Metrics, method: &str, route: &str) -> Self {
        Self { gauge: metrics.http_in_progress.with_label_values(&[method, route]), delta: 0 }
    }
}

#[derive(PartialEq, Eq, Hash)]
struct MockKey {
    api: Label,
    method: Label,
    endpoint: Label,
    status: u16,
}

/// A shard's counts of one `mock_*` series since the last fold.
struct MockSeries {
    /// Its labels; the [`MockKey`] points into them, and they keep their addresses theirs.
    key: SeriesKey,
    totals: Totals,
}

/// The labels of a `mock_*` series.
///
/// These two families are the only ones whose series grow with the mocks (one per API,
/// endpoint and status, at the edge and here), and they are kept as plain counts rather
/// than prometheus vectors: a prometheus series is a counter and a histogram, each with its
/// label pairs as protobuf messages, about 4 KB for the pair, and every scrape copied them
/// all into new messages before encoding them. At 500 endpoints that was 2 MB held and 3 MB
/// more at each scrape, of a native runtime bounded at 32 MiB; here a series is its labels
/// and 16 numbers, written straight out as text ([`Metrics::render_to`]).
#[derive(Clone, PartialEq, Eq, Hash)]
struct SeriesKey {
    runtime: &'static str,
    api: Arc<str>,
    method: &'static str,
    endpoint: Arc<str>,
    /// 0 for a status that is not one (labelled `other`).
    status: u16,
}

impl SeriesKey {
    /// The label set as the text format writes it, names in order.
    fn labels(&self) -> String {
        let mut text = String::with_capacity(64 + self.api.len() + self.endpoint.len());
        text.push_str("api=\"");
        escape_into(&mut text, &self.api);
        text.push_str("\",endpoint=\"");
        escape_into(&mut text, &self.endpoint);
        text.push_str("\",method=\"");
        text.push_str(self.method);
        text.push_str("\",runtime=\"");
        text.push_str(self.runtime);
        text.push_str("\",status=\"");
        if self.status == 0 {
            text.push_str("other");
        } else {
            text.push_str(itoa::Buffer::new().format(self.status));
        }
        text.push('"');
        text
    }
}

/// A label value in the text format: backslash, double quote and line feed escaped.
fn escape_into(text: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => text.push_str("\\\\"),
            '"' => text.push_str("\\\""),
            '\n' => text.push_str("\\n"),
            c => text.push(c),
        }
    }
}

/// Writes `text` to `out` and empties it once it holds 32 KB: a scrape of thousands of
/// series never holds all of its text at once.
fn flush_past(text: &mut String, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    if text.len() >= 32 * 1024 {
        out.write_all(text.as_bytes())?;
        text.clear();
    }
    Ok(())
}

/// A status as a [`SeriesKey`] keeps it, 0 for `other`: only real status codes (anything
/// else would be a label a client chose).
fn status_key(status: u16) -> u16 {
    if (100..=599).contains(&status) { status } else { 0 }
}

/// A series' counts: answers per latency bucket (not cumulative: the text format adds them
/// up), answers, and seconds in all.
#[derive(Clone, Copy, Default)]
struct Totals {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Totals {
    fn observe(&mut self, seconds: f64) {
        // Upper bounds are inclusive (`le`); slower than the last goes only into +Inf.
        if let Some(i) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }

    fn add(&mut self, other: &Self) {
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum += other.sum;
    }
}

impl Shard {
    const MAX: usize = 10_000;

    /// Moves `http_requests_in_progress` of `method` and `route` by `by` in this shard. An
    /// entry, not a lookup: a request may end on another thread than it started on.
    fn move_in_progress(&mut self, metrics: &Metrics, method: &str, route: &str, by: i64) {
        let key = (address(method), address(route));
        self.in_progress
            .entry(key)
            .or_insert_with(|| Pending::new(metrics, method, route))
            .delta += by;
    }

    /// Adds this shard's counts to the process's series (the `mock_*` ones into `mock`), and
    /// starts counting from zero.
    fn fold(&mut self, mock: &std::sync::Mutex<HashMap<SeriesKey, Totals>>) {
        for pending in self.in_progress.values_mut() {
            pending.gauge.add(std::mem::take(&mut pending.delta));
        }
        for (count, time) in self.http.values_mut() {
            count.flush();
            time.flush();
        }
        if self.mock.values().any(|series| series.totals.count > 0) {
            let mut mock = lock(mock);
            for series in self.mock.values_mut().filter(|series| series.totals.count > 0) {
                mock.entry(series.key.clone()).or_default().add(&series.totals);
                series.totals = Totals::default();
            }
        }
        for (counter, pending) in self.caches.values_mut() {
            counter.inc_by(std::mem::take(pending));
        }
    }
}

/// A native mock request being answered ([`Metrics::native_request`]).
#[derive(Debug)]
pub struct NativeRequest<'m> {
    metrics: &'m Metrics,
    method: &'static str,
    route: &'static str,
    done: bool,
}

/// What a native mock answer is counted under in the `mock_*` series.
#[derive(Debug, Clone, Copy)]
pub struct NativeMock<'a> {
    /// The API's slug, or `-` when no API has that slug.
    pub api: &'a Arc<str>,
    /// The matched endpoint as `METHOD pattern`, or `-`.
    pub endpoint: &'a Arc<str>,
}

impl NativeRequest<'_> {
    /// The answer: out of `http_requests_in_progress`, into `http_requests_*` under the
    /// route and into `mock_*` under the API and endpoint; one lock for all of it.
    pub fn done(mut self, status: u16, took: Duration, mock: NativeMock<'_>) {
        self.done = true;
        let metrics = self.metrics;
        let (method, route) = (self.method, self.route);
        let seconds = took.as_secs_f64();
        let mut guard = metrics.native.mine();
        let shard = &mut *guard;
        shard.move_in_progress(metrics, method, route, -1);
        let (method_key, route_key) = (address(method), address(route));
        let (count, time) =
            shard.http.entry((method_key, route_key, status)).or_insert_with(|| {
                let status = status_label(status);
                let labels = [method, route, status.as_str(), ""];
                (
                    metrics.http_requests.with_label_values(&labels).local(),
                    metrics.http_duration.with_label_values(&labels).local(),
                )
            });
        count.inc();
        time.observe(seconds);
        if shard.mock.len() >= Shard::MAX {
            shard.fold(&metrics.mock);
            shard.mock.clear();
        }
        let key = MockKey {
            api: address(mock.api),
            method: method_key,
            endpoint: address(mock.endpoint),
            status,
        };
        let series = shard.mock.entry(key).or_insert_with(|| MockSeries {
            key: SeriesKey {
                runtime: "native",
                api: mock.api.clone(),
                method: method_label(method),
                endpoint: mock.endpoint.clone(),
                status: status_key(status),
            },
            totals: Totals::default(),
        });
        series.totals.observe(seconds);
    }
}

impl Drop for NativeRequest<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.metrics.native.mine().move_in_progress(self.metrics, self.method, self.route, -1);
    }
}

/// Decrements `http_requests_in_progress` when the request is done, however it ends.
#[derive(Debug)]
pub struct InProgress(prometheus::IntGauge);

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn status_label(status: u16) -> String {
    match status_key(status) {
        0 => "other".to_owned(),
        status => status.to_string(),
    }
}

/// A method as a label: the standard ones, `other` for the rest (a client can send any
/// token as a method).
pub fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "ANY" => "ANY",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::{Metrics, NativeMock};

    fn scrape(metrics: &Metrics) -> String {
        metrics.native.each(|shard| shard.fold(&metrics.mock));
        let mut out = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &metrics.registry.gather(),
            &mut out,
        )
        .unwrap();
        metrics.render_mock_series(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn threads_count_apart_and_a_scrape_sees_it_all() {
        let metrics = Arc::new(Metrics::new(1).unwrap());
        let (api, endpoint): (Arc<str>, Arc<str>) = (Arc::from("shop"), Arc::from("GET /x"));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (metrics, api, endpoint) = (metrics.clone(), api.clone(), endpoint.clone());
                std::thread::spawn(move || {
                    for _ in 0..250 {
                        let request = metrics.native_request("GET", "/mock/{api}/{*path}");
                        let mock = NativeMock { api: &api, endpoint: &endpoint };
                        request.done(200, Duration::from_micros(300), mock);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // A request that started on this thread and whose client left on another.
        let started = metrics.native_request("GET", "/mock/{api}/{*path}");
        let text = scrape(&metrics);
        let in_progress = "http_requests_in_progress{method=\"GET\",route=\"/mock/{api}/{*path}\"}";
        assert_eq!(line(&text, in_progress), Some(&*format!("{in_progress} 1")));
        std::thread::scope(|s| {
            s.spawn(move || drop(started));
        });
        let text = scrape(&metrics);
        assert_eq!(line(&text, in_progress), Some(&*format!("{in_progress} 0")));
        let mock = "mock_requests_total{api=\"shop\",endpoint=\"GET /x\",method=\"GET\",runtime=\"native\",status=\"200\"}";
        assert_eq!(line(&text, mock), Some(&*format!("{mock} 1000")));
        let bucket = "mock_response_duration_seconds_bucket{api=\"shop\",endpoint=\"GET /x\",method=\"GET\",runtime=\"native\",status=\"200\",le=\"0.0005\"}";
        assert_eq!(line(&text, bucket), Some(&*format!("{bucket} 1000")));
        // A second scrape adds nothing twice.
        assert_eq!(line(&scrape(&metrics), mock), Some(&*format!("{mock} 1000")));
        // A deleted API's series go, from the shards too.
        metrics.forget_api("shop");
        assert_eq!(line(&scrape(&metrics), "mock_requests_total{"), None);
    }

    /// The `mock_*` text is what the text format wants: cumulative buckets, escaped label
    /// values, `other` for a status that is not one, and no series twice.
    #[test]
    fn mock_series_are_written_as_the_text_format_wants() {
        let metrics = Metrics::new(1).unwrap();
        let labels = |status| super::MockLabels {
            runtime: "edge",
            api: "a\\b",
            method: "GET",
            endpoint: "GET /say/\"hi\"\n",
            status,
        };
        metrics.observe_mock(labels(200), Duration::from_micros(300));
        metrics.observe_mock(labels(200), Duration::from_millis(3));
        metrics.observe_mock(labels(200), Duration::from_secs(11));
        metrics.observe_mock(labels(999), Duration::from_millis(1));
        metrics.observe_mock(labels(1000), Duration::from_millis(1));
        let text = scrape(&metrics);
        let series = r#"api="a\\b",endpoint="GET /say/\"hi\"\n",method="GET",runtime="edge""#;
        let expect = |name: &str, extra: &str, value: &str| {
            let want = format!("{name}{{{series},{extra}}} {value}");
            assert!(text.lines().any(|l| l == want), "no line {want} in\n{text}");
        };
        expect("mock_requests_total", "status=\"200\"", "3");
        expect("mock_requests_total", "status=\"other\"", "2");
        let bucket = "mock_response_duration_seconds_bucket";
        expect(bucket, "status=\"200\",le=\"0.0005\"", "1");
        expect(bucket, "status=\"200\",le=\"0.001\"", "1");
        expect(bucket, "status=\"200\",le=\"0.005\"", "2");
        expect(bucket, "status=\"200\",le=\"10\"", "2");
        expect(bucket, "status=\"200\",le=\"+Inf\"", "3");
        expect("mock_response_duration_seconds_count", "status=\"200\"", "3");
        expect("mock_response_duration_seconds_sum", "status=\"200\"", "11.0033");
        for family in ["mock_requests_total", "mock_response_duration_seconds"] {
            let kind = text.lines().filter(|l| l.starts_with(&format!("# TYPE {family} "))).count();
            assert_eq!(kind, 1, "{family} declared once");
        }
    }

    /// A scrape writes with the series' lock released: its writer blocks on a slow scraper,
    /// and the edge's analytics ingest must go on counting meanwhile.
    #[test]
    fn a_scrape_writes_without_holding_the_series() {
        struct Probe<'m>(&'m Metrics, usize);
        impl std::io::Write for Probe<'_> {
            fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
                assert!(self.0.mock.try_lock().is_ok(), "the series are locked while writing");
                self.1 += data.len();
                Ok(data.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let metrics = Metrics::new(1).unwrap();
        let labels = super::MockLabels {
            runtime: "edge",
            api: "a",
            method: "GET",
            endpoint: "-",
            status: 200,
        };
        metrics.observe_mock(labels, Duration::from_millis(1));
        let mut probe = Probe(&metrics, 0);
        metrics.render_mock_series(&mut probe).unwrap();
        assert!(probe.1 > 0, "nothing written");
    }
}
