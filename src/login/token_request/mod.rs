//! The browser-free login method: Upstox's v3 access-token request [doc]. We POST a request for the account's app;
//! the account holder approves it (in the Upstox app, via the WhatsApp message's link, or on the developer apps
//! page); Upstox POSTs the token to the app's notifier webhook, which `outstanding` verifies and hands to the run
//! that is waiting here.
//!
//! The request's life is a chain of typed states, each consumed by the step that leaves it (in the spirit of
//! oauth2-rs's device flow): `TokenRequest` (entered in the table, not sent) → `send` → `AwaitingApproval` → `wait`
//! → `Approval::Delivered` | `Approval::Expired` | `Approval::TimedOut`. A `TokenRequest` is POSTed at most once;
//! a delivery is taken out of the table at most once. Pending requests die at 03:30 IST, and so does any token
//! issued before then: `send_plan` says when a request may go. This module never publishes and never decides
//! whether a login is needed; it reports the approval it awaits to the run's observer before it waits.

mod outstanding;

pub use outstanding::{Accepted, Delivered, Outstanding, Refusal};

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveTime, Utc};
use tracing::{info, warn};

use super::{IssuedToken, LoginContext, LoginError, LoginEvent, LoginFailure, Observer, Step, record};
use crate::access_request::RequestError;
use crate::config::Account;
use crate::oauth::UpstoxApi;
use crate::token;

/// How long after 03:30 IST a deferred (scheduled) request is sent, so that it is surely in the new slot for
/// Upstox's clock too.
const AFTER_CUTOFF_MARGIN: chrono::Duration = chrono::Duration::minutes(1);

/// When the run that sends a request was started, which decides what happens before 03:30 IST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendTime {
    /// A scheduled run: before 03:30 IST the request (and any token it brings) would die at 03:30, so it waits.
    AfterCutoff,
    /// A person asked (`login`), or the daemon catches up at start: send at once, with a warning before 03:30.
    Now,
}

/// What `send_plan` decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendPlan {
    Now,
    /// Send now, although the request and its token die at `dies_at` (03:30 IST today): warn.
    NowDyingAt {
        dies_at: DateTime<Utc>,
    },
    /// Wait until `at` (just after 03:30 IST), then send.
    Wait {
        at: DateTime<Utc>,
    },
}

/// When a request made at `now` may go. Before 03:30 IST (between midnight and the cutoff) a request dies within
/// hours and its token at the same 03:30 [doc]: scheduled runs wait for the cutoff, others send and warn.
pub fn send_plan(now: DateTime<Utc>, when: SendTime) -> SendPlan {
    let local = now.with_timezone(&chrono_tz::Asia::Kolkata);
    // invariant: 03:30:00 is a valid time of day
    let cutoff = NaiveTime::from_hms_opt(3, 30, 0).expect("03:30 is a valid time");
    if local.time() >= cutoff {
        return SendPlan::Now;
    }
    let dies_at = token::expiry_for(now).with_timezone(&Utc);
    match when {
        SendTime::Now => SendPlan::NowDyingAt { dies_at },
        SendTime::AfterCutoff => SendPlan::Wait { at: dies_at + AFTER_CUTOFF_MARGIN },
    }
}

/// How long a run that may send a request can take beyond its browser part: the wait for 03:30 (scheduled runs
/// before the cutoff) and the wait for approval.
pub fn longest_wait(now: DateTime<Utc>, when: SendTime, approval_timeout: Duration) -> Duration {
    let deferral = match send_plan(now, when) {
        SendPlan::Wait { at } => (at - now).to_std().unwrap_or_default(),
        SendPlan::Now | SendPlan::NowDyingAt { .. } => Duration::ZERO,
    };
    deferral + approval_timeout
}

#[derive(Debug, thiserror::Error)]
pub enum TokenRequestError {
    #[error(
        "this process does not serve the notifier webhook (`server.listen` could not be bound, or nothing serves it), so an approval could not reach it; no request was sent"
    )]
    NotReceiving,
    #[error(transparent)]
    Request(RequestError),
    #[error("the access-token request was not approved before Upstox let it expire at {}", token::ist(*.at).to_rfc3339())]
    Expired { at: DateTime<Utc> },
    #[error("the access-token request was not approved within {}s (`login.approval_timeout_secs`)", .waited.as_secs())]
    TimedOut { waited: Duration },
    #[error("the access-token request was superseded by a newer one for the same client")]
    Superseded,
    #[error("cannot send the access-token request: {0}")]
    Unavailable(String),
}

