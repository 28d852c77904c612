//! `edgemock`: runs the control plane (`edgemock` or `edgemock serve`), applies the database
//! migrations and exits (`edgemock migrate`), probes a local server (`edgemock healthcheck`,
//! for the container image), mints admin tokens (`edgemock token`), and
//! manages mocks as code against a running control plane (`edgemock apply`, `import`,
//! `export`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use edgemock_control_plane::auth::{Claims, Role, Tokens};
use edgemock_control_plane::config::{self, LogFormat};
use edgemock_control_plane::{Config, cli, db, telemetry};

// The allocator interface is `unsafe` by definition: the workspace's only `unsafe` code.
#[allow(unsafe_code)]
mod alloc;

/// mimalloc instead of glibc's malloc: a mock request allocates a few dozen small blocks
/// (headers, the request id, the engine's request), which cost a third of its user-space
/// instructions with glibc; see ARCHITECTURE.md, "Memory".
#[global_allocator]
static ALLOCATOR: alloc::Mimalloc = alloc::Mimalloc;

#[derive(Debug, Parser)]
#[command(name = "edgemock", version, about = "The edgemock control plane")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

/// Where the control plane is (for apply, import, export).
#[derive(Debug, clap::Args)]
struct Remote {
    /// The control plane's base URL.
    #[arg(long, env = "EDGEMOCK_URL", default_value = "http://127.0.0.1:3000")]
    url: String,
    /// A JWT or an API key.
    #[arg(long, env = "EDGEMOCK_TOKEN", hide_env_values = true, default_value = "")]
    token: String,
}

impl Remote {
    fn target(self) -> cli::Target {
        cli::Target { url: self.url, token: self.token }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane (the default). Settings come from the environment and `.env`.
    Serve,
    /// Apply pending database migrations (`DATABASE_URL`) and exit: run it once per release
    /// and the replicas with `DATABASE_MIGRATE=false`, so they never race.
    Migrate,
    /// Exit 0 if the control plane on this host answers `/health/live` on `PORT`, else 1
    /// (the container image's HEALTHCHECK: the runtime image has no curl).
    Healthcheck {
        #[arg(long, env = "PORT", default_value_t = 3000)]
        port: u16,
    },
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
    /// Make APIs match mock files (JSON or YAML; a file or a directory of them).
    Apply {
        /// A mock file, or a directory of them.
        #[arg(short = 'f', long = "file")]
        file: std::path::PathBuf,
        /// The workspace of APIs the files create, unless a file names its own.
        #[arg(long)]
        workspace: Option<String>,
        /// Delete endpoints, GraphQL operations and WebSocket mocks the files do not list.
        #[arg(long)]
        prune: bool,
        /// Print what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Create an API from an OpenAPI 3.0 or 3.1 document (JSON or YAML).
    Import {
        file: std::path::PathBuf,
        #[arg(long, default_value = "default")]
        workspace: String,
        /// The API's slug (default: from the document's title).
        #[arg(long)]
        slug: Option<String>,
        /// Seed of generated data.
        #[arg(long)]
        seed: Option<u64>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Print an API as a mock file (for `apply`), or as OpenAPI with `--openapi`.
    Export {
        /// The API's slug or id.
        api: String,
        #[arg(long)]
        openapi: bool,
        /// Write YAML instead of JSON.
        #[arg(long)]
        yaml: bool,
        #[command(flatten)]
        remote: Remote,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // A .env file in the working directory, if any, fills in what the environment lacks.
    let dotenv = dotenvy::dotenv();
    match cli.command {
        None | Some(Command::Serve) => {}
        Some(Command::Migrate) => {
            if let Err(e) = migrate().await {
                tracing::error!(error = format!("{e:#}"), "migration failed");
                std::process::exit(1);
            }
            return Ok(());
        }
        Some(Command::Healthcheck { port }) => {
            if let Err(e) = healthcheck(port).await {
                eprintln!("edgemock: unhealthy: {e:#}");
                std::process::exit(1);
            }
            return Ok(());
        }
        Some(Command::Token { sub, role, workspaces, hours }) => {
            return token(sub, &role, workspaces, hours);
        }
        Some(command) => {
            if let Err(e) = remote(command).await {
                eprintln!("edgemock: {e:#}");
                std::process::exit(1);
            }
            return Ok(());
        }
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("edgemock: configuration error: {e:#}");
            std::process::exit(2);
        }
    };
    let telemetry = match telemetry::start(&config) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("edgemock: cannot set up tracing: {e:#}");
            std::process::exit(2);
        }
    };
    if let Ok(path) = dotenv {
        tracing::info!(path = %path.display(), "read settings from .env");
    }
    tracing::info!(config = ?config, version = env!("CARGO_PKG_VERSION"), "starting");
    edgemock_control_plane::serve(config, telemetry).await
}

/// `edgemock migrate`: needs only `DATABASE_URL` (and `LOG_LEVEL`, `LOG_FORMAT`), not the
/// server's secrets.
async fn migrate() -> anyhow::Result<()> {
    let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    let format = match LogFormat::parse(var("LOG_FORMAT").as_deref()) {
        Ok(format) => format,
        Err(e) => {
            eprintln!("edgemock: configuration error: {e:#}");
            std::process::exit(2);
        }
    };
    telemetry::init(&var("LOG_LEVEL").unwrap_or_else(|| "info".into()), format);
    let url = var("DATABASE_URL").unwrap_or_else(|| Config::default().database_url);
    let db = db::open(&url, 1).await?;
    let applied = db::migrate(&db).await?;
    for version in &applied {
        tracing::info!(version, "applied a database migration");
    }
    tracing::info!(
        applied = applied.len(),
        known = db::MIGRATOR.iter().count(),
        database = %config::redact_url(&url),
        "the database is up to date"
    );
    db.close().await;
    Ok(())
}

async fn healthcheck(port: u16) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(3)).build()?;
    let url = format!("http://127.0.0.1:{port}/health/live");
    let status = client.get(&url).send().await?.status();
    anyhow::ensure!(status.is_success(), "{url} answered {status}");
    Ok(())
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

