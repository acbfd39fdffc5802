//! `run`: the long-running daemon. Arms the cron (tokio-cron-scheduler, in `schedule.timezone`), catches up at start
//! per `schedule.on_start`, serves the HTTP endpoints, and stops cleanly on SIGINT/SIGTERM.
//!
//! Runs never overlap: a tick that finds a run in progress is skipped and logged. Every run has a deadline
//! (`login.run_deadline_secs`, per account). A failed run is recorded and never stops the daemon. On a signal the
//! in-flight run is cancelled — dropping it kills its browser — and `run` returns. Between runs no browser
//! process exists. This module never prints and never picks an exit code: `cli` does.
//!
//! Between runs it re-checks the published tokens (`schedule.recheck_*`: one profile call per account, every
//! interval within market hours) and logs an account in again when Upstox says its token is invalid (a logout
//! elsewhere revokes it); when Upstox gives no verdict (rate limit, outage) the check is repeated sooner, with
//! backoff, and the token is kept.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::config::{Config, OnStart};
use crate::error::error_chain;
use crate::metrics::Metrics;
use crate::run::pool::run_accounts;
use crate::run::{Outcome, RunError, Runner, Trigger, Verdict, WhenValid};
use crate::shutdown::{self, Signal};

/// How long a stop waits for the in-flight run to unwind (browser teardown included).
const STOP_GRACE: Duration = Duration::from_secs(8);
/// Then how long it waits for notifications still being delivered.
const NOTIFY_GRACE: Duration = Duration::from_secs(5);
/// After Upstox gave no verdict on a token, the first re-check comes this soon (then doubling, up to the interval).
const UNKNOWN_FIRST_RETRY: Duration = Duration::from_secs(60);
/// The re-check loop wakes at least this often to re-read the clock (a suspend or a clock jump must not make it
/// sleep past a check).
const RECHECK_MAX_SLEEP: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Setup(RunError),
    #[error("cannot listen on `server.listen` = {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot arm `schedule.cron`")]
    Schedule(#[source] JobSchedulerError),
}

/// Runs one pass over the accounts at a time; shared by cron ticks and the start-up catch-up.
struct Passes {
    runner: Arc<Runner>,
    busy: tokio::sync::Mutex<()>,
    cancel: CancellationToken,
    /// A pass kept a token Upstox gave no verdict on: the re-check loop should ask again soon.
    unverified: AtomicBool,
    wake_recheck: tokio::sync::Notify,
}

impl Passes {
    async fn pass(&self, trigger: Trigger, when_valid: WhenValid) {
        let Ok(_running) = self.busy.try_lock() else {
            warn!(%trigger, "a run is still in progress; this one is skipped");
            return;
        };
        info!(%trigger, "run started");
        let accounts: Vec<_> = self.runner.config().accounts.iter().collect();
        let work = run_accounts(&self.runner, &accounts, when_valid, |done| match &done.result {
            Ok(o) => {
                if matches!(o, Outcome::Unverified { .. }) {
                    self.unverified.store(true, Ordering::Relaxed);
                    self.wake_recheck.notify_one();
                }
                info!(account = %done.account.name, "{o}")
            }
            Err(e) => {
                error!(account = %done.account.name, error = %error_chain(e), "run failed; next try at the next tick")
            }
        });
        tokio::select! {
            _ = self.cancel.cancelled() => info!("run cancelled by shutdown"),
            _ = work => {}
        }
        release_freed_memory();
    }
}

impl Passes {
    /// Ask Upstox about every account's published token; log in again those it calls invalid. Returns whether
    /// some answer was no verdict. Skipped (false) while a run is in progress: that run checks tokens itself.
    async fn recheck(&self) -> bool {
        let Ok(_running) = self.busy.try_lock() else {
            debug!("a run is in progress; the token re-check is skipped");
            return false;
        };
        let work = async {
            let mut unknown = false;
            for account in &self.runner.config().accounts {
                let name = &account.name;
                match self.runner.verify_published(account).await {
                    Ok(Verdict::NothingPublished) => debug!(account = %name, "no published token to re-check"),
                    Ok(Verdict::Valid { generation, .. }) => {
                        debug!(account = %name, generation, "token re-checked: valid")
                    }
                    Ok(Verdict::Unknown { generation, reason }) => {
                        unknown = true;
                        warn!(account = %name, generation, %reason, "token re-check: Upstox gave no verdict; keeping the token, asking again soon");
                    }
                    Ok(Verdict::Invalid { generation, reason }) => {
                        warn!(account = %name, generation, %reason, "token re-check: Upstox says the published token is invalid (revoked, e.g. by a logout elsewhere); logging in again");
                        // NOTIFY (issue 12, ops engineer): fire a `token_invalidated` event here through
                        // `self.runner.notifier().notify(Event { .. })`, with `account`, `generation` and `reason`;
                        // the login below then records (and notifies) its own outcome.
                        match self.runner.run(account, WhenValid::LogIn).await {
                            Ok(o) => info!(account = %name, trigger = %Trigger::Recheck, "{o}"),
                            Err(e) => {
                                error!(account = %name, trigger = %Trigger::Recheck, error = %error_chain(&e), "run failed; next try at the next tick")
                            }
                        }
                    }
                    Err(e) => {
                        unknown = true;
                        warn!(account = %name, error = %error_chain(&e), "token re-check failed");
                    }
                }
            }
            unknown
        };
        let unknown = tokio::select! {
            _ = self.cancel.cancelled() => false,
            unknown = work => unknown,
        };
        release_freed_memory();
        unknown
    }

