//! The real page is unknown and changes (issue 8): the real binary and a real chromedriver + headless Chromium,
//! against an independent stand-in of Upstox's login app (`standin/`, not our simulator's markup) and against the
//! simulator. Proves: a wrong PIN is submitted once whatever the error markup; renamed ids log in through fallbacks
//! with a warning; a wrong client stops at once naming its keys; `probe` types nothing and tells a good page from a
//! bot block; the redirect URI goes out byte for byte; the lockout guard's "4 in a row" holds across days (a manual
//! clock) and process restarts until `reset-guard`.
//!
//! Each run prints a `[variant]` line (PIN submissions, exit, time) for the closing table of the issue.

mod standin;
mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use standin::{ErrorStyle, Ids, StandIn, StandInClient, StandInUser, random_client, random_user};
use support::{CliRun, HookReceiver, Rig, Scratch, find_secrets, toml_set};
use upstox_relogin::clock::Clock;
use upstox_relogin::metrics::Metrics;
use upstox_relogin::run::{Outcome, RunError, Runner, Trigger, WhenValid};
use upstox_relogin::simulator::{Faults, SimConfig};

/// One configured account of a stand-in test: its name, the app, the user, and the PIN written in the config.
struct Entry<'a> {
    name: &'a str,
    client: &'a StandInClient,
    user: &'a StandInUser,
    pin: String,
}

