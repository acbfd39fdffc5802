//! The browser half of a login: drive Upstox's hosted dialog in a real Chromium through WebDriver and come back
//! with the authorization code.
//!
//! `process` owns the processes (guarded group, allow-listed environment, the start-up sweep), `webdriver` the
//! session and its teardown; `flow` owns the steps (as data) and their interpreter; `artifacts`
//! saves what a failed step looked like. This module never talks to the token endpoint and never publishes; the
//! OAuth `state` and the dialog URL come from its caller (`login`).

mod artifacts;
mod commands;
mod flow;
mod page;
mod probe;
mod process;
mod rejection;
mod verdict;
mod webdriver;

pub use artifacts::{ArtifactStore, Scrub, newest_screenshot, parse_artifact_name};
pub use flow::{FlowFailure, FlowInputs, LoginOutcome, login};
pub use page::LocatedBy;
pub use probe::{ProbeReport, probe};
pub use process::{Swept, profile_prefix, sweep_stale_profiles};
pub use rejection::{PageRejection, RejectionKind, bracketed_code};
pub use webdriver::{Browser, capabilities};

use std::path::PathBuf;
use std::time::Duration;

use super::Step;
use crate::oauth::RedirectError;

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
    #[error("step `{step}`: {}{}", rejection_text(rejection), screenshot_suffix(screenshot))]
    Rejected { step: Step, rejection: PageRejection, screenshot: Option<PathBuf> },
    #[error(
        "the login page is a bot-block page (\"{title}\") instead of the login form: try `browser.headless = false` under xvfb-run or a realistic `browser.user_agent`"
    )]
    BotBlocked { title: String },
    /// The dialog answered Upstox's JSON error (`UDAPI100068`: a wrong client_id or redirect_uri [doc]) instead
    /// of sending the browser to the login app.
    #[error("the authorization dialog refused the app: {code}: \"{message}\"")]
    DialogRefused {
        code: String,
        message: String,
        /// The config keys to check, e.g. `accounts[0].client_id`.
        client_id_key: String,
        redirect_uri_key: String,
    },
    /// The dialog or the login app could not be loaded (a browser error page, or a page that stayed blank).
    #[error("the login page could not be loaded ({detail})")]
    DialogUnreachable { detail: String },
    /// The page loaded but neither the configured selector nor any fallback finds what a step needs.
    #[error(
        "the login page changed: step `{step}`: no {element} matches `browser.selectors.{step}_{}` (`{configured}`) nor any fallback (label text, input attributes, button text); the page shows: \"{page}\"{}",
        if *element == "button" { "submit" } else { "input" },
        screenshot_suffix(screenshot)
    )]
    PageChanged {
        step: Step,
        /// `input` or `button`.
        element: &'static str,
        configured: String,
        /// An excerpt of the page's visible text (secrets removed).
        page: String,
        screenshot: Option<PathBuf>,
    },
    /// A step was submitted and the page neither advanced nor said why (before the PIN only).
    #[error("step `{step}`: the page neither advanced nor said why within {timeout:?}; it shows: \"{page}\"")]
    NoAnswer { step: Step, timeout: Duration, page: String },
    /// The PIN was submitted and no code came back, for a reason not known to be safe to retry.
    #[error(
        "step `pin`: the PIN was submitted but no code came back ({cause}); the page shows: \"{page}\"{}; no further attempt in this run (a PIN is never resubmitted into an unknown outcome)",
        screenshot_suffix(screenshot)
    )]
    PinOutcomeUnknown {
        cause: Box<BrowserError>,
        /// An excerpt of the page's visible text (secrets removed).
        page: String,
        screenshot: Option<PathBuf>,
    },
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

fn screenshot_suffix(path: &Option<PathBuf>) -> String {
    path.as_ref().map(|p| format!(" (screenshot: {})", p.display())).unwrap_or_default()
}

fn rejection_text(r: &PageRejection) -> String {
    match r.kind {
        RejectionKind::Unrecognised => {
            format!("page said: \"{}\" (a message this program does not know; no further attempt in this run)", r.text)
        }
        _ => format!("the page refused the input: \"{}\"", r.text),
    }
}

impl BrowserError {
    /// Failures that a new attempt in this run cannot fix, or that must not be retried (a PIN whose outcome is not
    /// a code).
    pub fn is_permanent(&self) -> bool {
        match self {
            BrowserError::Rejected { step, rejection, .. } => match rejection.kind {
                // The page sent the login back to the start: a new login may pass, unless the PIN was already in.
                RejectionKind::StartAgain | RejectionKind::SomethingWentWrong => *step == Step::Pin,
                _ => true,
            },
            // The lockout guard (or its storage) said no: another attempt would be refused the same way.
            BrowserError::BotBlocked { .. }
            | BrowserError::DriverSpawn { .. }
            | BrowserError::Vetoed { .. }
            | BrowserError::DialogRefused { .. }
            | BrowserError::PageChanged { .. }
            | BrowserError::PinOutcomeUnknown { .. } => true,
            // A forged or broken redirect needs a human look, not another PIN submission.
            BrowserError::Redirect(_) => true,
            _ => false,
        }
    }

