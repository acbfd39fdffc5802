use std::time::Duration;

use chrono::{DateTime, Utc};

use super::*;
use crate::config::{Fallback, Method, OAuthApp, UpstoxConfig};
use crate::login::browser::{BrowserError, PageRejection};
use crate::secret::ClientSecret;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[test]
fn scheduled_requests_wait_for_the_cutoff_others_go_and_warn() {
    let small_hours = utc("2026-11-28T02:30:00+05:30");
    let cutoff = utc("2026-11-28T03:30:00+05:30");
    assert_eq!(send_plan(small_hours, SendTime::Now), SendPlan::NowDyingAt { dies_at: cutoff });
    assert_eq!(send_plan(small_hours, SendTime::AfterCutoff), SendPlan::Wait { at: utc("2026-11-28T03:31:00+05:30") });
    for after in ["2026-11-28T03:30:00+05:30", "2026-11-28T08:30:00+05:30", "2026-11-28T23:59:59+05:30"] {
        for when in [SendTime::Now, SendTime::AfterCutoff] {
            assert_eq!(send_plan(utc(after), when), SendPlan::Now, "{after} {when:?}");
        }
    }
    // Just after midnight IST (still the evening before in UTC) is before the cutoff too.
    assert_eq!(
        send_plan(utc("2026-11-27T18:35:00Z"), SendTime::AfterCutoff),
        SendPlan::Wait { at: utc("2026-11-28T03:31:00+05:30") }
    );
}

#[test]
fn the_longest_wait_adds_the_deferral_to_the_approval_timeout() {
    let timeout = Duration::from_secs(1800);
    assert_eq!(longest_wait(utc("2026-11-28T08:30:00+05:30"), SendTime::AfterCutoff, timeout), timeout);
    assert_eq!(longest_wait(utc("2026-11-28T02:30:00+05:30"), SendTime::Now, timeout), timeout);
    assert_eq!(
        longest_wait(utc("2026-11-28T02:30:00+05:30"), SendTime::AfterCutoff, timeout),
        Duration::from_secs(61 * 60) + timeout
    );
}

#[test]
fn only_a_page_reason_falls_back() {
    let browser = |e: BrowserError| LoginError::Browser { error: Box::new(e) };
    assert!(is_page_reason(&browser(BrowserError::BotBlocked { title: "Access denied".into() })));
    let page_changed = BrowserError::PageChanged {
        step: Step::Mobile,
        element: "input",
        configured: "#mobileNum".into(),
        page: "".into(),
        screenshot: None,
    };
    assert!(is_page_reason(&browser(page_changed)), "a redesign the fallbacks cannot read");
    let rejected = |text: &str| {
        let rejection = PageRejection::read(text, chrono::Utc::now()).unwrap();
        browser(BrowserError::Rejected { step: Step::Pin, rejection, screenshot: None })
    };
    for never in [
        rejected("You have entered an incorrect PIN"),
        rejected("Invalid OTP"),
        rejected("Your account has been locked [1017090]"),
        rejected("Mobile number is not registered"),
        rejected("OTP is blocked [1017078]"),
        browser(BrowserError::Vetoed { step: Step::Pin, reason: "cap reached".into() }),
        LoginError::NoCredentials,
        LoginError::TokenRequest { error: Box::new(TokenRequestError::Superseded) },
    ] {
        assert!(!is_page_reason(&never), "{never}");
    }
}

#[test]
fn the_webhook_url_upstox_names_is_compared_by_path() {
    assert!(url_has_path("https://relogin.example.com/upstox/notifier/", "/upstox/notifier"));
    assert!(!url_has_path("https://relogin.example.com/other", "/upstox/notifier"));
    assert!(!url_has_path("not a url", "/upstox/notifier"));
}

/// An API client pointing at a closed port: a test that gets a refusal other than `Unverified` proves that the
/// webhook turned the POST away before calling Upstox.
fn unreachable_api() -> UpstoxApi {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    UpstoxApi::new(&UpstoxConfig {
        authorize_url: url::Url::parse("http://127.0.0.1:9/dialog").unwrap(),
        api_base_url: url::Url::parse(&format!("http://{closed}")).unwrap(),
        http_timeout: Duration::from_secs(2),
    })
    .unwrap()
}

fn account(client_id: &str) -> Account {
    Account {
        name: "primary".into(),
        index: 0,
        app: OAuthApp {
            client_id: client_id.into(),
            client_secret: ClientSecret::new("s"),
            redirect_uri: crate::config::RedirectUri::parse("http://127.0.0.1:9/cb").unwrap(),
        },
        method: Method::TokenRequest,
        fallback: Fallback::None,
        user_id: None,
        credentials: None,
    }
}

