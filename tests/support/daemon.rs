//! The real binary's `run` as a child process on a free port, with its log in the rig's dir: started and waited
//! for (`/healthz`), signalled, and stopped on drop (SIGTERM first, so it tears its browser down).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::{Rig, free_port, wait_for};

pub struct Daemon {
    child: tokio::process::Child,
    pub base: String,
    log: PathBuf,
}

impl Daemon {
    /// The rig's config with top-level keys `top`, `[server]` listening on a free port plus `server_keys`, and
    /// `tables`; then `run`, with `args` before the subcommand.
    pub async fn start(rig: &Rig, top: &str, server_keys: &str, tables: &str, args: &[&str]) -> Daemon {
        let port = free_port();
        let server = format!("[server]\nlisten = \"127.0.0.1:{port}\"\n{server_keys}\n");
        let config = rig.write_config(&format!("{top}\n{}", rig.config_toml(&server, tables)));
        Daemon::start_with(rig, &config, port, args).await
    }

    /// `run` with `config` (whose `server.listen` is 127.0.0.1:`port`), `args` before the subcommand; returns once
    /// `/healthz` answers.
    pub async fn start_with(rig: &Rig, config: &Path, port: u16, args: &[&str]) -> Daemon {
        let log = rig.path("daemon.log");
        let mut all: Vec<&str> = args.to_vec();
        all.push("run");
        let mut cmd = rig.command(config, &all, &[]);
        cmd.stdout(Stdio::null()).stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
        let child = cmd.spawn().expect("daemon starts");
        let base = format!("http://127.0.0.1:{port}");
        let health = format!("{base}/healthz");
        wait_for("/healthz", Duration::from_secs(15), || {
            let health = health.clone();
            async move { super::http_get(&health).await.filter(|(s, _)| *s == 200) }
        })
        .await;
        Daemon { child, base, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Send `signal`, then wait for the exit: (exit code, how long the stop took, the log).
    pub async fn stop_with(mut self, signal: i32) -> (i32, Duration, String) {
        let pid = self.child.id().expect("running") as i32;
        let started = Instant::now();
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(pid, signal) };
        let status = tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await.expect("stops").unwrap();
        (status.code().unwrap_or(-1), started.elapsed(), self.log())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let Some(pid) = self.child.id() else { return };
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::yield_now();
        }
    }
}
