//! Notifications end to end: the real binary logs in with a wrong PIN against the simulator, and a real HTTP
//! receiver (axum on 127.0.0.1:0, standing in for a webhook and the Telegram Bot API) gets exactly one
//! notification per notifier, naming the account and the fix, with no secret in it, after a 500 was retried.

mod support;

use serde_json::Value;
use support::{HookReceiver, Rig, find_secrets, toml_set};

/// A PIN that differs from `pin` in every digit.
fn wrong_pin(pin: &str) -> String {
    pin.bytes().map(|b| char::from(b'0' + (b - b'0' + 5) % 10)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pin_sends_one_notification_per_notifier_with_the_fix_and_no_secret() {
    let rig = Rig::start().await;
    // The webhook's first delivery gets a 500: the notifier must retry it.
    let receiver = HookReceiver::start(&[("/hook", 500)]).await;
    let bot_token = "7654321:AAbotSECRETtoken_for_tests_only";
    std::fs::write(rig.path("bot_token"), format!("{bot_token}\n")).unwrap();
    // A secret file every user can read is refused.
    std::fs::set_permissions(rig.path("bot_token"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let (client, user) = (rig.sim.config().clients[0].clone(), rig.sim.config().users[0].clone());
    let bad_pin = wrong_pin(&user.pin);
    let notifiers = format!(
        "[notify]\nretry_min_backoff_ms = 50\n\n\
         [[notifiers]]\ntype = \"webhook\"\nurl = \"{}\"\n\n\
         [[notifiers]]\ntype = \"telegram\"\nbot_token_file = \"{}\"\n\
         chat_id = \"-1001234567890\"\napi_base_url = \"{}\"\n",
        receiver.url("/hook"),
        rig.path("bot_token").display(),
        receiver.url("/tg"),
    );
    let toml = toml_set(&rig.config_toml("", &notifiers), "accounts", "pin", &format!("\"{bad_pin}\""));
    let config = rig.write_config(&toml);

    let run = rig.cli_env(&config, &["login"], &[("RUST_LOG", "debug")]).await;
    run.assert_code(1);

    let requests = receiver.requests();
    let hooks: Vec<&Value> = requests.iter().filter(|(p, _)| p == "/hook").map(|(_, b)| b).collect();
    let telegram: Vec<&Value> =
        requests.iter().filter(|(p, _)| p == &format!("/tg/bot{bot_token}/sendMessage")).map(|(_, b)| b).collect();
    assert_eq!(hooks.len(), 2, "one notification, delivered on the retry after a 500: {requests:#?}");
    assert_eq!(hooks[0], hooks[1], "the retry sends the same notification");
    assert_eq!(telegram.len(), 1, "one Telegram message: {requests:#?}");
    assert_eq!(requests.len(), 3, "nothing else was sent: {requests:#?}");

    let hook = hooks[0];
    assert_eq!(hook["event"], "login_failed");
    assert_eq!(hook["account"], "primary");
    assert_eq!(hook["reason"], "wrong_pin");
    let fix = hook["fix"].as_str().expect("a fix");
    assert!(fix.contains("check the account's `pin`"), "{fix}");
    assert!(hook["message"].as_str().unwrap().contains("incorrect PIN"), "{hook}");
    assert!(hook["at"].as_str().unwrap().ends_with("+05:30"), "{hook}");
    let text = telegram[0]["text"].as_str().unwrap();
    assert!(text.starts_with("[upstox-relogin] primary: login failed (wrong_pin)"), "{text}");
    assert!(text.contains("check the account's `pin`"), "{text}");
    assert_eq!(telegram[0]["chat_id"], "-1001234567890");

    // No secret in what was sent, nor in what the binary printed about sending it.
    let secrets = [
        ("PIN", user.pin.clone()),
        ("configured PIN", bad_pin.clone()),
        ("mobile", user.mobile.clone()),
        ("TOTP secret", user.totp_secret.clone()),
        ("client secret", client.client_secret.clone()),
        ("bot token", bot_token.to_owned()),
    ];
    let sent: String = requests.iter().map(|(_, b)| b.to_string() + "\n").collect();
    let (_, leaks) = find_secrets(&sent, &secrets);
    assert!(leaks.is_empty(), "secrets in notifications:\n{}", leaks.join("\n"));
    let (lines, leaks) = find_secrets(&run.all_output(), &secrets);
    assert!(leaks.is_empty(), "secrets in the output:\n{}", leaks.join("\n"));
    assert!(run.stderr().contains("notification sent"), "{}", run.stderr());
    assert!(run.stderr().contains("telegram:-1001234567890"), "the label names the chat, not the token");
    eprintln!("[wrong PIN] {} notification requests, {lines} output lines grepped: no secret", requests.len());

    // The next run is refused by the lockout guard (no browser, no PIN): one `guard_refused`, with the fix.
    let run = rig.cli(&config, &["login"]).await;
    run.assert_code(1);
    let requests = receiver.requests();
    let refused: Vec<&Value> = requests[3..].iter().filter(|(p, _)| p == "/hook").map(|(_, b)| b).collect();
    assert_eq!(refused.len(), 1, "{requests:#?}");
    assert_eq!(refused[0]["event"], "guard_refused");
    assert!(refused[0]["fix"].as_str().unwrap().contains("reset-guard primary"), "{}", refused[0]);
    assert_eq!(rig.sim.journal().pin_submissions, 1, "the PIN was submitted once in all");
}
