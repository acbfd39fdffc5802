//! One account's run: skip when the published token is still valid → browser login (guarded, retried) → one
//! exchange per code → publish to every sink.
//!
//! Invariants kept here: a code is POSTed at most once (a failed or uncertain exchange means a new browser login);
//! a PIN submission is counted in `state_dir` before the click, and the lockout guard refuses a login when the
//! day's cap is reached or a PIN was rejected today; a failed run never touches what the sinks hold; one run per
//! account at a time, across processes (a lock file).

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, Retryable};
use chrono::Utc;
use futures_util::future::join_all;
use tracing::{info, warn};

use crate::browser::{self, ArtifactStore, BrowserError, FlowEvent, FlowInputs, PageRejection, StepTiming};
use crate::config::{Account, Config};
use crate::metrics::Metrics;
use crate::oauth::{ExchangeError, TokenCheck, UpstoxApi};
use crate::sink::{Sink, SinkError};
use crate::state::{AccountState, Attempt, StateError, StateStore};
use crate::token::{self, TokenDocument};
use crate::totp::TotpGenerator;

/// Retries of a failed sink write within a run, and the first pause between them (doubling).
const SINK_RETRIES: usize = 3;
const SINK_FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// A clock further than this from Upstox's gets a warning: TOTP codes near a window's edge start failing.
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(2);
/// How long the clock check may hold up a login.
const CLOCK_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub enum Outcome {
    /// Every sink already holds a valid token.
    Skipped { generation: u64, expires_at: String },
    /// A valid token was copied to sinks that lacked it; no login was needed.
    Republished { generation: u64, expires_at: String, sinks: Vec<String> },
    /// A new token was issued and published everywhere.
    LoggedIn { generation: u64, expires_at: String, attempts: u32, timings: Vec<StepTiming>, locations: Vec<String> },
}

#[derive(Debug, thiserror::Error)]
pub enum ReloginError {
    #[error("another process is logging in account `{0}` right now (lock `{0}.lock` under state_dir/accounts)")]
    Busy(String),
    #[error("lockout guard: {0}")]
    Guard(String),
    #[error("browser login failed: {error}{}", advice(error.advice()))]
    Browser {
        #[source]
        error: Box<BrowserError>,
    },
    #[error("token exchange failed: {error}{}", advice(exchange_advice(error)))]
    Exchange {
        #[source]
        error: ExchangeError,
    },
    #[error("the new token (generation {generation}) did not reach every sink: {}", .failures.iter().map(|(s, e)| format!("`{s}`: {}", error_chain(e))).collect::<Vec<_>>().join("; "))]
    Publish { generation: u64, failures: Vec<(String, SinkError)> },
    #[error("cannot set up a sink")]
    SinkSetup(#[source] SinkError),
    #[error("run deadline of {0:?} passed (`login.run_deadline_secs`)")]
    Deadline(Duration),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot build the HTTP client")]
    Http(#[source] reqwest::Error),
}

fn advice(a: Option<&str>) -> String {
    a.map(|a| format!(" (fix: {a})")).unwrap_or_default()
}

fn exchange_advice(e: &ExchangeError) -> Option<&'static str> {
    match e {
        ExchangeError::Refused(u) => u.advice(),
        _ => None,
    }
}

/// `error: cause: cause` on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

impl ReloginError {
    /// Retrying within this run cannot help.
    pub fn is_permanent(&self) -> bool {
        match self {
            ReloginError::Browser { error } => error.is_permanent(),
            ReloginError::Exchange { error: ExchangeError::Refused(u) } => u.is_permanent(),
            ReloginError::Guard(_)
            | ReloginError::Busy(_)
            | ReloginError::State(_)
            | ReloginError::Http(_)
            | ReloginError::SinkSetup(_) => true,
            _ => false,
        }
    }
}

/// Everything a run needs, built once per process.
pub struct Relogin {
    config: Arc<Config>,
    sinks: Vec<Sink>,
    /// Built on first use: `status`, `/status` and an idle daemon never pay for the TLS set-up.
    api: std::sync::OnceLock<UpstoxApi>,
    state: StateStore,
    artifacts: ArtifactStore,
    metrics: Arc<Metrics>,
}

impl Relogin {
    pub fn new(config: Arc<Config>, metrics: Arc<Metrics>) -> Result<Self, ReloginError> {
        let sinks =
            config.sinks.iter().map(Sink::new).collect::<Result<Vec<_>, _>>().map_err(ReloginError::SinkSetup)?;
        let state = StateStore::new(&config.state_dir);
        let artifacts = ArtifactStore::new(config.state_dir.join("failures"), config.login.failure_artifacts_keep);
        Ok(Self { config, sinks, api: std::sync::OnceLock::new(), state, artifacts, metrics })
    }

