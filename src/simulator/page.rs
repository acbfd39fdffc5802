//! The hosted login as the browser sees it: the single-page app shell (`login.html`, rendered with the ids, error
//! style and input habits the current faults ask for) and Cloudflare's bot-block page (`blocked.html`).
//!
//! This module only renders; the step logic and every credential check live in `login.rs`. It never embeds a
//! credential, code or token in a page.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

use super::{Faults, SharedState, random_hex};

/// The app shell: an empty app container and the script that hydrates it, with `{{…}}` placeholders for the ids,
/// classes and habits.
const LOGIN_HTML: &str = include_str!("login.html");
/// Cloudflare's "Error 1010" page, with `{{host}}`, `{{ray}}` and `{{when}}` to fill.
const BLOCKED_HTML: &str = include_str!("blocked.html");
/// Where `Faults::bot_block_after_pin` sends the app after a correct PIN.
pub(super) const BLOCKED_PATH: &str = "/cdn-cgi/access-denied";

/// The element ids and class names of the login app, so tests (and selector configs) can name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PageIds {
    /// The container the app renders into.
    pub app: &'static str,
    /// Step 1: the mobile input and its "Get OTP" button.
    pub mobile_input: &'static str,
    pub get_otp_button: &'static str,
    /// Step 2: the OTP/TOTP input and its "Continue" button.
    pub otp_input: &'static str,
    pub otp_button: &'static str,
    /// Step 3: the PIN input and its "Continue" button.
    pub pin_input: &'static str,
    pub pin_button: &'static str,
    /// The default error element (`role=alert`).
    pub error: &'static str,
    /// The inline error text under `Faults::plain_errors` (no role).
    pub hint: &'static str,
    /// The lock screen's text and its "Unlock account" button.
    pub lock_message: &'static str,
    pub unlock_button: &'static str,
    /// The interstitial's button (`Faults::interstitial_after_pin`).
    pub interstitial_button: &'static str,
    pub card_class: &'static str,
    pub brand_class: &'static str,
    pub sub_class: &'static str,
    pub error_class: &'static str,
    pub hint_class: &'static str,
    /// The class of the toast `<div>` appended to `<body>` under `Faults::toast_errors`.
    pub toast_class: &'static str,
}

impl PageIds {
    /// The ids public scripts use [code] (`#mobileNum`, `#getOtp`, `#otpNum`, `#continueBtn`, `#pinCode`,
    /// `#pinContinueBtn`); the rest are the simulator's own.
    pub const DEFAULT: PageIds = PageIds {
        app: "app",
        mobile_input: "mobileNum",
        get_otp_button: "getOtp",
        otp_input: "otpNum",
        otp_button: "continueBtn",
        pin_input: "pinCode",
        pin_button: "pinContinueBtn",
        error: "errorMsg",
        hint: "inputHint",
        lock_message: "lockMsg",
        unlock_button: "unlockBtn",
        interstitial_button: "confirmDeviceBtn",
        card_class: "card",
        brand_class: "brand",
        sub_class: "sub",
        error_class: "error",
        hint_class: "hint",
        toast_class: "toast",
    };

    /// Every id and class renamed, as after a redesign (`Faults::renamed_ids`).
    pub const RENAMED: PageIds = PageIds {
        app: "r-0a1b",
        mobile_input: "m-f3a9",
        get_otp_button: "b-91c2",
        otp_input: "o-5d7e",
        otp_button: "b-2e8f",
        pin_input: "p-c4a0",
        pin_button: "b-7b13",
        error: "e-7c21",
        hint: "h-3f60",
        lock_message: "l-8d42",
        unlock_button: "b-4a9d",
        interstitial_button: "b-6e05",
        card_class: "k-1f0",
        brand_class: "k-2a1",
        sub_class: "k-3b2",
        error_class: "k-4c3",
        hint_class: "k-5d4",
        toast_class: "k-6e5",
    };

    /// The ids the page uses under `faults`.
    pub fn for_faults(faults: &Faults) -> PageIds {
        if faults.renamed_ids { PageIds::RENAMED } else { PageIds::DEFAULT }
    }
}

/// Where the page shows errors and notices.
fn message_style(faults: &Faults) -> &'static str {
    match (faults.toast_errors, faults.plain_errors) {
        (true, _) => "toast",
        (false, true) => "plain",
        (false, false) => "alert",
    }
}

/// The app shell for `faults`: placeholders filled, the page's habits as a JSON object for its script.
fn render_login(faults: &Faults) -> String {
    let ids = PageIds::for_faults(faults);
    let habits = json!({
        "ids": ids,
        "errors": message_style(faults),
        "maskOtp": faults.masked_otp,
        "pinDisabledMs": faults.pin_input_disabled_ms,
    });
    // Inside <script>: no "</script>" can appear once '<' is escaped.
    let habits = habits.to_string().replace('<', "\\u003c");
    [
        ("{{habits}}", habits.as_str()),
        ("{{app}}", ids.app),
        ("{{card}}", ids.card_class),
        ("{{brand}}", ids.brand_class),
        ("{{sub}}", ids.sub_class),
        ("{{error}}", ids.error_class),
        ("{{hint}}", ids.hint_class),
        ("{{toast}}", ids.toast_class),
    ]
    .iter()
    .fold(LOGIN_HTML.to_owned(), |html, (placeholder, value)| html.replace(placeholder, value))
}

