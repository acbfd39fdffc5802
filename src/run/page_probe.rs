//! Probing the login page: for each account, open it typing nothing (`LoginMethod::probe`) and keep the verdict in
//! metrics (`probe_ready{account}`, and `locator_fallbacks_total` when a fallback found the form) and in the
//! account's facts (`status`); a page that needs a fallback locator or stops the login is a `page_changed`
//! notification. Shared by the `probe` command and the
//! daemon's `schedule.probe_cron`. Never logs in, never touches the lockout guard's counts or a sink.

use super::Runner;
use super::pool::RunClock;
use crate::config::{Account, Method};
use crate::error::error_chain;
use crate::login::browser::{LocatedBy, ProbeReport};
use crate::login::{LoginError, Step};
use crate::notify::Event;
use crate::state::ProbeRecord;
use crate::token;

/// One account's probe. `Ok(None)`: the account logs in by token request only; it has no login page to check.
pub struct ProbeResult<'a> {
    pub account: &'a Account,
    pub result: Result<Option<ProbeReport>, LoginError>,
}

impl ProbeResult<'_> {
    pub fn ready(&self) -> bool {
        self.result.is_ok()
    }

    /// One line for a person: what was found, or what is wrong.
    pub fn summary(&self) -> String {
        match &self.result {
            Ok(Some(report)) => format!("ready: {report} ({:.1}s)", report.elapsed.as_secs_f64()),
            Ok(None) => "ready: logs in by access-token request; no login page to check".into(),
            Err(LoginError::Browser { error }) => {
                let fix = error.advice().map(|a| format!(" (fix: {a})")).unwrap_or_default();
                format!("NOT READY: {}{fix}", error_chain(error.as_ref()))
            }
            Err(e) => format!("NOT READY: {}", error_chain(e)),
        }
    }
}

impl Runner {
    /// Probe one account, record the verdict (metrics; state unless a login of the account holds its lock).
    /// An account that logs in by token request only has no page to probe (`Ok(None)`); one whose token request is
    /// its fallback is probed like any browser account.
    pub async fn probe_page(&self, account: &Account) -> Result<Option<ProbeReport>, LoginError> {
        let method = match account.method {
            Method::Browser => &self.browser,
            Method::TokenRequest => &self.token_request,
        };
        let slot = if method.uses_browser() {
            Some(self.slots.acquire(&RunClock::new(self.config.login.run_deadline)).await)
        } else {
            None
        };
        let result = method.probe(&self.config.upstox, account, slot).await;
        if let Ok(Some(report)) = &result {
            for (element, by) in [("input", &report.input), ("button", &report.button)] {
                if matches!(by, LocatedBy::Fallback(_)) {
                    self.metrics.locator_fallback(&account.name, Step::Mobile.as_str(), element);
                }
            }
        }
        let at = self.clock.now();
        self.metrics.page_probe(&account.name, result.is_ok(), at.timestamp() as f64);
        let outcome = ProbeResult { account, result };
        let record = ProbeRecord { at: token::ist(at), ready: outcome.ready(), summary: outcome.summary() };
        match self.coordinator.record_probe(&account.name, record).await {
            Ok(true) => {}
            Ok(false) => tracing::info!(account = %account.name, "a login holds the account; probe result not stored"),
            Err(e) => {
                tracing::warn!(account = %account.name, error = %error_chain(&e), "cannot store the probe result")
            }
        }
        // A person should hear of a page that needs a fallback or stops the login before the morning's run does.
        let page_trouble = match &outcome.result {
            Ok(Some(report)) => report.uses_fallback(),
            Ok(None) => false,
            Err(e) => e.is_page_reason(),
        };
        if page_trouble {
            self.notifier.notify(Event::page_changed(&account.name, Step::Mobile.as_str(), outcome.summary()));
        }
        match &outcome.result {
            Ok(Some(report)) if report.uses_fallback() => {
                tracing::warn!(account = %account.name, "probe: {}", outcome.summary());
            }
            Ok(_) => tracing::info!(account = %account.name, "probe: {}", outcome.summary()),
            Err(_) => tracing::error!(account = %account.name, "probe: {}", outcome.summary()),
        }
        outcome.result
    }
}

/// Probe `accounts` one after another (one browser at a time), reporting each result to `on_done` as it arrives.
pub async fn probe_pages<'a>(
    runner: &Runner,
    accounts: &[&'a Account],
    mut on_done: impl FnMut(&ProbeResult<'a>),
) -> Vec<ProbeResult<'a>> {
    let mut results = Vec::with_capacity(accounts.len());
    for account in accounts {
        let done = ProbeResult { account, result: runner.probe_page(account).await };
        on_done(&done);
        results.push(done);
    }
    results
}
