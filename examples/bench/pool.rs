//! The many-accounts part of `make bench`: `login --force` over 1, 4, 8 and 16 accounts with `browser.max_sessions`
//! 1, 2 and 4 (wall time, logins per minute, peak memory of the whole process tree, the most logins the simulator
//! saw in flight at once), and the paired single-login time to token against a previous build (`--baseline`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use upstox_relogin::simulator::Journal;

use super::{Bench, Error, median, ms};

/// The matrix's axes (`--accounts`, `--max-sessions`).
pub struct Matrix {
    pub accounts: Vec<usize>,
    pub max_sessions: Vec<usize>,
    /// Times the whole matrix runs (`--rounds`); the report shows each cell's median wall time and highest peak.
    pub rounds: usize,
}

impl Matrix {
    /// Accounts the matrix logs in (each cell has its own: a TOTP step is never reused per account).
    pub fn users(&self) -> usize {
        self.accounts.iter().sum::<usize>() * self.max_sessions.len() * self.rounds
    }
}

/// Targets from the issue.
const TARGET_SPEEDUP: f64 = 0.70;
const TARGET_MEMORY_SLACK_MIB: f64 = 50.0;
const TARGET_TIME_TO_TOKEN: f64 = 0.85;

/// One cell of the matrix.
pub struct Cell {
    accounts: usize,
    max_sessions: usize,
    wall: Duration,
    /// Peak of the summed PSS of the binary and every process it started (chromedriver, Chromium, crashpad).
    peak_kib: u64,
    /// The most login sessions the simulator saw in flight at once during this cell.
    in_flight: usize,
}

/// One paired login: time until the token file appeared, and until the process exited.
pub struct ToToken {
    token: Duration,
    wall: Duration,
}

impl Bench<'_> {
    /// The matrix; `users` are the accounts to use, `matrix.users()` of them.
    pub async fn pool_matrix(&self, matrix: &Matrix, users: &[usize]) -> Result<Vec<Cell>, Error> {
        let mut users = users.iter().copied();
        let mut cells = Vec::new();
        for round in 1..=matrix.rounds {
            for &accounts in &matrix.accounts {
                for &max_sessions in &matrix.max_sessions {
                    let cell_users: Vec<usize> = users.by_ref().take(accounts).collect();
                    let name = format!("pool-{accounts}x{max_sessions}-r{round}");
                    let extra = format!("\n[browser]\nmax_sessions = {max_sessions}\n");
                    let config = self.write_config_with(&name, &cell_users, "never", super::free_port()?, &extra)?;
                    let since = Instant::now();
                    let mut cmd = self.app_command(&config);
                    cmd.args(["login", "--force"]);
                    let (wall, peak_kib) = run_sampled(cmd, None).await?.into_parts();
                    for u in &cell_users {
                        if !self.dir.join(format!("state-{name}/tokens/u{u}.json")).exists() {
                            return Err(format!("{name}: account u{u} got no token").into());
                        }
                    }
                    let in_flight = in_flight_since(&self.sim.journal(), since);
                    eprintln!(
                        "pool {accounts:>2} accounts × max_sessions {max_sessions}: {:>6.0} ms, peak {:>5.0} MiB, {in_flight} in flight",
                        ms(wall),
                        peak_kib as f64 / 1024.0
                    );
                    cells.push(Cell { accounts, max_sessions, wall, peak_kib, in_flight });
                }
            }
        }
        Ok(cells)
    }

    /// `pairs` pairs of single logins, alternating which goes first: this build against `baseline`, each with its
    /// own account, both on the same config (which sets no key the baseline lacks).
    pub async fn time_to_token(&self, baseline: &Path, users: &[usize]) -> Result<(Vec<ToToken>, Vec<ToToken>), Error> {
        let config = self.write_config_with("ttt", users, "never", super::free_port()?, "")?;
        let (mut news, mut olds) = (Vec::new(), Vec::new());
        for (i, pair) in users.chunks_exact(2).enumerate() {
            let new = (self.app, pair[0]);
            let old = (baseline, pair[1]);
            let order = if i.is_multiple_of(2) { [new, old] } else { [old, new] };
            for (bin, user) in order {
                let mut cmd = retarget(self.app_command(&config), bin);
                cmd.args(["login", "--force", "--account", &format!("u{user}")]);
                let token = self.dir.join(format!("state-ttt/tokens/u{user}.json"));
                let run = run_sampled(cmd, Some(&token)).await?;
                let token = run.token.ok_or_else(|| format!("{} wrote no token for u{user}", bin.display()))?;
                let sample = ToToken { token, wall: run.wall };
                if bin == self.app { news.push(sample) } else { olds.push(sample) }
            }
            let (n, o) = (news.last().unwrap(), olds.last().unwrap());
            eprintln!(
                "time to token {:>2}: this build {:>5.0} ms (exit {:>5.0}), baseline {:>5.0} ms (exit {:>5.0})",
                i + 1,
                ms(n.token),
                ms(n.wall),
                ms(o.token),
                ms(o.wall)
            );
        }
        Ok((news, olds))
    }
}

