//! A cron tick. Skipped on a day NSE is closed (`schedule.skip_holidays`: Upstox's holiday list and the operator's
//! dates; an unreachable list means logging in anyway). Otherwise one pass over the accounts, then the failed ones
//! again, with backoff (`schedule.retry_*_backoff_secs`), until `schedule.retry_until` (IST): not only
//! `login.max_attempts` logins in two minutes.
//!
//! Every retry is a whole run, so the lockout guard is asked before every PIN as always: a refusal, a rejected PIN
//! or any other permanent failure (bot block, changed page) is not retried. At the deadline, each account that
//! failed and still lacks a valid token in every sink raises `deadline_missed` (`events.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use backon::BackoffBuilder;
use chrono::{DateTime, Utc};
use tracing::{error, info, warn};

use super::{Passes, events, go_idle, sleep_until};
use crate::config::Account;
use crate::error::error_chain;
use crate::market::Today;
use crate::run::pool::run_accounts;
use crate::run::{Trigger, WhenValid};
use crate::{schedule, token};

/// The shortest pause between retried runs, whatever the configuration says (a zero backoff must not spin).
const MIN_RETRY_PAUSE: Duration = Duration::from_secs(1);

impl Passes {
    /// One cron tick: the holiday check, the pass with its retries, then the deadline's verdict.
    pub(super) async fn scheduled(&self) {
        let started = Utc::now();
        let Ok(running) = self.busy.try_lock() else {
            warn!(trigger = %Trigger::Cron, "a run is still in progress; this one is skipped");
            return;
        };
        if self.closed_today(started).await {
            return;
        }
        info!(trigger = %Trigger::Cron, "run started");
        let deadline = schedule::retry_deadline(&self.runner.config().schedule.market, started);
        let failed = tokio::select! {
            _ = self.cancel.cancelled() => {
                info!("run cancelled by shutdown");
                return;
            }
            failed = self.until_deadline(deadline) => failed,
        };
        drop(running);
        go_idle(&self.runner).await;
        if failed.is_empty() {
            return;
        }
        // A run that started after the day's deadline has missed it already.
        let deadline = deadline.unwrap_or(started);
        if sleep_until(deadline, &self.cancel).await {
            self.report_missed(deadline, failed).await;
        }
    }

    /// Whether this tick is skipped because NSE is closed today (and says so).
    async fn closed_today(&self, now: DateTime<Utc>) -> bool {
        if !self.runner.config().schedule.market.skip_holidays {
            return false;
        }
        let date = token::ist_day(now);
        match self.runner.calendar().today(now).await {
            Today::Closed(why) => {
                info!(%date, "NSE is closed today: {why}; scheduled run skipped (`schedule.skip_holidays`)");
                true
            }
            Today::Open => false,
            Today::Unknown(e) => {
                warn!(%date, error = %error_chain(&e), "cannot tell whether NSE is open today; logging in anyway");
                false
            }
        }
    }

    /// The pass, then its failed accounts again until `deadline` (none: no retry). Returns each account that still
    /// failed, with its last error.
    async fn until_deadline(&self, deadline: Option<DateTime<Utc>>) -> BTreeMap<String, String> {
        let config = self.runner.config();
        let market = &config.schedule.market;
        let mut backoff = backon::ExponentialBuilder::default()
            .with_min_delay(market.retry_min_backoff)
            .with_max_delay(market.retry_max_backoff)
            .with_jitter()
            .without_max_times()
            .build();
        let deadline_text = deadline.map(|d| token::ist(d).to_rfc3339()).unwrap_or_else(|| "passed".into());
        let mut pending: Vec<&Account> = config.accounts.iter().collect();
        let mut failed = BTreeMap::new();
        loop {
            let mut retry = Vec::new();
            for done in run_accounts(&self.runner, &pending, WhenValid::Skip, Trigger::Cron, |_| {}).await {
                let name = &done.account.name;
                match &done.result {
                    Ok(outcome) => {
                        info!(account = %name, "{outcome}");
                        failed.remove(name);
                    }
                    Err(e) => {
                        let permanent = e.is_permanent();
                        let text = error_chain(e);
                        if permanent {
                            error!(account = %name, error = %text, "run failed; not retried (a person must fix this)");
                        } else {
                            retry.push(done.account);
                            let deadline = &deadline_text;
                            let message = "run failed; retrying until the deadline";
                            error!(account = %name, error = %text, %deadline, "{message}");
                        }
                        failed.insert(name.clone(), text);
                    }
                }
            }
            let Some(deadline) = deadline.filter(|_| !retry.is_empty()) else { break };
            // backon's jitter adds up to one more delay on top of its cap: `retry_max_backoff_secs` is the cap.
            let pause =
                backoff.next().unwrap_or(market.retry_max_backoff).min(market.retry_max_backoff).max(MIN_RETRY_PAUSE);
            if Utc::now() + pause >= deadline {
                warn!(deadline = %deadline_text, "no time for another try before the deadline");
                break;
            }
            let names: Vec<&str> = retry.iter().map(|a| a.name.as_str()).collect();
            let (accounts, retry_in_secs) = (names.join(", "), pause.as_secs_f64());
            info!(%accounts, retry_in_secs, deadline = %deadline_text, "retrying failed accounts");
            tokio::time::sleep(pause).await;
            pending = retry;
        }
        failed
    }

    /// At the deadline: each failed account that still lacks a valid token in every sink missed it.
    async fn report_missed(&self, deadline: DateTime<Utc>, failed: BTreeMap<String, String>) {
        for (account, last_error) in failed {
            let held = self.runner.publisher().read(&account).await;
            let now = Utc::now();
            if held.iter().all(|d| d.as_ref().is_some_and(|d| d.is_unexpired(now))) {
                info!(%account, "the account holds a valid token by the deadline after all");
                continue;
            }
            events::on_deadline_missed(&self.runner, &account, token::ist(deadline), &last_error);
        }
    }
}
