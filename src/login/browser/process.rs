//! The processes we spawn for one browser login, and what makes sure none of them outlives us.
//!
//! Each login gets a scratch dir `$TMPDIR/upstox-relogin-<our pid>-XXXX/` holding the Chromium profile (`profile/`),
//! the children's TMPDIR (`tmp/`) and the id of their process group (`pgid`). The group is led by a guard, a
//! `/bin/sh` whose stdin is a pipe only we hold: when we die in any way (SIGKILL, the OOM killer), the kernel closes
//! the pipe, the guard reads end-of-file and SIGKILLs its whole group: chromedriver, Chromium and its helpers.
//! chromedriver itself also gets `PR_SET_PDEATHSIG`. Every child starts from an allow-listed environment
//! (`child_env`), so no secret given through the environment (`pin_env`, a Redis password) reaches chromedriver,
//! Chromium or crashpad. `sweep_stale_profiles` removes the scratch dirs of processes of ours that are gone, after
//! killing a recorded group that still runs. This module knows nothing about WebDriver or Upstox.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use super::BrowserError;

/// Name prefix of our scratch dirs under the temp dir: `upstox-relogin-<pid>-<random>`.
pub(super) const SCRATCH_PREFIX: &str = "upstox-relogin-";
/// The file in a scratch dir that names the process group of the login's processes.
const PGID_FILE: &str = "pgid";
/// Bytes of chromedriver's stderr kept for error messages.
const LOG_TAIL_BYTES: usize = 8 * 1024;
/// How long a killed group may take to be gone (measured: 70–160 ms for chromedriver + Chromium).
pub(super) const GONE_TIMEOUT: Duration = Duration::from_secs(5);
/// The guard: block until stdin (a pipe only the parent holds) ends, then SIGKILL the own process group.
const GUARD_SCRIPT: &str = "read -r _; kill -KILL 0";

/// Longest path of a Unix socket (`sun_path` less its NUL). Chromium puts one at
/// `$TMPDIR/.org.chromium.Chromium.XXXXXX/SingletonSocket` (46 bytes below TMPDIR) and exits at start when it does not
/// fit (observed; chromedriver then only says "Chrome instance exited").
const SOCKET_PATH_MAX: usize = 107;
const CHROMIUM_SOCKET_SUFFIX: usize = 46;

/// Variables a child may inherit from us; everything else (a PIN in `pin_env`, a Redis password) stays here.
/// `LC_*` too. Display and font variables serve a headed Chromium under `xvfb-run`; the proxy variables are the
/// browser's own network settings.
const CHILD_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "TZ",
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "XAUTHORITY",
    "XDG_RUNTIME_DIR",
    "FONTCONFIG_FILE",
    "FONTCONFIG_PATH",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
];

/// The environment of every child: the allow-listed variables we have, plus `TMPDIR = tmp`.
pub(super) fn child_env(tmp: &Path) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
        .filter(|(key, _)| {
            let key = key.to_string_lossy();
            CHILD_ENV.contains(&key.as_ref()) || key.starts_with("LC_")
        })
        .collect();
    env.push(("TMPDIR".into(), tmp.as_os_str().to_owned()));
    env
}

