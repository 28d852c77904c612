//! The delivery loop: claims due deliveries from the outbox, POSTs each to its subscription's
//! URL with Standard Webhooks headers, records the attempt, and schedules the next one or
//! settles the delivery.
//!
//! - A 2xx answer is success; anything else (another status, a redirect, which is never
//!   followed, a timeout, a refused connection) is a failed attempt, retried
//!   `WEBHOOK_RETRY_ATTEMPTS` times on the schedule of [`super::schedule`], after which the
//!   delivery is `failed` (a manual redelivery starts it over).
//! - The URL is checked again at every attempt under the proxy policy: the URL as written
//!   ([`check_target`]), and, unless private networks are allowed, every address its name
//!   resolves to, by the resolver the connection itself uses: a name that resolved to a
//!   public address when the subscription was made and now resolves to a private one is
//!   refused, and the check cannot be raced (DNS rebinding).
//! - At most [`MAX_IN_FLIGHT`] attempts run at once. On shutdown the loop claims nothing
//!   more and waits for the attempts in flight, which are bounded by `WEBHOOK_TIMEOUT_MS`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use edgemock_shared::proxy::{ProxyPolicy, check_target, is_public};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::{Outbox, schedule, signature};
use crate::db::{self, AttemptRow, Db, DeliveryOutcome, DeliveryRow};

/// Attempts in flight at once, per process.
pub const MAX_IN_FLIGHT: usize = 16;
/// The longest the loop sleeps without looking at the outbox (other replicas' deliveries,
/// claims that expired).
const POLL: Duration = Duration::from_secs(5);
/// How long past the attempt's own time limit a claim lasts.
const CLAIM_MARGIN: Duration = Duration::from_secs(30);
/// How much of a failed answer's body is kept in the attempt's error.
const BODY_EXCERPT_BYTES: usize = 512;

/// How deliveries are retried and timed (`WEBHOOK_*` settings).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Retries after the first attempt.
    pub retries: u32,
    /// The first retry's delay; each next one doubles.
    pub retry_delay: Duration,
    /// The time limit of one attempt.
    pub timeout: Duration,
}

/// The delivery loop and what it needs.
#[derive(Debug)]
pub struct Deliverer {
    db: Db,
    outbox: Outbox,
    client: reqwest::Client,
    policy: ProxyPolicy,
    settings: Settings,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl Deliverer {
    pub fn new(
        db: Db,
        outbox: Outbox,
        policy: ProxyPolicy,
        settings: Settings,
    ) -> anyhow::Result<Self> {
        let mut client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve names itself, past the address check.
            .no_proxy()
            .user_agent(concat!("edgemock-webhooks/", env!("CARGO_PKG_VERSION")));
        if !policy.allow_private {
            client = client.dns_resolver(Arc::new(PublicAddressesOnly));
        }
        let client = client.build().context("cannot build the webhook HTTP client")?;
        Ok(Self { db, outbox, client, policy, settings, metrics: None })
    }

    /// Counts attempts in `webhook_deliveries_total` and `webhook_delivery_duration_seconds`.
    pub fn with_metrics(mut self, metrics: Option<Arc<crate::metrics::Metrics>>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Runs until `stop` turns true: then claims nothing more, lets the attempts in flight
    /// finish and record themselves, and returns.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let mut in_flight = JoinSet::new();
        while !*stop.borrow() {
            let free = MAX_IN_FLIGHT.saturating_sub(in_flight.len());
            let mut sleep = POLL;
            if free > 0 {
                match this.claim(free).await {
                    Ok(claimed) => {
                        for (claim, delivery) in claimed {
                            let this = this.clone();
                            in_flight.spawn(async move { this.attempt(&claim, delivery).await });
                        }
                        sleep = this.until_next_due().await;
                    }
                    Err(e) => tracing::error!(
                        error = format!("{e:#}"),
                        "claiming webhook deliveries failed"
                    ),
                }
            }
            tokio::select! {
                changed = stop.changed() => {
                    // The sender is gone: nobody can stop the loop any more, so stop now.
                    if changed.is_err() {
                        break;
                    }
                }
                () = this.outbox.notified() => {}
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    if let Err(e) = done {
                        tracing::error!(error = %e, "a webhook attempt task failed");
                    }
                }
                () = tokio::time::sleep(sleep) => {}
            }
        }
        if !in_flight.is_empty() {
            tracing::info!(in_flight = in_flight.len(), "waiting for webhook attempts in flight");
        }
        while in_flight.join_next().await.is_some() {}
    }

