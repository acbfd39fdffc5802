//! What a notification says: its kind, the account, one line for people, and when. The closed set of kinds is
//! what operators route on (the webhook's `event` field); each kind has one constructor naming what it needs.

use chrono::{DateTime, FixedOffset, Utc};
use serde::Serialize;

use crate::state::FailureClass;
use crate::token;

/// Chat messages are cut here (Discord's limit is 2000 characters, Telegram's 4096 [doc]).
const MAX_TEXT_CHARS: usize = 1900;

/// The kinds of notification, as the webhook's `event` field spells them (`snake_case`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A run ended without a valid token (the reason class and the fix are attached).
    LoginFailed,
    /// The first run that ended with a valid token after a failed one.
    LoginRecovered,
    /// The lockout guard refused to submit a PIN (a PIN was rejected today, or the day's cap is reached).
    GuardRefused,
    /// The login page changed: a fallback locator found an element the configured selector missed.
    PageChanged,
    /// A v3 access-token request waits for the user's approval in the Upstox app.
    ApprovalRequested,
    /// Shortly before the market opens, an account holds no valid token.
    TokenMissingNearOpen,
    /// Retries ran out at the day's login deadline without a token.
    DeadlineMissed,
    /// The daemon's re-check found the published token invalid (revoked, a logout elsewhere); it logs in again.
    TokenInvalidated,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::LoginFailed => "login_failed",
            EventKind::LoginRecovered => "login_recovered",
            EventKind::GuardRefused => "guard_refused",
            EventKind::PageChanged => "page_changed",
            EventKind::ApprovalRequested => "approval_requested",
            EventKind::TokenMissingNearOpen => "token_missing_near_open",
            EventKind::DeadlineMissed => "deadline_missed",
            EventKind::TokenInvalidated => "token_invalidated",
        }
    }

    /// A few words for a chat message's first line.
    pub fn title(self) -> &'static str {
        match self {
            EventKind::LoginFailed => "login failed",
            EventKind::LoginRecovered => "login recovered",
            EventKind::GuardRefused => "lockout guard refused a login",
            EventKind::PageChanged => "the login page changed",
            EventKind::ApprovalRequested => "approve the token request",
            EventKind::TokenMissingNearOpen => "no valid token near market open",
            EventKind::DeadlineMissed => "login deadline missed",
            EventKind::TokenInvalidated => "the published token was invalidated",
        }
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One notification. Serialised as the webhook's JSON body: `{"event":"login_failed","account":"primary",
/// "message":"…","at":"2026-11-28T08:30:41+05:30","reason":"wrong_pin","fix":"…"}` (`reason` and `fix` only when
/// known). Holds no token or secret: messages are built from error texts, which never
/// carry one, and `Notifier::notify` scrubs the configured secrets and mobile numbers once more.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Event {
    pub event: EventKind,
    pub account: String,
    /// One line for a person.
    pub message: String,
    /// When it happened, in IST.
    pub at: DateTime<FixedOffset>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<FailureClass>,
    /// What a human should do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Event {
    /// An event of `kind` happening now.
    pub fn new(kind: EventKind, account: &str, message: impl Into<String>) -> Self {
        Event {
            event: kind,
            account: account.to_owned(),
            message: message.into(),
            at: token::ist(Utc::now()),
            reason: None,
            fix: None,
        }
    }

    /// A run ended without a token: `reason` is its class, `message` the error (`error::error_chain`).
    pub fn login_failed(account: &str, reason: FailureClass, message: impl Into<String>, fix: Option<String>) -> Self {
        Event { reason: Some(reason), fix, ..Event::new(EventKind::LoginFailed, account, message) }
    }

    /// The first good run after a failed one; `message` says what it did (e.g. `Outcome`'s line).
    pub fn login_recovered(account: &str, message: impl Into<String>) -> Self {
        Event::new(EventKind::LoginRecovered, account, message)
    }

    /// The lockout guard refused; `message` is the refusal, `fix` what to do.
    pub fn guard_refused(account: &str, message: impl Into<String>, fix: Option<String>) -> Self {
        Event { reason: Some(FailureClass::Guard), fix, ..Event::new(EventKind::GuardRefused, account, message) }
    }

    /// The login page changed while the login still worked: `step` is `login::Step::as_str`, `message` what was
    /// seen (e.g. "`#pinCode` not found; the fallback `input[type=password]` was used").
    pub fn page_changed(account: &str, step: &str, message: impl Into<String>) -> Self {
        let fix = format!("update `browser.selectors.{step}_*` to the page's new elements before the fallback breaks");
        Event { fix: Some(fix), ..Event::new(EventKind::PageChanged, account, message) }
    }

    /// A v3 token request awaits the user's approval until `valid_until`.
    pub fn approval_requested(account: &str, valid_until: DateTime<FixedOffset>) -> Self {
        let message = format!(
            "a token request is waiting: approve it in the Upstox app (or the link Upstox sent) before {}",
            valid_until.format("%H:%M %:z")
        );
        Event::new(EventKind::ApprovalRequested, account, message)
    }

    /// No valid token while the market opens at `open_at`.
    pub fn token_missing_near_open(account: &str, open_at: DateTime<FixedOffset>) -> Self {
        let message = format!("no valid token, and the market opens at {}", open_at.format("%H:%M %:z"));
        let fix = format!(
            "look at the last attempts (`upstox-relogin status`), then run `upstox-relogin login --account {account}`"
        );
        Event { fix: Some(fix), ..Event::new(EventKind::TokenMissingNearOpen, account, message) }
    }

    /// Retries stopped at `deadline` without a token; `last_error` is the last run's error.
    pub fn deadline_missed(account: &str, deadline: DateTime<FixedOffset>, last_error: Option<&str>) -> Self {
        let message = match last_error {
            Some(e) => format!("no token by the deadline {}; last error: {e}", deadline.format("%H:%M %:z")),
            None => format!("no token by the deadline {}", deadline.format("%H:%M %:z")),
        };
        Event::new(EventKind::DeadlineMissed, account, message)
    }

    /// The published token of `generation` is no longer accepted by Upstox (`reason`: Upstox's words); a login
    /// follows at once, and notifies its own outcome.
    pub fn token_invalidated(account: &str, generation: u64, reason: &str) -> Self {
        let message = format!(
            "Upstox no longer accepts the published token (generation {generation}): {reason}; logging in again now"
        );
        let fix = "if this repeats, something else logs this account in or out (another tool, the Upstox app's logout)";
        Event { fix: Some(fix.into()), ..Event::new(EventKind::TokenInvalidated, account, message) }
    }

    /// The event as chat text: a title line, the message, the fix (unless the message already says it).
    pub fn text(&self) -> String {
        let reason = self.reason.map(|r| format!(" ({r})")).unwrap_or_default();
        let mut text = format!("[upstox-relogin] {}: {}{reason}\n{}", self.account, self.event.title(), self.message);
        if let Some(fix) = self.fix.as_deref().filter(|f| !self.message.contains(f)) {
            text.push_str("\nfix: ");
            text.push_str(fix);
        }
        if text.chars().count() > MAX_TEXT_CHARS {
            text = text.chars().take(MAX_TEXT_CHARS - 1).collect::<String>() + "…";
        }
        text
    }

    /// Replace every occurrence of each of `secrets` in the message and the fix.
    pub(super) fn scrub(&mut self, secrets: &[String]) {
        for s in secrets.iter().filter(|s| !s.is_empty()) {
            if self.message.contains(s.as_str()) {
                self.message = self.message.replace(s.as_str(), "[redacted]");
            }
            if let Some(fix) = self.fix.as_mut().filter(|f| f.contains(s.as_str())) {
                *fix = fix.replace(s.as_str(), "[redacted]");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_json_has_the_contract_fields() {
        let e = Event::login_failed("primary", FailureClass::WrongPin, "incorrect PIN", Some("check `pin`".into()));
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["event"], "login_failed");
        assert_eq!(json["account"], "primary");
        assert_eq!(json["message"], "incorrect PIN");
        assert_eq!(json["reason"], "wrong_pin");
        assert_eq!(json["fix"], "check `pin`");
        assert!(json["at"].as_str().unwrap().ends_with("+05:30"), "{json}");
        let json = serde_json::to_value(Event::login_recovered("primary", "logged in")).unwrap();
        assert!(json.get("reason").is_none() && json.get("fix").is_none(), "{json}");
    }

    #[test]
    fn chat_text_names_account_title_reason_and_fix_once() {
        let e = Event::login_failed("primary", FailureClass::WrongPin, "incorrect PIN", Some("check `pin`".into()));
        assert_eq!(e.text(), "[upstox-relogin] primary: login failed (wrong_pin)\nincorrect PIN\nfix: check `pin`");
        let e = Event::login_failed(
            "a",
            FailureClass::WrongPin,
            "incorrect PIN (fix: check `pin`)",
            Some("check `pin`".into()),
        );
        assert_eq!(e.text().matches("check `pin`").count(), 1, "{}", e.text());
        let long = Event::login_recovered("a", "x".repeat(5000));
        assert_eq!(long.text().chars().count(), MAX_TEXT_CHARS);
    }

    #[test]
    fn scrub_removes_secrets_from_message_and_fix() {
        let mut e =
            Event::login_failed("a", FailureClass::WrongMobile, "9876543210 refused", Some("9876543210?".into()));
        e.scrub(&["9876543210".into(), String::new()]);
        assert_eq!((e.message.as_str(), e.fix.as_deref()), ("[redacted] refused", Some("[redacted]?")));
    }

    #[test]
    fn times_are_shown_in_their_own_offset() {
        let open = DateTime::parse_from_rfc3339("2026-11-30T09:15:00+05:30").unwrap();
        let e = Event::token_missing_near_open("primary", open);
        assert!(e.message.contains("09:15 +05:30"), "{}", e.message);
        let e = Event::deadline_missed("primary", open, Some("bot block"));
        assert!(e.message.ends_with("last error: bot block"), "{}", e.message);
    }
}
