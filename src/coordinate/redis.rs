//! The replicas' coordinator: everything in one Redis, under `{key_prefix}{account}:…`.
//!
//! - `…:lease`: the lease, `SET NX PX ttl` with a random owner id (`host/pid-N/random`). While held, a watchdog task
//!   renews it every third of the TTL (compare-and-`PEXPIRE`), so a login may take as long as it needs; if the
//!   holder dies or stalls, the lease expires and another replica takes over. Released by compare-and-delete.
//! - `…:generation`: the fencing generation, `INCR`ed by the lease holder only (checked in the same script), never
//!   below the highest generation any sink holds. The Redis sink refuses a document whose generation is not above
//!   the stored one's, so a replica that lost its lease cannot replace a newer token.
//! - `…:facts`: one JSON value: the lockout guard's facts (`state::GuardFacts`, stored whole so that new fields come
//!   along), the last TOTP step typed, the recent attempts, the user id of the last token and the slot whose
//!   token-request fallback was taken. Changed only by the lease holder, by compare-and-set
//!   (read, change, write if unchanged and the lease is still ours), so a PIN is counted, and the guard's rule
//!   checked, atomically across replicas before every click.
//!
//! Every Redis error is `CoordinationError::Unavailable`: without the store no login starts, no PIN is submitted.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::CoordinationError;
use crate::config::RedisCoordination;
use crate::error::error_chain;
use crate::redis_link::{RedisLink, redact_url};
use crate::state::{AccountState, Attempt, GuardFacts, LocatorFallback, ProbeRecord};

/// KEYS: lease. ARGV: owner, TTL ms. {1, '', 0} taken; {0, holder, ms left} held by someone else.
const ACQUIRE: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {1, '', 0} end
return {0, redis.call('GET', KEYS[1]) or '', redis.call('PTTL', KEYS[1])}
";

/// KEYS: lease. ARGV: owner, TTL ms. 1 renewed, 0 not ours (any more).
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
";

/// KEYS: lease. ARGV: owner. 1 deleted, 0 not ours (expired, or taken over).
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// KEYS: lease, generation. ARGV: owner, the highest generation the sinks hold. The new generation, -1 when the
/// lease is not ours.
const NEXT_GENERATION: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local g = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[2])
if g <= floor then
  g = floor + 1
  redis.call('SET', KEYS[2], g)
end
return g
";

/// KEYS: lease, facts. ARGV: owner, the facts as read ('' for none), the new facts. 1 written, 0 changed since
/// read, -1 the lease is not ours.
const SET_FACTS: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[2], ARGV[3])
return 1
";

/// How long a health check waits for `PONG`.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Compare-and-set tries before an update gives up (only the lease holder writes, so one normally suffices).
const CAS_TRIES: u32 = 8;

/// The `…:facts` value.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct SharedFacts {
    guard: GuardFacts,
    last_totp_step: Option<u64>,
    last_attempt: Option<Attempt>,
    /// Newest first, as `AccountState::recent_attempts`.
    recent_attempts: Vec<Attempt>,
    last_success_at: Option<DateTime<FixedOffset>>,
    /// As `AccountState::user_id`.
    user_id: Option<String>,
    /// As `AccountState::fallback_slot_end`: one fallback per slot across every replica.
    fallback_slot_end: Option<DateTime<FixedOffset>>,
    /// As `AccountState::last_locator_fallback`.
    last_locator_fallback: Option<LocatorFallback>,
    /// As `AccountState::last_probe`.
    last_probe: Option<ProbeRecord>,
}

impl SharedFacts {
    /// Record `attempt` as `AccountState::push_attempt` does (the last one, and at the head of the recent ones).
    fn push_attempt(&mut self, attempt: Attempt) {
        let mut state = AccountState {
            last_attempt: self.last_attempt.take(),
            recent_attempts: std::mem::take(&mut self.recent_attempts),
            ..AccountState::default()
        };
        state.push_attempt(attempt);
        (self.last_attempt, self.recent_attempts) = (state.last_attempt, state.recent_attempts);
    }
}

/// The Redis coordinator; cheap to clone (one shared connection).
#[derive(Clone)]
pub struct RedisCoordinator {
    inner: Arc<Inner>,
}

struct Inner {
    link: RedisLink,
    prefix: String,
    ttl: Duration,
    /// This machine's host name, part of every owner id so that a person can tell who holds a lease.
    host: String,
}

