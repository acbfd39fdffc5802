//! The hosted login: the single-page app shell (`login.html`), the bot-block page (`blocked.html`), and the SPA's
//! backend XHRs (hydrate, mobile, TOTP, PIN) that move a login session through its steps and finally hand out an
//! auth code.
//!
//! Step order, TOTP validity (RFC 6238, ±1 step, no replay) and the PIN lockout are enforced here, server-side; the
//! page only renders what the backend answered. This module never issues tokens (see `api.rs`) and never logs a
//! mobile number, PIN, TOTP code or auth code.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use totp_rs::{Algorithm, Builder, Secret};

use super::api::{KeyCase, envelope, success};
use super::{
    CODE_TTL, IssuedCode, LoginEnd, Shared, SharedState, State as SimState, Step, random_alphanumeric, random_hex,
};

/// The app shell: an empty `#app` container and the script that hydrates it.
const LOGIN_HTML: &str = include_str!("login.html");
/// Cloudflare's "Error 1010" page, with `{{host}}`, `{{ray}}` and `{{when}}` to fill.
const BLOCKED_HTML: &str = include_str!("blocked.html");
/// RFC 6238 parameters Upstox uses.
const TOTP_DIGITS: usize = 6;
const TOTP_STEP_SECS: u64 = 30;
/// Accept the previous and the next time step too.
const TOTP_SKEW_STEPS: u8 = 1;
const MOBILE_DIGITS: usize = 10;
/// Length of an auth code (alphanumeric).
const CODE_LEN: usize = 6;

/// Every way the login backend refuses a submission. The `Display` text is what the page shows in `#errorMsg`.
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
    #[error("Your account has been blocked due to multiple incorrect attempts. Please reset your PIN to unblock.")]
    Blocked,
}

impl IntoResponse for LoginError {
    fn into_response(self) -> Response {
        // The codes are the simulator's own: the real login backend's codes are not documented.
        let (status, code) = match self {
            LoginError::SessionExpired => (StatusCode::NOT_FOUND, "SESSION_EXPIRED"),
            LoginError::OutOfOrder => (StatusCode::CONFLICT, "STEP_OUT_OF_ORDER"),
            LoginError::Malformed => (StatusCode::BAD_REQUEST, "BAD_REQUEST"),
            LoginError::MobileFormat => (StatusCode::BAD_REQUEST, "INVALID_MOBILE"),
            LoginError::UnknownMobile => (StatusCode::BAD_REQUEST, "MOBILE_NOT_REGISTERED"),
            LoginError::InvalidOtp => (StatusCode::BAD_REQUEST, "INVALID_OTP"),
            LoginError::WrongPin => (StatusCode::BAD_REQUEST, "INVALID_PIN"),
            LoginError::Blocked => (StatusCode::FORBIDDEN, "ACCOUNT_BLOCKED"),
        };
        envelope(status, code, &self.to_string(), KeyCase::Snake)
    }
}

/// `GET /login`, `/login/otp`, `/login/pin`: the app shell, or the bot-block page when that fault is on.
pub(super) async fn page(State(sim): State<SharedState>, headers: HeaderMap) -> Response {
    if sim.faults().bot_block {
        return bot_block(&headers);
    }
    ([(header::CACHE_CONTROL, "no-store")], Html(LOGIN_HTML)).into_response()
}

/// Where `Faults::bot_block_after_pin` sends the app after a correct PIN.
const BLOCKED_PATH: &str = "/cdn-cgi/access-denied";

/// `GET /cdn-cgi/access-denied`: the bot-block page, always.
pub(super) async fn blocked(headers: HeaderMap) -> Response {
    bot_block(&headers)
}