    /// The re-check loop: at `schedule.recheck_interval_secs` within the re-check window, sooner (with backoff)
    /// after a "no verdict". Returns on shutdown; never when the re-check is off.
    async fn watch_tokens(&self) {
        let recheck = &self.runner.config().schedule.recheck;
        let Some(interval) = recheck.interval else { return };
        let mut retry: Option<Duration> = None;
        let mut next = recheck.next_check(Utc::now() + interval);
        loop {
            if self.unverified.swap(false, Ordering::Relaxed) {
                let soon = retry.unwrap_or(UNKNOWN_FIRST_RETRY).min(interval);
                retry = Some(soon);
                next = earliest(next, Utc::now() + soon);
            }
            let Some(due) = next else {
                // No window day configured: only a "no verdict" wakes the loop.
                tokio::select! {
                    _ = self.cancel.cancelled() => return,
                    _ = self.wake_recheck.notified() => continue,
                }
            };
            let wait = (due - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            if !wait.is_zero() {
                tokio::select! {
                    _ = self.cancel.cancelled() => return,
                    _ = self.wake_recheck.notified() => {}
                    _ = tokio::time::sleep(wait.min(RECHECK_MAX_SLEEP)) => {}
                }
                continue;
            }
            let unknown = self.recheck().await;
            if self.cancel.is_cancelled() {
                return;
            }
            next = recheck.next_check(Utc::now() + interval);
            if unknown {
                let soon = retry.map_or(UNKNOWN_FIRST_RETRY, |r| r * 2).min(interval);
                retry = Some(soon);
                next = earliest(next, Utc::now() + soon);
            } else {
                retry = None;
            }
        }
    }
}

fn earliest(a: Option<chrono::DateTime<Utc>>, b: chrono::DateTime<Utc>) -> Option<chrono::DateTime<Utc>> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// A login's buffers (WebDriver JSON, screenshots on failure, TLS) are freed but kept by the allocator; hand them
/// back so the daemon idles at its start-up footprint until the next morning.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Serve and log in on schedule until SIGINT/SIGTERM; returns the signal that stopped it.
pub async fn run(config: Arc<Config>) -> Result<Signal, DaemonError> {
    let metrics = Arc::new(Metrics::new());
    let runner = Arc::new(Runner::new(Arc::clone(&config), metrics).map_err(DaemonError::Setup)?);
    for warning in &config.warnings {
        warn!("{warning}");
    }
    let swept = crate::login::browser::sweep_stale_profiles();
    if swept > 0 {
        info!(swept, "removed browser profile dirs left by a previous crash");
    }
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .map_err(|source| DaemonError::Listen { addr: config.server.listen, source })?;
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let passes = Arc::new(Passes {
        runner: Arc::clone(&runner),
        busy: Default::default(),
        cancel: cancel.clone(),
        unverified: AtomicBool::new(false),
        wake_recheck: tokio::sync::Notify::new(),
    });

    let server_cancel = cancel.clone();
    let app = crate::http::router(Arc::clone(&runner));
    tracker.spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(server_cancel.cancelled_owned());
        if let Err(e) = serve.await {
            error!(error = %e, "HTTP server failed");
        }
    });

    let mut scheduler = match arm_schedule(&config, &passes, &tracker).await {
        Ok(s) => s,
        Err(e) => {
            cancel.cancel();
            return Err(DaemonError::Schedule(e));
        }
    };
    let next = config.schedule.next_run(chrono::Utc::now());
    info!(
        listen = %config.server.listen,
        cron = %config.schedule.cron,
        timezone = %config.schedule.timezone,
        next_run = %next.map(|t| t.to_rfc3339()).unwrap_or_else(|| "never".into()),
        recheck_interval_secs = config.schedule.recheck.interval.map_or(0, |i| i.as_secs()),
        "daemon started"
    );
    let when_valid = match config.schedule.on_start {
        OnStart::Never => None,
        OnStart::IfStale => Some(WhenValid::Skip),
        OnStart::Always => Some(WhenValid::LogIn),
    };
    if let Some(when_valid) = when_valid {
        let passes = Arc::clone(&passes);
        tracker.spawn(async move { passes.pass(Trigger::Start, when_valid).await });
    }
    {
        let passes = Arc::clone(&passes);
        tracker.spawn(async move { passes.watch_tokens().await });
    }

    let signal = shutdown::signal().await;
    info!(%signal, "stopping");
    cancel.cancel();
    if let Err(e) = scheduler.shutdown().await {
        warn!(error = %e, "scheduler shutdown reported an error");
    }
    tracker.close();
    if tokio::time::timeout(STOP_GRACE, tracker.wait()).await.is_err() {
        warn!("in-flight work did not stop within {STOP_GRACE:?}");
    }
    runner.notifier().close(NOTIFY_GRACE).await;
    info!("stopped");
    Ok(signal)
}

async fn arm_schedule(
    config: &Config,
    passes: &Arc<Passes>,
    tracker: &TaskTracker,
) -> Result<JobScheduler, JobSchedulerError> {
    let scheduler = JobScheduler::new().await?;
    let passes = Arc::clone(passes);
    let tracker = tracker.clone();
    let job = Job::new_async_tz(config.schedule.cron.as_str(), config.schedule.timezone, move |_id, _lock| {
        let passes = Arc::clone(&passes);
        // Tracked so a stop waits for the pass to unwind; the pass itself skips when another is running.
        let task = tracker.spawn(async move { passes.pass(Trigger::Cron, WhenValid::Skip).await });
        Box::pin(async move {
            let _ = task.await;
        })
    })?;
    scheduler.add(job).await?;
    scheduler.start().await?;
    Ok(scheduler)
}