impl RedisCoordinator {
    /// Parse the configuration. Makes no connection.
    pub fn new(config: &RedisCoordination) -> Result<Self, CoordinationError> {
        let link = RedisLink::new(&config.url, config.password.as_ref())
            .map_err(|source| CoordinationError::Setup { url: redact_url(&config.url), source })?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown-host".to_owned());
        let inner = Inner { link, prefix: config.key_prefix.clone(), ttl: config.lease_ttl, host };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The store's URL without its password, for messages and `status`.
    pub fn display_url(&self) -> &str {
        self.inner.link.display_url()
    }

    fn key(&self, account: &str, what: &str) -> String {
        format!("{}{account}:{what}", self.inner.prefix)
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, CoordinationError> {
        self.inner
            .link
            .run(|mut conn| async move { cmd.query_async(&mut conn).await })
            .await
            .map_err(|source| CoordinationError::Unavailable { url: self.display_url().to_owned(), source })
    }

    async fn eval<T: redis::FromRedisValue>(
        &self,
        script: &str,
        keys: &[&str],
        args: &[&str],
    ) -> Result<T, CoordinationError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(script).arg(keys.len()).arg(keys).arg(args);
        self.query(cmd).await
    }

    fn ttl_ms(&self) -> String {
        self.inner.ttl.as_millis().to_string()
    }

    /// `Ok(permit)`, or `Err(holder)`: who holds the lease, for a person.
    pub(super) async fn try_acquire(&self, account: &str) -> Result<Result<RedisPermit, String>, CoordinationError> {
        let owner = format!("{}/pid-{}/{:016x}", self.inner.host, std::process::id(), rand::rng().random::<u64>());
        let lease = self.key(account, "lease");
        let (won, holder, left_ms): (u8, String, i64) =
            self.eval(ACQUIRE, &[&lease], &[&owner, &self.ttl_ms()]).await?;
        if won == 1 {
            debug!(account, owner, "lease taken");
            return Ok(Ok(RedisPermit::start(self.clone(), account, owner)));
        }
        Ok(Err(describe_holder(&holder, left_ms)))
    }

    pub(super) async fn holder(&self, account: &str) -> Result<Option<String>, CoordinationError> {
        let lease = self.key(account, "lease");
        let mut pipe = redis::pipe();
        pipe.get(&lease).pttl(&lease);
        let (holder, left_ms): (Option<String>, i64) = self
            .inner
            .link
            .run(|mut conn| async move { pipe.query_async(&mut conn).await })
            .await
            .map_err(|source| CoordinationError::Unavailable { url: self.display_url().to_owned(), source })?;
        Ok(holder.map(|h| describe_holder(&h, left_ms)))
    }

    pub(super) async fn facts(&self, account: &str) -> Result<AccountState, CoordinationError> {
        let mut cmd = redis::cmd("MGET");
        cmd.arg(self.key(account, "facts")).arg(self.key(account, "generation"));
        let (facts, generation): (Option<String>, Option<u64>) = self.query(cmd).await?;
        let facts = self.parse_facts(account, facts.as_deref())?;
        Ok(AccountState {
            generation: generation.unwrap_or(0),
            last_attempt: facts.last_attempt,
            recent_attempts: facts.recent_attempts,
            last_success_at: facts.last_success_at,
            guard: facts.guard,
            last_totp_step: facts.last_totp_step,
            user_id: facts.user_id,
            fallback_slot_end: facts.fallback_slot_end,
            last_locator_fallback: facts.last_locator_fallback,
            last_probe: facts.last_probe,
        })
    }

    /// `PING`, answered within `PING_TIMEOUT` (health checks must not hang a probe or a scrape).
    pub(super) async fn ping(&self) -> Result<(), CoordinationError> {
        match tokio::time::timeout(PING_TIMEOUT, self.query::<String>(redis::cmd("PING"))).await {
            Ok(pong) => pong.map(|_| ()),
            Err(_) => Err(CoordinationError::Unavailable {
                url: self.display_url().to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no PONG within {PING_TIMEOUT:?}"))
                    .into(),
            }),
        }
    }

    fn parse_facts(&self, account: &str, raw: Option<&str>) -> Result<SharedFacts, CoordinationError> {
        match raw {
            None => Ok(SharedFacts::default()),
            Some(raw) => serde_json::from_str(raw)
                .map_err(|source| CoordinationError::Corrupt { key: self.key(account, "facts"), source }),
        }
    }

    async fn release(&self, account: &str, owner: &str) {
        match self.eval::<i64>(RELEASE, &[&self.key(account, "lease")], &[owner]).await {
            Ok(1) => debug!(account, "lease released"),
            Ok(_) => debug!(account, "lease had already expired or been taken over; nothing to release"),
            Err(e) => warn!(account, error = %error_chain(&e), "cannot release the lease; it expires by itself"),
        }
    }
}

fn describe_holder(owner: &str, left_ms: i64) -> String {
    if left_ms > 0 {
        format!("`{owner}` (lease expires in {:.1}s unless renewed)", left_ms as f64 / 1000.0)
    } else {
        format!("`{owner}`")
    }
}

/// The lease on one account, renewed in the background until released or dropped.
pub struct RedisPermit {
    coordinator: RedisCoordinator,
    account: String,
    owner: String,
    watchdog: CancellationToken,
    released: bool,
}

impl RedisPermit {
    fn start(coordinator: RedisCoordinator, account: &str, owner: String) -> Self {
        let watchdog = CancellationToken::new();
        tokio::spawn(renew_while_held(coordinator.clone(), account.to_owned(), owner.clone(), watchdog.clone()));
        Self { coordinator, account: account.to_owned(), owner, watchdog, released: false }
    }

