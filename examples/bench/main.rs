//! `make bench`: how far the real binary is from the least a program must do for the same login, and what the daemon
//! costs while it waits.
//!
//! Runs the built-in simulator in-process with one user per login (a TOTP time step is never reused per account: the
//! app remembers `last_totp_step` and the simulator rejects replays), then, in a fresh `state_dir`:
//!
//! 1. paired logins, alternating which side goes first: A = `upstox-relogin login --force --account uK` (the release
//!    binary), B = `examples/minimal_login.rs` (only the necessary WebDriver commands) with another user. Both type
//!    the current TOTP window's code at once (`login.totp_min_remaining_secs = 0` for the app);
//! 2. the daemon's idle RSS: `run` with `on_start = "never"` and a cron that does not fire soon, once `/healthz`
//!    answers; then `run` with `on_start = "always"`, once its login is done and `/readyz` says ready;
//! 3. `check-config`: the median of repeated runs.
//!
//! 4. many accounts (`pool.rs`): `login --force` over 1, 4, 8 and 16 accounts × `browser.max_sessions` 1, 2 and 4:
//!    wall time, logins per minute, peak memory of the whole process tree (PSS of the binary, chromedriver and every
//!    Chromium process, sampled from /proc), the most logins in flight (the simulator's journal);
//! 5. with `--baseline PATH` (a previous build of the binary): paired single logins, time to token (process start
//!    until the token file exists) of this build against the baseline.
//!
//! `bench --app target/release/upstox-relogin [--minimal PATH] [--pairs N] [--baseline PATH] [--ttt-pairs N]`
//! (env `BENCH_PAIRS`, `BENCH_BASELINE`, `BENCH_TTT_PAIRS`).

mod pool;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::Parser;
use rand::Rng;
use upstox_relogin::simulator::{Faults, SimClient, SimConfig, SimUser, Simulator};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Targets from the issue.
const TARGET_RATIO: f64 = 1.10;
const TARGET_IDLE_RSS_MIB: f64 = 15.0;
const TARGET_CHECK_CONFIG_MS: f64 = 50.0;
/// App steps as it logs them, then the minimal program's extra ones.
const STEP_ORDER: [&str; 8] = ["browser", "dialog", "mobile", "otp", "pin", "exchange", "write", "close"];

#[derive(Debug, Parser)]
struct Args {
    /// The release `upstox-relogin` binary.
    #[arg(long)]
    app: PathBuf,
    /// The `minimal_login` example binary (default: next to this one).
    #[arg(long)]
    minimal: Option<PathBuf>,
    /// Login pairs (A + B each).
    #[arg(long, env = "BENCH_PAIRS", default_value_t = 10)]
    pairs: usize,
    /// `check-config` runs.
    #[arg(long, default_value_t = 20)]
    check_config_runs: usize,
    /// A previous build of `upstox-relogin`, for the paired time to token.
    #[arg(long, env = "BENCH_BASELINE")]
    baseline: Option<PathBuf>,
    /// Pairs of single logins for the time to token.
    #[arg(long, env = "BENCH_TTT_PAIRS", default_value_t = 8)]
    ttt_pairs: usize,
    /// Account counts of the many-accounts matrix (empty: skip it).
    #[arg(long, value_delimiter = ',', default_value = "1,4,8,16")]
    accounts: Vec<usize>,
    /// `browser.max_sessions` values of the matrix.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    max_sessions: Vec<usize>,
    /// Rounds of the matrix (cells alternate within a round; medians across rounds).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
}

/// One timed process: wall time and the `step done` lines it printed.
struct Run {
    wall: Duration,
    steps: BTreeMap<String, f64>,
}