    /// The page, not the account's credentials, stopped the login: a bot-block page, a page this program no longer
    /// understands, or a login page that could not be loaded. Another login method (Upstox's v3 token request) may
    /// still work; a rejected PIN, TOTP or mobile number is never a page reason.
    pub fn is_page_reason(&self) -> bool {
        match self {
            BrowserError::BotBlocked { .. }
            | BrowserError::PageChanged { .. }
            | BrowserError::DialogUnreachable { .. } => true,
            BrowserError::ElementTimeout { step, .. } | BrowserError::NoAnswer { step, .. } => {
                matches!(step, Step::Dialog | Step::Mobile)
            }
            BrowserError::WebDriver { step: Step::Dialog, .. } => true,
            BrowserError::PinOutcomeUnknown { cause, .. } => cause.is_page_reason(),
            _ => false,
        }
    }

    /// What a human should do, for permanent errors; matched to the step the page refused.
    pub fn advice(&self) -> Option<String> {
        match self {
            BrowserError::Rejected { step, rejection, .. } => rejection_advice(*step, rejection),
            BrowserError::BotBlocked { .. } => Some("Upstox's bot protection blocked the browser".into()),
            BrowserError::Redirect(_) => Some(
                "the redirect after the PIN did not carry our `state`: check that nothing rewrites redirects (proxy, extension) and that `redirect_uri` is the app's own".into(),
            ),
            BrowserError::DialogRefused { client_id_key, redirect_uri_key, .. } => Some(format!(
                "check `{client_id_key}` (the app's API key) and `{redirect_uri_key}` (the redirect URL registered for the app, byte for byte) in Upstox's developer console"
            )),
            BrowserError::PageChanged { step, element, .. } => Some(format!(
                "Upstox's login page no longer looks as expected: open the screenshot, then set `browser.selectors.{step}_{}` to a selector for the {element}",
                if *element == "button" { "submit" } else { "input" }
            )),
            BrowserError::PinOutcomeUnknown { .. } => Some(
                "look at the screenshot and Upstox's app: if the PIN was refused, fix `pin`; after 4 PINs without a code in a row run `upstox-relogin reset-guard ACCOUNT` once the cause is fixed".into(),
            ),
            _ => None,
        }
    }

    /// Name the failure screenshot in the messages that point a human at it.
    pub fn attach_screenshot(&mut self, path: PathBuf) {
        match self {
            BrowserError::PageChanged { screenshot, .. }
            | BrowserError::PinOutcomeUnknown { screenshot, .. }
            | BrowserError::Rejected { screenshot, .. } => {
                *screenshot = Some(path);
            }
            _ => {}
        }
    }
}

