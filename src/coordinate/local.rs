//! The one-host coordinator's permit: the account's `flock` under `state_dir/accounts/`, held until dropped, and the
//! account's state file, changed only while the lock is held (so every change is atomic across processes).

use chrono::{DateTime, FixedOffset};

use super::CoordinationError;
use crate::state::{AccountLock, Attempt, GuardFacts, LocatorFallback, ProbeRecord, StateStore};

/// The right to log one account in on this host.
pub struct LocalPermit<'a> {
    store: &'a StateStore,
    account: String,
    _lock: AccountLock,
}

impl<'a> LocalPermit<'a> {
    pub(super) fn new(store: &'a StateStore, account: &str, lock: AccountLock) -> Self {
        Self { store, account: account.to_owned(), _lock: lock }
    }

    pub(super) fn next_generation(&self, max_seen: u64) -> Result<u64, CoordinationError> {
        let state = self.store.update(&self.account, |s| s.generation = s.generation.max(max_seen) + 1)?;
        Ok(state.generation)
    }

    pub(super) fn guard_facts(&self) -> Result<(GuardFacts, Option<u64>), CoordinationError> {
        let state = self.store.load(&self.account)?;
        Ok((state.guard, state.last_totp_step))
    }

    pub(super) fn update_guard<E>(
        &self,
        mut change: impl FnMut(&mut GuardFacts, &mut Option<u64>) -> Result<(), E>,
    ) -> Result<Result<GuardFacts, E>, CoordinationError> {
        let mut state = self.store.load(&self.account)?;
        if let Err(refused) = change(&mut state.guard, &mut state.last_totp_step) {
            return Ok(Err(refused));
        }
        self.store.save(&self.account, &state)?;
        Ok(Ok(state.guard))
    }

    pub(super) fn record_attempt(
        &self,
        attempt: Attempt,
        success_at: Option<DateTime<FixedOffset>>,
    ) -> Result<(), CoordinationError> {
        self.store.update(&self.account, |s| {
            s.push_attempt(attempt);
            if success_at.is_some() {
                s.last_success_at = success_at;
            }
        })?;
        Ok(())
    }

    pub(super) fn take_fallback(&self, slot_end: DateTime<FixedOffset>) -> Result<bool, CoordinationError> {
        if self.store.load(&self.account)?.fallback_slot_end == Some(slot_end) {
            return Ok(false);
        }
        self.store.update(&self.account, |s| s.fallback_slot_end = Some(slot_end))?;
        Ok(true)
    }

    pub(super) fn known_user_id(&self) -> Result<Option<String>, CoordinationError> {
        Ok(self.store.load(&self.account)?.user_id)
    }

    pub(super) fn remember_user_id(&self, user_id: &str) -> Result<(), CoordinationError> {
        self.store.update(&self.account, |s| s.user_id = Some(user_id.to_owned()))?;
        Ok(())
    }

    pub(super) fn record_fallback(&self, used: LocatorFallback) -> Result<(), CoordinationError> {
        self.store.update(&self.account, |s| s.last_locator_fallback = Some(used))?;
        Ok(())
    }

    pub(super) fn record_probe(&self, probe: ProbeRecord) -> Result<(), CoordinationError> {
        self.store.update(&self.account, |s| s.last_probe = Some(probe))?;
        Ok(())
    }

    pub(super) fn location(&self) -> String {
        self.store.path(&self.account).display().to_string()
    }
}
