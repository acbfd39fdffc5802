//! `Faults`: the misbehaviour a test or the `simulate` command can switch on, each modelling a habit of the real
//! Upstox (sources as in `/work/shared/docs/upstox.md`: [doc] Upstox's docs, [code] public scripts and the login
//! app's bundle, [3p] third-party reports).
//!
//! Pure data: every field defaults to "off", so `Faults::default()` is the well-behaved Upstox. This module never
//! acts on a fault itself (the handlers in `login.rs`, `api.rs`, `token_request.rs` and `market.rs` do).

use super::DEFAULT_PIN_LOCK_AFTER;

/// Misbehaviour to inject; changeable at runtime with `Simulator::set_faults` (which restarts every count below).
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// The first N POSTs to the token endpoint answer 503 with an `UDAPI100500` envelope (the code is still consumed).
    pub token_5xx_first: u32,
    /// Every backend XHR of the login SPA (hydration, mobile, otp, pin) waits this long before answering.
    pub step_delay_ms: u64,
    /// The PIN XHR is counted in the journal on arrival, then waits this long more before it is checked and
    /// answered: the redirect after the PIN arrives late, or (longer than the client waits) never.
    pub pin_delay_ms: u64,
    /// The first otherwise-valid TOTP submission is answered "Invalid OTP".
    pub reject_first_totp: bool,
    /// The login page is replaced by a Cloudflare-style "Access denied | Error 1010" page (HTTP 403).
    pub bot_block: bool,
    /// Wrong PINs before the account is blocked; 0 means Upstox's 5.
    pub pin_lock_after: u32,
    /// The final redirect carries a `state` other than the one the dialog received (a CSRF stand-in); the code is
    /// still issued.
    pub tamper_state: bool,
    /// After a correct PIN the app is sent to a Cloudflare "Access denied | Error 1010" page instead of the
    /// redirect (the block reported after PIN + OTP); no code is issued.
    pub bot_block_after_pin: bool,
    /// Every response's `Date` header is this many seconds ahead of the real clock (negative: behind), as if the
    /// local clock were skewed the other way.
    pub date_skew_secs: i64,

    // The market calendar.
    /// `GET /v2/market/holidays[/{date}]` answers 503 with an `UDAPI100500` envelope.
    pub holidays_5xx: bool,
}

impl Faults {
    pub(super) fn pin_limit(&self) -> u32 {
        if self.pin_lock_after == 0 { DEFAULT_PIN_LOCK_AFTER } else { self.pin_lock_after }
    }
}
