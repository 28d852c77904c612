//! Settings, read once from the environment at start-up and validated; a bad value stops the
//! process with a message naming the variable. Every variable is listed in `.env.example`.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, bail};

#[derive(Clone)]
pub struct Config {
    /// `HOST` (`0.0.0.0`): the address to listen on.
    pub host: IpAddr,
    /// `PORT` (`3000`): the port to listen on; `0` picks a free one (tests).
    pub port: u16,
    /// `DATABASE_URL` (`sqlite://edgemock.db?mode=rwc`): `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// `DATABASE_MAX_CONNECTIONS` (`10`).
    pub database_max_connections: u32,
    /// `DATABASE_MIGRATE` (`true`): apply pending migrations at start. `false`: apply none,
    /// and wait until `edgemock migrate` has applied every migration this build knows
    /// (Kubernetes runs it once per release, in a Job, so replicas never race).
    pub database_migrate: bool,
    /// `EDGE_URL` (unset): the edge Worker's base URL. Unset disables publishing.
    pub edge_url: Option<String>,
    /// `EDGE_PUBLISH_TOKEN` (required with `EDGE_URL`): the secret shared with the edge.
    pub edge_publish_token: Option<String>,
    /// `PUBLISH_TIMEOUT_MS` (`10000`): the time limit of one publish request.
    pub publish_timeout: Duration,
    /// `LOG_LEVEL` (`info`): a `tracing` filter such as `info` or `edgemock=debug,info`.
    pub log_level: String,
    /// `LOG_FORMAT` (`json`): `json` for production, `pretty` for a terminal.
    pub log_format: LogFormat,
    /// `JWT_SECRET` (required, at least 32 bytes): the HS256 key of admin tokens.
    pub jwt_secret: String,
    /// `MOCK_API_CACHE_TTL_SECONDS` (`60`): how long the native runtime trusts a compiled API
    /// without checking for changes made through other replicas.
    pub mock_api_cache_ttl_seconds: u64,
    /// `DEDUP_TTL_SECONDS` (`60`, as at the edge): how long the native runtime replays the
    /// first answer of a deduplicating endpoint to identical requests; `0` turns it off.
    pub dedup_ttl_seconds: u64,
    /// `ANALYTICS_ENABLED` (`true`): record the native runtime's requests and store the edge's
    /// events.
    pub analytics_enabled: bool,
    /// `ANALYTICS_RETENTION_DAYS` (`90`): events older than this are deleted daily at 02:00
    /// UTC.
    pub analytics_retention_days: u32,
    /// `GLOBAL_RATE_LIMIT_RPM` (`100`), `WORKSPACE_RATE_LIMIT_RPM` (`500`),
    /// `PRO_RATE_LIMIT_RPM` (`5000`), `ENTERPRISE_RATE_LIMIT_RPM` (`50000`); see
    /// [`crate::rate_limit`]. `0` turns a limit off.
    pub rate_limits: crate::rate_limit::Limits,
    /// `METRICS_ENABLED` (`true`): Prometheus metrics at `/metrics`.
    pub metrics_enabled: bool,
    /// `CORS_ALLOWED_ORIGINS` (empty): origins (`https://admin.example.com`, comma-separated,
    /// or `*`) whose browser pages may call the admin API.
    pub cors_allowed_origins: Vec<String>,
    /// `REQUEST_TIMEOUT_MS` (`30000`): the deadline of an admin request.
    pub request_timeout_ms: u64,
    /// `HEALTH_CHECK_TIMEOUT` (`5000`, milliseconds): how long a health check waits for a
    /// dependency before calling it down.
    pub health_check_timeout_ms: u64,
    /// `PROXY_ALLOW_HTTP`, `PROXY_ALLOW_PRIVATE_NETWORKS` (`false`): the native runtime's
    /// proxy policy, as at the edge.
    pub proxy_allow_http: bool,
    pub proxy_allow_private_networks: bool,
    /// `PROXY_DEFAULT_TIMEOUT` (`5000` ms, at most 30000).
    pub proxy_default_timeout_ms: u32,
    /// `WEBHOOKS_ENABLED` (`true`): `false` records deliveries in the outbox without sending
    /// them (staging, tests); turning it on later sends what is due.
    pub webhooks_enabled: bool,
    /// `WEBHOOK_RETRY_ATTEMPTS` (`3`, at most 20): retries after a delivery's first attempt.
    pub webhook_retry_attempts: u32,
    /// `WEBHOOK_RETRY_DELAY_MS` (`1000`): the first retry's delay; each next one doubles it
    /// (1 s, 2 s, 4 s …), plus up to 20 % jitter.
    pub webhook_retry_delay: Duration,
    /// `WEBHOOK_TIMEOUT_MS` (`10000`, at most 60000): the time limit of one attempt.
    pub webhook_timeout: Duration,
    /// `REDIS_URL` (unset): `redis://[:password@]host[:port][/db]` or `rediss://…` (TLS).
    /// Rate limits and the native runtime's snapshots are shared through it (see
    /// [`crate::redis`]); unset, each process counts and caches alone. An unreachable Redis
    /// never stops the process: it falls back and reconnects in the background.
    pub redis_url: Option<String>,
    /// `REDIS_KEY_PREFIX` (`edgemock:`): starts every key and channel, so several deployments
    /// (staging, production) can share one Redis.
    pub redis_key_prefix: String,
    /// `REDIS_TIMEOUT_MS` (`100`, 1 to 10000): the longest a request waits for Redis before
    /// falling back (and skipping Redis until it answers again).
    pub redis_timeout: Duration,
    /// OpenTelemetry traces over OTLP/HTTP (`OTEL_*`, see [`Traces`]): `None`, the default,
    /// unless `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set
    /// (and `OTEL_SDK_DISABLED` is not `true`).
    pub traces: Option<Traces>,
}

