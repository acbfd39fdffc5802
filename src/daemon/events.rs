//! The daemon's two alarms, each with exactly one call site: `deadline_missed` (a scheduled morning ended without a
//! valid token in every sink by `schedule.retry_until`) and `token_missing_near_open` (no valid token
//! `schedule.token_check_mins_before_open` before `schedule.market_open` on a trading day).
//!
//! Each is logged at ERROR with `event = "<name>"`, the account and what to do, and sent to the `[[notifiers]]`
//! (`notify`: rate-limited, never blocking). Neither carries a token or a secret: error texts never hold one, and
//! the notifier scrubs the configured secrets once more.

use chrono::{DateTime, FixedOffset};
use tracing::error;

use crate::notify::Event;
use crate::run::Runner;

/// `account` still has no valid token in every sink at `deadline`; `last_error` is its last run's error.
pub(super) fn on_deadline_missed(runner: &Runner, account: &str, deadline: DateTime<FixedOffset>, last_error: &str) {
    error!(
        event = "deadline_missed",
        account,
        deadline = %deadline.to_rfc3339(),
        last_error,
        "deadline missed: account `{account}` has no valid token in every sink at {} (`schedule.retry_until`); \
         fix the cause named by the last error, then run `upstox-relogin login --account {account}`",
        deadline.format("%H:%M:%S %:z"),
    );
    runner.notifier().notify(Event::deadline_missed(account, deadline, Some(last_error)));
}

/// `account` has no valid token in every sink shortly before the market opens at `open_at`.
pub(super) fn on_token_missing_near_open(runner: &Runner, account: &str, open_at: DateTime<FixedOffset>) {
    error!(
        event = "token_missing_near_open",
        account,
        open_at = %open_at.to_rfc3339(),
        "token missing near the open: account `{account}` has no valid token in every sink and the market opens \
         at {}; look at `upstox-relogin status`, then run `upstox-relogin login --account {account}`",
        open_at.format("%H:%M:%S %:z"),
    );
    runner.notifier().notify(Event::token_missing_near_open(account, open_at));
}
