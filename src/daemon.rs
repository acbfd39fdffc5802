//! `run`: the long-running daemon. Arms the cron (tokio-cron-scheduler, in `schedule.timezone`), catches up at start
//! per `schedule.on_start`, serves the HTTP endpoints, and stops cleanly on SIGINT/SIGTERM.
//!
//! A cron tick (`morning.rs`) is skipped on a day NSE is closed, and retries failed accounts until
//! `schedule.retry_until`; `open_check.rs` checks every account's token before the market opens; both raise their
//! alarms through `events.rs`. At start the state gauges are restored from the state files and the sinks.
//!
//! Runs never overlap: a tick that finds a run in progress is skipped and logged. Every run has a deadline
//! (`login.run_deadline_secs`, per account). A failed run is recorded and never stops the daemon. On a signal the
//! in-flight run is cancelled — dropping it kills its browser — and `run` returns. Between runs no browser
//! process exists. This module never prints and never picks an exit code: `cli` does.
//!
//! Between runs `recheck.rs` re-checks the published tokens (`schedule.recheck_*`: one profile call per account, every
//! interval within market hours) and logs an account in again when Upstox says its token is invalid (a logout
//! elsewhere revokes it); when Upstox gives no verdict (rate limit, outage) the check is repeated sooner, with
//! backoff, and the token is kept.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

mod events;
mod morning;
mod open_check;
mod recheck;

use chrono::{DateTime, Utc};
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::config::{Config, OnStart};
use crate::error::error_chain;
use crate::metrics::Metrics;
use crate::run::page_probe::probe_pages;
use crate::run::pool::run_accounts;
use crate::run::{Outcome, RunError, Runner, Trigger, WhenValid};
use crate::shutdown::{self, Signal};

/// How long a stop waits for the in-flight run to unwind (browser teardown included).
const STOP_GRACE: Duration = Duration::from_secs(8);
/// Then how long it waits for notifications still being delivered.
const NOTIFY_GRACE: Duration = Duration::from_secs(5);
/// Long waits for a wall-clock time re-read the clock at least this often (a suspended machine, a stepped clock).
const WALL_CLOCK_RECHECK: Duration = Duration::from_secs(60);

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
    #[error("cannot arm `schedule.cron` or `schedule.probe_cron`")]
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
        let accounts: Vec<_> = self.runner.config().accounts.iter().collect();
        let slots = self.runner.browser_slots().capacity();
        info!(%trigger, accounts = accounts.len(), max_sessions = slots, "run started");
        let started = std::time::Instant::now();
        let work = run_accounts(&self.runner, &accounts, when_valid, trigger, |done| {
            let secs = done.elapsed.as_secs_f64();
            match &done.result {
                Ok(o) => {
                    if matches!(o, Outcome::Unverified { .. }) {
                        self.unverified.store(true, Ordering::Relaxed);
                        self.wake_recheck.notify_one();
                    }
                    info!(account = %done.account.name, elapsed_secs = secs, "{o}")
                }
                Err(e @ RunError::Busy { .. }) => info!(account = %done.account.name, elapsed_secs = secs, "{e}"),
                Err(e @ RunError::Superseded { .. }) => {
                    warn!(account = %done.account.name, elapsed_secs = secs, error = %error_chain(e), "run superseded")
                }
                Err(e) => error!(
                    account = %done.account.name,
                    elapsed_secs = secs,
                    error = %error_chain(e),
                    "run failed; next try at the next tick"
                ),
            }
        });
        tokio::select! {
            _ = self.cancel.cancelled() => {
                self.runner.settle().await;
                info!(%trigger, "run cancelled by shutdown");
            }
            results = work => {
                let count = |f: fn(&Result<Outcome, RunError>) -> bool| results.iter().filter(|r| f(&r.result)).count();
                let failed: Vec<&str> =
                    results.iter().filter(|r| r.result.is_err()).map(|r| r.account.name.as_str()).collect();
                info!(
                    %trigger,
                    accounts = results.len(),
                    logged_in = count(|r| matches!(r, Ok(Outcome::LoggedIn { .. }))),
                    kept = count(|r| matches!(r, Ok(Outcome::Skipped { .. } | Outcome::Republished { .. }))),
                    failed = failed.len(),
                    failed_accounts = %failed.join(","),
                    elapsed_secs = started.elapsed().as_secs_f64(),
                    "run finished"
                );
            }
        }
        go_idle(&self.runner).await;
    }

    /// Probe every account's login page (`schedule.probe_cron`); skipped while a login pass runs.
    async fn probe_pages(&self) {
        let Ok(_running) = self.busy.try_lock() else {
            warn!("a run is in progress; this probe is skipped");
            return;
        };
        info!("probe started");
        let accounts: Vec<_> = self.runner.config().accounts.iter().collect();
        let work = probe_pages(&self.runner, &accounts, |_| {});
        tokio::select! {
            _ = self.cancel.cancelled() => info!("probe cancelled by shutdown"),
            results = work => {
                let ready = results.iter().filter(|r| r.ready()).count();
                info!(ready, accounts = results.len(), "probe finished");
            }
        }
        go_idle(&self.runner).await;
    }
}