/// A login's scratch dir (profile + TMPDIR + pgid record), removed on drop.
pub(super) struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    /// The dir is 0700 whatever the umask: the profile holds the dialog's session cookies while a login runs (and
    /// after a SIGKILL, until the next start's sweep).
    pub fn create() -> Result<Scratch, BrowserError> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{SCRATCH_PREFIX}{}-", std::process::id()))
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir()
            .map_err(|source| BrowserError::Profile { source })?;
        for sub in ["profile", "tmp"] {
            std::fs::create_dir(dir.path().join(sub)).map_err(|source| BrowserError::Profile { source })?;
        }
        let tmp_len = dir.path().join("tmp").as_os_str().len();
        if tmp_len + CHROMIUM_SOCKET_SUFFIX > SOCKET_PATH_MAX {
            tracing::warn!(
                tmpdir = %std::env::temp_dir().display(),
                "TMPDIR is too long for Chromium's sockets (their paths would exceed {SOCKET_PATH_MAX} bytes): Chromium may exit at start; use a shorter TMPDIR"
            );
        }
        Ok(Scratch { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn profile(&self) -> PathBuf {
        self.dir.path().join("profile")
    }

    pub fn tmp(&self) -> PathBuf {
        self.dir.path().join("tmp")
    }

    /// Remove the dir now (blocking: a used profile takes ~0.1–0.4 s to delete).
    pub fn remove(self) {
        let path = self.dir.path().to_path_buf();
        if let Err(e) = self.dir.close() {
            tracing::warn!(path = %path.display(), error = %e, "could not remove the browser profile dir");
        }
    }
}

/// chromedriver and its guard, both in the guard's process group (Chromium and its helpers inherit it).
pub(super) struct SpawnedDriver {
    guard: tokio::process::Child,
    driver: tokio::process::Child,
    /// The group's id: the guard's pid.
    pub pgid: i32,
    log_tail: Arc<Mutex<Vec<u8>>>,
}

impl SpawnedDriver {
    /// Start the guard, then chromedriver on `port` in the guard's group, both with `child_env`; record the group
    /// in the scratch dir.
    pub fn spawn(binary: &Path, port: u16, scratch: &Scratch) -> Result<SpawnedDriver, BrowserError> {
        let spawn_error = |source| BrowserError::DriverSpawn { binary: binary.to_path_buf(), source };
        let env = child_env(&scratch.tmp());
        let parent = std::process::id();
        let mut guard = tokio::process::Command::new("/bin/sh");
        // `$0` names the scratch dir, so the sweeper can tell this group from an unrelated one with a reused id.
        guard.arg("-c").arg(GUARD_SCRIPT).arg(scratch.path());
        guard.env_clear().envs(env.iter().cloned());
        guard.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null()).process_group(0).kill_on_drop(true);
        // No PR_SET_PDEATHSIG here: it would SIGKILL the guard in the very moment it must act (the kernel closes
        // the pipe, then signals the children of the dead parent), and it would lose that race.
        // SAFETY: the closure runs in the forked child before exec and calls only async-signal-safe functions.
        unsafe { guard.pre_exec(move || parent_alive(parent)) };
        let guard =
            guard.spawn().map_err(|source| BrowserError::DriverSpawn { binary: PathBuf::from("/bin/sh"), source })?;
        let pgid = guard.id().map(|id| id as i32).unwrap_or(0);
        let mut cmd = tokio::process::Command::new(binary);
        cmd.arg(format!("--port={port}"))
            // Only warnings: the INFO log would record every command, typed keys included.
            .arg("--log-level=WARNING")
            .env_clear()
            .envs(env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(pgid)
            .kill_on_drop(true);
        // SAFETY: as above.
        unsafe { cmd.pre_exec(move || die_with(parent)) };
        let mut driver = match cmd.spawn() {
            Ok(child) => child,
            Err(source) => {
                kill_group(pgid, libc::SIGKILL);
                return Err(spawn_error(source));
            }
        };
        if let Err(source) = std::fs::write(scratch.path().join(PGID_FILE), pgid.to_string()) {
            kill_group(pgid, libc::SIGKILL);
            return Err(BrowserError::Profile { source });
        }
        let log_tail = Arc::new(Mutex::new(Vec::new()));
        if let Some(mut stderr) = driver.stderr.take() {
            let tail = Arc::clone(&log_tail);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stderr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                    t.extend_from_slice(&buf[..n]);
                    let excess = t.len().saturating_sub(LOG_TAIL_BYTES);
                    t.drain(..excess);
                }
            });
        }
        Ok(SpawnedDriver { guard, driver, pgid, log_tail })
    }

    pub fn log_tail(&self) -> String {
        let t = self.log_tail.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&t).trim().to_owned()
    }

    /// chromedriver's exit status, if it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.driver.try_wait().ok().flatten()
    }

    /// SIGKILL the whole group now, without waiting (nothing more is needed from the browser).
    pub fn kill(&self) {
        kill_group(self.pgid, libc::SIGKILL);
    }

    /// SIGKILL the group, reap our two children, and wait until no process of the group runs any more.
    pub async fn terminate(mut self) {
        self.kill();
        let _ = self.driver.wait().await;
        let _ = self.guard.wait().await;
        let started = Instant::now();
        let mut interval = tokio::time::interval(Duration::from_millis(10));
        while group_alive(self.pgid) {
            if started.elapsed() > GONE_TIMEOUT {
                tracing::warn!(pgid = self.pgid, "browser processes still running {GONE_TIMEOUT:?} after SIGKILL");
                break;
            }
            interval.tick().await;
            self.kill();
        }
    }
}

