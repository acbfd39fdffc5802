//! The notifier against a real HTTP receiver (axum on 127.0.0.1:0): retries, the rate limit, the shapes each kind
//! POSTs, and no secret in what leaves.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::routing::post;

use super::*;
use crate::secret::{BotToken, SecretUrl};
use crate::state::FailureClass;

/// What the receiver saw, and the statuses it answers with (in order; 200 once they run out).
#[derive(Default)]
struct Seen {
    requests: Vec<(String, Value)>,
    script: Vec<u16>,
}

struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

impl Receiver {
    async fn start(script: &[u16]) -> Receiver {
        let seen = Arc::new(Mutex::new(Seen { requests: Vec::new(), script: script.to_vec() }));
        let app = Router::new().route("/{*path}", post(receive)).with_state(Arc::clone(&seen));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { addr, seen }
    }

    fn url(&self, path: &str) -> SecretUrl {
        SecretUrl::new(format!("http://{}{path}", self.addr).parse().unwrap())
    }

    fn requests(&self) -> Vec<(String, Value)> {
        self.seen.lock().unwrap().requests.clone()
    }
}

async fn receive(State(seen): State<Arc<Mutex<Seen>>>, uri: Uri, body: axum::Json<Value>) -> StatusCode {
    let mut seen = seen.lock().unwrap();
    seen.requests.push((uri.path().to_owned(), body.0));
    let status = if seen.script.is_empty() { 200 } else { seen.script.remove(0) };
    StatusCode::from_u16(status).unwrap()
}

fn policy() -> NotifyPolicy {
    NotifyPolicy {
        rate_limit: Duration::from_secs(600),
        max_retries: 3,
        retry_min_backoff: Duration::from_millis(10),
        timeout: Duration::from_secs(5),
    }
}

fn failed(account: &str) -> Event {
    Event::login_failed(account, FailureClass::WrongPin, "incorrect PIN", Some("check `pin`".into()))
}

#[tokio::test]
async fn a_500_is_retried_until_delivered_once() {
    let rx = Receiver::start(&[500, 503]).await;
    let notifier = Notifier::new(&[NotifierConfig::Webhook { url: rx.url("/hook") }], &policy(), vec![]);
    assert_eq!(notifier.notify(failed("primary")), Sent::Queued);
    notifier.close(Duration::from_secs(10)).await;
    let requests = rx.requests();
    assert_eq!(requests.len(), 3, "two 5xx answers, then delivered: {requests:?}");
    assert!(requests.iter().all(|(path, body)| path == "/hook" && body == &requests[0].1), "same body each time");
    assert_eq!(requests[0].1["event"], "login_failed");
    assert_eq!(requests[0].1["account"], "primary");
    assert_eq!(requests[0].1["reason"], "wrong_pin");
}

#[tokio::test]
async fn a_4xx_is_not_retried_and_retries_stop_at_the_limit() {
    let rx = Receiver::start(&[404]).await;
    let notifier = Notifier::new(&[NotifierConfig::Webhook { url: rx.url("/gone") }], &policy(), vec![]);
    notifier.notify(failed("primary"));
    notifier.close(Duration::from_secs(10)).await;
    assert_eq!(rx.requests().len(), 1, "a 404 means the webhook is gone");

    let rx = Receiver::start(&[500; 10]).await;
    let notifier = Notifier::new(&[NotifierConfig::Webhook { url: rx.url("/down") }], &policy(), vec![]);
    notifier.notify(failed("primary"));
    notifier.close(Duration::from_secs(10)).await;
    assert_eq!(rx.requests().len(), 1 + 3, "the first try and `max_retries` more");
}

