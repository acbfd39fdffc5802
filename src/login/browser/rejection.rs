//! What a message on the login page means: Upstox's bracketed 7-digit code first (`<message> [1017106]`), then the
//! words. A pure function of the text (and of the time it was seen, for "retry after"); the page reading that finds
//! the messages is `page`, the decision to stop or go on is `flow`'s.
//!
//! Codes and texts are from the login app's bundle and forum reports (`shared/docs/upstox.md`, "More about the login
//! app") [code, 3p]. An informational notice ("OTP sent to your registered mobile number") is not a rejection; a
//! message this module does not recognise is its own kind (`Unrecognised`), never mistaken for a timeout.

use chrono::{DateTime, FixedOffset, Utc};

/// How long Upstox blocks OTP after too many attempts [code: 1017078/1017125 resend locked for 600 s; 3p: 10 min].
pub const OTP_BLOCK: chrono::Duration = chrono::Duration::minutes(10);

/// What kind of refusal a page message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionKind {
    /// "Please enter a valid 10-digit mobile number", "Mobile number is not registered".
    WrongMobile,
    /// "Invalid OTP".
    TotpRejected,
    /// `1017106` "You have entered an incorrect PIN".
    WrongPin,
    /// `1017090` "…your account has been locked" (too many wrong PINs), or blocked.
    AccountLocked,
    /// `1017078`/`1017125` OTP blocked, `1017069` OTP generation blocked: about 10 minutes.
    OtpBlocked,
    /// `1017079`, `1017084`, `1017095`, `1017105`, `1017007`, "session expired": back to the start.
    StartAgain,
    /// "Something went wrong" (the app's approval failed).
    SomethingWentWrong,
    /// A message this program does not know.
    Unrecognised,
}

/// A message the page showed instead of advancing, as shown (secrets removed), with its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRejection {
    pub kind: RejectionKind,
    /// The page's text, verbatim except for any secret (replaced by `[redacted]`).
    pub text: String,
    /// The 7-digit Upstox code, when the message carried one.
    pub code: Option<u32>,
    /// When the page said it, in IST.
    pub seen_at: DateTime<FixedOffset>,
}

impl PageRejection {
    /// Classify `text` seen at `now`. `None`: an informational notice or a progress text, not a refusal.
    pub fn read(text: &str, now: DateTime<Utc>) -> Option<Self> {
        let code = bracketed_code(text);
        let kind = code.and_then(kind_of_code).or_else(|| kind_of_text(text))?;
        Some(Self { kind, text: text.trim().to_owned(), code, seen_at: crate::token::ist(now) })
    }

    /// For `OtpBlocked`: when Upstox is expected to accept an OTP again.
    pub fn retry_at(&self) -> Option<DateTime<FixedOffset>> {
        (self.kind == RejectionKind::OtpBlocked).then(|| self.seen_at + OTP_BLOCK)
    }
}

/// `[1017090]` → 1017090: seven digits in square brackets, anywhere in the text.
pub fn bracketed_code(text: &str) -> Option<u32> {
    let bytes = text.as_bytes();
    (0..bytes.len().saturating_sub(8)).find_map(|i| {
        let window = &bytes[i..i + 9];
        (window[0] == b'[' && window[8] == b']' && window[1..8].iter().all(u8::is_ascii_digit))
            .then(|| text[i + 1..i + 8].parse().ok())
            .flatten()
    })
}

fn kind_of_code(code: u32) -> Option<RejectionKind> {
    Some(match code {
        1_017_090 => RejectionKind::AccountLocked,
        1_017_106 => RejectionKind::WrongPin,
        1_017_078 | 1_017_125 | 1_017_069 => RejectionKind::OtpBlocked,
        1_017_079 | 1_017_084 | 1_017_095 | 1_017_105 | 1_017_007 => RejectionKind::StartAgain,
        _ => return None,
    })
}

fn kind_of_text(text: &str) -> Option<RejectionKind> {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
    let word = |w: &str| words.contains(&w);
    let any = |phrases: &[&str]| phrases.iter().any(|p| lower.contains(p));
    let refused = any(&["incorrect", "invalid", "wrong", "does not match", "doesn't match", "mismatch", "expired"]);
    let otp = word("otp") || word("totp");
    let kind = if otp && any(&["blocked", "locked", "disabled"]) || any(&["try after", "try again after"]) {
        RejectionKind::OtpBlocked
    } else if (word("account") || word("user")) && any(&["locked", "blocked", "suspended", "frozen"])
        || any(&["too many incorrect", "unlock your account"])
    {
        RejectionKind::AccountLocked
    } else if word("pin") && refused {
        RejectionKind::WrongPin
    } else if (otp || word("code")) && refused {
        RejectionKind::TotpRejected
    } else if (word("mobile") || word("phone")) && (refused || any(&["not registered", "valid 10", "valid mobile"])) {
        RejectionKind::WrongMobile
    } else if word("session") && any(&["expired", "timed out", "invalid"])
        || any(&["start again", "log in again", "login again", "start over", "sign in again"])
    {
        RejectionKind::StartAgain
    } else if any(&["something went wrong", "went wrong", "unable to process", "technical error"]) {
        RejectionKind::SomethingWentWrong
    } else if is_notice(&lower) {
        return None;
    } else {
        RejectionKind::Unrecognised
    };
    Some(kind)
}