/// Where and how spans are exported ([`crate::telemetry`]). The variables are the
/// OpenTelemetry SDK's standard ones, read here like every other setting.
#[derive(Clone, PartialEq)]
pub struct Traces {
    /// The URL spans are POSTed to: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as given, else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (the collector's OTLP/HTTP base URL, such as
    /// `http://otel-collector:4318`) followed by `/v1/traces`.
    pub endpoint: String,
    /// `OTEL_EXPORTER_OTLP_HEADERS` (none): `name=value,…`, values percent-decoded, sent with
    /// every export (a collector's credential: never logged).
    pub headers: Vec<(String, String)>,
    /// `OTEL_EXPORTER_OTLP_TIMEOUT` (`10000` ms): the time limit of one export, retries
    /// included.
    pub timeout: Duration,
    /// `OTEL_SERVICE_NAME` (`edgemock-control-plane`; else `service.name` from
    /// `OTEL_RESOURCE_ATTRIBUTES`).
    pub service_name: String,
    /// `OTEL_RESOURCE_ATTRIBUTES` (none): `key=value,…`, values percent-decoded, such as
    /// `deployment.environment.name=production`.
    pub resource_attributes: Vec<(String, String)>,
    /// `OTEL_TRACES_SAMPLER` (`parentbased_always_on`) and `OTEL_TRACES_SAMPLER_ARG` (`1.0`).
    pub sampler: Sampler,
    /// `OTEL_BSP_SCHEDULE_DELAY` (`5000` ms): how long a finished span may wait to leave in a
    /// batch (a full batch, 512 spans, leaves at once).
    pub batch_delay: Duration,
}

/// The default service name (`OTEL_SERVICE_NAME`).
pub const DEFAULT_SERVICE_NAME: &str = "edgemock-control-plane";

// Hand-written: the headers may hold a collector's credential.
impl std::fmt::Debug for Traces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<_> = self.headers.iter().map(|(name, _)| (name, "<redacted>")).collect();
        f.debug_struct("Traces")
            .field("endpoint", &redact_url(&self.endpoint))
            .field("headers", &headers)
            .field("timeout", &self.timeout)
            .field("service_name", &self.service_name)
            .field("resource_attributes", &self.resource_attributes)
            .field("sampler", &self.sampler)
            .field("batch_delay", &self.batch_delay)
            .finish()
    }
}

