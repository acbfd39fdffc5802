//! `Journal`: what the simulator saw, for tests to assert on ("the other side's view"): every submission, code,
//! token, login session (when it opened and how it ended), v3 token request and webhook delivery.
//!
//! Pure data and pure arithmetic over it; the handlers append, `Simulator::journal` hands out a copy. It holds auth
//! codes and TOTP codes (tests compare them) but never a PIN, a client secret or an access token, and nothing here
//! is ever logged.

use std::time::Instant;

/// What happened so far, for tests. Values are recorded even for failed requests.
#[derive(Clone, Debug, Default)]
pub struct Journal {
    /// Every `code` POSTed to the token endpoint, in order (even failed or invalid ones).
    pub token_posts: Vec<String>,
    /// Every auth code the login page handed out.
    pub codes_issued: Vec<String>,
    /// Every POST to the mobile step, counted on arrival (before `Faults::step_delay_ms`).
    pub mobile_submissions: u32,
    /// Every POST to the PIN step.
    pub pin_submissions: u32,
    /// PIN submissions that did not match the user's PIN.
    pub wrong_pins: u32,
    /// Every TOTP code submitted, in order.
    pub totp_submissions: Vec<String>,
    /// Access tokens minted by the token exchange (`POST /v2/login/authorization/token`); v3 deliveries are in
    /// `deliveries`.
    pub access_tokens_issued: u32,
    /// The `state` values received at the dialog.
    pub states_seen: Vec<String>,
    /// One record per login session the dialog opened, in opening order.
    pub logins: Vec<LoginRecord>,
    /// Every v3 access-token request received (`POST /v3/login/auth/token/request/{client_id}`), in order.
    pub token_requests: Vec<TokenRequestSeen>,
    /// Every POST the simulator made to a notifier webhook, in order.
    pub deliveries: Vec<Delivery>,
}

/// One pass through the dialog and the login app, as the server saw it.
#[derive(Clone, Debug)]
pub struct LoginRecord {
    /// The client whose dialog opened the session.
    pub client_id: String,
    /// The mobile number last accepted at the mobile step; `None` until one was.
    pub mobile: Option<String>,
    /// When the dialog opened the session.
    pub opened: Instant,
    /// The last request that named this session (page load, hydration, any step's XHR), or `opened`.
    pub last_seen: Instant,
    /// PIN XHRs for this session, counted on arrival.
    pub pin_submissions: u32,
    /// Of those, the ones with a wrong PIN.
    pub wrong_pins: u32,
    /// How and when the login ended; `None` while the server has seen no end (in flight, or abandoned by the client).
    pub ended: Option<(Instant, LoginEnd)>,
}

impl LoginRecord {
    /// Until when the login counts as in flight: its end if the server saw one, else the last request it made.
    pub fn in_flight_until(&self) -> Instant {
        self.ended.map_or(self.last_seen, |(at, _)| at)
    }
}

/// How a login session ended, as far as the server can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginEnd {
    /// The PIN was right and an auth code was handed out.
    CodeIssued,
    /// The account is locked (this session's wrong PIN locked it, or it was locked already).
    Locked,
    /// The correct PIN led to the bot-block page (`Faults::bot_block_after_pin`): no code.
    BotBlocked,
    /// The correct PIN led to the unknown interstitial (`Faults::interstitial_after_pin`): no code.
    Interstitial,
    /// The session outlived its 15 minutes and was forgotten when next named.
    Expired,
}

/// One v3 access-token request as received (the secret is never kept).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequestSeen {
    /// The `{client_id}` path segment.
    pub client_id: String,
    /// Whether it was answered `success` (a pending request now waits for approval).
    pub accepted: bool,
}

/// One POST to a notifier webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The `client_id` the body carried (not a registered one under `Faults::notify_unknown_client`).
    pub client_id: String,
    /// The `user_id` the body carried.
    pub user_id: String,
    /// Where it was POSTed.
    pub url: String,
    /// The webhook's HTTP status; `None` when no answer came (connection refused, timeout).
    pub status: Option<u16>,
}

impl Journal {
    /// The most login sessions that were in flight at one instant. A session is in flight from the dialog until
    /// the server saw it end (code issued, account locked, bot-block or interstitial after the PIN, expiry) or, when
    /// it never ended, until the last request that named it (a client that gave up is indistinguishable from one
    /// that is still typing, so ask after the run).
    pub fn max_concurrent_logins(&self) -> usize {
        // +1 at an opening, -1 at an end; at equal instants ends go first, so back-to-back logins do not overlap.
        let mut events: Vec<(Instant, i8)> = Vec::with_capacity(self.logins.len() * 2);
        for login in &self.logins {
            events.push((login.opened, 1));
            events.push((login.in_flight_until(), -1));
        }
        events.sort_unstable();
        let (mut now, mut max) = (0i64, 0i64);
        for (_, delta) in events {
            now += i64::from(delta);
            max = max.max(now);
        }
        usize::try_from(max).unwrap_or(0)
    }

    /// The login sessions that got as far as accepting `mobile` at the mobile step.
    pub fn logins_for(&self, mobile: &str) -> usize {
        self.logins.iter().filter(|l| l.mobile.as_deref() == Some(mobile)).count()
    }

    /// PIN XHRs (right or wrong) in sessions of the account with this mobile.
    pub fn pins_for(&self, mobile: &str) -> u32 {
        self.logins.iter().filter(|l| l.mobile.as_deref() == Some(mobile)).map(|l| l.pin_submissions).sum()
    }

    /// Wrong PINs in sessions of the account with this mobile.
    pub fn wrong_pins_for(&self, mobile: &str) -> u32 {
        self.logins.iter().filter(|l| l.mobile.as_deref() == Some(mobile)).map(|l| l.wrong_pins).sum()
    }

    /// Auth codes handed out to the account with this mobile.
    pub fn codes_for(&self, mobile: &str) -> usize {
        self.logins
            .iter()
            .filter(|l| l.mobile.as_deref() == Some(mobile) && matches!(l.ended, Some((_, LoginEnd::CodeIssued))))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn login(opened: Instant, from_ms: u64, to_ms: u64, end: Option<LoginEnd>, mobile: &str) -> LoginRecord {
        let at = |ms| opened + Duration::from_millis(ms);
        LoginRecord {
            client_id: "c".into(),
            mobile: Some(mobile.into()),
            opened: at(from_ms),
            last_seen: at(to_ms),
            pin_submissions: 1,
            wrong_pins: 0,
            ended: end.map(|e| (at(to_ms), e)),
        }
    }

    #[test]
    fn concurrency_counts_overlaps_and_not_back_to_back_logins() {
        let t = Instant::now();
        let mut journal = Journal::default();
        assert_eq!(journal.max_concurrent_logins(), 0);
        journal.logins.push(login(t, 0, 100, Some(LoginEnd::CodeIssued), "9000000001"));
        journal.logins.push(login(t, 100, 200, Some(LoginEnd::CodeIssued), "9000000002"));
        assert_eq!(journal.max_concurrent_logins(), 1, "back to back");
        journal.logins.push(login(t, 150, 300, None, "9000000003"));
        journal.logins.push(login(t, 160, 170, Some(LoginEnd::Locked), "9000000001"));
        assert_eq!(journal.max_concurrent_logins(), 3);
        assert_eq!((journal.logins_for("9000000001"), journal.pins_for("9000000001")), (2, 2));
        assert_eq!(journal.codes_for("9000000001"), 1);
        assert_eq!(journal.codes_for("9000000003"), 0);
    }
}