    fn api(&self) -> Result<&UpstoxApi, ReloginError> {
        if let Some(api) = self.api.get() {
            return Ok(api);
        }
        let api = UpstoxApi::new(&self.config.upstox).map_err(ReloginError::Http)?;
        Ok(self.api.get_or_init(|| api))
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn sinks(&self) -> &[Sink] {
        &self.sinks
    }

    pub fn state(&self) -> &StateStore {
        &self.state
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// One run for `account`, bounded by `login.run_deadline_secs`, recorded in state and metrics.
    #[tracing::instrument(skip_all, fields(account = %account.name))]
    pub async fn run(&self, account: &Account, force: bool) -> Result<Outcome, ReloginError> {
        let Some(_lock) = self.state.try_lock(&account.name)? else {
            return Err(ReloginError::Busy(account.name.clone()));
        };
        let started = Instant::now();
        let deadline = self.config.login.run_deadline;
        let result = match tokio::time::timeout(deadline, self.run_locked(account, force)).await {
            Ok(r) => r,
            Err(_) => Err(ReloginError::Deadline(deadline)),
        };
        self.metrics.step_duration("total", started.elapsed().as_secs_f64());
        let (label, error) = match &result {
            Ok(Outcome::LoggedIn { .. }) => ("success", None),
            Ok(_) => ("skipped", None),
            Err(e) => ("failed", Some(error_chain(e))),
        };
        self.metrics.attempt(&account.name, label);
        let now = token::ist(Utc::now());
        let recorded = self.state.update(&account.name, |s| {
            s.last_attempt = Some(Attempt { at: now, result: label.into(), error });
            if label == "success" {
                s.last_success_at = Some(now);
            }
        });
        if let Err(e) = recorded {
            warn!(error = %error_chain(&e), "could not record the attempt");
        }
        result
    }

    async fn run_locked(&self, account: &Account, force: bool) -> Result<Outcome, ReloginError> {
        let held = self.read_sinks(&account.name).await;
        let best = held.iter().flatten().filter(|d| d.is_unexpired(Utc::now())).max_by_key(|d| d.generation).cloned();
        if let Some(doc) = best.filter(|_| !force) {
            match self.api()?.check_token(&crate::secret::AccessToken::new(doc.access_token.clone())).await {
                Ok(TokenCheck::Valid) => return self.keep(account, doc, &held).await,
                Ok(TokenCheck::Rejected(e)) => info!(reason = %e, "published token rejected by Upstox; logging in"),
                Err(e) => {
                    warn!(error = %error_chain(&e), "could not verify the published token; keeping it (it has not expired)");
                    return self.keep(account, doc, &held).await;
                }
            }
        }
        let max_seen = held.iter().flatten().map(|d| d.generation).max().unwrap_or(0);
        let (response, attempts, timings) = self.login_with_retries(account).await?;
        let publish_started = Instant::now();
        let issued = Utc::now();
        let state = self.state.update(&account.name, |s| s.generation = s.generation.max(max_seen) + 1)?;
        let doc = TokenDocument {
            account: account.name.clone(),
            access_token: response.access_token.expose().to_owned(),
            extended_token: response.extended_token.as_ref().map(|t| t.expose().to_owned()),
            token_type: "Bearer".into(),
            user_id: response.user_id,
            user_name: response.user_name,
            email: response.email,
            exchanges: response.exchanges,
            products: response.products,
            issued_at: token::ist(issued),
            expires_at: token::expiry_for(issued),
            generation: state.generation,
        };
        self.publish_everywhere(&doc, self.sinks.iter().collect()).await?;
        self.metrics.step_duration("publish", publish_started.elapsed().as_secs_f64());
        self.metrics.success(&account.name, issued.timestamp() as f64, doc.expires_at_unix() as f64);
        info!(generation = doc.generation, expires_at = %doc.expires_at, "token published");
        Ok(Outcome::LoggedIn {
            generation: doc.generation,
            expires_at: doc.expires_at.to_rfc3339(),
            attempts,
            timings,
            locations: self.sinks.iter().map(|s| s.location(&account.name)).collect(),
        })
    }

    /// The held token is valid: make sure every sink has it.
    async fn keep(
        &self,
        account: &Account,
        doc: TokenDocument,
        held: &[Option<TokenDocument>],
    ) -> Result<Outcome, ReloginError> {
        let missing: Vec<&Sink> =
            self.sinks.iter().zip(held).filter(|(_, h)| h.as_ref() != Some(&doc)).map(|(s, _)| s).collect();
        let generation = doc.generation;
        let expires_at = doc.expires_at.to_rfc3339();
        self.metrics.token_expiry(&account.name, doc.expires_at_unix() as f64);
        if missing.is_empty() {
            info!(generation, %expires_at, "published token is still valid; skipping");
            return Ok(Outcome::Skipped { generation, expires_at });
        }
        let labels: Vec<String> = missing.iter().map(|s| s.label()).collect();
        info!(generation, sinks = %labels.join(", "), "published token is still valid; copying it to sinks that lack it");
        self.publish_everywhere(&doc, missing).await?;
        Ok(Outcome::Republished { generation, expires_at, sinks: labels })
    }

    /// What each sink holds for `account` (`None` for nothing, unreadable or corrupt).
    pub async fn read_sinks(&self, account: &str) -> Vec<Option<TokenDocument>> {
        let reads = self.sinks.iter().map(|s| async move {
            match s.read(account).await {
                Ok(doc) => doc.filter(|d| d.account == account),
                Err(e) => {
                    warn!(sink = %s.label(), error = %error_chain(&e), "cannot read the published token");
                    None
                }
            }
        });
        join_all(reads).await
    }

    /// Publish to `sinks` concurrently, each retried with backoff; one failing sink never blocks the others.
    async fn publish_everywhere(&self, doc: &TokenDocument, sinks: Vec<&Sink>) -> Result<(), ReloginError> {
        let writes = sinks.into_iter().map(|sink| async move {
            let retries = backon::ExponentialBuilder::default()
                .with_min_delay(SINK_FIRST_BACKOFF)
                .with_max_times(SINK_RETRIES);
            let result = (|| sink.publish(doc))
                .retry(retries)
                .notify(|e, pause| {
                    self.metrics.sink_failure(&sink.label());
                    warn!(sink = %sink.label(), error = %error_chain(e), retry_in_ms = pause.as_millis() as u64, "sink write failed");
                })
                .await;
            result.map_err(|e| {
                self.metrics.sink_failure(&sink.label());
                (sink.label(), e)
            })
        });
        let failures: Vec<(String, SinkError)> = join_all(writes).await.into_iter().filter_map(Result::err).collect();
        if failures.is_empty() { Ok(()) } else { Err(ReloginError::Publish { generation: doc.generation, failures }) }
    }

    /// Whole browser logins with backoff until a token, a permanent error, the guard, or `max_attempts`.
    async fn login_with_retries(
        &self,
        account: &Account,
    ) -> Result<(crate::oauth::TokenResponse, u32, Vec<StepTiming>), ReloginError> {
        let policy = &self.config.login;
        let mut backoff = backon::ExponentialBuilder::default()
            .with_min_delay(policy.retry_min_backoff)
            .with_max_delay(policy.retry_max_backoff)
            .with_jitter()
            .without_max_times()
            .build();
        self.check_clock().await;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.login_once(account).await;
            match result {
                Ok((response, timings)) => return Ok((response, attempt, timings)),
                Err(e) if e.is_permanent() || attempt >= policy.max_attempts => return Err(e),
                Err(e) => {
                    let pause = backoff.next().unwrap_or(policy.retry_max_backoff);
                    warn!(attempt, error = %error_chain(&e), retry_in_secs = pause.as_secs_f64(), "login attempt failed; retrying with a new browser login");
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// One browser login and, if it yields a code, its one exchange.
    async fn login_once(
        &self,
        account: &Account,
    ) -> Result<(crate::oauth::TokenResponse, Vec<StepTiming>), ReloginError> {
        let day = token::ist_day(Utc::now());
        let cap = self.config.login.max_pin_submissions_per_day;
        let state = self.state.load(&account.name)?;
        self.guard(account, &state, &day, cap)?;
        let totp = TotpGenerator::new(&account.totp_secret)
            .map_err(|e| ReloginError::Guard(format!("`totp_secret` unusable: {e}")))?;
        let inputs = FlowInputs {
            account: &account.name,
            browser: &self.config.browser,
            authorize_url: &self.config.upstox.authorize_url,
            client_id: &account.client_id,
            redirect_uri: &account.redirect_uri,
            mobile: &account.mobile,
            pin: &account.pin,
            totp: &totp,
            totp_min_remaining: self.config.login.totp_min_remaining,
            last_totp_step: state.last_totp_step,
            artifacts: Some(&self.artifacts),
        };
        let store = &self.state;
        let name = account.name.clone();
        let mut observe = |event: FlowEvent| -> Result<(), String> {
            let persisted = match event {
                FlowEvent::TotpStepUsed(step) => store.update(&name, |s| s.last_totp_step = Some(step)),
                FlowEvent::PinSubmitting => {
                    let current = store.load(&name).map_err(|e| error_chain(&e))?;
                    if current.pin_submissions_on(&day) >= cap {
                        return Err(format!(
                            "{cap} PIN submissions today already (`login.max_pin_submissions_per_day`)"
                        ));
                    }
                    store.update(&name, |s| {
                        s.pin_submissions = s.pin_submissions_on(&day) + 1;
                        s.pin_day = Some(day.clone());
                    })
                }
            };
            persisted.map(|_| ()).map_err(|e| format!("cannot persist the lockout counter: {}", error_chain(&e)))
        };
        let flow = browser::login(&inputs, &mut observe).await;
        let outcome = match flow {
            Ok(outcome) => outcome,
            Err(failure) => {
                for t in &failure.timings {
                    self.metrics.step_duration(t.step, t.elapsed.as_secs_f64());
                }
                if let BrowserError::Rejected {
                    rejection: PageRejection::WrongPin(_) | PageRejection::AccountBlocked(_),
                    ..
                } = &failure.error
                {
                    self.state.update(&account.name, |s| s.pin_rejected_day = Some(day.clone()))?;
                }
                return Err(ReloginError::Browser { error: Box::new(failure.error) });
            }
        };
        // The PIN ended with a code: it no longer counts towards a lockout.
        self.state.update(&account.name, |s| s.pin_submissions = 0)?;
        for t in &outcome.timings {
            self.metrics.step_duration(t.step, t.elapsed.as_secs_f64());
        }
        let exchange_started = Instant::now();
        let response =
            self.api()?.exchange(account, outcome.code).await.map_err(|error| ReloginError::Exchange { error })?;
        let elapsed = exchange_started.elapsed();
        self.metrics.step_duration("exchange", elapsed.as_secs_f64());
        info!(step = "exchange", elapsed_ms = elapsed.as_millis() as u64, "step done");
        let mut timings = outcome.timings;
        timings.push(StepTiming { step: "exchange", elapsed });
        Ok((response, timings))
    }

    /// Compare the local clock with the `Date` of Upstox's API and warn when they differ by more than
    /// `MAX_CLOCK_SKEW`. Never fails a login: an unreachable API is the exchange's problem.
    async fn check_clock(&self) {
        let Ok(api) = self.api() else { return };
        match tokio::time::timeout(CLOCK_CHECK_TIMEOUT, api.clock_skew()).await {
            Ok(Ok(Some(skew))) => {
                let secs = skew.num_milliseconds() as f64 / 1000.0;
                if skew.abs() > chrono::Duration::from_std(MAX_CLOCK_SKEW).unwrap_or(chrono::Duration::MAX) {
                    warn!(
                        skew_secs = secs,
                        "the local clock is {secs:+.1}s off Upstox's (`Date` header): TOTP codes may be rejected; sync this machine's clock (NTP)"
                    );
                } else {
                    tracing::debug!(skew_secs = secs, "local clock agrees with Upstox's");
                }
            }
            Ok(Ok(None)) => tracing::debug!("Upstox's answer had no `Date` header; clock not checked"),
            Ok(Err(e)) => tracing::debug!(error = %error_chain(&e), "cannot check the clock against Upstox's"),
            Err(_) => tracing::debug!(timeout = ?CLOCK_CHECK_TIMEOUT, "clock check timed out"),
        }
    }

    fn guard(&self, account: &Account, state: &AccountState, day: &str, cap: u32) -> Result<(), ReloginError> {
        let refusal = if state.pin_rejected_day.as_deref() == Some(day) {
            Some(format!(
                "a PIN for account `{}` was rejected today ({day} IST); no further attempt today. Fix the PIN, then delete \
                 `pin_rejected_day` from `{}` or wait for tomorrow",
                account.name,
                self.state.path(&account.name).display()
            ))
        } else if state.pin_submissions_on(day) >= cap {
            Some(format!(
                "account `{}` has {} PIN submissions without a code today ({day} IST), the cap is {cap} \
                 (`login.max_pin_submissions_per_day`; Upstox blocks at 5)",
                account.name,
                state.pin_submissions_on(day)
            ))
        } else {
            None
        };
        match refusal {
            Some(message) => {
                self.metrics.guard_refusal(&account.name);
                Err(ReloginError::Guard(message))
            }
            None => Ok(()),
        }
    }
}
