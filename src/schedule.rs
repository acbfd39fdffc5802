//! When things are due, as pure functions of the schedule, the known closed days and `now`: whether an account
//! should hold a token by now (`due_since`), until when a failed scheduled run is retried (`retry_deadline`), and
//! when to check tokens before the market opens (`next_open_check`).
//!
//! Nothing here reads the clock, sleeps or does I/O: the daemon and the status report pass `now` in, which is what
//! makes these rules testable at any hour. Times of the market day are Asia/Kolkata; cron ticks are evaluated in
//! `schedule.timezone` and judged by the IST date they fall on.

use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Asia::Kolkata;

use crate::config::{MarketDay, ScheduleConfig};
use crate::market::ClosedDays;
use crate::token;

/// Ticks and days looked at before giving up (a day holds at most two IST dates' worth of ticks to judge).
const MAX_DAYS_AHEAD: usize = 15;

/// The most recent 03:30 IST at or before `now`: when the last token died (Upstox's rule, `token::expiry_for`).
pub fn last_expiry(now: DateTime<Utc>) -> DateTime<Utc> {
    token::expiry_for(now).with_timezone(&Utc) - chrono::Duration::days(1)
}

/// `time` on the IST date `date`, as an instant.
pub fn ist_at(date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    // Kolkata has had a fixed +05:30 offset since 1945: every local time maps to exactly one instant.
    Kolkata.from_local_datetime(&date.and_time(time)).single().expect("Asia/Kolkata has no gaps or folds").to_utc()
}

/// The first scheduled run since the last token expiry (03:30 IST), up to `now`, that was not skipped as a
/// holiday: from then on the account should hold a valid token. `None`: not due yet (no run since the expiry, e.g.
/// overnight, on a weekend without ticks, or on a day NSE is closed while `schedule.skip_holidays` is on).
pub fn due_since(schedule: &ScheduleConfig, closed: &ClosedDays, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    // One second before, so that a tick at 03:30:00 itself counts (`next_run` is strictly after).
    let mut after = last_expiry(now) - chrono::Duration::seconds(1);
    for _ in 0..MAX_DAYS_AHEAD {
        let tick = schedule.next_run(after)?.to_utc();
        if tick > now {
            return None;
        }
        let date = token::ist_day(tick);
        if !(schedule.market.skip_holidays && closed.closed_on(date).is_some()) {
            return Some(tick);
        }
        // Every tick of a closed IST date is skipped: look from the next date on.
        after = ist_at(date.succ_opt()?, NaiveTime::MIN) - chrono::Duration::seconds(1);
    }
    None
}

/// Until when a failed scheduled run that started at `started` is retried: `retry_until` on its IST date, when that
/// is still ahead. `None`: the run started after the day's deadline, so it is not retried.
pub fn retry_deadline(market: &MarketDay, started: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let deadline = ist_at(token::ist_day(started), market.retry_until);
    (deadline > started).then_some(deadline)
}

/// The next token check before the open, strictly after `now`: `(check_at, open_at)`, the check falling
/// `check_before_open` before `market_open` on the next IST date the cron runs on. Whether NSE is open that day is
/// for the caller to ask when the time comes (holidays can be declared meanwhile). `None` when the check is off or
/// the cron does not run in the next fortnight.
pub fn next_open_check(schedule: &ScheduleConfig, now: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let before = chrono::Duration::from_std(schedule.market.check_before_open?).ok()?;
    let mut date = token::ist_day(now);
    for _ in 0..MAX_DAYS_AHEAD {
        let open = ist_at(date, schedule.market.market_open);
        let check = open - before;
        if check > now && cron_runs_on(schedule, date) {
            return Some((check, open));
        }
        date = date.succ_opt()?;
    }
    None
}

