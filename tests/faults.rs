//! Fault injection end to end: the real binary, a real chromedriver + headless Chromium, the simulator misbehaving
//! on purpose. Each test gets its own `Rig` (fresh simulator and state_dir, so no TOTP window is shared), publishes
//! an earlier token first and checks that a failed login leaves it byte-identical, and greps everything the binary
//! printed for every secret it could have seen.

mod support;

use std::time::{Duration, Instant};

use redis::Commands;
use serde_json::Value;
use support::{CliRun, RedisServer, Rig, find_secrets, free_port, toml_set, wait_for};
use upstox_relogin::secret::TotpSecret;
use upstox_relogin::simulator::Faults;
use upstox_relogin::totp::{STEP_SECS, TotpGenerator};

/// Everything secret the binary could have seen in `rig`: the account's secrets, the earlier and the newly
/// published tokens, and every auth code and TOTP code the simulator handed out or received.
fn secrets(rig: &Rig, seeded: &[u8], configured_pin: Option<&str>) -> Vec<(&'static str, String)> {
    let (client, user) = (&rig.sim.config().clients[0], &rig.sim.config().users[0]);
    let mut out = vec![
        ("PIN", user.pin.clone()),
        ("TOTP secret", user.totp_secret.clone()),
        ("client secret", client.client_secret.clone()),
        ("mobile", user.mobile.clone()),
    ];
    out.extend(configured_pin.map(|p| ("configured PIN", p.to_owned())));
    let mut docs: Vec<Value> = vec![serde_json::from_slice(seeded).unwrap()];
    if let Ok(bytes) = std::fs::read(rig.token_path()) {
        docs.push(serde_json::from_slice(&bytes).unwrap());
    }
    for doc in &docs {
        for key in ["access_token", "extended_token"] {
            out.extend(doc[key].as_str().map(|t| (key, t.to_owned())));
        }
    }
    let journal = rig.sim.journal();
    out.extend(journal.codes_issued.into_iter().map(|c| ("auth code", c)));
    out.extend(journal.totp_submissions.into_iter().map(|c| ("TOTP code", c)));
    out
}

/// Assert that no secret appears in what `run` printed; report how many lines were searched, and the run's result.
fn assert_no_secrets(test: &str, run: &CliRun, secrets: &[(&str, String)]) -> usize {
    let (lines, leaks) = find_secrets(&run.all_output(), secrets);
    assert!(leaks.is_empty(), "{test}: secrets in the output:\n{}", leaks.join("\n"));
    let result = run.stderr().lines().rev().find(|l| l.starts_with("primary: ")).unwrap_or_default().to_owned();
    eprintln!(
        "[{test}] exit {} after {:.1}s; grepped {lines} output lines for {} secret values: none found\n    {result}",
        run.code(),
        run.elapsed.as_secs_f64(),
        secrets.len()
    );
    lines
}

#[track_caller]
fn assert_token_untouched(rig: &Rig, seeded: &[u8]) {
    assert_eq!(std::fs::read(rig.token_path()).unwrap(), seeded, "the published token must stay byte-identical");
}

/// The process exists and is not a zombie.
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()).map(str::to_owned))
        .is_some_and(|state| state != "Z" && state != "X")
}

/// The TOTP time step `code` belongs to, searched over the last ten minutes.
fn totp_step_of(secret: &str, code: &str) -> u64 {
    let generator = TotpGenerator::new(&TotpSecret::new(secret)).unwrap();
    let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap() / STEP_SECS;
    (now - 20..=now + 1)
        .find(|step| generator.code_at(step * STEP_SECS).code.expose() == code)
        .unwrap_or_else(|| panic!("code {code} belongs to no recent time step"))
}

/// A PIN that differs from `pin` in every digit.
fn wrong_pin(pin: &str) -> String {
    pin.bytes().map(|b| char::from(b'0' + (b - b'0' + 5) % 10)).collect()
}

