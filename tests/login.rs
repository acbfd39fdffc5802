//! `login` end to end: the real binary, a real chromedriver + headless Chromium, the simulator over real HTTP.

mod support;

use std::os::unix::fs::PermissionsExt;

use chrono::{DateTime, Utc};
use support::Rig;
use upstox_relogin::simulator::Faults;

fn utc(v: &serde_json::Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap().with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_publishes_the_document_then_skips_then_force_logs_in_again() {
    let rig = Rig::start().await;
    // A second file sink that asks for the 1-year extended token; the default one does not get it.
    let with_extended = rig.path("tokens-ext/primary.json");
    let tables = format!(
        "\n[[sinks]]\ntype = \"file\"\npath = \"{}/{{account}}.json\"\ninclude_extended_token = true\n",
        rig.path("tokens-ext").display()
    );
    let config = rig.write_config(&rig.config_toml("", &tables));

    let first = rig.cli(&config, &["login"]).await;
    first.assert_code(0);
    let doc = rig.read_token();
    assert!(doc.get("extended_token").is_none(), "extended_token is opt-in per sink: {doc}");
    let ext: serde_json::Value = serde_json::from_slice(&std::fs::read(&with_extended).unwrap()).unwrap();
    assert!(ext["extended_token"].as_str().unwrap().starts_with("eyJ"), "{ext}");
    assert_ne!(ext["extended_token"], ext["access_token"]);
    let mut stripped = ext.clone();
    stripped.as_object_mut().unwrap().remove("extended_token");
    assert_eq!(stripped, doc, "the sinks differ only in extended_token");
    let user = &rig.sim.config().users[0];
    assert_eq!(doc["account"], "primary");
    assert_eq!(doc["user_id"], user.user_id.as_str());
    assert_eq!(doc["token_type"], "Bearer");
    assert_eq!(doc["generation"], 1);
    assert!(doc["access_token"].as_str().unwrap().starts_with("eyJ"));
    let expected_expiry = upstox_relogin::token::expiry_for(utc(&doc["issued_at"]));
    assert_eq!(doc["expires_at"].as_str().unwrap(), expected_expiry.to_rfc3339());
    assert!(doc["issued_at"].as_str().unwrap().ends_with("+05:30"));
    // The contract's field order, as written in the file.
    let text = std::fs::read_to_string(rig.token_path()).unwrap();
    let order = [
        "account",
        "access_token",
        "token_type",
        "user_id",
        "user_name",
        "email",
        "exchanges",
        "products",
        "issued_at",
        "expires_at",
        "generation",
    ];
    let positions: Vec<usize> =
        order.iter().map(|k| text.find(&format!("\"{k}\":")).unwrap_or_else(|| panic!("{k} missing"))).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "field order differs from the contract:\n{text}");
    assert_eq!(doc.as_object().unwrap().len(), order.len());
    let ext_text = std::fs::read_to_string(&with_extended).unwrap();
    let at = |k: &str| ext_text.find(&format!("\"{k}\":")).unwrap();
    assert!(at("access_token") < at("extended_token") && at("extended_token") < at("token_type"), "{ext_text}");
    let mode = std::fs::metadata(rig.token_path()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "token file mode");

    let journal = rig.sim.journal();
    assert_eq!(journal.token_posts.len(), 1, "one code POSTed once");
    assert_eq!(journal.codes_issued, journal.token_posts);
    let state = &journal.states_seen[0];
    assert!(
        state.len() >= 32 && state.chars().all(|c| c.is_ascii_hexdigit()),
        "state `{state}` is not ≥128 bits of hex"
    );

    // A valid published token is kept: no browser, no new code.
    let second = rig.cli(&config, &["login"]).await;
    second.assert_code(0);
    assert!(second.stderr().contains("skipped"), "{}", second.stderr());
    assert!(!second.stderr().contains("copied"), "sinks that differ only in extended_token hold the same token");
    assert_eq!(rig.sim.journal().token_posts.len(), 1);
    assert_eq!(rig.read_token()["generation"], 1);

    // --force logs in again with a fresh state and a higher generation.
    rig.cli(&config, &["login", "--force"]).await.assert_code(0);
    let journal = rig.sim.journal();
    assert_eq!(journal.token_posts.len(), 2);
    assert_ne!(journal.states_seen[0], journal.states_seen[1]);
    assert_eq!(rig.read_token()["generation"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_rejected_by_upstox_is_replaced() {
    let rig = Rig::start().await;
    let config = rig.default_config();
    rig.cli(&config, &["login"]).await.assert_code(0);
    // Revoke the published token behind our back, as a logout elsewhere would.
    let token = rig.read_token()["access_token"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let logout = http.delete(rig.sim.base_url().join("v2/logout").unwrap()).bearer_auth(&token).send().await.unwrap();
    assert_eq!(logout.status(), 200);

    rig.cli(&config, &["login"]).await.assert_code(0);
    assert_eq!(rig.read_token()["generation"], 2);
    assert_ne!(rig.read_token()["access_token"].as_str().unwrap(), token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_pin_is_a_typed_error_submitted_once_and_the_old_token_survives() {
    let rig = Rig::start().await;
    let good = rig.config_toml("", "");
    let config = rig.write_config(&good);
    rig.cli(&config, &["login"]).await.assert_code(0);
    let before = std::fs::read(rig.token_path()).unwrap();

    let wrong_pin = "000000";
    assert_ne!(rig.sim.config().users[0].pin, wrong_pin);
    let bad = good.replace(&format!("pin = \"{}\"", rig.sim.config().users[0].pin), &format!("pin = \"{wrong_pin}\""));
    let config = rig.write_config(&bad);
    let run = rig.cli(&config, &["login", "--force"]).await;
    run.assert_code(1);
    let stderr = run.stderr();
    assert!(stderr.contains("incorrect PIN"), "{stderr}");
    assert!(stderr.contains("fix:"), "the message tells the human what to do: {stderr}");
    assert_eq!(rig.sim.journal().wrong_pins, 1, "exactly one wrong PIN submitted");
    assert_eq!(std::fs::read(rig.token_path()).unwrap(), before, "published token byte-identical");

    // Failure artifacts exist and carry no PIN.
    let failures: Vec<_> =
        std::fs::read_dir(rig.state_dir().join("failures")).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(failures.iter().any(|p| p.extension().is_some_and(|e| e == "png")), "{failures:?}");
    for p in failures.iter().filter(|p| p.extension().is_some_and(|e| e == "html")) {
        let html = std::fs::read_to_string(p).unwrap();
        assert!(!html.contains(wrong_pin), "PIN in {}", p.display());
        assert!(html.contains("incorrect PIN"), "the artifact shows the page's message");
    }

    // The guard now refuses without opening a browser: still one wrong PIN.
    let again = rig.cli(&config, &["login", "--force"]).await;
    again.assert_code(1);
    assert!(again.stderr().contains("lockout guard"), "{}", again.stderr());
    assert_eq!(rig.sim.journal().wrong_pins, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_state_is_refused_and_no_code_is_exchanged() {
    let rig = Rig::with_faults(Faults { tamper_state: true, ..Faults::default() }).await;
    let config = rig.default_config();
    let run = rig.cli(&config, &["login"]).await;
    run.assert_code(1);
    assert!(run.stderr().contains("`state`"), "{}", run.stderr());
    let journal = rig.sim.journal();
    assert_eq!(journal.codes_issued.len(), 1, "the page did hand out a code");
    assert!(journal.token_posts.is_empty(), "but it was never exchanged");
    assert!(!rig.token_path().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_page_hydration_and_step_swaps_are_waited_for() {
    let rig = Rig::with_faults(Faults { step_delay_ms: 700, ..Faults::default() }).await;
    let config = rig.default_config();
    let run = rig.cli(&config, &["login"]).await;
    run.assert_code(0);
    assert_eq!(rig.read_token()["generation"], 1);
    assert_eq!(rig.sim.journal().token_posts.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_account_is_a_usage_error() {
    let rig = Rig::start().await;
    let config = rig.default_config();
    let run = rig.cli(&config, &["login", "--account", "nobody"]).await;
    run.assert_code(2);
    assert!(run.stderr().contains("nobody") && run.stderr().contains("primary"), "{}", run.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_mid_login_closes_the_browser_and_publishes_nothing() {
    let rig = Rig::with_faults(Faults { step_delay_ms: 1500, ..Faults::default() }).await;
    let config = rig.default_config();
    let child = rig.command(&config, &["login"], &[]).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let sim = &rig.sim;
    support::wait_for("the login to reach the TOTP step", std::time::Duration::from_secs(30), || async {
        (sim.journal().mobile_submissions > 0).then_some(())
    })
    .await;
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGINT) };
    let out =
        tokio::time::timeout(std::time::Duration::from_secs(15), child.wait_with_output()).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted by SIGINT"), "{stderr}");
    assert!(sim.journal().token_posts.is_empty());
    assert!(!rig.token_path().exists());
    rig.assert_no_browser_left();
}
