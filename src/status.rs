//! What each account looks like right now, for `status`, `/status` and `/readyz`: built from the coordinator's
//! facts and what the sinks hold (probed with short timeouts and cached briefly: `run::probe`), so it works whether
//! or not the daemon runs, and a hung sink costs one short timeout, not one per request.
//!
//! An account is *ready* when every sink holds a valid token for it, or when it is not due yet: no scheduled run
//! has happened since the last 03:30 IST expiry (overnight, a weekend without ticks, a day NSE is closed and
//! `schedule.skip_holidays` skips; `schedule::due_since`).
//!
//! With `coordination.type = "redis"` and shared sinks any replica answers for every account: the last attempts, the
//! PIN count and the lease holder come from the shared store. Without the coordinator (it does not answer) the report
//! says so, and `/readyz` says no.
//!
//! A report carries expiry, generation and attempt results, never a token or a secret: `AccountStatus` has no
//! field that could hold one. This module builds data; `cli` prints it and `http` serves it.

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use serde::Serialize;

use crate::config::Account;
use crate::error::error_chain;
use crate::login::browser::newest_screenshot;
use crate::market::ClosedDays;
use crate::run::Runner;
use crate::run::probe::Held;
use crate::run::publish::freshest_of;
use crate::schedule;
use crate::state::Attempt;
use crate::state::{LocatorFallback, ProbeRecord};
use crate::token;

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub schedule: String,
    pub timezone: String,
    /// The next cron tick, in `timezone` (RFC 3339).
    pub next_run: Option<String>,
    /// Why NSE is closed today (IST), when it is known to be (Upstox's holiday list as last fetched, the operator's
    /// dates).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_today: Option<String>,
    /// `schedule.probe_cron`, when the daemon probes the login pages.
    pub probe_cron: Option<String>,
    /// The next probe, in `timezone` (RFC 3339).
    pub next_probe: Option<String>,
    pub accounts: Vec<AccountStatus>,
    pub coordination: CoordinationStatus,
}

/// The coordinator (`[coordination]`) and whether it answers: without it no replica logs in.
#[derive(Debug, Serialize)]
pub struct CoordinationStatus {
    /// `"local"` or `"redis"`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `state_dir/accounts`, or the Redis URL without its password.
    pub store: String,
    pub reachable: bool,
    /// Why it does not answer (never a secret).
    pub error: Option<String>,
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
    /// A PIN was rejected today (IST): the lockout guard tries no PIN again today (`reset-guard` clears it).
    pub pin_rejected_today: bool,
    /// The last few attempts, newest first, with their class and step timings.
    pub recent_attempts: Vec<Attempt>,
    /// The file name of the newest failure screenshot under `{state_dir}/failures/` (served at `/failures/NAME`).
    pub failure_screenshot: Option<String>,
    /// The first scheduled run since the last 03:30 IST expiry (RFC 3339): since then the account should hold a
    /// valid token. `null`: not due yet.
    pub due_since: Option<String>,
    /// Every sink holds a valid token, or the account is not due yet (what `/readyz` asks).
    pub ready: bool,
    /// Why the account's persisted facts could not be read (another user's files under `state_dir`, say): the
    /// attempt and guard fields above are then unknown, not empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_error: Option<String>,
    /// Who holds the account's lease right now (`coordination.type = "redis"` only).
    pub lease_holder: Option<String>,
    /// PIN submissions without a code in a row, across days (the lockout guard stops at 4).
    pub pins_without_code_in_a_row: u32,
    /// The last time a page element was found only by a fallback locator: update the configured selector.
    pub last_locator_fallback: Option<LocatorFallback>,
    /// The last probe of the account's login page.
    pub last_probe: Option<ProbeRecord>,
}

#[derive(Debug, Serialize)]
pub struct SinkStatus {
    pub sink: String,
    pub generation: Option<u64>,
    pub expires_at: Option<String>,
    pub valid: bool,
    /// Why the sink could not be read (unreachable, no answer in time, corrupt); `null` when it answered, whether
    /// with a document or with nothing: what it holds is then unknown, not "nothing".
    pub error: Option<String>,
}

impl StatusReport {
    /// Something could not be read (state or a sink): the report is incomplete.
    pub fn has_errors(&self) -> bool {
        self.accounts.iter().any(|a| a.state_error.is_some() || a.sinks.iter().any(|s| s.error.is_some()))
    }
}

