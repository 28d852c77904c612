//! Logs and traces: `tracing` with JSON lines in production and readable lines in a terminal;
//! with `OTEL_EXPORTER_OTLP_ENDPOINT` set, the same spans leave as OpenTelemetry traces over
//! OTLP/HTTP (protobuf).
//!
//! - **Off** (no endpoint, the default): [`start`] installs exactly the log subscriber of
//!   [`init`], no OpenTelemetry layer, and [`traces_enabled`] is false, so the router builds
//!   the request span it always did and no request pays for traces.
//! - **On**: a second layer, `tracing-opentelemetry`, turns spans into OpenTelemetry spans
//!   (events inside them become span events). The request span becomes the trace's server span
//!   ([`server_spans`]): named by method and matched route (`GET /api/v1/apis/{api}`), with the
//!   HTTP semantic conventions' attributes, continuing the caller's W3C `traceparent`, and with
//!   its trace id as a field (`trace_id`), so every log line of the request carries it. Logs
//!   keep `LOG_LEVEL`; spans and events at `info` and above are exported whatever it says.
//! - **Export**: the SDK's batch span processor (a span's end is a non-blocking push onto a
//!   bounded queue; when full, spans are dropped), the OTLP exporter, and [`OnTokio`], which
//!   sends its requests on the tokio runtime with reqwest and rustls as the rest of the
//!   control plane does. A collector that is down costs nothing but a warning at most once a
//!   minute ([`Reporting`]). At shutdown, [`Telemetry::shutdown`] sends what is queued, waiting
//!   at most [`FLUSH_TIMEOUT`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::MatchedPath;
use bytes::Bytes;
use opentelemetry::trace::{Status, TraceContextExt, TracerProvider};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter,
};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{DefaultOnRequest, DefaultOnResponse, MakeSpan, OnResponse, TraceLayer};
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{self, Config, LogFormat, Traces};

/// How long [`Telemetry::shutdown`] waits for the last spans to leave.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// Export failures are logged at most this often.
const REPORT_EVERY: Duration = Duration::from_secs(60);
/// How much of a collector's answer is read (it is an `ExportTraceServiceResponse`: bytes).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Set once, when [`start`] installed the OpenTelemetry layer.
static TRACES: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported: the router asks once, when it is built.
pub fn traces_enabled() -> bool {
    TRACES.load(Ordering::Relaxed)
}

/// Installs the global subscriber, logs only. A bad `LOG_LEVEL` falls back to `info` with a
/// warning rather than stopping the process.
pub fn init(level: &str, format: LogFormat) {
    let (filter, bad) = log_filter(level);
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    if let Some(e) = bad {
        tracing::warn!(level, error = %e, "LOG_LEVEL is not a valid filter; using info");
    }
}

fn log_filter(level: &str) -> (EnvFilter, Option<tracing_subscriber::filter::ParseError>) {
    match EnvFilter::try_new(level) {
        Ok(filter) => (filter, None),
        Err(e) => (EnvFilter::new("info"), Some(e)),
    }
}

/// What [`start`] set up; [`Telemetry::shutdown`] flushes it.
#[derive(Debug)]
#[must_use = "call shutdown at exit, or the spans still queued are lost"]
pub struct Telemetry {
    provider: Option<(SdkTracerProvider, Arc<Mutex<Health>>)>,
}

/// Installs the global subscriber for `edgemock serve`: the logs of [`init`] and, when
/// `config.traces` is set, the OpenTelemetry layer. Must run inside the tokio runtime (the
/// exporter sends on it).
pub fn start(config: &Config) -> anyhow::Result<Telemetry> {
    let Some(traces) = &config.traces else {
        init(&config.log_level, config.log_format);
        return Ok(Telemetry { provider: None });
    };
    let (provider, health) = tracer_provider(traces)?;
    let tracer = provider.tracer_with_scope(
        InstrumentationScope::builder("edgemock-control-plane")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    );
    let (filter, bad) = log_filter(&config.log_level);
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match config.log_format {
        LogFormat::Json => logs.json().flatten_event(true).with_filter(filter).boxed(),
        LogFormat::Pretty => logs.with_filter(filter).boxed(),
    };
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_filter(span_filter());
    if tracing_subscriber::registry().with(logs).with(spans).try_init().is_err() {
        // Someone installed a subscriber first (only tests do): it will not see traces.
        let _ = provider.shutdown();
        tracing::warn!("a tracing subscriber was already installed: traces are not exported");
        return Ok(Telemetry { provider: None });
    }
    TRACES.store(true, Ordering::Relaxed);
    if let Some(e) = bad {
        tracing::warn!(level = %config.log_level, error = %e, "LOG_LEVEL is not a valid filter; using info");
    }
    tracing::info!(
        endpoint = %config::redact_url(&traces.endpoint),
        service = %traces.service_name,
        sampler = ?traces.sampler,
        "exporting traces over OTLP/HTTP"
    );
    Ok(Telemetry { provider: Some((provider, health)) })
}