/// Which traces are recorded (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampler {
    /// `parentbased_*`: a request that carries a `traceparent` follows its caller's decision;
    /// only traces that start here are decided by `root`.
    pub parent_based: bool,
    pub root: RootSampler,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RootSampler {
    AlwaysOn,
    AlwaysOff,
    /// `traceidratio`: this fraction of traces (0 to 1), chosen by trace id.
    Ratio(f64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

impl LogFormat {
    /// `LOG_FORMAT`: unset or `json`, or `pretty`.
    pub fn parse(raw: Option<&str>) -> anyhow::Result<Self> {
        match raw {
            None | Some("json") => Ok(Self::Json),
            Some("pretty") => Ok(Self::Pretty),
            Some(other) => bail!("LOG_FORMAT={other:?} is not valid: use json or pretty"),
        }
    }
}

// Hand-written so the publish token never reaches a log line.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database_url", &redact_url(&self.database_url))
            .field("database_max_connections", &self.database_max_connections)
            .field("database_migrate", &self.database_migrate)
            .field("edge_url", &self.edge_url)
            .field("edge_publish_token", &self.edge_publish_token.as_ref().map(|_| "<redacted>"))
            .field("publish_timeout", &self.publish_timeout)
            .field("log_level", &self.log_level)
            .field("log_format", &self.log_format)
            .field("jwt_secret", &"<redacted>")
            .field("mock_api_cache_ttl_seconds", &self.mock_api_cache_ttl_seconds)
            .field("dedup_ttl_seconds", &self.dedup_ttl_seconds)
            .field("metrics_enabled", &self.metrics_enabled)
            .field("rate_limits", &self.rate_limits)
            .field("analytics_enabled", &self.analytics_enabled)
            .field("analytics_retention_days", &self.analytics_retention_days)
            .field("health_check_timeout_ms", &self.health_check_timeout_ms)
            .field("cors_allowed_origins", &self.cors_allowed_origins)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("proxy_allow_http", &self.proxy_allow_http)
            .field("proxy_allow_private_networks", &self.proxy_allow_private_networks)
            .field("proxy_default_timeout_ms", &self.proxy_default_timeout_ms)
            .field("webhooks_enabled", &self.webhooks_enabled)
            .field("webhook_retry_attempts", &self.webhook_retry_attempts)
            .field("webhook_retry_delay", &self.webhook_retry_delay)
            .field("webhook_timeout", &self.webhook_timeout)
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("redis_key_prefix", &self.redis_key_prefix)
            .field("redis_timeout", &self.redis_timeout)
            .field("traces", &self.traces)
            .finish()
    }
}

