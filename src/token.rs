//! The token document every sink publishes, and Upstox's expiry rule.
//!
//! Pure data and pure time arithmetic: this module never performs I/O. The document's JSON form is part of the
//! public contract (`../shared/docs/contract.md`), so field names and order here must not change.

use chrono::{DateTime, Duration, FixedOffset, NaiveTime, TimeZone, Utc};
use chrono_tz::Asia::Kolkata;
use serde::{Deserialize, Serialize};

/// The hour and minute (Asia/Kolkata) at which every Upstox access token dies.
const EXPIRY_TIME_IST: (u32, u32) = (3, 30);

/// The first 03:30 Asia/Kolkata strictly after `issued_at` (Upstox's rule), as an IST timestamp.
///
/// ```
/// use chrono::{DateTime, Utc};
/// use upstox_relogin::token::expiry_for;
///
/// let morning: DateTime<Utc> = "2026-11-28T03:00:05Z".parse().unwrap(); // 08:30:05 IST
/// assert_eq!(expiry_for(morning).to_rfc3339(), "2026-11-29T03:30:00+05:30");
/// let small_hours: DateTime<Utc> = "2026-11-27T21:00:00Z".parse().unwrap(); // 02:30 IST on the 28th
/// assert_eq!(expiry_for(small_hours).to_rfc3339(), "2026-11-28T03:30:00+05:30");
/// ```
pub fn expiry_for(issued_at: DateTime<Utc>) -> DateTime<FixedOffset> {
    let local = issued_at.with_timezone(&Kolkata);
    let cutoff = NaiveTime::from_hms_opt(EXPIRY_TIME_IST.0, EXPIRY_TIME_IST.1, 0)
        // invariant: 03:30:00 is a valid time of day
        .expect("03:30 is a valid time");
    let mut day = local.date_naive();
    if local.time() >= cutoff {
        day = day.succ_opt().unwrap_or(day + Duration::days(1));
    }
    let naive = day.and_time(cutoff);
    // Kolkata has had a fixed +05:30 offset since 1945: every local time maps to exactly one instant.
    let expiry = Kolkata.from_local_datetime(&naive).single().expect("Asia/Kolkata has no DST gaps or folds");
    expiry.fixed_offset()
}

/// `now` rendered in IST with a `+05:30` offset, second precision, as the document shows times.
pub fn ist(at: DateTime<Utc>) -> DateTime<FixedOffset> {
    let local = at.with_timezone(&Kolkata).fixed_offset();
    local.with_nanosecond_zero()
}

trait WithNanosecondZero {
    fn with_nanosecond_zero(self) -> Self;
}

impl WithNanosecondZero for DateTime<FixedOffset> {
    fn with_nanosecond_zero(self) -> Self {
        chrono::Timelike::with_nanosecond(&self, 0).unwrap_or(self)
    }
}

/// The published token document: byte-identical across sinks for one login.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenDocument {
    pub account: String,
    pub access_token: String,
    /// The 1-year read-only token: present only in the sinks that ask for it (`include_extended_token`); the key
    /// is left out otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended_token: Option<String>,
    pub token_type: String,
    pub user_id: String,
    pub user_name: String,
    pub email: String,
    pub exchanges: Vec<String>,
    pub products: Vec<String>,
    pub issued_at: DateTime<FixedOffset>,
    pub expires_at: DateTime<FixedOffset>,
    pub generation: u64,
}

impl std::fmt::Debug for TokenDocument {
    // Hand-written so that the tokens never reach a log line through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenDocument")
            .field("account", &self.account)
            .field("access_token", &"[redacted]")
            .field("extended_token", &self.extended_token.as_ref().map(|_| "[redacted]"))
            .field("user_id", &self.user_id)
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl TokenDocument {
    /// The exact bytes every sink writes: pretty JSON with a trailing newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        // invariant: the document holds only strings, numbers and lists; serialising it cannot fail
        let mut bytes = serde_json::to_vec_pretty(self).expect("token document serialises");
        bytes.push(b'\n');
        bytes
    }

    /// The same document, whether or not either carries `extended_token` (sinks differ only in that).
    pub fn same_as(&self, other: &TokenDocument) -> bool {
        let strip = |d: &TokenDocument| TokenDocument { extended_token: None, ..d.clone() };
        strip(self) == strip(other)
    }

    /// True while `now` is before `expires_at`.
    pub fn is_unexpired(&self, now: DateTime<Utc>) -> bool {
        now < self.expires_at.with_timezone(&Utc)
    }

    /// Seconds since the Unix epoch at which the token dies (Redis `EXAT`).
    pub fn expires_at_unix(&self) -> i64 {
        self.expires_at.timestamp()
    }
}

/// The calendar day in Asia/Kolkata that `at` falls on (used to bucket per-day counters).
pub fn ist_day(at: DateTime<Utc>) -> chrono::NaiveDate {
    at.with_timezone(&Kolkata).date_naive()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn morning_login_expires_next_night() {
        let e = expiry_for(utc("2026-11-28T08:30:05+05:30"));
        assert_eq!(e.to_rfc3339(), "2026-11-29T03:30:00+05:30");
    }

    #[test]
    fn login_just_before_cutoff_expires_same_night() {
        let e = expiry_for(utc("2026-11-28T03:29:59+05:30"));
        assert_eq!(e.to_rfc3339(), "2026-11-28T03:30:00+05:30");
    }

    #[test]
    fn login_exactly_at_cutoff_expires_next_day() {
        let e = expiry_for(utc("2026-11-28T03:30:00+05:30"));
        assert_eq!(e.to_rfc3339(), "2026-11-29T03:30:00+05:30");
    }

    #[test]
    fn month_and_year_edges() {
        assert_eq!(expiry_for(utc("2026-11-30T10:00:00+05:30")).to_rfc3339(), "2026-12-01T03:30:00+05:30");
        assert_eq!(expiry_for(utc("2026-12-31T23:59:59+05:30")).to_rfc3339(), "2027-01-01T03:30:00+05:30");
        assert_eq!(expiry_for(utc("2028-02-28T09:00:00+05:30")).to_rfc3339(), "2028-02-29T03:30:00+05:30");
    }

    #[test]
    fn utc_evening_is_already_next_ist_day() {
        // 22:30 UTC is 04:00 IST the next day: past the cutoff, so expiry is the day after that.
        assert_eq!(expiry_for(utc("2026-11-28T22:30:00Z")).to_rfc3339(), "2026-11-30T03:30:00+05:30");
    }

    #[test]
    fn debug_hides_tokens() {
        let doc = TokenDocument {
            account: "a".into(),
            access_token: "SECRET-ACCESS".into(),
            extended_token: Some("SECRET-EXT".into()),
            token_type: "Bearer".into(),
            user_id: "U".into(),
            user_name: "N".into(),
            email: "e".into(),
            exchanges: vec![],
            products: vec![],
            issued_at: ist(Utc::now()),
            expires_at: expiry_for(Utc::now()),
            generation: 1,
        };
        let dbg = format!("{doc:?}");
        assert!(!dbg.contains("SECRET"), "{dbg}");
    }
}
