//! One account's run: take the coordinator's permit (with replicas, after waiting for another holder) → read the
//! sinks and keep a still-valid published token (copying it where it is missing) → otherwise allocate the
//! generation, log in (guarded, retried: `attempts`) and publish to every sink → record → release the permit.
//!
//! Invariants kept here: a failed run never touches what the sinks hold; a document is built only from a token
//! that a login method issued; one run per account at a time (the permit); every run has a deadline and is
//! recorded. `publish` owns reading and writing sinks, `pool` walks several accounts. Printing and exit codes
//! belong to `cli`.

mod attempts;
mod gauges;
mod outcome;
pub mod page_probe;
pub mod pool;
pub mod preflight;
pub mod probe;
pub mod publish;
mod record;
mod verify;

pub use outcome::{Outcome, RunError, Trigger, WhenValid};
pub use verify::Verdict;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::task::TaskTracker;

use chrono::{DateTime, Utc};
use tracing::{info, warn};

use crate::clock::Clock;
use crate::config::{Account, Config};
use crate::coordinate::{Acquired, Coordinator, Permit};
use crate::error::error_chain;
use crate::login::StepTiming;
use crate::login::browser::ArtifactStore;
use crate::login::token_request::{self, Outstanding};
use crate::login::{BrowserLogin, LoginMethod, SendTime, Step, TokenRequestLogin};
use crate::market::Calendar;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::oauth::{TokenCheck, UpstoxApi};
use crate::secret::AccessToken;
use crate::sink::{Sink, SinkError};
use crate::state::StateStore;
use crate::token::{self, TokenDocument};
use pool::{BrowserSlots, RunClock};
use publish::{Publisher, freshest};
use record::StepLog;

/// How often a run waiting for another replica's lease asks again.
const LEASE_POLL: Duration = Duration::from_millis(500);

/// Everything a run needs, built once per process.
pub struct Runner {
    config: Arc<Config>,
    publisher: Publisher,
    coordinator: Coordinator,
    /// `LoginMethod::Browser`.
    browser: LoginMethod,
    /// `LoginMethod::TokenRequest`, as an account's method or its fallback.
    token_request: LoginMethod,
    /// The token requests awaiting approval, shared with the notifier webhook.
    outstanding: Arc<Outstanding>,
    /// Built on first use: `status`, `/status` and an idle daemon never pay for the TLS set-up.
    /// Built on first use, dropped when the daemon goes idle (`drop_idle_clients`).
    api: tokio::sync::Mutex<Option<Arc<UpstoxApi>>>,
    metrics: Arc<Metrics>,
    /// Where run outcomes (and the daemon's deadlines) are told; a no-op without `[[notifiers]]`.
    notifier: Notifier,
    step_log: StepLog,
    /// The days NSE is closed (Upstox's list, the operator's dates), refreshed once per IST day.
    calendar: Calendar,
    /// The bound on browsers alive at once (`browser.max_sessions`), shared by every run of this runner.
    slots: BrowserSlots,
    /// The day the lockout guard counts for, and the time facts are recorded at.
    clock: Clock,
}

impl Runner {
    pub fn new(config: Arc<Config>, metrics: Arc<Metrics>) -> Result<Self, RunError> {
        let publisher = Publisher::new(&config.sinks).map_err(RunError::SinkSetup)?;
        let coordinator = Coordinator::new(&config.coordination, StateStore::new(&config.state_dir))?;
        let browser = LoginMethod::Browser(BrowserLogin {
            browser: config.browser.clone(),
            totp_min_remaining: config.login.totp_min_remaining,
            artifacts: ArtifactStore::new(config.failures_dir(), config.login.failure_artifacts_keep),
            teardowns: TaskTracker::new(),
        });
        let outstanding = Arc::new(Outstanding::new());
        let token_request = LoginMethod::TokenRequest(TokenRequestLogin {
            outstanding: Arc::clone(&outstanding),
            approval_timeout: config.login.approval_timeout,
            notifier_path: config.server.notifier_path.clone(),
        });
        let notifier = Notifier::new(&config.notifiers, &config.notify, record::secrets(&config));
        let market = &config.schedule.market;
        let calendar = Calendar::new(&config.upstox, market.extra_holidays_file.clone(), market.extra_holidays.clone());
        let slots = BrowserSlots::new(config.browser.max_sessions);
        Ok(Self {
            config,
            publisher,
            coordinator,
            browser,
            token_request,
            outstanding,
            api: tokio::sync::Mutex::new(None),
            metrics,
            notifier,
            step_log: StepLog::default(),
            calendar,
            slots,
            clock: Clock::System,
        })
    }

