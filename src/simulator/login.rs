//! The hosted login's backend: the SPA's XHRs (hydrate, mobile, TOTP, PIN) that move a login session through its
//! steps and finally hand out an auth code (or, under faults, a lock, an OTP block or an interstitial).
//!
//! Step order, TOTP validity (RFC 6238, ±1 step, no replay) and the PIN lockout are enforced here, server-side; the
//! page (`page.rs`, `login.html`) only renders what the backend answered. This module never issues tokens (see
//! `api.rs`) and never logs a mobile number, PIN, TOTP code or auth code.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use totp_rs::{Algorithm, Builder, Secret};

use super::api::{KeyCase, envelope, success};
use super::page::BLOCKED_PATH;
use super::{
    CODE_TTL, IssuedCode, LoginEnd, Shared, SharedState, State as SimState, Step, random_alphanumeric, random_hex,
};

/// RFC 6238 parameters Upstox uses.
const TOTP_DIGITS: usize = 6;
const TOTP_STEP_SECS: u64 = 30;
/// Accept the previous and the next time step too.
const TOTP_SKEW_STEPS: u8 = 1;
/// Length of an auth code (alphanumeric).
const CODE_LEN: usize = 6;

/// Every way the login backend refuses a submission. The `Display` text is the envelope's `message`; the page shows
/// `<message> [<error_code>]`, as Upstox's overlays do [code].
#[derive(Debug, thiserror::Error)]
enum LoginError {
    #[error("Your login session has expired. Please go back to the app and log in again.")]
    SessionExpired,
    #[error("Please complete the previous step first.")]
    OutOfOrder,
    #[error("Something went wrong. Please try again.")]
    Malformed,
    #[error("Please enter a valid 10-digit mobile number")]
    MobileFormat,
    #[error("Mobile number is not registered with Upstox")]
    UnknownMobile,
    #[error("Invalid OTP")]
    InvalidOtp,
    #[error("You have entered an incorrect PIN")]
    WrongPin,
    /// Upstox's lock text [code: the login bundle, 1017090]; the page turns it into the lock screen.
    #[error("{LOCKED_MESSAGE}")]
    Blocked,
    /// `Faults::otp_blocked` [code: 1017078/1017125, "resend locked for 600 s"].
    #[error("OTP is blocked due to multiple attempts. Please try after 10 minutes")]
    OtpBlocked,
}

/// What the lock screen says [code].
const LOCKED_MESSAGE: &str = "Due to too many incorrect PIN attempts, your account has been locked. Unlock your account by verifying your details.";
/// Upstox's code for a locked account [code].
const LOCKED_CODE: &str = "1017090";

/// What `Faults::info_toast_after_mobile` shows after the mobile step [code].
const OTP_SENT_NOTICE: &str = "OTP sent to your registered mobile number";

/// What the app shows instead of the redirect under `Faults::interstitial_after_pin`: nothing public scripts know.
fn interstitial() -> Value {
    json!({
        "title": "Confirm your device",
        "text": "We noticed a login from a new device. Confirm it on your registered device to continue.",
        "button": "Confirm",
    })
}

impl IntoResponse for LoginError {
    fn into_response(self) -> Response {
        // 7-digit codes like the login app's [code]. Known from its bundle: 1017106 (wrong PIN), 1017090 (locked),
        // 1017078 (OTP blocked), 1017079/1017084 (back to the start). The others are the simulator's own choice.
        let (status, code) = match self {
            LoginError::SessionExpired => (StatusCode::NOT_FOUND, "1017079"),
            LoginError::OutOfOrder => (StatusCode::CONFLICT, "1017084"),
            LoginError::Malformed => (StatusCode::BAD_REQUEST, "1017000"),
            LoginError::MobileFormat => (StatusCode::BAD_REQUEST, "1017001"),
            LoginError::UnknownMobile => (StatusCode::BAD_REQUEST, "1017011"),
            LoginError::InvalidOtp => (StatusCode::BAD_REQUEST, "1017031"),
            LoginError::WrongPin => (StatusCode::BAD_REQUEST, "1017106"),
            LoginError::Blocked => (StatusCode::FORBIDDEN, LOCKED_CODE),
            LoginError::OtpBlocked => (StatusCode::FORBIDDEN, "1017078"),
        };
        envelope(status, code, &self.to_string(), KeyCase::Snake)
    }
}

