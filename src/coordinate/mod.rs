//! Coordination: "may this process log this account in now, and with which generation?", and where the facts the
//! lockout guard reads are kept. A closed enum of coordinators, each handing out a `Permit`.
//!
//! - `Local` (the default): a per-account `flock` under `state_dir/accounts/` and the account's state file, for
//!   one host.
//! - `Redis`: several replicas sharing one Redis. A lease per account (`SET NX PX` with a random owner id, renewed
//!   by a watchdog while held, released by compare-and-delete), a fencing generation (`INCR`, only by the lease
//!   holder), and the guard's facts, the last TOTP step and the last attempt as one JSON value changed only by the
//!   lease holder (compare-and-set).
//!
//! A `Permit` is the answer "yes": it is the only way to allocate a generation, to change the guard's facts or to
//! record an attempt, and it must be released (`Permit::release`; dropping it releases too, in the background).
//! This module decides nothing about policy (the guard's rule is `login::guard`; whether to log in is `run`'s).

mod local;
mod redis;

use chrono::{DateTime, FixedOffset};

use crate::config::CoordinationConfig;
use crate::state::{AccountState, Attempt, GuardFacts, LocatorFallback, ProbeRecord, StateError, StateStore};
pub use local::LocalPermit;
pub use redis::{RedisCoordinator, RedisPermit};

#[derive(Debug, thiserror::Error)]
pub enum CoordinationError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot set up the coordination store `{url}` (fix: `coordination.url`)")]
    Setup {
        url: String,
        #[source]
        source: ::redis::RedisError,
    },
    #[error(
        "coordination store `{url}` unreachable: no replica logs in without it (fix: start Redis or correct `coordination.url`; the next run tries again)"
    )]
    Unavailable {
        url: String,
        #[source]
        source: ::redis::RedisError,
    },
    #[error(
        "the lease on account `{account}` was lost (not renewed within `coordination.lease_ttl_secs`); another replica may hold it now"
    )]
    LeaseLost { account: String },
    #[error("coordination key `{key}` holds something unreadable (fix: delete the key; the guard then starts afresh)")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the facts of account `{account}` kept changing during an update (tried {tries} times)")]
    Contended { account: String, tries: u32 },
}

/// What `Coordinator::describe` tells a person: the kind and where its facts live.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CoordinatorInfo {
    /// `"local"` or `"redis"`.
    pub kind: &'static str,
    /// `state_dir/accounts`, or the Redis URL without its password.
    pub store: String,
}

/// The closed set of coordinators.
#[derive(Clone)]
pub enum Coordinator {
    /// One host: a lock file per account and the state files under `state_dir`.
    Local(StateStore),
    /// Several replicas: lease, fencing generation and guard facts in one Redis.
    Redis(RedisCoordinator),
}

/// The answer to `try_acquire`.
pub enum Acquired<'a> {
    /// This process may log the account in.
    Permit(Permit<'a>),
    /// Someone else may: `holder` says who (a person reads it).
    Held { holder: String },
}

impl Coordinator {
    /// The coordinator `config` asks for. Makes no connection.
    pub fn new(config: &CoordinationConfig, state: StateStore) -> Result<Self, CoordinationError> {
        Ok(match config {
            CoordinationConfig::Local => Coordinator::Local(state),
            CoordinationConfig::Redis(redis) => Coordinator::Redis(RedisCoordinator::new(redis)?),
        })
    }

    /// Whether a run that finds the account held should wait for the holder (replicas: the holder may die, and
    /// its lease then expires) rather than give up at once (one host: the holder is another command, today's rule).
    pub fn waits_for_holder(&self) -> bool {
        matches!(self, Coordinator::Redis(_))
    }

    /// Take the right to log `account` in, without waiting.
    pub async fn try_acquire(&self, account: &str) -> Result<Acquired<'_>, CoordinationError> {
        match self {
            Coordinator::Local(store) => Ok(match store.try_lock(account)? {
                Some(lock) => Acquired::Permit(Permit::Local(LocalPermit::new(store, account, lock))),
                None => Acquired::Held {
                    holder: format!("another process on this host (lock `{}`)", store.lock_path(account).display()),
                },
            }),
            Coordinator::Redis(redis) => Ok(match redis.try_acquire(account).await? {
                Ok(permit) => Acquired::Permit(Permit::Redis(permit)),
                Err(holder) => Acquired::Held { holder },
            }),
        }
    }

    /// The account's facts (generation counter, last attempt, guard), for `status` and start-up gauges.
    pub async fn facts(&self, account: &str) -> Result<AccountState, CoordinationError> {
        match self {
            Coordinator::Local(store) => Ok(store.load(account)?),
            Coordinator::Redis(redis) => redis.facts(account).await,
        }
    }

    /// Who holds the account's lease right now, if anyone (`None` for `Local`: a flock does not say).
    pub async fn holder(&self, account: &str) -> Result<Option<String>, CoordinationError> {
        match self {
            Coordinator::Local(_) => Ok(None),
            Coordinator::Redis(redis) => redis.holder(account).await,
        }
    }

    /// Can the coordinator answer now? (`Local`: always; `Redis`: a `PING`.)
    pub async fn health(&self) -> Result<(), CoordinationError> {
        match self {
            Coordinator::Local(_) => Ok(()),
            Coordinator::Redis(redis) => redis.ping().await,
        }
    }

    /// Clear the lockout guard's facts for `account` (a human fixed the cause), returning what they were.
    /// `Ok(None)`: a login of the account is in progress (here or, with `Redis`, on any replica); nothing changed.
    pub async fn reset_guard(&self, account: &str) -> Result<Option<GuardFacts>, CoordinationError> {
        let Acquired::Permit(permit) = self.try_acquire(account).await? else { return Ok(None) };
        let reset = async {
            let (before, _) = permit.guard_facts().await?;
            let Ok(_) = permit
                .update_guard(|guard, _| {
                    *guard = GuardFacts::default();
                    Ok::<(), std::convert::Infallible>(())
                })
                .await?;
            Ok(before)
        }
        .await;
        permit.release().await;
        reset.map(Some)
    }

    /// Keep how the last probe of `account` went. `Ok(false)`: a login of the account is in progress, so the record
    /// was not written (writing beside it could undo its lockout count).
    pub async fn record_probe(&self, account: &str, probe: ProbeRecord) -> Result<bool, CoordinationError> {
        let Acquired::Permit(permit) = self.try_acquire(account).await? else { return Ok(false) };
        let recorded = permit.record_probe(probe).await;
        permit.release().await;
        recorded.map(|()| true)
    }

    /// The kind and where the facts live, for `status` (never a password).
    pub fn describe(&self) -> CoordinatorInfo {
        match self {
            Coordinator::Local(store) => CoordinatorInfo { kind: "local", store: store.dir().display().to_string() },
            Coordinator::Redis(redis) => CoordinatorInfo { kind: "redis", store: redis.display_url().to_owned() },
        }
    }
}