impl Run {
    /// `browser 512 dialog 300 …` in step order.
    fn compact(&self) -> String {
        let known = STEP_ORDER.iter().filter_map(|s| self.steps.get(*s).map(|ms| format!("{s} {ms:.0}")));
        known.collect::<Vec<_>>().join(" ")
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args = Args::parse();
    let minimal = match args.minimal.clone() {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("minimal_login"),
    };
    for bin in [&args.app, &minimal] {
        if !bin.exists() {
            return Err(
                format!("`{}` not found: build with `cargo build --release --bins --examples`", bin.display()).into()
            );
        }
    }
    let pairs = args.pairs.max(1);
    // Per pair two users; one warm-up pair; two daemon accounts; the pool matrix; the time-to-token pairs.
    let ttt_pairs = if args.baseline.is_some() { args.ttt_pairs.max(1) } else { 0 };
    let matrix = pool::Matrix {
        accounts: args.accounts.clone(),
        max_sessions: args.max_sessions.clone(),
        rounds: args.rounds.max(1),
    };
    let users: Vec<SimUser> = (0..2 * pairs + 4 + matrix.users() + 2 * ttt_pairs).map(sim_user).collect();
    let client = SimClient {
        client_id: "bench-0000-0000-0000-000000000000".into(),
        client_secret: "bench-secret".into(),
        redirect_uri: "http://127.0.0.1:9/upstox/callback".into(),
        notifier_url: None,
    };
    let sim = Simulator::start(
        SimConfig {
            clients: vec![client.clone()],
            users: users.clone(),
            faults: Faults::default(),
            holidays: Vec::new(),
        },
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await?;
    let dir = tempfile::Builder::new().prefix("upstox-relogin-bench-").tempdir()?;
    let bench = Bench { sim: &sim, client: &client, users: &users, dir: dir.path(), app: &args.app, minimal: &minimal };
    let result = bench.run(pairs, args.check_config_runs, &matrix, args.baseline.as_deref(), ttt_pairs).await;
    sim.shutdown().await;
    if result.is_err() {
        // Keep the configs, logs and failure artifacts (screenshots) for a look.
        eprintln!("benchmark files kept in {}", dir.keep().display());
    }
    result
}

struct Bench<'a> {
    sim: &'a Simulator,
    client: &'a SimClient,
    users: &'a [SimUser],
    dir: &'a Path,
    app: &'a Path,
    minimal: &'a Path,
}

impl Bench<'_> {
    async fn run(
        &self,
        pairs: usize,
        check_config_runs: usize,
        matrix: &pool::Matrix,
        baseline: Option<&Path>,
        ttt_pairs: usize,
    ) -> Result<(), Error> {
        println!("upstox-relogin benchmark: {pairs} login pairs against the in-process simulator");
        println!("both sides type the current TOTP window's code at once ([login] totp_min_remaining_secs = 0)\n");

        let config = self.write_config("bench", &(0..self.users.len()).collect::<Vec<_>>(), "never", free_port()?)?;
        // Warm-up pair (page cache, Chromium's first start): not counted.
        self.app_login(&config, 2 * pairs).await?;
        self.minimal_login(2 * pairs + 1).await?;

        let (mut apps, mut minimals) = (Vec::new(), Vec::new());
        for i in 0..pairs {
            let (a, b) = (2 * i, 2 * i + 1);
            if i.is_multiple_of(2) {
                apps.push(self.app_login(&config, a).await?);
                minimals.push(self.minimal_login(b).await?);
            } else {
                minimals.push(self.minimal_login(b).await?);
                apps.push(self.app_login(&config, a).await?);
            }
            let (app, min) = (apps.last().unwrap(), minimals.last().unwrap());
            eprintln!(
                "pair {:>2}/{pairs}: app {:>5.0} ms [{}], minimal {:>5.0} ms [{}], ratio {:.3}",
                i + 1,
                ms(app.wall),
                app.compact(),
                ms(min.wall),
                min.compact(),
                ms(app.wall) / ms(min.wall)
            );
        }

        let idle_port = free_port()?;
        let idle_config = self.write_config("idle", &[2 * pairs + 2], "never", idle_port)?;
        let fresh = self.idle_rss(&idle_config, idle_port, "healthz").await?;
        let after_port = free_port()?;
        let after_config = self.write_config("after-login", &[2 * pairs + 3], "always", after_port)?;
        let after = self.idle_rss(&after_config, after_port, "readyz").await?;
        let check = self.check_config(&idle_config, check_config_runs).await?;

        let first = 2 * pairs + 4;
        let cells = self.pool_matrix(matrix, &(first..first + matrix.users()).collect::<Vec<_>>()).await?;
        let ttt = match baseline {
            Some(baseline) => {
                let first = first + matrix.users();
                Some(self.time_to_token(baseline, &(first..first + 2 * ttt_pairs).collect::<Vec<_>>()).await?)
            }
            None => None,
        };

        report(pairs, &apps, &minimals, &fresh, &after, &check);
        pool::report(&cells, ttt.as_ref());
        Ok(())
    }