/// Every backend XHR waits `faults.step_delay_ms` first.
async fn step_delay(sim: &Shared) {
    let delay = sim.faults().step_delay_ms;
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
}

fn respond(result: Result<Value, LoginError>) -> Response {
    match result {
        Ok(data) => success(data),
        Err(error) => error.into_response(),
    }
}

/// Record that the login of session `id` ended (the session itself stays, so a reload still shows where it stands).
fn end_session(state: &mut SimState, id: &str, how: LoginEnd) {
    if let Some(record) = state.sessions.get(id).map(|s| s.record) {
        state.end_login(record, Instant::now(), how);
    }
}

fn mask_mobile(mobile: &str) -> String {
    let tail: String = mobile.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    format!("******{tail}")
}

fn is_digits(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit())
}

/// The login app's mobile rule, `^[6-9]\d{9}$` [code].
fn is_mobile(s: &str) -> bool {
    is_digits(s, 10) && matches!(s.as_bytes()[0], b'6'..=b'9')
}

/// `GET /login/api/session/{id}`: where this session stands, so the page can render that step.
pub(super) async fn hydrate(State(sim): State<SharedState>, Path(id): Path<String>) -> Response {
    step_delay(&sim).await;
    let mut state = sim.lock();
    let Some(session) = state.live_session(&id) else {
        return LoginError::SessionExpired.into_response();
    };
    let (step, client_id) = (session.step, session.client_id.clone());
    let locked = match step {
        Step::Otp { user } | Step::Pin { user } => state.users[user].blocked,
        Step::Mobile | Step::Interstitial { .. } => false,
    };
    if locked {
        return success(
            json!({"step": "locked", "client_id": client_id, "message": LOCKED_MESSAGE, "code": LOCKED_CODE}),
        );
    }
    success(match step {
        Step::Mobile => json!({"step": "mobile", "client_id": client_id}),
        Step::Otp { user } => json!({
            "step": "otp",
            "client_id": client_id,
            "mobile_masked": mask_mobile(&sim.config.users[user].mobile),
        }),
        Step::Pin { .. } => json!({"step": "pin", "client_id": client_id}),
        Step::Interstitial { .. } => {
            json!({"step": "interstitial", "client_id": client_id, "interstitial": interstitial()})
        }
    })
}

#[derive(Deserialize)]
pub(super) struct MobileBody {
    #[serde(default)]
    mobile_number: String,
}

/// `POST /login/api/session/{id}/mobile` `{"mobile_number":…}`: allowed at the mobile step and again at the OTP step.
pub(super) async fn mobile(
    State(sim): State<SharedState>,
    Path(id): Path<String>,
    body: Result<Json<MobileBody>, JsonRejection>,
) -> Response {
    sim.lock().journal.mobile_submissions += 1;
    step_delay(&sim).await;
    let Ok(Json(body)) = body else {
        return LoginError::Malformed.into_response();
    };
    let mut state = sim.lock();
    respond(submit_mobile(&sim, &mut state, &id, &body.mobile_number))
}

fn submit_mobile(sim: &Shared, state: &mut SimState, id: &str, mobile: &str) -> Result<Value, LoginError> {
    let step = state.live_session(id).ok_or(LoginError::SessionExpired)?.step;
    if !matches!(step, Step::Mobile | Step::Otp { .. }) {
        return Err(LoginError::OutOfOrder);
    }
    if !is_mobile(mobile) {
        return Err(LoginError::MobileFormat);
    }
    let user = sim.config.users.iter().position(|u| u.mobile == mobile).ok_or(LoginError::UnknownMobile)?;
    if let Some(login) = state.login_record(id) {
        login.mobile = Some(mobile.to_owned());
    }
    if state.users[user].blocked {
        end_session(state, id, LoginEnd::Locked);
        return Err(LoginError::Blocked);
    }
    if let Some(session) = state.live_session(id) {
        session.step = Step::Otp { user };
    }
    let mut data = json!({"mobile_masked": mask_mobile(mobile)});
    if state.faults.info_toast_after_mobile {
        data["notice"] = json!(OTP_SENT_NOTICE);
    }
    Ok(data)
}

#[derive(Deserialize)]
pub(super) struct OtpBody {
    #[serde(default)]
    otp: String,
}