/// What becomes part of a trace, whatever `LOG_LEVEL` says: edgemock's spans and events at
/// `info` and above; other crates' warnings and errors, as events of the span they happen in.
/// (Others' `info` spans stay out: aide, for one, opens hundreds while the router is built.)
fn span_filter() -> tracing_subscriber::filter::Targets {
    use tracing::Level;
    tracing_subscriber::filter::Targets::new()
        .with_default(Level::WARN)
        .with_target("edgemock", Level::INFO)
}

impl Telemetry {
    /// Sends the spans still queued, waiting at most [`FLUSH_TIMEOUT`]; says so if some could
    /// not leave (a collector that is down cannot delay the exit for longer).
    pub async fn shutdown(self) {
        let Some((provider, health)) = self.provider else { return };
        let (done, finished) = tokio::sync::oneshot::channel();
        // The SDK's shutdown blocks: on a thread of its own, which cannot hold up a runtime
        // worker, nor the runtime's own shutdown if it overruns.
        let flush = std::thread::Builder::new().name("otel-shutdown".to_owned()).spawn(move || {
            let _ = done.send(provider.shutdown_with_timeout(FLUSH_TIMEOUT));
        });
        if let Err(e) = flush {
            tracing::warn!(error = %e, "traces: cannot flush the spans still queued");
            return;
        }
        match tokio::time::timeout(FLUSH_TIMEOUT + Duration::from_secs(1), finished).await {
            // The SDK's shutdown does not say whether its last export failed; Reporting does.
            Ok(Ok(Ok(()))) if health.lock().is_ok_and(|h| h.failed_exports > 0) => {
                tracing::warn!(
                    "traces: spans still queued at shutdown were refused by the OTLP endpoint"
                );
            }
            Ok(Ok(Ok(()))) => tracing::info!("traces: the spans still queued were sent"),
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, "traces: spans still queued at shutdown may be lost");
            }
            Ok(Err(_)) | Err(_) => tracing::warn!(
                timeout = ?FLUSH_TIMEOUT,
                "traces: spans still queued at shutdown could not be sent in time"
            ),
        }
    }
}

