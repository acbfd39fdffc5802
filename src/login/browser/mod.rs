//! The browser half of a login: drive Upstox's hosted dialog in a real Chromium through WebDriver and come back
//! with the authorization code.
//!
//! `process` owns the processes (guarded group, allow-listed environment, the start-up sweep), `webdriver` the
//! session and its teardown; `flow` owns the steps (as data) and their interpreter; `artifacts`
//! saves what a failed step looked like. This module never talks to the token endpoint and never publishes; the
//! OAuth `state` and the dialog URL come from its caller (`login`).

mod artifacts;
mod flow;
mod process;
mod webdriver;

pub use artifacts::{ArtifactStore, Scrub, newest_screenshot, parse_artifact_name};
pub use flow::{FlowFailure, FlowInputs, LoginOutcome, login};
pub use process::{Swept, profile_prefix, sweep_stale_profiles};
pub use webdriver::{Browser, capabilities};

use std::path::PathBuf;
use std::time::Duration;

use super::Step;
use crate::oauth::RedirectError;

/// What the page said when it refused an input, classified by its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageRejection {
    WrongMobile(String),
    TotpRejected(String),
    WrongPin(String),
    AccountBlocked(String),
    Other(String),
}

impl PageRejection {
    pub fn classify(text: &str) -> Self {
        let t = text.to_lowercase();
        let text = text.trim().to_owned();
        if t.contains("blocked") || t.contains("locked") {
            PageRejection::AccountBlocked(text)
        } else if t.contains("pin") {
            PageRejection::WrongPin(text)
        } else if t.contains("otp") || t.contains("totp") {
            PageRejection::TotpRejected(text)
        } else if t.contains("mobile") || t.contains("registered") {
            PageRejection::WrongMobile(text)
        } else {
            PageRejection::Other(text)
        }
    }