/// `POST /login/api/session/{id}/otp` `{"otp":…}`: the TOTP, checked for real.
pub(super) async fn otp(
    State(sim): State<SharedState>,
    Path(id): Path<String>,
    body: Result<Json<OtpBody>, JsonRejection>,
) -> Response {
    step_delay(&sim).await;
    let Ok(Json(body)) = body else {
        return LoginError::Malformed.into_response();
    };
    let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
    let mut state = sim.lock();
    state.journal.totp_submissions.push(body.otp.clone());
    respond(submit_otp(&sim, &mut state, &id, &body.otp, now))
}

fn submit_otp(sim: &Shared, state: &mut SimState, id: &str, otp: &str, now: u64) -> Result<Value, LoginError> {
    let Step::Otp { user } = state.live_session(id).ok_or(LoginError::SessionExpired)?.step else {
        return Err(LoginError::OutOfOrder);
    };
    if state.faults.otp_blocked {
        return Err(LoginError::OtpBlocked);
    }
    let time_step = totp_step(&sim.config.users[user].totp_secret, otp, now).ok_or(LoginError::InvalidOtp)?;
    if state.users[user].used_totp_steps.contains(&time_step) {
        return Err(LoginError::InvalidOtp);
    }
    if state.faults.reject_first_totp && !state.progress.totp_rejected {
        state.progress.totp_rejected = true;
        return Err(LoginError::InvalidOtp);
    }
    state.users[user].used_totp_steps.insert(time_step);
    if let Some(session) = state.live_session(id) {
        session.step = Step::Pin { user };
    }
    Ok(json!({}))
}

/// The time step `code` belongs to if it is valid at `now` (±1 step) for the base32 `secret`.
fn totp_step(secret: &str, code: &str, now: u64) -> Option<u64> {
    if !is_digits(code, TOTP_DIGITS) {
        return None;
    }
    let secret = Secret::try_from_base32(crate::totp::normalise_secret(secret).ok()?).ok()?;
    let totp = Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(TOTP_DIGITS as u8)
        .with_step_duration(TOTP_STEP_SECS)
        .with_skew(TOTP_SKEW_STEPS.into())
        .with_secret(secret)
        .build_noncompliant();
    totp.check(code, now)
}

#[derive(Deserialize)]
pub(super) struct PinBody {
    #[serde(default)]
    pin: String,
}

/// `POST /login/api/session/{id}/pin` `{"pin":…}`: on success, a single-use auth code and where to send it.
pub(super) async fn pin(
    State(sim): State<SharedState>,
    Path(id): Path<String>,
    body: Result<Json<PinBody>, JsonRejection>,
) -> Response {
    step_delay(&sim).await;
    let Ok(Json(body)) = body else {
        return LoginError::Malformed.into_response();
    };
    let pin_delay = {
        let mut state = sim.lock();
        state.journal.pin_submissions += 1;
        if let Some(login) = state.login_record(&id) {
            login.pin_submissions += 1;
        }
        state.faults.pin_delay_ms
    };
    if pin_delay > 0 {
        tokio::time::sleep(Duration::from_millis(pin_delay)).await;
    }
    let mut state = sim.lock();
    respond(submit_pin(&sim, &mut state, &id, &body.pin))
}