/// The commands that talk to a running control plane.
async fn remote(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Apply { file, workspace, prune, dry_run, remote } => {
            let target = remote.target();
            let options = cli::ApplyOptions { workspace, prune, dry_run };
            for (path, mock) in cli::read_mock_files(&file)? {
                let (lines, tally) = cli::apply(&target, &mock, &options).await?;
                println!(
                    "{} ({}){}",
                    mock.api,
                    path.display(),
                    if dry_run { " [dry run]" } else { "" }
                );
                for line in lines {
                    println!("{line}");
                }
                println!(
                    "  {} created, {} updated, {} deleted, {} unchanged{}",
                    tally.created,
                    tally.updated,
                    tally.deleted,
                    tally.unchanged,
                    if tally.extra > 0 {
                        format!(", {} not in the file", tally.extra)
                    } else {
                        String::new()
                    }
                );
            }
        }
        Command::Import { file, workspace, slug, seed, remote } => {
            let document = std::fs::read(&file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            let mut query = Vec::new();
            if let Some(slug) = slug {
                query.push(format!("slug={slug}"));
            }
            if let Some(seed) = seed {
                query.push(format!("seed={seed}"));
            }
            let query =
                if query.is_empty() { String::new() } else { format!("?{}", query.join("&")) };
            let reply = cli::import(&remote.target(), document, &workspace, &query).await?;
            let report = &reply["import"]["report"];
            println!(
                "created API {} with {} endpoints from {} operations; {} notes",
                reply["api"]["slug"].as_str().unwrap_or("?"),
                report["endpoints"],
                report["operations"],
                report["notes"].as_array().map_or(0, Vec::len)
            );
            for note in report["notes"].as_array().into_iter().flatten() {
                println!(
                    "  {} {}: {}",
                    note["kind"].as_str().unwrap_or("?"),
                    note["location"].as_str().unwrap_or(""),
                    note["message"].as_str().unwrap_or("")
                );
            }
        }
        Command::Export { api, openapi, yaml, remote } => {
            let document = cli::export(&remote.target(), &api, openapi).await?;
            if yaml {
                print!("{}", serde_yaml_ng::to_string(&document)?);
            } else {
                println!("{}", serde_json::to_string_pretty(&document)?);
            }
        }
        Command::Serve | Command::Migrate | Command::Healthcheck { .. } | Command::Token { .. } => {
        }
    }
    Ok(())
}
