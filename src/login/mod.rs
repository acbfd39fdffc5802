//! The ways to get a new token for one account, behind one closed enum, each yielding the same `IssuedToken`.
//!
//! Two methods: the browser login (`browser/`: drive Upstox's hosted dialog in Chromium, read the redirect's code,
//! exchange it once) and Upstox's v3 access-token request (`token_request/`: the account holder approves, Upstox
//! POSTs the token to our notifier webhook; no browser, PIN or TOTP). `guard` is the lockout guard: a pure function of the persisted
//! facts, the IST day and the cap. This module never publishes and never decides whether a login is needed: that is
//! `run`'s job. It reports what must be persisted (a PIN about to be submitted, a TOTP step about to be used) to an
//! observer *before* acting, so the caller's records survive a crash at the worst moment.

pub mod browser;
pub mod guard;
pub mod token_request;

use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::task::TaskTracker;

use crate::config::{Account, BrowserConfig, UpstoxConfig};
use crate::oauth::{AuthorizationRequest, ExchangeError, TokenResponse, UpstoxApi};
use crate::totp::{TotpError, TotpGenerator};
use browser::{ArtifactStore, BrowserError, FlowInputs, ProbeReport};
pub use token_request::{SendTime, TokenRequestError, TokenRequestLogin};

/// The timed parts of a run, as metrics labels (`login_duration_seconds{step}`) and in `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    /// Starting the WebDriver server (if ours) and the browser session.
    Browser,
    /// Opening the authorization dialog until the first input shows.
    Dialog,
    Mobile,
    Otp,
    /// The PIN, up to the redirect carrying the code.
    Pin,
    /// The one POST of the code.
    Exchange,
    /// A v3 access-token request, from sending it until its token was delivered and verified.
    Approval,
    /// Writing the document to every sink.
    Publish,
    /// A whole run.
    Total,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Browser => "browser",
            Step::Dialog => "dialog",
            Step::Mobile => "mobile",
            Step::Otp => "otp",
            Step::Pin => "pin",
            Step::Exchange => "exchange",
            Step::Approval => "approval",
            Step::Publish => "publish",
            Step::Total => "total",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How long one step took.
#[derive(Debug, Clone, Copy)]
pub struct StepTiming {
    pub step: Step,
    pub elapsed: Duration,
}

/// Log and keep the time a step took since `since`.
pub(crate) fn record(timings: &mut Vec<StepTiming>, account: &str, step: Step, since: Instant) {
    let elapsed = since.elapsed();
    tracing::info!(account, step = step.as_str(), elapsed_ms = elapsed.as_millis() as u64, "step done");
    timings.push(StepTiming { step, elapsed });
}

/// Facts a login method reports as they happen; the caller persists them before the method goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginEvent {
    /// About to type the code of this TOTP time step (30 s steps since the Unix epoch).
    TotpStepUsed(u64),
    /// About to click the PIN's submit button.
    PinSubmitting,
    /// The PIN ended with an authorization code (before the exchange): it no longer counts towards a lockout.
    CodeReceived,
    /// A v3 access-token request was sent; the method now waits for the account holder's approval until `until`.
    ApprovalRequested { until: chrono::DateTime<chrono::Utc> },
    /// An element of the page was found only by a fallback locator: the configured selector needs an update.
    LocatorFallback(FallbackUsed),
}

/// A page element found by a fallback locator instead of its configured selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallbackUsed {
    pub step: Step,
    /// `input` or `button`.
    pub element: &'static str,
    /// The configured selector that matched nothing visible.
    pub configured: String,
    /// What matched instead, e.g. `label "Enter 6-digit PIN"`.
    pub matched: String,
}

/// Why the observer stopped a login before it acted (the lockout guard said no, or its record could not be kept).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Veto(pub String);

/// The caller's side of `LoginEvent`: the login awaits the answer, and an `Err` stops it before the action. Async,
/// because the caller may keep its records in a shared store (the Redis coordinator).
pub type Observer<'a> = dyn FnMut(LoginEvent) -> BoxFuture<'a, Result<(), Veto>> + Send + 'a;

/// What every login method yields: the token endpoint's answer (or its equivalent from the profile), the time each
/// step took, and the issuer's own expiry when it stated one.
pub struct IssuedToken {
    pub response: TokenResponse,
    pub timings: Vec<StepTiming>,
    /// When the issuer says the token dies (the v3 notifier's `expires_at`); the document takes the earlier of this
    /// and the 03:30 IST rule. `None`: the rule alone.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A failed login, with the timings of the steps that completed.
#[derive(Debug)]
pub struct LoginFailure {
    pub error: LoginError,
    pub timings: Vec<StepTiming>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
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
    #[error("`totp_secret` unusable")]
    TotpSecret(#[source] TotpError),
    #[error("access-token request failed: {error}{}", advice(error.advice()))]
    TokenRequest {
        #[source]
        error: Box<TokenRequestError>,
    },
    #[error(
        "a browser login needs `mobile`, `pin` and `totp_secret` (fix: set them on the account, or `method = \"token-request\"`)"
    )]
    NoCredentials,
}

fn advice(a: Option<impl AsRef<str>>) -> String {
    a.map(|a| format!(" (fix: {})", a.as_ref())).unwrap_or_default()
}

fn exchange_advice(e: &ExchangeError) -> Option<&'static str> {
    match e {
        ExchangeError::Refused(u) => u.advice(),
        _ => None,
    }
}

