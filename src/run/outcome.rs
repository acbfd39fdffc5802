//! How one account's run ends: `Outcome` on success (shown to people through `Display`), `RunError` otherwise,
//! and the two choices a caller makes (`WhenValid`, `Trigger`).

use std::time::Duration;

use chrono::{DateTime, FixedOffset};

use crate::coordinate::CoordinationError;
use crate::error::error_chain;
use crate::login::browser::{BrowserError, RejectionKind};
use crate::login::guard::Refusal;
use crate::login::{LoginError, SendTime, StepTiming, TokenRequestError};
use crate::oauth::ExchangeError;
use crate::sink::SinkError;
use crate::state::FailureClass;

/// What to do when the published token is still valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenValid {
    /// Keep it (copying it to any sink that lacks it): the scheduled and default behaviour.
    Skip,
    /// Log in anyway (`login --force`, `on_start = "always"`, `demo`).
    LogIn,
}

/// What started a pass over the accounts, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The daemon's start-up catch-up (`schedule.on_start`).
    Start,
    /// A tick of `schedule.cron`.
    Cron,
    /// The `login` command.
    Command,
    /// The daemon's periodic re-check of published tokens (`schedule.recheck_*`) found one invalid.
    Recheck,
}

impl Trigger {
    /// When a token request started by this trigger may be sent: scheduled runs wait for 03:30 IST, the others
    /// (the start-up catch-up, `login`, a re-check that found the token invalid) send at once.
    pub fn send_time(self) -> SendTime {
        match self {
            Trigger::Cron => SendTime::AfterCutoff,
            // A re-check found the token revoked: the account is without a token now, so no waiting.
            Trigger::Start | Trigger::Command | Trigger::Recheck => SendTime::Now,
        }
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Trigger::Start => "start",
            Trigger::Cron => "cron",
            Trigger::Command => "command",
            Trigger::Recheck => "recheck",
        })
    }
}

#[derive(Debug)]
pub enum Outcome {
    /// Every sink already holds a valid token.
    Skipped { generation: u64, expires_at: DateTime<FixedOffset> },
    /// A valid token was copied to sinks that lacked it; no login was needed.
    Republished { generation: u64, expires_at: DateTime<FixedOffset>, sinks: Vec<String> },
    /// Upstox gave no verdict on the unexpired published token (`reason`: a rate limit, an outage): it was kept
    /// (and copied to sinks that lacked it); it is checked again later.
    Unverified { generation: u64, expires_at: DateTime<FixedOffset>, reason: String },
    /// A new token was issued and published everywhere.
    LoggedIn {
        generation: u64,
        expires_at: DateTime<FixedOffset>,
        /// Whole logins this run made (1 unless a retryable failure came first).
        attempts: u32,
        timings: Vec<StepTiming>,
        /// Where the document went, one entry per sink.
        locations: Vec<String>,
    },
}

