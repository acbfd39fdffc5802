//! The token re-check loop: between runs, ask Upstox about every published token (`schedule.recheck_*`: one profile
//! call per account, every interval within market hours) and log an account in again when Upstox says its token is
//! invalid (a logout elsewhere revokes it). When Upstox gives no verdict (rate limit, outage) the token is kept and
//! the check repeated sooner, with backoff.

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use tracing::{debug, error, info, warn};

use super::{Passes, go_idle};
use crate::error::error_chain;
use crate::notify::Event;
use crate::run::{Trigger, Verdict, WhenValid};

/// After Upstox gave no verdict on a token, the first re-check comes this soon (then doubling, up to the interval).
const UNKNOWN_FIRST_RETRY: Duration = Duration::from_secs(60);
/// The re-check loop wakes at least this often to re-read the clock (a suspend or a clock jump must not make it
/// sleep past a check).
const RECHECK_MAX_SLEEP: Duration = Duration::from_secs(60);

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
                        // The login below then records (and notifies) its own outcome.
                        self.runner.notifier().notify(Event::token_invalidated(name, generation, &reason));
                        match self.runner.run(account, WhenValid::LogIn, Trigger::Recheck).await {
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
        go_idle(&self.runner).await;
        unknown
    }

    /// The re-check loop: at `schedule.recheck_interval_secs` within the re-check window, sooner (with backoff)
    /// after a "no verdict". Returns on shutdown; never when the re-check is off.
    pub(super) async fn watch_tokens(&self) {
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