/// `postgres://user:secret@host/db` ⟶ `postgres://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => {
                    format!("{}{}:***{}", &url[..scheme_end + 3], &userinfo[..colon], &url[at..])
                }
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            host: IpAddr::from([0, 0, 0, 0]),
            port: 3000,
            database_url: "sqlite://edgemock.db?mode=rwc".to_owned(),
            database_max_connections: 10,
            database_migrate: true,
            edge_url: None,
            edge_publish_token: None,
            publish_timeout: Duration::from_secs(10),
            log_level: "info".to_owned(),
            log_format: LogFormat::Json,
            jwt_secret: String::new(),
            mock_api_cache_ttl_seconds: 60,
            dedup_ttl_seconds: 60,
            metrics_enabled: true,
            rate_limits: crate::rate_limit::Limits {
                global_rpm: 100,
                free_rpm: 500,
                pro_rpm: 5_000,
                enterprise_rpm: 50_000,
            },
            analytics_enabled: true,
            analytics_retention_days: 90,
            health_check_timeout_ms: 5000,
            cors_allowed_origins: Vec::new(),
            request_timeout_ms: 30_000,
            proxy_allow_http: false,
            proxy_allow_private_networks: false,
            proxy_default_timeout_ms: 5_000,
            webhooks_enabled: true,
            webhook_retry_attempts: 3,
            webhook_retry_delay: Duration::from_secs(1),
            webhook_timeout: Duration::from_secs(10),
            redis_url: None,
            redis_key_prefix: "edgemock:".to_owned(),
            redis_timeout: Duration::from_millis(100),
            traces: None,
        }
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// Reads settings through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let defaults = Self::default();
        fn parse<T: std::str::FromStr>(
            name: &str,
            raw: Option<String>,
            default: T,
        ) -> anyhow::Result<T>
        where
            T::Err: std::fmt::Display,
        {
            match raw {
                None => Ok(default),
                Some(raw) => raw
                    .trim()
                    .parse()
                    .map_err(|e| anyhow::anyhow!("{name}={raw:?} is not valid: {e}")),
            }
        }
        let log_format = LogFormat::parse(lookup("LOG_FORMAT").as_deref())?;
        let edge_url = lookup("EDGE_URL").map(|u| u.trim_end_matches('/').to_owned());
        if let Some(url) = &edge_url {
            reqwest::Url::parse(url).with_context(|| format!("EDGE_URL={url:?} is not a URL"))?;
        }
        let edge_publish_token = lookup("EDGE_PUBLISH_TOKEN");
        if edge_url.is_some() && edge_publish_token.is_none() {
            bail!(
                "EDGE_URL is set, so EDGE_PUBLISH_TOKEN must be set too (the secret the edge expects)"
            );
        }
        let config = Self {
            host: parse("HOST", lookup("HOST"), defaults.host)?,
            port: parse("PORT", lookup("PORT"), defaults.port)?,
            database_url: lookup("DATABASE_URL").unwrap_or(defaults.database_url),
            database_max_connections: parse(
                "DATABASE_MAX_CONNECTIONS",
                lookup("DATABASE_MAX_CONNECTIONS"),
                defaults.database_max_connections,
            )?,
            database_migrate: parse("DATABASE_MIGRATE", lookup("DATABASE_MIGRATE"), true)?,
            edge_url,
            edge_publish_token,
            publish_timeout: Duration::from_millis(parse(
                "PUBLISH_TIMEOUT_MS",
                lookup("PUBLISH_TIMEOUT_MS"),
                10_000u64,
            )?),
            log_level: lookup("LOG_LEVEL").unwrap_or(defaults.log_level),
            log_format,
            jwt_secret: lookup("JWT_SECRET").unwrap_or_default(),
            mock_api_cache_ttl_seconds: parse(
                "MOCK_API_CACHE_TTL_SECONDS",
                lookup("MOCK_API_CACHE_TTL_SECONDS"),
                defaults.mock_api_cache_ttl_seconds,
            )?,
            dedup_ttl_seconds: parse(
                "DEDUP_TTL_SECONDS",
                lookup("DEDUP_TTL_SECONDS"),
                defaults.dedup_ttl_seconds,
            )?,
            analytics_enabled: parse(
                "ANALYTICS_ENABLED",
                lookup("ANALYTICS_ENABLED"),
                defaults.analytics_enabled,
            )?,
            analytics_retention_days: parse(
                "ANALYTICS_RETENTION_DAYS",
                lookup("ANALYTICS_RETENTION_DAYS"),
                defaults.analytics_retention_days,
            )?,
            rate_limits: crate::rate_limit::Limits {
                global_rpm: parse(
                    "GLOBAL_RATE_LIMIT_RPM",
                    lookup("GLOBAL_RATE_LIMIT_RPM"),
                    defaults.rate_limits.global_rpm,
                )?,
                free_rpm: parse(
                    "WORKSPACE_RATE_LIMIT_RPM",
                    lookup("WORKSPACE_RATE_LIMIT_RPM"),
                    defaults.rate_limits.free_rpm,
                )?,
                pro_rpm: parse(
                    "PRO_RATE_LIMIT_RPM",
                    lookup("PRO_RATE_LIMIT_RPM"),
                    defaults.rate_limits.pro_rpm,
                )?,
                enterprise_rpm: parse(
                    "ENTERPRISE_RATE_LIMIT_RPM",
                    lookup("ENTERPRISE_RATE_LIMIT_RPM"),
                    defaults.rate_limits.enterprise_rpm,
                )?,
            },
            metrics_enabled: parse(
                "METRICS_ENABLED",
                lookup("METRICS_ENABLED"),
                defaults.metrics_enabled,
            )?,
            health_check_timeout_ms: parse(
                "HEALTH_CHECK_TIMEOUT",
                lookup("HEALTH_CHECK_TIMEOUT"),
                defaults.health_check_timeout_ms,
            )?,
            cors_allowed_origins: origins(lookup("CORS_ALLOWED_ORIGINS"))?,
            request_timeout_ms: parse(
                "REQUEST_TIMEOUT_MS",
                lookup("REQUEST_TIMEOUT_MS"),
                defaults.request_timeout_ms,
            )?,
            proxy_allow_http: parse("PROXY_ALLOW_HTTP", lookup("PROXY_ALLOW_HTTP"), false)?,
            proxy_allow_private_networks: parse(
                "PROXY_ALLOW_PRIVATE_NETWORKS",
                lookup("PROXY_ALLOW_PRIVATE_NETWORKS"),
                false,
            )?,
            proxy_default_timeout_ms: parse(
                "PROXY_DEFAULT_TIMEOUT",
                lookup("PROXY_DEFAULT_TIMEOUT"),
                defaults.proxy_default_timeout_ms,
            )?
            .clamp(1, crate::runtime::MAX_PROXY_TIMEOUT_MS),
            webhooks_enabled: parse("WEBHOOKS_ENABLED", lookup("WEBHOOKS_ENABLED"), true)?,
            webhook_retry_attempts: parse(
                "WEBHOOK_RETRY_ATTEMPTS",
                lookup("WEBHOOK_RETRY_ATTEMPTS"),
                defaults.webhook_retry_attempts,
            )?,
            webhook_retry_delay: Duration::from_millis(parse(
                "WEBHOOK_RETRY_DELAY_MS",
                lookup("WEBHOOK_RETRY_DELAY_MS"),
                1_000u64,
            )?),
            webhook_timeout: Duration::from_millis(parse(
                "WEBHOOK_TIMEOUT_MS",
                lookup("WEBHOOK_TIMEOUT_MS"),
                10_000u64,
            )?),
            redis_url: lookup("REDIS_URL"),
            redis_key_prefix: lookup("REDIS_KEY_PREFIX").unwrap_or(defaults.redis_key_prefix),
            redis_timeout: Duration::from_millis(parse(
                "REDIS_TIMEOUT_MS",
                lookup("REDIS_TIMEOUT_MS"),
                100u64,
            )?),
            traces: traces(&lookup)?,
        };
        config.check_jwt_secret()?;
        if config.webhook_retry_attempts > crate::webhooks::MAX_RETRY_ATTEMPTS {
            bail!("WEBHOOK_RETRY_ATTEMPTS must be at most {}", crate::webhooks::MAX_RETRY_ATTEMPTS);
        }
        if config.webhook_retry_delay.is_zero()
            || config.webhook_retry_delay > crate::webhooks::MAX_RETRY_DELAY
        {
            bail!(
                "WEBHOOK_RETRY_DELAY_MS must be between 1 and {}",
                crate::webhooks::MAX_RETRY_DELAY.as_millis()
            );
        }
        if config.webhook_timeout.is_zero() || config.webhook_timeout > crate::webhooks::MAX_TIMEOUT
        {
            bail!(
                "WEBHOOK_TIMEOUT_MS must be between 1 and {}",
                crate::webhooks::MAX_TIMEOUT.as_millis()
            );
        }
        if let Some(url) = &config.redis_url {
            crate::redis::check_url(url)?;
        }
        crate::redis::check_prefix(&config.redis_key_prefix)?;
        if config.redis_timeout.is_zero() || config.redis_timeout > Duration::from_secs(10) {
            bail!("REDIS_TIMEOUT_MS must be between 1 and 10000");
        }
        if config.database_max_connections == 0 {
            bail!("DATABASE_MAX_CONNECTIONS must be at least 1");
        }
        if !(config.database_url.starts_with("sqlite:")
            || config.database_url.starts_with("postgres://")
            || config.database_url.starts_with("postgresql://"))
        {
            bail!("DATABASE_URL must start with sqlite:, postgres:// or postgresql://");
        }
        Ok(config)
    }

    /// The admin API is never open: no usable `JWT_SECRET`, no start.
    pub fn check_jwt_secret(&self) -> anyhow::Result<()> {
        if self.jwt_secret.len() < crate::auth::MIN_SECRET_BYTES {
            bail!(
                "JWT_SECRET must be set to at least {} bytes (for example `openssl rand -hex 32`): \
                 it signs the admin API's tokens",
                crate::auth::MIN_SECRET_BYTES
            );
        }
        Ok(())
    }
}