fn tracer_provider(traces: &Traces) -> anyhow::Result<(SdkTracerProvider, Arc<Mutex<Health>>)> {
    let health = Arc::new(Mutex::new(Health::default()));
    let client = reqwest::Client::builder()
        .timeout(traces.timeout)
        .user_agent(concat!("edgemock/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build the OTLP HTTP client")?;
    let runtime = tokio::runtime::Handle::try_current()
        .context("the OTLP exporter must be set up inside the tokio runtime")?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(OnTokio { client, runtime, health: health.clone() })
        .with_endpoint(traces.endpoint.clone())
        .with_protocol(Protocol::HttpBinary)
        .with_timeout(traces.timeout)
        .with_headers(traces.headers.iter().cloned().collect())
        .build()
        .context("cannot set up the OTLP span exporter")?;
    let processor =
        BatchSpanProcessor::builder(Reporting { inner: exporter, health: health.clone() })
            .with_batch_config(
                BatchConfigBuilder::default().with_scheduled_delay(traces.batch_delay).build(),
            )
            .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(sampler(traces.sampler))
        .with_resource(resource(traces))
        .build();
    Ok((provider, health))
}

fn sampler(sampler: config::Sampler) -> Sampler {
    let root = match sampler.root {
        config::RootSampler::AlwaysOn => Sampler::AlwaysOn,
        config::RootSampler::AlwaysOff => Sampler::AlwaysOff,
        config::RootSampler::Ratio(ratio) => Sampler::TraceIdRatioBased(ratio),
    };
    if sampler.parent_based { Sampler::ParentBased(Box::new(root)) } else { root }
}

/// Who is speaking: `service.name`, `service.version` (this build), `service.instance.id`
/// (new for every process), `host.name` (the pod's name in Kubernetes), `process.pid`, the
/// SDK's `telemetry.sdk.*`; then `OTEL_RESOURCE_ATTRIBUTES`, which may override any of them
/// but the name (`OTEL_SERVICE_NAME` wins, as the specification says).
fn resource(traces: &Traces) -> Resource {
    let host = rustix::system::uname().nodename().to_string_lossy().into_owned();
    Resource::builder_empty()
        .with_detector(Box::new(opentelemetry_sdk::resource::TelemetryResourceDetector))
        .with_attributes([
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            KeyValue::new("service.instance.id", uuid::Uuid::now_v7().to_string()),
            KeyValue::new("host.name", host),
            KeyValue::new("process.pid", i64::from(std::process::id())),
        ])
        .with_attributes(
            traces.resource_attributes.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .with_service_name(traces.service_name.clone())
        .build()
}

/// The request span with traces on: [`TraceLayer`] as the router has it, with the span of
/// [`ServerSpan`] and the answer's status recorded by [`ServerSpanEnd`].
pub fn server_spans()
-> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, ServerSpan, DefaultOnRequest, ServerSpanEnd>
{
    TraceLayer::new_for_http().make_span_with(ServerSpan).on_response(ServerSpanEnd)
}

/// The route template of a request that no router matched: the native runtime's mock
/// requests, which skip the router (`http::Dispatch`).
#[derive(Debug, Clone, Copy)]
pub struct Route(pub &'static str);

/// Makes a request's span a server span of the HTTP semantic conventions. The tracing span is
/// still `request` with `request_id`, `method` and `path` and the router's target, so log
/// lines read as with traces off (plus `trace_id`, `otel.name`, `otel.kind`) and `LOG_LEVEL`
/// filters it alike; the conventions' attributes go to the OpenTelemetry span only.
#[derive(Debug, Clone, Copy)]
pub struct ServerSpan;

impl<B> MakeSpan<B> for ServerSpan {
    fn make_span(&mut self, request: &http::Request<B>) -> tracing::Span {
        let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok());
        let method = semconv_method(request.method());
        // The router layers this on every route, after matching: the route is known here.
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str)
            .or_else(|| request.extensions().get::<Route>().map(|r| r.0));
        // An unknown method names the span `HTTP`, as the conventions say.
        let named = if method == "_OTHER" { "HTTP" } else { method };
        let name = match route {
            Some(route) => format!("{named} {route}"),
            None => named.to_owned(),
        };
        let path = request.uri().path();
        let span = tracing::info_span!(
            target: "edgemock_control_plane::http",
            "request",
            request_id = id.unwrap_or_default(),
            method = %request.method(),
            path,
            trace_id = Empty,
            otel.name = name,
            otel.kind = "server",
        );
        if span.is_disabled() {
            return span;
        }
        span.set_attribute("http.request.method", method);
        if method == "_OTHER" {
            span.set_attribute("http.request.method_original", request.method().to_string());
        }
        if let Some(route) = route {
            span.set_attribute("http.route", route.to_owned());
        }
        span.set_attribute("url.path", path.to_owned());
        span.set_attribute("url.scheme", request.uri().scheme_str().unwrap_or("http").to_owned());
        span.set_attribute("network.protocol.version", protocol_version(request.version()));
        if let Some(agent) = request.headers().get(http::header::USER_AGENT) {
            span.set_attribute("user_agent.original", agent.to_str().unwrap_or("").to_owned());
        }
        // A caller's `traceparent` (and `tracestate`): this span continues its trace.
        let caller = opentelemetry::propagation::TextMapPropagator::extract(
            &TraceContextPropagator::new(),
            &opentelemetry_http::HeaderExtractor(request.headers()),
        );
        let _ = span.set_parent(caller);
        record_trace_id(&span);
        span
    }
}

/// Records a span's OpenTelemetry trace id as its `trace_id` field (declared `Empty`), for the
/// log lines inside it. Starts the OpenTelemetry span: set its parent first.
pub fn record_trace_id(span: &tracing::Span) {
    let context = span.context();
    let trace_id = context.span().span_context().trace_id();
    if trace_id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
}

/// Records the status of a server span's answer: `http.response.status_code`, and for a 5xx
/// the error status and `error.type` (a 4xx is the client's error, not the server's: unset).
#[derive(Debug, Clone, Copy)]
pub struct ServerSpanEnd;

impl<B> OnResponse<B> for ServerSpanEnd {
    fn on_response(self, response: &http::Response<B>, latency: Duration, span: &tracing::Span) {
        DefaultOnResponse::default().on_response(response, latency, span);
        let status = response.status();
        span.set_attribute("http.response.status_code", i64::from(status.as_u16()));
        if status.is_server_error() {
            span.set_attribute("error.type", status.as_u16().to_string());
            span.set_status(Status::error(""));
        }
    }
}

/// The method as the conventions name it: the known ones as they are, others `_OTHER`.
fn semconv_method(method: &http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "_OTHER",
    }
}

