//! Logging: `tracing` with JSON lines in production and readable lines in a terminal.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. A bad `LOG_LEVEL` falls back to `info` with a warning
/// rather than stopping the process.
pub fn init(level: &str, format: LogFormat) {
    let (filter, bad) = match EnvFilter::try_new(level) {
        Ok(filter) => (filter, None),
        Err(e) => (EnvFilter::new("info"), Some(e)),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    if let Some(e) = bad {
        tracing::warn!(level, error = %e, "LOG_LEVEL is not a valid filter; using info");
    }
}
