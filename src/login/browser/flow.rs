//! The login steps as data, and the one interpreter that walks them.
//!
//! A step is "wait for this input (or the page's error text), type this value, wait for that button to be enabled,
//! click it". After the last step the interpreter polls the browser's URL until it reaches `redirect_uri` with a
//! `code` (the target is usually unreachable; only the URL matters). Every wait polls a condition with a deadline;
//! none sleeps for a fixed time, except the deliberate wait for a fresh TOTP window. The interpreter reports a PIN
//! submission *before* clicking, so the lockout count survives a crash at the worst moment.

use std::time::{Duration, Instant};

use fantoccini::error::CmdError;
use fantoccini::{Client, Locator};
use tokio::sync::OwnedSemaphorePermit;

use super::artifacts::Scrub;
use super::webdriver::Browser;
use super::{BrowserError, PageRejection};
use crate::config::{Credentials, Selectors, StepSelectors};
use crate::login::{BrowserLogin, LoginEvent, Observer, Step, StepTiming, record};
use crate::oauth::AuthorizationRequest;
use crate::secret::AuthCode;
use crate::totp::{self, TotpGenerator, TotpPlan};

/// One page of the hosted login: the step, and where its input and button are.
#[derive(Debug, Clone)]
struct PageStep {
    step: Step,
    input: String,
    submit: String,
}

fn page_steps(s: &Selectors) -> [PageStep; 3] {
    let page = |step, sel: &StepSelectors| PageStep { step, input: sel.input.clone(), submit: sel.submit.clone() };
    [page(Step::Mobile, &s.mobile), page(Step::Otp, &s.otp), page(Step::Pin, &s.pin)]
}

/// What one browser login types and where it goes.
pub struct FlowInputs<'a> {
    pub account: &'a str,
    /// The dialog URL with its `state`, and the redirect URI the code comes back to.
    pub request: &'a AuthorizationRequest,
    pub credentials: &'a Credentials,
    pub totp: &'a TotpGenerator,
    /// The last TOTP time step submitted for this account: never submitted again.
    pub last_totp_step: Option<u64>,
}

pub struct LoginOutcome {
    pub code: AuthCode,
    pub timings: Vec<StepTiming>,
}

/// The failure of a browser login with the timings of the steps that completed.
pub struct FlowFailure {
    pub error: BrowserError,
    pub timings: Vec<StepTiming>,
}

/// Start a browser (holding `slot`, one of `browser.max_sessions`, until it is gone), walk the steps, return the
/// code. Once the code is in hand the browser is killed at once and reaped in the background (tracked by
/// `settings.teardowns`), so the exchange and the publication do not wait for it; on a failure it is closed after
/// the artifacts are saved. If this future is dropped, `Browser`'s `Drop` kills what is left.
pub async fn login(
    settings: &BrowserLogin,
    slot: Option<OwnedSemaphorePermit>,
    inputs: &FlowInputs<'_>,
    observe: &mut Observer<'_>,
) -> Result<LoginOutcome, FlowFailure> {
    let mut timings = Vec::new();
    let started = Instant::now();
    let browser = match Browser::start(&settings.browser, slot).await {
        Ok(b) => b,
        Err(error) => return Err(FlowFailure { error, timings }),
    };
    record(&mut timings, inputs.account, Step::Browser, started);
    let mut run = Run { settings, inputs, client: browser.client(), timings, current: Step::Dialog };
    let result = run.walk(observe).await;
    let timings = std::mem::take(&mut run.timings);
    match result {
        Ok(code) => {
            browser.kill();
            settings.teardowns.spawn(browser.close());
            Ok(LoginOutcome { code, timings })
        }
        Err(error) => {
            let credentials = inputs.credentials;
            let scrub = Scrub::new(vec![credentials.pin.expose().to_owned(), credentials.mobile.clone()]);
            settings.artifacts.capture(browser.client(), inputs.account, run.current.as_str(), &scrub).await;
            browser.close().await;
            Err(FlowFailure { error, timings })
        }
    }
}

struct Run<'a> {
    settings: &'a BrowserLogin,
    inputs: &'a FlowInputs<'a>,
    client: &'a Client,
    timings: Vec<StepTiming>,
    /// The step in progress, for artifacts and messages.
    current: Step,
}

/// The result of one poll of the page.
enum Seen<T> {
    Ready(T),
    Rejected(PageRejection),
    Waiting,
}

