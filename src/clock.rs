//! The clock a run reads for the day its facts belong to (the lockout guard's IST day, the time a fallback or a
//! probe is recorded): the system's, or a manual one that a test sets and moves forward instead of waiting.
//!
//! Never sleeps and never drives the TOTP: a TOTP code must match Upstox's real clock (`totp` reads the system time).

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// `Utc::now()`.
    #[default]
    System,
    /// A time that only moves when told to (shared by clones).
    Manual(Arc<Mutex<DateTime<Utc>>>),
}

impl Clock {
    /// A manual clock showing `at`.
    pub fn manual(at: DateTime<Utc>) -> Self {
        Clock::Manual(Arc::new(Mutex::new(at)))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Manual(at) => *at.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// Move a manual clock forward by `by`; the system clock ignores it.
    pub fn advance(&self, by: chrono::Duration) {
        if let Clock::Manual(at) = self {
            let mut at = at.lock().unwrap_or_else(|p| p.into_inner());
            *at += by;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_clones_share_it() {
        let start = DateTime::parse_from_rfc3339("2026-11-28T03:00:00Z").unwrap().with_timezone(&Utc);
        let clock = Clock::manual(start);
        let shared = clock.clone();
        assert_eq!(clock.now(), start);
        shared.advance(chrono::Duration::days(1));
        assert_eq!(clock.now(), start + chrono::Duration::days(1));
        let system = Clock::System.now();
        assert!((Utc::now() - system).num_seconds().abs() < 5);
    }
}