impl TokenRequestError {
    /// What a human should do about it.
    pub fn advice(&self) -> Option<&'static str> {
        match self {
            TokenRequestError::NotReceiving => Some(
                "run the daemon, or stop it before `login` (they share `server.listen`); the webhook must be served where Upstox POSTs it",
            ),
            TokenRequestError::Request(RequestError::Refused(e)) => e.advice(),
            TokenRequestError::Expired { .. } | TokenRequestError::TimedOut { .. } => Some(
                "approve the request in the Upstox app, via the WhatsApp message or on the developer apps page, and check that the app's notifier webhook URL reaches `server.notifier_path`",
            ),
            _ => None,
        }
    }
}

/// The token-request method's settings, built once per process.
pub struct TokenRequestLogin {
    /// Shared with the notifier webhook.
    pub outstanding: Arc<Outstanding>,
    /// `login.approval_timeout_secs`.
    pub approval_timeout: Duration,
    /// `server.notifier_path`, to warn when Upstox has another webhook registered.
    pub notifier_path: String,
}

impl TokenRequestLogin {
    /// One request, start to verified token: wait for the cutoff if the plan says so, send, report the approval
    /// awaited to `observe`, wait for the delivery or the end.
    pub(super) async fn login(
        &self,
        ctx: &LoginContext<'_>,
        observe: &mut Observer<'_>,
    ) -> Result<IssuedToken, LoginFailure> {
        let fail = |error: TokenRequestError, timings| LoginFailure {
            error: LoginError::TokenRequest { error: Box::new(error) },
            timings,
        };
        let account = ctx.account;
        match send_plan(Utc::now(), ctx.send_time) {
            SendPlan::Now => {}
            SendPlan::NowDyingAt { dies_at } => warn!(
                account = %account.name,
                dies_at = %token::ist(dies_at).to_rfc3339(),
                "sending the access-token request before 03:30 IST: it, and any token it brings, die at 03:30"
            ),
            SendPlan::Wait { at } => {
                info!(account = %account.name, send_at = %token::ist(at).to_rfc3339(), "scheduled access-token request waits for 03:30 IST (sent earlier, it would die then)");
                tokio::time::sleep((at - Utc::now()).to_std().unwrap_or_default()).await;
            }
        }
        if !self.outstanding.is_receiving() {
            return Err(fail(TokenRequestError::NotReceiving, Vec::new()));
        }
        let started = Instant::now();
        let request = TokenRequest::new(&self.outstanding, account, ctx.expected_user_id.clone());
        let awaiting = request.send(ctx.api).await.map_err(|e| fail(e, Vec::new()))?;
        if let Some(url) = &awaiting.notifier_url
            && !url_has_path(url, &self.notifier_path)
        {
            warn!(account = %account.name, notifier_url = %url, notifier_path = %self.notifier_path, "Upstox will POST the token to a URL whose path is not `server.notifier_path`: check the app's notifier webhook setting and your reverse proxy");
        }
        let until = awaiting.until;
        let give_up =
            until.min(Utc::now() + chrono::Duration::from_std(self.approval_timeout).unwrap_or(chrono::Duration::MAX));
        // The observer hears of it before we wait: the run logs (and may notify) what to approve and until when.
        if let Err(veto) = observe(LoginEvent::ApprovalRequested { until: give_up }).await {
            warn!(account = %account.name, reason = %veto, "could not report the approval awaited; waiting anyway");
        }
        let mut timings = Vec::new();
        match awaiting.wait(self.approval_timeout).await {
            Approval::Delivered(delivered) => {
                record(&mut timings, &account.name, Step::Approval, started);
                Ok(IssuedToken { response: delivered.token, timings, expires_at: delivered.expires_at })
            }
            Approval::Expired { at } => Err(fail(TokenRequestError::Expired { at }, timings)),
            Approval::TimedOut { waited } => Err(fail(TokenRequestError::TimedOut { waited }, timings)),
            Approval::Superseded => Err(fail(TokenRequestError::Superseded, timings)),
        }
    }
}

