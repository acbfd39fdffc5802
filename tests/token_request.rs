//! Upstox's v3 access-token request end to end: the real binary (daemon and `login`) against the simulator, which
//! takes the request, approves it (or not) and POSTs the token to the binary's notifier webhook over real HTTP.
//! Forged POSTs come from the test itself. Every test greps everything the binary printed for every secret and
//! token it could have seen, the delivered token included.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use rand::distr::{Alphanumeric, SampleString};
use serde_json::{Value, json};
use support::daemon::Daemon;
use support::{HookReceiver, Rig, find_secrets, free_port, http_get, toml_set, wait_for};
use upstox_relogin::simulator::Faults;

/// A config for account `primary` with `method` and `fallback`, the server on `port`, approvals awaited at most
/// `approval_timeout_secs`, and `schedule` (whole tables); the simulator's client notifies `port`'s webhook.
fn config(rig: &Rig, port: u16, account: &[(&str, &str)], approval_timeout_secs: u64, schedule: &str) -> PathBuf {
    let top = format!("[server]\nlisten = \"127.0.0.1:{port}\"\n{schedule}");
    let mut toml =
        toml_set(&rig.config_toml(&top, ""), "login", "approval_timeout_secs", &approval_timeout_secs.to_string());
    for (key, value) in account {
        toml = toml_set(&toml, "accounts", key, value);
    }
    let client = &rig.sim.config().clients[0];
    let hook = format!("http://127.0.0.1:{port}/upstox/notifier");
    assert!(rig.sim.set_notifier_url(&client.client_id, Some(&hook)), "the simulator knows the client");
    rig.write_config(&toml)
}

const TOKEN_REQUEST: (&str, &str) = ("method", "\"token-request\"");
const FALLBACK: (&str, &str) = ("fallback", "\"token-request\"");

/// GET `path` from the daemon; (status, body).
async fn get(d: &Daemon, path: &str) -> (u16, String) {
    http_get(&d.url(path)).await.expect("daemon answers")
}