    pub fn text(&self) -> &str {
        match self {
            PageRejection::WrongMobile(t)
            | PageRejection::TotpRejected(t)
            | PageRejection::WrongPin(t)
            | PageRejection::AccountBlocked(t)
            | PageRejection::Other(t) => t,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    #[error("cannot start `{}` (install it: apt-get install chromium chromium-driver, or set `browser.chromedriver`)", binary.display())]
    DriverSpawn {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}` exited at start ({status}){}", binary.display(), log_suffix(log_tail))]
    DriverExited { binary: PathBuf, status: String, log_tail: String },
    #[error("chromedriver at `{url}` was not ready within {waited:?}{}", log_suffix(log_tail))]
    DriverNotReady { url: String, waited: Duration, log_tail: String },
    #[error("cannot reach the WebDriver server at `{webdriver}`{hint}")]
    DriverUnreachable {
        webdriver: String,
        /// Where the URL came from, for the human: the config key, or nothing when we spawned chromedriver.
        hint: &'static str,
        #[source]
        source: Box<fantoccini::error::NewSessionError>,
    },
    #[error(
        "cannot create a browser session at WebDriver `{webdriver}` (as root Chromium needs --no-sandbox; headed mode needs an X server){}",
        log_suffix(log_tail)
    )]
    Session {
        webdriver: String,
        #[source]
        source: Box<fantoccini::error::NewSessionError>,
        log_tail: String,
    },
    #[error("cannot create the browser profile dir")]
    Profile {
        #[source]
        source: std::io::Error,
    },
    #[error("step `{step}`: WebDriver command `{action}` failed")]
    WebDriver {
        step: Step,
        action: &'static str,
        #[source]
        source: Box<fantoccini::error::CmdError>,
    },
    #[error("step `{step}`: the browser session was lost (chromedriver or Chromium died) during `{action}`")]
    SessionLost {
        step: Step,
        action: &'static str,
        #[source]
        source: Box<fantoccini::error::CmdError>,
    },
    #[error("step `{step}`: not submitted: {reason}")]
    Vetoed { step: Step, reason: String },
    #[error(
        "step `{step}`: element `{selector}` did not appear within {timeout:?} (is `browser.selectors.{step}_*` still right?)"
    )]
    ElementTimeout { step: Step, selector: String, timeout: Duration },
    #[error("step `{step}`: the page refused the input: \"{}\"", rejection.text())]
    Rejected { step: Step, rejection: PageRejection },
    #[error(
        "the login page is a bot-block page (\"{title}\") instead of the login form: try `browser.headless = false` under xvfb-run or a realistic `browser.user_agent`"
    )]
    BotBlocked { title: String },
    #[error(
        "no redirect to `{redirect_uri}` within {timeout:?} after the PIN; the outcome is unknown (last page: {last_url})"
    )]
    RedirectTimeout { redirect_uri: String, timeout: Duration, last_url: String },
    #[error(transparent)]
    Redirect(#[from] RedirectError),
}

fn log_suffix(log: &str) -> String {
    if log.is_empty() { String::new() } else { format!("; chromedriver said: {log}") }
}

impl BrowserError {
    /// Failures that a new attempt cannot fix and that need a human.
    pub fn is_permanent(&self) -> bool {
        match self {
            BrowserError::Rejected { rejection, .. } => !matches!(rejection, PageRejection::Other(_)),
            // The lockout guard (or its storage) said no: another attempt would be refused the same way.
            BrowserError::BotBlocked { .. } | BrowserError::DriverSpawn { .. } | BrowserError::Vetoed { .. } => true,
            // A forged or broken redirect needs a human look, not another PIN submission.
            BrowserError::Redirect(_) => true,
            _ => false,
        }
    }

    /// What a human should do, for permanent errors.
    pub fn advice(&self) -> Option<&'static str> {
        match self {
            BrowserError::Rejected { rejection, .. } => match rejection {
                PageRejection::WrongPin(_) => {
                    Some("check the account's `pin`; no further PIN is tried today (Upstox blocks after 5 failures)")
                }
                PageRejection::TotpRejected(_) => {
                    Some("check `totp_secret` (the base32 key shown when enabling TOTP) and this machine's clock")
                }
                PageRejection::AccountBlocked(_) => {
                    Some("the Upstox account is blocked: unblock it on upstox.com (PAN + OTP), then run `login` again")
                }
                PageRejection::WrongMobile(_) => Some("check the account's `mobile`"),
                PageRejection::Other(_) => None,
            },
            BrowserError::BotBlocked { .. } => Some("Upstox's bot protection blocked the browser"),
            BrowserError::Redirect(_) => Some(
                "the redirect after the PIN did not carry our `state`: check that nothing rewrites redirects (proxy, extension) and that `redirect_uri` is the app's own",
            ),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_messages_are_classified() {
        use PageRejection::*;
        assert!(matches!(PageRejection::classify("You have entered an incorrect PIN"), WrongPin(_)));
        assert!(matches!(PageRejection::classify("Invalid OTP"), TotpRejected(_)));
        assert!(matches!(
            PageRejection::classify(
                "Your account has been blocked due to multiple incorrect attempts. Please reset your PIN to unblock."
            ),
            AccountBlocked(_)
        ));
        assert!(matches!(PageRejection::classify("Mobile number is not registered with Upstox"), WrongMobile(_)));
        assert!(matches!(PageRejection::classify("Something went wrong"), Other(_)));
    }

    #[test]
    fn permanent_errors_are_the_ones_a_human_must_fix() {
        let lost = || Box::new(fantoccini::error::CmdError::NotJson("gone".into()));
        let rejected = |r: PageRejection| BrowserError::Rejected { step: Step::Pin, rejection: r };
        let permanent = [
            rejected(PageRejection::WrongPin("incorrect PIN".into())),
            rejected(PageRejection::TotpRejected("Invalid OTP".into())),
            rejected(PageRejection::AccountBlocked("blocked".into())),
            rejected(PageRejection::WrongMobile("not registered".into())),
            BrowserError::BotBlocked { title: "Access denied".into() },
            BrowserError::Vetoed { step: Step::Pin, reason: "cap reached".into() },
            BrowserError::Redirect(crate::oauth::RedirectError::StateMismatch),
        ];
        for e in &permanent {
            assert!(e.is_permanent(), "{e}");
            assert!(e.advice().is_some() || matches!(e, BrowserError::Vetoed { .. }), "{e} says what to fix");
        }
        let retryable = [
            rejected(PageRejection::Other("Something went wrong".into())),
            BrowserError::SessionLost { step: Step::Otp, action: "find", source: lost() },
            BrowserError::WebDriver { step: Step::Otp, action: "click", source: lost() },
            BrowserError::ElementTimeout {
                step: Step::Otp,
                selector: "#otpNum".into(),
                timeout: Duration::from_secs(1),
            },
            BrowserError::RedirectTimeout {
                redirect_uri: "http://127.0.0.1:9/cb".into(),
                timeout: Duration::from_secs(1),
                last_url: "x".into(),
            },
            BrowserError::DriverNotReady {
                url: "http://127.0.0.1:1/".into(),
                waited: Duration::ZERO,
                log_tail: "".into(),
            },
        ];
        for e in &retryable {
            assert!(!e.is_permanent(), "{e}");
        }
    }
}
