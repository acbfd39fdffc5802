//! What a run leaves behind for people: the attempt record (result, class, duration, the last login's step
//! timings) in state and metrics, and the notification its outcome is worth: `login_failed` (with the class and
//! the fix), `guard_refused`, or `login_recovered` for the first good run after a failed one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;
use tracing::warn;

use super::{Outcome, RunError, Runner};
use crate::config::{Account, Config, SinkConfig};
use crate::coordinate::Permit;
use crate::error::error_chain;
use crate::login::StepTiming;
use crate::notify::Event;
use crate::state::{Attempt, AttemptResult, FailureClass, StepTime};
use crate::token;

/// The step timings of each account's run in progress: the last login's steps, then `publish`. One run per account
/// at a time (the coordinator's permit), so the account's name is the key.
#[derive(Default)]
pub(super) struct StepLog(Mutex<HashMap<String, Vec<StepTiming>>>);

impl StepLog {
    /// The steps of a login that just ended replace those of an earlier login in the same run.
    pub(super) fn login(&self, account: &str, timings: &[StepTiming]) {
        self.lock().insert(account.to_owned(), timings.to_vec());
    }

    /// One more step after the login (publishing).
    pub(super) fn push(&self, account: &str, timing: StepTiming) {
        self.lock().entry(account.to_owned()).or_default().push(timing);
    }

    fn take(&self, account: &str) -> Vec<StepTiming> {
        self.lock().remove(account).unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<StepTiming>>> {
        // A poisoned map only holds timings: keep using it.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What notifications must never carry, besides tokens (which no message is built from): every account's mobile
/// number, PIN, client secret and TOTP secret, and the sinks' passwords.
pub(super) fn secrets(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for a in &config.accounts {
        if let Some(c) = &a.credentials {
            out.push(c.mobile.clone());
            out.push(c.pin.expose().to_owned());
            out.push(c.totp_secret.expose().to_owned());
        }
        out.push(a.app.client_secret.expose().to_owned());
    }
    for s in &config.sinks {
        if let SinkConfig::Redis { password: Some(p), .. } = s {
            out.push(p.expose().to_owned());
        }
    }
    out
}

impl Runner {
    /// Record how `account`'s run ended (through `permit`, when the run got one; metrics) and notify when it is
    /// worth it.
    pub(super) async fn record(
        &self,
        permit: Option<&Permit<'_>>,
        account: &Account,
        result: &Result<Outcome, RunError>,
        took: Duration,
    ) {
        let (label, error, class) = match result {
            Ok(Outcome::LoggedIn { .. }) => (AttemptResult::Success, None, None),
            // A token Upstox gave no verdict on was kept: the run did not log in.
            Ok(Outcome::Skipped { .. } | Outcome::Unverified { .. }) => (AttemptResult::Skipped, None, None),
            Ok(Outcome::Republished { .. }) => (AttemptResult::Republished, None, None),
            Err(e) => (AttemptResult::Failed, Some(error_chain(e)), Some(e.class())),
        };
        self.metrics.attempt(&account.name, label.as_str());
        let previous = self.coordinator.facts(&account.name).await.ok().and_then(|s| s.last_attempt);
        let now = token::ist(Utc::now());
        let success_at = (label == AttemptResult::Success).then_some(now);
        let steps = self.step_log.take(&account.name);
        let attempt = Attempt {
            class,
            duration_ms: Some(took.as_millis() as u64),
            steps: steps
                .iter()
                .map(|t| StepTime { step: t.step.to_string(), ms: t.elapsed.as_millis() as u64 })
                .collect(),
            ..Attempt::new(now, label, error)
        };
        if let Some(permit) = permit
            && let Err(e) = permit.record_attempt(attempt, success_at).await
        {
            warn!(error = %error_chain(&e), "could not record the attempt");
        }
        if let Some(event) = worth_telling(&account.name, result, previous.as_ref()) {
            self.notifier.notify(event);
        }
    }
}

/// The notification a run's end is worth, given the attempt recorded before it: `login_recovered` for the first
/// good run after a failed one, `guard_refused` when the lockout guard said no, `login_failed` for any other
/// failure but another process holding the account.
fn worth_telling(account: &str, result: &Result<Outcome, RunError>, previous: Option<&Attempt>) -> Option<Event> {
    match result {
        Ok(outcome) if previous.is_some_and(|p| p.result == AttemptResult::Failed) => {
            Some(Event::login_recovered(account, outcome.to_string()))
        }
        // Another replica holds the account, or published a newer token than this run's: nothing went wrong.
        Ok(_) | Err(RunError::Busy { .. } | RunError::Superseded { .. }) => None,
        Err(e) if e.class() == FailureClass::Guard => Some(Event::guard_refused(account, error_chain(e), e.fix())),
        Err(e) => Some(Event::login_failed(account, e.class(), error_chain(e), e.fix())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::login::guard::Refusal;
    use crate::notify::EventKind;

    fn attempt(result: AttemptResult) -> Attempt {
        Attempt::new(token::ist(Utc::now()), result, None)
    }

    fn skipped() -> Result<Outcome, RunError> {
        Ok(Outcome::Skipped { generation: 3, expires_at: token::expiry_for(Utc::now()) })
    }

    #[test]
    fn failures_are_told_with_class_and_fix_and_recovery_once() {
        let kind = |r: &Result<Outcome, RunError>, p: Option<AttemptResult>| {
            worth_telling("primary", r, p.map(attempt).as_ref()).map(|e| e.event)
        };
        assert_eq!(kind(&skipped(), Some(AttemptResult::Failed)), Some(EventKind::LoginRecovered));
        assert_eq!(kind(&skipped(), Some(AttemptResult::Success)), None);
        assert_eq!(kind(&skipped(), None), None);
        let busy = RunError::Busy { account: "primary".into(), holder: "`h/pid-1/x`".into() };
        assert_eq!(kind(&Err(busy), Some(AttemptResult::Success)), None);

        let deadline = Err(RunError::Deadline(std::time::Duration::from_secs(600)));
        let event = worth_telling("primary", &deadline, None).unwrap();
        assert_eq!((event.event, event.reason), (EventKind::LoginFailed, Some(FailureClass::Deadline)));
        assert!(event.fix.unwrap().contains("login.run_deadline_secs"));

        let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 28).unwrap();
        let guard = Err(RunError::Guard {
            account: "primary".into(),
            refusal: Refusal::PinRejectedToday { day },
            location: "/state/accounts/primary.json".into(),
        });
        let event = worth_telling("primary", &guard, Some(&attempt(AttemptResult::Failed))).unwrap();
        assert_eq!(event.event, EventKind::GuardRefused);
        assert!(event.fix.unwrap().contains("pin_rejected_day"), "says how to clear it");
    }
}
