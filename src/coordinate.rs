//! Coordination: "may this process log this account in now, and with which generation?", and where the facts
//! the lockout guard reads are kept. A closed enum, so that several replicas sharing a store is one more variant.
//!
//! `Local` (today's only variant) answers with a per-account `flock` under `state_dir/accounts/` and keeps the
//! generation and guard facts in the account's state file. A `Permit` is the answer "yes": it holds the lock until
//! dropped, and it is the only way to allocate a generation or to update the guard's facts. This module decides
//! nothing about policy (the guard's rule is `login::guard`; whether to log in is `run`'s).

use chrono::{DateTime, FixedOffset};

use crate::state::{
    AccountLock, AccountState, Attempt, GuardFacts, LocatorFallback, ProbeRecord, StateError, StateStore,
};

#[derive(Debug, thiserror::Error)]
pub enum CoordinationError {
    #[error(transparent)]
    State(#[from] StateError),
}

/// The closed set of coordinators.
#[derive(Debug, Clone)]
pub enum Coordinator {
    /// One host: a lock file per account and the state files under `state_dir`.
    Local(StateStore),
}

impl Coordinator {
    /// Take the right to log `account` in, without waiting. `Ok(None)`: someone else holds it now.
    pub fn try_acquire(&self, account: &str) -> Result<Option<Permit<'_>>, CoordinationError> {
        match self {
            Coordinator::Local(store) => {
                Ok(store.try_lock(account)?.map(|lock| Permit { store, account: account.to_owned(), _lock: lock }))
            }
        }
    }

    /// The account's persisted facts (generation, last attempt, guard), for `status` and start-up gauges.
    pub fn facts(&self, account: &str) -> Result<AccountState, CoordinationError> {
        match self {
            Coordinator::Local(store) => Ok(store.load(account)?),
        }
    }

    /// Record how a run ended, as the last attempt and at the head of the recent ones (kept whether or not a permit
    /// was held: a refused run is an attempt too).
    pub fn record_attempt(
        &self,
        account: &str,
        attempt: Attempt,
        success_at: Option<DateTime<FixedOffset>>,
    ) -> Result<(), CoordinationError> {
        match self {
            Coordinator::Local(store) => {
                store.update(account, |s| {
                    s.push_attempt(attempt);
                    if success_at.is_some() {
                        s.last_success_at = success_at;
                    }
                })?;
                Ok(())
            }
        }
    }
}

impl Coordinator {
    /// Clear the lockout guard's facts for `account` (a human fixed the cause), returning what they were.
    /// `Ok(None)`: a login of the account is in progress; nothing was changed.
    pub fn reset_guard(&self, account: &str) -> Result<Option<GuardFacts>, CoordinationError> {
        let Some(permit) = self.try_acquire(account)? else { return Ok(None) };
        let (before, _) = permit.guard_facts()?;
        permit.update_guard(|g, _| *g = GuardFacts::default())?;
        Ok(Some(before))
    }

    /// Keep how the last probe of `account` went. `Ok(false)`: a login of the account is in progress, so the record
    /// was not written (writing beside it could undo its lockout count).
    pub fn record_probe(&self, account: &str, probe: ProbeRecord) -> Result<bool, CoordinationError> {
        let Some(permit) = self.try_acquire(account)? else { return Ok(false) };
        match self {
            Coordinator::Local(store) => {
                store.update(&permit.account, |s| s.last_probe = Some(probe))?;
            }
        }
        Ok(true)
    }
}

/// The right to log one account in, held until dropped.
pub struct Permit<'a> {
    store: &'a StateStore,
    account: String,
    _lock: AccountLock,
}

impl Permit<'_> {
    /// The generation for a new document: one above both the last one allocated and `max_seen` (the highest any
    /// sink holds), persisted before it is returned.
    pub fn next_generation(&self, max_seen: u64) -> Result<u64, CoordinationError> {
        let state = self.store.update(&self.account, |s| s.generation = s.generation.max(max_seen) + 1)?;
        Ok(state.generation)
    }

    /// The lockout guard's facts and the last TOTP step used.
    pub fn guard_facts(&self) -> Result<(GuardFacts, Option<u64>), CoordinationError> {
        let state = self.store.load(&self.account)?;
        Ok((state.guard, state.last_totp_step))
    }

    /// Change the guard's facts (and the last TOTP step), persisted before this returns.
    pub fn update_guard(
        &self,
        change: impl FnOnce(&mut GuardFacts, &mut Option<u64>),
    ) -> Result<GuardFacts, CoordinationError> {
        let state = self.store.update(&self.account, |s| change(&mut s.guard, &mut s.last_totp_step))?;
        Ok(state.guard)
    }

    /// Take the one fallback to a token request of the slot ending at `slot_end` (03:30 IST), persisted before this
    /// returns. `Ok(false)`: this slot's fallback was taken already.
    pub fn take_fallback(&self, slot_end: DateTime<FixedOffset>) -> Result<bool, CoordinationError> {
        if self.store.load(&self.account)?.fallback_slot_end == Some(slot_end) {
            return Ok(false);
        }
        self.store.update(&self.account, |s| s.fallback_slot_end = Some(slot_end))?;
        Ok(true)
    }

    /// The Upstox user id of the account's last published token, if one was ever published.
    pub fn known_user_id(&self) -> Result<Option<String>, CoordinationError> {
        Ok(self.store.load(&self.account)?.user_id)
    }

    /// Remember whose token was just published (`known_user_id` from now on).
    pub fn remember_user_id(&self, user_id: &str) -> Result<(), CoordinationError> {
        self.store.update(&self.account, |s| s.user_id = Some(user_id.to_owned()))?;
        Ok(())
    }

    /// Keep the last time an element was found only by a fallback locator (`status` shows it).
    pub fn record_fallback(&self, used: LocatorFallback) -> Result<(), CoordinationError> {
        self.store.update(&self.account, |s| s.last_locator_fallback = Some(used))?;
        Ok(())
    }

    /// Where the facts live, for messages that tell a human what to edit.
    pub fn location(&self) -> String {
        self.store.path(&self.account).display().to_string()
    }
}