    fn lost(&self) -> CoordinationError {
        CoordinationError::LeaseLost { account: self.account.clone() }
    }

    pub(super) async fn next_generation(&self, max_seen: u64) -> Result<u64, CoordinationError> {
        let c = &self.coordinator;
        let keys = [c.key(&self.account, "lease"), c.key(&self.account, "generation")];
        let generation: i64 =
            c.eval(NEXT_GENERATION, &[&keys[0], &keys[1]], &[&self.owner, &max_seen.to_string()]).await?;
        u64::try_from(generation).map_err(|_| self.lost())
    }

    pub(super) async fn guard_facts(&self) -> Result<(GuardFacts, Option<u64>), CoordinationError> {
        let (facts, _) = self.read_facts().await?;
        Ok((facts.guard, facts.last_totp_step))
    }

    async fn read_facts(&self) -> Result<(SharedFacts, Option<String>), CoordinationError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.coordinator.key(&self.account, "facts"));
        let raw: Option<String> = self.coordinator.query(cmd).await?;
        Ok((self.coordinator.parse_facts(&self.account, raw.as_deref())?, raw))
    }

    /// Read, change, write back if nobody changed the facts meanwhile and the lease is still ours.
    async fn change_facts<E>(
        &self,
        mut change: impl FnMut(&mut SharedFacts) -> Result<(), E>,
    ) -> Result<Result<SharedFacts, E>, CoordinationError> {
        let c = &self.coordinator;
        let keys = [c.key(&self.account, "lease"), c.key(&self.account, "facts")];
        for _ in 0..CAS_TRIES {
            let (mut facts, raw) = self.read_facts().await?;
            if let Err(refused) = change(&mut facts) {
                return Ok(Err(refused));
            }
            // invariant: SharedFacts holds only plain data
            let new = serde_json::to_string(&facts).expect("facts serialise");
            let args = [self.owner.as_str(), raw.as_deref().unwrap_or(""), new.as_str()];
            match c.eval::<i64>(SET_FACTS, &[&keys[0], &keys[1]], &args).await? {
                1 => return Ok(Ok(facts)),
                0 => continue,
                _ => return Err(self.lost()),
            }
        }
        Err(CoordinationError::Contended { account: self.account.clone(), tries: CAS_TRIES })
    }

    pub(super) async fn update_guard<E>(
        &self,
        mut change: impl FnMut(&mut GuardFacts, &mut Option<u64>) -> Result<(), E>,
    ) -> Result<Result<GuardFacts, E>, CoordinationError> {
        let changed = self.change_facts(|f| change(&mut f.guard, &mut f.last_totp_step)).await?;
        Ok(changed.map(|f| f.guard))
    }

    pub(super) async fn record_attempt(
        &self,
        attempt: Attempt,
        success_at: Option<DateTime<FixedOffset>>,
    ) -> Result<(), CoordinationError> {
        let changed = self
            .change_facts(|f| {
                f.push_attempt(attempt.clone());
                if success_at.is_some() {
                    f.last_success_at = success_at;
                }
                Ok::<(), std::convert::Infallible>(())
            })
            .await?;
        let Ok(_) = changed;
        Ok(())
    }

    pub(super) async fn take_fallback(&self, slot_end: DateTime<FixedOffset>) -> Result<bool, CoordinationError> {
        let taken = self
            .change_facts(|f| {
                if f.fallback_slot_end == Some(slot_end) {
                    return Err(());
                }
                f.fallback_slot_end = Some(slot_end);
                Ok(())
            })
            .await?;
        Ok(taken.is_ok())
    }

    pub(super) async fn known_user_id(&self) -> Result<Option<String>, CoordinationError> {
        Ok(self.read_facts().await?.0.user_id)
    }

    pub(super) async fn remember_user_id(&self, user_id: &str) -> Result<(), CoordinationError> {
        let changed = self
            .change_facts(|f| {
                f.user_id = Some(user_id.to_owned());
                Ok::<(), std::convert::Infallible>(())
            })
            .await?;
        let Ok(_) = changed;
        Ok(())
    }

    /// Set one field of the facts (compare-and-set, as every change).
    async fn set(&self, set: impl Fn(&mut SharedFacts) + Send) -> Result<(), CoordinationError> {
        let Ok(_) = self
            .change_facts(|f| {
                set(f);
                Ok::<(), std::convert::Infallible>(())
            })
            .await?;
        Ok(())
    }

    pub(super) async fn record_fallback(&self, used: LocatorFallback) -> Result<(), CoordinationError> {
        self.set(|f| f.last_locator_fallback = Some(used.clone())).await
    }

    pub(super) async fn record_probe(&self, probe: ProbeRecord) -> Result<(), CoordinationError> {
        self.set(|f| f.last_probe = Some(probe.clone())).await
    }

    pub(super) fn location(&self) -> String {
        format!(
            "Redis key {} (JSON, field guard) at {}",
            self.coordinator.key(&self.account, "facts"),
            self.coordinator.display_url()
        )
    }

    pub(super) async fn release(mut self) {
        self.released = true;
        self.watchdog.cancel();
        self.coordinator.release(&self.account, &self.owner).await;
    }
}

