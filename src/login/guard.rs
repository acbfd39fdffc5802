//! The lockout guard: may this account submit a PIN now? A pure function of the persisted facts, the IST day and
//! the cap; the facts are kept by the caller (`coordinate`), counted *before* each click.
//!
//! Upstox blocks an account after 5 failed attempts and only a human unblocks it [doc help]. The guard refuses a
//! login when a PIN was rejected today, or when the day's PIN submissions that did not end with a code reached the
//! cap (`login.max_pin_submissions_per_day`, 1..=4).

use chrono::NaiveDate;

pub use crate::state::GuardFacts;

/// Why the guard said no.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("a PIN was rejected today ({day} IST); no further attempt today")]
    PinRejectedToday { day: NaiveDate },
    #[error(
        "{count} PIN submissions without a code today ({day} IST), the cap is {cap} (`login.max_pin_submissions_per_day`; Upstox blocks at 5)"
    )]
    CapReached { count: u32, cap: u32, day: NaiveDate },
}

/// `Ok` when one more PIN may be submitted on `day` under `cap`.
pub fn check(facts: &GuardFacts, day: NaiveDate, cap: u32) -> Result<(), Refusal> {
    if facts.pin_rejected_day == Some(day) {
        return Err(Refusal::PinRejectedToday { day });
    }
    let count = facts.pin_submissions_on(day);
    if count >= cap {
        return Err(Refusal::CapReached { count, cap, day });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: &str) -> NaiveDate {
        d.parse().unwrap()
    }

    #[test]
    fn the_cap_counts_today_only() {
        let facts = GuardFacts { pin_day: Some(day("2026-11-28")), pin_submissions: 2, pin_rejected_day: None };
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
}