fn submit_pin(sim: &Shared, state: &mut SimState, id: &str, pin: &str) -> Result<Value, LoginError> {
    let Step::Pin { user } = state.live_session(id).ok_or(LoginError::SessionExpired)?.step else {
        return Err(LoginError::OutOfOrder);
    };
    if state.users[user].blocked {
        end_session(state, id, LoginEnd::Locked);
        return Err(LoginError::Blocked);
    }
    if pin != sim.config.users[user].pin {
        state.journal.wrong_pins += 1;
        if let Some(login) = state.login_record(id) {
            login.wrong_pins += 1;
        }
        let limit = state.faults.pin_limit();
        let status = &mut state.users[user];
        status.wrong_pins += 1;
        if status.wrong_pins >= limit {
            status.blocked = true;
            end_session(state, id, LoginEnd::Locked);
            tracing::warn!(user_id = %sim.config.users[user].user_id, "simulator blocked a user after wrong PINs");
            // The locking attempt already shows the lock screen [code: 1017090].
            return Err(LoginError::Blocked);
        }
        return Err(LoginError::WrongPin);
    }
    state.users[user].wrong_pins = 0;
    if state.faults.interstitial_after_pin {
        let record = state.live_session(id).map(|session| {
            session.step = Step::Interstitial { user };
            session.record
        });
        if let Some(record) = record {
            state.end_login(record, Instant::now(), LoginEnd::Interstitial);
        }
        tracing::warn!("simulator shows an interstitial instead of the redirect");
        return Ok(json!({"interstitial": interstitial()}));
    }
    let session = state.sessions.remove(id).ok_or(LoginError::SessionExpired)?;
    if state.faults.bot_block_after_pin {
        state.end_login(session.record, Instant::now(), LoginEnd::BotBlocked);
        tracing::warn!("simulator sends the app to the bot-block page instead of the redirect");
        return Ok(json!({"redirect_uri": BLOCKED_PATH, "code": "", "state": null}));
    }
    let code = loop {
        let candidate = random_alphanumeric(CODE_LEN);
        if !state.journal.codes_issued.contains(&candidate) {
            break candidate;
        }
    };
    state.codes.insert(
        code.clone(),
        IssuedCode {
            client_id: session.client_id,
            redirect_uri: session.redirect_uri.clone(),
            user,
            issued: Instant::now(),
        },
    );
    state.journal.codes_issued.push(code.clone());
    state.end_login(session.record, Instant::now(), LoginEnd::CodeIssued);
    let user_id = &sim.config.users[user].user_id;
    tracing::info!(%user_id, valid_secs = CODE_TTL.as_secs(), "simulator issued an auth code");
    let redirect_state = match session.state {
        _ if state.faults.tamper_state => Some(random_hex(48)),
        original => original,
    };
    Ok(json!({"redirect_uri": session.redirect_uri, "code": code, "state": redirect_state}))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::Faults;
    use super::super::testing::{Harness, assert_error_body, message};
    use super::*;

    const BLOCKED: &str = LOCKED_MESSAGE;

    #[test]
    fn totp_matches_rfc6238_vectors_within_one_step() {
        // RFC 6238 appendix B, SHA1 seed "12345678901234567890", truncated to 6 digits.
        let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
        assert_eq!(totp_step(secret, "287082", 59), Some(1));
        assert_eq!(totp_step(secret, "081804", 1_111_111_109), Some(37_037_036));
        assert_eq!(totp_step(secret, "081804", 1_111_111_109 + 30), Some(37_037_036), "previous step accepted");
        assert_eq!(totp_step(secret, "081804", 1_111_111_109 - 30), Some(37_037_036), "next step accepted");
        assert_eq!(totp_step(secret, "081804", 1_111_111_109 + 60), None, "two steps late");
        assert_eq!(totp_step("gezd gnbv gy3t qojq gezd gnbv gy3t qojq", "081804", 1_111_111_109), Some(37_037_036));
        assert_eq!(totp_step(secret, "81804", 1_111_111_109), None);
        assert_eq!(totp_step(secret, "08180a", 1_111_111_109), None);
    }

    #[tokio::test]
    async fn full_flow_hands_out_a_code_bound_to_the_state() {
        let h = Harness::start().await;
        let session = h.open_session(Some("a b&c=d/é")).await;
        let (status, body) = h.hydrate(&session).await;
        assert_eq!((status, &body["data"]["step"]), (StatusCode::OK, &json!("mobile")));
        assert_eq!(body["data"]["client_id"], h.client().client_id.as_str());

        let (status, body) = h.submit_mobile(&session, &h.user().mobile).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body["data"]["mobile_masked"].as_str().unwrap().ends_with(&h.user().mobile[6..]));
        assert_eq!(h.hydrate(&session).await.1["data"]["step"], "otp");

        let otp = h.totp(0);
        assert_eq!(h.submit_otp(&session, &otp).await.0, StatusCode::OK);
        assert_eq!(h.hydrate(&session).await.1["data"]["step"], "pin");

        let (status, body) = h.submit_pin(&session, &h.user().pin).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let data = &body["data"];
        let code = data["code"].as_str().unwrap();
        assert!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_alphanumeric()), "{code}");
        assert_eq!(data["redirect_uri"], h.client().redirect_uri.as_str());
        assert_eq!(data["state"], "a b&c=d/é");

        let journal = h.sim.journal();
        assert_eq!(journal.codes_issued, [code]);
        assert_eq!(journal.totp_submissions, [otp]);
        assert_eq!((journal.pin_submissions, journal.wrong_pins), (1, 0));
        let (status, body) = h.hydrate(&session).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "a used session is gone");
        assert_error_body(&body, "1017079", KeyCase::Snake);
    }

    #[tokio::test]
    async fn without_a_state_none_comes_back() {
        let h = Harness::start().await;
        let session = h.open_session(None).await;
        h.submit_mobile(&session, &h.user().mobile).await;
        h.submit_otp(&session, &h.totp(0)).await;
        let (status, body) = h.submit_pin(&session, &h.user().pin).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body["data"]["state"].is_null());
        assert!(h.sim.journal().states_seen.is_empty());
    }

    #[tokio::test]
    async fn tamper_state_fault_changes_the_state_but_still_issues_the_code() {
        let h = Harness::start_with(Faults { tamper_state: true, ..Faults::default() }).await;
        let session = h.session_at_pin(0).await;
        let (status, body) = h.submit_pin(&session, &h.user().pin).await;
        assert_eq!(status, StatusCode::OK);
        assert_ne!(body["data"]["state"], "st");
        assert!(body["data"]["state"].is_string());
        assert_eq!(h.sim.journal().codes_issued.len(), 1);
    }

    #[tokio::test]
    async fn unknown_session_and_unknown_mobile_are_refused() {
        let h = Harness::start().await;
        let (status, body) = h.hydrate("nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(message(&body).contains("expired"));

        let session = h.open_session(Some("s")).await;
        let other = if h.user().mobile == "9999999999" { "9999999998" } else { "9999999999" };
        let (status, body) = h.submit_mobile(&session, other).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(message(&body), "Mobile number is not registered with Upstox");
        let (status, body) = h.submit_mobile(&session, "12345").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_error_body(&body, "1017001", KeyCase::Snake);
        assert_eq!(h.hydrate(&session).await.1["data"]["step"], "mobile");
    }

    #[tokio::test]
    async fn steps_cannot_be_skipped() {
        let h = Harness::start().await;
        let session = h.open_session(Some("s")).await;
        let (status, _) = h.submit_otp(&session, &h.totp(0)).await;
        assert_eq!(status, StatusCode::CONFLICT);
        let (status, _) = h.submit_pin(&session, &h.user().pin).await;
        assert_eq!(status, StatusCode::CONFLICT);
        h.submit_mobile(&session, &h.user().mobile).await;
        let (status, body) = h.submit_pin(&session, &h.user().pin).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_error_body(&body, "1017084", KeyCase::Snake);
        assert!(h.sim.journal().codes_issued.is_empty());
    }

    #[tokio::test]
    async fn wrong_otp_and_replayed_otp_are_invalid() {
        let h = Harness::start().await;
        let code = h.login(0).await;
        assert!(!code.is_empty());
        let session = h.open_session(Some("s")).await;
        h.submit_mobile(&session, &h.user().mobile).await;
        let replay = h.totp(0);
        let (status, body) = h.submit_otp(&session, &replay).await;
        assert_eq!((status, message(&body)), (StatusCode::BAD_REQUEST, "Invalid OTP"), "replayed time step");
        let wrong = if replay == "000000" { "111111" } else { "000000" };
        let (status, body) = h.submit_otp(&session, wrong).await;
        assert_eq!((status, message(&body)), (StatusCode::BAD_REQUEST, "Invalid OTP"));
        let (status, _) = h.submit_otp(&session, &h.totp(1)).await;
        assert_eq!(status, StatusCode::OK, "the next time step is still fresh");
        assert_eq!(h.sim.journal().totp_submissions.len(), 4);
    }

    #[tokio::test]
    async fn reject_first_totp_fault_rejects_exactly_one_valid_code() {
        let h = Harness::start_with(Faults { reject_first_totp: true, ..Faults::default() }).await;
        let session = h.open_session(Some("s")).await;
        h.submit_mobile(&session, &h.user().mobile).await;
        let (status, body) = h.submit_otp(&session, &h.totp(0)).await;
        assert_eq!((status, message(&body)), (StatusCode::BAD_REQUEST, "Invalid OTP"));
        assert_eq!(h.submit_otp(&session, &h.totp(1)).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn five_wrong_pins_block_the_user_across_sessions() {
        let h = Harness::start().await;
        let session = h.session_at_pin(0).await;
        let wrong = if h.user().pin == "000000" { "111111" } else { "000000" };
        for _ in 0..4 {
            let (status, body) = h.submit_pin(&session, wrong).await;
            assert_eq!((status, message(&body)), (StatusCode::BAD_REQUEST, "You have entered an incorrect PIN"));
        }
        let (status, body) = h.submit_pin(&session, wrong).await;
        assert_eq!((status, message(&body)), (StatusCode::FORBIDDEN, BLOCKED), "the fifth locks at once");
        let (status, body) = h.submit_pin(&session, &h.user().pin).await;
        assert_eq!((status, message(&body)), (StatusCode::FORBIDDEN, BLOCKED), "even the right PIN");

        let fresh = h.open_session(Some("s")).await;
        let (status, body) = h.submit_mobile(&fresh, &h.user().mobile).await;
        assert_eq!((status, message(&body)), (StatusCode::FORBIDDEN, BLOCKED));

        let journal = h.sim.journal();
        assert_eq!((journal.pin_submissions, journal.wrong_pins), (6, 5));
        assert!(journal.codes_issued.is_empty());
        let mobile = &h.user().mobile;
        assert_eq!((journal.pins_for(mobile), journal.wrong_pins_for(mobile), journal.codes_for(mobile)), (6, 5, 0));
        let ends: Vec<_> = journal.logins.iter().map(|l| l.ended.map(|(_, how)| how)).collect();
        assert_eq!(ends, [Some(LoginEnd::Locked), Some(LoginEnd::Locked)], "the locking session and the refused one");
    }

    #[tokio::test]
    async fn pin_lock_after_is_configurable_and_a_success_resets_the_count() {
        let h = Harness::start_with(Faults { pin_lock_after: 2, ..Faults::default() }).await;
        let wrong = if h.user().pin == "000000" { "111111" } else { "000000" };
        let session = h.session_at_pin(0).await;
        assert_eq!(h.submit_pin(&session, wrong).await.0, StatusCode::BAD_REQUEST);
        assert_eq!(h.submit_pin(&session, &h.user().pin).await.0, StatusCode::OK);

        let session = h.session_at_pin(1).await;
        assert_eq!(h.submit_pin(&session, wrong).await.0, StatusCode::BAD_REQUEST);
        assert_eq!(h.submit_pin(&session, wrong).await.0, StatusCode::FORBIDDEN);
        let (status, body) = h.submit_pin(&session, &h.user().pin).await;
        assert_eq!((status, message(&body)), (StatusCode::FORBIDDEN, BLOCKED));
    }

    #[tokio::test]
    async fn step_delay_holds_every_backend_answer() {
        let h = Harness::start_with(Faults { step_delay_ms: 150, ..Faults::default() }).await;
        let session = h.open_session(Some("s")).await;
        let started = Instant::now();
        h.hydrate(&session).await;
        assert!(started.elapsed() >= Duration::from_millis(150));
        let started = Instant::now();
        h.submit_mobile(&session, &h.user().mobile).await;
        assert!(started.elapsed() >= Duration::from_millis(150));
        assert_eq!(h.sim.journal().mobile_submissions, 1);
    }

    #[tokio::test]
    async fn pin_delay_counts_the_pin_on_arrival_and_answers_late() {
        let delay = Duration::from_millis(400);
        let h = Harness::start_with(Faults { pin_delay_ms: delay.as_millis() as u64, ..Faults::default() }).await;
        let session = h.session_at_pin(0).await;
        let pin = h.user().pin.clone();
        let started = Instant::now();
        let counted = async {
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            while h.sim.journal().pin_submissions == 0 {
                tick.tick().await;
            }
            started.elapsed()
        };
        let ((status, body), counted_after) = tokio::join!(h.submit_pin(&session, &pin), counted);
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body["data"]["code"].is_string(), "{body}");
        assert!(counted_after < delay, "counted on arrival, after {counted_after:?}");
        assert!(started.elapsed() >= delay, "answered after the delay");
        assert_eq!(h.sim.journal().pin_submissions, 1);
    }

    #[tokio::test]
    async fn malformed_bodies_get_the_envelope() {
        let h = Harness::start().await;
        let session = h.open_session(Some("s")).await;
        let url = h.url(&format!("login/api/session/{session}/mobile"));
        let res = h.http.post(url).body("mobile=1").send().await.unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_error_body(&res.json().await.unwrap(), "1017000", KeyCase::Snake);
    }
}