/// `GET /login`, `/login/otp`, `/login/pin`, `/login/device`: the app shell, or the bot-block page when that fault
/// is on. A `user_id` (the session) in the query counts as the session being seen.
pub(super) async fn login_page(
    State(sim): State<SharedState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let faults = {
        let mut state = sim.lock();
        let session = url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
            .find(|(k, _)| k == "user_id")
            .map(|(_, v)| v.into_owned());
        if let Some(session) = session {
            state.live_session(&session);
        }
        state.faults.clone()
    };
    if faults.bot_block {
        return bot_block(&headers);
    }
    ([(header::CACHE_CONTROL, "no-store")], Html(render_login(&faults))).into_response()
}

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

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::super::LoginEnd;
    use super::super::api::KeyCase;
    use super::super::testing::{Harness, assert_error, message};
    use super::*;

    /// The `habits` object the page's script starts from.
    fn habits(html: &str) -> Value {
        let start = html.find("var habits = ").unwrap() + "var habits = ".len();
        let end = start + html[start..].find(";\n").unwrap();
        serde_json::from_str(&html[start..end]).unwrap()
    }

    async fn page(h: &Harness) -> String {
        let res = h.get(h.url("login?user_id=x")).await;
        assert_eq!(res.status(), StatusCode::OK);
        res.text().await.unwrap()
    }

    const LABELS: [&str; 5] = ["Enter mobile number", "Enter OTP or TOTP", "Enter 6-digit PIN", "Get OTP", "Continue"];

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
    async fn the_default_page_labels_its_inputs_and_keeps_the_known_ids() {
        let h = Harness::start().await;
        let html = page(&h).await;
        for needle in LABELS.iter().chain(&["<label for=", "aria-label", "one-time-code", r#"type: "password""#]) {
            assert!(html.contains(needle), "{needle}");
        }
        for needle in [r#"maxlength: "10""#, r#"type: "tel""#, r#"inputmode: "numeric""#, "/^[6-9][0-9]{9}$/"] {
            assert!(html.contains(needle), "{needle}");
        }
        let habits = habits(&html);
        assert_eq!(habits["ids"]["mobile_input"], "mobileNum");
        assert_eq!(habits["ids"]["pin_button"], "pinContinueBtn");
        assert_eq!((habits["errors"].as_str(), habits["maskOtp"].as_bool()), (Some("alert"), Some(false)));
        assert_eq!(habits["pinDisabledMs"], 0);
        assert!(html.contains(r#"role="alert""#));
        assert_eq!(h.sim.page_ids(), PageIds::DEFAULT);
    }

    #[tokio::test]
    async fn renamed_ids_leave_no_known_id_or_class_but_the_same_labels() {
        let h = Harness::start_with(Faults { renamed_ids: true, ..Faults::default() }).await;
        let html = page(&h).await;
        let d = PageIds::DEFAULT;
        for old in [d.mobile_input, d.get_otp_button, d.otp_input, d.otp_button, d.pin_input, d.pin_button, d.error] {
            assert!(!html.contains(old), "{old} still in the page");
        }
        for old in [r#"id="app""#, ".card {", ".brand {", ".error {", ".toast {", r#"class="card""#] {
            assert!(!html.contains(old), "{old} still in the page");
        }
        assert!(html.contains(r#"<div id="r-0a1b"></div>"#));
        assert!(html.contains(".k-1f0 {"), "the style sheet follows the renamed classes");
        for needle in LABELS.iter().chain(&["aria-label", "one-time-code"]) {
            assert!(html.contains(needle), "{needle}");
        }
        assert_eq!(habits(&html)["ids"]["mobile_input"], "m-f3a9");
        assert_eq!(h.sim.page_ids(), PageIds::RENAMED);
    }

    #[tokio::test]
    async fn error_style_mask_and_pin_delay_reach_the_script() {
        let faults = Faults { toast_errors: true, masked_otp: true, pin_input_disabled_ms: 1500, ..Faults::default() };
        let h = Harness::start_with(faults).await;
        let html = page(&h).await;
        let habits = habits(&html);
        assert_eq!((habits["errors"].as_str(), habits["maskOtp"].as_bool()), (Some("toast"), Some(true)));
        assert_eq!(habits["pinDisabledMs"], 1500);
        assert!(html.contains("document.body.appendChild(toast)"));
        assert!(html.contains(r#"maxlength: habits.maskOtp ? "7" : "6""#));
        h.sim.set_faults(Faults { plain_errors: true, ..Faults::default() });
        assert_eq!(habits_of(&page(&h).await), "plain");
        h.sim.set_faults(Faults { plain_errors: true, toast_errors: true, ..Faults::default() });
        assert_eq!(habits_of(&page(&h).await), "toast", "toasts win");
    }

    fn habits_of(html: &str) -> String {
        habits(html)["errors"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn errors_carry_upstox_seven_digit_codes() {
        let h = Harness::start().await;
        let session = h.session_at_pin(0).await;
        let wrong = if h.user().pin == "000000" { "111111" } else { "000000" };
        let (status, body) = h.submit_pin(&session, wrong).await;
        assert_eq!((status, message(&body)), (StatusCode::BAD_REQUEST, "You have entered an incorrect PIN"));
        assert_eq!(body["errors"][0]["error_code"], "1017106");
        let fresh = h.open_session(None).await;
        h.submit_mobile(&fresh, &h.user().mobile).await;
        let (_, body) = h.submit_otp(&fresh, "000000").await;
        assert_eq!(message(&body), "Invalid OTP");
        assert!(body["errors"][0]["error_code"].as_str().unwrap().len() == 7);
    }

    #[tokio::test]
    async fn info_toast_after_mobile_comes_with_the_otp_step() {
        let h = Harness::start_with(Faults { info_toast_after_mobile: true, ..Faults::default() }).await;
        let session = h.open_session(None).await;
        let (status, body) = h.submit_mobile(&session, &h.user().mobile).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["data"]["notice"], "OTP sent to your registered mobile number");
        assert_eq!(h.hydrate(&session).await.1["data"]["step"], "otp");
        assert!(page(&h).await.contains("if (data.notice) { showMessage(data.notice); }"));
        h.sim.set_faults(Faults::default());
        let session = h.open_session(None).await;
        assert!(h.submit_mobile(&session, &h.user().mobile).await.1["data"].get("notice").is_none());
    }

    #[tokio::test]
    async fn interstitial_after_pin_issues_no_code_and_stays() {
        let h = Harness::start_with(Faults { interstitial_after_pin: true, ..Faults::default() }).await;
        let session = h.session_at_pin(0).await;
        let (status, body) = h.submit_pin(&session, &h.user().pin).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"]["interstitial"]["title"], "Confirm your device");
        assert!(body["data"].get("code").is_none() && body["data"].get("redirect_uri").is_none());
        let (_, body) = h.hydrate(&session).await;
        assert_eq!(body["data"]["step"], "interstitial");
        assert_eq!(h.get(h.url("login/device?user_id=x")).await.status(), StatusCode::OK);
        let journal = h.sim.journal();
        assert!(journal.codes_issued.is_empty());
        assert_eq!((journal.pin_submissions, journal.pins_for(&h.user().mobile)), (1, 1));
        assert_eq!(journal.logins[0].ended.map(|(_, how)| how), Some(LoginEnd::Interstitial));
    }

    #[tokio::test]
    async fn a_locked_account_hydrates_to_the_lock_screen() {
        let h = Harness::start_with(Faults { pin_lock_after: 1, ..Faults::default() }).await;
        let session = h.session_at_pin(0).await;
        let wrong = if h.user().pin == "000000" { "111111" } else { "000000" };
        h.submit_pin(&session, wrong).await;
        let (status, body) = h.hydrate(&session).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["data"]["step"], "locked");
        assert_eq!(body["data"]["code"], "1017090");
        let text = body["data"]["message"].as_str().unwrap();
        assert!(text.starts_with("Due to too many incorrect PIN attempts, your account has been locked."), "{text}");
        let (status, body) = h.submit_pin(&session, &h.user().pin).await;
        assert_eq!((status, body["errors"][0]["error_code"].as_str()), (StatusCode::FORBIDDEN, Some("1017090")));
        let html = page(&h).await;
        assert!(html.contains(r#""Unlock account""#) && html.contains(r#"var LOCKED = "1017090";"#));
    }

    #[tokio::test]
    async fn otp_blocked_refuses_every_otp_with_1017078() {
        let h = Harness::start_with(Faults { otp_blocked: true, ..Faults::default() }).await;
        let session = h.open_session(None).await;
        assert_eq!(h.submit_mobile(&session, &h.user().mobile).await.0, StatusCode::OK);
        let (status, body) = h.submit_otp(&session, &h.totp(0)).await;
        assert_eq!((status, body["errors"][0]["error_code"].as_str()), (StatusCode::FORBIDDEN, Some("1017078")));
        assert!(message(&body).contains("try after 10 minutes"), "{body}");
        assert_eq!(h.hydrate(&session).await.1["data"]["step"], "otp", "still at the OTP step");
        assert!(page(&h).await.contains(r#"var OTP_BLOCKED = ["1017078", "1017125"];"#));
    }

    #[tokio::test]
    async fn dialog_udapi100068_refuses_even_a_correct_client() {
        let h = Harness::start_with(Faults { dialog_udapi100068: true, ..Faults::default() }).await;
        assert_error(h.get(h.dialog_url(Some("s"))).await, StatusCode::BAD_REQUEST, "UDAPI100068", KeyCase::Snake)
            .await;
        assert!(h.sim.journal().logins.is_empty(), "no login session opened");
        h.sim.set_faults(Faults::default());
        assert_eq!(h.get(h.dialog_url(Some("s"))).await.status(), StatusCode::FOUND);
    }
}
