//! The login part of a run: the account's method, and for a browser account whole logins with backoff until a
//! token, a permanent error, the guard, or `login.max_attempts`; the lockout guard consulted before each, and every
//! PIN and TOTP recorded through the coordinator's permit before the browser acts. Also the clock-skew warning,
//! once per run, and the fallback to a token request (once per token slot, after a page reason only).

use std::time::Duration;

use std::convert::Infallible;

use backon::BackoffBuilder;
use chrono::{NaiveDate, Utc};
use futures_util::future::BoxFuture;
use tracing::{info, warn};

use super::pool::RunClock;
use super::{RunError, Runner};
use crate::config::Account;
use crate::config::{Fallback, Method};
use crate::coordinate::Permit;
use crate::error::error_chain;
use crate::login::browser::{BrowserError, RejectionKind};
use crate::login::guard::Refusal;
use crate::login::{IssuedToken, LoginContext, LoginError, LoginEvent, SendTime, Veto, guard, token_request};
use crate::notify::Event;
use crate::oauth::{ExchangeError, UpstoxError};
use crate::state::LocatorFallback;
use crate::token;

/// A clock further than this from Upstox's gets a warning: TOTP codes near a window's edge start failing.
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(2);
/// How long the clock check may hold up a login.
const CLOCK_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// A token and the number of whole logins it took.
pub(super) struct Attempts {
    pub issued: IssuedToken,
    pub count: u32,
}

impl Runner {
    /// A new token for `account` by its method; a browser account configured with `fallback = "token-request"`
    /// falls back once per token slot when the browser path failed for a page reason.
    pub(super) async fn obtain(
        &self,
        permit: &Permit<'_>,
        account: &Account,
        send_time: SendTime,
        clock: &RunClock,
    ) -> Result<Attempts, RunError> {
        if account.method == Method::TokenRequest {
            return self.request_token(permit, account, send_time).await.map_err(RunError::Login);
        }
        let browser = match self.login_with_retries(permit, account, clock).await {
            Err(RunError::Login(error))
                if account.fallback == Fallback::TokenRequest && token_request::is_page_reason(&error) =>
            {
                error
            }
            other => return other,
        };
        // The slot is the token's validity period: from one 03:30 IST to the next.
        let slot_end = token::expiry_for(Utc::now());
        if !permit.take_fallback(slot_end).await? {
            warn!(slot_end = %slot_end.to_rfc3339(), "browser path failed for a page reason; the access-token request fallback was already taken in this slot");
            return Err(RunError::Login(browser));
        }
        warn!(error = %error_chain(&browser), "browser path failed for a page reason; falling back to an access-token request (once in this slot)");
        self.request_token(permit, account, send_time).await.map_err(|request| RunError::Fallback { browser, request })
    }

    /// One v3 access-token request, start to verified token. Never retried within the run: a person approves it.
    async fn request_token(
        &self,
        permit: &Permit<'_>,
        account: &Account,
        send_time: SendTime,
    ) -> Result<Attempts, LoginError> {
        let api = self.api().await.map_err(|e| LoginError::TokenRequest {
            error: Box::new(token_request::TokenRequestError::Unavailable(error_chain(&e))),
        })?;
        let known = permit.known_user_id().await.unwrap_or_else(|e| {
            warn!(error = %error_chain(&e), "cannot read the account's known user id");
            None
        });
        let ctx = LoginContext {
            account,
            upstox: &self.config.upstox,
            api: &api,
            last_totp_step: None,
            expected_user_id: account.user_id.clone().or(known),
            send_time,
            browser_slot: None,
        };
        let mut observe = |event: LoginEvent| {
            if let LoginEvent::ApprovalRequested { until } = event {
                info!(
                    until = %token::ist(until).to_rfc3339(),
                    "approval awaited: approve the access-token request in the Upstox app, via the WhatsApp message or on the developer apps page"
                );
                self.notifier.notify(Event::approval_requested(&account.name, token::ist(until)));
            }
            answered(Ok(()))
        };
        let result = self.token_request.login(ctx, &mut observe).await;
        let timings = match &result {
            Ok(issued) => &issued.timings,
            Err(failure) => &failure.timings,
        };
        for t in timings {
            self.metrics.step_duration(t.step.as_str(), t.elapsed.as_secs_f64());
            // After a fallback these follow the browser's steps.
            self.step_log.push(&account.name, *t);
        }
        result.map(|issued| Attempts { issued, count: 1 }).map_err(|failure| failure.error)
    }

