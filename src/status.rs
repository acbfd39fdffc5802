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
use crate::token::{self, TokenDocument};

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
    /// Why the account's persisted facts could not be read (another user's files under `state_dir`, say): the
    /// attempt and guard fields above are then unknown, not empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SinkStatus {
    pub sink: String,
    pub generation: Option<u64>,
    pub expires_at: Option<String>,
    pub valid: bool,
    /// Why the sink could not be read: what it holds is then unknown, not "nothing".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl StatusReport {
    /// Something could not be read (state or a sink): the report is incomplete.
    pub fn has_errors(&self) -> bool {
        self.accounts.iter().any(|a| a.state_error.is_some() || a.sinks.iter().any(|s| s.error.is_some()))
    }
}

/// Build the report from the persisted facts and what the sinks hold.
pub async fn report(runner: &Runner) -> StatusReport {
    let config = runner.config();
    let now = Utc::now();
    let day = token::ist_day(now);
    let mut accounts = Vec::new();
    for account in &config.accounts {
        let reads = runner.publisher().sinks().iter().map(|sink| sink.read(&account.name));
        let reads: Vec<_> = futures_util::future::join_all(reads).await;
        let held: Vec<Option<TokenDocument>> =
            reads.iter().map(|r| r.as_ref().ok().cloned().flatten().filter(|d| d.account == account.name)).collect();
        for (sink, read) in runner.publisher().sinks().iter().zip(&reads) {
            if let Err(e) = read {
                tracing::warn!(sink = %sink.label(), error = %error_chain(e), "cannot read the published token");
            }
        }
        let (facts, state_error) = match runner.coordinator().facts(&account.name) {
            Ok(facts) => (facts, None),
            Err(e) => {
                tracing::warn!(account = %account.name, error = %error_chain(&e), "cannot read state");
                (Default::default(), Some(error_chain(&e)))
            }
        };
        let best = freshest(&held, now);
        let sinks: Vec<SinkStatus> = runner
            .publisher()
            .sinks()
            .iter()
            .zip(held.iter().zip(&reads))
            .map(|(sink, (doc, read))| SinkStatus {
                sink: sink.label(),
                generation: doc.as_ref().map(|d| d.generation),
                expires_at: doc.as_ref().map(|d| d.expires_at.to_rfc3339()),
                valid: doc.as_ref().is_some_and(|d| d.is_unexpired(now)),
                error: read.as_ref().err().map(|e| error_chain(e)),
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
            state_error,
        });
    }
    StatusReport {
        schedule: config.schedule.cron.clone(),
        timezone: config.schedule.timezone.to_string(),
        next_run: config.schedule.next_run(now).map(|t| t.to_rfc3339()),
        accounts,
    }
}