    async fn claim(&self, limit: usize) -> anyhow::Result<Vec<(String, DeliveryRow)>> {
        let claim = db::new_id();
        let now = time::OffsetDateTime::now_utc();
        let lease = now + self.settings.timeout + CLAIM_MARGIN;
        let rows = db::claim_due_deliveries(
            &self.db,
            &db::format_timestamp(now),
            &db::format_timestamp(lease),
            &claim,
            i64::try_from(limit).unwrap_or(i64::MAX),
        )
        .await?;
        Ok(rows.into_iter().map(|row| (claim.clone(), row)).collect())
    }

    /// How long until the next delivery is due, at most [`POLL`] (and at least a few
    /// milliseconds, so a database that misbehaves cannot make the loop spin).
    async fn until_next_due(&self) -> Duration {
        let next = match db::select_next_delivery_at(&self.db).await {
            Ok(Some(at)) => {
                time::OffsetDateTime::parse(&at, &time::format_description::well_known::Rfc3339)
                    .ok()
                    .map(|at| {
                        Duration::try_from(at - time::OffsetDateTime::now_utc())
                            .unwrap_or(Duration::ZERO)
                    })
            }
            Ok(None) => None,
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "reading the webhook outbox failed");
                None
            }
        };
        next.unwrap_or(POLL).clamp(Duration::from_millis(5), POLL)
    }

    /// Makes one attempt at `delivery` (claimed under `claim`) and records it.
    async fn attempt(&self, claim: &str, delivery: DeliveryRow) {
        let started = time::OffsetDateTime::now_utc();
        let result = self.send(&delivery).await;
        let number = delivery.attempts;
        let attempt = AttemptRow {
            delivery_id: delivery.id.clone(),
            number,
            attempted_at: db::format_timestamp(started),
            status: result.status.map(i32::from),
            latency_ms: i64::try_from(result.latency.as_millis()).unwrap_or(i64::MAX),
            error: result.error.clone(),
        };
        let round = u32::try_from(delivery.round_attempts).unwrap_or(u32::MAX);
        let next_at;
        let outcome = if result.error.is_none() {
            DeliveryOutcome { state: "succeeded", next_attempt_at: None }
        } else if result.final_ || round > self.settings.retries {
            DeliveryOutcome { state: "failed", next_attempt_at: None }
        } else {
            // `round` attempts made: the next is retry number `round`.
            let wait = schedule::next_delay(
                self.settings.retry_delay,
                round,
                schedule::random_fraction(),
                result.retry_after,
            );
            next_at = db::format_timestamp(time::OffsetDateTime::now_utc() + wait);
            DeliveryOutcome { state: "pending", next_attempt_at: Some(&next_at) }
        };
        if let Some(metrics) = &self.metrics {
            let outcome = match outcome.state {
                "succeeded" => "delivered",
                "pending" => "retrying",
                _ => "failed",
            };
            // Event types come from `EVENTS` only; anything else would be a stored oddity.
            let event = super::EVENTS
                .iter()
                .find(|e| **e == delivery.event_type)
                .copied()
                .unwrap_or("other");
            metrics.observe_webhook(event, outcome, result.latency);
        }
        match db::record_attempt(&self.db, claim, &attempt, &outcome).await {
            Ok(_) => {}
            Err(e) => {
                // The claim expires and the delivery is tried again: at least once.
                tracing::error!(delivery = %delivery.id, error = format!("{e:#}"), "recording a webhook attempt failed");
                return;
            }
        }
        match &result.error {
            None => tracing::info!(
                delivery = %delivery.id, event = %delivery.event_type, attempt = number,
                status = result.status, latency_ms = attempt.latency_ms, "webhook delivered"
            ),
            Some(error) => tracing::warn!(
                delivery = %delivery.id, event = %delivery.event_type, attempt = number,
                status = result.status, error = %error, next = outcome.state,
                next_attempt_at = outcome.next_attempt_at, "webhook attempt failed"
            ),
        }
    }

    /// Sends the delivery once. Never fails: what went wrong is in the result.
    async fn send(&self, delivery: &DeliveryRow) -> Sent {
        let target = match db::select_webhook(&self.db, &delivery.webhook_id).await {
            Ok(Some(hook)) if hook.active == 0 => {
                return Sent::settled("the webhook is inactive; redeliver after activating it");
            }
            Ok(Some(hook)) => Some((hook.url, hook.secret)),
            // The subscription went with its workspace: the delivery kept its target.
            Ok(None) => delivery.target_url.clone().zip(delivery.target_secret.clone()),
            Err(e) => return Sent::failed(format!("cannot read the webhook: {e}")),
        };
        let Some((url, secret)) = target else {
            return Sent::settled("the webhook was deleted");
        };
        if let Err(why) = check_target(&url, self.policy) {
            return Sent::failed(format!("the URL is not allowed: {why}"));
        }
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let Some(signature) = signature::sign(&secret, &delivery.id, timestamp, &delivery.payload)
        else {
            return Sent::settled("the webhook's secret is not valid base64");
        };
        // With traces on, a client span (named by the method alone: a webhook URL may hold a
        // secret, so only its host is recorded).
        let span = crate::telemetry::client_span("POST", "POST", &url);
        if !span.is_none() {
            span.set_attribute("edgemock.webhook.event", delivery.event_type.clone());
            span.set_attribute("edgemock.webhook.delivery", delivery.id.clone());
            span.set_attribute("edgemock.webhook.attempt", delivery.attempts);
        }
        let started = Instant::now();
        let response = self
            .client
            .post(&url)
            .header("content-type", "application/json")
            .header("webhook-id", &delivery.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(delivery.payload.clone())
            .send()
            .instrument(span.clone())
            .await;
        let mut response = match response {
            Ok(response) => response,
            Err(e) => {
                let error = if e.is_timeout() {
                    format!("no answer within {} ms", self.settings.timeout.as_millis())
                } else {
                    error_chain(&e)
                };
                crate::telemetry::client_span_end(&span, None, Some(&error));
                return Sent { latency: started.elapsed(), ..Sent::failed(error) };
            }
        };
        let latency = started.elapsed();
        let status = response.status();
        let failure = (!status.is_success()).then(|| format!("answered {status}"));
        crate::telemetry::client_span_end(&span, Some(status.as_u16()), failure.as_deref());
        if status.is_success() {
            return Sent { status: Some(status.as_u16()), latency, ..Sent::default() };
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| schedule::retry_after(v, SystemTime::now()));
        let mut error = if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?");
            format!("answered {status}; redirects are not followed (to {location})")
        } else {
            format!("answered {status}")
        };
        // A little of the body says why; the rest is not read.
        let mut excerpt = Vec::new();
        while excerpt.len() < BODY_EXCERPT_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
                _ => break,
            }
        }
        excerpt.truncate(BODY_EXCERPT_BYTES);
        let text = String::from_utf8_lossy(&excerpt);
        let text = text.trim();
        if !text.is_empty() {
            error = format!("{error}: {text}");
        }
        Sent {
            status: Some(status.as_u16()),
            latency,
            error: Some(error),
            retry_after,
            final_: false,
        }
    }
}

