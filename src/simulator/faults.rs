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
    /// Wrong PINs that lock the account; 0 means Upstox's 5 [doc]. The locking attempt is answered with the lock
    /// (1017090) and the page shows the lock screen ("Due to too many incorrect PIN attempts, your account has been
    /// locked. … [1017090]", button "Unlock account") [code]; so do later PINs, mobiles and reloads.
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

    // The login page (upstox.md, "The hosted login page" and "More about the login app"). The page is unknown and
    // changes: each switch below makes the simulator's page differ from the one public scripts were written for.
    /// Every element id and class of the login app is renamed (`#mobileNum` → `#m-f3a9`, see
    /// `PageIds::RENAMED`), keeping the visible labels, placeholders, aria text and input attributes: a redesign
    /// that keeps the look [code: "the page has been redesigned before"].
    pub renamed_ids: bool,
    /// Errors appear as a toast `<div>` appended to `<body>` (no `role=alert`, no `aria-live`, not the step's error
    /// element) reading `<message> [<7-digit code>]`, e.g. "You have entered an incorrect PIN [1017106]"; the toast
    /// disappears after 8 s [code: the login bundle's error overlays]. Wins over `plain_errors`.
    pub toast_errors: bool,
    /// Errors appear as plain text in an element next to the input, without `role=alert` [code: redesigns].
    pub plain_errors: bool,
    /// The OTP input is masked `ddd-ddd` (typing 123456 shows 123-456, `maxlength=7`); the app strips the hyphen
    /// before submitting [code: the login bundle].
    pub masked_otp: bool,
    /// After the mobile step succeeds, an informational "OTP sent to your registered mobile number" appears where
    /// errors appear under the current error style (the `role=alert` element by default) while the page advances to
    /// the OTP step: a message that is not an error [code].
    pub info_toast_after_mobile: bool,
    /// The PIN input is rendered disabled and enables this many milliseconds after the PIN step is shown; 0: off
    /// [code: "buttons may be disabled until the input is valid", steps swapped in after XHRs].
    pub pin_input_disabled_ms: u64,
    /// After a correct PIN the app shows an unknown interstitial ("Confirm your device", some text, a button)
    /// instead of redirecting; no code is issued; the PIN is counted [3p: the page changes; a persisted or new
    /// device can be asked to confirm].
    pub interstitial_after_pin: bool,
    /// The OTP step is blocked: every OTP submission is answered "OTP is blocked due to multiple attempts. Please
    /// try after 10 minutes" with code 1017078 and the page disables the OTP input [code: 1017078/1017125, 600 s].
    pub otp_blocked: bool,
    /// The authorization dialog answers the JSON error envelope `UDAPI100068` (HTTP 400) even for a correct client
    /// and redirect URI [doc: the dialog's answer to a wrong client_id/redirect_uri].
    pub dialog_udapi100068: bool,

    // The v3 access-token request [doc] (`token_request.rs`).
    /// Milliseconds after an accepted v3 token request at which the user approves it by themselves (the simulator
    /// then POSTs the token to the notifier webhook); `None`: only `POST /sim/approve/{client_id}` approves.
    pub approve_after_ms: Option<u64>,
    /// The user never approves: no automatic approval, and `/sim/approve` answers 409 (a rejection sends nothing
    /// [doc]).
    pub never_approve: bool,
    /// Each approval POSTs the same delivery twice (webhooks must be idempotent).
    pub approve_twice: bool,
    /// The delivery's `client_id` is one nobody registered.
    pub notify_unknown_client: bool,
    /// The delivered access token is one the profile API rejects (401 `UDAPI100050`).
    pub notify_rejected_token: bool,

    // The REST API.
    /// `GET /v2/user/profile` answers 429 with an `UDAPI10005` envelope even for a valid token [doc: 10005 too many
    /// requests].
    pub profile_429: bool,
    /// The token success body carries `"user_name": null` (the other 11 fields as usual).
    pub token_null_user_name: bool,
    /// The token endpoint answers a 403 HTML firewall page (the same bytes every time) instead of JSON; the code is
    /// still spent [3p: Cloudflare fronts the API hosts; doc: a code is single-use even when the exchange fails].
    pub token_403_html: bool,
    /// Access tokens issued while this is on are rejected by the profile API with 401 `UDAPI100050` (the exchange
    /// itself succeeds): a token that is dead on arrival.
    pub profile_rejects_new_tokens: bool,

    // The market calendar.
    /// `GET /v2/market/holidays[/{date}]` answers 503 with an `UDAPI100500` envelope.
    pub holidays_5xx: bool,
}

impl Faults {
    pub(super) fn pin_limit(&self) -> u32 {
        if self.pin_lock_after == 0 { DEFAULT_PIN_LOCK_AFTER } else { self.pin_lock_after }
    }
}
