//! `[schedule]`'s values: the cron (six fields, seconds first, checked to fire at all) and the daemon's re-check of
//! published tokens (an interval within an IST window on some days), with the pure "when is the next check".

use std::time::Duration;

use super::validate::Problems;

/// The daemon's re-check of published tokens: every `interval` within `hours` (Asia/Kolkata, market hours by
/// default: 09:15–15:30) on `days` (Mon–Fri by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recheck {
    /// `None`: never (`schedule.recheck_interval_secs = 0`).
    pub interval: Option<Duration>,
    /// Start and end of the daily window, IST, start < end.
    pub hours: (chrono::NaiveTime, chrono::NaiveTime),
    pub days: Vec<chrono::Weekday>,
}

impl Recheck {
    /// The first moment at or after `after` inside the window (IST), or `None` when the re-check is off.
    pub fn next_check(&self, after: chrono::DateTime<chrono::Utc>) -> Option<chrono::DateTime<chrono::Utc>> {
        use chrono::{Datelike, TimeZone};
        self.interval?;
        let local = after.with_timezone(&chrono_tz::Asia::Kolkata);
        for offset in 0..8 {
            let day = local.date_naive() + chrono::Duration::days(offset);
            if !self.days.contains(&day.weekday()) {
                continue;
            }
            let (start, end) = (day.and_time(self.hours.0), day.and_time(self.hours.1));
            let now = local.naive_local();
            let at = if now < start {
                start
            } else if now < end {
                now
            } else {
                continue;
            };
            // invariant: Asia/Kolkata has a fixed offset, every local time maps to one instant
            return chrono_tz::Asia::Kolkata.from_local_datetime(&at).single().map(|t| t.with_timezone(&chrono::Utc));
        }
        None
    }
}

/// tokio-cron-scheduler's syntax: six fields, seconds first, day-of-month and day-of-week both honoured.
pub(super) fn validate_cron(expr: &str) -> Result<croner::Cron, String> {
    let fields = expr.split_whitespace().count();
    if fields != 6 {
        return Err(format!("expected 6 fields (sec min hour dom mon dow), got {fields} in \"{expr}\""));
    }
    let cron = croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expr)
        .map_err(|e| format!("invalid cron \"{expr}\": {e}"))?;
    // "0 0 0 30 2 *" (30 February) parses and never fires: the daemon would wait forever.
    if cron.find_next_occurrence(&chrono::Utc::now(), false).is_err() {
        return Err(format!("\"{expr}\" never fires (no such date); fix the day-of-month/month/day-of-week fields"));
    }
    Ok(cron)
}

/// `schedule.recheck_*`: the interval, the IST window `HH:MM-HH:MM` and the days.
pub(super) fn validate_recheck(p: &mut Problems, s: &super::raw::RawSchedule) -> Recheck {
    let parse_time = |t: &str| chrono::NaiveTime::parse_from_str(t.trim(), "%H:%M").ok();
    let hours = match s.recheck_hours.split_once('-').map(|(a, b)| (parse_time(a), parse_time(b))) {
        Some((Some(start), Some(end))) if start < end => (start, end),
        _ => {
            p.add(
                "schedule.recheck_hours",
                format!(
                    "expected \"HH:MM-HH:MM\" (IST, start before end) such as \"09:15-15:30\", got \"{}\"",
                    s.recheck_hours
                ),
            );
            (chrono::NaiveTime::MIN, chrono::NaiveTime::MIN)
        }
    };
    let mut days = Vec::new();
    for (i, day) in s.recheck_days.iter().enumerate() {
        match day.parse::<chrono::Weekday>() {
            Ok(d) => days.push(d),
            Err(_) => {
                p.add(format!("schedule.recheck_days[{i}]"), format!("expected a day such as \"Mon\", got \"{day}\""))
            }
        }
    }
    Recheck {
        interval: (s.recheck_interval_secs > 0).then(|| Duration::from_secs(s.recheck_interval_secs)),
        hours,
        days,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, NaiveTime, Utc, Weekday};

    fn market() -> Recheck {
        let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
        Recheck {
            interval: Some(Duration::from_secs(900)),
            hours: (t(9, 15), t(15, 30)),
            days: vec![Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri],
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn checks_fall_inside_market_hours_on_weekdays() {
        let r = market();
        // Monday 30 Nov 2026 (IST): before, inside, after the window.
        assert_eq!(r.next_check(at("2026-11-30T08:30:00+05:30")), Some(at("2026-11-30T09:15:00+05:30")));
        assert_eq!(r.next_check(at("2026-11-30T11:00:00+05:30")), Some(at("2026-11-30T11:00:00+05:30")));
        assert_eq!(r.next_check(at("2026-11-30T15:30:00+05:30")), Some(at("2026-12-01T09:15:00+05:30")));
        // Friday evening → Monday morning.
        assert_eq!(r.next_check(at("2026-12-04T16:00:00+05:30")), Some(at("2026-12-07T09:15:00+05:30")));
        // The window is IST whatever the caller's zone: 04:00 UTC is 09:30 IST.
        assert_eq!(r.next_check(at("2026-11-30T04:00:00Z")), Some(at("2026-11-30T04:00:00Z")));
    }

    #[test]
    fn no_interval_or_no_day_means_no_check() {
        assert_eq!(Recheck { interval: None, ..market() }.next_check(at("2026-11-30T10:00:00+05:30")), None);
        assert_eq!(Recheck { days: vec![], ..market() }.next_check(at("2026-11-30T10:00:00+05:30")), None);
    }

    #[test]
    fn a_cron_that_never_fires_is_refused() {
        assert!(validate_cron("0 0 0 30 2 *").unwrap_err().contains("never fires"));
        assert!(validate_cron("0 30 8 * * Mon-Fri").is_ok());
    }
}