    /// A config with one account per listed user (`u<index>`), a file sink, and a fresh `state_dir`.
    fn write_config(&self, name: &str, users: &[usize], on_start: &str, port: u16) -> Result<PathBuf, Error> {
        self.write_config_with(name, users, on_start, port, "")
    }

    /// `write_config` with `extra` TOML appended (whole tables).
    fn write_config_with(
        &self,
        name: &str,
        users: &[usize],
        on_start: &str,
        port: u16,
        extra: &str,
    ) -> Result<PathBuf, Error> {
        let state_dir = self.dir.join(format!("state-{name}"));
        std::fs::create_dir_all(state_dir.join("tokens"))?;
        let api_base = self.sim.base_url().as_str().trim_end_matches('/').to_owned();
        let mut toml = format!(
            "state_dir = {state}\n\n[server]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [schedule]\n# 1 January, midnight: never during a benchmark\ncron = \"0 0 0 1 1 *\"\non_start = \"{on_start}\"\n\n\
             [upstox]\nauthorize_url = {authorize}\napi_base_url = {api_base}\n\n\
             [login]\n# the minimal program does not wait for a fresh TOTP window either\ntotp_min_remaining_secs = 0\n\
             # a failure fails the benchmark instead of hiding in a retry\nmax_attempts = 1\n",
            state = quote(&state_dir.display().to_string()),
            authorize = quote(self.sim.authorize_url().as_str()),
            api_base = quote(&api_base),
        );
        for &i in users {
            let u = &self.users[i];
            toml.push_str(&format!(
                "\n[[accounts]]\nname = \"u{i}\"\nclient_id = {}\nredirect_uri = {}\nmobile = {}\nclient_secret = {}\npin = {}\ntotp_secret = {}\n",
                quote(&self.client.client_id),
                quote(&self.client.redirect_uri),
                quote(&u.mobile),
                quote(&self.client.client_secret),
                quote(&u.pin),
                quote(&u.totp_secret),
            ));
        }
        toml.push_str(&format!(
            "\n[[sinks]]\ntype = \"file\"\npath = {}\n",
            quote(&state_dir.join("tokens/{account}.json").display().to_string())
        ));
        toml.push_str(extra);
        let path = self.dir.join(format!("{name}.toml"));
        std::fs::write(&path, toml)?;
        Ok(path)
    }

