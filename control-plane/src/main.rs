//! `edgemock`: runs the control plane.

use edgemock_control_plane::{Application, Config, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("edgemock: configuration error: {e:#}");
            std::process::exit(2);
        }
    };
    telemetry::init(&config.log_level, config.log_format);
    tracing::info!(config = ?config, version = env!("CARGO_PKG_VERSION"), "starting");
    Application::build(config).await?.run_until_stopped().await
}