fn protocol_version(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// A client span for an outgoing HTTP request of a background task (a publish, a webhook
/// delivery), or [`tracing::Span::none`] with traces off: nothing for the logs to format.
/// `name` follows the conventions: `{method} {url template}`, or the method alone.
pub fn client_span(name: &str, method: &'static str, url: &str) -> tracing::Span {
    if !traces_enabled() {
        return tracing::Span::none();
    }
    let url = reqwest::Url::parse(url).ok();
    let span = tracing::info_span!(
        "http client",
        trace_id = Empty,
        otel.name = name,
        otel.kind = "client",
        http.request.method = method,
        server.address = url.as_ref().and_then(reqwest::Url::host_str),
        server.port = url.as_ref().and_then(reqwest::Url::port_or_known_default).map(i64::from),
    );
    record_trace_id(&span);
    span
}

/// Records how a client span's request went: the answer's status, if any, and `failure` when
/// the caller counts it as failed (its own judgement: a publish takes a 409 as done, a webhook
/// a redirect as failed). A failure is the span's error status, with `error.type` the status
/// code, or `_OTHER` and the reason when nothing answered.
pub fn client_span_end(span: &tracing::Span, status: Option<u16>, failure: Option<&str>) {
    if span.is_none() {
        return;
    }
    if let Some(status) = status {
        span.set_attribute("http.response.status_code", i64::from(status));
    }
    match (status, failure) {
        (Some(status), Some(_)) => {
            span.set_attribute("error.type", status.to_string());
            span.set_status(Status::error(""));
        }
        (None, Some(failure)) => {
            span.set_attribute("error.type", "_OTHER");
            span.set_status(Status::error(failure.to_owned()));
        }
        (_, None) => {}
    }
}

/// The exporter's HTTP client: sends on the tokio runtime with reqwest, for the SDK's batch
/// thread, which only waits for the answer. Remembers why a request failed: the exporter's
/// own error says only "network error".
#[derive(Debug)]
struct OnTokio {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
    health: Arc<Mutex<Health>>,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OnTokio {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, opentelemetry_http::HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            let mut response = client.execute(request).await?;
            let status = response.status();
            let headers = std::mem::take(response.headers_mut());
            // The exporter reads only a partial-success message from the body.
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                let room = MAX_ANSWER_BYTES - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() == MAX_ANSWER_BYTES {
                    break;
                }
            }
            Ok::<_, reqwest::Error>((status, headers, body))
        });
        match sent.await {
            Ok(Ok((status, headers, body))) => {
                let mut response = http::Response::new(Bytes::from(body));
                *response.status_mut() = status;
                *response.headers_mut() = headers;
                Ok(response)
            }
            Ok(Err(e)) => {
                if let Ok(mut health) = self.health.lock() {
                    health.cause = Some(error_chain(&e));
                }
                Err(Box::new(e))
            }
            // The runtime is shutting down.
            Err(e) => Err(Box::new(e)),
        }
    }
}

/// An error with its causes (`connection refused` is three levels down in reqwest's).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// How exports have been going, for [`Reporting`].
#[derive(Debug, Default)]
struct Health {
    /// Why the last request failed, from [`OnTokio`].
    cause: Option<String>,
    /// Since exports began to fail.
    failed_exports: u64,
    lost_spans: u64,
    last_warning: Option<Instant>,
}

/// The exporter, saying when exports fail: a warning at the first failure and then at most
/// once every [`REPORT_EVERY`], with the spans lost so far, and a line when they work again.
/// The spans of a failed export are dropped (after the exporter's own retries); nothing else
/// happens, and no request waits for any of it.
#[derive(Debug)]
struct Reporting<E> {
    inner: E,
    health: Arc<Mutex<Health>>,
}

impl<E: SpanExporter> SpanExporter for Reporting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = u64::try_from(batch.len()).unwrap_or(u64::MAX);
        let result = self.inner.export(batch).await;
        let Ok(mut health) = self.health.lock() else { return result };
        match &result {
            Ok(()) if health.failed_exports > 0 => {
                tracing::info!(
                    failed_exports = health.failed_exports,
                    lost_spans = health.lost_spans,
                    "traces: the OTLP endpoint takes spans again"
                );
                *health = Health::default();
            }
            Ok(()) => {}
            Err(e) => {
                health.failed_exports += 1;
                health.lost_spans += spans;
                let cause = health.cause.take();
                if health.last_warning.is_none_or(|at| at.elapsed() >= REPORT_EVERY) {
                    health.last_warning = Some(Instant::now());
                    tracing::warn!(
                        error = %e,
                        cause,
                        failed_exports = health.failed_exports,
                        lost_spans = health.lost_spans,
                        "traces: cannot export spans to the OTLP endpoint; they are dropped \
                         (this is logged at most once a minute)"
                    );
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