/// Whether `url`'s path is `path` (ignoring a trailing slash).
fn url_has_path(url: &str, path: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| u.path().trim_end_matches('/') == path.trim_end_matches('/'))
}

/// A request for one account, entered in the table but not sent. `send` consumes it: one value, one POST.
pub struct TokenRequest<'a> {
    account: &'a Account,
    registration: outstanding::Registration<'a>,
    receiver: tokio::sync::oneshot::Receiver<Delivered>,
}

impl<'a> TokenRequest<'a> {
    /// Enter a request for `account` in `table`, expecting tokens of `expected_user_id` when known. Provisionally it
    /// expires at the next 03:30 IST (Upstox's rule) until Upstox's answer says.
    pub fn new(table: &'a Outstanding, account: &'a Account, expected_user_id: Option<String>) -> Self {
        let now = Utc::now();
        let provisional = token::expiry_for(now).with_timezone(&Utc);
        let (registration, receiver) =
            table.register(&account.app.client_id, &account.name, now, provisional, expected_user_id);
        Self { account, registration, receiver }
    }

    /// POST the request. On success the account holder can approve it until `AwaitingApproval::until`.
    pub async fn send(self, api: &UpstoxApi) -> Result<AwaitingApproval<'a>, TokenRequestError> {
        let accepted = api.request_access_token(&self.account.app).await.map_err(TokenRequestError::Request)?;
        self.registration.set_expiry(accepted.authorization_expiry);
        info!(
            account = %self.account.name,
            until = %token::ist(accepted.authorization_expiry).to_rfc3339(),
            "access-token request sent"
        );
        Ok(AwaitingApproval {
            until: accepted.authorization_expiry,
            notifier_url: accepted.notifier_url,
            receiver: self.receiver,
            _registration: self.registration,
        })
    }
}

/// A sent request: the account holder may approve it until `until`.
pub struct AwaitingApproval<'a> {
    /// Upstox's `authorization_expiry`.
    pub until: DateTime<Utc>,
    /// Where Upstox says it will POST the token, if it said.
    pub notifier_url: Option<String>,
    receiver: tokio::sync::oneshot::Receiver<Delivered>,
    _registration: outstanding::Registration<'a>,
}

/// How waiting for approval ended.
pub enum Approval {
    /// The webhook received and verified the token.
    Delivered(Delivered),
    /// Upstox's `authorization_expiry` passed.
    Expired { at: DateTime<Utc> },
    /// Our own bound (`login.approval_timeout_secs`) passed first.
    TimedOut { waited: Duration },
    /// A newer request for the same client took this one's place.
    Superseded,
}

impl AwaitingApproval<'_> {
    /// Wait for the delivery, at most `timeout` and never past `until`. Consumes the request: whatever happens, it
    /// leaves the table.
    pub async fn wait(self, timeout: Duration) -> Approval {
        let to_expiry = (self.until - Utc::now()).to_std().unwrap_or_default();
        let (bound, expires_first) = if to_expiry <= timeout { (to_expiry, true) } else { (timeout, false) };
        match tokio::time::timeout(bound, self.receiver).await {
            Ok(Ok(delivered)) => Approval::Delivered(delivered),
            Ok(Err(_closed)) => Approval::Superseded,
            Err(_) if expires_first => Approval::Expired { at: self.until },
            Err(_) => Approval::TimedOut { waited: timeout },
        }
    }
}

/// Whether a failed browser login may fall back to a token request: only when the browser path failed for a page
/// reason (`LoginError::is_page_reason`: a bot-block page, "the login page changed", a login page that could not be
/// loaded). Never after a rejected PIN or TOTP, a blocked account or a lockout-guard veto: whether approval works on
/// such an account is unknown, and a human must look.
pub fn is_page_reason(error: &LoginError) -> bool {
    error.is_page_reason()
}

#[cfg(test)]
mod tests;
