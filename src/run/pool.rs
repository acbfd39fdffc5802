//! Several accounts in one pass: the one loop that `login` and the daemon share. Each account's result is handed
//! to the caller as soon as it is known; one account's failure never stops the others.

use super::{Outcome, RunError, Runner, Trigger, WhenValid};
use crate::config::Account;

/// One account's result within a pass.
pub struct AccountResult<'a> {
    pub account: &'a Account,
    pub result: Result<Outcome, RunError>,
}

/// Run `accounts` and report each result to `on_done` as it arrives; returns every result in `accounts` order.
/// Dropping the future cancels the account in flight (its browser is killed by `Browser`'s `Drop`).
pub async fn run_accounts<'a>(
    runner: &Runner,
    accounts: &[&'a Account],
    when_valid: WhenValid,
    trigger: Trigger,
    mut on_done: impl FnMut(&AccountResult<'a>),
) -> Vec<AccountResult<'a>> {
    let mut results = Vec::with_capacity(accounts.len());
    for account in accounts {
        let done = AccountResult { account, result: runner.run(account, when_valid, trigger).await };
        on_done(&done);
        results.push(done);
    }
    results
}