impl LoginError {
    /// Another login in this run cannot help.
    pub fn is_permanent(&self) -> bool {
        match self {
            LoginError::Browser { error } => error.is_permanent(),
            LoginError::Exchange { error: ExchangeError::Refused(u) } => u.is_permanent(),
            LoginError::Exchange { .. } => false,
            LoginError::TotpSecret(_) | LoginError::NoCredentials => true,
            // A person is in the loop: never pester them with a second request within one run.
            LoginError::TokenRequest { .. } => true,
        }
    }

    /// The page, not the credentials, stopped the login (bot block, a page this program no longer understands, a
    /// login page that could not be loaded): another method may still work. See `BrowserError::is_page_reason`.
    pub fn is_page_reason(&self) -> bool {
        match self {
            LoginError::Browser { error } => error.is_page_reason(),
            LoginError::Exchange { .. }
            | LoginError::TotpSecret(_)
            | LoginError::NoCredentials
            | LoginError::TokenRequest { .. } => false,
        }
    }
}

/// What a login method needs from the run: the account's persisted facts, the Upstox API and, for a method that
/// drives a browser, the browser slot the run waited for.
pub struct LoginContext<'a> {
    pub account: &'a Account,
    pub upstox: &'a UpstoxConfig,
    pub api: &'a UpstoxApi,
    /// The last TOTP time step submitted for this account: never submitted again.
    pub last_totp_step: Option<u64>,
    /// Whose tokens this account's are (configured, or seen before); a delivered token must be this user's.
    pub expected_user_id: Option<String>,
    /// When a token request may be sent (the run's trigger decides).
    pub send_time: SendTime,
    /// One of `browser.max_sessions` permits (`run::pool::BrowserSlots`), held by the browser until its processes
    /// are gone; `None`: unbounded.
    pub browser_slot: Option<OwnedSemaphorePermit>,
}

/// The closed set of ways to get a token.
#[allow(clippy::large_enum_variant)] // one value of each per process: boxing would save nothing
pub enum LoginMethod {
    /// Upstox's hosted login dialog in a real browser, then one exchange of the redirect's code.
    Browser(BrowserLogin),
    /// Upstox's v3 access-token request, approved by the account holder, delivered to the notifier webhook.
    TokenRequest(TokenRequestLogin),
}

impl LoginMethod {
    /// One login, start to token. The observer hears of every PIN and TOTP before they are submitted, and of an
    /// awaited approval before the wait.
    pub async fn login(&self, ctx: LoginContext<'_>, observe: &mut Observer<'_>) -> Result<IssuedToken, LoginFailure> {
        match self {
            LoginMethod::Browser(method) => method.login(ctx, observe).await,
            LoginMethod::TokenRequest(method) => method.login(&ctx, observe).await,
        }
    }

    /// Whether a login by this method opens a browser (and so must wait for a browser slot first).
    pub fn uses_browser(&self) -> bool {
        match self {
            LoginMethod::Browser(_) => true,
            LoginMethod::TokenRequest(_) => false,
        }
    }

    /// Wait for the work a login left running after its token (a browser's teardown) to finish.
    pub async fn settle(&self) {
        match self {
            LoginMethod::Browser(method) => {
                method.teardowns.close();
                method.teardowns.wait().await;
                method.teardowns.reopen();
            }
            LoginMethod::TokenRequest(_) => {}
        }
    }

    /// Check, typing nothing, that the account's login page is ready for a login (see `browser::probe`), in a
    /// browser holding `slot` (see `uses_browser`). `Ok(None)`: this method has no login page to check (the token
    /// request).
    pub async fn probe(
        &self,
        upstox: &UpstoxConfig,
        account: &Account,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<Option<ProbeReport>, LoginError> {
        match self {
            LoginMethod::Browser(method) => {
                let request = AuthorizationRequest::new(&upstox.authorize_url, &account.app);
                browser::probe(method, slot, &request, &account.name, account.index)
                    .await
                    .map(Some)
                    .map_err(|e| LoginError::Browser { error: Box::new(e) })
            }
            LoginMethod::TokenRequest(_) => Ok(None),
        }
    }
}

/// The browser login method's settings, built once per process.
pub struct BrowserLogin {
    pub browser: BrowserConfig,
    /// Wait for the next TOTP window when fewer than this remain in the current one.
    pub totp_min_remaining: Duration,
    pub artifacts: ArtifactStore,
    /// Browser teardowns left running once a code was in hand (`LoginMethod::settle` waits for them).
    pub teardowns: TaskTracker,
}

impl BrowserLogin {
    async fn login(&self, ctx: LoginContext<'_>, observe: &mut Observer<'_>) -> Result<IssuedToken, LoginFailure> {
        let fail = |error, timings| LoginFailure { error, timings };
        let account = ctx.account;
        let credentials = account.credentials.as_ref().ok_or_else(|| fail(LoginError::NoCredentials, Vec::new()))?;
        let totp =
            TotpGenerator::new(&credentials.totp_secret).map_err(|e| fail(LoginError::TotpSecret(e), Vec::new()))?;
        let request = AuthorizationRequest::new(&ctx.upstox.authorize_url, &account.app);
        let inputs = FlowInputs {
            account: &account.name,
            account_index: account.index,
            request: &request,
            credentials,
            totp: &totp,
            last_totp_step: ctx.last_totp_step,
        };
        let outcome = browser::login(self, ctx.browser_slot, &inputs, observe)
            .await
            .map_err(|f| fail(LoginError::Browser { error: Box::new(f.error) }, f.timings))?;
        let mut timings = outcome.timings;
        let started = Instant::now();
        match ctx.api.exchange(&account.app, outcome.code).await {
            Ok(response) => {
                record(&mut timings, &account.name, Step::Exchange, started);
                Ok(IssuedToken { response, timings, expires_at: None })
            }
            Err(error) => Err(fail(LoginError::Exchange { error }, timings)),
        }
    }
}