    fn app_command(&self, config: &Path) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(self.app);
        // The app's defaults, whatever the caller's environment says.
        cmd.env_remove("RUST_LOG");
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("UPSTOX_RELOGIN_") {
                cmd.env_remove(key);
            }
        }
        cmd.arg("--config").arg(config).stdin(Stdio::null()).kill_on_drop(true);
        cmd
    }

    /// A: `upstox-relogin login --force --account u<user>`.
    async fn app_login(&self, config: &Path, user: usize) -> Result<Run, Error> {
        let mut cmd = self.app_command(config);
        cmd.args(["login", "--force", "--account", &format!("u{user}")]);
        let run = timed(cmd, "upstox-relogin login").await?;
        let token = self.dir.join(format!("state-bench/tokens/u{user}.json"));
        if !token.exists() {
            return Err(format!("app login of u{user} wrote no token document").into());
        }
        Ok(run)
    }

    /// B: the minimal program, with the user's job file.
    async fn minimal_login(&self, user: usize) -> Result<Run, Error> {
        let u = &self.users[user];
        let output = self.dir.join(format!("minimal-u{user}.json"));
        let job = serde_json::json!({
            "authorize_url": self.sim.authorize_url().as_str(),
            "token_url": self.sim.base_url().join("v2/login/authorization/token")?.as_str(),
            "client_id": self.client.client_id,
            "client_secret": self.client.client_secret,
            "redirect_uri": self.client.redirect_uri,
            "mobile": u.mobile,
            "pin": u.pin,
            "totp_secret": u.totp_secret,
            "output": output,
        });
        let job_path = self.dir.join(format!("minimal-u{user}.job.json"));
        std::fs::write(&job_path, serde_json::to_vec(&job)?)?;
        let mut cmd = tokio::process::Command::new(self.minimal);
        cmd.arg(&job_path).stdin(Stdio::null()).kill_on_drop(true);
        let run = timed(cmd, "minimal_login").await?;
        let body: serde_json::Value = serde_json::from_slice(&std::fs::read(&output)?)?;
        if body["access_token"].as_str().is_none_or(str::is_empty) {
            return Err(format!("minimal login of u{user} got no access token").into());
        }
        Ok(run)
    }

    /// Start `run`, wait for 200 on `/<endpoint>`, then sample VmRSS over ~2 s.
    async fn idle_rss(&self, config: &Path, port: u16, endpoint: &str) -> Result<Rss, Error> {
        let log = std::fs::File::create(self.dir.join(format!("daemon-{endpoint}.log")))?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let url = format!("http://127.0.0.1:{port}/{endpoint}");
        let mut cmd = self.app_command(config);
        cmd.arg("run").stdout(Stdio::null()).stderr(log);
        let started = Instant::now();
        let mut child = cmd.spawn()?;
        let pid = child.id().ok_or("daemon exited at once")?;
        loop {
            if let Ok(res) = http.get(&url).send().await
                && res.status().is_success()
            {
                break;
            }
            if let Some(status) = child.try_wait()? {
                return Err(format!("daemon exited ({status}) before /{endpoint} answered 200").into());
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err(format!("/{endpoint} did not answer 200 within 60 s").into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let ready_after = started.elapsed();
        let mut max = Rss::default();
        for _ in 0..11 {
            let rss = Rss::of(pid)?;
            if rss.total_kib > max.total_kib {
                max = rss;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        max.children = children_of(pid);
        max.ready_after = ready_after;
        // SAFETY: kill(2) on the child we spawned and still own (not yet reaped).
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await??;
        if !status.success() {
            return Err(format!("daemon exited with {status} on SIGTERM").into());
        }
        Ok(max)
    }

    async fn check_config(&self, config: &Path, runs: usize) -> Result<Vec<Duration>, Error> {
        let mut times = Vec::new();
        for i in 0..=runs {
            let mut cmd = self.app_command(config);
            cmd.arg("check-config").stdout(Stdio::null());
            let run = timed(cmd, "upstox-relogin check-config").await?;
            if i > 0 {
                // The first run warms the page cache.
                times.push(run.wall);
            }
        }
        Ok(times)
    }
}

/// Run to completion, fail on a non-zero exit, collect `step done … step=NAME … elapsed_ms=N` from stderr.
async fn timed(mut cmd: tokio::process::Command, what: &str) -> Result<Run, Error> {
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let started = Instant::now();
    let output = cmd.output().await?;
    let wall = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!("{what} failed ({}):\n{stderr}", output.status).into());
    }
    let mut steps = BTreeMap::new();
    for line in stderr.lines().filter(|l| l.contains("step done")) {
        let field = |name: &str| {
            line.split_whitespace().find_map(|w| w.strip_prefix(name)).map(|v| v.trim_matches('"').to_owned())
        };
        if let (Some(step), Some(elapsed)) = (field("step="), field("elapsed_ms=").and_then(|v| v.parse::<f64>().ok()))
        {
            steps.insert(step, elapsed);
        }
    }
    Ok(Run { wall, steps })
}

#[derive(Debug, Default, Clone)]
struct Rss {
    total_kib: u64,
    anon_kib: u64,
    file_kib: u64,
    threads: u64,
    children: usize,
    ready_after: Duration,
}

impl Rss {
    fn of(pid: u32) -> Result<Rss, Error> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(Rss {
            total_kib: field("VmRSS:"),
            anon_kib: field("RssAnon:"),
            file_kib: field("RssFile:") + field("RssShmem:"),
            threads: field("Threads:"),
            ..Rss::default()
        })
    }

    fn mib(&self) -> f64 {
        self.total_kib as f64 / 1024.0
    }
}

/// Processes whose parent is `pid` (a browser left behind would show here).
fn children_of(pid: u32) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    entries
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // `pid (comm) state ppid …`; comm may contain spaces, so split after the last ')'.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|ppid| ppid.parse::<u32>().ok())
                == Some(pid)
        })
        .count()
}

