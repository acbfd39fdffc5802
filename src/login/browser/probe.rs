//! `probe`: open an account's authorization dialog and check, typing and submitting nothing, that the dialog accepts
//! the app (no `UDAPI` error), no bot-block page is served, and the first step's input and button are found (and by
//! which locator). Shares the first-page reading with `flow`; never sends a keystroke, a click or a form.

use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;

use super::BrowserError;
use super::artifacts::Scrub;
use super::commands::tolerate;
use super::page::{LocatedBy, PageReader};
use super::verdict::{PAGE_SETTLE, Settle, arrival_timeout, first_page_problem, page_changed, scrub_page};
use super::webdriver::Browser;
use crate::login::{BrowserLogin, Step};
use crate::oauth::AuthorizationRequest;

/// A ready login page: how the first step's input and button were found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    pub input: LocatedBy,
    pub button: LocatedBy,
    /// From the browser's start to the verdict.
    pub elapsed: Duration,
}

impl ProbeReport {
    /// Some element was found only by a fallback: the configured selectors need an update.
    pub fn uses_fallback(&self) -> bool {
        matches!(self.input, LocatedBy::Fallback(_)) || matches!(self.button, LocatedBy::Fallback(_))
    }
}

impl std::fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "mobile input by {}, button by {}", self.input, self.button)?;
        if self.uses_fallback() {
            f.write_str(" (update `browser.selectors.mobile_*`)")?;
        }
        Ok(())
    }
}

/// Open `request`'s dialog in a fresh browser (holding `slot`, one of `browser.max_sessions`) and look, without typing, until the first step's form shows (or the
/// step timeout passes). `account_index` names the account's keys in a `DialogRefused`. On failure the page is
/// saved under the artifacts dir as step `probe`.
pub async fn probe(
    settings: &BrowserLogin,
    slot: Option<OwnedSemaphorePermit>,
    request: &AuthorizationRequest,
    account: &str,
    account_index: usize,
) -> Result<ProbeReport, BrowserError> {
    let started = Instant::now();
    let browser = Browser::start(&settings.browser, slot).await?;
    let client = browser.client();
    let reader = PageReader::new(&settings.browser.selectors);
    let selectors = &settings.browser.selectors.mobile;
    let step = Step::Mobile;
    let result = async {
        client.goto(request.url.as_str()).await.map_err(|source| BrowserError::WebDriver {
            step: Step::Dialog,
            action: "goto",
            source: Box::new(source),
        })?;
        let deadline = Instant::now() + settings.browser.step_timeout;
        let mut interval = tokio::time::interval(settings.browser.poll_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut settle = Settle::default();
        let mut last = None;
        loop {
            interval.tick().await;
            if let Some(page) = tolerate(step, "execute", reader.snapshot(client, &[step], Some(step)).await)? {
                if let Some(problem) = first_page_problem(&page, step, account_index) {
                    return Err(problem);
                }
                match (page.input(step), page.button(step)) {
                    (Some(input), Some(button)) => {
                        return Ok(ProbeReport {
                            input: input.by.clone(),
                            button: button.by.clone(),
                            elapsed: started.elapsed(),
                        });
                    }
                    (input, _) => {
                        if settle.unchanged_for(&page, Instant::now()) >= PAGE_SETTLE && page.inputs > 0 {
                            return Err(match input {
                                Some(_) => page_changed(step, "button", &selectors.submit, &page),
                                None => page_changed(step, "input", &selectors.input, &page),
                            });
                        }
                    }
                }
                last = Some(page);
            }
            if Instant::now() >= deadline {
                return Err(match last {
                    Some(page) if page.input(step).is_some() => page_changed(step, "button", &selectors.submit, &page),
                    last => arrival_timeout(step, selectors, last, settings.browser.step_timeout),
                });
            }
        }
    }
    .await;
    let result = match result {
        Ok(report) => Ok(report),
        Err(mut error) => {
            scrub_page(&mut error, &[]);
            let written = settings.artifacts.capture(client, account, "probe", &Scrub::new(Vec::new())).await;
            if let Some(png) = written.into_iter().find(|p| p.extension().is_some_and(|e| e == "png")) {
                error.attach_screenshot(png);
            }
            Err(error)
        }
    };
    browser.close().await;
    result
}