/// In the forked child: die with the parent (`PR_SET_PDEATHSIG`), and fail the spawn if it already died.
fn die_with(parent: u32) -> std::io::Result<()> {
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    parent_alive(parent)
}

/// In the forked child: fail the spawn if the parent died before it (the child would be an orphan from the start).
fn parent_alive(parent: u32) -> std::io::Result<()> {
    // SAFETY: getppid is async-signal-safe.
    if unsafe { libc::getppid() } as u32 != parent {
        return Err(std::io::Error::other("the parent exited during the spawn"));
    }
    Ok(())
}

pub(super) fn kill_group(pgid: i32, signal: i32) {
    if pgid > 0 {
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is touched.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

/// A process of group `pgid` that is not a zombie still runs (zombies hold no memory; whoever inherited them reaps
/// them, or not).
pub(super) fn group_alive(pgid: i32) -> bool {
    // SAFETY: kill(pid, 0) only checks that a process of the group exists.
    if pgid <= 0 || unsafe { libc::kill(-pgid, 0) } != 0 {
        return false;
    }
    group_members(pgid).into_iter().any(|m| !m.zombie)
}

struct Member {
    pid: i32,
    zombie: bool,
}

/// The processes of group `pgid`, read from `/proc/<pid>/stat` (`pid (comm) state ppid pgrp …`).
fn group_members(pgid: i32) -> Vec<Member> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut members = Vec::new();
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // comm may contain spaces and parentheses: the fields start after the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("");
        let group = fields.nth(1).and_then(|g| g.parse::<i32>().ok());
        if group == Some(pgid) {
            members.push(Member { pid, zombie: state == "Z" || state == "X" });
        }
    }
    members
}

/// A group recorded in `dir` that is still ours: one of its live processes names `dir` on its command line (the
/// guard's `$0`, Chromium's `--user-data-dir`), so a group id reused by an unrelated program is never killed.
fn recorded_group(dir: &Path) -> Option<i32> {
    let pgid = std::fs::read_to_string(dir.join(PGID_FILE)).ok()?.trim().parse::<i32>().ok()?;
    let needle = dir.as_os_str().as_encoded_bytes();
    let ours = group_members(pgid).into_iter().filter(|m| !m.zombie).any(|m| {
        std::fs::read(format!("/proc/{}/cmdline", m.pid))
            .is_ok_and(|cmdline| cmdline.windows(needle.len()).any(|w| w == needle))
    });
    ours.then_some(pgid)
}

/// What `sweep_stale_profiles` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Scratch dirs removed.
    pub dirs: usize,
    /// Process groups that were still running and were killed first.
    pub groups_killed: usize,
}