/// A configuration against `si` with the default selectors, quick timeouts, a file sink per account.
fn standin_config(scratch: &Scratch, si: &StandIn, entries: &[Entry<'_>]) -> String {
    let mut toml = format!(
        "state_dir = \"{}\"\n\n[upstox]\nauthorize_url = \"{}\"\napi_base_url = \"{}\"\n\n[browser]\nstep_timeout_secs = 15\n\n[login]\nretry_min_backoff_secs = 0\nretry_max_backoff_secs = 1\n",
        scratch.path("state").display(),
        si.authorize_url(),
        si.base
    );
    for e in entries {
        toml.push_str(&format!(
            "\n[[accounts]]\nname = \"{}\"\nclient_id = \"{}\"\nredirect_uri = \"{}\"\nmobile = \"{}\"\nclient_secret = \"{}\"\npin = \"{}\"\ntotp_secret = \"{}\"\n",
            e.name, e.client.client_id, e.client.redirect_uri, e.user.mobile, e.client.client_secret, e.pin, e.user.totp_secret
        ));
    }
    toml.push_str(&format!(
        "\n[[sinks]]\ntype = \"file\"\npath = \"{}/{{account}}.json\"\n",
        scratch.path("tokens").display()
    ));
    toml
}

/// Publish an earlier, unexpired token document for `account` and return its bytes.
fn seed_token(scratch: &Scratch, account: &str) -> Vec<u8> {
    let path = scratch.path(&format!("tokens/{account}.json"));
    support::seed_token_file(&path, account, ("SI0001", "Stand In", "stand.in@example.com"))
}

/// The line the binary printed for `account`'s result.
fn result_line(run: &CliRun, account: &str) -> String {
    run.all_output().lines().rev().find(|l| l.starts_with(&format!("{account}: "))).unwrap_or_default().to_owned()
}

fn wrong(pin: &str) -> String {
    pin.bytes().map(|b| char::from(b'0' + (b - b'0' + 5) % 10)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standin_a_wrong_pin_is_submitted_once_whatever_the_error_markup() {
    let styles = [
        ("plain", ErrorStyle::Plain, "You have entered an incorrect PIN"),
        ("toast", ErrorStyle::Toast, "You have entered an incorrect PIN [1017106]"),
        ("banner", ErrorStyle::Banner, "Incorrect PIN entered. Attempts left: 4"),
        ("replace", ErrorStyle::Replace, "The PIN you entered is wrong"),
        ("unknown", ErrorStyle::Unknown, "page said: \"Please verify your identity to proceed\""),
    ];
    let client = random_client();
    let users: Vec<StandInUser> = styles.iter().map(|(_, style, _)| random_user(*style)).collect();
    let si = StandIn::start(vec![client.clone()], users.clone(), Ids::Upstox).await;
    let scratch = Scratch::new();
    let entries: Vec<Entry<'_>> = styles
        .iter()
        .zip(&users)
        .map(|((name, ..), user)| Entry { name, client: &client, user, pin: wrong(&user.pin) })
        .collect();
    let config = scratch.write_config(&standin_config(&scratch, &si, &entries));

    for ((name, _, expected), entry) in styles.iter().zip(&entries) {
        let seeded = seed_token(&scratch, name);
        let run = scratch.cli(&config, &["login", "--account", name]).await;
        run.assert_code(1);
        let line = result_line(&run, name);
        let pins = si.record().pins.get(&entry.user.mobile).copied().unwrap_or(0);
        eprintln!(
            "[stand-in: wrong PIN, {name} error] PINs {pins}, exit {}, {:.1}s: {line}",
            run.code(),
            run.elapsed.as_secs_f64()
        );
        assert_eq!(pins, 1, "{name}: exactly one PIN submitted:\n{}", run.stderr());
        assert!(line.contains(expected), "{name}: the page's words reach the operator: {line}");
        assert!(!run.stderr().contains("retrying"), "{name}: never retried:\n{}", run.stderr());
        assert!(run.elapsed < Duration::from_secs(30), "{name}: no timeout was waited out: {:?}", run.elapsed);
        assert_eq!(
            std::fs::read(scratch.path(&format!("tokens/{name}.json"))).unwrap(),
            seeded,
            "{name}: token untouched"
        );
        let secrets = [
            ("PIN", entry.user.pin.clone()),
            ("typed PIN", entry.pin.clone()),
            ("TOTP secret", entry.user.totp_secret.clone()),
            ("client secret", client.client_secret.clone()),
            ("mobile", entry.user.mobile.clone()),
        ];
        let (_, leaks) = find_secrets(&run.all_output(), &secrets);
        assert!(leaks.is_empty(), "{name}: {leaks:?}");
    }
    // The second run the same day is refused by the guard (a PIN was rejected today), without a browser.
    let run = scratch.cli(&config, &["login", "--account", "plain"]).await;
    run.assert_code(1);
    assert!(result_line(&run, "plain").contains("lockout guard"), "{}", run.stderr());
    assert_eq!(si.record().pins.get(&users[0].mobile), Some(&1));
    assert!(si.record().keystrokes > 0, "the stand-in does see keystrokes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standin_renamed_ids_log_in_with_the_default_config_warn_and_show_in_status_and_probe() {
    let client = random_client();
    let user = random_user(ErrorStyle::Plain);
    let si = StandIn::start(vec![client.clone()], vec![user.clone()], Ids::Renamed).await;
    let scratch = Scratch::new();
    let entry = Entry { name: "primary", client: &client, user: &user, pin: user.pin.clone() };
    let receiver = HookReceiver::start(&[]).await;
    let notifier = format!("\n[[notifiers]]\ntype = \"webhook\"\nurl = \"{}\"\n", receiver.url("/hook"));
    let config = scratch.write_config(&(standin_config(&scratch, &si, &[entry]) + &notifier));

    let run = scratch.cli(&config, &["login"]).await;
    eprintln!(
        "[stand-in: renamed ids, default config] PINs {}, exit {}, {:.1}s",
        si.record().pins.values().sum::<u32>(),
        run.code(),
        run.elapsed.as_secs_f64()
    );
    run.assert_code(0);
    let stderr = run.stderr();
    for (step, element) in [
        ("mobile", "input"),
        ("mobile", "button"),
        ("otp", "input"),
        ("otp", "button"),
        ("pin", "input"),
        ("pin", "button"),
    ] {
        let warned = stderr.lines().any(|l| {
            l.contains("WARN")
                && l.contains(&format!("step=\"{step}\""))
                && l.contains(&format!("found the {element} by"))
        });
        assert!(warned, "a warning names step {step}'s {element}:\n{stderr}");
    }
    assert!(stderr.contains("label \"Enter 6-digit PIN\""), "the warning says what matched:\n{stderr}");
    // One notification for the six fallbacks of one login (rate-limited per account and kind), naming the fix.
    let hooks = receiver.requests();
    assert_eq!(hooks.len(), 1, "{hooks:#?}");
    let hook = &hooks[0].1;
    assert_eq!((hook["event"].as_str(), hook["account"].as_str()), (Some("page_changed"), Some("primary")), "{hook}");
    assert!(hook["message"].as_str().unwrap().contains("found only by"), "{hook}");
    assert!(hook["fix"].as_str().unwrap().contains("browser.selectors."), "{hook}");
    assert_eq!(si.record().pins.values().sum::<u32>(), 1);
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(scratch.path("tokens/primary.json")).unwrap()).unwrap();
    assert!(doc["access_token"].as_str().unwrap().starts_with("eyJstandin"));

    let status = scratch.cli(&config, &["status", "--json"]).await;
    status.assert_code(0);
    let report: serde_json::Value = serde_json::from_str(&status.stdout()).unwrap();
    let fallback = &report["accounts"][0]["last_locator_fallback"];
    assert!(fallback["matched"].as_str().is_some_and(|m| !m.is_empty()), "{report}");
    assert!(fallback["configured"].as_str().unwrap().starts_with('#'), "{report}");
    let text = scratch.cli(&config, &["status"]).await;
    assert!(text.stdout().contains("found only by"), "{}", text.stdout());

    let probe = scratch.cli(&config, &["probe"]).await;
    probe.assert_code(0);
    let line = result_line(&probe, "primary");
    assert!(line.contains("ready") && line.contains("fallback label \"Enter mobile number\""), "{line}");
    assert!(line.contains("update `browser.selectors.mobile_*`"), "{line}");
    let hooks = receiver.requests();
    assert_eq!(hooks.len(), 2, "the probe tells a person too: {hooks:#?}");
    assert!(hooks[1].1["message"].as_str().unwrap().contains("fallback label"), "{hooks:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standin_a_page_that_matches_nothing_is_the_login_page_changed() {
    let client = random_client();
    let user = random_user(ErrorStyle::Plain);
    let si = StandIn::start(vec![client.clone()], vec![user.clone()], Ids::Foreign).await;
    let scratch = Scratch::new();
    let entry = Entry { name: "primary", client: &client, user: &user, pin: user.pin.clone() };
    let config = scratch.write_config(&standin_config(&scratch, &si, &[entry]));
    let seeded = seed_token(&scratch, "primary");

    let run = scratch.cli(&config, &["login"]).await;
    let line = result_line(&run, "primary");
    eprintln!(
        "[stand-in: a page nothing matches] PINs 0, exit {}, {:.1}s: {line}",
        run.code(),
        run.elapsed.as_secs_f64()
    );
    run.assert_code(1);
    for needle in [
        "the login page changed: step `mobile`: no input matches `browser.selectors.mobile_input` (`#mobileNum`)",
        "Handynummer",
        "screenshot: ",
        "set `browser.selectors.mobile_input`",
    ] {
        assert!(line.contains(needle), "{needle} in: {line}");
    }
    assert!(!run.stderr().contains("retrying"), "no identical retries:\n{}", run.stderr());
    assert!(
        run.elapsed < Duration::from_secs(15),
        "decided once the page settled, not after the step timeout: {:?}",
        run.elapsed
    );
    let screenshot = line.split("screenshot: ").nth(1).and_then(|s| s.split(')').next()).unwrap();
    assert!(std::fs::read(screenshot).unwrap().starts_with(b"\x89PNG"), "{screenshot}");
    assert_eq!(std::fs::read(scratch.path("tokens/primary.json")).unwrap(), seeded);

    let probe = scratch.cli(&config, &["probe"]).await;
    probe.assert_code(1);
    assert!(result_line(&probe, "primary").contains("NOT READY") && probe.stdout().contains("the login page changed"));
    let record = si.record();
    assert_eq!((record.dialog_hits, record.keystrokes), (2, 0), "one login, one probe, nothing typed: {record:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standin_a_wrong_client_id_stops_in_seconds_naming_the_keys() {
    let client = random_client();
    let user = random_user(ErrorStyle::Plain);
    let si = StandIn::start(vec![client.clone()], vec![user.clone()], Ids::Upstox).await;
    let scratch = Scratch::new();
    let mut wrong_client = client.clone();
    wrong_client.client_id = "not-the-registered-app".into();
    let entries = [
        Entry { name: "first", client: &client, user: &user, pin: user.pin.clone() },
        Entry { name: "second", client: &wrong_client, user: &user, pin: user.pin.clone() },
    ];
    let config = scratch.write_config(&standin_config(&scratch, &si, &entries));
    let seeded = seed_token(&scratch, "second");

    let run = scratch.cli(&config, &["login", "--account", "second"]).await;
    eprintln!(
        "[stand-in: wrong client_id] PINs 0, exit {}, {:.1}s: {}",
        run.code(),
        run.elapsed.as_secs_f64(),
        result_line(&run, "second")
    );
    run.assert_code(1);
    let line = result_line(&run, "second");
    for needle in ["UDAPI100068", "`accounts[1].client_id`", "`accounts[1].redirect_uri`"] {
        assert!(line.contains(needle), "{needle} in: {line}");
    }
    assert!(run.elapsed < Duration::from_secs(10), "stopped in seconds: {:?}", run.elapsed);
    let record = si.record();
    assert_eq!(record.dialog_hits, 1, "permanent: the dialog was opened once");
    assert!(record.api_requests.is_empty() && record.keystrokes == 0, "nothing typed: {record:?}");
    assert_eq!(std::fs::read(scratch.path("tokens/second.json")).unwrap(), seeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standin_probe_types_nothing_and_tells_a_good_page_from_a_bot_block() {
    let client = random_client();
    let user = random_user(ErrorStyle::Plain);
    let si = StandIn::start(vec![client.clone()], vec![user.clone()], Ids::Upstox).await;
    let scratch = Scratch::new();
    let entry = Entry { name: "primary", client: &client, user: &user, pin: user.pin.clone() };
    let config = scratch.write_config(&standin_config(&scratch, &si, &[entry]));

    let good = scratch.cli(&config, &["probe"]).await;
    eprintln!(
        "[stand-in: probe, good page] exit {}, {:.1}s: {}",
        good.code(),
        good.elapsed.as_secs_f64(),
        result_line(&good, "primary")
    );
    good.assert_code(0);
    assert_eq!(good.stdout().lines().count(), 1, "one line per account:\n{}", good.stdout());
    let line = result_line(&good, "primary");
    assert!(line.contains("ready: mobile input by `#mobileNum`, button by `#getOtp`"), "{line}");

    si.set_bot_block(true);
    let blocked = scratch.cli(&config, &["probe", "--account", "primary"]).await;
    eprintln!(
        "[stand-in: probe, bot-block page] exit {}, {:.1}s: {}",
        blocked.code(),
        blocked.elapsed.as_secs_f64(),
        result_line(&blocked, "primary")
    );
    blocked.assert_code(1);
    let line = result_line(&blocked, "primary");
    assert!(line.contains("NOT READY") && line.contains("bot-block") && line.contains("Attention Required"), "{line}");

    let record = si.record();
    assert_eq!(record.dialog_hits, 2);
    assert_eq!(record.keystrokes, 0, "probe typed nothing: {record:?}");
    assert!(record.submissions().is_empty(), "probe submitted nothing: {:?}", record.api_requests);
    assert_eq!(record.api_requests, ["GET /app/api/start"], "only the page's own start-up request");
    let status = scratch.cli(&config, &["status", "--json"]).await;
    let report: serde_json::Value = serde_json::from_str(&status.stdout()).unwrap();
    assert_eq!(report["accounts"][0]["last_probe"]["ready"], false, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redirect_uri_is_sent_exactly_as_configured() {
    // Registered without a path: the dialog and the token endpoint compare strings, so a client that sends
    // `http://127.0.0.1:9/` can never log in.
    let mut sim = SimConfig::demo();
    sim.clients[0].redirect_uri = "http://127.0.0.1:9".into();
    let rig = Rig::with_sim(sim).await;
    let config = rig.default_config();
    assert!(std::fs::read_to_string(&config).unwrap().contains("redirect_uri = \"http://127.0.0.1:9\"\n"));

    let run = rig.cli(&config, &["login"]).await;
    eprintln!("[simulator: redirect_uri without a path] exit {}, {:.1}s", run.code(), run.elapsed.as_secs_f64());
    run.assert_code(0);
    let journal = rig.sim.journal();
    assert_eq!(
        (journal.states_seen.len(), journal.token_posts.len()),
        (1, 1),
        "the dialog and the exchange accepted it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_rejects_a_redirect_uri_with_a_fragment() {
    let scratch = Scratch::new();
    let client = random_client();
    let user = random_user(ErrorStyle::Plain);
    let si = StandIn::start(vec![client.clone()], vec![user.clone()], Ids::Upstox).await;
    let mut bad = client.clone();
    bad.redirect_uri = "http://127.0.0.1:9/cb#x".into();
    let entry = Entry { name: "primary", client: &bad, user: &user, pin: user.pin.clone() };
    let config = scratch.write_config(&standin_config(&scratch, &si, &[entry]));
    let run = scratch.cli(&config, &["check-config"]).await;
    run.assert_code(2);
    assert!(
        run.stderr().contains("`accounts[0].redirect_uri`") && run.stderr().contains("fragment"),
        "{}",
        run.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_pins_without_a_code_in_a_row_stop_the_account_across_days_and_restarts_until_reset_guard() {
    let rig = Rig::start().await;
    let pin = rig.sim.config().users[0].pin.clone();
    let base = rig.config_toml("", "");
    let wrong_config = rig.path("wrong.toml");
    std::fs::write(&wrong_config, toml_set(&base, "accounts", "pin", &format!("\"{}\"", wrong(&pin)))).unwrap();
    let seeded = rig.seed_token();

    // Three PINs without a code on earlier days (as a previous process left them).
    let day = |d: &str| d.parse::<chrono::NaiveDate>().unwrap();
    let state_dir = rig.state_dir().join("accounts");
    std::fs::create_dir_all(&state_dir).unwrap();
    let earlier = serde_json::json!({"pin_day": "2026-11-25", "pin_submissions": 1, "pins_without_code_in_a_row": 3});
    std::fs::write(state_dir.join("primary.json"), earlier.to_string()).unwrap();

    let clock = Clock::manual(DateTime::parse_from_rfc3339("2026-11-26T03:00:00Z").unwrap().with_timezone(&Utc));
    let runner = |path: &std::path::Path| {
        let config = Arc::new(upstox_relogin::config::load(path).unwrap());
        Runner::new(config, Arc::new(Metrics::new())).unwrap().with_clock(clock.clone())
    };
    let wrong_runner = runner(&wrong_config);
    let account = wrong_runner.config().accounts[0].clone();

    // Day 1 (2026-11-26): the 4th PIN without a code in a row.
    let result = wrong_runner.run(&account, WhenValid::LogIn, Trigger::Command).await;
    assert!(matches!(&result, Err(RunError::Login(e)) if e.to_string().contains("incorrect PIN")), "{result:?}");
    assert_eq!(rig.sim.journal().pin_submissions, 1);
    assert_eq!(rig.account_state()["pins_without_code_in_a_row"], 4);
    eprintln!("[simulator: 4th wrong PIN in a row, day 1] PINs 1, run failed as expected");

    // Days 2, 3 and 9: refused before any browser opens, whatever the day.
    for days in [1, 1, 6] {
        clock.advance(chrono::Duration::days(days));
        let result = wrong_runner.run(&account, WhenValid::LogIn, Trigger::Command).await;
        let message = result.as_ref().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("4 PIN submissions in a row ended without a code"), "{} {result:?}", clock.now());
        assert!(message.contains("reset-guard"), "it names the way out: {message}");
    }
    // A restarted process (the real binary, with the system clock) is refused the same way.
    let run = rig.cli(&wrong_config, &["login"]).await;
    run.assert_code(1);
    assert!(run.stderr().contains("in a row"), "{}", run.stderr());
    let journal = rig.sim.journal();
    assert_eq!((journal.pin_submissions, journal.states_seen.len()), (1, 1), "no browser after the 4th");
    assert_eq!(std::fs::read(rig.token_path()).unwrap(), seeded, "the published token stays");

    // A human fixes the PIN and resets the guard; the command says what it cleared.
    let reset = rig.cli(&wrong_config, &["reset-guard", "primary"]).await;
    reset.assert_code(0);
    let said = reset.stdout();
    assert!(said.contains("4 PIN submission(s) without a code in a row"), "{said}");
    assert!(said.contains("rejected-PIN mark of 2026-11-26"), "{said}");
    assert_eq!(rig.account_state()["pins_without_code_in_a_row"], 0);
    assert!(rig.account_state()["pin_rejected_day"].is_null());
    let again = rig.cli(&wrong_config, &["reset-guard", "primary"]).await;
    assert!(again.stdout().contains("nothing to reset"), "{}", again.stdout());

    let good_runner = runner(&rig.write_config(&base));
    let result = good_runner.run(&good_runner.config().accounts[0], WhenValid::LogIn, Trigger::Command).await;
    assert!(matches!(result, Ok(Outcome::LoggedIn { .. })), "{result:?}");
    let state = rig.account_state();
    assert_eq!((state["pins_without_code_in_a_row"].as_u64(), state["pin_submissions"].as_u64()), (Some(0), Some(0)));
    assert_eq!(state["pin_day"], day("2026-12-04").to_string(), "the day came from the manual clock");
    assert_eq!(rig.sim.journal().pin_submissions, 2);
}

/// One page variant of the simulator and what the product must do with it.
struct Variant {
    name: &'static str,
    faults: Faults,
    /// Type a wrong PIN.
    wrong_pin: bool,
    step_timeout_secs: u64,
    exit: i32,
    pins: u32,
    /// Words the binary's output must contain.
    says: &'static [&'static str],
}

impl Variant {
    fn new(name: &'static str, faults: Faults, exit: i32, pins: u32, says: &'static [&'static str]) -> Variant {
        Variant { name, faults, wrong_pin: false, step_timeout_secs: 20, exit, pins, says }
    }

    fn wrong_pin(mut self) -> Variant {
        self.wrong_pin = true;
        self
    }

    fn timeout(mut self, secs: u64) -> Variant {
        self.step_timeout_secs = secs;
        self
    }
}

/// Log in once against each variant (a fresh simulator each, `login.max_attempts` at its default of 3), print a row
/// of the table (PIN submissions, exit, time) and prove that no variant ever gets a second PIN in a run.
async fn try_variants(variants: Vec<Variant>) {
    for v in variants {
        let rig = Rig::with_faults(v.faults.clone()).await;
        let seeded = rig.seed_token();
        let mut toml =
            toml_set(&rig.config_toml("", ""), "browser", "step_timeout_secs", &v.step_timeout_secs.to_string());
        if v.wrong_pin {
            toml = toml_set(&toml, "accounts", "pin", &format!("\"{}\"", wrong(&rig.sim.config().users[0].pin)));
        }
        let config = rig.write_config(&toml);
        let run = rig.cli(&config, &["login"]).await;
        let journal = rig.sim.journal();
        let line = result_line(&run, "primary");
        eprintln!(
            "[simulator: {}] PINs {}, exit {}, {:.1}s, logins {}: {line}",
            v.name,
            journal.pin_submissions,
            run.code(),
            run.elapsed.as_secs_f64(),
            journal.states_seen.len()
        );
        assert_eq!(journal.pin_submissions, v.pins, "{}: PIN submissions\n{}", v.name, run.stderr());
        assert!(journal.pin_submissions <= 1, "{}: never a second PIN in a run", v.name);
        run.assert_code(v.exit);
        for needle in v.says {
            assert!(run.all_output().contains(needle), "{}: `{needle}` in\n{}", v.name, run.stderr());
        }
        if v.exit != 0 {
            assert_eq!(std::fs::read(rig.token_path()).unwrap(), seeded, "{}: the published token stays", v.name);
            assert!(!run.stderr().contains("retrying"), "{}: permanent, never retried\n{}", v.name, run.stderr());
        }
        let user = &rig.sim.config().users[0];
        let secrets =
            [("PIN", user.pin.clone()), ("TOTP secret", user.totp_secret.clone()), ("mobile", user.mobile.clone())];
        let (_, leaks) = find_secrets(&run.all_output(), &secrets);
        assert!(leaks.is_empty(), "{}: {leaks:?}", v.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_habits_that_a_login_passes_through() {
    let f = Faults::default;
    try_variants(vec![
        Variant::new(
            "renamed ids, default config",
            Faults { renamed_ids: true, ..f() },
            0,
            1,
            &["found the input by label", "found the button by button"],
        ),
        Variant::new("OTP masked ddd-ddd", Faults { masked_otp: true, ..f() }, 0, 1, &["attempt 1"]),
        Variant::new(
            "\"OTP sent\" notice after the mobile",
            Faults { info_toast_after_mobile: true, ..f() },
            0,
            1,
            &["attempt 1"],
        ),
        Variant::new(
            "\"OTP sent\" toast after the mobile",
            Faults { info_toast_after_mobile: true, toast_errors: true, ..f() },
            0,
            1,
            &["attempt 1"],
        ),
        Variant::new(
            "PIN input disabled for 300 ms",
            Faults { pin_input_disabled_ms: 300, ..f() },
            0,
            1,
            &["attempt 1"],
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_habits_that_stop_a_login_at_once() {
    let f = Faults::default;
    try_variants(vec![
        Variant::new(
            "wrong PIN, toast [1017106]",
            Faults { toast_errors: true, ..f() },
            1,
            1,
            &["You have entered an incorrect PIN [1017106]", "check the account's `pin`"],
        )
        .wrong_pin(),
        Variant::new(
            "wrong PIN, plain inline text",
            Faults { plain_errors: true, ..f() },
            1,
            1,
            &["You have entered an incorrect PIN"],
        )
        .wrong_pin(),
        Variant::new(
            "wrong PIN, renamed ids + toast",
            Faults { renamed_ids: true, toast_errors: true, ..f() },
            1,
            1,
            &["incorrect PIN [1017106]"],
        )
        .wrong_pin(),
        Variant::new(
            "PIN-lock screen [1017090]",
            Faults { pin_lock_after: 1, ..f() },
            1,
            1,
            &["1017090", "Upstox locked the account", "reset-guard"],
        )
        .wrong_pin(),
        Variant::new(
            "OTP blocked [1017078]",
            Faults { otp_blocked: true, ..f() },
            1,
            0,
            &["OTP is blocked", "retry after"],
        ),
        Variant::new(
            "dialog answers UDAPI100068",
            Faults { dialog_udapi100068: true, ..f() },
            1,
            0,
            &["UDAPI100068", "`accounts[0].client_id`", "`accounts[0].redirect_uri`"],
        ),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_pages_after_the_pin_that_are_not_a_code_end_the_run_after_one_pin() {
    let f = Faults::default;
    try_variants(vec![
        Variant::new(
            "unknown interstitial after a correct PIN",
            Faults { interstitial_after_pin: true, ..f() },
            1,
            1,
            &["page said: \"", "Confirm your device", "screenshot: ", "no further attempt in this run"],
        )
        .timeout(8),
        Variant::new(
            "PIN answer never comes",
            Faults { pin_delay_ms: 60_000, ..f() },
            1,
            1,
            &["the PIN was submitted but no code came back", "outcome is unknown"],
        )
        .timeout(5),
        Variant::new("bot-block page after the PIN", Faults { bot_block_after_pin: true, ..f() }, 1, 1, &["bot-block"]),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_serves_the_page_habits_and_probe_sees_them_as_a_user_would() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let scratch = Scratch::new();
    let port = support::free_port();
    let listen = format!("127.0.0.1:{port}");
    let state = scratch.path("state");
    let args =
        ["simulate", "--listen", &listen, "--state-dir", state.to_str().unwrap(), "--renamed-ids", "--toast-errors"];
    let mut simulate = support::binary_command(&scratch.path("tmp"), &scratch.path("unused.toml"), &args, &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("simulate starts");
    let mut lines = BufReader::new(simulate.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    let read = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let done = line.starts_with("path = ");
            printed.push_str(&line);
            printed.push('\n');
            if done {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read).await.expect("simulate prints its config");
    let config = scratch.write_config(&printed);

    let probe = scratch.cli(&config, &["probe"]).await;
    probe.assert_code(0);
    let line = result_line(&probe, "demo");
    eprintln!("[simulate --renamed-ids: probe] exit 0, {:.1}s: {line}", probe.elapsed.as_secs_f64());
    assert!(line.contains("fallback label \"Enter mobile number\", button by fallback button \"Get OTP\""), "{line}");
    simulate.kill().await.unwrap();
}
