//! Shared set-up for the integration tests: the simulator on 127.0.0.1:0, config files, the real binary as a child
//! process with its own TMPDIR (so we can prove it left no browser or profile behind), and a real `redis-server` on
//! a free port. Everything started here is torn down by `Drop`. Nothing here sleeps to wait: it polls conditions.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use upstox_relogin::simulator::{Faults, SimConfig, Simulator};

pub const SETUP_HINT: &str = "install the test dependencies with `make test-deps` \
     (apt-get install -y --no-install-recommends chromium chromium-driver redis-server)";

/// Fail (never skip) when a binary the test needs is missing.
pub fn require(binary: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(binary).is_file()))
        .unwrap_or(false);
    assert!(found, "`{binary}` is not on PATH: {SETUP_HINT}");
}

pub fn require_browser() {
    require("chromedriver");
    assert!(
        ["chromium", "chromium-browser", "google-chrome"].iter().any(|b| which(b)),
        "no Chromium on PATH: {SETUP_HINT}"
    );
}

fn which(binary: &str) -> bool {
    std::env::var_os("PATH").map(|p| std::env::split_paths(&p).any(|d| d.join(binary).is_file())).unwrap_or(false)
}

/// A simulator plus a scratch directory holding the config, state_dir, token files and the child's TMPDIR.
pub struct Rig {
    pub sim: Simulator,
    pub dir: tempfile::TempDir,
}

impl Rig {
    pub async fn start() -> Rig {
        Rig::with_faults(Faults::default()).await
    }

    pub async fn with_faults(faults: Faults) -> Rig {
        require_browser();
        let config = SimConfig { faults, ..SimConfig::demo() };
        let sim = Simulator::start(config, SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("simulator starts");
        let dir = tempfile::Builder::new().prefix("relogin-test-").tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        Rig { sim, dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path("state")
    }

    pub fn token_path(&self) -> PathBuf {
        self.path("tokens/primary.json")
    }

    /// A complete config for one account `primary` against the simulator, with a file sink, plus `extra` TOML
    /// (top-level keys must come first, so `extra` is inserted before the tables).
    pub fn config_toml(&self, extra_top: &str, extra_tables: &str) -> String {
        let sc = self.sim.config();
        let (c, u) = (&sc.clients[0], &sc.users[0]);
        format!(
            r#"state_dir = "{state}"
{extra_top}
[upstox]
authorize_url = "{authorize}"
api_base_url = "{base}"

[browser]
step_timeout_secs = 20

[login]
retry_min_backoff_secs = 0
retry_max_backoff_secs = 1

[[accounts]]
name = "primary"
client_id = "{client_id}"
redirect_uri = "{redirect}"
mobile = "{mobile}"
client_secret = "{secret}"
pin = "{pin}"
totp_secret = "{totp}"

[[sinks]]
type = "file"
path = "{tokens}/{{account}}.json"
{extra_tables}
"#,
            state = self.state_dir().display(),
            authorize = self.sim.authorize_url(),
            base = self.sim.base_url(),
            client_id = c.client_id,
            redirect = c.redirect_uri,
            mobile = u.mobile,
            secret = c.client_secret,
            pin = u.pin,
            totp = u.totp_secret,
            tokens = self.path("tokens").display(),
        )
    }

    pub fn write_config(&self, toml: &str) -> PathBuf {
        let path = self.path("config.toml");
        std::fs::write(&path, toml).unwrap();
        path
    }

    pub fn default_config(&self) -> PathBuf {
        self.write_config(&self.config_toml("", ""))
    }

    /// Run the real binary with `args` and wait for it, with this rig's TMPDIR; asserts nothing of ours survives.
    pub async fn cli(&self, config: &Path, args: &[&str]) -> CliRun {
        let started = Instant::now();
        let output = self.command(config, args, &[]).output().await.expect("binary runs");
        let run = CliRun { output, elapsed: started.elapsed() };
        self.assert_no_browser_left();
        run
    }

    pub fn command(&self, config: &Path, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_upstox-relogin"));
        cmd.arg("--config").arg(config).args(args).env("TMPDIR", self.path("tmp")).env_remove("UPSTOX_RELOGIN_CONFIG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.kill_on_drop(true);
        cmd
    }

    /// No process mentions this rig's TMPDIR (Chromium's `--user-data-dir` lives there) and the dir is empty.
    pub fn assert_no_browser_left(&self) {
        let tmp = self.path("tmp");
        let needle = tmp.display().to_string();
        let survivors = processes_mentioning(&needle);
        assert!(survivors.is_empty(), "browser processes left behind: {survivors:?}");
        let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "profile dirs left behind in {}: {left:?}", tmp.display());
    }

    pub fn read_token(&self) -> serde_json::Value {
        let bytes = std::fs::read(self.token_path()).expect("token file exists");
        serde_json::from_slice(&bytes).expect("token file is JSON")
    }
}

/// Command lines (as text) of live processes containing `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return found };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        // Zombies have an empty cmdline; they hold no resources worth reporting.
        if text.contains(needle) {
            found.push(text);
        }
    }
    found
}

pub struct CliRun {
    pub output: Output,
    pub elapsed: Duration,
}

impl CliRun {
    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    #[track_caller]
    pub fn assert_code(&self, expected: i32) -> &Self {
        assert_eq!(self.code(), expected, "exit code\n--- stdout\n{}\n--- stderr\n{}", self.stdout(), self.stderr());
        self
    }
}

/// A real `redis-server` on a free loopback port, killed on drop.
pub struct RedisServer {
    child: std::process::Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_on(free_port())
    }

    pub fn start_on(port: u16) -> RedisServer {
        require("redis-server");
        let dir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server ({e}): {SETUP_HINT}"));
        let server = RedisServer { child, port, _dir: dir };
        server.wait_ready();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(client) = redis::Client::open(self.url())
                && let Ok(mut conn) = client.get_connection()
                && redis::cmd("PING").query::<String>(&mut conn).is_ok()
            {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not answer PING within 10s");
            std::thread::yield_now();
        }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap().local_addr().unwrap().port()
}

/// Poll `check` every 50 ms until it returns `Some`, or panic after `timeout` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut interval = tokio::time::interval(Duration::from_millis(50));
    loop {
        interval.tick().await;
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
    }
}

/// GET `url`, returning (status, body); `None` when nothing answers.
pub async fn http_get(url: &str) -> Option<(u16, String)> {
    let resp = reqwest::Client::new().get(url).timeout(Duration::from_secs(10)).send().await.ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.text().await.ok()?))
}