/// POST `body` to the webhook at `base`; (status, answer).
async fn post(base: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
    let res = reqwest::Client::new()
        .post(format!("{base}/upstox/notifier"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("webhook answers");
    (res.status().as_u16(), res.text().await.unwrap())
}

/// A notification shaped as Upstox's, for `client_id`, `user_id` and `token`, issued now.
fn notification(client_id: &str, user_id: &str, token: &str) -> Value {
    let now = chrono::Utc::now();
    json!({
        "client_id": client_id, "user_id": user_id, "access_token": token, "token_type": "Bearer",
        "expires_at": (now + chrono::Duration::hours(8)).timestamp_millis().to_string(),
        "issued_at": now.timestamp_millis().to_string(), "message_type": "access_token",
    })
}

fn forged_token() -> String {
    format!(
        "eyJforged.{}.{}",
        Alphanumeric.sample_string(&mut rand::rng(), 60),
        Alphanumeric.sample_string(&mut rand::rng(), 40)
    )
}

/// The account's secrets, the published token (if any) and `extra` values, none of which may appear in `output`.
fn assert_no_secrets(test: &str, rig: &Rig, output: &str, extra: &[(&'static str, String)]) {
    let (client, user) = (&rig.sim.config().clients[0], &rig.sim.config().users[0]);
    let mut secrets = vec![
        ("PIN", user.pin.clone()),
        ("TOTP secret", user.totp_secret.clone()),
        ("client secret", client.client_secret.clone()),
        ("mobile", user.mobile.clone()),
    ];
    if let Ok(bytes) = std::fs::read(rig.token_path()) {
        let doc: Value = serde_json::from_slice(&bytes).unwrap();
        secrets.extend(doc["access_token"].as_str().map(|t| ("delivered token", t.to_owned())));
    }
    secrets.extend(extra.iter().cloned());
    let (lines, leaks) = find_secrets(output, &secrets);
    assert!(leaks.is_empty(), "{test}: secrets in the output:\n{}", leaks.join("\n"));
    assert!(lines > 3, "{test}: the output was searched ({lines} lines)");
    eprintln!("[{test}] grepped {lines} output lines for {} secret values: none found", secrets.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_sends_one_request_without_a_browser_publishes_the_verified_token_and_refuses_forgeries() {
    // Upstox delivers twice (the second is a replay of the first).
    let rig = Rig::with_faults(Faults { approve_twice: true, ..Faults::default() }).await;
    let port = free_port();
    let d = Daemon::start_with(&rig, &config(&rig, port, &[TOKEN_REQUEST], 600, ""), port, &[]).await;
    let (client, user) = (rig.sim.config().clients[0].clone(), rig.sim.config().users[0].clone());
    wait_for("the start-up catch-up's token request", Duration::from_secs(30), || async {
        rig.sim.journal().token_requests.iter().any(|r| r.accepted).then_some(())
    })
    .await;

    // While the request is outstanding: forged POSTs publish nothing, and the answers never echo them.
    let forged = forged_token();
    let genuine_shape = notification(&client.client_id, &user.user_id, &forged);
    let (status, answer) = post(&d.base, genuine_shape.to_string()).await;
    assert_eq!(status, 403, "a token Upstox's profile API does not know: {answer}");
    assert!(!answer.contains("eyJ"), "{answer}");
    let other_client = notification("615b1297-d443-3b39-ba19-1927fbcdddc7", &user.user_id, &forged);
    assert_eq!(post(&d.base, other_client.to_string()).await.0, 403, "a client with nothing outstanding");
    let mut order_update = genuine_shape.clone();
    order_update["message_type"] = json!("order_update");
    assert_eq!(post(&d.base, order_update.to_string()).await.0, 400);
    assert_eq!(post(&d.base, "not json at all").await.0, 400);
    let huge = json!({"message_type": "access_token", "access_token": "x".repeat(64 * 1024)});
    assert_eq!(post(&d.base, huge.to_string()).await.0, 413);
    let (status, _) = get(&d, "/upstox/notifier").await;
    assert_eq!(status, 405, "the webhook takes POSTs only");
    assert!(!rig.token_path().exists(), "nothing published by a forgery");

    // The account holder approves: Upstox POSTs the token (twice); the first is verified and published.
    let statuses = rig.sim.approve_token_request(&client.client_id).await.expect("approval delivered");
    assert_eq!(statuses, [Some(200), Some(403)], "the replayed delivery finds nothing outstanding");
    let doc = wait_for("the delivered token to be published", Duration::from_secs(20), || async {
        std::fs::read(rig.token_path()).ok().map(|b| serde_json::from_slice::<Value>(&b).unwrap())
    })
    .await;
    assert_eq!(doc["generation"], 1);
    assert_eq!(
        (doc["user_id"].as_str(), doc["email"].as_str()),
        (Some(user.user_id.as_str()), Some(user.email.as_str()))
    );
    assert_eq!(doc["extended_token"], Value::Null, "the notifier sends no extended token");
    let issued = chrono::DateTime::parse_from_rfc3339(doc["issued_at"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(doc["expires_at"].as_str().unwrap()).unwrap();
    assert!(expires <= upstox_relogin::token::expiry_for(issued.to_utc()), "expiry: the earlier of the two");
    assert_eq!(rig.account_state()["user_id"], user.user_id.as_str(), "the user id is remembered");
    let published = std::fs::read(rig.token_path()).unwrap();

    // A replay of the genuine delivery after success: nothing outstanding, nothing published.
    let token = doc["access_token"].as_str().unwrap();
    let replay = notification(&client.client_id, &user.user_id, token);
    assert_eq!(post(&d.base, replay.to_string()).await.0, 403);
    assert_eq!(std::fs::read(rig.token_path()).unwrap(), published, "the published token is untouched");

    // One request, no browser: no dialog was opened, no step typed, no chromedriver ever ran.
    let journal = rig.sim.journal();
    assert_eq!(journal.token_requests.len(), 1, "one request");
    assert!(journal.logins.is_empty() && journal.states_seen.is_empty(), "no dialog was opened");
    assert_eq!(journal.mobile_submissions, 0);
    assert_eq!(journal.deliveries.iter().map(|d| d.status).collect::<Vec<_>>(), [Some(200), Some(403)]);
    assert!(rig.chromedriver_pids().is_empty());
    let (_, metrics) = get(&d, "/metrics").await;
    assert!(metrics.contains("step=\"approval\""), "the approval step is timed");
    for (status, count) in [(200, 1), (400, 2), (403, 4), (413, 1)] {
        let line = format!("upstox_relogin_notifier_posts_total{{status=\"{status}\"}} {count}");
        assert!(metrics.contains(&line), "{line} missing from\n{metrics}");
    }
    let (code, _, log) = d.stop_with(libc::SIGTERM).await;
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("approval awaited"), "{log}");
    assert!(!log.contains("step=\"dialog\"") && !log.contains("step=\"browser\""), "no browser step:\n{log}");
    assert_eq!(log.matches("POST refused; nothing published").count(), 6, "{log}");
    assert_no_secrets("daemon token request", &rig, &log, &[("forged token", forged)]);
    rig.assert_no_browser_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_serves_the_webhook_while_it_waits_and_publishes_nothing_unless_a_verified_token_arrives() {
    let rig = Rig::with_faults(Faults { approve_after_ms: Some(200), ..Faults::default() }).await;
    let port = free_port();
    let config = config(&rig, port, &[TOKEN_REQUEST], 2, "");
    // A token-request account needs no mobile, PIN or TOTP secret: leave them out.
    let text = std::fs::read_to_string(&config).unwrap();
    let without: Vec<&str> = text
        .lines()
        .filter(|l| !["mobile =", "pin =", "totp_secret ="].iter().any(|k| l.trim_start().starts_with(k)))
        .collect();
    assert_eq!(text.lines().count() - without.len(), 3, "the three credentials were in the config");
    // A webhook notifier hears that approval is awaited.
    let receiver = HookReceiver::start(&[]).await;
    let notifier = format!("\n[[notifiers]]\ntype = \"webhook\"\nurl = \"{}\"\n", receiver.url("/hook"));
    std::fs::write(&config, without.join("\n") + &notifier).unwrap();

    let trace = [("RUST_LOG", "trace")];
    let run = rig.cli_env(&config, &["login"], &trace).await;
    run.assert_code(0);
    let told: Vec<Value> = receiver.requests().into_iter().map(|(_, body)| body).collect();
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!((told[0]["event"].as_str(), told[0]["account"].as_str()), (Some("approval_requested"), Some("primary")));
    let token = rig.read_token()["access_token"].as_str().unwrap().to_owned();
    assert!(!told[0].to_string().contains(&token), "no token in a notification");
    assert!(run.stderr().contains("Upstox app, WhatsApp message, or the developer apps page"), "{}", run.stderr());
    assert!(run.stderr().contains("approval awaited"), "{}", run.stderr());
    assert_eq!(rig.read_token()["generation"], 1);
    assert_no_secrets("login token request", &rig, &run.all_output(), &[]);
    let published = std::fs::read(rig.token_path()).unwrap();

    // Never approved: `login` gives up after `login.approval_timeout_secs`, exit 1, nothing published.
    rig.sim.set_faults(Faults { never_approve: true, ..Faults::default() });
    let run = rig.cli(&config, &["login", "--force"]).await;
    run.assert_code(1);
    assert!(run.stderr().contains("`login.approval_timeout_secs`"), "{}", run.stderr());
    assert!(run.elapsed >= Duration::from_secs(2) && run.elapsed < Duration::from_secs(20), "{:?}", run.elapsed);
    assert_eq!(std::fs::read(rig.token_path()).unwrap(), published);

    // Upstox delivers a token its own profile API rejects, or names a client that is not ours: refused, exit 1.
    for faults in [
        Faults { approve_after_ms: Some(100), notify_rejected_token: true, ..Faults::default() },
        Faults { approve_after_ms: Some(100), notify_unknown_client: true, ..Faults::default() },
    ] {
        rig.sim.set_faults(faults.clone());
        let before = rig.sim.journal().deliveries.len();
        let run = rig.cli_env(&config, &["login", "--force"], &trace).await;
        run.assert_code(1);
        let journal = rig.sim.journal();
        assert_eq!(journal.deliveries.len(), before + 1, "{faults:?}");
        assert_eq!(journal.deliveries[before].status, Some(403), "{faults:?}: refused");
        assert_eq!(std::fs::read(rig.token_path()).unwrap(), published, "{faults:?}: nothing published");
        assert_no_secrets("login refused delivery", &rig, &run.all_output(), &[]);
    }
    assert_eq!(rig.sim.journal().token_requests.len(), 4, "one request per login");
    assert!(rig.sim.journal().logins.is_empty(), "no browser: no dialog was opened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_blocked_browser_falls_back_to_the_token_request_once_per_slot() {
    let rig = Rig::with_faults(Faults { bot_block: true, approve_after_ms: Some(200), ..Faults::default() }).await;
    let port = free_port();
    let config = config(&rig, port, &[FALLBACK], 600, "");
    let d = Daemon::start_with(&rig, &config, port, &[]).await;
    let doc = wait_for("the fallback's token to be published", Duration::from_secs(60), || async {
        std::fs::read(rig.token_path()).ok().map(|b| serde_json::from_slice::<Value>(&b).unwrap())
    })
    .await;
    let user = &rig.sim.config().users[0];
    assert_eq!((doc["generation"].as_u64(), doc["user_id"].as_str()), (Some(1), Some(user.user_id.as_str())));
    let journal = rig.sim.journal();
    assert_eq!(journal.states_seen.len(), 1, "one browser login met the bot block");
    assert_eq!(journal.token_requests.len(), 1, "then one request");
    let slot_end = upstox_relogin::token::expiry_for(chrono::Utc::now()).to_rfc3339();
    assert_eq!(rig.account_state()["fallback_slot_end"], slot_end.as_str());
    let (code, _, log) = d.stop_with(libc::SIGTERM).await;
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("bot-block page") && log.contains("falling back to an access-token request"), "{log}");
    assert_no_secrets("fallback daemon", &rig, &log, &[]);

    // Same slot, still blocked: the browser fails again and there is no second fallback.
    let published = std::fs::read(rig.token_path()).unwrap();
    let run = rig.cli(&config, &["login", "--force"]).await;
    run.assert_code(1);
    assert!(run.stderr().contains("fallback was already taken in this slot"), "{}", run.stderr());
    assert_eq!(rig.sim.journal().token_requests.len(), 1, "no second request in the slot");
    assert_eq!(std::fs::read(rig.token_path()).unwrap(), published);
    rig.assert_no_browser_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_pin_never_falls_back() {
    let rig = Rig::with_faults(Faults { approve_after_ms: Some(200), ..Faults::default() }).await;
    let port = free_port();
    let pin = &rig.sim.config().users[0].pin;
    let wrong: String = pin.bytes().map(|b| char::from(b'0' + (b - b'0' + 5) % 10)).collect();
    let config = config(&rig, port, &[FALLBACK, ("pin", &format!("\"{wrong}\""))], 600, "");
    let d = Daemon::start_with(&rig, &config, port, &[]).await;
    let status = wait_for("the start-up run to end", Duration::from_secs(60), || async {
        let (_, body) = get(&d, "/status").await;
        let json: Value = serde_json::from_str(&body).ok()?;
        json["accounts"][0]["last_attempt"]["result"].is_string().then_some(json)
    })
    .await;
    assert_eq!(status["accounts"][0]["last_attempt"]["result"], "failed", "{status}");
    let error = status["accounts"][0]["last_attempt"]["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains("incorrect PIN"), "{error}");
    let journal = rig.sim.journal();
    assert_eq!(journal.wrong_pins, 1);
    assert!(journal.token_requests.is_empty(), "a rejected PIN never falls back");
    assert!(!rig.token_path().exists());
    let (code, _, log) = d.stop_with(libc::SIGTERM).await;
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("falling back"), "{log}");
    assert_no_secrets("wrong PIN daemon", &rig, &log, &[("configured PIN", wrong)]);
    rig.assert_no_browser_left();
}