    /// Whole logins until a token or a permanent error; the clock check runs beside the first one (it only warns,
    /// and need not delay the browser).
    pub(super) async fn login_with_retries(
        &self,
        permit: &Permit<'_>,
        account: &Account,
        clock: &RunClock,
    ) -> Result<Attempts, RunError> {
        let (result, ()) = tokio::join!(self.attempts(permit, account, clock), self.check_clock());
        result
    }

    async fn attempts(&self, permit: &Permit<'_>, account: &Account, clock: &RunClock) -> Result<Attempts, RunError> {
        let policy = &self.config.login;
        let mut backoff = backon::ExponentialBuilder::default()
            .with_min_delay(policy.retry_min_backoff)
            .with_max_delay(policy.retry_max_backoff)
            .with_jitter()
            .without_max_times()
            .build();
        let mut attempt = 0;
        let mut previous_refusal = None;
        loop {
            attempt += 1;
            match self.login_once(permit, account, clock).await {
                Ok(issued) => return Ok(Attempts { issued, count: attempt }),
                Err(e) if e.is_permanent() || attempt >= policy.max_attempts => return Err(e),
                // The token endpoint answered exactly as last time (a firewall's page, the same UDAPI error): a
                // deterministic refusal that another code will meet too. Stop before spending a third.
                Err(e) if refusal(&e).is_some() && refusal(&e) == previous_refusal => {
                    return Err(RunError::Repeated(Box::new(e)));
                }
                Err(e) => {
                    previous_refusal = refusal(&e);
                    let pause = backoff.next().unwrap_or(policy.retry_max_backoff);
                    warn!(attempt, error = %error_chain(&e), retry_in_secs = pause.as_secs_f64(), "login attempt failed; retrying with a new browser login");
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// The guard, a browser slot (if the method needs one; the wait is off the clock), then one login by the
    /// account's method.
    async fn login_once(
        &self,
        permit: &Permit<'_>,
        account: &Account,
        clock: &RunClock,
    ) -> Result<IssuedToken, RunError> {
        let day = token::ist_day(self.clock.now());
        let cap = self.config.login.max_pin_submissions_per_day;
        let (facts, last_totp_step) = permit.guard_facts().await?;
        if let Err(refusal) = guard::check(&facts, day, cap) {
            self.metrics.guard_refusal(&account.name);
            return Err(RunError::Guard { account: account.name.clone(), refusal, location: permit.location() });
        }
        let api = self.api().await?;
        let browser_slot = if self.browser.uses_browser() { Some(self.slots.acquire(clock).await) } else { None };
        let ctx = LoginContext {
            account,
            upstox: &self.config.upstox,
            api: &api,
            last_totp_step,
            expected_user_id: None,
            send_time: SendTime::Now,
            browser_slot,
        };
        let mut observe = self.observer(permit, account, day, cap);
        let result = self.browser.login(ctx, &mut observe).await;
        let timings = match &result {
            Ok(issued) => &issued.timings,
            Err(failure) => &failure.timings,
        };
        for t in timings {
            self.metrics.step_duration(t.step.as_str(), t.elapsed.as_secs_f64());
        }
        self.step_log.login(&account.name, timings);
        let failure = match result {
            Ok(issued) => return Ok(issued),
            Err(failure) => failure,
        };
        if let LoginError::Browser { error } = &failure.error
            && let BrowserError::Rejected { rejection, .. } = error.as_ref()
            && matches!(rejection.kind, RejectionKind::WrongPin | RejectionKind::AccountLocked)
        {
            let Ok(_) = permit
                .update_guard(|g, _| {
                    g.pin_rejected_day = Some(day);
                    Ok::<(), Infallible>(())
                })
                .await?;
        }
        Err(RunError::Login(failure.error))
    }
}

/// An observer's answer that needed no waiting.
fn answered<'a>(answer: Result<(), Veto>) -> BoxFuture<'a, Result<(), Veto>> {
    Box::pin(std::future::ready(answer))
}

impl Runner {
    /// The observer that persists what a login reports, through the permit, before the login acts: the TOTP step
    /// about to be typed; for a PIN, the guard's rule checked against the current facts and the count raised in one
    /// atomic change (so replicas sharing the facts never pass the cap together); the reset once a code arrived; a
    /// fallback locator's use (recorded, counted, notified).
    fn observer<'p>(
        &'p self,
        permit: &'p Permit<'_>,
        account: &'p Account,
        day: NaiveDate,
        cap: u32,
    ) -> impl FnMut(LoginEvent) -> BoxFuture<'p, Result<(), Veto>> + Send + 'p {
        move |event| {
            Box::pin(async move {
                let persisted = match event {
                    LoginEvent::TotpStepUsed(step) => {
                        permit
                            .update_guard(|_, last| {
                                *last = Some(step);
                                Ok::<(), Refusal>(())
                            })
                            .await
                    }
                    LoginEvent::PinSubmitting => {
                        permit
                            .update_guard(|g, _| {
                                guard::check(g, day, cap)?;
                                guard::pin_submitted(g, day);
                                Ok(())
                            })
                            .await
                    }
                    LoginEvent::CodeReceived => {
                        permit
                            .update_guard(|g, _| {
                                guard::code_received(g);
                                Ok::<(), Refusal>(())
                            })
                            .await
                    }
                    LoginEvent::LocatorFallback(used) => {
                        self.metrics.locator_fallback(&account.name, used.step.as_str(), used.element);
                        // Rate-limited per account and kind: one message for the several elements of one login.
                        let message = format!(
                            "the {} of step `{}` was found only by {} (`{}` matched nothing); the login went on",
                            used.element,
                            used.step.as_str(),
                            used.matched,
                            used.configured
                        );
                        self.notifier.notify(Event::page_changed(&account.name, used.step.as_str(), message));
                        let record = LocatorFallback {
                            at: token::ist(self.clock.now()),
                            step: used.step.as_str().to_owned(),
                            element: used.element.to_owned(),
                            configured: used.configured,
                            matched: used.matched,
                        };
                        return permit.record_fallback(record).await.map_err(|e| Veto(error_chain(&e)));
                    }
                    LoginEvent::ApprovalRequested { .. } => return Ok(()),
                };
                match persisted {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(refusal)) => Err(Veto(refusal.to_string())),
                    Err(e) => Err(Veto(format!("cannot persist the lockout counter: {}", error_chain(&e)))),
                }
            })
        }
    }

    /// Compare the local clock with the `Date` of Upstox's API and warn when they differ by more than
    /// `MAX_CLOCK_SKEW`. Never fails a login: an unreachable API is the exchange's problem.
    async fn check_clock(&self) {
        let Ok(api) = self.api().await else { return };
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
}

/// The token endpoint's refusal in `error` when it is a client error (4xx), the kind that repeats identically for
/// every code; a 5xx is the server's trouble and may pass.
fn refusal(error: &RunError) -> Option<UpstoxError> {
    match error {
        RunError::Login(LoginError::Exchange { error: ExchangeError::Refused(refused) })
            if (400..500).contains(&refused.http_status) =>
        {
            Some(refused.clone())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16, body: &[u8]) -> RunError {
        let error = ExchangeError::Refused(crate::oauth::interpret_error(status, body));
        RunError::Login(LoginError::Exchange { error })
    }

    #[test]
    fn identical_client_refusals_compare_equal_and_server_errors_never_count() {
        let invalid = br#"{"status":"error","errors":[{"errorCode":"UDAPI100057","message":"Invalid Auth code"}]}"#;
        assert!(refusal(&refused(400, invalid)).is_some());
        assert_eq!(refusal(&refused(400, invalid)), refusal(&refused(400, invalid)));
        assert_ne!(refusal(&refused(400, invalid)), refusal(&refused(401, invalid)));
        assert_eq!(refusal(&refused(503, b"<html><title>down</title></html>")), None);
        assert_eq!(refusal(&RunError::Busy { account: "a".into(), holder: "`h/pid-1/x`".into() }), None);
    }
}