/// The `OTEL_*` settings: `None` without an endpoint. Every variable is checked even then, so
/// a typo fails at start-up rather than on the day traces are turned on.
fn traces(lookup: &impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<Traces>> {
    let disabled = match lookup("OTEL_SDK_DISABLED") {
        None => false,
        Some(v) if v.trim().eq_ignore_ascii_case("true") => true,
        Some(v) if v.trim().eq_ignore_ascii_case("false") => false,
        Some(v) => bail!("OTEL_SDK_DISABLED={v:?} is not valid: use true or false"),
    };
    if let Some(protocol) = lookup("OTEL_EXPORTER_OTLP_PROTOCOL")
        && protocol.trim() != "http/protobuf"
    {
        bail!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={protocol:?} is not supported: edgemock exports OTLP over \
             HTTP with protobuf (http/protobuf); point OTEL_EXPORTER_OTLP_ENDPOINT at the \
             collector's OTLP/HTTP port (4318 by default)"
        );
    }
    let endpoint =
        match (lookup("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), lookup("OTEL_EXPORTER_OTLP_ENDPOINT"))
        {
            (Some(url), _) => Some(otlp_url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url.trim())?),
            (None, Some(base)) => {
                let base = otlp_url("OTEL_EXPORTER_OTLP_ENDPOINT", base.trim())?;
                Some(format!("{}/v1/traces", base.trim_end_matches('/')))
            }
            (None, None) => None,
        };
    let headers = key_values("OTEL_EXPORTER_OTLP_HEADERS", lookup("OTEL_EXPORTER_OTLP_HEADERS"))?;
    for (name, value) in &headers {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            bail!("OTEL_EXPORTER_OTLP_HEADERS: {name:?} is not a valid header name");
        }
        // The value may be a secret: named by its header only.
        if http::HeaderValue::from_str(value).is_err() {
            bail!("OTEL_EXPORTER_OTLP_HEADERS: the value of {name} is not a valid header value");
        }
    }
    let timeout_ms: u64 = match lookup("OTEL_EXPORTER_OTLP_TIMEOUT") {
        None => 10_000,
        Some(raw) => {
            raw.trim().parse().ok().filter(|ms| (1..=600_000).contains(ms)).with_context(|| {
                format!(
                    "OTEL_EXPORTER_OTLP_TIMEOUT={raw:?} is not valid: milliseconds, 1 to 600000"
                )
            })?
        }
    };
    let batch_delay_ms: u64 = match lookup("OTEL_BSP_SCHEDULE_DELAY") {
        None => 5_000,
        Some(raw) => raw
            .trim()
            .parse()
            .ok()
            .filter(|ms| (1..=3_600_000).contains(ms))
            .with_context(|| {
                format!("OTEL_BSP_SCHEDULE_DELAY={raw:?} is not valid: milliseconds, 1 to 3600000")
            })?,
    };
    let resource_attributes =
        key_values("OTEL_RESOURCE_ATTRIBUTES", lookup("OTEL_RESOURCE_ATTRIBUTES"))?;
    let service_name = lookup("OTEL_SERVICE_NAME")
        .map(|name| name.trim().to_owned())
        .or_else(|| {
            resource_attributes.iter().find(|(k, _)| k == "service.name").map(|(_, v)| v.clone())
        })
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
    let sampler = sampler(lookup("OTEL_TRACES_SAMPLER"), lookup("OTEL_TRACES_SAMPLER_ARG"))?;
    Ok(endpoint.filter(|_| !disabled).map(|endpoint| Traces {
        endpoint,
        headers,
        timeout: Duration::from_millis(timeout_ms),
        service_name,
        resource_attributes,
        sampler,
        batch_delay: Duration::from_millis(batch_delay_ms),
    }))
}

