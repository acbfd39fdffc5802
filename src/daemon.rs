//! `run`: the long-running daemon. Arms the cron (tokio-cron-scheduler, in `schedule.timezone`), catches up at start
//! per `schedule.on_start`, serves the HTTP endpoints, and stops cleanly on SIGINT/SIGTERM.
//!
//! Runs never overlap: a tick that finds a run in progress is skipped and logged. Every run has a deadline
//! (`login.run_deadline_secs`, per account). A failed run is recorded and never stops the daemon. On a signal the
//! in-flight run is cancelled — dropping it kills its browser — and the process exits 0. Between runs no browser
//! process exists.

use std::sync::Arc;
use std::time::Duration;

use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::cli::{EXIT_FAILURE, EXIT_OK, EXIT_USAGE};
use crate::config::{Config, OnStart};
use crate::metrics::Metrics;
use crate::relogin::{Relogin, error_chain};

/// How long a stop waits for the in-flight run to unwind (browser teardown included).
const STOP_GRACE: Duration = Duration::from_secs(8);

/// Resolves on SIGINT or SIGTERM with the signal's name.
pub async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        // Without handlers the default disposition still stops the process; nothing to wait for here.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// Runs one pass over the accounts at a time; shared by cron ticks and the start-up catch-up.
struct Runner {
    relogin: Arc<Relogin>,
    busy: tokio::sync::Mutex<()>,
    cancel: CancellationToken,
}

impl Runner {
    async fn pass(&self, trigger: &str, force: bool) {
        let Ok(_running) = self.busy.try_lock() else {
            warn!(trigger, "a run is still in progress; this one is skipped");
            return;
        };
        info!(trigger, "run started");
        for account in &self.relogin.config().accounts {
            let outcome = tokio::select! {
                _ = self.cancel.cancelled() => {
                    info!(account = %account.name, "run cancelled by shutdown");
                    return;
                }
                outcome = self.relogin.run(account, force) => outcome,
            };
            match outcome {
                Ok(o) => info!(account = %account.name, "{}", crate::cli::describe(&o)),
                Err(e) => {
                    error!(account = %account.name, error = %error_chain(&e), "run failed; next try at the next tick")
                }
            }
        }
        release_freed_memory();
    }
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

pub async fn run(config: Arc<Config>) -> u8 {
    let metrics = Arc::new(Metrics::new());
    let relogin = match Relogin::new(Arc::clone(&config), metrics) {
        Ok(r) => Arc::new(r),
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            return EXIT_USAGE;
        }
    };
    let swept = crate::browser::sweep_stale_profiles();
    if swept > 0 {
        info!(swept, "removed browser profile dirs left by a previous crash");
    }
    let listener = match tokio::net::TcpListener::bind(config.server.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on `server.listen` = {}: {e}", config.server.listen);
            return EXIT_FAILURE;
        }
    };
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let runner = Arc::new(Runner { relogin: Arc::clone(&relogin), busy: Default::default(), cancel: cancel.clone() });

    let server_cancel = cancel.clone();
    let app = crate::status::router(Arc::clone(&relogin));
    tracker.spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(server_cancel.cancelled_owned());
        if let Err(e) = serve.await {
            error!(error = %e, "HTTP server failed");
        }
    });

    let mut scheduler = match arm_schedule(&config, &runner, &tracker).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot arm `schedule.cron`: {e}");
            cancel.cancel();
            return EXIT_USAGE;
        }
    };
    let next = config.schedule.next_run(chrono::Utc::now());
    info!(
        listen = %config.server.listen,
        cron = %config.schedule.cron,
        timezone = %config.schedule.timezone,
        next_run = %next.map(|t| t.to_rfc3339()).unwrap_or_else(|| "never".into()),
        "daemon started"
    );
    match config.schedule.on_start {
        OnStart::Never => {}
        on_start => {
            let runner = Arc::clone(&runner);
            tracker.spawn(async move { runner.pass("start", on_start == OnStart::Always).await });
        }
    }

    let signal = shutdown_signal().await;
    info!(signal, "stopping");
    cancel.cancel();
    if let Err(e) = scheduler.shutdown().await {
        warn!(error = %e, "scheduler shutdown reported an error");
    }
    tracker.close();
    if tokio::time::timeout(STOP_GRACE, tracker.wait()).await.is_err() {
        warn!("in-flight work did not stop within {STOP_GRACE:?}");
    }
    info!("stopped");
    EXIT_OK
}

async fn arm_schedule(
    config: &Config,
    runner: &Arc<Runner>,
    tracker: &TaskTracker,
) -> Result<JobScheduler, tokio_cron_scheduler::JobSchedulerError> {
    let scheduler = JobScheduler::new().await?;
    let runner = Arc::clone(runner);
    let tracker = tracker.clone();
    let job = Job::new_async_tz(config.schedule.cron.as_str(), config.schedule.timezone, move |_id, _lock| {
        let runner = Arc::clone(&runner);
        // Tracked so a stop waits for the pass to unwind; the pass itself skips when another is running.
        let task = tracker.spawn(async move { runner.pass("cron", false).await });
        Box::pin(async move {
            let _ = task.await;
        })
    })?;
    scheduler.add(job).await?;
    scheduler.start().await?;
    Ok(scheduler)
}
