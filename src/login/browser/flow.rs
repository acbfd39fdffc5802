//! The login steps and the one interpreter that walks them: mobile → TOTP → PIN → the redirect's code.
//!
//! Each step waits for its input (found by the configured selector or a fallback, and enabled: a briefly disabled
//! input is a wait, not an error), types, waits for its enabled button, marks the page and clicks. The outcome of a
//! click is read from the whole page (`page`): the step succeeded when the next step's input (or, after the PIN,
//! the redirect) appears; it failed when the page did not advance and a newly shown message says why. Known
//! refusals stop at once; a message this program does not know stops once it has stood for `UNKNOWN_SETTLE`.
//!
//! A PIN is reported to the observer *before* the click (the lockout count survives a crash at the worst moment),
//! and once it is clicked, any outcome other than a code or a known refusal ends the account's attempts for the
//! run (`PinOutcomeUnknown`): a PIN is never resubmitted into the unknown. Every wait polls with a deadline; none
//! sleeps for a fixed time, except the deliberate wait for a fresh TOTP window.

use std::time::{Duration, Instant};

use fantoccini::Client;
use tokio::sync::OwnedSemaphorePermit;

use super::artifacts::Scrub;
use super::commands::{failed, not_dispatched, session_gone, tolerate, transient};
use super::page::{Found, LocatedBy, PageReader, Snapshot};
use super::verdict::{
    EXCERPT, PAGE_SETTLE, Settle, Unknown, arrival_timeout, first_page_problem, page_changed, scrub, scrub_page,
};
use super::webdriver::Browser;
use super::{BrowserError, PageRejection, RejectionKind};
use crate::config::{Credentials, StepSelectors};
use crate::login::{BrowserLogin, FallbackUsed, LoginEvent, Observer, Step, StepTiming, record};
use crate::oauth::AuthorizationRequest;
use crate::secret::AuthCode;
use crate::totp::{self, TotpGenerator, TotpPlan};

/// What one browser login types and where it goes.
pub struct FlowInputs<'a> {
    pub account: &'a str,
    /// The account's position in `[[accounts]]`, for messages naming its keys.
    pub account_index: usize,
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
    let credentials = inputs.credentials;
    let mut run = Run {
        settings,
        inputs,
        client: browser.client(),
        reader: PageReader::new(&settings.browser.selectors),
        secrets: vec![credentials.pin.expose().to_owned(), credentials.mobile.clone()],
        timings,
        current: Step::Dialog,
        reported: Vec::new(),
    };
    let result = run.walk(observe).await;
    let timings = std::mem::take(&mut run.timings);
    match result {
        Ok(code) => {
            browser.kill();
            settings.teardowns.spawn(browser.close());
            Ok(LoginOutcome { code, timings })
        }
        Err(mut error) => {
            // Whatever the error quotes from the page, nothing typed goes out with it.
            scrub_page(&mut error, &run.secrets);
            let scrub = Scrub::new(run.secrets.clone());
            let written =
                settings.artifacts.capture(browser.client(), inputs.account, run.current.as_str(), &scrub).await;
            if let Some(png) = written.into_iter().find(|p| p.extension().is_some_and(|e| e == "png")) {
                error.attach_screenshot(png);
            }
            browser.close().await;
            Err(FlowFailure { error, timings })
        }
    }
}

struct Run<'a> {
    settings: &'a BrowserLogin,
    inputs: &'a FlowInputs<'a>,
    client: &'a Client,
    reader: PageReader,
    /// Values typed into the page (PIN, mobile, TOTP codes): removed from any text this login reports.
    secrets: Vec<String>,
    timings: Vec<StepTiming>,
    /// The step in progress, for artifacts and messages.
    current: Step,
    /// Fallback uses already reported in this login: (step, element).
    reported: Vec<(Step, &'static str)>,
}

