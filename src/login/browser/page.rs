//! Reading the hosted login page as a whole, one WebDriver round trip per look (`page.js`): where each step's input
//! and button are (the configured selector first, then fallbacks by label text, input attributes and button text),
//! which messages are showing and which of them appeared after the last `mark`, and what kind of page it is
//! (the login app, a JSON error from the dialog, a bot-block page, a browser error page).
//!
//! This module never types, clicks or decides: `flow` and `probe` do, from a `Snapshot`.

use fantoccini::Client;
use fantoccini::elements::{Element, ElementRef};
use fantoccini::error::CmdError;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::Selectors;
use crate::login::Step;
use crate::oauth::{UpstoxError, interpret_error};

/// The script; see its header for what it may do.
const SCRIPT: &str = include_str!("page.js");
/// How a DOM element travels over WebDriver (W3C "web element identifier").
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Which locator found an element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocatedBy {
    /// The configured CSS selector.
    Configured(String),
    /// A fallback, described (`label "Enter 6-digit PIN"`, `button "Continue"`); the configured selector matched
    /// nothing visible.
    Fallback(String),
}

impl std::fmt::Display for LocatedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LocatedBy::Configured(css) => write!(f, "`{css}`"),
            LocatedBy::Fallback(what) => write!(f, "fallback {what}"),
        }
    }
}

/// A step's input or button as found on the page.
#[derive(Debug, Clone)]
pub struct Found {
    pub element: Element,
    pub by: LocatedBy,
    /// Not disabled, not read-only, not `aria-disabled`.
    pub enabled: bool,
}

/// A visible message on the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its text, whitespace collapsed, at most 500 characters (not yet scrubbed of secrets).
    pub text: String,
    /// Where it was found: `alert` (the error selector, `role=alert`/`status`, `aria-live`), `added` (appended
    /// since the mark: a toast or an overlay), `coded` (carries a `[1234567]` code), `inline` (near the step's
    /// input), `text` (any other text that changed).
    pub source: String,
    /// Appeared (or changed) after the last `mark`.
    pub is_new: bool,
}

/// One look at the page.
#[derive(Debug)]
pub struct Snapshot {
    pub url: String,
    pub title: String,
    pub content_type: String,
    /// The visible text of the body, whitespace collapsed, at most 2000 characters (not yet scrubbed).
    pub text: String,
    /// Visible text inputs of any kind (a page with inputs that match nothing is a changed page, not a slow one).
    pub inputs: u32,
    located: Vec<(Step, Option<Found>, Option<Found>)>,
    pub messages: Vec<Message>,
}

impl Snapshot {
    pub fn input(&self, step: Step) -> Option<&Found> {
        self.located.iter().find(|(s, ..)| *s == step).and_then(|(_, input, _)| input.as_ref())
    }

    pub fn button(&self, step: Step) -> Option<&Found> {
        self.located.iter().find(|(s, ..)| *s == step).and_then(|(.., button)| button.as_ref())
    }

    /// Messages that appeared after the last mark.
    pub fn new_messages(&self) -> impl Iterator<Item = &Message> {
        self.messages.iter().filter(|m| m.is_new)
    }

    /// The dialog answered Upstox's JSON error envelope (`UDAPI100068` for a wrong client_id/redirect_uri [doc])
    /// instead of sending the browser to the login app.
    pub fn dialog_error(&self) -> Option<UpstoxError> {
        let json_page = self.content_type.contains("json") || self.text.contains("\"status\":\"error\"");
        if !json_page {
            return None;
        }
        // Chromium's JSON viewer may put a "Pretty-print" control before the body.
        let start = self.text.find('{')?;
        let end = self.text.rfind('}')?;
        let error = interpret_error(0, self.text.get(start..=end)?.as_bytes());
        error.code.is_some().then_some(error)
    }

    /// The title of a bot-management page (Cloudflare "Access denied", a challenge, "Rate limited") shown instead
    /// of the app [3p].
    pub fn bot_block(&self) -> Option<String> {
        let title = self.title.to_lowercase();
        let text = self.text.to_lowercase();
        let by_title =
            ["access denied", "attention required", "just a moment", "rate limit"].iter().any(|m| title.contains(m));
        let by_text = text.contains("cloudflare")
            && ["access denied", "error 1010", "error 1015", "rate limited", "you have been blocked"]
                .iter()
                .any(|m| text.contains(m));
        (by_title || by_text).then(|| if self.title.is_empty() { "untitled".to_owned() } else { self.title.clone() })
    }

    /// A browser error page (the host could not be reached).
    pub fn browser_error(&self) -> bool {
        self.url.starts_with("chrome-error:")
    }

