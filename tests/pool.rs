//! Many accounts in one `login`: the real binary against a simulator serving several accounts, browser logins
//! bounded by `browser.max_sessions` (the simulator's journal records how many logins were in flight at once).

mod support;

use std::time::Duration;

use support::{Rig, toml_set, wait_for};
use upstox_relogin::simulator::{Faults, SimConfig};

/// The rig's config for every simulated account (`primary-1`, `primary-2`, …) with `max_sessions`.
fn pool_config(rig: &Rig, max_sessions: usize) -> String {
    toml_set(&rig.config_toml("", ""), "browser", "max_sessions", &max_sessions.to_string())
}

fn token(rig: &Rig, account: &str) -> Option<serde_json::Value> {
    let bytes = std::fs::read(rig.path(&format!("tokens/{account}.json"))).ok()?;
    Some(serde_json::from_slice(&bytes).expect("token file is JSON"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_accounts_share_two_browsers_and_a_wrong_pin_fails_only_its_account() {
    let rig = Rig::with_sim(SimConfig::demo_accounts(8)).await;
    let users = rig.sim.config().users.clone();
    // Account 5 has a wrong PIN: a permanent failure of its own.
    let bad = 4;
    let wrong_pin = if users[bad].pin == "000000" { "111111" } else { "000000" };
    let toml =
        pool_config(&rig, 2).replace(&format!("pin = \"{}\"", users[bad].pin), &format!("pin = \"{wrong_pin}\""));
    let config = rig.write_config(&toml);

    let run = rig.cli(&config, &["login"]).await;
    run.assert_code(1);
    let (stdout, stderr) = (run.stdout(), run.stderr());
    assert!(stdout.contains("1 of 8 account(s) FAILED: primary-5"), "the summary names it:\n{stdout}");
    assert!(stderr.contains("primary-5: FAILED") && stderr.contains("incorrect PIN"), "{stderr}");
    for (i, user) in users.iter().enumerate() {
        let name = format!("primary-{}", i + 1);
        let row = stdout.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{stdout}"));
        if i == bad {
            assert!(row.contains("FAILED"), "{row}");
            assert!(token(&rig, &name).is_none(), "{name} published nothing");
            continue;
        }
        assert!(row.contains("logged in (generation 1)"), "{row}");
        assert!(stderr.contains(&format!("{name}: logged in")), "one line per account:\n{stderr}");
        let doc = token(&rig, &name).unwrap_or_else(|| panic!("{name} holds a token"));
        assert_eq!(doc["account"], name.as_str());
        assert_eq!(doc["user_id"], user.user_id.as_str(), "{name} holds its own user's token");
    }

    let journal = rig.sim.journal();
    for (i, user) in users.iter().enumerate() {
        let expected = usize::from(i != bad);
        assert_eq!(journal.codes_for(&user.mobile), expected, "codes for account {}", i + 1);
    }
    assert_eq!(journal.wrong_pins_for(&users[bad].mobile), 1, "the wrong PIN was submitted once");
    assert_eq!(journal.token_posts.len(), 7);
    // Never more than `max_sessions` logins in flight, and the pool did run two at once.
    assert_eq!(journal.max_concurrent_logins(), 2, "{} logins", journal.logins.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_mid_pool_cancels_every_login_and_leaves_no_browser() {
    let sim = SimConfig { faults: Faults { step_delay_ms: 1500, ..Faults::default() }, ..SimConfig::demo_accounts(3) };
    let rig = Rig::with_sim(sim).await;
    let config = rig.write_config(&pool_config(&rig, 2));
    let child = rig.command(&config, &["login"], &[]).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let sim = &rig.sim;
    wait_for("two logins in flight", Duration::from_secs(60), || async {
        (sim.journal().mobile_submissions >= 2).then_some(())
    })
    .await;
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGINT) };
    let out = tokio::time::timeout(Duration::from_secs(15), child.wait_with_output()).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted by SIGINT"), "{stderr}");
    rig.assert_no_browser_left();
    let journal = sim.journal();
    assert!(journal.token_posts.is_empty());
    assert!(journal.max_concurrent_logins() <= 2);
    assert!((1..=3).all(|i| token(&rig, &format!("primary-{i}")).is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulate_accounts_serves_and_prints_one_account_each() {
    use tokio::io::AsyncBufReadExt;
    let port = support::free_port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_upstox-relogin"))
        .args(["simulate", "--listen", &format!("127.0.0.1:{port}"), "--accounts", "3"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    let read = async {
        // The config ends with the file sink's path.
        while let Some(line) = lines.next_line().await.unwrap() {
            let last = line.starts_with("path = ");
            printed.push_str(&line);
            printed.push('\n');
            if last {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read).await.expect("simulate prints its config");
    let value: serde_json::Value =
        figment::Figment::from(<figment::providers::Toml as figment::providers::Format>::string(&printed))
            .extract()
            .unwrap();
    let accounts = value["accounts"].as_array().unwrap();
    let field = |key: &str| {
        let mut v: Vec<String> = accounts.iter().map(|a| a[key].as_str().unwrap().to_owned()).collect();
        v.sort();
        v.dedup();
        v
    };
    assert_eq!(field("name"), ["demo-1", "demo-2", "demo-3"]);
    for key in ["client_id", "client_secret", "mobile", "totp_secret"] {
        assert_eq!(field(key).len(), 3, "each account has its own `{key}`:\n{printed}");
    }
    // It serves what it printed: each client's dialog answers with the login page's redirect.
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for a in accounts {
        let url = reqwest::Url::parse_with_params(
            value["upstox"]["authorize_url"].as_str().unwrap(),
            [
                ("response_type", "code"),
                ("client_id", a["client_id"].as_str().unwrap()),
                ("redirect_uri", a["redirect_uri"].as_str().unwrap()),
            ],
        )
        .unwrap();
        assert_eq!(http.get(url).send().await.unwrap().status(), 302);
    }
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}");
}