/// The right to log one account in. Release it with `release`; dropping it releases it too (in the background
/// for `Redis`, or by expiry if the process dies).
pub enum Permit<'a> {
    Local(LocalPermit<'a>),
    Redis(RedisPermit),
}

impl Permit<'_> {
    /// The generation for a new document: above both every generation allocated before (by any replica, for
    /// `Redis`) and `max_seen` (the highest any sink holds), persisted before it is returned. Fails once the lease
    /// is lost.
    pub async fn next_generation(&self, max_seen: u64) -> Result<u64, CoordinationError> {
        match self {
            Permit::Local(p) => p.next_generation(max_seen),
            Permit::Redis(p) => p.next_generation(max_seen).await,
        }
    }

    /// The lockout guard's facts and the last TOTP step used.
    pub async fn guard_facts(&self) -> Result<(GuardFacts, Option<u64>), CoordinationError> {
        match self {
            Permit::Local(p) => p.guard_facts(),
            Permit::Redis(p) => p.guard_facts().await,
        }
    }

    /// Change the guard's facts and the last TOTP step atomically with respect to every other holder: `change` sees
    /// the current facts (it may run more than once under contention) and may refuse with `E`, in which case
    /// nothing is written. Persisted before this returns; fails once the lease is lost.
    pub async fn update_guard<E>(
        &self,
        change: impl FnMut(&mut GuardFacts, &mut Option<u64>) -> Result<(), E> + Send,
    ) -> Result<Result<GuardFacts, E>, CoordinationError> {
        match self {
            Permit::Local(p) => p.update_guard(change),
            Permit::Redis(p) => p.update_guard(change).await,
        }
    }

    /// Record how the run ended (`success_at` for a new token). Refused once the lease is lost: the new holder's
    /// record is the one that counts.
    pub async fn record_attempt(
        &self,
        attempt: Attempt,
        success_at: Option<DateTime<FixedOffset>>,
    ) -> Result<(), CoordinationError> {
        match self {
            Permit::Local(p) => p.record_attempt(attempt, success_at),
            Permit::Redis(p) => p.record_attempt(attempt, success_at).await,
        }
    }

    /// Take the one fallback to a token request of the slot ending at `slot_end` (03:30 IST), persisted before this
    /// returns (shared by every replica with `Redis`). `Ok(false)`: this slot's fallback was taken already.
    pub async fn take_fallback(&self, slot_end: DateTime<FixedOffset>) -> Result<bool, CoordinationError> {
        match self {
            Permit::Local(p) => p.take_fallback(slot_end),
            Permit::Redis(p) => p.take_fallback(slot_end).await,
        }
    }

    /// The Upstox user id of the account's last published token, if one was ever published.
    pub async fn known_user_id(&self) -> Result<Option<String>, CoordinationError> {
        match self {
            Permit::Local(p) => p.known_user_id(),
            Permit::Redis(p) => p.known_user_id().await,
        }
    }

    /// Remember whose token was just published (`known_user_id` from now on).
    pub async fn remember_user_id(&self, user_id: &str) -> Result<(), CoordinationError> {
        match self {
            Permit::Local(p) => p.remember_user_id(user_id),
            Permit::Redis(p) => p.remember_user_id(user_id).await,
        }
    }

    /// Keep the last time an element was found only by a fallback locator (`status` shows it).
    pub async fn record_fallback(&self, used: LocatorFallback) -> Result<(), CoordinationError> {
        match self {
            Permit::Local(p) => p.record_fallback(used),
            Permit::Redis(p) => p.record_fallback(used).await,
        }
    }

    /// Keep how the last probe of the account went (`Coordinator::record_probe`).
    async fn record_probe(&self, probe: ProbeRecord) -> Result<(), CoordinationError> {
        match self {
            Permit::Local(p) => p.record_probe(probe),
            Permit::Redis(p) => p.record_probe(probe).await,
        }
    }

    /// Where the facts live, for messages that tell a human what to edit.
    pub fn location(&self) -> String {
        match self {
            Permit::Local(p) => p.location(),
            Permit::Redis(p) => p.location(),
        }
    }

    /// Give the right up now (`Redis`: compare-and-delete, so a lease taken over by another replica is left alone).
    pub async fn release(self) {
        match self {
            Permit::Local(p) => drop(p),
            Permit::Redis(p) => p.release().await,
        }
    }
}