/// What one attempt came to.
#[derive(Debug, Default)]
struct Sent {
    status: Option<u16>,
    latency: Duration,
    /// `None`: delivered.
    error: Option<String>,
    /// The receiver's `Retry-After`.
    retry_after: Option<Duration>,
    /// No retry can help (the subscription is gone or inactive).
    final_: bool,
}

impl Sent {
    fn failed(error: impl Into<String>) -> Self {
        Self { error: Some(error.into()), ..Self::default() }
    }

    fn settled(error: impl Into<String>) -> Self {
        Self { final_: true, ..Self::failed(error) }
    }
}

/// An error with its causes: reqwest's own message names only the URL.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Resolves names like the system does, and refuses a name if any of its addresses is not
/// public: the connection uses exactly the addresses checked here.
#[derive(Debug)]
struct PublicAddressesOnly;

impl reqwest::dns::Resolve for PublicAddressesOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(private) = addrs.iter().find(|a| !is_public(a.ip())) {
                return Err(format!(
                    "'{host}' resolves to {}, a loopback, private or link-local address, which \
                     this deployment does not deliver webhooks to",
                    private.ip()
                )
                .into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::dns::Resolve;
    use std::str::FromStr;

    /// `localhost` passes no URL check, but the resolver is the last word: whatever name
    /// leads to a loopback address is refused where the connection is made.
    #[tokio::test]
    async fn names_that_resolve_to_private_addresses_are_refused() {
        let name = reqwest::dns::Name::from_str("localhost").unwrap();
        let error = PublicAddressesOnly.resolve(name).await.err().unwrap().to_string();
        assert!(error.contains("does not deliver webhooks to"), "{error}");

        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(PublicAddressesOnly))
            .no_proxy()
            .build()
            .unwrap();
        let error = client.post("http://localhost:9/hook").send().await.unwrap_err();
        assert!(error_chain(&error).contains("loopback, private or link-local"), "{error:?}");
    }
}