/// Sleep until the wall-clock instant `at`; `false` when `cancel` fired first.
async fn sleep_until(at: DateTime<Utc>, cancel: &CancellationToken) -> bool {
    loop {
        let left = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        if left.is_zero() {
            return true;
        }
        tokio::select! {
            _ = cancel.cancelled() => return false,
            _ = tokio::time::sleep(left.min(WALL_CLOCK_RECHECK)) => {}
        }
    }
}

/// Between runs: let the HTTP clients go (their TLS contexts), then hand the freed heap back to the kernel, so the
/// daemon idles at its start-up footprint until the next run.
async fn go_idle(runner: &Runner) {
    runner.drop_idle_clients().await;
    trim_heap();
}

/// A run's buffers (WebDriver JSON, screenshots on failure, TLS) are freed but kept by the allocator: hand them back.
fn trim_heap() {
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
    if swept.dirs > 0 {
        info!(
            dirs = swept.dirs,
            groups_killed = swept.groups_killed,
            "removed browser profile dirs left by a previous crash"
        );
    }
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .map_err(|source| DaemonError::Listen { addr: config.server.listen, source })?;
    // From here on an approved token request's token can reach this process.
    runner.outstanding().set_receiving(true);
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

    spawn_background(&tracker, &cancel, {
        let runner = Arc::clone(&runner);
        async move { runner.refresh_state_gauges(Utc::now()).await }
    });
    if config.schedule.market.skip_holidays {
        spawn_background(&tracker, &cancel, {
            let runner = Arc::clone(&runner);
            async move {
                if let Err(e) = runner.calendar().refresh(crate::token::ist_day(Utc::now())).await {
                    let error = error_chain(&e);
                    warn!(%error, "cannot fetch Upstox's holiday list; asking again before the next scheduled run");
                }
                // Only the calendar's client: an on-start run may be using the API client right now.
                runner.calendar().drop_client();
                trim_heap();
            }
        });
    }
    tracker.spawn(open_check::watch(Arc::clone(&runner), cancel.clone()));

    let mut scheduler = match arm_schedule(&config, &passes, &tracker).await {
        Ok(s) => s,
        Err(e) => {
            cancel.cancel();
            return Err(DaemonError::Schedule(e));
        }
    };
    let next = config.schedule.next_run(chrono::Utc::now());
    let next_probe = config.schedule.probe.as_ref().and_then(|p| {
        let now = chrono::Utc::now().with_timezone(&config.schedule.timezone);
        p.parsed.find_next_occurrence(&now, false).ok().map(|t| t.to_rfc3339())
    });
    info!(
        listen = %config.server.listen,
        cron = %config.schedule.cron,
        timezone = %config.schedule.timezone,
        next_run = %next.map(|t| t.to_rfc3339()).unwrap_or_else(|| "never".into()),
        recheck_interval_secs = config.schedule.recheck.interval.map_or(0, |i| i.as_secs()),
        next_probe = %next_probe.unwrap_or_else(|| "off".into()),
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
    let cron_passes = Arc::clone(passes);
    let cron_tracker = tracker.clone();
    let job = Job::new_async_tz(config.schedule.cron.as_str(), config.schedule.timezone, move |_id, _lock| {
        let passes = Arc::clone(&cron_passes);
        // Tracked so a stop waits for the pass to unwind; the pass itself skips when another is running.
        let task = cron_tracker.spawn(async move { passes.scheduled().await });
        Box::pin(async move {
            let _ = task.await;
        })
    })?;
    scheduler.add(job).await?;
    if let Some(probe) = &config.schedule.probe {
        let passes = Arc::clone(passes);
        let tracker = tracker.clone();
        let job = Job::new_async_tz(probe.cron.as_str(), config.schedule.timezone, move |_id, _lock| {
            let passes = Arc::clone(&passes);
            let task = tracker.spawn(async move { passes.probe_pages().await });
            Box::pin(async move {
                let _ = task.await;
            })
        })?;
        scheduler.add(job).await?;
    }
    scheduler.start().await?;
    Ok(scheduler)
}

/// Run `work` in the background, tracked, until it ends or the daemon stops.
fn spawn_background(
    tracker: &TaskTracker,
    cancel: &CancellationToken,
    work: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let cancel = cancel.clone();
    tracker.spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = work => {}
        }
    });
}
