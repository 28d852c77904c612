//! The analytics event: one per mock request, built by the runtime that served it (the edge,
//! later the native runtime) and stored by the control plane's ingest route.
//!
//! Both sides use this one type, so the wire format cannot drift. Events carry their own id:
//! delivery is at least once (queues redeliver, the edge retries whole batches), and the
//! control plane stores an id once, so a retry never counts twice.
//!
//! Strings that come from the client (path, method, location) are bounded by [`clamp`] when
//! the event is built and checked by [`AnalyticsEvent::validate`] when it is ingested.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Longest path stored; longer ones are cut (on a character boundary) and end in `…`.
pub const MAX_PATH_CHARS: usize = 1024;
/// Longest value of any other text field.
pub const MAX_TEXT_CHARS: usize = 256;
/// Most events in one ingest batch (a Cloudflare Queue batch holds at most 100 messages).
pub const MAX_BATCH_EVENTS: usize = 1000;

/// Where a response came from, as far as caching goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheOutcome {
    /// Answered from the location's shared cache: the engine did not run.
    Hit,
    /// Cacheable, not in the cache yet: the engine ran and the answer was stored.
    Miss,
    /// Not cacheable (private, varying or not a plain mock answer).
    Bypass,
}

/// Which mock entry point served the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Rest,
    Graphql,
    Websocket,
}

/// One mock request, as it was answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsEvent {
    /// Unique per event (a UUID): the idempotency key of ingestion.
    pub id: String,
    /// The request id the client saw in `x-request-id`.
    pub request_id: String,
    /// When the request arrived, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Which runtime served it: `edge` or `native`.
    pub source: String,
    pub workspace_id: String,
    pub api_id: String,
    pub api_slug: String,
    pub protocol: Protocol,
    /// The matched endpoint's method and path pattern as defined (never the raw path);
    /// `None` when nothing matched.
    #[serde(default)]
    pub endpoint_method: Option<String>,
    #[serde(default)]
    pub endpoint_pattern: Option<String>,
    pub method: String,
    /// The path below `/mock/{apiSlug}`, bounded by [`MAX_PATH_CHARS`].
    pub path: String,
    pub status: u16,
    /// Time from the request's arrival to its response, delays included.
    pub latency_ms: u32,
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// Where the client was, from the platform (Cloudflare's `request.cf`).
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub city: Option<String>,
    #[serde(default)]
    pub colo: Option<String>,
    pub proxied: bool,
    pub deduplicated: bool,
    pub cache: CacheOutcome,
    /// The request failed the endpoint's JSON Schema.
    pub validation_failed: bool,
    /// For a 404: the closest endpoint, `METHOD /pattern`.
    #[serde(default)]
    pub near_miss: Option<String>,
    /// Where the runtime found the API's definition: `isolate`, `kv`, `control-plane`,
    /// `stale`.
    #[serde(default)]
    pub snapshot_source: Option<String>,
}

/// What the control plane's ingest route accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsBatch {
    pub events: Vec<AnalyticsEvent>,
}

