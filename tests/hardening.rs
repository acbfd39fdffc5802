//! Faults found by trying the product as a new user and an ops engineer would (issue 13), each turned into a test
//! against the real binary, the simulator over real HTTP, and (where a login is involved) a real chromedriver +
//! headless Chromium. Permission cases run the binary as `nobody` when the tests run as root (root ignores file
//! permissions; see `support::unprivileged`).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{CliRun, HookReceiver, Rig, free_port, http_get, wait_for};
use upstox_relogin::simulator::Faults;

/// A `chromedriver` stand-in that records that it was started, then runs the real one.
fn chromedriver_spy(rig: &Rig) -> (std::path::PathBuf, std::path::PathBuf) {
    let marker = rig.path("chromedriver-started");
    let spy = rig.path("chromedriver-spy");
    std::fs::write(&spy, format!("#!/bin/sh\ntouch '{}'\nexec chromedriver \"$@\"\n", marker.display())).unwrap();
    std::fs::set_permissions(&spy, std::fs::Permissions::from_mode(0o755)).unwrap();
    (spy, marker)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// Run the binary with `args` as an unprivileged user (the rig handed over to it first).
async fn cli_unprivileged(rig: &Rig, config: &Path, args: &[&str]) -> CliRun {
    let mut cmd = rig.command(config, args, &[]);
    support::unprivileged(cmd.as_std_mut(), rig.dir.path());
    let started = Instant::now();
    let output = cmd.output().await.expect("binary runs");
    let run = CliRun { output, elapsed: started.elapsed() };
    rig.assert_no_browser_left();
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_sink_dir_is_refused_before_any_browser_starts() {
    let rig = Rig::start().await;
    let (spy, marker) = chromedriver_spy(&rig);
    let toml =
        support::toml_set(&rig.config_toml("", ""), "browser", "chromedriver", &format!("\"{}\"", spy.display()));
    let config = rig.write_config(&toml);
    std::fs::create_dir_all(rig.path("tokens")).unwrap();
    support::hand_over(rig.dir.path());
    support::make_read_only(&rig.path("tokens"));

    let run = cli_unprivileged(&rig, &config, &["login"]).await;
    run.assert_code(1);
    let stderr = run.stderr();
    assert!(stderr.contains("no login attempted (no browser started)"), "{stderr}");
    assert!(stderr.contains("file:") && stderr.contains("tokens"), "names the sink: {stderr}");
    assert!(!marker.exists(), "chromedriver was started");
    let journal = rig.sim.journal();
    assert!(journal.states_seen.is_empty() && journal.logins.is_empty(), "the dialog was opened: {journal:?}");
    assert_eq!(std::fs::read_dir(rig.path("tokens")).unwrap().count(), 0, "the probe left nothing behind");
    eprintln!("read-only sink dir: refused in {:.2}s, before any browser", run.elapsed.as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_sink_refusing_the_password_is_refused_before_any_browser_starts() {
    let redis = support::RedisServer::start_with_password("right-password");
    let rig = Rig::start().await;
    let (spy, marker) = chromedriver_spy(&rig);
    // Redis as the only sink, with the wrong password.
    let base = rig.config_toml("", "");
    let file_sink = &base[base.find("[[sinks]]").unwrap()..base.find("[browser]").unwrap()];
    let wrong = redis.url().replace("right-password", "wrong-password");
    let toml = base.replace(file_sink, &format!("[[sinks]]\ntype = \"redis\"\nurl = \"{wrong}\"\n\n"));
    let toml = support::toml_set(&toml, "browser", "chromedriver", &format!("\"{}\"", spy.display()));
    let config = rig.write_config(&toml);
    let run = rig.cli(&config, &["login"]).await;
    run.assert_code(1);
    let stderr = run.stderr();
    assert!(stderr.contains("no login attempted") && stderr.contains("redis:upstox:token:{account}"), "{stderr}");
    assert!(!stderr.contains("wrong-password"), "the password is never shown: {stderr}");
    assert!(!marker.exists(), "chromedriver was started");
    assert!(rig.sim.journal().states_seen.is_empty());

    // With one good sink of two, the login goes ahead for it; the broken one is reported.
    let toml = support::toml_set(
        &rig.config_toml("", &format!("\n[[sinks]]\ntype = \"redis\"\nurl = \"{wrong}\"\n")),
        "browser",
        "chromedriver",
        &format!("\"{}\"", spy.display()),
    );
    let run = rig.cli(&rig.write_config(&toml), &["login"]).await;
    run.assert_code(1);
    assert!(run.stderr().contains("sink not ready; logging in for the sinks that are"), "{}", run.stderr());
    assert_eq!(rig.read_token()["generation"], 1, "the file sink got the token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_and_failure_files_are_private_under_umask_022() {
    // A bot-block page fails the login at once and leaves failure artifacts: every kind of state file is written.
    let rig = Rig::with_faults(Faults { bot_block: true, ..Faults::default() }).await;
    let config = rig.default_config();
    let mut cmd = rig.command(&config, &["login"], &[]);
    // SAFETY: umask(2) is async-signal-safe and touches only the child's file mode mask.
    unsafe {
        cmd.pre_exec(|| {
            libc::umask(0o022);
            Ok(())
        });
    }
    let output = cmd.output().await.unwrap();
    let run = CliRun { output, elapsed: Duration::ZERO };
    rig.assert_no_browser_left();
    run.assert_code(1);
    let state = rig.state_dir();
    for dir in [state.clone(), state.join("accounts"), state.join("failures"), rig.path("tokens")] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    let mut files = vec![state.join("accounts/primary.lock"), state.join("accounts/primary.json")];
    files.extend(std::fs::read_dir(state.join("failures")).unwrap().map(|e| e.unwrap().path()));
    assert!(files.len() >= 3, "artifacts were written: {files:?}");
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_says_when_it_cannot_read_state_or_a_sink() {
    let rig = Rig::start().await;
    let config = rig.default_config();
    rig.seed_token();
    std::fs::create_dir_all(rig.state_dir().join("accounts")).unwrap();
    std::fs::write(rig.state_dir().join("accounts/primary.json"), r#"{"generation": 41}"#).unwrap();
    support::hand_over(rig.dir.path());
    // As after `sudo upstox-relogin login`: root's state and token, unreadable by the service user.
    support::make_private_to_someone_else(&rig.state_dir());
    support::make_private_to_someone_else(&rig.path("tokens"));

    let run = cli_unprivileged(&rig, &config, &["status"]).await;
    run.assert_code(1);
    let out = run.all_output();
    assert!(out.contains("state UNREADABLE") && out.contains("primary.json"), "{out}");
    assert!(out.contains("UNREADABLE: cannot read") && out.contains("tokens"), "the sink too: {out}");
    let json = cli_unprivileged(&rig, &config, &["status", "--json"]).await;
    json.assert_code(1);
    let report: serde_json::Value = serde_json::from_str(&json.stdout()).unwrap();
    assert!(report["accounts"][0]["state_error"].as_str().unwrap().contains("primary.json"));
    assert!(report["accounts"][0]["sinks"][0]["error"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_check_keeps_the_published_token() {
    let rig = Rig::start().await;
    let config = rig.default_config();
    rig.cli(&config, &["login"]).await.assert_code(0);
    let published = std::fs::read(rig.token_path()).unwrap();

    rig.sim.set_faults(Faults { profile_429: true, ..Faults::default() });
    let run = rig.cli(&config, &["login"]).await;
    run.assert_code(0);
    let stderr = run.stderr();
    assert!(stderr.contains("kept unverified") && stderr.contains("UDAPI10005"), "{stderr}");
    assert!(stderr.contains("checked again later"), "{stderr}");
    assert_eq!(rig.sim.journal().token_posts.len(), 1, "no second login");
    assert_eq!(std::fs::read(rig.token_path()).unwrap(), published, "the token stays byte-identical");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_null_user_name_does_not_cost_the_token() {
    let rig = Rig::with_faults(Faults { token_null_user_name: true, ..Faults::default() }).await;
    let config = rig.default_config();
    let run = rig.cli(&config, &["login"]).await;
    run.assert_code(0);
    let doc = rig.read_token();
    let user = &rig.sim.config().users[0];
    assert_eq!(doc["user_name"], user.user_name.as_str(), "filled in from the profile");
    assert_eq!(doc["user_id"], user.user_id.as_str());
    let journal = rig.sim.journal();
    assert_eq!((journal.token_posts.len(), journal.states_seen.len()), (1, 1), "one login, one code");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_profile_rejects_right_after_issue_is_not_published() {
    let rig = Rig::with_faults(Faults { profile_rejects_new_tokens: true, ..Faults::default() }).await;
    let seeded = rig.seed_token();
    let config = rig.default_config();
    let run = rig.cli(&config, &["login"]).await;
    run.assert_code(1);
    let stderr = run.stderr();
    assert!(stderr.contains("rejected the token it had just issued") && stderr.contains("UDAPI100050"), "{stderr}");
    assert_eq!(std::fs::read(rig.token_path()).unwrap(), seeded, "the previous token stays");
    assert_eq!(rig.sim.journal().token_posts.len(), 1, "not retried as more logins");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firewall_page_from_the_token_endpoint_is_not_retried() {
    let rig = Rig::with_faults(Faults { token_403_html: true, ..Faults::default() }).await;
    let seeded = rig.seed_token();
    let config = rig.default_config();
    let run = rig.cli(&config, &["login"]).await;
    run.assert_code(1);
    let stderr = run.stderr();
    assert!(stderr.contains("HTTP 403") && stderr.contains("firewall"), "{stderr}");
    assert!(stderr.contains("\"403 Forbidden\""), "the page is named by its title, not dumped: {stderr}");
    let journal = rig.sim.journal();
    assert_eq!((journal.token_posts.len(), journal.states_seen.len()), (1, 1), "one login, not three");
    assert_eq!(std::fs::read(rig.token_path()).unwrap(), seeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_notices_a_revoked_token_and_logs_in_again() {
    let rig = Rig::start().await;
    let port = free_port();
    let top = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[schedule]\non_start = \"if-stale\"\nrecheck_interval_secs = 1\n\
         recheck_hours = \"00:00-23:59\"\nrecheck_days = [\"Mon\", \"Tue\", \"Wed\", \"Thu\", \"Fri\", \"Sat\", \"Sun\"]\n"
    );
    let receiver = HookReceiver::start(&[]).await;
    let hook = format!("[[notifiers]]\ntype = \"webhook\"\nurl = \"{}\"\n", receiver.url("/hook"));
    let config = rig.write_config(&rig.config_toml(&top, &hook));
    let log = rig.path("daemon.log");
    let mut cmd = rig.command(&config, &["run"], &[]);
    cmd.stdout(Stdio::null()).stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
    let mut child = cmd.spawn().expect("daemon starts");
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let generation = || {
        std::fs::read(rig.token_path())
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|d| d["generation"].as_u64())
    };

    wait_for("the start-up login (generation 1)", Duration::from_secs(60), || async {
        (generation() == Some(1)).then_some(())
    })
    .await;

    // A rate limit is no verdict: the token is kept and asked about again.
    rig.sim.set_faults(Faults { profile_429: true, ..Faults::default() });
    wait_for("a re-check without a verdict", Duration::from_secs(20), || async {
        read_log().contains("Upstox gave no verdict").then_some(())
    })
    .await;
    assert_eq!(rig.sim.journal().token_posts.len(), 1, "no login on a rate limit");

    // A logout elsewhere revokes the token: the next re-check sees UDAPI100050 and logs in again.
    rig.sim.set_faults(Faults::default());
    let token = rig.read_token()["access_token"].as_str().unwrap().to_owned();
    let logout = reqwest::Client::new()
        .delete(rig.sim.base_url().join("v2/logout").unwrap())
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status().as_u16(), 200);
    let revoked_at = Instant::now();
    // The second login waits for a fresh TOTP window (a step is never reused): up to 30 s more.
    wait_for("a new login after the revocation (generation 2)", Duration::from_secs(90), || async {
        (generation() == Some(2)).then_some(())
    })
    .await;
    let took = revoked_at.elapsed();
    let text = read_log();
    assert!(text.contains("Upstox says the published token is invalid") && text.contains("UDAPI100050"), "{text}");
    // A person hears of it: one `token_invalidated` notification naming the generation that was revoked.
    let told = wait_for("the token_invalidated notification", Duration::from_secs(10), || async {
        receiver.requests().into_iter().find(|(_, body)| body["event"] == "token_invalidated").map(|(_, b)| b)
    })
    .await;
    assert_eq!(told["account"], "primary", "{told}");
    let message = told["message"].as_str().unwrap();
    assert!(message.contains("generation 1") && message.contains("UDAPI100050"), "{told}");
    assert!(!message.contains(&token), "never the token: {told}");
    let (status, _) = http_get(&format!("http://127.0.0.1:{port}/readyz")).await.unwrap();
    assert_eq!(status, 200);
    assert!(!text.contains("--force"), "the daemon suggests no flag it does not have:\n{text}");
    // tokio-cron-scheduler's start-up chatter ("Uninited", "Job creator created") was logged at INFO.
    assert!(!text.contains("Uninited") && !text.contains("Job creator created"), "library noise:\n{text}");

    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(0), "{}", read_log());
    rig.assert_no_browser_left();
    eprintln!("revoked token replaced {:.1}s after the logout", took.as_secs_f64());
}
