//! The lockout guard: may this account submit a PIN now? A pure function of the persisted facts, the IST day and
//! the cap; the facts are kept by the caller (`coordinate`), counted *before* each click.
//!
//! Upstox blocks an account after 5 failed attempts and only a human unblocks it [doc help]. Two rules, both
//! checked before every PIN:
//! - the real invariant: at most `MAX_PINS_WITHOUT_CODE_IN_A_ROW` (4) PIN submissions without a code in a row,
//!   whatever the days and restarts; only a PIN that ends with a code or `reset-guard` starts the count again;
//! - the daily rule: none after a PIN was rejected today, and at most `login.max_pin_submissions_per_day` (1..=4,
//!   default 2) without a code per IST day.

use chrono::NaiveDate;

pub use crate::state::GuardFacts;

/// PIN submissions without a code in a row after which no PIN is submitted until a human says so (`reset-guard`)
/// or a login succeeds. One below Upstox's 5 [doc help].
pub const MAX_PINS_WITHOUT_CODE_IN_A_ROW: u32 = 4;

/// Why the guard said no.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "{count} PIN submissions in a row ended without a code (Upstox blocks the account at 5); none is tried again until a human checks the PIN and runs `upstox-relogin reset-guard ACCOUNT`"
    )]
    InARow { count: u32 },
    #[error("a PIN was rejected today ({day} IST); no further attempt today")]
    PinRejectedToday { day: NaiveDate },
    #[error(
        "{count} PIN submissions without a code today ({day} IST), the cap is {cap} (`login.max_pin_submissions_per_day`; Upstox blocks at 5)"
    )]
    CapReached { count: u32, cap: u32, day: NaiveDate },
}

/// `Ok` when one more PIN may be submitted on `day` under the daily `cap`.
pub fn check(facts: &GuardFacts, day: NaiveDate, cap: u32) -> Result<(), Refusal> {
    if facts.pins_without_code_in_a_row >= MAX_PINS_WITHOUT_CODE_IN_A_ROW {
        return Err(Refusal::InARow { count: facts.pins_without_code_in_a_row });
    }
    if facts.pin_rejected_day == Some(day) {
        return Err(Refusal::PinRejectedToday { day });
    }
    let count = facts.pin_submissions_on(day);
    if count >= cap {
        return Err(Refusal::CapReached { count, cap, day });
    }
    Ok(())
}

/// The facts after a PIN is submitted on `day` (before the click).
pub fn pin_submitted(facts: &mut GuardFacts, day: NaiveDate) {
    facts.pin_submissions = facts.pin_submissions_on(day) + 1;
    facts.pin_day = Some(day);
    facts.pins_without_code_in_a_row += 1;
}

/// The facts after a PIN ended with a code: nothing counts against the account any more.
pub fn code_received(facts: &mut GuardFacts) {
    facts.pin_submissions = 0;
    facts.pins_without_code_in_a_row = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: &str) -> NaiveDate {
        d.parse().unwrap()
    }

    #[test]
    fn the_cap_counts_today_only() {
        let facts = GuardFacts {
            pin_day: Some(day("2026-11-28")),
            pin_submissions: 2,
            pins_without_code_in_a_row: 2,
            ..Default::default()
        };
        assert_eq!(
            check(&facts, day("2026-11-28"), 2),
            Err(Refusal::CapReached { count: 2, cap: 2, day: day("2026-11-28") })
        );
        assert_eq!(check(&facts, day("2026-11-28"), 3), Ok(()));
        assert_eq!(check(&facts, day("2026-11-29"), 2), Ok(()), "a new IST day starts at zero");
    }

    #[test]
    fn a_rejected_pin_closes_the_day() {
        let facts = GuardFacts { pin_rejected_day: Some(day("2026-11-28")), ..Default::default() };
        assert_eq!(check(&facts, day("2026-11-28"), 4), Err(Refusal::PinRejectedToday { day: day("2026-11-28") }));
        assert_eq!(check(&facts, day("2026-11-29"), 4), Ok(()));
    }

    /// Whatever the cap and however the days fall, no fifth PIN without a code is ever allowed in a row.
    #[test]
    fn never_more_than_four_in_a_row_across_days() {
        for cap in 1..=4 {
            let mut facts = GuardFacts::default();
            let mut allowed = 0;
            // Every day, submit PINs until the guard says no; none ever ends with a code.
            for d in 0..30 {
                let today = day("2026-11-01") + chrono::Days::new(d);
                while check(&facts, today, cap).is_ok() {
                    pin_submitted(&mut facts, today);
                    allowed += 1;
                    assert!(allowed <= MAX_PINS_WITHOUT_CODE_IN_A_ROW, "cap {cap}: a 5th PIN in a row on day {d}");
                }
            }
            assert_eq!(allowed, MAX_PINS_WITHOUT_CODE_IN_A_ROW, "cap {cap}: the invariant, not the cap, stops it");
            assert_eq!(check(&facts, day("2027-01-01"), cap), Err(Refusal::InARow { count: 4 }));
            // Only a code (or reset-guard, which clears the facts) opens it again.
            code_received(&mut facts);
            assert_eq!(check(&facts, day("2027-01-01"), cap), Ok(()));
        }
    }

    #[test]
    fn a_code_resets_the_run_of_failures_but_not_a_rejected_day() {
        let today = day("2026-11-28");
        let mut facts = GuardFacts { pins_without_code_in_a_row: 3, ..Default::default() };
        pin_submitted(&mut facts, today);
        assert_eq!((facts.pin_submissions, facts.pins_without_code_in_a_row), (1, 4));
        code_received(&mut facts);
        assert_eq!((facts.pin_submissions, facts.pins_without_code_in_a_row), (0, 0));
        assert_eq!(facts.pin_day, Some(today));
    }
}
