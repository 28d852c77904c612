//! Helpers for the end-to-end tests: real processes, real ports, real databases.
//!
//! - [`Edge`]: the Worker in `wrangler dev` (workerd) with its own local KV state.
//! - [`Postgres`]: a throwaway PostgreSQL server started from the installed binaries.
//! - [`Redis`]: a throwaway `redis-server` that can be stopped, paused and started again.
//! - [`ControlPlane`]: the control plane on port 0, in-process, over SQLite or PostgreSQL.
//! - [`Server`]: the `edgemock` binary of the `server` profile (what the image ships) as a
//!   process of its own, for the benchmarks and the soak run, with its CPU time and memory.
//! - [`eventually`]: poll with a deadline instead of sleeping.
//!
//! Every process is stopped when its handle drops, even when a test fails.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use edgemock_control_plane::auth::{Claims, Role, Tokens};
use edgemock_control_plane::{Application, Config};
use serde_json::Value;
use tempfile::TempDir;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// A port that was free a moment ago (for programs that cannot report the port they bound).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

/// Polls `check` until it yields `Some`, or fails after `deadline` naming `what`.
pub async fn eventually<T, F, Fut>(
    deadline: Duration,
    what: &str,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if start.elapsed() > deadline {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn kill_group(child: &mut Child) {
    // wrangler starts workerd as a child: signal the whole process group.
    let _ =
        Command::new("kill").args(["-s", "TERM", "--"]).arg(format!("-{}", child.id())).status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ =
        Command::new("kill").args(["-s", "KILL", "--"]).arg(format!("-{}", child.id())).status();
    let _ = child.wait();
}

/// The edge Worker running in `wrangler dev`, with local KV kept in a temporary directory.
#[derive(Debug)]
pub struct Edge {
    pub url: String,
    pub token: String,
    pub log: PathBuf,
    child: Child,
    _state: TempDir,
}

impl Edge {
    /// Starts `wrangler dev` (which builds the Worker through `scripts/build-edge`) and waits
    /// until it answers. `cache_ttl_seconds` is the isolate cache's staleness bound.
    pub async fn start(token: &str, cache_ttl_seconds: u64) -> anyhow::Result<Self> {
        Self::start_with(token, cache_ttl_seconds, &[]).await
    }

    /// As [`Edge::start`], with more `[vars]` for the Worker (`NAME`, `value`).
    pub async fn start_with(
        token: &str,
        cache_ttl_seconds: u64,
        vars: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        use std::os::unix::process::CommandExt;
        let root = root();
        let state = TempDir::new()?;
        let port = free_port();
        let log = root.join("target").join(format!("wrangler-dev-{port}.log"));
        std::fs::create_dir_all(root.join("target"))?;
        let wrangler = root.join("node_modules/.bin/wrangler");
        if !wrangler.exists() {
            bail!("{} is missing: run scripts/setup", wrangler.display());
        }
        let child = Command::new(&wrangler)
            .current_dir(&root)
            .args(["dev", "--ip", "127.0.0.1", "--port", &port.to_string()])
            .args(["--inspector-port", &free_port().to_string()])
            .arg("--persist-to")
            .arg(state.path())
            .args(["--var", &format!("EDGE_PUBLISH_TOKEN:{token}")])
            .args(["--var", &format!("MOCK_API_CACHE_TTL_SECONDS:{cache_ttl_seconds}")])
            .args(vars.iter().flat_map(|(k, v)| ["--var".to_owned(), format!("{k}:{v}")]))
            .args(["--show-interactive-dev-session=false", "--log-level", "info"])
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CI", "true")
            .stdin(Stdio::null())
            .stdout(File::create(&log)?)
            .stderr(File::create(&log)?.try_clone()?)
            .process_group(0)
            .spawn()
            .context("cannot start wrangler dev")?;
        let mut edge = Self {
            url: format!("http://127.0.0.1:{port}"),
            token: token.to_owned(),
            log,
            child,
            _state: state,
        };
        let client = reqwest::Client::new();
        let health = format!("{}/__edgemock/health", edge.url);
        // The first start builds the Worker; later ones only re-link it.
        let ready = eventually(Duration::from_secs(300), "wrangler dev to answer", || {
            let client = client.clone();
            let health = health.clone();
            async move { client.get(&health).send().await.ok().filter(|r| r.status().is_success()) }
        });
        let exited = async {
            loop {
                if let Ok(Some(status)) = edge.child.try_wait() {
                    return status;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        tokio::select! {
            result = ready => result.with_context(|| tail(&edge.log, 40))?,
            status = exited => bail!("wrangler dev exited with {status}:\n{}", tail(&edge.log, 40)),
        };
        Ok(edge)
    }

    /// Writes `value` straight into the edge's local KV with the wrangler CLI, behind the
    /// Worker's back (as another isolate's publish, or a KV replication, would look to it).
    pub fn kv_put(&self, key: &str, value: &str) -> anyhow::Result<()> {
        let root = root();
        let out = Command::new(root.join("node_modules/.bin/wrangler"))
            .current_dir(&root)
            .args(["kv", "key", "put", "--binding", "SNAPSHOTS", "--local", "--persist-to"])
            .arg(self._state.path())
            .args([key, value])
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CI", "true")
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            bail!(
                "wrangler kv key put failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log, 60)
    }

    /// The process group of `wrangler dev` and everything it started (workerd among them).
    pub fn process_group(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// A PostgreSQL server of its own, on a free loopback port, removed when dropped.
#[derive(Debug)]
pub struct Postgres {
    port: u16,
    bin: PathBuf,
    data: PathBuf,
    as_postgres_user: bool,
    _dir: TempDir,
}

impl Postgres {
    /// The directory of `initdb` and `pg_ctl`: `$PG_BIN`, else the newest
    /// `/usr/lib/postgresql/*/bin`, else wherever `PATH` finds `pg_ctl`.
    fn bin_dir() -> anyhow::Result<PathBuf> {
        if let Ok(dir) = std::env::var("PG_BIN") {
            return Ok(PathBuf::from(dir));
        }
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let v = e.file_name().to_string_lossy().parse().ok()?;
                let bin = e.path().join("bin");
                bin.join("initdb").exists().then_some((v, bin))
            })
            .collect();
        versions.sort();
        if let Some((_, bin)) = versions.pop() {
            return Ok(bin);
        }
        let out = Command::new("sh").args(["-c", "dirname \"$(command -v pg_ctl)\""]).output()?;
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if dir.is_empty() || dir == "." {
            bail!("no PostgreSQL server binaries found: run scripts/setup (or set PG_BIN)");
        }
        Ok(PathBuf::from(dir))
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres_user {
            // PostgreSQL refuses to run as root.
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    pub fn start() -> anyhow::Result<Self> {
        let bin = Self::bin_dir()?;
        let dir = TempDir::new()?;
        let data = dir.path().join("data");
        let uid = Command::new("id").arg("-u").output()?;
        let as_postgres_user = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        if as_postgres_user {
            let status =
                Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status()?;
            if !status.success() {
                bail!("cannot hand {} to the postgres user", dir.path().display());
            }
        }
        let pg = Self { port: free_port(), bin, data, as_postgres_user, _dir: dir };
        let out = pg
            .command("initdb")
            .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "-D"])
            .arg(&pg.data)
            .output()?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            pg.port,
            pg.data.display()
        );
        let out = pg
            .command("pg_ctl")
            .args(["-w", "-t", "60", "-l"])
            .arg(pg.data.join("server.log"))
            .args(["-o", &options, "-D"])
            .arg(&pg.data)
            .arg("start")
            .output()?;
        if !out.status.success() {
            bail!(
                "pg_ctl start failed: {}{}",
                String::from_utf8_lossy(&out.stderr),
                tail(&pg.data.join("server.log"), 20)
            );
        }
        Ok(pg)
    }

    /// Creates an empty database and returns its URL.
    pub fn fresh_database(&self) -> anyhow::Result<String> {
        let name = format!("edgemock_{}", uuid_like());
        let out = self
            .command("createdb")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", &name])
            .output()?;
        if !out.status.success() {
            bail!("createdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(format!("postgres://postgres@127.0.0.1:{}/{name}", self.port))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-m", "immediate", "-D"])
            .arg(&self.data)
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A `redis-server` of its own on a free loopback port, in a temporary directory, without
/// persistence (so a restart starts empty, as a replaced Redis would); killed when dropped.
#[derive(Debug)]
pub struct Redis {
    pub port: u16,
    password: Option<String>,
    child: Option<Child>,
    dir: TempDir,
}

impl Redis {
    pub fn start() -> anyhow::Result<Self> {
        let mut redis = Self::stopped(None)?;
        redis.start_again()?;
        Ok(redis)
    }

    /// As [`Redis::start`], asking clients for `password` (`requirepass`).
    pub fn start_with_password(password: &str) -> anyhow::Result<Self> {
        let mut redis = Self::stopped(Some(password))?;
        redis.start_again()?;
        Ok(redis)
    }

    /// A port and a directory, and no server yet ([`Redis::start_again`] starts it).
    pub fn stopped(password: Option<&str>) -> anyhow::Result<Self> {
        Ok(Self {
            port: free_port(),
            password: password.map(str::to_owned),
            child: None,
            dir: TempDir::new()?,
        })
    }

    /// `redis://[:password@]127.0.0.1:port`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// Starts the server on its port (again) and waits until it answers `PING`.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("redis-server is running already");
        }
        let program = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let log = self.dir.path().join("redis.log");
        let mut command = Command::new(&program);
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log);
        if let Some(password) = &self.password {
            command.args(["--requirepass", password]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {program}: run scripts/setup"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.answers() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("redis-server did not answer on port {}:\n{}", self.port, tail(&log, 20))
    }

    /// Whether the server answers a `PING` (authenticated if it has a password) at once.
    fn answers(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut request = String::new();
        if let Some(password) = &self.password {
            request.push_str(&format!("AUTH {password}\r\n"));
        }
        request.push_str("PING\r\n");
        let mut answer = [0u8; 64];
        stream.write_all(request.as_bytes()).is_ok()
            && stream.read(&mut answer).is_ok_and(|n| {
                String::from_utf8_lossy(&answer[..n]).contains("PONG")
                    || (self.password.is_some() && answer.starts_with(b"+OK"))
            })
    }

    /// Runs one command through `redis-cli` and returns what it printed.
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut command = Command::new("redis-cli");
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(password) = &self.password {
            command.args(["--no-auth-warning", "-a", password]);
        }
        let out = command.args(args).stdin(Stdio::null()).output().context("redis-cli")?;
        if !out.status.success() {
            bail!("redis-cli {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Kills the server (as a crash or a lost node would look to clients) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing answers, as with a
    /// hung Redis.
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal("STOP")
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal("CONT")
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let Some(child) = &self.child else { bail!("redis-server is not running") };
        let status =
            Command::new("kill").args(["-s", signal]).arg(child.id().to_string()).status()?;
        if !status.success() {
            bail!("kill -s {signal} {} failed", child.id());
        }
        Ok(())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        // SIGKILL ends a paused server too.
        self.stop();
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{}_{}_{}", std::process::id(), nanos, COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The `JWT_SECRET` of every control plane the tests start.
pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";

fn claims(sub: &str, role: Role, workspaces: &[&str]) -> Claims {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() + 3600)
        .unwrap_or(u64::MAX);
    Claims {
        sub: sub.to_owned(),
        role,
        workspaces: workspaces.iter().map(|w| (*w).to_owned()).collect(),
        exp,
    }
}

/// The control plane, started in-process on port 0, and a client for its admin API.
#[derive(Debug)]
pub struct ControlPlane {
    pub url: String,
    pub port: u16,
    /// Sends a token for every workspace with the owner role.
    pub client: reqwest::Client,
    pub tokens: Tokens,
    /// The token `client` sends.
    pub owner_token: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// A response: status and JSON body (`Value::Null` when the body is empty or not JSON).
pub type Reply = (u16, Value);

impl ControlPlane {
    /// Starts a control plane on `database_url`, publishing to `edge` when given.
    pub async fn start(database_url: &str, edge: Option<&Edge>) -> anyhow::Result<Self> {
        Self::start_with(database_url, edge.map(|e| e.url.clone()), edge.map(|e| e.token.clone()))
            .await
    }

    /// Starts a control plane that publishes to `edge_url` (if any) and answers the edge's
    /// internal routes with `token` (if any).
    pub async fn start_with(
        database_url: &str,
        edge_url: Option<String>,
        token: Option<String>,
    ) -> anyhow::Result<Self> {
        Self::start_on(0, database_url, edge_url, token).await
    }

    /// As [`ControlPlane::start_with`], on `port` (0: any free port): a control plane can be
    /// stopped and started again where its clients expect it.
    pub async fn start_on(
        port: u16,
        database_url: &str,
        edge_url: Option<String>,
        token: Option<String>,
    ) -> anyhow::Result<Self> {
        Self::start_tuned(port, database_url, edge_url, token, |_| {}).await
    }

    /// As [`ControlPlane::start_on`], with `tune` changing the configuration first.
    pub async fn start_tuned(
        port: u16,
        database_url: &str,
        edge_url: Option<String>,
        token: Option<String>,
        tune: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Self> {
        let mut config = Config {
            host: [127, 0, 0, 1].into(),
            jwt_secret: JWT_SECRET.to_owned(),
            port,
            database_url: database_url.to_owned(),
            edge_url,
            edge_publish_token: token,
            log_level: std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
            // Tests send nothing beyond this machine, and webhook URLs are public names:
            // tests/tests/webhooks.rs turns delivery on towards a receiver on loopback.
            webhooks_enabled: false,
            ..Config::default()
        };
        // Tests send hundreds of admin requests a minute from one token; the limit has its
        // own test (tests/tests/rate_limits.rs).
        config.rate_limits.global_rpm = 0;
        tune(&mut config);
        edgemock_control_plane::telemetry::init(
            &config.log_level,
            edgemock_control_plane::config::LogFormat::Pretty,
        );
        let app = Application::build(config).await?;
        let port = app.port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        let tokens = Tokens::new(JWT_SECRET);
        let owner = tokens.mint(&claims("test-owner", Role::Owner, &["*"]))?;
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {owner}").parse()?);
        Ok(Self {
            url: format!("http://127.0.0.1:{port}"),
            port,
            client: reqwest::Client::builder().default_headers(headers).build()?,
            tokens,
            owner_token: owner,
            stop: Some(stop),
            server,
        })
    }

    /// A token for `sub` with `role` in `workspaces`, valid for an hour.
    pub fn token(&self, sub: &str, role: Role, workspaces: &[&str]) -> String {
        self.tokens.mint(&claims(sub, role, workspaces)).unwrap_or_default()
    }

    /// Sends `method path` with `body` as the bearer of `credential` (`None`: no
    /// `Authorization` at all).
    pub async fn send_as(
        &self,
        credential: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Reply> {
        let mut request = reqwest::Client::new().request(method, format!("{}{path}", self.url));
        if let Some(credential) = credential {
            request = request.bearer_auth(credential);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request).await
    }

    /// Shuts the server down as SIGTERM would (in-flight requests finish, the listener and
    /// idle connections close) and waits until it has.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.server).await?
    }

    /// A SQLite database file in `dir`.
    pub fn sqlite_url(dir: &TempDir) -> String {
        format!("sqlite://{}?mode=rwc", dir.path().join("edgemock.db").display())
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Reply> {
        let response = request.send().await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Reply> {
        self.send(self.client.get(format!("{}{path}", self.url))).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Reply> {
        self.send(self.client.post(format!("{}{path}", self.url)).json(body)).await
    }

    /// Posts raw bytes on a connection of its own: the server may answer (413) and close it
    /// before reading the whole body, and that must not break the shared client's pool.
    pub async fn post_raw(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> anyhow::Result<Reply> {
        let request = reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.owner_token)
            .header("content-type", "application/json");
        self.send(request.body(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> anyhow::Result<Reply> {
        self.send(self.client.put(format!("{}{path}", self.url)).json(body)).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> anyhow::Result<Reply> {
        self.send(self.client.patch(format!("{}{path}", self.url)).json(body)).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Reply> {
        self.send(self.client.delete(format!("{}{path}", self.url))).await
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The `edgemock` binary of the `server` profile (the container image's build) as a process
/// of its own: what the benchmarks and the soak run measure, from outside, through /proc.
#[derive(Debug)]
pub struct Server {
    child: Child,
    pub url: String,
}

impl Server {
    /// Builds the binary (a no-op when it is up to date).
    pub fn build() -> anyhow::Result<()> {
        let status = Command::new("cargo")
            .current_dir(root())
            .args(["build", "--profile", "server", "--locked"])
            .args(["-p", "edgemock-control-plane", "--bin", "edgemock"])
            .status()?;
        if !status.success() {
            bail!("cargo build --profile server failed");
        }
        Ok(())
    }

    /// Starts the binary on a free loopback port with `env` (beside `HOST` and `PORT`) and
    /// waits until `/health/ready` answers 200; answers it and how long that took.
    pub async fn start(env: &[(&str, &str)]) -> anyhow::Result<(Self, Duration)> {
        let port = free_port();
        let started = Instant::now();
        let child = Command::new(root().join("target/server/edgemock"))
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("target/server/edgemock: run Server::build first")?;
        let server = Self { child, url: format!("http://127.0.0.1:{port}") };
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(format!("{}/health/ready", server.url)).send().await
                && r.status() == 200
            {
                return Ok((server, started.elapsed()));
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("the control plane was not ready within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// User and system CPU time of process `pid` so far, in seconds (`/proc/{pid}/stat`).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|t| t.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|t| t.parse().ok()).unwrap_or(0);
    #[allow(clippy::cast_precision_loss)] // clock ticks: far inside f64's range
    let seconds = ticks as f64 / 100.0;
    seconds
}

/// Resident memory of process `pid`, in MiB (`VmRSS` of `/proc/{pid}/status`).
pub fn rss_mib(pid: u32) -> f64 {
    proc_status(pid, "VmRSS:") / 1024.0
}

/// A figure of `/proc/{pid}/status` in its own unit (kB for memory), 0 when absent.
pub fn proc_status(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}