/// Cloudflare's "Error 1010" page: the browser's signature was banned.
fn bot_block(headers: &HeaderMap) -> Response {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("login.upstox.com");
    let host = html_escape(host);
    let ray = format!("{}-BOM", random_hex(16));
    let body = BLOCKED_HTML
        .replace("{{ray}}", &ray)
        .replace("{{when}}", &chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .replace("{{host}}", &host);
    let headers = [(header::SERVER, "cloudflare".to_owned()), (header::CACHE_CONTROL, "no-store".to_owned())];
    let mut response = (StatusCode::FORBIDDEN, headers, Html(body)).into_response();
    if let Ok(value) = ray.parse() {
        response.headers_mut().insert("cf-ray", value);
    }
    response
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
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

/// `GET /login/api/session/{id}`: where this session stands, so the page can render that step.
pub(super) async fn hydrate(State(sim): State<SharedState>, Path(id): Path<String>) -> Response {
    step_delay(&sim).await;
    let mut state = sim.lock();
    let result = match state.live_session(&id) {
        None => Err(LoginError::SessionExpired),
        Some(session) => Ok(match session.step {
            Step::Mobile => json!({"step": "mobile", "client_id": session.client_id}),
            Step::Otp { user } => json!({
                "step": "otp",
                "client_id": session.client_id,
                "mobile_masked": mask_mobile(&sim.config.users[user].mobile),
            }),
            Step::Pin { .. } => json!({"step": "pin", "client_id": session.client_id}),
        }),
    };
    respond(result)
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
    if !is_digits(mobile, MOBILE_DIGITS) {
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
    Ok(json!({"mobile_masked": mask_mobile(mobile)}))
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
        }
        return Err(LoginError::WrongPin);
    }
    state.users[user].wrong_pins = 0;
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

    const BLOCKED: &str = "Your account has been blocked due to multiple incorrect attempts. \
                           Please reset your PIN to unblock.";

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
    async fn page_is_an_empty_app_shell_on_every_step_path() {
        let h = Harness::start().await;
        for path in ["login?user_id=x&client_id=y&user_type=individual", "login/otp?user_id=x", "login/pin"] {
            let res = h.get(h.url(path)).await;
            assert_eq!(res.status(), StatusCode::OK);
            assert!(res.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
            let html = res.text().await.unwrap();
            assert!(html.contains("<title>Upstox Login</title>"));
            assert!(html.contains(r#"<div id="app"></div>"#));
            let (markup, script) = html.split_once("<script>").unwrap();
            assert!(script.contains("/login/api/session/"), "the script hydrates from the backend");
            assert_eq!(markup.matches(" id=").count(), 1, "only the app container before hydration");
        }
    }

    #[tokio::test]
    async fn bot_block_replaces_the_page_with_cloudflare_1010() {
        let h = Harness::start_with(Faults { bot_block: true, ..Faults::default() }).await;
        let res = h.get(h.url("login?user_id=x")).await;
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert_eq!(res.headers()[header::SERVER], "cloudflare");
        let html = res.text().await.unwrap();
        for needle in ["Access denied", "Error", "1010", "has banned your access based on your browser's signature"] {
            assert!(html.contains(needle), "{needle}");
        }
        assert!(!html.contains(r#"id="app""#));
        h.sim.set_faults(Faults::default());
        assert_eq!(h.get(h.url("login?user_id=x")).await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn bot_block_after_pin_sends_the_app_to_the_block_page_without_a_code() {
        let h = Harness::start_with(Faults { bot_block_after_pin: true, ..Faults::default() }).await;
        let session = h.open_session(Some("s")).await;
        h.submit_mobile(&session, &h.user().mobile).await;
        h.submit_otp(&session, &h.totp(0)).await;
        let (status, body) = h.submit_pin(&session, &h.user().pin).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"]["redirect_uri"], BLOCKED_PATH);
        assert!(h.sim.journal().codes_issued.is_empty());
        let page = h.get(h.url(BLOCKED_PATH.trim_start_matches('/'))).await;
        assert_eq!(page.status(), StatusCode::FORBIDDEN);
        assert!(page.text().await.unwrap().contains("Access denied"));
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
        assert_error_body(&body, "SESSION_EXPIRED", KeyCase::Snake);
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
        assert_error_body(&body, "INVALID_MOBILE", KeyCase::Snake);
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
        assert_error_body(&body, "STEP_OUT_OF_ORDER", KeyCase::Snake);
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
        for _ in 0..5 {
            let (status, body) = h.submit_pin(&session, wrong).await;
            assert_eq!((status, message(&body)), (StatusCode::BAD_REQUEST, "You have entered an incorrect PIN"));
        }
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
        assert_eq!(h.submit_pin(&session, wrong).await.0, StatusCode::BAD_REQUEST);
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
        assert_error_body(&res.json().await.unwrap(), "BAD_REQUEST", KeyCase::Snake);
    }
}