/// The same command line and environment with another program.
fn retarget(cmd: tokio::process::Command, program: &Path) -> tokio::process::Command {
    let std = cmd.as_std();
    let mut out = tokio::process::Command::new(program);
    out.args(std.get_args());
    for (key, value) in std.get_envs() {
        match value {
            Some(v) => out.env(key, v),
            None => out.env_remove(key),
        };
    }
    out.stdin(Stdio::null()).kill_on_drop(true);
    out
}

struct Sampled {
    wall: Duration,
    peak_kib: u64,
    token: Option<Duration>,
}

impl Sampled {
    fn into_parts(self) -> (Duration, u64) {
        (self.wall, self.peak_kib)
    }
}

/// Run `cmd` to a successful exit, sampling every 50 ms the summed PSS of it and its process tree (descendants, and
/// processes whose TMPDIR is one of its scratch dirs: crashpad leaves the tree), and every 2 ms whether `token`
/// exists. (The children's TMPDIR is not moved: Chromium's socket paths under it must stay within 107 bytes.)
async fn run_sampled(mut cmd: tokio::process::Command, token: Option<&PathBuf>) -> Result<Sampled, Error> {
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn()?;
    let pid = child.id().ok_or("exited at once")? as i32;
    let stderr = child.stderr.take();
    let log = tokio::spawn(async move {
        let mut text = String::new();
        if let Some(mut s) = stderr {
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut s, &mut text).await;
        }
        text
    });
    let (mut peak_kib, mut token_at, mut last_sample) = (0u64, None, Instant::now() - Duration::from_secs(1));
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    let status = loop {
        tokio::select! {
            status = child.wait() => break status?,
            _ = tick.tick() => {
                if token_at.is_none() && token.is_some_and(|t| t.exists()) {
                    token_at = Some(started.elapsed());
                }
                if last_sample.elapsed() >= Duration::from_millis(50) {
                    last_sample = Instant::now();
                    peak_kib = peak_kib.max(tree_pss_kib(pid));
                }
            }
        }
    };
    let wall = started.elapsed();
    if token_at.is_none() && token.is_some_and(|t| t.exists()) {
        token_at = Some(wall);
    }
    let text = log.await.unwrap_or_default();
    if !status.success() {
        return Err(format!("login failed ({status}):\n{text}").into());
    }
    Ok(Sampled { wall, peak_kib, token: token_at })
}

