//! Analytics without loss: one event per mock request, off the hot path.
//!
//! 1. While a request is served, [`Facts`] collects what the edge learnt (API, endpoint,
//!    proxy, dedup, cache, validation, near miss); `lib.rs` completes it with the status,
//!    sizes and latency, and hands the event to the `ANALYTICS` Cloudflare Queue inside
//!    `ctx.waitUntil`, after the response is on its way.
//! 2. The same Worker consumes the queue ([`consume`]): batches of up to 100 events are
//!    posted to the control plane's `POST /internal/v1/analytics`. A batch is acknowledged
//!    only when the control plane has stored it; otherwise every message is retried with a
//!    back-off that grows with the event's age (1 s up to 60 s), so a control plane that is
//!    down for minutes gets every event once it is back. The queue allows 100 retries, about
//!    an hour and a half of outage; after that an event goes to the dead-letter queue
//!    (`edgemock-analytics-dlq`), where it is kept for inspection, never dropped silently.
//! 3. Each event carries its own id; the control plane stores an id once, so the queue's
//!    at-least-once delivery and our retries never count an event twice.
//!
//! Events are sent only when `CONTROL_PLANE_URL` and `EDGE_PUBLISH_TOKEN` are set (there is
//! nowhere to deliver them otherwise) and the `ANALYTICS` binding exists.

use edgemock_shared::analytics::{
    AnalyticsBatch, AnalyticsEvent, CacheOutcome, Protocol, retry_delay_seconds,
};
use futures_util::future::{Either, select};
use std::time::Duration;
use worker::{
    AbortController, Context, Date, Delay, Env, Fetch, Headers, MessageBatch, MessageExt, Method,
    QueueContentType, QueueRetryOptionsBuilder, RequestInit,
};

use crate::config::Config;

/// The queue binding events go through.
pub const QUEUE_BINDING: &str = "ANALYTICS";

/// How long the consumer waits for the control plane before it retries the batch.
const INGEST_TIMEOUT_MS: u64 = 15_000;

/// What the edge learnt about one mock request while serving it.
#[derive(Debug)]
pub struct Facts {
    /// Set once the API is known; requests for unknown APIs are not counted (they belong to
    /// no workspace).
    pub api: Option<ApiFacts>,
    pub protocol: Protocol,
    pub method: String,
    pub path: String,
    pub endpoint: Option<(String, String)>,
    pub proxied: bool,
    pub deduplicated: bool,
    pub cache: CacheOutcome,
    pub validation_failed: bool,
    pub near_miss: Option<String>,
    pub snapshot_source: Option<&'static str>,
    pub request_bytes: u64,
    /// The response body's size when the edge built it (otherwise `Content-Length`).
    pub response_bytes: Option<u64>,
}

#[derive(Debug)]
pub struct ApiFacts {
    pub workspace_id: String,
    pub api_id: String,
    pub api_slug: String,
}

impl Default for Facts {
    fn default() -> Self {
        Self {
            api: None,
            protocol: Protocol::Rest,
            method: String::new(),
            path: String::new(),
            endpoint: None,
            proxied: false,
            deduplicated: false,
            cache: CacheOutcome::Bypass,
            validation_failed: false,
            near_miss: None,
            snapshot_source: None,
            request_bytes: 0,
            response_bytes: None,
        }
    }
}

/// Where the client was, from `request.cf` (absent fields stay `None`; read through
/// `Reflect` so that a missing field can never panic).
#[derive(Debug, Default)]
pub struct Location {
    pub country: Option<String>,
    pub city: Option<String>,
    pub colo: Option<String>,
}

impl Location {
    pub fn of(req: &worker::Request) -> Self {
        use worker::js_sys::Reflect;
        let Ok(cf) = Reflect::get(req.inner().as_ref(), &"cf".into()) else {
            return Self::default();
        };
        if !cf.is_object() {
            return Self::default();
        }
        let field = |name: &str| Reflect::get(&cf, &name.into()).ok().and_then(|v| v.as_string());
        Self { country: field("country"), city: field("city"), colo: field("colo") }
    }
}

/// The request, as the event describes it: arrival time, id and location.
#[derive(Debug)]
pub struct Arrival {
    pub id: String,
    pub request_id: String,
    pub at_ms: u64,
    pub location: Location,
}

