//! Shared set-up for the integration tests: the simulator on 127.0.0.1:0, config files, the real binary as a child
//! process with its own TMPDIR (so we can prove it left no browser or profile behind), and a real `redis-server` on
//! a free port. Everything started here is torn down by `Drop`. Nothing here sleeps to wait: it polls conditions.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod daemon;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use upstox_relogin::simulator::{ConfigFile, Faults, SimConfig, Simulator};

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
        // No market holidays unless a test declares some: cron runs must not depend on the day the tests run.
        Rig::with_sim(SimConfig { faults, holidays: Vec::new(), ..SimConfig::demo() }).await
    }

    /// A rig around a simulator with this configuration (e.g. several accounts), taken as given.
    pub async fn with_sim(config: SimConfig) -> Rig {
        require_browser();
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

    /// A complete config for one account `primary` against the simulator (the simulator's own config builder),
    /// with a file sink under `tokens/`, test-friendly timeouts and backoffs, then `extra_top` and `extra_tables`
    /// (whole tables, such as `[server]` or another `[[sinks]]`).
    pub fn config_toml(&self, extra_top: &str, extra_tables: &str) -> String {
        let state_dir = self.state_dir();
        let token_path = format!("{}/{{account}}.json", self.path("tokens").display());
        let base = self.sim.config_toml(&ConfigFile {
            state_dir: &state_dir,
            token_path: &token_path,
            account_name: "primary",
        });
        format!(
            "{base}\n[browser]\nstep_timeout_secs = 20\n\n[login]\nretry_min_backoff_secs = 0\nretry_max_backoff_secs = 1\n\n{extra_top}\n{extra_tables}\n"
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
        self.cli_env(config, args, &[]).await
    }

    /// `cli` with extra environment variables (e.g. `RUST_LOG`).
    pub async fn cli_env(&self, config: &Path, args: &[&str], env: &[(&str, &str)]) -> CliRun {
        run_binary(&self.path("tmp"), config, args, env).await
    }

    pub fn command(&self, config: &Path, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
        binary_command(&self.path("tmp"), config, args, env)
    }

    /// See `assert_no_browser_left_in`.
    pub fn assert_no_browser_left(&self) {
        assert_no_browser_left_in(&self.path("tmp"));
    }

    /// Publish a plausible earlier token document (generation 41, unexpired, but unknown to the simulator, so a
    /// `login` replaces it) at `token_path`, and return its exact bytes.
    pub fn seed_token(&self) -> Vec<u8> {
        let user = &self.sim.config().users[0];
        seed_token_file(&self.token_path(), "primary", (&user.user_id, &user.user_name, &user.email))
    }

    /// Pids of the chromedriver processes this rig's binary spawned (their TMPDIR lies inside the rig's).
    pub fn chromedriver_pids(&self) -> Vec<i32> {
        processes_with_tmpdir_under(&self.path("tmp"))
            .into_iter()
            .filter(|(_, name)| name == "chromedriver")
            .map(|(pid, _)| pid)
            .collect()
    }

    /// The facts `state_dir` keeps for account `primary`.
    pub fn account_state(&self) -> serde_json::Value {
        let bytes = std::fs::read(self.state_dir().join("accounts/primary.json")).expect("account state exists");
        serde_json::from_slice(&bytes).expect("account state is JSON")
    }

    pub fn read_token(&self) -> serde_json::Value {
        let bytes = std::fs::read(self.token_path()).expect("token file exists");
        serde_json::from_slice(&bytes).expect("token file is JSON")
    }
}

/// A scratch directory (config, state_dir, tokens, and the child's TMPDIR under `tmp/`) for tests that bring their
/// own Upstox stand-in instead of the simulator.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        require_browser();
        let dir = tempfile::Builder::new().prefix("relogin-test-").tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        Scratch { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write_config(&self, toml: &str) -> PathBuf {
        let path = self.path("config.toml");
        std::fs::write(&path, toml).unwrap();
        path
    }

    pub async fn cli(&self, config: &Path, args: &[&str]) -> CliRun {
        run_binary(&self.path("tmp"), config, args, &[]).await
    }
}

/// Write a plausible earlier token document for `account` of user (`user_id`, `user_name`, `email`) at `path`:
/// generation 41, unexpired, random tokens nobody issued (so a `login` replaces it). Returns its exact bytes.
pub fn seed_token_file(path: &Path, account: &str, (user_id, user_name, email): (&str, &str, &str)) -> Vec<u8> {
    use rand::distr::{Alphanumeric, SampleString};
    let now = chrono::Utc::now();
    let doc = upstox_relogin::token::TokenDocument {
        account: account.into(),
        access_token: format!("eyJseeded{}", Alphanumeric.sample_string(&mut rand::rng(), 40)),
        extended_token: Some(format!("eyJseededext{}", Alphanumeric.sample_string(&mut rand::rng(), 40))),
        token_type: "Bearer".into(),
        user_id: user_id.into(),
        user_name: user_name.into(),
        email: email.into(),
        exchanges: vec!["NSE".into()],
        products: vec!["D".into()],
        issued_at: upstox_relogin::token::ist(now),
        expires_at: upstox_relogin::token::expiry_for(now),
        generation: 41,
    };
    let bytes = doc.to_bytes();
    upstox_relogin::sink::write_atomically(path, &bytes).expect("seed token written");
    bytes
}

/// The binary with `--config config args`, `TMPDIR=tmp`, killed if dropped.
pub fn binary_command(tmp: &Path, config: &Path, args: &[&str], env: &[(&str, &str)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_upstox-relogin"));
    cmd.arg("--config").arg(config).args(args).env("TMPDIR", tmp).env_remove("UPSTOX_RELOGIN_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.kill_on_drop(true);
    cmd
}

/// Run the binary to its end and assert that nothing it spawned survives.
pub async fn run_binary(tmp: &Path, config: &Path, args: &[&str], env: &[(&str, &str)]) -> CliRun {
    let started = Instant::now();
    let output = binary_command(tmp, config, args, env).output().await.expect("binary runs");
    let run = CliRun { output, elapsed: started.elapsed() };
    assert_no_browser_left_in(tmp);
    run
}

/// No process mentions `tmp` (Chromium's `--user-data-dir` lives there), none runs with a TMPDIR inside it
/// (chromedriver's cmdline names no path, its environment does), and the dir is empty.
///
/// Processes that were just killed take a moment to go, and Chromium's crashpad handlers (in a session of their
/// own, so outside the process group that teardown kills) exit only once Chromium has: this polls for up to
/// `LEFTOVER_GRACE` before failing.
pub fn assert_no_browser_left_in(tmp: &Path) {
    const LEFTOVER_GRACE: Duration = Duration::from_secs(5);
    let needle = tmp.display().to_string();
    let deadline = Instant::now() + LEFTOVER_GRACE;
    loop {
        let survivors = processes_mentioning(&needle);
        let spawned = processes_with_tmpdir_under(tmp);
        let left: Vec<_> = std::fs::read_dir(tmp).unwrap().map(|e| e.unwrap().file_name()).collect();
        if survivors.is_empty() && spawned.is_empty() && left.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            assert!(survivors.is_empty(), "browser processes left behind: {survivors:?}");
            assert!(spawned.is_empty(), "processes with a per-login TMPDIR left behind (pid, name): {spawned:?}");
            panic!("profile dirs left behind in {}: {left:?}", tmp.display());
        }
        std::thread::sleep(Duration::from_millis(20));
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

/// (pid, name) of live processes whose environment has `TMPDIR` strictly inside `dir`: what the binary spawned for
/// a login (chromedriver gets `<dir>/upstox-relogin-<pid>-XXXX/tmp`, Chromium inherits it). The binary itself,
/// whose TMPDIR is `dir`, does not count.
pub fn processes_with_tmpdir_under(dir: &Path) -> Vec<(i32, String)> {
    let prefix = format!("TMPDIR={}/", dir.display());
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return found };
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        // Unreadable (another user's process, or gone meanwhile) or empty (a zombie): nothing of ours.
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        if environ.split(|b| *b == 0).any(|var| var.starts_with(prefix.as_bytes())) {
            let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default().trim().to_owned();
            found.push((pid, name));
        }
    }
    found
}

/// Pids of every live descendant of `pid` (children, their children, …), from `/proc/<pid>/stat`.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut parent_of = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            // `pid (comm) state ppid …`; comm may contain spaces, so split after the last ')'.
            let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok());
            if let Some(ppid) = ppid {
                parent_of.push((child, ppid));
            }
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(parent_of.iter().filter(|(_, p)| *p == parent).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}

/// Set `key = value` (TOML text) in `[table]` (or the first `[[table]]`) of `toml`, replacing the key if the table
/// has it, adding the table at the end if it is missing.
pub fn toml_set(toml: &str, table: &str, key: &str, value: &str) -> String {
    let header = format!("[{table}]");
    let array_header = format!("[[{table}]]");
    let mut lines: Vec<String> = toml.lines().map(str::to_owned).collect();
    let Some(start) = lines.iter().position(|l| l.trim() == header || l.trim() == array_header) else {
        return format!("{toml}\n{header}\n{key} = {value}\n");
    };
    let end =
        lines[start + 1..].iter().position(|l| l.trim_start().starts_with('[')).map_or(lines.len(), |i| start + 1 + i);
    let line = format!("{key} = {value}");
    match lines[start + 1..end].iter().position(|l| l.split('=').next().is_some_and(|k| k.trim() == key)) {
        Some(i) => lines[start + 1 + i] = line,
        None => lines.insert(start + 1, line),
    }
    lines.join("\n") + "\n"
}

/// Where secrets showed up in `output`; also returns the number of lines searched. Short secrets (PINs, TOTP and
/// auth codes) count only as whole words, so a 6-digit PIN is not "found" inside a timestamp's microseconds.
pub fn find_secrets(output: &str, secrets: &[(&str, String)]) -> (usize, Vec<String>) {
    let mut leaks = Vec::new();
    let mut lines = 0;
    for (n, line) in output.lines().enumerate() {
        lines += 1;
        for (what, secret) in secrets.iter().filter(|(_, s)| !s.is_empty()) {
            let whole_word = secret.len() < 12;
            let hit = line.match_indices(secret.as_str()).any(|(at, _)| {
                let before = line[..at].chars().next_back();
                let after = line[at + secret.len()..].chars().next();
                !whole_word
                    || !(before.is_some_and(|c| c.is_ascii_alphanumeric())
                        || after.is_some_and(|c| c.is_ascii_alphanumeric()))
            });
            if hit {
                leaks.push(format!("{what} on line {}: {line}", n + 1));
            }
        }
    }
    (lines, leaks)
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

    /// stdout then stderr, for greps over everything the run printed.
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout(), self.stderr())
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
    password: Option<String>,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_on(free_port())
    }

    pub fn start_on(port: u16) -> RedisServer {
        RedisServer::start_with(port, &[])
    }

    /// A server that wants this password (`AUTH`).
    pub fn start_with_password(password: &str) -> RedisServer {
        RedisServer::start_with(free_port(), &["--requirepass", password])
    }

    fn start_with(port: u16, extra: &[&str]) -> RedisServer {
        require("redis-server");
        let dir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(extra)
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server ({e}): {SETUP_HINT}"));
        let password = extra.windows(2).find(|w| w[0] == "--requirepass").map(|w| w[1].to_owned());
        let server = RedisServer { child, port, password, _dir: dir };
        server.wait_ready();
        server
    }

    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(client) = redis::Client::open(self.url())
                && let Ok(mut conn) = client.get_connection()
            {
                match redis::cmd("PING").query::<String>(&mut conn) {
                    Ok(_) => return,
                    // Up, and wants a password: ready too.
                    Err(e) if e.to_string().contains("NOAUTH") => return,
                    Err(_) => {}
                }
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

/// A real HTTP receiver for notifications (axum on 127.0.0.1:0): records every POST (path and JSON body) and
/// answers each path with its scripted statuses in order, then 200.
pub struct HookReceiver {
    pub addr: SocketAddr,
    seen: std::sync::Arc<std::sync::Mutex<HookLog>>,
}

#[derive(Default)]
struct HookLog {
    requests: Vec<(String, serde_json::Value)>,
    script: Vec<(String, u16)>,
}

impl HookReceiver {
    /// `script`: (path, status) answers, each used once, in order, for requests to that path.
    pub async fn start(script: &[(&str, u16)]) -> HookReceiver {
        use axum::extract::State;
        use axum::http::{StatusCode, Uri};
        type Shared = std::sync::Arc<std::sync::Mutex<HookLog>>;
        async fn receive(State(seen): State<Shared>, uri: Uri, body: axum::Json<serde_json::Value>) -> StatusCode {
            let mut seen = seen.lock().unwrap();
            seen.requests.push((uri.path().to_owned(), body.0));
            let scripted = seen.script.iter().position(|(path, _)| path == uri.path());
            let status = scripted.map_or(200, |i| seen.script.remove(i).1);
            StatusCode::from_u16(status).unwrap()
        }
        let seen: Shared = std::sync::Arc::new(std::sync::Mutex::new(HookLog {
            requests: Vec::new(),
            script: script.iter().map(|(p, s)| ((*p).to_owned(), *s)).collect(),
        }));
        let app = axum::Router::new().route("/{*path}", axum::routing::post(receive)).with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        HookReceiver { addr, seen }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request so far: (path, JSON body).
    pub fn requests(&self) -> Vec<(String, serde_json::Value)> {
        self.seen.lock().unwrap().requests.clone()
    }
}

/// The user "someone else's" commands run as: when the tests run as root (who ignores file permissions), children
/// that must meet a permission problem drop to `nobody`; otherwise they run as the tests' own user, and the
/// helpers below use plain modes to make paths unreadable or read-only for them.
pub const NOBODY: u32 = 65534;

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Make `cmd` run as an unprivileged user (`nobody` when the tests run as root), with `home` as HOME.
pub fn unprivileged(cmd: &mut std::process::Command, home: &Path) {
    use std::os::unix::process::CommandExt;
    cmd.env("HOME", home);
    if is_root() {
        // SAFETY: only async-signal-safe syscalls run between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(NOBODY) != 0 || libc::setuid(NOBODY) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

/// Give `path` (recursively) to the user `unprivileged` children run as.
pub fn hand_over(path: &Path) {
    if !is_root() {
        return;
    }
    std::os::unix::fs::lchown(path, Some(NOBODY), Some(NOBODY)).unwrap();
    if path.is_dir() && !path.is_symlink() {
        for entry in std::fs::read_dir(path).unwrap() {
            hand_over(&entry.unwrap().path());
        }
    }
}

/// Make the directory `dir` read-only for `unprivileged` children: root's and 0755 when the tests run as root,
/// else 0555.
pub fn make_read_only(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if is_root() {
        std::os::unix::fs::chown(dir, Some(0), Some(0)).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    } else {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
}

/// Make `path` (a file, or a directory and everything in it) unreadable and unwritable for `unprivileged`
/// children: root's with mode 0600/0700 when the tests run as root (as `login` run by root leaves it), else 0000.
pub fn make_private_to_someone_else(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            make_private_to_someone_else(&entry.unwrap().path());
        }
    }
    if is_root() {
        std::os::unix::fs::chown(path, Some(0), Some(0)).unwrap();
        let mode = if path.is_dir() { 0o700 } else { 0o600 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    } else {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o000)).unwrap();
    }
}

/// The real binary as a long-lived child (a `run` daemon, or a `login` to be signalled mid-way) with its stderr in
/// a file that can be read while it runs. Stopped (SIGCONT, then SIGTERM, then SIGKILL) when dropped.
pub struct Process {
    pub child: tokio::process::Child,
    log: PathBuf,
}

impl Process {
    /// Spawn `args` with `rig`'s TMPDIR and `env`; stderr goes to `{rig}/{name}.log`.
    pub fn spawn(rig: &Rig, config: &Path, args: &[&str], env: &[(&str, &str)], name: &str) -> Process {
        let log = rig.path(&format!("{name}.log"));
        let mut cmd = rig.command(config, args, env);
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::from(std::fs::File::create(&log).expect("log file")));
        Process { child: cmd.spawn().expect("binary starts"), log }
    }

    pub fn pid(&self) -> i32 {
        self.child.id().expect("still running") as i32
    }

    /// What it wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.pid(), signal) };
    }

    /// Wait for the exit code, at most `timeout`.
    pub async fn exit_code(&mut self, timeout: Duration) -> i32 {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("no exit within {timeout:?}; stderr so far:\n{}", self.log()))
            .expect("wait");
        status.code().unwrap_or(-1)
    }

    /// SIGTERM, then the exit code.
    pub async fn terminate(&mut self) -> i32 {
        self.signal(libc::SIGTERM);
        self.exit_code(Duration::from_secs(15)).await
    }
}

impl Drop for Process {
    /// A failed assertion must not leave a browser behind: wake it if stopped, ask for a clean stop (SIGTERM lets
    /// it tear its browser down), then `kill_on_drop` finishes the job.
    fn drop(&mut self) {
        let Some(pid) = self.child.id() else { return };
        // SAFETY: signalling our own child process.
        unsafe {
            libc::kill(pid as i32, libc::SIGCONT);
            libc::kill(pid as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::yield_now();
        }
    }
}