/// Summed `Pss` (proportional set size: shared pages split among their users, so the sum is the tree's real
/// memory, unlike summed RSS) of `pid`, its descendants, and processes whose TMPDIR lies in one of its scratch dirs
/// (`$TMPDIR/upstox-relogin-<pid>-…`).
fn tree_pss_kib(pid: i32) -> u64 {
    let prefix = format!("TMPDIR={}/upstox-relogin-{pid}-", std::env::temp_dir().display());
    let mut parents = Vec::new();
    let mut by_env = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Ok(p) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
            if let Ok(stat) = std::fs::read_to_string(entry.path().join("stat"))
                && let Some(ppid) =
                    stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok())
            {
                parents.push((p, ppid));
            }
            if let Ok(env) = std::fs::read(entry.path().join("environ"))
                && env.split(|b| *b == 0).any(|v| v.starts_with(prefix.as_bytes()))
            {
                by_env.push(p);
            }
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(parents.iter().filter(|(_, pp)| *pp == parent).map(|(c, _)| *c));
        i += 1;
    }
    tree.extend(by_env);
    tree.sort_unstable();
    tree.dedup();
    tree.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok())
        .filter_map(|rollup| {
            rollup
                .lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .sum()
}

/// The most login sessions in flight at once among those opened since `since`.
fn in_flight_since(journal: &Journal, since: Instant) -> usize {
    let mut recent = journal.clone();
    recent.logins.retain(|l| l.opened >= since);
    recent.max_concurrent_logins()
}

/// Markdown tables for the README.
pub fn report(cells: &[Cell], ttt: Option<&(Vec<ToToken>, Vec<ToToken>)>) {
    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
    let mib = |kib: u64| kib as f64 / 1024.0;
    // The single-login peak: the highest of the one-account runs (a 50 ms sample may miss a run's true peak, and a
    // cell of many logins has many chances to catch one).
    let single = cells
        .iter()
        .filter(|c| c.accounts == 1)
        .map(|c| mib(c.peak_kib))
        .fold(None, |m: Option<f64>, p| Some(m.map_or(p, |m| m.max(p))));
    let mut keys: Vec<(usize, usize)> = cells.iter().map(|c| (c.accounts, c.max_sessions)).collect();
    keys.dedup();
    keys.sort_unstable();
    keys.dedup();
    let Some(&first) = keys.first() else {
        return report_time_to_token(ttt);
    };
    let rounds = cells.iter().filter(|c| (c.accounts, c.max_sessions) == first).count();
    println!("\n## Many accounts (`login --force`; {rounds} round(s) of the matrix, median wall time, highest peak)\n");
    println!(
        "| accounts | max_sessions | wall | logins/min | peak memory (PSS, tree) | bound N × single + 50 MiB | most in flight |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let wall = |a: usize, m: usize| {
        median(cells.iter().filter(|c| c.accounts == a && c.max_sessions == m).map(|c| ms(c.wall)).collect())
    };
    for &(accounts, max_sessions) in &keys {
        let of_cell: Vec<&Cell> =
            cells.iter().filter(|c| c.accounts == accounts && c.max_sessions == max_sessions).collect();
        let peak = of_cell.iter().map(|c| mib(c.peak_kib)).fold(0.0, f64::max);
        let in_flight = of_cell.iter().map(|c| c.in_flight).max().unwrap_or(0);
        let wall_ms = wall(accounts, max_sessions);
        let bound = single.map(|s| max_sessions as f64 * s + TARGET_MEMORY_SLACK_MIB);
        let bound_cell = bound.map(|b| format!("{b:.0} MiB {}", verdict(peak <= b))).unwrap_or_else(|| "—".into());
        println!(
            "| {accounts} | {max_sessions} | {:.1} s | {:.1} | {peak:.0} MiB | {bound_cell} | {in_flight} {} |",
            wall_ms / 1000.0,
            accounts as f64 / wall_ms * 60_000.0,
            verdict(in_flight <= max_sessions)
        );
    }
    if let Some(single) = single {
        println!("\nsingle-login peak (highest one-account run): {single:.0} MiB");
    }
    let (one, two) = (wall(8, 1), wall(8, 2));
    if one.is_finite() && two.is_finite() {
        let ratio = two / one;
        println!(
            "\n8 accounts: max_sessions 2 takes **{ratio:.2}×** the time of max_sessions 1 (target ≤ {TARGET_SPEEDUP:.2}) {}",
            verdict(ratio <= TARGET_SPEEDUP)
        );
    }
    report_time_to_token(ttt);
}

fn report_time_to_token(ttt: Option<&(Vec<ToToken>, Vec<ToToken>)>) {
    let verdict = |ok: bool| if ok { "ok" } else { "MISSED" };
    if let Some((news, olds)) = ttt {
        let token = |v: &[ToToken]| median(v.iter().map(|t| ms(t.token)).collect());
        let exit = |v: &[ToToken]| median(v.iter().map(|t| ms(t.wall)).collect());
        let (new, old) = (token(news), token(olds));
        let pair_ratio = median(news.iter().zip(olds).map(|(n, o)| ms(n.token) / ms(o.token)).collect());
        println!(
            "\n## Time to token, one login (N = {} pairs, alternating; from process start to the token file)\n",
            news.len()
        );
        println!("| | this build | baseline | ratio (target ≤ {TARGET_TIME_TO_TOKEN:.2}) |");
        println!("|---|---:|---:|---:|");
        println!(
            "| token published | {new:.0} ms | {old:.0} ms | **{:.3}** {} (median of pair ratios {pair_ratio:.3}) |",
            new / old,
            verdict(new / old <= TARGET_TIME_TO_TOKEN)
        );
        println!("| process exit | {:.0} ms | {:.0} ms | |", exit(news), exit(olds));
    }
}