fn rejection_advice(step: Step, r: &PageRejection) -> Option<String> {
    let code = r.code.map(|c| format!(" (Upstox code {c})")).unwrap_or_default();
    let advice = match (r.kind, step) {
        (RejectionKind::WrongPin, Step::Pin) => format!(
            "check the account's `pin`{code}; no further PIN is tried today, and none after 4 in a row without a code until `upstox-relogin reset-guard ACCOUNT` (Upstox blocks after 5)"
        ),
        (RejectionKind::TotpRejected, Step::Otp) => {
            "check `totp_secret` (the base32 key shown when enabling TOTP) and this machine's clock".into()
        }
        (RejectionKind::AccountLocked, _) => format!(
            "Upstox locked the account{code}: unlock it on upstox.com (\"Unlock account\": PAN + OTP), then run `upstox-relogin reset-guard ACCOUNT` and `login`"
        ),
        (RejectionKind::OtpBlocked, _) => format!(
            "Upstox blocked OTP for this account{code} for about 10 minutes: retry after {}",
            r.retry_at().map(|t| t.format("%H:%M IST (%Y-%m-%d)").to_string()).unwrap_or_default()
        ),
        (RejectionKind::WrongMobile, Step::Mobile) => "check the account's `mobile`".into(),
        (RejectionKind::StartAgain | RejectionKind::SomethingWentWrong, Step::Pin) => format!(
            "Upstox's app failed after the PIN{code}; check Upstox's status and the app on the developer console, then run `login` again"
        ),
        (RejectionKind::StartAgain | RejectionKind::SomethingWentWrong, _) => return None,
        (RejectionKind::Unrecognised, _) => format!(
            "read the message and the screenshot under `state_dir/failures/`; fix what it asks at step `{step}`, then run `login` again"
        ),
        // A refusal that does not belong to this step: say which step refused, never advice for another step.
        (_, step) => {
            format!("the page refused step `{step}`; read the message and the screenshot under `state_dir/failures/`")
        }
    };
    Some(advice)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rejected(step: Step, text: &str) -> BrowserError {
        BrowserError::Rejected {
            step,
            rejection: PageRejection::read(text, chrono::Utc::now()).unwrap(),
            screenshot: None,
        }
    }

    #[test]
    fn permanent_errors_are_the_ones_a_human_must_fix() {
        let lost = || Box::new(fantoccini::error::CmdError::NotJson("gone".into()));
        let page_changed = BrowserError::PageChanged {
            step: Step::Mobile,
            element: "input",
            configured: "#mobileNum".into(),
            page: "Welcome".into(),
            screenshot: None,
        };
        let permanent = [
            rejected(Step::Pin, "You have entered an incorrect PIN"),
            rejected(Step::Otp, "Invalid OTP"),
            rejected(Step::Pin, "Due to too many incorrect PIN attempts, your account has been locked. [1017090]"),
            rejected(Step::Mobile, "Mobile number is not registered with Upstox"),
            rejected(Step::Otp, "OTP is blocked [1017078]"),
            rejected(Step::Pin, "Confirm your device"),
            rejected(Step::Pin, "Something went wrong"),
            rejected(Step::Pin, "Session expired [1017007]"),
            BrowserError::BotBlocked { title: "Access denied".into() },
            BrowserError::Redirect(crate::oauth::RedirectError::StateMismatch),
            BrowserError::DialogRefused {
                code: "UDAPI100068".into(),
                message: "Check your 'client_id' and 'redirect_uri'".into(),
                client_id_key: "accounts[0].client_id".into(),
                redirect_uri_key: "accounts[0].redirect_uri".into(),
            },
            page_changed,
            BrowserError::PinOutcomeUnknown {
                cause: Box::new(BrowserError::SessionLost { step: Step::Pin, action: "click", source: lost() }),
                page: "".into(),
                screenshot: None,
            },
        ];
        for e in &permanent {
            assert!(e.is_permanent(), "{e}");
            assert!(e.advice().is_some(), "{e} says what to fix");
        }
        assert!(BrowserError::Vetoed { step: Step::Pin, reason: "cap reached".into() }.is_permanent());
        let retryable = [
            rejected(Step::Mobile, "Something went wrong"),
            rejected(Step::Otp, "Your login session has expired. Please log in again."),
            BrowserError::SessionLost { step: Step::Otp, action: "find", source: lost() },
            BrowserError::WebDriver { step: Step::Otp, action: "click", source: lost() },
            BrowserError::ElementTimeout {
                step: Step::Otp,
                selector: "#otpNum".into(),
                timeout: Duration::from_secs(1),
            },
            BrowserError::NoAnswer { step: Step::Otp, timeout: Duration::from_secs(1), page: "".into() },
            BrowserError::DialogUnreachable { detail: "ERR_CONNECTION_REFUSED".into() },
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

    #[test]
    fn page_reasons_are_the_page_never_the_credentials() {
        assert!(BrowserError::BotBlocked { title: "Access denied".into() }.is_page_reason());
        assert!(BrowserError::DialogUnreachable { detail: "blank".into() }.is_page_reason());
        let changed = BrowserError::PageChanged {
            step: Step::Pin,
            element: "button",
            configured: "#pinContinueBtn".into(),
            page: "".into(),
            screenshot: None,
        };
        assert!(changed.is_page_reason());
        for e in [
            rejected(Step::Pin, "You have entered an incorrect PIN"),
            rejected(Step::Otp, "Invalid OTP"),
            rejected(Step::Otp, "OTP is blocked [1017078]"),
            BrowserError::Vetoed { step: Step::Pin, reason: "cap".into() },
        ] {
            assert!(!e.is_page_reason(), "{e}");
        }
    }

    #[test]
    fn advice_matches_the_step_and_unknown_messages_are_shown_verbatim() {
        let e = rejected(Step::Mobile, "Invalid OTP");
        let advice = e.advice().unwrap();
        assert!(!advice.contains("totp_secret"), "no TOTP advice at the mobile step: {advice}");
        let e = rejected(Step::Otp, "Invalid OTP");
        assert!(e.advice().unwrap().contains("totp_secret"));
        let e = rejected(Step::Pin, "Please confirm this device [1019999]");
        assert!(e.to_string().contains("page said: \"Please confirm this device [1019999]\""), "{e}");
        let e = rejected(Step::Otp, "OTP is blocked due to multiple attempts [1017078]");
        assert!(e.advice().unwrap().contains("retry after"), "{:?}", e.advice());
    }
}