impl std::fmt::Display for Outcome {
    /// One line for a person.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Skipped { generation, expires_at } => {
                write!(f, "token still valid (generation {generation}, expires {}); skipped", expires_at.to_rfc3339())
            }
            Outcome::Unverified { generation, expires_at, reason } => write!(
                f,
                "token kept unverified (generation {generation}, expires {}): Upstox gave no verdict on it ({reason}); \
                 it has not expired, so it stays published and is checked again later",
                expires_at.to_rfc3339()
            ),
            Outcome::Republished { generation, expires_at, sinks } => write!(
                f,
                "token still valid (generation {generation}, expires {}); copied to {}",
                expires_at.to_rfc3339(),
                sinks.join(", ")
            ),
            Outcome::LoggedIn { generation, expires_at, attempts, timings, locations } => {
                let total: f64 = timings.iter().map(|t| t.elapsed.as_secs_f64()).sum();
                let steps: Vec<String> =
                    timings.iter().map(|t| format!("{} {:.2}s", t.step, t.elapsed.as_secs_f64())).collect();
                write!(
                    f,
                    "logged in (generation {generation}, expires {}, attempt {attempts}, {total:.2}s: {}); written to {}",
                    expires_at.to_rfc3339(),
                    steps.join(", "),
                    locations.join(", ")
                )
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Someone else holds the account: skipped for this run (not a failure of this replica's).
    #[error("account `{account}` is being logged in by {holder}; skipped")]
    Busy { account: String, holder: String },
    #[error("lockout guard: account `{account}`: {refusal}{}", guard_hint(refusal, account, location))]
    Guard { account: String, refusal: Refusal, location: String },
    #[error(transparent)]
    Login(#[from] LoginError),
    #[error("{browser}; fell back to an access-token request, which failed too: {request}")]
    Fallback { browser: LoginError, request: LoginError },
    #[error("the new token (generation {generation}) did not reach every sink: {}", .failures.iter().map(|(s, e)| format!("`{s}`: {}", error_chain(e))).collect::<Vec<_>>().join("; "))]
    Publish { generation: u64, failures: Vec<(String, SinkError)> },
    /// Every sink that refused the document holds a newer generation: a replica that took the lease after this
    /// run lost it has published. Its token stays; this one is dropped.
    #[error(
        "the new token (generation {generation}) was not published: {} already hold(s) generation {held} from a later lease (this run lost its lease); the newer token stays",
        .sinks.join(", ")
    )]
    Superseded { generation: u64, held: u64, sinks: Vec<String> },
    #[error("cannot set up a sink")]
    SinkSetup(#[source] SinkError),
    #[error("no login attempted (no browser started): {} not ready: {}", if .failures.len() == 1 { "the sink is" } else { "no sink is" }, .failures.iter().map(|(s, e)| format!("`{s}`: {}", error_chain(e))).collect::<Vec<_>>().join("; "))]
    Preflight { failures: Vec<(String, SinkError)> },
    #[error(
        "Upstox rejected the token it had just issued ({0}) when it was verified with GET /v2/user/profile: not published, the previous token stays"
    )]
    NewTokenRejected(crate::oauth::UpstoxError),
    #[error("{0} (the same refusal as the previous attempt: not retried)")]
    Repeated(Box<RunError>),
    #[error("run deadline of {0:?} passed (`login.run_deadline_secs`)")]
    Deadline(Duration),
    #[error(transparent)]
    Coordination(#[from] CoordinationError),
    #[error("cannot build the HTTP client")]
    Http(#[source] reqwest::Error),
}

fn guard_hint(refusal: &Refusal, account: &str, location: &str) -> String {
    match refusal {
        Refusal::InARow { .. } => format!(" (the count is kept in `{location}`)"),
        Refusal::PinRejectedToday { .. } => {
            format!(
                ". Fix the PIN in the config, then run `upstox-relogin reset-guard {account}` (it clears `pin_rejected_day` in `{location}`) or wait for tomorrow (IST)"
            )
        }
        Refusal::CapReached { .. } => String::new(),
    }
}

impl RunError {
    /// The class of this failure, for the status page, notifications and the attempt history.
    pub fn class(&self) -> FailureClass {
        match self {
            RunError::Busy { .. } => FailureClass::Busy,
            RunError::Superseded { .. } => FailureClass::Superseded,
            RunError::Coordination(_) => FailureClass::Coordination,
            RunError::Guard { .. } => FailureClass::Guard,
            RunError::Login(error) => login_class(error),
            // The run ended without a token because the request failed too; the browser's reason is in the message.
            RunError::Fallback { request, .. } => login_class(request),
            RunError::Publish { .. } => FailureClass::Publish,
            RunError::Deadline(_) => FailureClass::Deadline,
            RunError::SinkSetup(_) | RunError::Http(_) => FailureClass::Setup,
            RunError::Preflight { .. } => FailureClass::Publish,
            RunError::NewTokenRejected(_) => FailureClass::ExchangeRefused,
            RunError::Repeated(inner) => inner.class(),
        }
    }

    /// What a human should do about it, when we know.
    pub fn fix(&self) -> Option<String> {
        match self {
            RunError::Guard { refusal: Refusal::PinRejectedToday { .. }, account, .. } => Some(format!(
                "fix the account's `pin`, then run `upstox-relogin reset-guard {account}` (clears `pin_rejected_day`) or wait for tomorrow (IST)"
            )),
            RunError::Guard { refusal: Refusal::InARow { .. }, account, .. } => {
                Some(format!("check the PIN and the screenshots, then run `upstox-relogin reset-guard {account}`"))
            }
            RunError::Guard { refusal: Refusal::CapReached { .. }, .. } => {
                Some("wait for tomorrow (IST), after checking the PIN and TOTP secret".into())
            }
            RunError::Login(error) => login_fix(error),
            RunError::Fallback { request, .. } => login_fix(request),
            RunError::Publish { .. } => Some("check the sinks named above (disk, permissions, Redis)".into()),
            RunError::Deadline(_) => {
                Some("look at the step timings (`status`); raise `login.run_deadline_secs`".into())
            }
            RunError::Preflight { .. } => {
                Some("make the sinks named above writable or reachable; `check-config --online` checks them".into())
            }
            RunError::NewTokenRejected(_) => Some(
                "Upstox rejects the tokens it issues for this account: check the app and the account in Upstox's developer console; the previous token stays published".into(),
            ),
            RunError::Repeated(inner) => inner.fix(),
            RunError::Coordination(CoordinationError::Unavailable { .. }) => Some(
                "start the coordination store (Redis) or correct `coordination.url`; the next run tries again".into(),
            ),
            RunError::Busy { .. }
            | RunError::Superseded { .. }
            | RunError::SinkSetup(_)
            | RunError::Coordination(_)
            | RunError::Http(_) => None,
        }
    }

    /// Retrying within this run cannot help.
    pub fn is_permanent(&self) -> bool {
        match self {
            RunError::Login(error) => error.is_permanent(),
            RunError::Fallback { .. } => true,
            RunError::Guard { .. }
            | RunError::Busy { .. }
            | RunError::Superseded { .. }
            | RunError::Coordination(_)
            | RunError::Http(_)
            | RunError::SinkSetup(_)
            | RunError::Preflight { .. }
            | RunError::NewTokenRejected(_)
            | RunError::Repeated(_) => true,
            RunError::Publish { .. } | RunError::Deadline(_) => false,
        }
    }
}

/// The class of a failed login, by either method.
fn login_class(error: &LoginError) -> FailureClass {
    match error {
        LoginError::Browser { error } => match error.as_ref() {
            BrowserError::Rejected { rejection, .. } => match rejection.kind {
                RejectionKind::WrongPin => FailureClass::WrongPin,
                RejectionKind::TotpRejected => FailureClass::TotpRejected,
                RejectionKind::WrongMobile => FailureClass::WrongMobile,
                RejectionKind::AccountLocked => FailureClass::AccountBlocked,
                RejectionKind::OtpBlocked => FailureClass::OtpBlocked,
                RejectionKind::StartAgain | RejectionKind::SomethingWentWrong | RejectionKind::Unrecognised => {
                    FailureClass::PageRejected
                }
            },
            BrowserError::BotBlocked { .. } => FailureClass::BotBlocked,
            BrowserError::ElementTimeout { .. } | BrowserError::PageChanged { .. } => FailureClass::PageChanged,
            BrowserError::RedirectTimeout { .. } | BrowserError::PinOutcomeUnknown { .. } => {
                FailureClass::OutcomeUnknown
            }
            BrowserError::DialogRefused { .. } => FailureClass::DialogRefused,
            BrowserError::Redirect(_) => FailureClass::Redirect,
            BrowserError::Vetoed { .. } => FailureClass::Guard,
            _ => FailureClass::Browser,
        },
        LoginError::Exchange { error } => match error {
            ExchangeError::Refused(u) if u.is_permanent() => FailureClass::ExchangeRefused,
            _ => FailureClass::Exchange,
        },
        LoginError::TotpSecret(_) | LoginError::NoCredentials => FailureClass::Setup,
        LoginError::TokenRequest { error } => match error.as_ref() {
            TokenRequestError::Expired { .. } | TokenRequestError::TimedOut { .. } => FailureClass::ApprovalMissing,
            _ => FailureClass::TokenRequest,
        },
    }
}

/// What a human should do about a failed login, when we know.
fn login_fix(error: &LoginError) -> Option<String> {
    match error {
        LoginError::Browser { error } => match error.as_ref() {
            BrowserError::ElementTimeout { step, .. } => Some(format!(
                "look at the newest failure screenshot; if the page changed, update `browser.selectors.{step}_*`"
            )),
            BrowserError::Vetoed { .. } => Some("see the lockout guard's reason above".into()),
            other => other.advice(),
        },
        LoginError::Exchange { error: ExchangeError::Refused(u) } => u.advice().map(str::to_owned),
        LoginError::Exchange { .. } => None,
        LoginError::TotpSecret(_) => Some("check `totp_secret` (the base32 key shown when enabling TOTP)".into()),
        LoginError::NoCredentials => {
            Some("set the account's `mobile`, `pin` and `totp_secret`, or `method = \"token-request\"`".into())
        }
        LoginError::TokenRequest { error } => error.advice().map(str::to_owned),
    }
}