    /// Read `clock` instead of the system's (tests move a manual clock across days instead of waiting).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The Upstox API client (for the notifier webhook's verification too), built on first use on a blocking
    /// thread: loading the system's CA certificates takes a while (over a second on a loaded machine), during which
    /// the runtime's only thread must stay free to renew a held lease. Concurrent first callers (the clock check
    /// beside a login) wait for the one build rather than each building a client.
    pub async fn api(&self) -> Result<Arc<UpstoxApi>, RunError> {
        let mut slot = self.api.lock().await;
        if let Some(api) = slot.as_ref() {
            return Ok(Arc::clone(api));
        }
        let upstox = self.config.upstox.clone();
        let api = tokio::task::spawn_blocking(move || UpstoxApi::new(&upstox))
            .await
            // invariant: UpstoxApi::new does not panic, and the runtime outlives this call
            .expect("the API client build finishes")
            .map_err(RunError::Http)?;
        Ok(Arc::clone(slot.insert(Arc::new(api))))
    }

    /// Let the HTTP clients go (their TLS contexts and idle connections, ~1 MiB each) while the daemon idles between
    /// runs; the next use builds them again. Anyone still using one keeps it until done.
    pub async fn drop_idle_clients(&self) {
        self.api.lock().await.take();
        self.calendar.drop_client();
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    pub fn coordinator(&self) -> &Coordinator {
        &self.coordinator
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Where to tell people: `runner.notifier().notify(Event::…)` (never blocks; see `notify`).
    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// The token requests awaiting approval: what the notifier webhook delivers to.
    pub fn outstanding(&self) -> &Arc<Outstanding> {
        &self.outstanding
    }

    pub fn calendar(&self) -> &Calendar {
        &self.calendar
    }

    pub fn browser_slots(&self) -> &BrowserSlots {
        &self.slots
    }

    /// Wait for what finished logins left running (browser teardowns after the token was published); every pass
    /// ends with it, so no browser outlives a pass.
    pub async fn settle(&self) {
        self.browser.settle().await;
    }

    /// One run for `account`, bounded by `login.run_deadline_secs` (plus, for an account that may send a token
    /// request, the wait for 03:30 IST and `login.approval_timeout_secs`; waits for a browser slot not counted),
    /// recorded in state and metrics. A browser it started may still be tearing down when it returns (`settle`).
    ///
    /// When another replica holds the account (`Coordinator::waits_for_holder`), waits for it to finish first (at
    /// most `login.run_deadline_secs` + `coordination.lease_ttl_secs`), then runs as usual: the sinks are read again
    /// after taking the permit, so a token the holder just published is kept, not replaced.
    #[tracing::instrument(skip_all, fields(account = %account.name, %trigger))]
    pub async fn run(&self, account: &Account, when_valid: WhenValid, trigger: Trigger) -> Result<Outcome, RunError> {
        let started = Instant::now();
        let (permit, waited_since) = match self.acquire(account).await {
            Ok(acquired) => acquired,
            // Held elsewhere is a skip, not an attempt.
            Err(e @ RunError::Busy { .. }) => return Err(e),
            // A coordinator that does not answer is a failed attempt (recorded where it can be: metrics, notifier).
            Err(e) => {
                let result = Err(e);
                self.record(None, account, &result, started.elapsed()).await;
                return result;
            }
        };
        let started = Instant::now();
        let send_time = trigger.send_time();
        let mut deadline = self.config.login.run_deadline;
        if account.may_request_token() {
            deadline += token_request::longest_wait(Utc::now(), send_time, self.config.login.approval_timeout);
        }
        let clock = RunClock::new(deadline);
        let work = self.run_with(&permit, account, when_valid, send_time, &clock, waited_since);
        let result = match clock.bound(work).await {
            Some(r) => r,
            None => Err(RunError::Deadline(deadline)),
        };
        match &result {
            Ok(Outcome::Skipped { .. } | Outcome::Republished { .. }) => {
                self.metrics.skip_check_duration(started.elapsed().as_secs_f64())
            }
            _ => self.metrics.step_duration(Step::Total.as_str(), started.elapsed().as_secs_f64()),
        }
        self.record(Some(&permit), account, &result, started.elapsed()).await;
        permit.release().await;
        result
    }

    /// The coordinator's permit; with replicas, after waiting for another holder to finish. Returns when the wait
    /// began, if there was one.
    async fn acquire(&self, account: &Account) -> Result<(Permit<'_>, Option<DateTime<Utc>>), RunError> {
        let give_up = Instant::now() + self.config.login.run_deadline + self.config.coordination.lease_ttl();
        let mut waited_since = None;
        loop {
            let acquired = self.coordinator.try_acquire(&account.name).await;
            self.metrics.coordination_up(acquired.is_ok());
            let holder = match acquired? {
                Acquired::Permit(permit) => {
                    if waited_since.is_some() {
                        info!("lease free now; reading the sinks again");
                    }
                    return Ok((permit, waited_since));
                }
                Acquired::Held { holder } => holder,
            };
            if !self.coordinator.waits_for_holder() || Instant::now() >= give_up {
                return Err(RunError::Busy { account: account.name.clone(), holder });
            }
            if waited_since.is_none() {
                self.metrics.lease_wait(&account.name);
                info!(%holder, "another replica is logging this account in; waiting for it to finish");
                waited_since = Some(Utc::now());
            }
            tokio::time::sleep(LEASE_POLL).await;
        }
    }

    /// `waited_since`: when this run began waiting for another holder; a token issued since then is as fresh as
    /// the one a forced login would get, so it is kept even with `WhenValid::LogIn`.
    async fn run_with(
        &self,
        permit: &Permit<'_>,
        account: &Account,
        when_valid: WhenValid,
        send_time: SendTime,
        clock: &RunClock,
        waited_since: Option<DateTime<Utc>>,
    ) -> Result<Outcome, RunError> {
        let held = self.publisher.read(&account.name).await;
        let best = freshest(&held, Utc::now()).cloned();
        let issued_while_waiting = |doc: &TokenDocument| waited_since.is_some_and(|t| doc.issued_at >= token::ist(t));
        if let Some(doc) = best.filter(|d| when_valid == WhenValid::Skip || issued_while_waiting(d)) {
            match self.api().await?.check_token(&AccessToken::new(doc.access_token.clone())).await {
                TokenCheck::Valid(_) => return self.keep(account, doc, &held, None).await,
                TokenCheck::Invalid(e) => info!(reason = %e, "Upstox says the published token is invalid; logging in"),
                TokenCheck::Unknown(reason) => {
                    // A rate limit or an outage says nothing about the token, and a new login might invalidate the
                    // one bots are using: keep it (it has not expired) and ask again later.
                    warn!(%reason, "Upstox gave no verdict on the published token; keeping it (it has not expired); it is checked again later");
                    return self.keep(account, doc, &held, Some(reason)).await;
                }
            }
        }
        // Before any browser starts: when no sink can take the document, a login would only spend a code and throw
        // the new token away. When some can, log in for them (the others are tried again when publishing).
        if let Err(failures) = preflight::sinks(self.publisher.sinks(), &account.name).await {
            if failures.len() == self.publisher.sinks().len() {
                return Err(RunError::Preflight { failures });
            }
            for (sink, e) in &failures {
                warn!(%sink, error = %error_chain(e), "sink not ready; logging in for the sinks that are (this one is tried again when publishing)");
            }
        }
        // Allocated before the login, while the permit is surely held: a run that loses its lease during the login
        // publishes with a generation below the next holder's, and generation-checking sinks refuse it.
        let max_seen = held.iter().flatten().map(|d| d.generation).max().unwrap_or(0);
        let generation = permit.next_generation(max_seen).await?;
        let attempts = self.obtain(permit, account, send_time, clock).await?;
        let publish_started = Instant::now();
        let issued = Utc::now();
        let response = attempts.issued.response;
        // A token Upstox does not accept right after issuing it must never reach a sink.
        let profile = self.verify_new_token(&response.access_token).await?;
        let facts = response.account.or(profile);
        let doc = TokenDocument {
            account: account.name.clone(),
            access_token: response.access_token.expose().to_owned(),
            extended_token: response.extended_token.as_ref().map(|t| t.expose().to_owned()),
            token_type: "Bearer".into(),
            user_id: facts.user_id.unwrap_or_default(),
            user_name: facts.user_name.unwrap_or_default(),
            email: facts.email.unwrap_or_default(),
            exchanges: facts.exchanges.unwrap_or_default(),
            products: facts.products.unwrap_or_default(),
            issued_at: token::ist(issued),
            expires_at: document_expiry(issued, attempts.issued.expires_at),
            generation,
        };
        // Whose token this is, as Upstox said: a token later delivered to the notifier webhook must be this user's.
        if let Err(e) = permit.remember_user_id(&doc.user_id).await {
            warn!(error = %error_chain(&e), "could not remember the account's user id");
        }
        self.publish(&doc, self.publisher.sinks().iter().collect()).await?;
        self.metrics.step_duration(Step::Publish.as_str(), publish_started.elapsed().as_secs_f64());
        self.step_log.push(&account.name, StepTiming { step: Step::Publish, elapsed: publish_started.elapsed() });
        self.metrics.success(&account.name, issued.timestamp() as f64, doc.expires_at_unix() as f64);
        self.metrics.token(&account.name, doc.generation, doc.expires_at_unix() as f64);
        info!(generation = doc.generation, expires_at = %doc.expires_at, "token published");
        Ok(Outcome::LoggedIn {
            generation: doc.generation,
            expires_at: doc.expires_at,
            attempts: attempts.count,
            timings: attempts.issued.timings,
            locations: self.publisher.sinks().iter().map(|s| s.location(&account.name)).collect(),
        })
    }

    /// The held token is valid (or unexpired and `unverified`, with the reason Upstox gave no verdict): make sure
    /// every sink has it.
    async fn keep(
        &self,
        account: &Account,
        doc: TokenDocument,
        held: &[Option<TokenDocument>],
        unverified: Option<String>,
    ) -> Result<Outcome, RunError> {
        let missing: Vec<&Sink> = self
            .publisher
            .sinks()
            .iter()
            .zip(held)
            .filter(|(_, h)| h.as_ref().is_none_or(|h| !h.same_as(&doc)))
            .map(|(s, _)| s)
            .collect();
        let (generation, expires_at) = (doc.generation, doc.expires_at);
        self.metrics.token(&account.name, doc.generation, doc.expires_at_unix() as f64);
        if let Some(reason) = unverified {
            self.publish(&doc, missing).await?;
            return Ok(Outcome::Unverified { generation, expires_at, reason });
        }
        if missing.is_empty() {
            info!(generation, expires_at = %expires_at.to_rfc3339(), "published token is still valid; skipping");
            return Ok(Outcome::Skipped { generation, expires_at });
        }
        let labels: Vec<String> = missing.iter().map(|s| s.label()).collect();
        info!(generation, sinks = %labels.join(", "), "published token is still valid; copying it to sinks that lack it");
        self.publish(&doc, missing).await?;
        Ok(Outcome::Republished { generation, expires_at, sinks: labels })
    }

    async fn publish(&self, doc: &TokenDocument, targets: Vec<&Sink>) -> Result<(), RunError> {
        let failures = self.publisher.publish(doc, targets, &self.metrics).await;
        let newer = failures.iter().map(|(_, e)| match e {
            SinkError::Fenced { held, .. } => Some(*held),
            _ => None,
        });
        match newer.collect::<Option<Vec<u64>>>() {
            _ if failures.is_empty() => Ok(()),
            Some(held) => Err(RunError::Superseded {
                generation: doc.generation,
                held: held.into_iter().max().unwrap_or_default(),
                sinks: failures.into_iter().map(|(s, _)| s).collect(),
            }),
            None => Err(RunError::Publish { generation: doc.generation, failures }),
        }
    }
}

/// The document's expiry for a token issued at `issued`: the 03:30 IST rule, or the issuer's own `stated` expiry
/// when that is earlier (whole seconds, IST, as the document shows times).
fn document_expiry(
    issued: chrono::DateTime<Utc>,
    stated: Option<chrono::DateTime<Utc>>,
) -> chrono::DateTime<chrono::FixedOffset> {
    let rule = token::expiry_for(issued);
    match stated {
        Some(stated) if stated < rule => token::ist(stated),
        _ => rule,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_expires_at_the_earlier_of_the_rule_and_upstox_word() {
        let utc = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let issued = utc("2026-11-28T08:30:05+05:30");
        assert_eq!(document_expiry(issued, None).to_rfc3339(), "2026-11-29T03:30:00+05:30");
        let later = utc("2026-11-29T05:00:00+05:30");
        assert_eq!(document_expiry(issued, Some(later)).to_rfc3339(), "2026-11-29T03:30:00+05:30");
        let earlier = utc("2026-11-28T23:59:59.750+05:30");
        assert_eq!(document_expiry(issued, Some(earlier)).to_rfc3339(), "2026-11-28T23:59:59+05:30");
    }
}