    /// An excerpt of the visible text, for messages: at most `max` characters.
    pub fn excerpt(&self, max: usize) -> String {
        let mut out: String = self.text.chars().take(max).collect();
        if self.text.chars().count() > max {
            out.push('…');
        }
        out
    }
}

/// Looks at the page through the configured selectors.
pub struct PageReader {
    steps: Value,
    error: String,
}

impl PageReader {
    pub fn new(selectors: &Selectors) -> Self {
        let step = |s: &crate::config::StepSelectors| json!({"input": s.input, "submit": s.submit});
        Self {
            steps: json!({
                "mobile": step(&selectors.mobile),
                "otp": step(&selectors.otp),
                "pin": step(&selectors.pin),
            }),
            error: selectors.error.clone(),
        }
    }

    /// Note what the page shows now: messages visible at this moment are not new in later snapshots unless they
    /// change. Called right before a click.
    pub async fn mark(&self, client: &Client) -> Result<(), CmdError> {
        client.execute(SCRIPT, vec![json!({"op": "mark", "steps": self.steps, "error": self.error})]).await?;
        Ok(())
    }

    /// Look at the page: locate the inputs and buttons of `want`, read the messages (`focus`: the step whose input's
    /// surroundings hold inline messages).
    pub async fn snapshot(&self, client: &Client, want: &[Step], focus: Option<Step>) -> Result<Snapshot, CmdError> {
        let want: Vec<&str> = want.iter().map(|s| s.as_str()).collect();
        let arg = json!({
            "op": "snapshot",
            "steps": self.steps,
            "error": self.error,
            "want": want,
            "focus": focus.map(Step::as_str),
        });
        let value = client.execute(SCRIPT, vec![arg]).await?;
        let raw: RawSnapshot = serde_json::from_value(value).map_err(|e| CmdError::NotJson(e.to_string()))?;
        Ok(raw.into_snapshot(client))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSnapshot {
    url: String,
    title: String,
    content_type: String,
    text: String,
    inputs: u32,
    located: serde_json::Map<String, Value>,
    messages: Vec<RawMessage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMessage {
    text: String,
    source: String,
    is_new: bool,
}

#[derive(Deserialize)]
struct RawFound {
    el: Value,
    how: String,
    desc: String,
    enabled: bool,
}

impl RawSnapshot {
    fn into_snapshot(self, client: &Client) -> Snapshot {
        let found = |v: Option<&Value>| -> Option<Found> {
            let raw: RawFound = serde_json::from_value(v?.clone()).ok()?;
            let id = raw.el.get(ELEMENT_KEY)?.as_str()?.to_owned();
            let by =
                if raw.how == "configured" { LocatedBy::Configured(raw.desc) } else { LocatedBy::Fallback(raw.desc) };
            Some(Found {
                element: Element::from_element_id(client.clone(), ElementRef::from(id)),
                by,
                enabled: raw.enabled,
            })
        };
        let located = [Step::Mobile, Step::Otp, Step::Pin]
            .into_iter()
            .filter_map(|step| {
                let entry = self.located.get(step.as_str())?;
                Some((step, found(entry.get("input")), found(entry.get("button"))))
            })
            .collect();
        Snapshot {
            url: self.url,
            title: self.title,
            content_type: self.content_type,
            text: self.text,
            inputs: self.inputs,
            located,
            messages: self
                .messages
                .into_iter()
                .map(|m| Message { text: m.text, source: m.source, is_new: m.is_new })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(content_type: &str, title: &str, text: &str) -> Snapshot {
        Snapshot {
            url: "http://x/".into(),
            title: title.into(),
            content_type: content_type.into(),
            text: text.into(),
            inputs: 0,
            located: Vec::new(),
            messages: Vec::new(),
        }
    }

    #[test]
    fn a_json_error_from_the_dialog_is_read() {
        let body = r#"Pretty-print {"status":"error","errors":[{"errorCode":"UDAPI100068","message":"Check your 'client_id' and 'redirect_uri'; one or both are incorrect.","propertyPath":null,"invalidValue":null}]}"#;
        let e = page("application/json", "", body).dialog_error().unwrap();
        assert_eq!(e.code.as_deref(), Some("UDAPI100068"));
        assert!(e.message.contains("client_id"));
        assert!(page("text/html", "Upstox Login", "Enter mobile number").dialog_error().is_none());
        assert!(page("application/json", "", "{\"status\":\"success\"}").dialog_error().is_none());
    }

    #[test]
    fn bot_block_pages_are_told_apart_from_the_app() {
        assert!(page("text/html", "Access denied | login.upstox.com used Cloudflare", "").bot_block().is_some());
        assert!(page("text/html", "", "Error 1015 Rate limited Cloudflare Ray ID").bot_block().is_some());
        assert!(page("text/html", "Upstox Login", "Access denied to this feature").bot_block().is_none());
    }
}