/// Notices that appear on success or while waiting: "OTP sent to your registered mobile number", "Verifying…".
fn is_notice(lower: &str) -> bool {
    [
        "sent to",
        "has been sent",
        "otp sent",
        "sent successfully",
        "successfully",
        "resent",
        "loading",
        "please wait",
        "verifying",
        "processing",
        "redirecting",
        "signing in",
        "logging in",
    ]
    .iter()
    .any(|p| lower.contains(p))
        || lower.ends_with("...")
        || lower.ends_with('…')
}

#[cfg(test)]
mod tests {
    use super::*;
    use RejectionKind::*;

    fn kind(text: &str) -> Option<RejectionKind> {
        PageRejection::read(text, Utc::now()).map(|r| r.kind)
    }

    #[test]
    fn codes_come_first() {
        assert_eq!(bracketed_code("You have entered an incorrect PIN [1017106]"), Some(1_017_106));
        assert_eq!(bracketed_code("[1017090]"), Some(1_017_090));
        assert_eq!(bracketed_code("no code [101709] or [10170900]"), None);
        // The code wins over words that would say something else.
        assert_eq!(kind("Something went wrong [1017090]"), Some(AccountLocked));
        assert_eq!(kind("Please try again [1017106]"), Some(WrongPin));
        assert_eq!(kind("Resend is locked [1017125]"), Some(OtpBlocked));
        assert_eq!(kind("OTP generation blocked [1017069]"), Some(OtpBlocked));
        for code in [1_017_079, 1_017_084, 1_017_095, 1_017_105, 1_017_007] {
            assert_eq!(kind(&format!("Please start again [{code}]")), Some(StartAgain), "{code}");
        }
        // An unknown code falls back to the words.
        assert_eq!(kind("Invalid OTP [1019999]"), Some(TotpRejected));
        assert_eq!(kind("Nope [1019999]"), Some(Unrecognised));
    }

    #[test]
    fn texts_seen_on_upstox_and_its_redesigns() {
        let cases = [
            ("You have entered an incorrect PIN", Some(WrongPin)),
            ("Invalid PIN. Please try again.", Some(WrongPin)),
            ("Invalid OTP", Some(TotpRejected)),
            ("The code you entered is incorrect", Some(TotpRejected)),
            ("OTP is blocked due to multiple attempts. Please try after 10 minutes", Some(OtpBlocked)),
            (
                "Due to too many incorrect PIN attempts, your account has been locked. Unlock your account by verifying your details.",
                Some(AccountLocked),
            ),
            (
                "Your account has been blocked due to multiple incorrect attempts. Please reset your PIN to unblock.",
                Some(AccountLocked),
            ),
            ("Please enter a valid 10-digit mobile number", Some(WrongMobile)),
            ("Mobile number is not registered with Upstox", Some(WrongMobile)),
            ("Your login session has expired. Please go back to the app and log in again.", Some(StartAgain)),
            ("Something went wrong. Please try again.", Some(SomethingWentWrong)),
            ("Confirm your device to continue", Some(Unrecognised)),
            ("OTP sent to your registered mobile number", None),
            ("OTP has been sent successfully", None),
            ("Verifying…", None),
            ("Please wait", None),
        ];
        for (text, expected) in cases {
            assert_eq!(kind(text), expected, "{text}");
        }
    }

    #[test]
    fn pin_is_a_word_not_a_substring() {
        assert_eq!(kind("Your opinion is invalid"), Some(Unrecognised));
        assert_eq!(kind("Enter your 6-digit PIN"), Some(Unrecognised), "a prompt, not a refusal");
    }

    #[test]
    fn otp_block_says_when_to_retry_in_ist() {
        let at = DateTime::parse_from_rfc3339("2026-11-29T03:00:00Z").unwrap().with_timezone(&Utc);
        let r = PageRejection::read("OTP blocked [1017078]", at).unwrap();
        assert_eq!(r.code, Some(1_017_078));
        assert_eq!(r.retry_at().unwrap().to_rfc3339(), "2026-11-29T08:40:00+05:30");
        assert_eq!(PageRejection::read("Invalid OTP", at).unwrap().retry_at(), None);
    }
}
