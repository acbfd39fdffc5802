//! The small things operators expect: `token` for scripts, JSON logs for log shippers, and SIGHUP as a clean stop.
//! None of these logs in through a browser.

mod support;

use support::daemon::Daemon;
use support::{Rig, free_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_prints_the_valid_token_on_stdout_only_and_fails_without_one() {
    let rig = Rig::start().await;
    let config = rig.default_config();

    let none = rig.cli(&config, &["token"]).await;
    none.assert_code(1);
    assert_eq!(none.stdout(), "", "nothing on stdout when no token is valid");
    assert!(none.stderr().contains("no valid token for `primary`"), "{}", none.stderr());

    let seeded: serde_json::Value = serde_json::from_slice(&rig.seed_token()).unwrap();
    let access_token = seeded["access_token"].as_str().unwrap();
    for args in [&["token"][..], &["token", "--account", "primary"][..]] {
        let run = rig.cli(&config, args).await;
        run.assert_code(0);
        assert_eq!(run.stdout(), format!("{access_token}\n"), "exactly the token, for $(…)");
        assert!(!run.stderr().contains(access_token), "the token goes to stdout only");
    }
    let unknown = rig.cli(&config, &["token", "--account", "nobody"]).await;
    unknown.assert_code(2);
    assert!(unknown.stderr().contains("no account named \"nobody\""), "{}", unknown.stderr());

    // An expired document is no token.
    let mut expired = seeded.clone();
    expired["expires_at"] = serde_json::json!("2020-01-02T03:30:00+05:30");
    std::fs::write(rig.token_path(), serde_json::to_vec(&expired).unwrap()).unwrap();
    let run = rig.cli(&config, &["token"]).await;
    run.assert_code(1);
    assert_eq!(run.stdout(), "");
}

/// Every non-empty line of `log` is a JSON object; returns them.
fn json_lines(log: &str) -> Vec<serde_json::Value> {
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}\n--- log\n{log}")))
        .collect();
    assert!(!lines.is_empty(), "no log lines at all");
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_format_comes_from_the_config_and_the_flag_wins() {
    let rig = Rig::start().await;
    // A Redis sink nobody listens on makes `status` log a warning, without a browser.
    let dead = format!("[[sinks]]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:{}/0\"\n", free_port());
    let config = rig.write_config(&format!("log_format = \"json\"\n{}", rig.config_toml("", &dead)));

    // A sink that cannot be read makes the report incomplete: `status` says so with exit 1.
    let run = rig.cli(&config, &["status"]).await;
    run.assert_code(1);
    let lines = json_lines(&run.stderr());
    let warning = lines.iter().find(|l| l["message"] == "cannot read the published token").expect("the warning");
    assert_eq!(warning["level"], "WARN");
    assert!(warning["sink"].as_str().unwrap().starts_with("redis:"), "fields are top-level: {warning}");

    let run = rig.cli(&config, &["--log-format", "text", "status"]).await;
    run.assert_code(1);
    assert!(run.stderr().contains("WARN") && !run.stderr().trim_start().starts_with('{'), "{}", run.stderr());

    let run = rig.cli(&config, &["--log-format", "xml", "status"]).await;
    run.assert_code(2);
    assert!(run.stderr().contains("possible values: text, json"), "{}", run.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_stops_the_daemon_cleanly_with_json_logs() {
    let rig = Rig::start().await;
    let d = Daemon::start(&rig, "", "", "[schedule]\non_start = \"never\"\n", &["--log-format", "json"]).await;
    let (code, took, log) = d.stop_with(libc::SIGHUP).await;
    assert_eq!(code, 0, "SIGHUP is a clean stop:\n{log}");
    assert!(took < std::time::Duration::from_secs(10), "stop took {took:?}");
    let lines = json_lines(&log);
    assert!(lines.iter().any(|l| l["message"] == "daemon started"), "{log}");
    let stopping = lines.iter().find(|l| l["message"] == "stopping").expect("a stop line");
    assert_eq!(stopping["signal"], "SIGHUP");
    assert!(lines.iter().any(|l| l["message"] == "stopped"), "{log}");
    rig.assert_no_browser_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_names_the_notifiers_without_their_secrets() {
    let rig = Rig::start().await;
    let notifiers = "[[notifiers]]\ntype = \"slack\"\nurl = \"https://hooks.slack.com/services/T0/B0/slackKEY123\"\n\n\
                     [[notifiers]]\ntype = \"telegram\"\nbot_token = \"123456:botKEY123\"\nchat_id = \"@relogin_ops\"\n";
    let config = rig.write_config(&rig.config_toml("", notifiers));
    let run = rig.cli(&config, &["check-config"]).await;
    run.assert_code(0);
    assert!(
        run.stdout().contains("notifiers [slack:https://hooks.slack.com, telegram:@relogin_ops]"),
        "{}",
        run.stdout()
    );
    assert!(!run.all_output().contains("KEY123"), "{}", run.all_output());
}