impl Drop for RedisPermit {
    fn drop(&mut self) {
        self.watchdog.cancel();
        if self.released {
            return;
        }
        // Dropped without `release` (a cancelled run): release in the background; if the runtime is gone, the
        // lease expires by itself.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (coordinator, account, owner) = (self.coordinator.clone(), self.account.clone(), self.owner.clone());
            runtime.spawn(async move { coordinator.release(&account, &owner).await });
        }
    }
}

/// The watchdog: renew the lease every third of its TTL until `stop`; stop by itself once the lease is not ours.
async fn renew_while_held(coordinator: RedisCoordinator, account: String, owner: String, stop: CancellationToken) {
    let every = coordinator.inner.ttl / 3;
    let lease = coordinator.key(&account, "lease");
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match coordinator.eval::<i64>(RENEW, &[&lease], &[&owner, &coordinator.ttl_ms()]).await {
            Ok(1) => {}
            Ok(_) if stop.is_cancelled() => return,
            Ok(_) => {
                warn!(
                    account = %account,
                    "lease lost: it expired before it was renewed (this process stalled, or Redis was unreachable, for longer than `coordination.lease_ttl_secs`); this run can no longer count a PIN, allocate a generation or replace a newer token"
                );
                return;
            }
            Err(e) => warn!(account = %account, error = %error_chain(&e), "cannot renew the lease; trying again"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_keep_the_guard_whole_and_tolerate_missing_fields() {
        let facts: SharedFacts = serde_json::from_str(r#"{"guard":{"pin_submissions":2},"last_totp_step":9}"#).unwrap();
        assert_eq!((facts.guard.pin_submissions, facts.last_totp_step), (2, Some(9)));
        let text = serde_json::to_string(&SharedFacts::default()).unwrap();
        assert!(text.contains("\"guard\":{"), "the guard is one JSON value: {text}");
    }

    #[test]
    fn holder_shows_owner_and_time_left() {
        assert_eq!(describe_holder("h/pid-1/ab", 1500), "`h/pid-1/ab` (lease expires in 1.5s unless renewed)");
        assert_eq!(describe_holder("h/pid-1/ab", -1), "`h/pid-1/ab`");
    }
}