/// Whether the cron fires at least once on the IST date `date`.
fn cron_runs_on(schedule: &ScheduleConfig, date: NaiveDate) -> bool {
    let from = ist_at(date, NaiveTime::MIN) - chrono::Duration::seconds(1);
    schedule.next_run(from).is_some_and(|t| token::ist_day(t.to_utc()) == date)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::config::OnStart;
    use crate::market::Holiday;

    fn schedule(cron: &str, timezone: chrono_tz::Tz) -> ScheduleConfig {
        let parsed = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Required)
            .dom_and_dow(true)
            .build()
            .parse(cron)
            .unwrap();
        let recheck = crate::config::Recheck { interval: None, hours: Default::default(), days: Vec::new() };
        ScheduleConfig {
            cron: cron.into(),
            parsed,
            timezone,
            on_start: OnStart::IfStale,
            market: MarketDay::default(),
            recheck,
            probe: None,
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn closed(dates: &[&str]) -> ClosedDays {
        let list: Vec<Holiday> = dates
            .iter()
            .map(|d| Holiday {
                date: d.parse().unwrap(),
                description: "holiday".into(),
                holiday_type: "TRADING_HOLIDAY".into(),
                closed_exchanges: vec!["NSE".into()],
            })
            .collect();
        ClosedDays::new(&list, &BTreeSet::new())
    }

    #[test]
    fn last_expiry_is_the_latest_0330_ist() {
        assert_eq!(last_expiry(at("2026-11-30T05:00:00+05:30")), at("2026-11-30T03:30:00+05:30"));
        assert_eq!(last_expiry(at("2026-11-30T03:29:59+05:30")), at("2026-11-29T03:30:00+05:30"));
        assert_eq!(last_expiry(at("2026-11-30T03:30:00+05:30")), at("2026-11-30T03:30:00+05:30"));
    }

    #[test]
    fn an_account_is_due_from_the_first_run_after_the_expiry() {
        let s = schedule("0 30 8 * * Mon-Fri", Kolkata);
        let none = closed(&[]);
        // Monday 2026-11-30: overnight and before the run, not due; from 08:30 on, due until the next expiry.
        assert_eq!(due_since(&s, &none, at("2026-11-30T05:00:00+05:30")), None);
        assert_eq!(due_since(&s, &none, at("2026-11-30T08:29:59+05:30")), None);
        let run = Some(at("2026-11-30T08:30:00+05:30"));
        assert_eq!(due_since(&s, &none, at("2026-11-30T08:30:00+05:30")), run);
        assert_eq!(due_since(&s, &none, at("2026-12-01T02:00:00+05:30")), run, "still due before Tuesday's 03:30");
        assert_eq!(due_since(&s, &none, at("2026-12-01T04:00:00+05:30")), None);
        // The weekend has no run: never due.
        assert_eq!(due_since(&s, &none, at("2026-12-05T12:00:00+05:30")), None);
        assert_eq!(due_since(&s, &none, at("2026-12-07T01:00:00+05:30")), None, "Monday before 03:30");
    }

    #[test]
    fn a_closed_day_is_not_due_unless_holidays_are_not_skipped() {
        let mut s = schedule("0 30 8 * * Mon-Fri", Kolkata);
        let monday = closed(&["2026-11-30"]);
        assert_eq!(due_since(&s, &monday, at("2026-11-30T12:00:00+05:30")), None);
        assert_eq!(due_since(&s, &monday, at("2026-12-01T02:00:00+05:30")), None);
        assert_eq!(due_since(&s, &monday, at("2026-12-01T08:31:00+05:30")), Some(at("2026-12-01T08:30:00+05:30")));
        s.market.skip_holidays = false;
        assert_eq!(due_since(&s, &monday, at("2026-11-30T12:00:00+05:30")), Some(at("2026-11-30T08:30:00+05:30")));
    }

    #[test]
    fn ticks_in_another_time_zone_are_judged_by_their_ist_date() {
        // 03:00 UTC is 08:30 IST.
        let s = schedule("0 0 3 * * Mon-Fri", chrono_tz::UTC);
        assert_eq!(due_since(&s, &closed(&[]), at("2026-11-30T09:00:00+05:30")), Some(at("2026-11-30T03:00:00Z")));
        assert_eq!(due_since(&s, &closed(&["2026-11-30"]), at("2026-11-30T09:00:00+05:30")), None);
    }

    #[test]
    fn retries_end_at_the_days_deadline() {
        let m = MarketDay::default();
        assert_eq!(retry_deadline(&m, at("2026-11-30T08:30:00+05:30")), Some(at("2026-11-30T09:00:00+05:30")));
        assert_eq!(retry_deadline(&m, at("2026-11-30T09:00:00+05:30")), None);
        assert_eq!(retry_deadline(&m, at("2026-11-30T23:00:00+05:30")), None);
    }

    #[test]
    fn the_open_check_falls_on_days_the_cron_runs() {
        let mut s = schedule("0 30 8 * * Mon-Fri", Kolkata);
        let (check, open) = next_open_check(&s, at("2026-11-30T08:00:00+05:30")).unwrap();
        assert_eq!((check, open), (at("2026-11-30T09:00:00+05:30"), at("2026-11-30T09:15:00+05:30")));
        // After Friday's check, the next is Monday's.
        let (check, _) = next_open_check(&s, at("2026-12-04T09:00:00+05:30")).unwrap();
        assert_eq!(check, at("2026-12-07T09:00:00+05:30"));
        s.market.check_before_open = None;
        assert_eq!(next_open_check(&s, at("2026-11-30T08:00:00+05:30")), None);
    }
}