impl Facts {
    /// The event, if this request belongs to an API.
    pub fn into_event(
        self,
        arrival: Arrival,
        status: u16,
        response_bytes: Option<u64>,
        now_ms: u64,
    ) -> Option<AnalyticsEvent> {
        let api = self.api?;
        let (endpoint_method, endpoint_pattern) = self.endpoint.unzip();
        let event = AnalyticsEvent {
            id: arrival.id,
            request_id: arrival.request_id,
            timestamp_ms: i64::try_from(arrival.at_ms).unwrap_or(i64::MAX),
            source: "edge".to_owned(),
            workspace_id: api.workspace_id,
            api_id: api.api_id,
            api_slug: api.api_slug,
            protocol: self.protocol,
            endpoint_method,
            endpoint_pattern,
            method: self.method,
            path: self.path,
            status,
            latency_ms: u32::try_from(now_ms.saturating_sub(arrival.at_ms)).unwrap_or(u32::MAX),
            request_bytes: self.request_bytes,
            response_bytes: self.response_bytes.or(response_bytes).unwrap_or(0),
            country: arrival.location.country,
            city: arrival.location.city,
            colo: arrival.location.colo,
            proxied: self.proxied,
            deduplicated: self.deduplicated,
            cache: self.cache,
            validation_failed: self.validation_failed,
            near_miss: self.near_miss,
            snapshot_source: self.snapshot_source.map(str::to_owned),
        };
        Some(event.clamped())
    }
}

/// Queues `event` after the response has gone out (`waitUntil`); a failed send is tried once
/// more and then logged, since the request itself has been answered already.
pub fn send(env: &Env, ctx: &Context, config: &Config, event: AnalyticsEvent) {
    if config.control_plane_url.is_none() || config.publish_token.is_none() {
        return;
    }
    let Ok(queue) = env.queue(QUEUE_BINDING) else { return };
    let Ok(text) = serde_json::to_string(&event) else { return };
    ctx.wait_until(async move {
        for attempt in 1..=2 {
            let message = worker::MessageBuilder::new(text.clone())
                .content_type(QueueContentType::Text)
                .build();
            match queue.send(message).await {
                Ok(()) => return,
                Err(e) if attempt == 2 => {
                    worker::console_error!("analytics event {} was not queued: {e}", event.id);
                }
                Err(_) => {}
            }
        }
    });
}

/// The queue consumer: delivers a batch to the control plane, acknowledging it only once
/// stored. Never fails as a whole (a failing handler would reset the instance); every
/// message is acknowledged or retried explicitly.
pub async fn consume(batch: MessageBatch<String>, env: Env) {
    let config = Config::from_env(&env);
    let mut events = Vec::new();
    let mut messages = Vec::new();
    for message in batch.raw_iter() {
        let event = message
            .body()
            .as_string()
            .and_then(|text| serde_json::from_str::<AnalyticsEvent>(&text).ok());
        match event {
            Some(event) => {
                events.push(event);
                messages.push(message);
            }
            None => {
                // Unreadable by this build: retried until it reaches the dead-letter queue,
                // where it can be inspected; never acknowledged and lost.
                worker::console_error!("analytics message {} is unreadable", message.id());
                message.retry();
            }
        }
    }
    if events.is_empty() {
        return;
    }
    let count = events.len();
    match deliver(&config, AnalyticsBatch { events }).await {
        Ok(()) => messages.iter().for_each(MessageExt::ack),
        Err(why) => {
            worker::console_warn!("analytics: {count} events not delivered, will retry: {why}");
            let now = Date::now().as_millis();
            for message in &messages {
                let age_seconds = now.saturating_sub(message.timestamp().as_millis()) / 1000;
                let options = QueueRetryOptionsBuilder::new()
                    .with_delay_seconds(retry_delay_seconds(age_seconds));
                message.retry_with_options(&options.build());
            }
        }
    }
}

async fn deliver(config: &Config, batch: AnalyticsBatch) -> Result<(), String> {
    let (Some(base), Some(token)) = (&config.control_plane_url, &config.publish_token) else {
        return Err("CONTROL_PLANE_URL or EDGE_PUBLISH_TOKEN is not set".to_owned());
    };
    let body = serde_json::to_string(&batch).map_err(|e| e.to_string())?;
    let headers = Headers::new();
    let fail = |e: worker::Error| e.to_string();
    headers.set("authorization", &format!("Bearer {token}")).map_err(fail)?;
    headers.set("content-type", "application/json").map_err(fail)?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers).with_body(Some(body.into()));
    let url = format!("{base}/internal/v1/analytics");
    let request = worker::Request::new_with_init(&url, &init).map_err(fail)?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Fetch::Request(request);
    let sent = Box::pin(fetch.send_with_signal(&signal));
    let timer = Box::pin(Delay::from(Duration::from_millis(INGEST_TIMEOUT_MS)));
    let mut response = match select(sent, timer).await {
        Either::Left((Ok(response), _)) => response,
        Either::Left((Err(e), _)) => return Err(format!("{url}: {e}")),
        Either::Right(_) => {
            controller.abort();
            return Err(format!("{url}: no answer within {INGEST_TIMEOUT_MS} ms"));
        }
    };
    let status = response.status_code();
    if (200..300).contains(&status) {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    Err(format!("{url} answered {status}: {}", edgemock_shared::analytics::clamp(&text, 300)))
}