fn payload(client_id: &str, user_id: &str, issued_at: DateTime<Utc>) -> Vec<u8> {
    serde_json::json!({
        "client_id": client_id, "user_id": user_id, "access_token": "eyJ.forged.token", "token_type": "Bearer",
        "expires_at": (issued_at + chrono::Duration::hours(12)).timestamp_millis().to_string(),
        "issued_at": issued_at.timestamp_millis().to_string(), "message_type": "access_token",
    })
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn posts_are_refused_before_any_upstox_call_unless_a_fitting_request_is_outstanding() {
    let api = unreachable_api();
    let table = Outstanding::new();
    let now = Utc::now();
    let body = payload("cid-1", "AB1234", now);
    // Not serving: nothing is accepted.
    assert!(matches!(table.accept(&body, &api, now).await, Err(Refusal::NotReceiving)));
    table.set_receiving(true);
    // Nothing outstanding, for a known or an unknown client alike: 403.
    let refusal = table.accept(&body, &api, now).await.unwrap_err();
    assert!(matches!(refusal, Refusal::NotOutstanding { .. }) && refusal.http_status() == 403, "{refusal}");
    // Not a notification at all: 400, and the message does not quote the body.
    let refusal = table.accept(b"{\"access_token\":\"eyJ.SECRET\"}", &api, now).await.unwrap_err();
    assert_eq!(refusal.http_status(), 400);
    assert!(!refusal.to_string().contains("SECRET"), "{refusal}");

    let acct = account("cid-1");
    let request = TokenRequest::new(&table, &acct, Some("AB1234".into()));
    assert!(table.is_outstanding("cid-1"));
    // Another user's token, for the right client: refused without asking Upstox.
    let refusal = table.accept(&payload("cid-1", "ZZ9999", now), &api, now).await.unwrap_err();
    assert!(matches!(refusal, Refusal::WrongUser { .. }) && refusal.http_status() == 403, "{refusal}");
    // A token issued an hour before the request was sent (a captured old one): refused.
    let old = payload("cid-1", "AB1234", now - chrono::Duration::hours(1));
    assert!(matches!(table.accept(&old, &api, now).await, Err(Refusal::Stale { .. })));
    // After the request's expiry: refused.
    let late = now + chrono::Duration::days(2);
    assert!(matches!(table.accept(&body, &api, late).await, Err(Refusal::Expired { .. })));
    // A fitting POST reaches the profile check; Upstox unreachable means 503, and the request stays outstanding.
    let refusal = table.accept(&body, &api, now).await.unwrap_err();
    assert!(matches!(refusal, Refusal::Unverified { .. }) && refusal.http_status() == 503, "{refusal}");
    assert!(table.is_outstanding("cid-1"));
    // Dropping the request (the run gave up) takes it out of the table.
    drop(request);
    assert!(!table.is_outstanding("cid-1"));
    assert!(matches!(table.accept(&body, &api, now).await, Err(Refusal::NotOutstanding { .. })));
}

fn awaiting<'a>(
    table: &'a Outstanding,
    acct: &'a Account,
    until: DateTime<Utc>,
) -> (AwaitingApproval<'a>, tokio::sync::oneshot::Sender<()>) {
    let request = TokenRequest::new(table, acct, None);
    let (keep, _) = tokio::sync::oneshot::channel();
    let awaiting =
        AwaitingApproval { until, notifier_url: None, receiver: request.receiver, _registration: request.registration };
    (awaiting, keep)
}

#[tokio::test]
async fn waiting_ends_at_the_earlier_of_upstox_expiry_and_our_timeout_and_leaves_the_table() {
    let table = Outstanding::new();
    let acct = account("cid-2");
    let (soon, _keep) = awaiting(&table, &acct, Utc::now() + chrono::Duration::milliseconds(30));
    assert!(matches!(soon.wait(Duration::from_secs(30)).await, Approval::Expired { .. }));
    assert!(!table.is_outstanding("cid-2"));

    let (later, _keep) = awaiting(&table, &acct, Utc::now() + chrono::Duration::hours(1));
    match later.wait(Duration::from_millis(30)).await {
        Approval::TimedOut { waited } => assert_eq!(waited, Duration::from_millis(30)),
        _ => panic!("expected a timeout"),
    }
    assert!(!table.is_outstanding("cid-2"));
}

#[tokio::test]
async fn a_newer_request_for_the_client_supersedes_the_older() {
    let table = Outstanding::new();
    let acct = account("cid-3");
    let (older, _keep) = awaiting(&table, &acct, Utc::now() + chrono::Duration::hours(1));
    let newer = TokenRequest::new(&table, &acct, None);
    assert!(matches!(older.wait(Duration::from_secs(30)).await, Approval::Superseded));
    // The older one leaving did not take the newer one's place in the table.
    assert!(table.is_outstanding("cid-3"));
    drop(newer);
    assert!(!table.is_outstanding("cid-3"));
}