/// An OTLP endpoint: an `http://` or `https://` URL without credentials (those belong in
/// `OTEL_EXPORTER_OTLP_HEADERS`).
fn otlp_url(name: &str, raw: &str) -> anyhow::Result<String> {
    let url = reqwest::Url::parse(raw).with_context(|| format!("{name}={raw:?} is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        bail!("{name}={raw:?} is not valid: use http://host:port or https://host:port");
    }
    if !url.username().is_empty() || url.password().is_some() {
        bail!("{name} must not hold credentials: send them with OTEL_EXPORTER_OTLP_HEADERS");
    }
    Ok(raw.to_owned())
}

/// `key=value,key=value` (the W3C Baggage form of `OTEL_EXPORTER_OTLP_HEADERS` and
/// `OTEL_RESOURCE_ATTRIBUTES`): keys trimmed, values trimmed and percent-decoded. Errors name
/// the key, never the value, which may be a secret.
fn key_values(name: &str, raw: Option<String>) -> anyhow::Result<Vec<(String, String)>> {
    let Some(raw) = raw else { return Ok(Vec::new()) };
    let mut pairs = Vec::new();
    for (i, item) in raw.split(',').map(str::trim).enumerate() {
        if item.is_empty() {
            continue;
        }
        let Some((key, value)) = item.split_once('=') else {
            bail!("{name}: item {} is not key=value", i + 1);
        };
        let key = key.trim();
        if key.is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            bail!("{name}: item {} has no valid key", i + 1);
        }
        let value = percent_encoding::percent_decode_str(value.trim())
            .decode_utf8()
            .with_context(|| format!("{name}: the value of {key} is not UTF-8 once decoded"))?;
        pairs.push((key.to_owned(), value.into_owned()));
    }
    Ok(pairs)
}

/// `OTEL_TRACES_SAMPLER` (the SDK's names, default `parentbased_always_on`) with
/// `OTEL_TRACES_SAMPLER_ARG`, the ratio of the `*traceidratio` samplers (default `1.0`;
/// ignored by the others, as the specification says).
fn sampler(name: Option<String>, arg: Option<String>) -> anyhow::Result<Sampler> {
    let ratio = || -> anyhow::Result<f64> {
        let Some(raw) = &arg else { return Ok(1.0) };
        raw.trim().parse::<f64>().ok().filter(|r| (0.0..=1.0).contains(r)).with_context(|| {
            format!("OTEL_TRACES_SAMPLER_ARG={raw:?} is not valid: a ratio from 0 to 1")
        })
    };
    let name = name.as_deref().map_or("parentbased_always_on", str::trim);
    let (parent_based, root) = match name {
        "always_on" => (false, RootSampler::AlwaysOn),
        "always_off" => (false, RootSampler::AlwaysOff),
        "traceidratio" => (false, RootSampler::Ratio(ratio()?)),
        "parentbased_always_on" => (true, RootSampler::AlwaysOn),
        "parentbased_always_off" => (true, RootSampler::AlwaysOff),
        "parentbased_traceidratio" => (true, RootSampler::Ratio(ratio()?)),
        other => bail!(
            "OTEL_TRACES_SAMPLER={other:?} is not supported: use always_on, always_off, \
             traceidratio, parentbased_always_on, parentbased_always_off or \
             parentbased_traceidratio"
        ),
    };
    Ok(Sampler { parent_based, root })
}