#[tokio::test]
async fn one_notification_per_account_and_event_within_the_window() {
    let rx = Receiver::start(&[]).await;
    let notifier = Notifier::new(&[NotifierConfig::Webhook { url: rx.url("/hook") }], &policy(), vec![]);
    let sent = [
        notifier.notify(failed("primary")),
        notifier.notify(failed("primary")),
        notifier.notify(failed("second")),
        notifier.notify(Event::guard_refused("primary", "a PIN was rejected today", None)),
    ];
    assert_eq!(sent, [Sent::Queued, Sent::RateLimited, Sent::Queued, Sent::Queued]);
    notifier.close(Duration::from_secs(10)).await;
    let seen: Vec<(String, String)> = rx
        .requests()
        .iter()
        .map(|(_, b)| (b["account"].as_str().unwrap().to_owned(), b["event"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(notifier.notify(failed("third")), Sent::Dropped, "closed: nothing more is taken");
}

#[test]
fn rate_limit_window_reopens() {
    let mut limit = RateLimit::new(Duration::from_secs(60));
    let t0 = Instant::now();
    assert!(limit.allow("a", EventKind::LoginFailed, t0));
    assert!(!limit.allow("a", EventKind::LoginFailed, t0 + Duration::from_secs(59)));
    assert!(limit.allow("a", EventKind::LoginRecovered, t0 + Duration::from_secs(59)));
    assert!(limit.allow("a", EventKind::LoginFailed, t0 + Duration::from_secs(60)));
    let mut none = RateLimit::new(Duration::ZERO);
    assert!(none.allow("a", EventKind::LoginFailed, t0) && none.allow("a", EventKind::LoginFailed, t0));
}

#[tokio::test]
async fn every_kind_posts_its_own_shape_and_no_secret() {
    let rx = Receiver::start(&[]).await;
    let configs = [
        NotifierConfig::Slack { url: rx.url("/services/T0/B0/slackkey") },
        NotifierConfig::Discord { url: rx.url("/api/webhooks/1/discordkey") },
        NotifierConfig::Telegram {
            bot_token: BotToken::new("123456:botkey"),
            chat_id: "-1001".into(),
            api_base_url: format!("http://{}/tg", rx.addr).parse().unwrap(),
        },
    ];
    let secrets = vec!["9876543210".to_owned(), "135790".to_owned()];
    let notifier = Notifier::new(&configs, &policy(), secrets);
    let event = Event::login_failed(
        "primary",
        FailureClass::WrongMobile,
        "the page refused the input: \"9876543210 is not registered\" (PIN 135790)",
        None,
    );
    assert_eq!(notifier.notify(event), Sent::Queued);
    notifier.close(Duration::from_secs(10)).await;
    let mut requests = rx.requests();
    requests.sort_by(|a, b| a.0.cmp(&b.0));
    let paths: Vec<&str> = requests.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["/api/webhooks/1/discordkey", "/services/T0/B0/slackkey", "/tg/bot123456:botkey/sendMessage"]);
    let text = |v: &Value| v.as_str().unwrap().to_owned();
    let (discord, slack, telegram) = (&requests[0].1, &requests[1].1, &requests[2].1);
    assert_eq!(discord["allowed_mentions"]["parse"], serde_json::json!([]));
    assert_eq!(telegram["chat_id"], "-1001");
    for body in [text(&discord["content"]), text(&slack["text"]), text(&telegram["text"])] {
        assert!(body.starts_with("[upstox-relogin] primary: login failed (wrong_mobile)\n"), "{body}");
        assert!(!body.contains("9876543210") && !body.contains("135790"), "a secret left: {body}");
        assert!(body.contains("[redacted]"), "{body}");
    }
}

#[tokio::test]
async fn transport_errors_never_name_the_url() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url: Url = format!("http://127.0.0.1:{port}/bot123456:botkey/sendMessage").parse().unwrap();
    let client = reqwest::Client::new();
    let e = super::post(&client, "telegram:-1", &url, &serde_json::json!({})).await.unwrap_err();
    assert!(e.is_retryable());
    let shown = error_chain(&e);
    assert!(!shown.contains("botkey"), "{shown}");
    assert!(shown.contains("telegram:-1"), "{shown}");
}

#[tokio::test]
async fn no_notifier_means_no_task_and_no_error() {
    let notifier = Notifier::new(&[], &policy(), vec![]);
    assert_eq!(notifier.notify(failed("primary")), Sent::NoNotifier);
    notifier.close(Duration::from_millis(1)).await;
}