/// How an input is typed into: one the page has just rendered is empty (no `clear` round trip); one that held a value
/// (a rejected TOTP, an input the page re-rendered meanwhile) is cleared first.
#[derive(Clone, Copy)]
enum Typing {
    Fresh,
    Replace,
}

/// Why the PIN's click failed: known not to have reached the page, or perhaps it did.
enum PinClick {
    NotSent(BrowserError),
    MaybeSent(BrowserError),
}

/// One poll's verdict.
enum Verdict<T> {
    Ready(T),
    Fail(BrowserError),
    Wait,
}

impl Run<'_> {
    async fn walk(&mut self, observe: &mut Observer<'_>) -> Result<AuthCode, BrowserError> {
        let started = Instant::now();
        self.client.goto(self.inputs.request.url.as_str()).await.map_err(failed(Step::Dialog, "goto"))?;
        let mobile = self.arrive(Step::Mobile).await?;
        record(&mut self.timings, self.inputs.account, Step::Dialog, started);

        let step_started = Instant::now();
        self.current = Step::Mobile;
        let number = self.inputs.credentials.mobile.clone();
        self.type_into(Step::Mobile, mobile, &number, Typing::Fresh, observe).await?;
        self.click(Step::Mobile, observe).await?;
        let otp = self.outcome(Step::Mobile, Step::Otp).await?;
        record(&mut self.timings, self.inputs.account, Step::Mobile, step_started);

        let step_started = Instant::now();
        self.current = Step::Otp;
        let pin = self.submit_totp(otp, observe).await?;
        record(&mut self.timings, self.inputs.account, Step::Otp, step_started);

        let step_started = Instant::now();
        self.current = Step::Pin;
        let value = self.inputs.credentials.pin.expose().to_owned();
        self.type_into(Step::Pin, pin, &value, Typing::Fresh, observe).await?;
        let button = self.enabled_button(Step::Pin, observe).await?;
        observe(LoginEvent::PinSubmitting)
            .await
            .map_err(|veto| BrowserError::Vetoed { step: Step::Pin, reason: veto.0 })?;
        // From here on the PIN may be in: anything but a code or a known refusal is an unknown outcome.
        let code = match self.click_pin(&button).await {
            Ok(()) => self.wait_for_redirect().await,
            // Known not to have reached the page: an ordinary (retryable) failure.
            Err(PinClick::NotSent(e)) => return Err(e),
            Err(PinClick::MaybeSent(e)) => Err(e),
        };
        let code = match code {
            Ok(code) => code,
            Err(e) if e.is_permanent() => return Err(e),
            Err(cause) => {
                let page = self.page_excerpt().await;
                return Err(BrowserError::PinOutcomeUnknown { cause: Box::new(cause), page, screenshot: None });
            }
        };
        // Before anything else can fail: the PIN ended with a code, so it no longer counts towards a lockout.
        if let Err(veto) = observe(LoginEvent::CodeReceived).await {
            tracing::warn!(account = self.inputs.account, reason = %veto, "could not record that the PIN ended with a code");
        }
        record(&mut self.timings, self.inputs.account, Step::Pin, step_started);
        Ok(code)
    }

    /// Type the TOTP of a fresh window; on the first "Invalid OTP", once more in the next window. Returns the PIN
    /// input, whose appearance is the success signal.
    async fn submit_totp(&mut self, mut input: Found, observe: &mut Observer<'_>) -> Result<Found, BrowserError> {
        let mut last_used = self.inputs.last_totp_step;
        for attempt in 0..2 {
            let code = self.fresh_totp(&mut last_used, observe).await?;
            self.secrets.push(code.code.expose().to_owned());
            if attempt == 1 {
                input = self.arrive(Step::Otp).await?;
            }
            let typing = if attempt == 0 { Typing::Fresh } else { Typing::Replace };
            self.type_into(Step::Otp, input.clone(), code.code.expose(), typing, observe).await?;
            self.click(Step::Otp, observe).await?;
            match self.outcome(Step::Otp, Step::Pin).await {
                Err(BrowserError::Rejected { rejection, .. })
                    if attempt == 0 && rejection.kind == RejectionKind::TotpRejected =>
                {
                    tracing::warn!(account = self.inputs.account, message = %rejection.text, "TOTP rejected; retrying once in the next window");
                }
                other => return other,
            }
        }
        unreachable!("the loop returns on the second attempt")
    }

    /// Wait until `step`'s input is on the page and enabled (the first page: also read dialog errors, bot blocks,
    /// browser error pages).
    async fn arrive(&mut self, step: Step) -> Result<Found, BrowserError> {
        let index = self.inputs.account_index;
        let selectors = self.selectors(step).clone();
        let mut settle = Settle::default();
        let outcome = self
            .watch(&[step], Some(step), |page, now| {
                if let Some(problem) = first_page_problem(page, step, index) {
                    return Verdict::Fail(problem);
                }
                if let Some(input) = page.input(step) {
                    return if input.enabled { Verdict::Ready(input.clone()) } else { Verdict::Wait };
                }
                if settle.unchanged_for(page, now) >= PAGE_SETTLE && page.inputs > 0 {
                    return Verdict::Fail(page_changed(step, "input", &selectors.input, page));
                }
                Verdict::Wait
            })
            .await?;
        outcome.map_err(|last| arrival_timeout(step, &selectors, last, self.settings.browser.step_timeout))
    }

    /// Type `value` (never logged) into `input`, clearing it first for `Typing::Replace`. An input that is briefly
    /// disabled or not yet interactable is waited for, found again if the page replaced it, and then cleared.
    async fn type_into(
        &mut self,
        step: Step,
        mut input: Found,
        value: &str,
        mut typing: Typing,
        observe: &mut Observer<'_>,
    ) -> Result<(), BrowserError> {
        self.report_fallback(step, "input", &input.by, observe).await;
        let deadline = Instant::now() + self.settings.browser.step_timeout;
        loop {
            let cleared = match typing {
                Typing::Fresh => Ok(()),
                Typing::Replace => input.element.clear().await,
            };
            let typed = match cleared {
                Ok(()) => input.element.send_keys(value).await,
                Err(e) => Err(e),
            };
            match typed {
                Ok(()) => return Ok(()),
                Err(e) if session_gone(&e) => return Err(failed(step, "send_keys")(e)),
                Err(e) if transient(&e) && Instant::now() < deadline => {
                    tracing::debug!(step = step.as_str(), error = %e, "input not interactable yet; waiting");
                    input = self.arrive(step).await?;
                    typing = Typing::Replace;
                }
                Err(e) => return Err(failed(step, "send_keys")(e)),
            }
        }
    }

    /// Wait for `step`'s button to be enabled, mark the page, click.
    async fn click(&mut self, step: Step, observe: &mut Observer<'_>) -> Result<(), BrowserError> {
        let button = self.enabled_button(step, observe).await?;
        self.mark(step).await?;
        button.element.click().await.map_err(failed(step, "click"))
    }

    /// Mark and click the PIN's button. A click the browser refused before dispatching it ("intercepted", "not
    /// interactable") is known not to have sent the PIN; every other failure may have.
    async fn click_pin(&mut self, button: &Found) -> Result<(), PinClick> {
        self.mark(Step::Pin).await.map_err(PinClick::NotSent)?;
        match button.element.click().await {
            Ok(()) => Ok(()),
            Err(e) if !session_gone(&e) && not_dispatched(&e) => Err(PinClick::NotSent(failed(Step::Pin, "click")(e))),
            Err(e) => Err(PinClick::MaybeSent(failed(Step::Pin, "click")(e))),
        }
    }

    async fn mark(&self, step: Step) -> Result<(), BrowserError> {
        self.reader.mark(self.client).await.map_err(failed(step, "execute"))
    }

    /// `step`'s submit button once it is enabled (it may stay disabled until the input is valid).
    async fn enabled_button(&mut self, step: Step, observe: &mut Observer<'_>) -> Result<Found, BrowserError> {
        let selectors = self.selectors(step).clone();
        let mut settle = Settle::default();
        let outcome = self
            .watch(&[step], Some(step), |page, now| match page.button(step) {
                Some(button) if button.enabled => Verdict::Ready(button.clone()),
                Some(_) => Verdict::Wait,
                None if settle.unchanged_for(page, now) >= PAGE_SETTLE => {
                    Verdict::Fail(page_changed(step, "button", &selectors.submit, page))
                }
                None => Verdict::Wait,
            })
            .await?;
        let button = match outcome {
            Ok(button) => button,
            Err(Some(page)) if page.button(step).is_none() => {
                return Err(page_changed(step, "button", &selectors.submit, &page));
            }
            Err(last) => {
                // Disabled all along: the page's own validation refused the value, and may say why.
                let said = last.iter().flat_map(|p| &p.messages).find_map(|m| {
                    PageRejection::read(&m.text, chrono::Utc::now()).filter(|r| r.kind != RejectionKind::Unrecognised)
                });
                return Err(match said {
                    Some(rejection) => {
                        BrowserError::Rejected { step, rejection: self.scrubbed(rejection), screenshot: None }
                    }
                    None => BrowserError::ElementTimeout {
                        step,
                        selector: format!("{} (enabled)", selectors.submit),
                        timeout: self.settings.browser.step_timeout,
                    },
                });
            }
        };
        self.report_fallback(step, "button", &button.by, observe).await;
        Ok(button)
    }

    /// After `step`'s click: `next`'s input (success), or the message that says why the page did not advance.
    async fn outcome(&mut self, step: Step, next: Step) -> Result<Found, BrowserError> {
        let mut unknown = Unknown::default();
        let secrets = self.secrets.clone();
        let outcome = self
            .watch(&[step, next], Some(step), |page, now| {
                if let Some(input) = page.input(next) {
                    return Verdict::Ready(input.clone());
                }
                if let Some(title) = page.bot_block() {
                    return Verdict::Fail(BrowserError::BotBlocked { title });
                }
                match unknown.read(page, now, &secrets) {
                    Some(rejection) => Verdict::Fail(BrowserError::Rejected { step, rejection, screenshot: None }),
                    None => Verdict::Wait,
                }
            })
            .await?;
        let selectors = self.selectors(next).clone();
        outcome.map_err(|last| match last {
            Some(page) if page.input(step).is_none() && !page.text.is_empty() => {
                let mut changed = page_changed(next, "input", &selectors.input, &page);
                scrub_page(&mut changed, &self.secrets);
                changed
            }
            page => BrowserError::NoAnswer {
                step,
                timeout: self.settings.browser.step_timeout,
                page: page.map(|p| scrub(&p.excerpt(EXCERPT), &self.secrets)).unwrap_or_default(),
            },
        })
    }

    /// After the PIN's click: poll the browser's URL until it is `redirect_uri` with a code, reading the page for a
    /// refusal meanwhile.
    async fn wait_for_redirect(&mut self) -> Result<AuthCode, BrowserError> {
        let request = self.inputs.request;
        let deadline = Instant::now() + self.settings.browser.step_timeout;
        let mut interval = self.interval();
        let mut unknown = Unknown::default();
        loop {
            interval.tick().await;
            if let Some(current) = tolerate(Step::Pin, "current_url", self.client.current_url().await)?
                && let Some(code) = request.read_redirect(current.as_str())?
            {
                return Ok(code);
            }
            let page =
                tolerate(Step::Pin, "execute", self.reader.snapshot(self.client, &[Step::Pin], Some(Step::Pin)).await)?;
            if let Some(page) = page {
                // Blocks have been reported right after PIN + OTP too, not only on the first page.
                if let Some(title) = page.bot_block() {
                    return Err(BrowserError::BotBlocked { title });
                }
                if let Some(rejection) = unknown.read(&page, Instant::now(), &self.secrets) {
                    return Err(BrowserError::Rejected { step: Step::Pin, rejection, screenshot: None });
                }
            }
            if Instant::now() >= deadline {
                let last = self.client.current_url().await.map(|mut u| {
                    u.set_query(None);
                    u.to_string()
                });
                return Err(BrowserError::RedirectTimeout {
                    redirect_uri: request.redirect_uri.to_string(),
                    timeout: self.settings.browser.step_timeout,
                    last_url: last.unwrap_or_else(|_| "unknown".into()),
                });
            }
        }
    }

    /// Poll the page until `decide` says ready or fail, or the step timeout passes: `Ok(Err(last))` then, with the
    /// last snapshot taken. A snapshot that fails (the page mid-navigation) is a wait; a lost session is an error.
    async fn watch<T>(
        &self,
        want: &[Step],
        focus: Option<Step>,
        mut decide: impl FnMut(&Snapshot, Instant) -> Verdict<T>,
    ) -> Result<Result<T, Option<Snapshot>>, BrowserError> {
        let deadline = Instant::now() + self.settings.browser.step_timeout;
        let mut interval = self.interval();
        let step = focus.unwrap_or(Step::Dialog);
        let mut last = None;
        loop {
            interval.tick().await;
            if let Some(page) = tolerate(step, "execute", self.reader.snapshot(self.client, want, focus).await)? {
                match decide(&page, Instant::now()) {
                    Verdict::Ready(v) => return Ok(Ok(v)),
                    Verdict::Fail(mut e) => {
                        scrub_page(&mut e, &self.secrets);
                        return Err(e);
                    }
                    Verdict::Wait => last = Some(page),
                }
            }
            if Instant::now() >= deadline {
                return Ok(Err(last));
            }
        }
    }

    fn interval(&self) -> tokio::time::Interval {
        let mut interval = tokio::time::interval(self.settings.browser.poll_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    }

    fn selectors(&self, step: Step) -> &StepSelectors {
        let s = &self.settings.browser.selectors;
        match step {
            Step::Otp => &s.otp,
            Step::Pin => &s.pin,
            _ => &s.mobile,
        }
    }

    fn scrubbed(&self, mut rejection: PageRejection) -> PageRejection {
        rejection.text = scrub(&rejection.text, &self.secrets);
        rejection
    }

    /// The page's visible text now (secrets removed), for errors after the PIN.
    async fn page_excerpt(&self) -> String {
        match self.reader.snapshot(self.client, &[], None).await {
            Ok(page) => scrub(&page.excerpt(EXCERPT), &self.secrets),
            Err(_) => "unreadable".into(),
        }
    }

    /// Warn (once per login) and tell the observer when an element was found only by a fallback.
    async fn report_fallback(&mut self, step: Step, element: &'static str, by: &LocatedBy, observe: &mut Observer<'_>) {
        let LocatedBy::Fallback(matched) = by else { return };
        // A label may quote what the page knows ("OTP sent to 98765…"): never log a typed value.
        let matched = scrub(matched, &self.secrets);
        if self.reported.contains(&(step, element)) {
            return;
        }
        self.reported.push((step, element));
        let s = self.selectors(step);
        let (key, configured) =
            if element == "button" { ("submit", s.submit.clone()) } else { ("input", s.input.clone()) };
        tracing::warn!(
            account = self.inputs.account,
            step = step.as_str(),
            element,
            configured = %configured,
            matched = %matched,
            "`browser.selectors.{step}_{key}` matched nothing; found the {element} by {matched}: update the selector before this fallback stops matching too"
        );
        let used = FallbackUsed { step, element, configured, matched };
        if let Err(veto) = observe(LoginEvent::LocatorFallback(used)).await {
            tracing::debug!(reason = %veto, "could not record the fallback use");
        }
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
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
