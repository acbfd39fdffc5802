//! Reading one look at the page (`page::Snapshot`) into what it means for a step: the problems that stop a login
//! where a form should be (the dialog's JSON error, a bot block, a browser error page, a message saying why), "the
//! login page changed", and which new message after a click is a refusal (known ones at once, unknown ones once they
//! have stood for `UNKNOWN_SETTLE`, notices never). Pure over snapshots; `flow` and `probe` poll and act.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::page::Snapshot;
use super::{BrowserError, PageRejection, RejectionKind};
use crate::config::StepSelectors;
use crate::login::Step;

/// How long a message this program does not recognise must stand, the page not advancing, before it ends the
/// step (a progress text such as "Checking…" comes and goes).
pub(super) const UNKNOWN_SETTLE: Duration = Duration::from_secs(2);
/// How long a page with text inputs may stay unchanged without showing what a step needs before it counts as
/// "the login page changed" (instead of waiting for the whole step timeout). A page still hydrating shows no input
/// or keeps changing, so it is waited for up to the step timeout.
pub(super) const PAGE_SETTLE: Duration = Duration::from_secs(6);
/// Characters of the page's text quoted in errors.
pub(super) const EXCERPT: usize = 300;

/// What stops a login on the page where a step's form should be: Upstox's JSON error from the dialog, a bot-block
/// page, a browser error page, or a message saying why the form is not there ("session expired", "locked").
pub(super) fn first_page_problem(page: &Snapshot, step: Step, account_index: usize) -> Option<BrowserError> {
    if let Some(error) = page.dialog_error() {
        return Some(BrowserError::DialogRefused {
            code: error.code.unwrap_or_default(),
            message: error.message,
            client_id_key: format!("accounts[{account_index}].client_id"),
            redirect_uri_key: format!("accounts[{account_index}].redirect_uri"),
        });
    }
    if let Some(title) = page.bot_block() {
        return Some(BrowserError::BotBlocked { title });
    }
    if page.browser_error() {
        return Some(BrowserError::DialogUnreachable { detail: page.excerpt(EXCERPT) });
    }
    if page.input(step).is_some() {
        return None;
    }
    page.messages.iter().find_map(|m| {
        PageRejection::read(&m.text, chrono::Utc::now())
            .filter(|r| r.kind != RejectionKind::Unrecognised)
            .map(|rejection| BrowserError::Rejected { step, rejection, screenshot: None })
    })
}

/// The error when a step's form did not show within the step timeout, from the last look at the page.
pub(super) fn arrival_timeout(
    step: Step,
    selectors: &StepSelectors,
    last: Option<Snapshot>,
    timeout: Duration,
) -> BrowserError {
    match last {
        Some(page) if page.input(step).is_some() => {
            BrowserError::ElementTimeout { step, selector: format!("{} (disabled)", selectors.input), timeout }
        }
        Some(page) if !page.text.is_empty() => page_changed(step, "input", &selectors.input, &page),
        _ => BrowserError::DialogUnreachable { detail: format!("nothing rendered within {timeout:?}") },
    }
}

/// How long the page has looked the same (its text and number of inputs).
#[derive(Default)]
pub(super) struct Settle {
    signature: Option<(String, u32)>,
    since: Option<Instant>,
}

impl Settle {
    pub(super) fn unchanged_for(&mut self, page: &Snapshot, now: Instant) -> Duration {
        let signature = (page.text.clone(), page.inputs);
        if self.signature.as_ref() != Some(&signature) {
            self.signature = Some(signature);
            self.since = Some(now);
        }
        self.since.map(|s| now - s).unwrap_or_default()
    }
}

/// New messages after a click: a known refusal ends the step at once, an unknown message once it has stood for
/// `UNKNOWN_SETTLE`; notices ("OTP sent …") never.
#[derive(Default)]
pub(super) struct Unknown {
    first_seen: HashMap<String, Instant>,
}

impl Unknown {
    pub(super) fn read(&mut self, page: &Snapshot, now: Instant, secrets: &[String]) -> Option<PageRejection> {
        // Coded messages first: Upstox's own overlays carry the most precise meaning.
        let mut fresh: Vec<_> = page.new_messages().collect();
        fresh.sort_by_key(|m| bracketed(&m.text));
        let mut standing = None;
        for message in fresh {
            let text = scrub(&message.text, secrets);
            let Some(rejection) = PageRejection::read(&text, chrono::Utc::now()) else {
                tracing::debug!(notice = %text, source = %message.source, "page notice (not a refusal)");
                continue;
            };
            if rejection.kind != RejectionKind::Unrecognised {
                return Some(rejection);
            }
            let since = *self.first_seen.entry(text).or_insert(now);
            if standing.is_none() && now - since >= UNKNOWN_SETTLE {
                standing = Some(rejection);
            }
        }
        standing
    }
}

/// Sort key: messages with a `[1234567]` code first.
fn bracketed(text: &str) -> bool {
    super::bracketed_code(text).is_none()
}

pub(super) fn page_changed(step: Step, element: &'static str, configured: &str, page: &Snapshot) -> BrowserError {
    BrowserError::PageChanged {
        step,
        element,
        configured: configured.to_owned(),
        page: page.excerpt(EXCERPT),
        screenshot: None,
    }
}

/// Remove typed secrets from the page text an error quotes.
pub(super) fn scrub_page(error: &mut BrowserError, secrets: &[String]) {
    match error {
        BrowserError::PageChanged { page, .. }
        | BrowserError::NoAnswer { page, .. }
        | BrowserError::PinOutcomeUnknown { page, .. } => *page = scrub(page, secrets),
        BrowserError::DialogUnreachable { detail } => *detail = scrub(detail, secrets),
        BrowserError::Rejected { rejection, .. } => rejection.text = scrub(&rejection.text, secrets),
        _ => {}
    }
}

pub(super) fn scrub(text: &str, secrets: &[String]) -> String {
    secrets.iter().filter(|s| !s.is_empty()).fold(text.to_owned(), |t, s| t.replace(s.as_str(), "[redacted]"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_typed_values() {
        let secrets = vec!["123456".to_owned(), "9876543210".to_owned(), String::new()];
        assert_eq!(scrub("PIN 123456 for 9876543210", &secrets), "PIN [redacted] for [redacted]");
    }
}