fn report(pairs: usize, apps: &[Run], minimals: &[Run], fresh: &Rss, after: &Rss, check: &[Duration]) {
    let wall = |runs: &[Run]| median(runs.iter().map(|r| ms(r.wall)).collect());
    let (app_ms, min_ms) = (wall(apps), wall(minimals));
    let ratio = app_ms / min_ms;
    let pair_ratio = median(apps.iter().zip(minimals).map(|(a, b)| ms(a.wall) / ms(b.wall)).collect());
    let check_ms = median(check.iter().map(|d| ms(*d)).collect());
    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };

    println!("\n## Login (N = {pairs} pairs, alternating; median wall time of the whole process)\n");
    println!("| | app (`login --force`) | minimal program | ratio (target ≤ {TARGET_RATIO:.2}) |");
    println!("|---|---:|---:|---:|");
    println!(
        "| total | {app_ms:.0} ms | {min_ms:.0} ms | **{ratio:.3}** {} (median of pair ratios {pair_ratio:.3}) |",
        verdict(ratio <= TARGET_RATIO)
    );
    let step = |runs: &[Run], name: &str| {
        let v: Vec<f64> = runs.iter().filter_map(|r| r.steps.get(name).copied()).collect();
        if v.is_empty() { None } else { Some(median(v)) }
    };
    let cell = |v: Option<f64>| v.map(|v| format!("{v:.0} ms")).unwrap_or_else(|| "—".into());
    for name in STEP_ORDER {
        let (a, b) = (step(apps, name), step(minimals, name));
        if a.is_none() && b.is_none() {
            continue;
        }
        println!("| {name} | {} | {} | |", cell(a), cell(b));
    }
    let rest = |runs: &[Run]| median(runs.iter().map(|r| ms(r.wall) - r.steps.values().sum::<f64>()).collect());
    println!(
        "| not in a step (process start/exit, config, state, publish; app: browser close) | {:.0} ms | {:.0} ms | |",
        rest(apps),
        rest(minimals)
    );

    println!("\n## Daemon idle RSS (max VmRSS over ~2 s; target ≤ {TARGET_IDLE_RSS_MIB:.0} MiB)\n");
    println!("| | VmRSS | anon | file | threads | child processes | ready after |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (label, rss) in
        [("fresh (`on_start = \"never\"`, /healthz up)", fresh), ("after one login (/readyz ready)", after)]
    {
        println!(
            "| {label} | **{:.1} MiB** {} | {:.1} MiB | {:.1} MiB | {} | {} | {:.0} ms |",
            rss.mib(),
            verdict(rss.mib() <= TARGET_IDLE_RSS_MIB),
            rss.anon_kib as f64 / 1024.0,
            rss.file_kib as f64 / 1024.0,
            rss.threads,
            rss.children,
            ms(rss.ready_after)
        );
    }

    println!("\n## check-config\n");
    println!(
        "median of {} runs: **{check_ms:.1} ms** {} (target ≤ {TARGET_CHECK_CONFIG_MS:.0} ms; min {:.1}, max {:.1})",
        check.len(),
        verdict(check_ms <= TARGET_CHECK_CONFIG_MS),
        check.iter().map(|d| ms(*d)).fold(f64::INFINITY, f64::min),
        check.iter().map(|d| ms(*d)).fold(0.0, f64::max),
    );

    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned()))
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let chromium = std::process::Command::new("chromium")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    println!("\nmachine: {cores} cores ({cpu}), {chromium}; date {}", chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"));
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len().is_multiple_of(2) { (v[mid - 1] + v[mid]) / 2.0 } else { v[mid] }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// A user with its own mobile, PIN and TOTP secret (160 random bits, base32).
fn sim_user(i: usize) -> SimUser {
    let mut rng = rand::rng();
    let mut secret = [0u8; 20];
    rng.fill(&mut secret);
    SimUser {
        mobile: format!("9{:09}", 100_000_000 + i),
        pin: format!("{:06}", rng.random_range(0..1_000_000)),
        totp_secret: totp_rs::Secret::from(secret.to_vec()).to_base32(),
        user_id: format!("BENCH{i:02}"),
        user_name: format!("Bench User {i}"),
        email: format!("bench{i}@example.com"),
    }
}

/// A TOML basic string (the values here are ASCII without control characters).
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}
