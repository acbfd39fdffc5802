//! TOTP codes for the login's second step (RFC 6238: SHA1, 6 digits, 30 s steps), and the timing rules around them.
//!
//! Pure computation over an explicit clock value: this module never sleeps, reads the clock or touches state.
//! Callers decide when to wait (`TotpPlan`) and remember which time step they used last.

use totp_rs::{Builder, Secret, Totp};

use crate::secret::TotpSecret;

/// Seconds in one TOTP window.
pub const STEP_SECS: u64 = 30;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TotpError {
    #[error("not valid base32 (letters A-Z and digits 2-7, as Upstox shows it when enabling TOTP)")]
    NotBase32,
    #[error("too short: {bits} bits after base32 decoding, expected at least 80")]
    TooShort { bits: usize },
}

/// Upper-case, drop spaces, dashes and `=` padding, then check it decodes and is long enough.
pub fn normalise_secret(raw: &str) -> Result<String, TotpError> {
    let cleaned: String =
        raw.chars().filter(|c| !c.is_whitespace() && *c != '-' && *c != '=').map(|c| c.to_ascii_uppercase()).collect();
    let bytes = Secret::try_from_base32(&cleaned).map_err(|_| TotpError::NotBase32)?.as_bytes().to_vec();
    if cleaned.is_empty() {
        return Err(TotpError::NotBase32);
    }
    if bytes.len() * 8 < 80 {
        return Err(TotpError::TooShort { bits: bytes.len() * 8 });
    }
    Ok(cleaned)
}

/// Generates codes for one account's secret.
pub struct TotpGenerator {
    totp: Totp,
}

impl std::fmt::Debug for TotpGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpGenerator([redacted])")
    }
}

/// A code and the time step it belongs to.
pub struct TotpCode {
    pub code: crate::secret::OneTimeCode,
    pub step: u64,
}

impl TotpGenerator {
    pub fn new(secret: &TotpSecret) -> Result<Self, TotpError> {
        let normalised = normalise_secret(secret.expose())?;
        let bytes = Secret::try_from_base32(&normalised).map_err(|_| TotpError::NotBase32)?;
        // Upstox secrets are 160 bits; `build()` would reject shorter ones that the validation above already allows.
        let totp = Builder::new().with_secret(bytes).with_digits(6).with_step_duration(STEP_SECS).build_noncompliant();
        Ok(Self { totp })
    }

    /// The code for the window containing `unix_secs`.
    pub fn code_at(&self, unix_secs: u64) -> TotpCode {
        TotpCode {
            code: crate::secret::OneTimeCode::new(self.totp.generate(unix_secs).to_string()),
            step: unix_secs / STEP_SECS,
        }
    }
}

/// What to do before typing a TOTP code at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpPlan {
    /// Type the code of the current window now.
    UseNow { step: u64 },
    /// Wait this many seconds for the window starting at `step` (too little time left, or the current step was used).
    WaitFor { secs: u64, step: u64 },
}

/// Decide whether the current window may be used: it must have at least `min_remaining` seconds left and must
/// not be a step already submitted (`last_used`).
pub fn plan(now_unix: u64, min_remaining: u64, last_used: Option<u64>) -> TotpPlan {
    let step = now_unix / STEP_SECS;
    let remaining = STEP_SECS - now_unix % STEP_SECS;
    let used = last_used.is_some_and(|u| u >= step);
    if remaining > min_remaining && !used {
        return TotpPlan::UseNow { step };
    }
    // The next step must itself be fresh: if `last_used` is ahead of the clock (skew), go past it.
    let target = last_used.map_or(step + 1, |u| (u + 1).max(step + 1));
    TotpPlan::WaitFor { secs: target * STEP_SECS - now_unix, step: target }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6238 appendix B test secret ("12345678901234567890"), SHA1.
    const RFC_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    #[test]
    fn rfc6238_vectors() {
        let g = TotpGenerator::new(&TotpSecret::new(RFC_SECRET)).unwrap();
        // The RFC lists 8 digits; the 6-digit codes are their last six.
        assert_eq!(g.code_at(59).code.expose(), "287082");
        assert_eq!(g.code_at(1111111109).code.expose(), "081804");
        assert_eq!(g.code_at(2000000000).code.expose(), "279037");
        assert_eq!(g.code_at(59).step, 1);
    }

    #[test]
    fn secret_is_normalised() {
        assert_eq!(normalise_secret("gezd gnbv gy3t qojq gezd gnbv gy3t qojq").unwrap(), RFC_SECRET);
        assert_eq!(normalise_secret("GEZDGNBVGY3TQOJQ====").unwrap(), "GEZDGNBVGY3TQOJQ");
        assert_eq!(normalise_secret("not base32!"), Err(TotpError::NotBase32));
        assert_eq!(normalise_secret("GEZDG"), Err(TotpError::TooShort { bits: 24 }));
    }

    #[test]
    fn plan_uses_the_window_when_time_is_left() {
        assert_eq!(plan(60, 5, None), TotpPlan::UseNow { step: 2 });
        assert_eq!(plan(84, 5, None), TotpPlan::UseNow { step: 2 }); // 6 s left
    }

    #[test]
    fn plan_waits_near_the_end_of_a_window() {
        assert_eq!(plan(85, 5, None), TotpPlan::WaitFor { secs: 5, step: 3 }); // 5 s left: not enough
        assert_eq!(plan(89, 5, None), TotpPlan::WaitFor { secs: 1, step: 3 });
    }

    #[test]
    fn plan_never_reuses_a_step() {
        assert_eq!(plan(61, 5, Some(2)), TotpPlan::WaitFor { secs: 29, step: 3 });
        assert_eq!(plan(61, 5, Some(1)), TotpPlan::UseNow { step: 2 });
        // A remembered step ahead of the clock (the clock went back) is never reused either.
        assert_eq!(plan(61, 5, Some(4)), TotpPlan::WaitFor { secs: 89, step: 5 });
    }
}