/// Build the report from the persisted facts and what the sinks hold (accounts probed concurrently).
pub async fn report(runner: &Runner) -> StatusReport {
    let config = runner.config();
    let now = Utc::now();
    let closed = runner.calendar().known();
    let coordinator = runner.coordinator();
    let health = coordinator.health().await;
    runner.metrics().coordination_up(health.is_ok());
    let info = coordinator.describe();
    let coordination = CoordinationStatus {
        kind: info.kind,
        store: info.store,
        reachable: health.is_ok(),
        error: health.as_ref().err().map(|e| error_chain(e)),
    };
    let reachable = coordination.reachable;
    let accounts = join_all(config.accounts.iter().map(|a| account_status(runner, a, &closed, now, reachable))).await;
    StatusReport {
        schedule: config.schedule.cron.clone(),
        timezone: config.schedule.timezone.to_string(),
        next_run: config.schedule.next_run(now).map(|t| t.to_rfc3339()),
        closed_today: closed.closed_on(token::ist_day(now)).map(ToString::to_string),
        probe_cron: config.schedule.probe.as_ref().map(|p| p.cron.clone()),
        next_probe: config.schedule.probe.as_ref().and_then(|p| {
            p.parsed
                .find_next_occurrence(&now.with_timezone(&config.schedule.timezone), false)
                .ok()
                .map(|t| t.to_rfc3339())
        }),
        accounts,
        coordination,
    }
}

/// `reachable`: the coordinator answered just now (else its facts are not asked for: each would wait for it).
async fn account_status(
    runner: &Runner,
    account: &Account,
    closed: &ClosedDays,
    now: DateTime<Utc>,
    reachable: bool,
) -> AccountStatus {
    let held = runner.publisher().probe(&account.name).await;
    let coordinator = runner.coordinator();
    let (facts, state_error, lease_holder) = if !reachable {
        (Default::default(), Some("the coordinator does not answer (see `coordination`)".to_owned()), None)
    } else {
        match coordinator.facts(&account.name).await {
            Ok(facts) => (facts, None, coordinator.holder(&account.name).await.unwrap_or_default()),
            Err(e) => {
                tracing::warn!(account = %account.name, error = %error_chain(&e), "cannot read the coordination facts");
                (Default::default(), Some(error_chain(&e)), None)
            }
        }
    };
    let best = freshest_of(held.iter().filter_map(Held::document), now);
    let sinks: Vec<SinkStatus> = runner
        .publisher()
        .sinks()
        .iter()
        .zip(held.iter())
        .map(|(sink, h)| SinkStatus {
            sink: sink.label(),
            generation: h.document().map(|d| d.generation),
            expires_at: h.document().map(|d| d.expires_at.to_rfc3339()),
            valid: h.document().is_some_and(|d| d.is_unexpired(now)),
            error: h.error().map(str::to_owned),
        })
        .collect();
    let valid_in_every_sink = sinks.iter().all(|s| s.valid);
    let due_since = schedule::due_since(&runner.config().schedule, closed, now);
    AccountStatus {
        name: account.name.clone(),
        token_present: best.is_some(),
        valid_in_every_sink,
        expires_at: best.map(|d| d.expires_at.to_rfc3339()),
        generation: best.map(|d| d.generation),
        sinks,
        last_attempt: facts.last_attempt.clone(),
        last_success_at: facts.last_success_at.map(|t| t.to_rfc3339()),
        pin_submissions_today: facts.guard.pin_submissions_on(token::ist_day(now)),
        pin_rejected_today: facts.guard.pin_rejected_day == Some(token::ist_day(now)),
        recent_attempts: facts.recent_attempts.clone(),
        failure_screenshot: newest_screenshot(&runner.config().failures_dir(), &account.name),
        due_since: due_since.map(|t| token::ist(t).to_rfc3339()),
        ready: valid_in_every_sink || due_since.is_none(),
        state_error,
        lease_holder,
        pins_without_code_in_a_row: facts.guard.pins_without_code_in_a_row,
        last_locator_fallback: facts.last_locator_fallback.clone(),
        last_probe: facts.last_probe.clone(),
    }
}