/// Remove the scratch dirs of processes of ours that no longer run (a crash or SIGKILL skips the teardown), after
/// SIGKILLing a recorded process group that still runs (its guard should have done it; this is the second line).
/// Blocking: call it at start, before any login of this process.
pub fn sweep_stale_profiles() -> Swept {
    let mut swept = Swept::default();
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return swept };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(SCRATCH_PREFIX) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else { continue };
        // SAFETY: kill(pid, 0) only checks that the process exists.
        let owner_alive =
            unsafe { libc::kill(pid, 0) } == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if owner_alive {
            continue;
        }
        let dir = entry.path();
        if let Some(pgid) = recorded_group(&dir) {
            tracing::warn!(pgid, dir = %dir.display(), "killing browser processes left by a previous crash");
            kill_group(pgid, libc::SIGKILL);
            let started = Instant::now();
            while group_alive(pgid) && started.elapsed() < GONE_TIMEOUT {
                std::thread::sleep(Duration::from_millis(10));
            }
            swept.groups_killed += 1;
        }
        if std::fs::remove_dir_all(&dir).is_ok() {
            swept.dirs += 1;
        }
    }
    swept
}

/// The scratch dir prefix, for tests that check nothing is left behind.
pub fn profile_prefix() -> PathBuf {
    std::env::temp_dir().join(SCRATCH_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scratch_dir_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let scratch = Scratch::create().unwrap();
        let mode = std::fs::metadata(scratch.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", scratch.path().display());
    }

    #[test]
    fn children_get_only_allow_listed_variables() {
        let env = child_env(Path::new("/x/tmp"));
        let keys: Vec<String> = env.iter().map(|(k, _)| k.to_string_lossy().into_owned()).collect();
        for key in &keys {
            assert!(CHILD_ENV.contains(&key.as_str()) || key.starts_with("LC_") || key == "TMPDIR", "{key}");
        }
        assert_eq!(env.iter().filter(|(k, _)| k == "TMPDIR").count(), 1);
        assert!(env.iter().any(|(k, v)| k == "TMPDIR" && v == "/x/tmp"));
        if std::env::var_os("PATH").is_some() {
            assert!(keys.iter().any(|k| k == "PATH"));
        }
    }

    /// A dead owner's dir whose recorded group still runs: the sweep kills the group, then removes the dir; a group
    /// that does not name the dir is left alone.
    #[test]
    fn the_sweep_kills_a_recorded_group_that_still_runs_then_removes_its_dir() {
        let tmp = std::env::temp_dir();
        // A pid that is not running: a child we started and reaped.
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        gone.wait().unwrap();
        let dead_owner = gone.id();
        let dir = tmp.join(format!("{SCRATCH_PREFIX}{dead_owner}-sweeptest"));
        std::fs::create_dir_all(dir.join("profile")).unwrap();
        let spawn_group = |name: &Path| {
            use std::os::unix::process::CommandExt;
            std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg("sleep 300 & wait")
                .arg(name)
                .process_group(0)
                .spawn()
                .unwrap()
        };
        let mut ours = spawn_group(&dir);
        let mut stranger = spawn_group(Path::new("someone-else"));
        let other_dir = tmp.join(format!("{SCRATCH_PREFIX}{dead_owner}-sweeptest2"));
        std::fs::create_dir_all(&other_dir).unwrap();
        // The stranger's group recorded in another dead owner's dir: it does not name that dir, so it survives.
        std::fs::write(other_dir.join(PGID_FILE), stranger.id().to_string()).unwrap();
        std::fs::write(dir.join(PGID_FILE), ours.id().to_string()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while group_members(ours.id() as i32).len() < 2 && Instant::now() < deadline {
            std::thread::yield_now();
        }

        let swept = sweep_stale_profiles();
        assert!(swept.groups_killed >= 1, "{swept:?}");
        assert!(!dir.exists() && !other_dir.exists());
        assert!(ours.wait().unwrap().code().is_none(), "killed by a signal");
        assert!(!group_alive(ours.id() as i32));
        assert!(group_alive(stranger.id() as i32), "an unrelated group is never killed");
        kill_group(stranger.id() as i32, libc::SIGKILL);
        stranger.wait().unwrap();
    }
}