#[test]
fn the_secret_grep_finds_leaks_and_ignores_longer_numbers() {
    let secrets = [("PIN", "123456".to_owned()), ("token", "eyJhbGciOiJIUzI1NiJ9.payload.sig".to_owned())];
    let (lines, leaks) = find_secrets("a\npin=123456 typed\nb", &secrets);
    assert_eq!((lines, leaks.len()), (3, 1), "{leaks:?}");
    let (_, leaks) = find_secrets("at 2026-11-28T08:30:05.123456Z elapsed_ms=91234567", &secrets);
    assert!(leaks.is_empty(), "digits inside longer numbers are not a PIN: {leaks:?}");
    let (_, leaks) = find_secrets("Bearer xeyJhbGciOiJIUzI1NiJ9.payload.sigx", &secrets);
    assert_eq!(leaks.len(), 1, "long secrets match anywhere");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromedriver_killed_mid_login_is_retried_with_a_fresh_browser() {
    // Every page step takes 2 s, so the kill lands while the first browser waits for the mobile step's answer.
    let rig = Rig::with_faults(Faults { step_delay_ms: 2000, ..Faults::default() }).await;
    let seeded = rig.seed_token();
    let step_timeout = Duration::from_secs(45);
    let config = rig.write_config(&toml_set(
        &rig.config_toml("", ""),
        "browser",
        "step_timeout_secs",
        &step_timeout.as_secs().to_string(),
    ));

    let started = Instant::now();
    let mut command = rig.command(&config, &["login"], &[]);
    let killer = async {
        // Kill once the mobile number was sent: the browser is then polling for the TOTP input.
        let pid = wait_for("this rig's chromedriver, mid mobile step", Duration::from_secs(60), || async {
            if rig.sim.journal().mobile_submissions == 0 {
                return None;
            }
            rig.chromedriver_pids().first().copied()
        })
        .await;
        // While it runs: no secret in the argv or environment of anything the binary spawned.
        let (client, user) = (&rig.sim.config().clients[0], &rig.sim.config().users[0]);
        let children = support::processes_with_tmpdir_under(&rig.path("tmp"));
        assert!(children.len() >= 2, "chromedriver and Chromium: {children:?}");
        for (child, name) in &children {
            for file in ["cmdline", "environ"] {
                let Ok(bytes) = std::fs::read(format!("/proc/{child}/{file}")) else { continue };
                let text = String::from_utf8_lossy(&bytes).replace('\0', "\n");
                let (_, leaks) = find_secrets(
                    &text,
                    &[
                        ("PIN", user.pin.clone()),
                        ("TOTP secret", user.totp_secret.clone()),
                        ("client secret", client.client_secret.clone()),
                        ("mobile", user.mobile.clone()),
                    ],
                );
                assert!(leaks.is_empty(), "{name} ({child}) {file}: {leaks:?}");
            }
        }
        // SAFETY: kill(2) on a pid we just found; no memory is touched.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "SIGKILL chromedriver {pid}");
        eprintln!(
            "chromedriver {pid} killed {:.2}s after start; argv + environment of {} spawned processes held no secret",
            started.elapsed().as_secs_f64(),
            children.len()
        );
        // The next browser gets a quick simulator.
        rig.sim.set_faults(Faults::default());
        pid
    };
    let (output, killed) = tokio::join!(command.output(), killer);
    let run = CliRun { output: output.expect("binary runs"), elapsed: started.elapsed() };
    rig.assert_no_browser_left();

    run.assert_code(0);
    let stderr = run.stderr();
    assert!(stderr.contains("browser session was lost"), "the first attempt names the lost session:\n{stderr}");
    assert!(stderr.contains("attempt 2"), "the second browser logged in:\n{stderr}");
    assert!(
        run.elapsed < step_timeout,
        "the dead driver was noticed at once, not after the {step_timeout:?} step timeout: took {:?}",
        run.elapsed
    );
    assert!(!running(killed), "chromedriver {killed} is gone");
    let journal = rig.sim.journal();
    assert_eq!(journal.states_seen.len(), 2, "two browser logins, each with its own state");
    assert_ne!(journal.states_seen[0], journal.states_seen[1]);
    assert_eq!(journal.token_posts.len(), 1, "one code, POSTed once");
    assert_eq!(journal.codes_issued, journal.token_posts);
    let doc = rig.read_token();
    assert_eq!(doc["generation"], 42, "the new token follows the earlier one");
    assert_ne!(std::fs::read(rig.token_path()).unwrap(), seeded);
    assert_no_secrets("chromedriver killed", &run, &secrets(&rig, &seeded, None));
    let failure = stderr.lines().find(|l| l.contains("login attempt failed")).unwrap_or_default();
    eprintln!("chromedriver killed: pid {killed}, login done in {:.1}s; {failure}", run.elapsed.as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_503_once_recovers_through_a_fresh_login_without_reposting_the_code() {
    let rig = Rig::with_faults(Faults { token_5xx_first: 1, ..Faults::default() }).await;
    let seeded = rig.seed_token();
    let config = rig.default_config();

    let run = rig.cli(&config, &["login"]).await;
    run.assert_code(0);
    let stderr = run.stderr();
    assert!(stderr.contains("UDAPI100500"), "the 503 is reported:\n{stderr}");
    assert!(stderr.contains("attempt 2"), "{stderr}");
    let journal = rig.sim.journal();
    assert_eq!(journal.token_posts.len(), 2, "two token POSTs");
    assert_ne!(journal.token_posts[0], journal.token_posts[1], "with two different codes");
    assert_eq!(journal.codes_issued, journal.token_posts, "every code POSTed exactly once, in order");
    assert_eq!(journal.states_seen.len(), 2, "the second code came from a new browser login");
    assert_eq!(journal.access_tokens_issued, 1);
    assert_eq!(rig.read_token()["generation"], 42);
    assert_no_secrets("token 503 once", &run, &secrets(&rig, &seeded, None));
    eprintln!("token 503 once: recovered in {:.1}s", run.elapsed.as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_webdriver_fails_within_bounds_naming_it() {
    let rig = Rig::start().await;
    let seeded = rig.seed_token();
    let url = format!("http://127.0.0.1:{}/", free_port());
    let config =
        rig.write_config(&toml_set(&rig.config_toml("", ""), "browser", "webdriver_url", &format!("\"{url}\"")));

    let run = rig.cli(&config, &["login"]).await;
    run.assert_code(1);
    let stderr = run.stderr();
    assert!(stderr.contains(&format!("cannot reach the WebDriver server at `{url}`")), "{stderr}");
    assert!(stderr.contains("`browser.webdriver_url`"), "{stderr}");
    assert_eq!(stderr.matches("retrying with a new browser login").count(), 2, "3 attempts (retryable):\n{stderr}");
    assert!(run.elapsed < Duration::from_secs(30), "took {:?}", run.elapsed);
    assert!(rig.sim.journal().states_seen.is_empty(), "no browser reached the dialog");
    assert_token_untouched(&rig, &seeded);
    assert_no_secrets("webdriver unreachable", &run, &secrets(&rig, &seeded, None));
    eprintln!("webdriver unreachable: exit 1 after {:.1}s", run.elapsed.as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_pin_at_trace_is_submitted_once_and_leaves_no_secret_anywhere() {
    let rig = Rig::start().await;
    let seeded = rig.seed_token();
    let user = rig.sim.config().users[0].clone();
    let bad_pin = wrong_pin(&user.pin);
    let config = rig.write_config(&toml_set(&rig.config_toml("", ""), "accounts", "pin", &format!("\"{bad_pin}\"")));

    let run = rig.cli_env(&config, &["login"], &[("RUST_LOG", "trace")]).await;
    run.assert_code(1);
    let stderr = run.stderr();
    assert!(stderr.contains("incorrect PIN") && stderr.contains("fix:"), "{stderr}");
    let journal = rig.sim.journal();
    assert_eq!((journal.pin_submissions, journal.wrong_pins), (1, 1), "exactly one PIN submitted");
    assert_eq!(journal.states_seen.len(), 1, "not retried");
    assert_token_untouched(&rig, &seeded);
    assert!(rig.account_state()["pin_rejected_day"].is_string(), "the day is closed for this account");
    // `status` says so in words, and names the command that reopens it.
    let status = rig.cli(&config, &["status"]).await;
    assert!(
        status.stdout().contains("a PIN was rejected today (IST): no PIN is tried again today"),
        "{}",
        status.stdout()
    );
    assert!(status.stdout().contains("reset-guard primary"), "{}", status.stdout());

    // Artifacts: a real PNG and the page's HTML, neither holding the PIN or the mobile number.
    let failures: Vec<_> =
        std::fs::read_dir(rig.state_dir().join("failures")).unwrap().map(|e| e.unwrap().path()).collect();
    let png = failures.iter().find(|p| p.extension().is_some_and(|e| e == "png")).expect("a screenshot");
    assert!(std::fs::read(png).unwrap().starts_with(b"\x89PNG\r\n\x1a\n"), "{} is a PNG", png.display());
    let html = failures.iter().find(|p| p.extension().is_some_and(|e| e == "html")).expect("the page HTML");
    assert!(std::fs::read_to_string(html).unwrap().contains("incorrect PIN"), "the artifact shows the message");
    for path in &failures {
        let bytes = std::fs::read(path).unwrap();
        for (what, secret) in [("PIN", &bad_pin), ("mobile", &user.mobile)] {
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "{what} in {}", path.display());
        }
    }
    let lines = assert_no_secrets("wrong PIN at trace", &run, &secrets(&rig, &seeded, Some(&bad_pin)));
    assert!(lines > 20, "trace output is substantial ({lines} lines)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_totp_rejected_is_retried_once_in_a_fresh_window_with_a_new_code() {
    let rig = Rig::with_faults(Faults { reject_first_totp: true, ..Faults::default() }).await;
    let seeded = rig.seed_token();
    let config = rig.default_config();

    let run = rig.cli(&config, &["login"]).await;
    run.assert_code(0);
    assert!(run.stderr().contains("TOTP rejected; retrying once in the next window"), "{}", run.stderr());
    assert!(run.stderr().contains("attempt 1"), "the retry stayed within one browser login: {}", run.stderr());
    let journal = rig.sim.journal();
    assert_eq!(journal.totp_submissions.len(), 2, "{:?}", journal.totp_submissions);
    let (first, second) = (&journal.totp_submissions[0], &journal.totp_submissions[1]);
    assert_ne!(first, second, "never the same code twice");
    let secret = &rig.sim.config().users[0].totp_secret;
    let (step1, step2) = (totp_step_of(secret, first), totp_step_of(secret, second));
    assert!(step2 > step1, "the second code is from a later window ({step1} then {step2})");
    assert_eq!(rig.account_state()["last_totp_step"], step2, "the used step is remembered");
    assert_eq!(journal.states_seen.len(), 1);
    assert_eq!(journal.token_posts.len(), 1);
    assert_eq!(rig.read_token()["generation"], 42);
    assert_no_secrets("first TOTP rejected", &run, &secrets(&rig, &seeded, None));
    eprintln!("first TOTP rejected: windows {step1} → {step2}, login took {:.1}s", run.elapsed.as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_rejected_twice_in_a_row_is_permanent() {
    let rig = Rig::start().await;
    let seeded = rig.seed_token();
    // A well-formed secret that is not the account's: every code it makes is "Invalid OTP".
    let other_secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    assert_ne!(rig.sim.config().users[0].totp_secret, other_secret);
    let config = rig.write_config(&toml_set(
        &rig.config_toml("", ""),
        "accounts",
        "totp_secret",
        &format!("\"{other_secret}\""),
    ));

    let run = rig.cli(&config, &["login"]).await;
    run.assert_code(1);
    let stderr = run.stderr();
    assert!(stderr.contains("Invalid OTP") && stderr.contains("check `totp_secret`"), "{stderr}");
    let journal = rig.sim.journal();
    assert_eq!(journal.totp_submissions.len(), 2, "two codes, then stop: {:?}", journal.totp_submissions);
    assert_ne!(journal.totp_submissions[0], journal.totp_submissions[1]);
    let (s1, s2) = (
        totp_step_of(other_secret, &journal.totp_submissions[0]),
        totp_step_of(other_secret, &journal.totp_submissions[1]),
    );
    assert!(s2 > s1, "from two windows");
    assert_eq!(journal.states_seen.len(), 1, "permanent: no second browser login");
    assert_eq!(journal.pin_submissions, 0, "the PIN was never typed");
    assert_token_untouched(&rig, &seeded);
    assert_no_secrets("TOTP rejected twice", &run, &secrets(&rig, &seeded, None));
}

/// A login against a simulator serving a bot-block page under `faults`: it must fail at once, naming the page, with
/// no retry. Returns what the caller checks further.
async fn login_into_a_bot_block(faults: Faults) -> (Rig, Vec<u8>, support::CliRun) {
    let rig = Rig::with_faults(faults).await;
    let seeded = rig.seed_token();
    let config = rig.default_config();
    let run = rig.cli(&config, &["login"]).await;
    run.assert_code(1);
    let stderr = run.stderr();
    assert!(stderr.contains("bot-block page") && stderr.contains("Access denied"), "{stderr}");
    assert!(!stderr.contains("retrying"), "permanent: never retried\n{stderr}");
    (rig, seeded, run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_block_page_is_permanent_and_named() {
    let (rig, seeded, run) = login_into_a_bot_block(Faults { bot_block: true, ..Faults::default() }).await;
    assert!(run.elapsed < Duration::from_secs(15), "quick: {:?}", run.elapsed);
    let journal = rig.sim.journal();
    assert_eq!(journal.states_seen.len(), 1, "one attempt");
    assert!(journal.totp_submissions.is_empty() && journal.pin_submissions == 0);
    assert_token_untouched(&rig, &seeded);
    assert_no_secrets("bot-block", &run, &secrets(&rig, &seeded, None));
    eprintln!("bot-block: exit 1 after {:.1}s", run.elapsed.as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_block_after_the_pin_is_permanent_and_counted() {
    let (rig, seeded, run) = login_into_a_bot_block(Faults { bot_block_after_pin: true, ..Faults::default() }).await;
    let journal = rig.sim.journal();
    assert_eq!((journal.states_seen.len(), journal.pin_submissions), (1, 1), "one attempt, one PIN");
    assert!(journal.codes_issued.is_empty() && journal.token_posts.is_empty());
    // The PIN went in without a code coming back: the lockout guard counted it.
    assert_eq!(rig.account_state()["pin_submissions"], 1);
    assert_token_untouched(&rig, &seeded);
    eprintln!("bot-block after PIN: exit 1 after {:.1}s", run.elapsed.as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_cap_holds_across_process_restarts() {
    // The PIN reaches Upstox but its answer never comes back in time: the outcome is unknown, so it counts.
    let rig = Rig::with_faults(Faults { pin_delay_ms: 120_000, ..Faults::default() }).await;
    let seeded = rig.seed_token();
    let mut toml = rig.config_toml("", "");
    for (table, key, value) in [
        ("login", "max_pin_submissions_per_day", "2"),
        ("login", "max_attempts", "1"),
        ("browser", "step_timeout_secs", "5"),
    ] {
        toml = toml_set(&toml, table, key, value);
    }
    let config = rig.write_config(&toml);

    for expected in [1, 2] {
        let run = rig.cli(&config, &["login"]).await;
        run.assert_code(1);
        assert!(run.stderr().contains("outcome is unknown"), "{}", run.stderr());
        assert_eq!(rig.sim.journal().pin_submissions, expected);
        assert_eq!(rig.account_state()["pin_submissions"], expected, "persisted before the next process");
        assert_no_secrets("lockout: PIN timed out", &run, &secrets(&rig, &seeded, None));
    }
    for _ in 0..2 {
        let run = rig.cli(&config, &["login"]).await;
        run.assert_code(1);
        let stderr = run.stderr();
        assert!(stderr.contains("lockout guard") && stderr.contains("`login.max_pin_submissions_per_day`"), "{stderr}");
        assert!(run.elapsed < Duration::from_secs(10), "refused without a browser: {:?}", run.elapsed);
        assert_no_secrets("lockout: refused", &run, &secrets(&rig, &seeded, None));
    }
    let journal = rig.sim.journal();
    assert_eq!(journal.pin_submissions, 2, "never more than the cap");
    assert_eq!(journal.states_seen.len(), 2, "the refused runs opened no browser");
    assert!(journal.codes_issued.is_empty());
    assert_token_untouched(&rig, &seeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn successful_login_at_trace_prints_no_secret() {
    let redis = RedisServer::start();
    let rig = Rig::start().await;
    let seeded = rig.seed_token();
    // The Redis sink too: its client library logs at trace as well.
    let redis_sink = format!("\n[[sinks]]\ntype = \"redis\"\nurl = \"{}\"\nchannel = \"upstox:token\"\n", redis.url());
    let config = rig.write_config(&rig.config_toml("", &redis_sink));

    let run = rig.cli_env(&config, &["login"], &[("RUST_LOG", "trace")]).await;
    run.assert_code(0);
    let stderr = run.stderr();
    assert!(stderr.contains("TRACE"), "trace logging is on");
    assert!(stderr.contains("local clock agrees with Upstox's"), "the clock was checked:\n{stderr}");
    assert!(!stderr.contains("off Upstox's"), "no skew warning against an honest clock");
    let secrets = secrets(&rig, &seeded, None);
    let kinds: Vec<&str> = secrets.iter().map(|(k, _)| *k).collect();
    for kind in ["PIN", "TOTP secret", "client secret", "access_token", "extended_token", "auth code", "TOTP code"] {
        assert!(kinds.contains(&kind), "{kind} is among the secrets looked for");
    }
    let stored: Vec<u8> =
        redis::Client::open(redis.url()).unwrap().get_connection().unwrap().get("upstox:token:primary").unwrap();
    assert_eq!(stored, std::fs::read(rig.token_path()).unwrap(), "both sinks got the document");
    let lines = assert_no_secrets("successful login at trace", &run, &secrets);
    assert!(lines > 20, "trace output is substantial ({lines} lines)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skewed_clock_is_warned_about_before_the_browser_starts() {
    let rig = Rig::with_faults(Faults { date_skew_secs: 90, ..Faults::default() }).await;
    let url = format!("http://127.0.0.1:{}/", free_port());
    let mut toml = toml_set(&rig.config_toml("", ""), "browser", "webdriver_url", &format!("\"{url}\""));
    toml = toml_set(&toml, "login", "max_attempts", "1");
    let config = rig.write_config(&toml);

    let run = rig.cli(&config, &["login"]).await;
    run.assert_code(1);
    let stderr = run.stderr();
    let warning =
        stderr.lines().find(|l| l.contains("off Upstox's")).unwrap_or_else(|| panic!("no warning:\n{stderr}"));
    assert!(warning.contains("WARN") && warning.contains("NTP"), "{warning}");
    // Upstox's clock is 90 s ahead, so ours is about 90 s behind (±0.5 s of `Date` rounding, ± half a round trip).
    let skew: f64 = warning.rsplit("skew_secs=").next().and_then(|v| v.trim().parse().ok()).expect("skew_secs field");
    assert!((-92.0..=-88.0).contains(&skew), "{warning}");
    eprintln!("[clock skew] {warning}");
}
