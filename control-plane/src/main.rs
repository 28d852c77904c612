//! `edgemock`: runs the control plane (`edgemock` or `edgemock serve`), and mints admin
//! tokens (`edgemock token`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use edgemock_control_plane::auth::{Claims, Role, Tokens};
use edgemock_control_plane::{Application, Config, telemetry};

#[derive(Debug, Parser)]
#[command(name = "edgemock", version, about = "The edgemock control plane")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane (the default). Settings come from the environment and `.env`.
    Serve,
    /// Print an admin JWT signed with `JWT_SECRET`.
    Token {
        /// Who the token is for (the `sub` claim).
        #[arg(long)]
        sub: String,
        /// owner, admin, editor or viewer.
        #[arg(long, default_value = "owner")]
        role: String,
        /// A workspace slug or id the role applies to; repeat for several; `*` for all.
        #[arg(long = "workspace", default_values_t = vec!["*".to_owned()])]
        workspaces: Vec<String>,
        /// Hours until the token expires.
        #[arg(long, default_value_t = 24)]
        hours: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // A .env file in the working directory, if any, fills in what the environment lacks.
    let dotenv = dotenvy::dotenv();
    if let Some(Command::Token { sub, role, workspaces, hours }) = cli.command {
        return token(sub, &role, workspaces, hours);
    }
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

fn token(sub: String, role: &str, workspaces: Vec<String>, hours: u64) -> anyhow::Result<()> {
    let secret = std::env::var("JWT_SECRET").unwrap_or_default();
    let config = Config { jwt_secret: secret, ..Config::default() };
    if let Err(e) = config.check_jwt_secret() {
        eprintln!("edgemock: {e:#}");
        std::process::exit(2);
    }
    let role = Role::parse("role", role).map_err(|e| anyhow::anyhow!("--role: {e}"))?;
    let expires = SystemTime::now() + Duration::from_secs(hours.saturating_mul(3600));
    let exp = expires.duration_since(UNIX_EPOCH)?.as_secs();
    let token = Tokens::new(&config.jwt_secret).mint(&Claims { sub, role, workspaces, exp })?;
    println!("{token}");
    Ok(())
}