/// `text` cut to at most `max` characters; a cut text ends in `…` so that nobody mistakes
/// it for the whole.
pub fn clamp(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Back-off bounds of a failed delivery, in seconds.
pub const MIN_RETRY_DELAY_SECONDS: u32 = 1;
pub const MAX_RETRY_DELAY_SECONDS: u32 = 60;

/// How long a sender waits before delivering an event again that is `age_seconds` old: half
/// its age, within 1 s and 60 s. Each attempt waits about half as long as the event has
/// waited already, so delays grow geometrically while the receiver stays down, and stay
/// short after a brief failure.
pub fn retry_delay_seconds(age_seconds: u64) -> u32 {
    u32::try_from(age_seconds / 2)
        .unwrap_or(u32::MAX)
        .clamp(MIN_RETRY_DELAY_SECONDS, MAX_RETRY_DELAY_SECONDS)
}

impl AnalyticsEvent {
    /// Bounds every client-controlled text, so the event is valid whatever the request was.
    pub fn clamped(mut self) -> Self {
        self.path = clamp(&self.path, MAX_PATH_CHARS);
        for text in [&mut self.method, &mut self.request_id] {
            *text = clamp(text, MAX_TEXT_CHARS);
        }
        for text in [
            &mut self.endpoint_method,
            &mut self.endpoint_pattern,
            &mut self.country,
            &mut self.city,
            &mut self.colo,
            &mut self.near_miss,
            &mut self.snapshot_source,
        ]
        .into_iter()
        .flatten()
        {
            *text = clamp(text, MAX_TEXT_CHARS);
        }
        self
    }

    /// Checks what ingestion relies on; `index` names the event in its batch.
    pub fn validate(&self, index: usize) -> Result<()> {
        let field = |name: &str| format!("events[{index}].{name}");
        if self.id.is_empty() || self.id.len() > 64 {
            return Err(Error::new(field("id"), "must be 1 to 64 characters"));
        }
        if !(100..=599).contains(&self.status) {
            return Err(Error::new(field("status"), "must be an HTTP status (100 to 599)"));
        }
        if self.timestamp_ms < 0 {
            return Err(Error::new(field("timestamp_ms"), "must not be negative"));
        }
        if !matches!(self.source.as_str(), "edge" | "native") {
            return Err(Error::new(field("source"), "must be 'edge' or 'native'"));
        }
        if self.path.chars().count() > MAX_PATH_CHARS {
            return Err(Error::new(
                field("path"),
                format!("must be at most {MAX_PATH_CHARS} characters"),
            ));
        }
        let texts = [
            ("request_id", Some(&self.request_id)),
            ("workspace_id", Some(&self.workspace_id)),
            ("api_id", Some(&self.api_id)),
            ("api_slug", Some(&self.api_slug)),
            ("method", Some(&self.method)),
            ("endpoint_method", self.endpoint_method.as_ref()),
            ("endpoint_pattern", self.endpoint_pattern.as_ref()),
            ("country", self.country.as_ref()),
            ("city", self.city.as_ref()),
            ("colo", self.colo.as_ref()),
            ("near_miss", self.near_miss.as_ref()),
            ("snapshot_source", self.snapshot_source.as_ref()),
        ];
        for (name, text) in texts {
            if text.is_some_and(|t| t.chars().count() > MAX_TEXT_CHARS) {
                return Err(Error::new(
                    field(name),
                    format!("must be at most {MAX_TEXT_CHARS} characters"),
                ));
            }
        }
        Ok(())
    }
}

impl AnalyticsBatch {
    pub fn validate(&self) -> Result<()> {
        if self.events.len() > MAX_BATCH_EVENTS {
            return Err(Error::new(
                "events",
                format!("a batch holds at most {MAX_BATCH_EVENTS} events"),
            ));
        }
        self.events.iter().enumerate().try_for_each(|(i, e)| e.validate(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn event() -> AnalyticsEvent {
        AnalyticsEvent {
            id: "0192f0c4-0000-4000-8000-000000000001".into(),
            request_id: "r1".into(),
            timestamp_ms: 1_795_000_000_000,
            source: "edge".into(),
            workspace_id: "w".into(),
            api_id: "a".into(),
            api_slug: "demo".into(),
            protocol: Protocol::Rest,
            endpoint_method: Some("GET".into()),
            endpoint_pattern: Some("/users/:id".into()),
            method: "GET".into(),
            path: "/users/42".into(),
            status: 200,
            latency_ms: 3,
            request_bytes: 0,
            response_bytes: 120,
            country: Some("DE".into()),
            city: None,
            colo: Some("FRA".into()),
            proxied: false,
            deduplicated: false,
            cache: CacheOutcome::Bypass,
            validation_failed: false,
            near_miss: None,
            snapshot_source: Some("kv".into()),
        }
    }

    #[test]
    fn clamping_makes_any_request_valid() {
        let mut e = event();
        e.path = "/é".repeat(5000);
        e.method = "X".repeat(1000);
        e.city = Some("c".repeat(300));
        assert!(e.validate(0).is_err());
        let e = e.clamped();
        e.validate(0).unwrap();
        assert_eq!(e.path.chars().count(), MAX_PATH_CHARS);
        assert!(e.path.ends_with('…'));
        assert_eq!(e.city.as_deref().map(|c| c.chars().count()), Some(MAX_TEXT_CHARS));
    }

    #[test]
    fn the_wire_format_round_trips_and_refuses_unknown_fields() {
        let json = serde_json::to_value(AnalyticsBatch { events: vec![event()] }).unwrap();
        assert_eq!(json["events"][0]["cache"], "bypass");
        let back: AnalyticsBatch = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back.events[0], event());
        let mut extra = json;
        extra["events"][0]["surprise"] = true.into();
        assert!(serde_json::from_value::<AnalyticsBatch>(extra).is_err());
    }

    #[test]
    fn retry_delays_grow_with_age_within_bounds() {
        assert_eq!(retry_delay_seconds(0), 1);
        assert_eq!(retry_delay_seconds(9), 4);
        assert_eq!(retry_delay_seconds(100), 50);
        assert_eq!(retry_delay_seconds(u64::MAX), 60);
    }

    #[test]
    fn validation_names_the_event_and_field() {
        let mut e = event();
        e.status = 42;
        let batch = AnalyticsBatch { events: vec![event(), e] };
        assert_eq!(batch.validate().unwrap_err().field, "events[1].status");
    }
}
