//! `edgemock`: runs the control plane.

use edgemock_control_plane::{Application, Config, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // A .env file in the working directory, if any, fills in what the environment lacks.
    let dotenv = dotenvy::dotenv();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("edgemock: configuration error: {e:#}");
            std::process::exit(2);
        }
    };
    telemetry::init(&config.log_level, config.log_format);
    if let Ok(path) = dotenv {
        tracing::info!(path = %path.display(), "read settings from .env");
    }
    tracing::info!(config = ?config, version = env!("CARGO_PKG_VERSION"), "starting");
    Application::build(config).await?.run_until_stopped().await
}
