//! `[schedule]`'s market-day keys: trading holidays (`skip_holidays`, `extra_holidays_file`), retries until a
//! deadline (`retry_until`, `retry_*_backoff_secs`) and the token check before the open (`market_open`,
//! `token_check_mins_before_open`). Times of day are Asia/Kolkata, whatever `schedule.timezone` says: they are the
//! market's.
//!
//! Validation reads `extra_holidays_file` (like a secret file) and nothing else; the daemon re-reads it once a day
//! with the same parser.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{NaiveDate, NaiveTime, Timelike};

use super::raw::RawSchedule;
use super::validate::Problems;

/// The market-day policy, validated.
#[derive(Debug, Clone)]
pub struct MarketDay {
    /// Skip cron runs on days NSE is closed.
    pub skip_holidays: bool,
    /// The operator's file of extra closed dates, re-read once a day.
    pub extra_holidays_file: Option<PathBuf>,
    /// `extra_holidays_file` as read at validation (empty without a file).
    pub extra_holidays: BTreeSet<NaiveDate>,
    /// A failed cron run is retried until this time of day (IST).
    pub retry_until: NaiveTime,
    /// First pause between retried cron runs (doubling, with jitter).
    pub retry_min_backoff: Duration,
    /// Longest pause between retried cron runs.
    pub retry_max_backoff: Duration,
    /// When the market opens (IST), NSE's 09:15 by default.
    pub market_open: NaiveTime,
    /// How long before `market_open` every account must hold a valid token; `None`: no check.
    pub check_before_open: Option<Duration>,
}

impl Default for MarketDay {
    /// The defaults of `RawSchedule` (09:00 deadline, 09:15 open, check 15 minutes before, holidays skipped).
    fn default() -> Self {
        let mut p = Problems::default();
        // invariant: the built-in defaults are valid
        validate(&mut p, &RawSchedule::default()).expect("default [schedule] is valid")
    }
}

/// Check the market-day keys of `[schedule]`; `None` when any of them pushed a problem.
pub(super) fn validate(p: &mut Problems, raw: &RawSchedule) -> Option<MarketDay> {
    let before = p.len();
    let retry_until = time_of_day(p, "schedule.retry_until", &raw.retry_until);
    let market_open = time_of_day(p, "schedule.market_open", &raw.market_open);
    if raw.retry_max_backoff_secs == 0 {
        p.add("schedule.retry_max_backoff_secs", "must be greater than 0");
    }
    if raw.retry_min_backoff_secs > raw.retry_max_backoff_secs {
        p.add("schedule.retry_min_backoff_secs", "must not exceed `schedule.retry_max_backoff_secs`");
    }
    if let Some(open) = market_open {
        let minutes_since_midnight = u64::from(open.num_seconds_from_midnight() / 60);
        if raw.token_check_mins_before_open > minutes_since_midnight {
            p.add(
                "schedule.token_check_mins_before_open",
                format!(
                    "expected 0..={minutes_since_midnight} (the check must fall on the day of \
                     `schedule.market_open` {}), got {}",
                    open.format("%H:%M"),
                    raw.token_check_mins_before_open
                ),
            );
        }
    }
    let extra_holidays = match &raw.extra_holidays_file {
        Some(path) => read_extra_holidays(path).unwrap_or_else(|m| {
            p.add("schedule.extra_holidays_file", m);
            BTreeSet::new()
        }),
        None => BTreeSet::new(),
    };
    if p.len() > before {
        return None;
    }
    Some(MarketDay {
        skip_holidays: raw.skip_holidays,
        extra_holidays_file: raw.extra_holidays_file.clone(),
        extra_holidays,
        retry_until: retry_until?,
        retry_min_backoff: Duration::from_secs(raw.retry_min_backoff_secs),
        retry_max_backoff: Duration::from_secs(raw.retry_max_backoff_secs),
        market_open: market_open?,
        check_before_open: (raw.token_check_mins_before_open > 0)
            .then(|| Duration::from_secs(raw.token_check_mins_before_open * 60)),
    })
}

