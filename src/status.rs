//! What each account looks like right now, for `status`, `/status` and `/readyz`: built from the coordinator's
//! facts and what the sinks hold, so it works whether or not the daemon runs.
//!
//! A report carries expiry, generation and attempt results, never a token or a secret: `AccountStatus` has no
//! field that could hold one. This module builds data; `cli` prints it and `http` serves it.

use chrono::Utc;
use serde::Serialize;

use crate::error::error_chain;
use crate::login::browser::newest_screenshot;
use crate::run::Runner;
use crate::run::publish::freshest;
use crate::state::Attempt;
use crate::token;

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub schedule: String,
    pub timezone: String,
    /// The next cron tick, in `timezone` (RFC 3339).
    pub next_run: Option<String>,
    pub accounts: Vec<AccountStatus>,
}

#[derive(Debug, Serialize)]
pub struct AccountStatus {
    pub name: String,
    /// Some sink holds an unexpired document for the account.
    pub token_present: bool,
    /// Every sink holds an unexpired document.
    pub valid_in_every_sink: bool,
    pub expires_at: Option<String>,
    pub generation: Option<u64>,
    pub sinks: Vec<SinkStatus>,
    pub last_attempt: Option<Attempt>,
    pub last_success_at: Option<String>,
    pub pin_submissions_today: u32,
    /// The last few attempts, newest first, with their class and step timings.
    pub recent_attempts: Vec<Attempt>,
    /// The file name of the newest failure screenshot under `{state_dir}/failures/` (served at `/failures/NAME`).
    pub failure_screenshot: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SinkStatus {
    pub sink: String,
    pub generation: Option<u64>,
    pub expires_at: Option<String>,
    pub valid: bool,
}

/// Build the report from the persisted facts and what the sinks hold.
pub async fn report(runner: &Runner) -> StatusReport {
    let config = runner.config();
    let now = Utc::now();
    let day = token::ist_day(now);
    let mut accounts = Vec::new();
    for account in &config.accounts {
        let held = runner.publisher().read(&account.name).await;
        let facts = runner.coordinator().facts(&account.name).unwrap_or_else(|e| {
            tracing::warn!(account = %account.name, error = %error_chain(&e), "cannot read state");
            Default::default()
        });
        let best = freshest(&held, now);
        let sinks: Vec<SinkStatus> = runner
            .publisher()
            .sinks()
            .iter()
            .zip(&held)
            .map(|(sink, doc)| SinkStatus {
                sink: sink.label(),
                generation: doc.as_ref().map(|d| d.generation),
                expires_at: doc.as_ref().map(|d| d.expires_at.to_rfc3339()),
                valid: doc.as_ref().is_some_and(|d| d.is_unexpired(now)),
            })
            .collect();
        accounts.push(AccountStatus {
            name: account.name.clone(),
            token_present: best.is_some(),
            valid_in_every_sink: sinks.iter().all(|s| s.valid),
            expires_at: best.map(|d| d.expires_at.to_rfc3339()),
            generation: best.map(|d| d.generation),
            sinks,
            last_attempt: facts.last_attempt.clone(),
            last_success_at: facts.last_success_at.map(|t| t.to_rfc3339()),
            pin_submissions_today: facts.guard.pin_submissions_on(day),
            recent_attempts: facts.recent_attempts.clone(),
            failure_screenshot: newest_screenshot(&config.failures_dir(), &account.name),
        });
    }
    StatusReport {
        schedule: config.schedule.cron.clone(),
        timezone: config.schedule.timezone.to_string(),
        next_run: config.schedule.next_run(now).map(|t| t.to_rfc3339()),
        accounts,
    }
}