impl Run<'_> {
    async fn walk(&mut self, observe: &mut Observer<'_>) -> Result<AuthCode, BrowserError> {
        let started = Instant::now();
        self.client.goto(self.inputs.request.url.as_str()).await.map_err(failed(Step::Dialog, "goto"))?;
        let steps = page_steps(&self.settings.browser.selectors);
        let mut last_totp = self.inputs.last_totp_step;
        let mut step_started = started;
        // The input that signalled the previous step's success, reused rather than looked up again.
        let mut found = None;
        for (i, step) in steps.iter().enumerate() {
            self.current = step.step;
            let input = match found.take() {
                Some(input) => input,
                None => self.wait_for_input(step, i == 0).await?,
            };
            if i == 0 {
                record(&mut self.timings, self.inputs.account, Step::Dialog, started);
                step_started = Instant::now();
            }
            let next = steps.get(i + 1);
            match step.step {
                Step::Mobile => self.type_and_submit(&input, step, &self.inputs.credentials.mobile).await?,
                Step::Otp => {
                    // invariant: `steps` puts the PIN step after the TOTP step
                    let next = next.expect("a step follows the TOTP step");
                    found = Some(self.submit_totp(&input, step, next, &mut last_totp, observe).await?);
                }
                // The PIN (`page_steps` yields mobile, otp and pin only).
                _ => {
                    type_fresh(&input, step.step, self.inputs.credentials.pin.expose()).await?;
                    let button = self.wait_for_enabled(step).await?;
                    observe(LoginEvent::PinSubmitting)
                        .await
                        .map_err(|veto| BrowserError::Vetoed { step: Step::Pin, reason: veto.0 })?;
                    button.click().await.map_err(failed(step.step, "click"))?;
                }
            }
            if let Some(next) = next {
                if found.is_none() {
                    self.current = next.step;
                    found = Some(self.wait_for_next(step, next).await?);
                    self.current = step.step;
                }
                record(&mut self.timings, self.inputs.account, step.step, step_started);
                step_started = Instant::now();
            }
        }
        let code = self.wait_for_redirect().await?;
        // Before anything else can fail: the PIN ended with a code, so it no longer counts towards a lockout.
        if let Err(veto) = observe(LoginEvent::CodeReceived).await {
            tracing::warn!(account = self.inputs.account, reason = %veto, "could not record that the PIN ended with a code");
        }
        record(&mut self.timings, self.inputs.account, Step::Pin, step_started);
        Ok(code)
    }

    /// Type the TOTP of a fresh window; on the first "Invalid OTP", once more in the next window. Returns the
    /// next step's input, whose appearance is the success signal.
    async fn submit_totp(
        &mut self,
        input: &fantoccini::elements::Element,
        step: &PageStep,
        next: &PageStep,
        last_used: &mut Option<u64>,
        observe: &mut Observer<'_>,
    ) -> Result<fantoccini::elements::Element, BrowserError> {
        for attempt in 0..2 {
            let code = self.fresh_totp(last_used, observe).await?;
            if attempt == 0 {
                type_fresh(input, step.step, code.code.expose()).await?;
            } else {
                retype(input, step.step, code.code.expose()).await?;
                clear_error_text(self.client, &self.settings.browser.selectors.error).await;
            }
            let button = self.wait_for_enabled(step).await?;
            button.click().await.map_err(failed(step.step, "click"))?;
            match self.wait_for_next(step, next).await {
                Err(BrowserError::Rejected { rejection: PageRejection::TotpRejected(text), .. }) if attempt == 0 => {
                    tracing::warn!(account = self.inputs.account, message = %text, "TOTP rejected; retrying once in the next window");
                }
                other => return other,
            }
        }
        unreachable!("the loop returns on the second attempt")
    }

    /// Wait for `next`'s input after submitting `step`: its appearance is the success signal of `step` (the URL is
    /// no signal: the app pushStates it before the backend has answered); a page error ends the wait.
    async fn wait_for_next(
        &self,
        step: &PageStep,
        next: &PageStep,
    ) -> Result<fantoccini::elements::Element, BrowserError> {
        let (name, next_input) = (step.step, next.input.as_str());
        self.poll(
            step.step,
            next_input,
            |c| async move { tolerate(name, "find", c.find(Locator::Css(next_input)).await) },
        )
        .await
    }

    async fn fresh_totp(
        &self,
        last_used: &mut Option<u64>,
        observe: &mut Observer<'_>,
    ) -> Result<totp::TotpCode, BrowserError> {
        loop {
            let now = unix_now();
            match totp::plan(now, self.settings.totp_min_remaining.as_secs(), *last_used) {
                TotpPlan::UseNow { step } => {
                    observe(LoginEvent::TotpStepUsed(step))
                        .await
                        .map_err(|veto| BrowserError::Vetoed { step: Step::Otp, reason: veto.0 })?;
                    *last_used = Some(step);
                    return Ok(self.inputs.totp.code_at(step * totp::STEP_SECS));
                }
                TotpPlan::WaitFor { secs, step } => {
                    tracing::info!(account = self.inputs.account, wait_secs = secs, "waiting for a fresh TOTP window");
                    // A clock wait, not a page wait: the code for `step` does not exist before its window starts.
                    let until = std::time::UNIX_EPOCH + Duration::from_secs(step * totp::STEP_SECS);
                    let left = until.duration_since(std::time::SystemTime::now()).unwrap_or_default();
                    tokio::time::sleep(left + Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn type_and_submit(
        &self,
        input: &fantoccini::elements::Element,
        step: &PageStep,
        value: &str,
    ) -> Result<(), BrowserError> {
        type_fresh(input, step.step, value).await?;
        let button = self.wait_for_enabled(step).await?;
        button.click().await.map_err(failed(step.step, "click"))
    }

    async fn wait_for_input(
        &self,
        step: &PageStep,
        first: bool,
    ) -> Result<fantoccini::elements::Element, BrowserError> {
        let (name, selector) = (step.step, step.input.as_str());
        self.poll(step.step, &step.input, |c| async move {
            if let Some(el) = tolerate(name, "find", c.find(Locator::Css(selector)).await)? {
                return Ok(Some(el));
            }
            if first {
                bot_block_check(&c, name).await?;
            }
            Ok(None)
        })
        .await
    }

    /// The submit button once it is enabled, in one `find` per poll: `:disabled` is what WebDriver's "is element
    /// enabled" checks for form controls (fieldset inheritance included); other elements are enabled either way.
    async fn wait_for_enabled(&self, step: &PageStep) -> Result<fantoccini::elements::Element, BrowserError> {
        let enabled = format!(":is({}):not(:disabled)", step.submit);
        let (name, selector) = (step.step, enabled.as_str());
        self.poll(
            step.step,
            &step.submit,
            |c| async move { tolerate(name, "find", c.find(Locator::Css(selector)).await) },
        )
        .await
    }

    /// Poll `check` until it yields, the page shows an error, or the step timeout passes.
    async fn poll<T, F, Fut>(&self, step: Step, selector: &str, mut check: F) -> Result<T, BrowserError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<Option<T>, BrowserError>>,
    {
        let cfg = &self.settings.browser;
        let deadline = Instant::now() + cfg.step_timeout;
        let mut interval = tokio::time::interval(cfg.poll_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            match self.look(step, &mut check).await? {
                Seen::Ready(v) => return Ok(v),
                Seen::Rejected(rejection) => return Err(BrowserError::Rejected { step, rejection }),
                Seen::Waiting => {}
            }
            if Instant::now() >= deadline {
                return Err(BrowserError::ElementTimeout {
                    step,
                    selector: selector.to_owned(),
                    timeout: cfg.step_timeout,
                });
            }
        }
    }

    async fn look<T, F, Fut>(&self, step: Step, check: &mut F) -> Result<Seen<T>, BrowserError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<Option<T>, BrowserError>>,
    {
        if let Some(v) = check(self.client.clone()).await? {
            return Ok(Seen::Ready(v));
        }
        match error_text(self.client, step, &self.settings.browser.selectors.error).await? {
            Some(text) => Ok(Seen::Rejected(PageRejection::classify(&text))),
            None => Ok(Seen::Waiting),
        }
    }

    /// Poll the browser's URL until it is `redirect_uri` with a code (or the page shows an error).
    async fn wait_for_redirect(&self) -> Result<AuthCode, BrowserError> {
        let request = self.inputs.request;
        let result = self
            .poll(Step::Pin, "(redirect)", |c| async move {
                let Some(current) = tolerate(Step::Pin, "current_url", c.current_url().await)? else {
                    return Ok(None);
                };
                let code = request.read_redirect(current.as_str())?;
                if code.is_none() {
                    // Blocks have been reported right after PIN + OTP too, not only on the first page.
                    bot_block_check(&c, Step::Pin).await?;
                }
                Ok(code)
            })
            .await;
        match result {
            Err(BrowserError::ElementTimeout { timeout, .. }) => {
                let last = self.client.current_url().await.map(|mut u| {
                    u.set_query(None);
                    u.to_string()
                });
                Err(BrowserError::RedirectTimeout {
                    redirect_uri: request.redirect_uri.to_string(),
                    timeout,
                    last_url: last.unwrap_or_else(|_| "unknown".into()),
                })
            }
            other => other,
        }
    }
}

/// Fail with `BotBlocked` when the page is a bot-management block ("Access denied", a challenge) instead of the app.
async fn bot_block_check(client: &Client, step: Step) -> Result<(), BrowserError> {
    let title = tolerate(step, "title", client.title().await)?.unwrap_or_default();
    let lower = title.to_lowercase();
    if ["access denied", "attention required", "just a moment"].iter().any(|m| lower.contains(m)) {
        return Err(BrowserError::BotBlocked { title });
    }
    Ok(())
}

/// Type `value` (never logged) into an input the page has just rendered, hence empty: no `clear` round trip.
async fn type_fresh(input: &fantoccini::elements::Element, step: Step, value: &str) -> Result<(), BrowserError> {
    input.send_keys(value).await.map_err(failed(step, "send_keys"))
}

/// Clear an input that already holds a value (a rejected TOTP), then type `value` (never logged).
async fn retype(input: &fantoccini::elements::Element, step: Step, value: &str) -> Result<(), BrowserError> {
    input.clear().await.map_err(failed(step, "clear"))?;
    type_fresh(input, step, value).await
}

/// Map a failed WebDriver command: a lost session is told apart from a command the page refused.
fn failed(step: Step, action: &'static str) -> impl FnOnce(CmdError) -> BrowserError {
    move |source| {
        if session_gone(&source) {
            BrowserError::SessionLost { step, action, source: Box::new(source) }
        } else {
            BrowserError::WebDriver { step, action, source: Box::new(source) }
        }
    }
}

/// The first non-empty visible text among the elements matching the error selector.
async fn error_text(client: &Client, step: Step, selector: &str) -> Result<Option<String>, BrowserError> {
    let Some(elements) = tolerate(step, "find_all", client.find_all(Locator::Css(selector)).await)? else {
        return Ok(None);
    };
    for el in elements {
        if let Some(text) = tolerate(step, "text", el.text().await)? {
            let text = text.trim();
            if !text.is_empty() {
                return Ok(Some(text.to_owned()));
            }
        }
    }
    Ok(None)
}

/// A polled command's result: a failure means "not yet" (`Ok(None)`: no such element, a stale element, a page
/// mid-navigation), except when the session itself is gone, which no amount of waiting fixes.
fn tolerate<T>(step: Step, action: &'static str, result: Result<T, CmdError>) -> Result<Option<T>, BrowserError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(source) if session_gone(&source) => {
            Err(BrowserError::SessionLost { step, action, source: Box::new(source) })
        }
        Err(_) => Ok(None),
    }
}

/// chromedriver is unreachable, or it reports that Chromium or the window is gone.
fn session_gone(e: &CmdError) -> bool {
    if e.is_invalid_session_id() || e.is_no_such_window() {
        return true;
    }
    match e {
        CmdError::Failed(_) | CmdError::FailedC(_) | CmdError::Lost(_) => true,
        CmdError::Standard(w) => {
            let message = w.message.to_lowercase();
            ["not reachable", "disconnected", "session deleted", "tab crashed"].iter().any(|m| message.contains(m))
        }
        _ => false,
    }
}

/// Blank a previous error message before a deliberate retry, so the old text is not read as the new answer.
async fn clear_error_text(client: &Client, selector: &str) {
    let script = "document.querySelectorAll(arguments[0]).forEach(function (e) { e.textContent = ''; });";
    if let Err(e) = client.execute(script, vec![serde_json::json!(selector)]).await {
        tracing::debug!(error = %e, "could not clear the error text");
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use fantoccini::error::{ErrorStatus, WebDriver};

    use super::*;

    fn standard(status: ErrorStatus, message: &'static str) -> CmdError {
        CmdError::Standard(WebDriver::new(status, message))
    }

    #[test]
    fn a_dead_driver_or_browser_ends_the_wait_and_a_missing_element_does_not() {
        let lost = [
            CmdError::Lost(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
            standard(ErrorStatus::InvalidSessionId, "invalid session id"),
            standard(ErrorStatus::NoSuchWindow, "no such window: target window already closed"),
            standard(ErrorStatus::UnknownError, "unknown error: chrome not reachable"),
            standard(ErrorStatus::UnknownError, "disconnected: not connected to DevTools"),
            standard(ErrorStatus::UnknownError, "session deleted because of page crash"),
        ];
        for e in lost {
            assert!(session_gone(&e), "{e}");
            assert!(matches!(
                tolerate::<()>(Step::Pin, "find", Err(e)),
                Err(BrowserError::SessionLost { step: Step::Pin, .. })
            ));
        }
        let transient = [
            standard(ErrorStatus::NoSuchElement, "no such element"),
            standard(ErrorStatus::StaleElementReference, "stale element reference"),
            standard(ErrorStatus::UnknownError, "unknown error: cannot determine loading status"),
            CmdError::NotJson("<html>".into()),
        ];
        for e in transient {
            assert!(!session_gone(&e), "{e}");
            assert!(matches!(tolerate::<()>(Step::Pin, "find", Err(e)), Ok(None)));
        }
        assert!(matches!(
            failed(Step::Otp, "click")(standard(ErrorStatus::ElementNotInteractable, "x")),
            BrowserError::WebDriver { step: Step::Otp, action: "click", .. }
        ));
    }
}