/// `HH:MM` or `HH:MM:SS`, 24-hour.
fn time_of_day(p: &mut Problems, key: &str, value: &str) -> Option<NaiveTime> {
    let v = value.trim();
    let parsed = NaiveTime::parse_from_str(v, "%H:%M:%S").or_else(|_| NaiveTime::parse_from_str(v, "%H:%M"));
    match parsed {
        Ok(t) => Some(t),
        Err(_) => {
            p.add(key, format!("expected a time of day as HH:MM or HH:MM:SS (Asia/Kolkata), got \"{value}\""));
            None
        }
    }
}

/// Read the operator's extra holidays file (see `parse_extra_holidays`). The error names the file and every bad
/// line.
pub fn read_extra_holidays(path: &Path) -> Result<BTreeSet<NaiveDate>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    parse_extra_holidays(&text).map_err(|m| format!("`{}`: {m}", path.display()))
}

/// The dates of an extra holidays file: one `YYYY-MM-DD` a line; `#` starts a comment (whole line or after the
/// date); blank lines are ignored. The error lists every bad line by number.
///
/// ```
/// use upstox_relogin::config::parse_extra_holidays;
///
/// let dates = parse_extra_holidays("# Diwali special\n2026-11-09\n\n2026-11-10  # bank\n").unwrap();
/// assert_eq!(dates.len(), 2);
/// assert!(parse_extra_holidays("2026-13-01\n").unwrap_err().contains("line 1"));
/// ```
pub fn parse_extra_holidays(text: &str) -> Result<BTreeSet<NaiveDate>, String> {
    let mut dates = BTreeSet::new();
    let mut bad = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or_default().trim();
        if content.is_empty() {
            continue;
        }
        let strict = content.len() == 10 && content.as_bytes()[4] == b'-' && content.as_bytes()[7] == b'-';
        match NaiveDate::parse_from_str(content, "%Y-%m-%d") {
            Ok(d) if strict => {
                dates.insert(d);
            }
            _ => bad.push(format!("line {}: expected a date as YYYY-MM-DD, got \"{content}\"", n + 1)),
        }
    }
    if bad.is_empty() { Ok(dates) } else { Err(bad.join("; ")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn extra_holidays_take_comments_and_name_bad_lines() {
        let dates = parse_extra_holidays("# operator's list\n\n2026-11-09\n2026-11-10 # Diwali\n2026-11-09\n").unwrap();
        assert_eq!(dates.into_iter().collect::<Vec<_>>(), [day("2026-11-09"), day("2026-11-10")]);
        let err = parse_extra_holidays("2026-11-09\n9 Nov 2026\n2026-02-30\n2026-1-5\n").unwrap_err();
        assert!(err.contains("line 2") && err.contains("line 3") && err.contains("line 4"), "{err}");
        assert!(!err.contains("line 1"), "{err}");
    }

    #[test]
    fn defaults_are_the_market_hours() {
        let m = MarketDay::default();
        assert_eq!(m.retry_until, NaiveTime::from_hms_opt(9, 0, 0).unwrap());
        assert_eq!(m.market_open, NaiveTime::from_hms_opt(9, 15, 0).unwrap());
        assert_eq!(m.check_before_open, Some(Duration::from_secs(15 * 60)));
        assert!(m.skip_holidays && m.extra_holidays.is_empty());
    }

    #[test]
    fn bad_values_name_their_keys() {
        let mut p = Problems::default();
        let raw = RawSchedule {
            retry_until: "9am".into(),
            market_open: "09:15:30".into(),
            token_check_mins_before_open: 600,
            retry_min_backoff_secs: 10,
            retry_max_backoff_secs: 5,
            extra_holidays_file: Some("/nonexistent/holidays.txt".into()),
            ..RawSchedule::default()
        };
        assert!(validate(&mut p, &raw).is_none());
        let text = p.to_string();
        for key in [
            "`schedule.retry_until`",
            "`schedule.token_check_mins_before_open`: expected 0..=555",
            "`schedule.retry_min_backoff_secs`",
            "`schedule.extra_holidays_file`: cannot read `/nonexistent/holidays.txt`",
        ] {
            assert!(text.contains(key), "{key} missing from {text}");
        }
        assert!(!text.contains("`schedule.market_open`:"), "HH:MM:SS is accepted: {text}");
    }
}