/// `CORS_ALLOWED_ORIGINS`: `*`, or origins as a browser sends them (`https://a.example`,
/// `http://localhost:5173`), comma-separated.
fn origins(value: Option<String>) -> anyhow::Result<Vec<String>> {
    let Some(value) = value else { return Ok(Vec::new()) };
    value
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|origin| {
            let ok = origin == "*"
                || reqwest::Url::parse(origin).is_ok_and(|u| {
                    matches!(u.scheme(), "http" | "https")
                        && u.host().is_some()
                        && u.path() == "/"
                        && !origin.ends_with('/')
                        && u.query().is_none()
                });
            anyhow::ensure!(
                ok,
                "CORS_ALLOWED_ORIGINS: '{origin}' is not an origin (scheme://host[:port]) or *"
            );
            Ok(origin.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> anyhow::Result<Config> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| {
            map.get(k).cloned().or_else(|| (k == "JWT_SECRET").then(|| "s".repeat(32)))
        })
    }

    #[test]
    fn defaults_and_overrides() {
        let c = from(&[]).unwrap();
        assert_eq!(c.port, 3000);
        assert!(c.edge_url.is_none());
        assert!(c.webhooks_enabled);
        assert_eq!(c.webhook_retry_attempts, 3);
        assert_eq!(c.webhook_retry_delay, Duration::from_secs(1));
        assert!(c.database_migrate);
        assert!(c.redis_url.is_none());
        assert_eq!(
            (c.redis_key_prefix.as_str(), c.redis_timeout),
            ("edgemock:", Duration::from_millis(100))
        );
        for url in
            ["redis://cache:6379/0", "rediss://:p%40ss@cache.example.com:6380", "redis://u:p@[::1]"]
        {
            let c = from(&[("REDIS_URL", url)]).unwrap();
            assert_eq!(c.redis_url.as_deref(), Some(url));
        }
        let c = from(&[
            ("PORT", "8080"),
            ("EDGE_URL", "http://x:1/"),
            ("EDGE_PUBLISH_TOKEN", "t"),
            ("DATABASE_MIGRATE", "false"),
        ])
        .unwrap();
        assert_eq!(c.port, 8080);
        assert!(!c.database_migrate);
        assert_eq!(c.edge_url.as_deref(), Some("http://x:1"));
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (pairs, needle) in [
            (vec![("PORT", "eighty")], "PORT"),
            (vec![("EDGE_URL", "http://x")], "EDGE_PUBLISH_TOKEN"),
            (vec![("EDGE_URL", "not a url"), ("EDGE_PUBLISH_TOKEN", "t")], "EDGE_URL"),
            (vec![("DATABASE_URL", "mysql://x")], "DATABASE_URL"),
            (vec![("LOG_FORMAT", "xml")], "LOG_FORMAT"),
            (vec![("DATABASE_MIGRATE", "no")], "DATABASE_MIGRATE"),
            (vec![("JWT_SECRET", "short")], "JWT_SECRET"),
            (vec![("WEBHOOK_RETRY_ATTEMPTS", "-1")], "WEBHOOK_RETRY_ATTEMPTS"),
            (vec![("WEBHOOK_RETRY_ATTEMPTS", "21")], "WEBHOOK_RETRY_ATTEMPTS"),
            (vec![("WEBHOOK_RETRY_DELAY_MS", "0")], "WEBHOOK_RETRY_DELAY_MS"),
            (vec![("WEBHOOK_TIMEOUT_MS", "60001")], "WEBHOOK_TIMEOUT_MS"),
            (vec![("WEBHOOKS_ENABLED", "maybe")], "WEBHOOKS_ENABLED"),
            (vec![("REDIS_URL", "localhost:6379")], "REDIS_URL"),
            (vec![("REDIS_URL", "http://cache:6379")], "REDIS_URL"),
            (vec![("REDIS_URL", "redis://")], "REDIS_URL"),
            (vec![("REDIS_URL", "redis://cache:port")], "REDIS_URL"),
            (vec![("REDIS_TIMEOUT_MS", "0")], "REDIS_TIMEOUT_MS"),
            (vec![("REDIS_KEY_PREFIX", "two words")], "REDIS_KEY_PREFIX"),
            (
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
            (vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://c")], "OTEL_EXPORTER_OTLP_ENDPOINT"),
            (
                vec![("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://u:p@c/v1/traces")],
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            ),
            (vec![("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")], "OTEL_EXPORTER_OTLP_PROTOCOL"),
            (vec![("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")], "OTEL_EXPORTER_OTLP_PROTOCOL"),
            (vec![("OTEL_EXPORTER_OTLP_HEADERS", "token")], "OTEL_EXPORTER_OTLP_HEADERS"),
            (vec![("OTEL_EXPORTER_OTLP_HEADERS", "a b=c")], "OTEL_EXPORTER_OTLP_HEADERS"),
            (vec![("OTEL_EXPORTER_OTLP_HEADERS", "x=%0a")], "OTEL_EXPORTER_OTLP_HEADERS"),
            (vec![("OTEL_EXPORTER_OTLP_TIMEOUT", "0")], "OTEL_EXPORTER_OTLP_TIMEOUT"),
            (vec![("OTEL_BSP_SCHEDULE_DELAY", "soon")], "OTEL_BSP_SCHEDULE_DELAY"),
            (vec![("OTEL_RESOURCE_ATTRIBUTES", "=x")], "OTEL_RESOURCE_ATTRIBUTES"),
            (vec![("OTEL_RESOURCE_ATTRIBUTES", "k=%ff")], "OTEL_RESOURCE_ATTRIBUTES"),
            (vec![("OTEL_TRACES_SAMPLER", "xray")], "OTEL_TRACES_SAMPLER"),
            (
                vec![("OTEL_TRACES_SAMPLER", "traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "2")],
                "OTEL_TRACES_SAMPLER_ARG",
            ),
            (vec![("OTEL_SDK_DISABLED", "yes")], "OTEL_SDK_DISABLED"),
        ] {
            let err = from(&pairs).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn traces_need_an_endpoint() {
        assert!(from(&[]).unwrap().traces.is_none());
        // Checked all the same.
        assert!(from(&[("OTEL_TRACES_SAMPLER", "sometimes")]).is_err());
        let t = from(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")])
            .unwrap()
            .traces
            .unwrap();
        assert_eq!(t.endpoint, "http://collector:4318/v1/traces");
        assert_eq!(t.service_name, DEFAULT_SERVICE_NAME);
        assert_eq!(t.sampler, Sampler { parent_based: true, root: RootSampler::AlwaysOn });
        assert_eq!(t.timeout, Duration::from_secs(10));
        assert_eq!(t.batch_delay, Duration::from_secs(5));
        assert!(t.headers.is_empty() && t.resource_attributes.is_empty());
        // The per-signal URL is taken as it is, and wins.
        let t = from(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://b/otlp/traces"),
        ])
        .unwrap()
        .traces
        .unwrap();
        assert_eq!(t.endpoint, "https://b/otlp/traces");
        let off =
            from(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a"), ("OTEL_SDK_DISABLED", "TRUE")]);
        assert!(off.unwrap().traces.is_none());
    }

    #[test]
    fn trace_settings_are_read() {
        let t = from(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20abc, x-team = edge ,"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=staging,service.name=cp"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ])
        .unwrap()
        .traces
        .unwrap();
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        assert_eq!(t.headers, pairs(&[("authorization", "Bearer abc"), ("x-team", "edge")]));
        assert_eq!(t.timeout, Duration::from_millis(2500));
        assert_eq!(t.batch_delay, Duration::from_millis(100));
        assert_eq!(t.service_name, "cp", "service.name from OTEL_RESOURCE_ATTRIBUTES");
        assert_eq!(t.sampler, Sampler { parent_based: true, root: RootSampler::Ratio(0.25) });
        let shown = format!("{t:?}");
        assert!(shown.contains("authorization") && !shown.contains("abc"), "{shown}");
        // OTEL_SERVICE_NAME wins over the attribute; the ratio argument means nothing to
        // always_off.
        let t = from(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=cp"),
            ("OTEL_SERVICE_NAME", "edgemock-eu"),
            ("OTEL_TRACES_SAMPLER", "always_off"),
            ("OTEL_TRACES_SAMPLER_ARG", "lots"),
        ])
        .unwrap()
        .traces
        .unwrap();
        assert_eq!(t.service_name, "edgemock-eu");
        assert_eq!(t.sampler, Sampler { parent_based: false, root: RootSampler::AlwaysOff });
    }

    #[test]
    fn debug_redacts_secrets() {
        let c = from(&[
            ("DATABASE_URL", "postgres://u:hunter2@db/x"),
            ("EDGE_URL", "http://e"),
            ("EDGE_PUBLISH_TOKEN", "s3cret"),
            ("JWT_SECRET", "jwt-secret-that-is-long-enough-1234"),
            ("REDIS_URL", "rediss://default:redis-pw@cache:6380/1"),
        ])
        .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("s3cret"), "{shown}");
        assert!(!shown.contains("redis-pw") && shown.contains("cache:6380"), "{shown}");
        // Nor does an error about the URL.
        let err = from(&[("REDIS_URL", "rediss://:redis-pw@cache:port")]).unwrap_err().to_string();
        assert!(!err.contains("redis-pw"), "{err}");
        assert!(!shown.contains("jwt-secret"), "{shown}");
    }
}
