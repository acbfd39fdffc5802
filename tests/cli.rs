//! The commands that need no browser (`check-config`) and the one a new user runs first (`demo`).

mod support;

use std::process::Command;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_upstox-relogin"));
    c.env_remove("UPSTOX_RELOGIN_CONFIG");
    c
}

const VALID: &str = r#"
state_dir = "/tmp/upstox-relogin-cli-test"
[[accounts]]
name = "primary"
client_id = "cid"
redirect_uri = "http://127.0.0.1:5000/cb"
mobile = "9876543210"
client_secret = "sec"
pin = "123456"
totp_secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
[[sinks]]
type = "file"
path = "/tmp/upstox-relogin-cli-test/{account}.json"
"#;

fn check(toml: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, toml).unwrap();
    let out = bin().arg("--config").arg(&path).arg("check-config").output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn valid_config_exits_0() {
    let (code, stdout, stderr) = check(VALID);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("config ok: 1 account(s) [primary]"), "{stdout}");
}

#[test]
fn bad_cron_exits_2_naming_the_key() {
    let (code, _, stderr) = check(&format!("{VALID}\n[schedule]\ncron = \"0 30 8 * *\"\n"));
    assert_eq!(code, 2);
    assert!(stderr.contains("`schedule.cron`"), "{stderr}");
}

#[test]
fn unknown_key_exits_2_naming_it() {
    let (code, _, stderr) = check(&format!("{VALID}\n[browser]\nheadles = false\n"));
    assert_eq!(code, 2);
    assert!(stderr.contains("headles"), "{stderr}");
}

#[test]
fn missing_secret_exits_2_naming_the_account_key() {
    let (code, _, stderr) = check(&VALID.replace("pin = \"123456\"\n", ""));
    assert_eq!(code, 2);
    assert!(stderr.contains("`accounts[0].pin`"), "{stderr}");
}

#[test]
fn env_overrides_are_validated_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, VALID).unwrap();
    let out = bin()
        .arg("--config")
        .arg(&path)
        .arg("check-config")
        .env("UPSTOX_RELOGIN_SCHEDULE__TIMEZONE", "Mars/Olympus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`schedule.timezone`"));
}

#[test]
fn missing_config_file_exits_2_with_a_hint() {
    let out = bin().args(["--config", "/nonexistent/config.toml", "check-config"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("config.toml.example"));
}

#[test]
fn demo_logs_in_and_writes_the_token() {
    support::require_browser();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tmp")).unwrap();
    let output = dir.path().join("token.json");
    // Relative, as `make demo`'s default `./upstox-token.demo.json`: the demo makes it absolute for its sink.
    let out = bin()
        .current_dir(dir.path())
        .arg("demo")
        .arg("--output")
        .arg("token.json")
        .env("TMPDIR", dir.path().join("tmp"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("logged in (generation 1"), "{stdout}");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();
    assert_eq!(doc["account"], "demo");
    assert!(support::processes_mentioning(&dir.path().join("tmp").display().to_string()).is_empty());
}

// ---------------------------------------------------------------------------------------------------------------
// What check-config must catch before 08:30 (issue 13): each case exits 2 and names the key.
// ---------------------------------------------------------------------------------------------------------------

const REDIS_SINK: &str = "\n[[sinks]]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:6379/0\"\n";

/// `check-config` (plus `extra` arguments) on `toml`, in a fresh directory; returns (code, stdout, stderr).
fn check_args(toml: &str, extra: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, toml).unwrap();
    let out =
        bin().arg("--config").arg(&path).arg("check-config").args(extra).envs(env.iter().copied()).output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[track_caller]
fn assert_refused(toml: &str, key: &str, words: &str) {
    let (code, stdout, stderr) = check(toml);
    assert_eq!(code, 2, "`{key}` case accepted:\n{stdout}{stderr}");
    assert!(stderr.contains(&format!("`{key}`")), "`{key}` not named:\n{stderr}");
    assert!(stderr.contains(words), "`{key}`: expected \"{words}\" in:\n{stderr}");
}

#[test]
fn client_secret_with_surrounding_whitespace_is_refused() {
    assert_refused(
        &VALID.replace("client_secret = \"sec\"", "client_secret = \"sec \""),
        "accounts[0].client_secret",
        "whitespace",
    );
    assert_refused(
        &VALID.replace("client_secret = \"sec\"", "client_secret = \" sec\""),
        "accounts[0].client_secret",
        "UDAPI100069",
    );
}

#[test]
fn redis_url_without_host_or_with_a_non_numeric_db_is_refused() {
    assert_refused(
        &format!("{VALID}{}", REDIS_SINK.replace("redis://127.0.0.1:6379/0", "redis://")),
        "sinks[1].url",
        "no host",
    );
    assert_refused(&format!("{VALID}{}", REDIS_SINK.replace("/0", "/zero")), "sinks[1].url", "not a number");
}

#[test]
fn empty_redis_key_is_refused() {
    assert_refused(&format!("{VALID}{REDIS_SINK}key = \"\"\n"), "sinks[1].key", "must not be empty");
}

#[test]
fn placeholder_typo_is_refused() {
    assert_refused(
        &VALID.replace("{account}.json", "{acount}.json"),
        "sinks[0].path",
        "unknown placeholder `{acount}`",
    );
    assert_refused(&format!("{VALID}{REDIS_SINK}key = \"upstox:{{acount}}\"\n"), "sinks[1].key", "`{acount}`");
}

#[test]
fn relative_sink_path_is_refused() {
    assert_refused(
        &VALID.replace("/tmp/upstox-relogin-cli-test/{account}.json", "tokens/{account}.json"),
        "sinks[0].path",
        "absolute",
    );
}

#[test]
fn cron_that_never_fires_is_refused() {
    assert_refused(&format!("{VALID}\n[schedule]\ncron = \"0 0 0 30 2 *\"\n"), "schedule.cron", "never fires");
}

#[test]
fn world_readable_token_mode_and_unknown_group_are_refused() {
    let with = |extra: &str| {
        VALID.replace(
            "path = \"/tmp/upstox-relogin-cli-test/{account}.json\"",
            &format!("path = \"/tmp/upstox-relogin-cli-test/{{account}}.json\"\n{extra}"),
        )
    };
    assert_refused(&with("mode = \"0644\""), "sinks[0].mode", "every user");
    assert_refused(&with("group = \"no-such-group-here\""), "sinks[0].group", "no group named");
    let (code, _, stderr) = check(&with("mode = \"0640\"\ngroup = \"0\"\ninclude_extended_token = true"));
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn world_readable_secret_file_is_refused_and_readable_inline_secrets_warn() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let pin = dir.path().join("pin");
    std::fs::write(&pin, "123456\n").unwrap();
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o644)).unwrap();
    let toml = VALID.replace("pin = \"123456\"", &format!("pin_file = \"{}\"", pin.display()));
    let (code, _, stderr) = check(&toml);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("`accounts[0].pin_file`") && stderr.contains("chmod 0600"), "{stderr}");
    assert!(!stderr.contains("123456"), "{stderr}");

    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, _, stderr) = check(&toml);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !stderr.contains("pin_file") && !stderr.contains("`accounts[0].pin`"),
        "a 0600 secret file is fine: {stderr}"
    );

    // VALID holds inline secrets; `check` writes it 0644 under the usual umask: a warning, not a refusal.
    let path = dir.path().join("config.toml");
    std::fs::write(&path, VALID).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = bin().arg("--config").arg(&path).arg("check-config").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning:") && stderr.contains("inline secrets") && stderr.contains("`accounts[0].pin`"),
        "{stderr}"
    );
}

#[test]
fn state_dir_this_user_cannot_write_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(state.join("accounts")).unwrap();
    std::fs::write(state.join("accounts/primary.json"), "{}").unwrap();
    support::hand_over(dir.path());
    support::make_private_to_someone_else(&state);
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        VALID.replace("state_dir = \"/tmp/upstox-relogin-cli-test\"", &format!("state_dir = \"{}\"", state.display())),
    )
    .unwrap();
    support::hand_over(&path);
    let mut cmd = bin();
    cmd.arg("--config").arg(&path).arg("check-config");
    support::unprivileged(&mut cmd, dir.path());
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`state_dir`") && stderr.contains("not writable"), "{stderr}");
}

#[test]
fn a_state_dir_that_cannot_be_created_is_refused_even_for_root() {
    // A path under a regular file: permission bits say yes (root passes every access check), creating says no.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("afile"), "").unwrap();
    let state_dir = dir.path().join("afile/state");
    let toml = VALID
        .replace("state_dir = \"/tmp/upstox-relogin-cli-test\"", &format!("state_dir = \"{}\"", state_dir.display()));
    assert!(toml.contains("afile/state"), "the test config names the state_dir: {toml}");
    let (code, _, stderr) = check_args(&toml, &[], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("`state_dir`") && stderr.contains("cannot create anything in"), "{stderr}");
    assert!(!dir.path().join("afile").is_dir() && std::fs::read_dir(dir.path()).unwrap().count() == 1, "nothing left");
}

#[test]
fn online_check_finds_a_missing_chromedriver() {
    let toml = format!("{VALID}\n[browser]\nchromedriver = \"/nonexistent/chromedriver\"\n");
    let (code, _, stderr) = check_args(&toml, &["--online"], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("`browser.chromedriver`"), "{stderr}");
    // Offline, the same file is fine: no browser is looked for.
    assert_eq!(check(&toml).0, 0);
}

#[test]
fn online_check_asks_the_coordination_store() {
    // Nothing listens there: every replica would refuse to log in, so the pre-flight says so, naming the key.
    let dead =
        format!("{VALID}\n[coordination]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:{}/0\"\n", support::free_port());
    let (code, _, stderr) = check_args(&dead, &["--online"], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("`coordination.url`") && stderr.contains("unreachable"), "{stderr}");
    assert_eq!(check(&dead).0, 0, "offline, nothing is asked");
    let redis = support::RedisServer::start();
    let live = format!("{VALID}\n[coordination]\ntype = \"redis\"\nurl = \"{}\"\n", redis.url());
    let (code, stdout, stderr) = check_args(&live, &["--online"], &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("coordination redis `redis://127.0.0.1:") && stdout.contains("the coordination store answers"),
        "{stdout}"
    );
}

#[test]
fn online_check_refuses_a_sink_directory_it_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let path = dir.path().join("config.toml");
    let toml =
        VALID.replace("/tmp/upstox-relogin-cli-test/{account}.json", &format!("{}/{{account}}.json", tokens.display()));
    std::fs::write(&path, toml).unwrap();
    support::hand_over(dir.path());
    support::make_read_only(&tokens);
    let online = |extra: &[&str]| {
        let mut cmd = bin();
        cmd.arg("--config").arg(&path).arg("check-config").args(extra);
        support::unprivileged(&mut cmd, dir.path());
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, stderr, _) = online(&["--online"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("`sinks[0]`") && stderr.contains("not ready for account `primary`"), "{stderr}");
    assert_eq!(std::fs::read_dir(&tokens).unwrap().count(), 0, "nothing left in the sink dir");
}

#[test]
fn next_three_runs_are_shown_in_ist() {
    let (code, stdout, stderr) = check(&format!("{VALID}\n[schedule]\ntimezone = \"UTC\"\n"));
    assert_eq!(code, 0, "{stderr}");
    let runs: Vec<&str> = stdout.lines().filter(|l| l.contains(" IST")).collect();
    assert_eq!(runs.len(), 3, "{stdout}");
    assert!(runs.iter().all(|l| l.contains("14:00 IST (08:30 UTC)")), "{stdout}");
    assert!(stderr.contains("`schedule.cron`") && stderr.contains("14:00 IST"), "a warning about the hour: {stderr}");
    let (_, stdout, stderr) = check(VALID);
    assert!(stdout.lines().filter(|l| l.contains("08:30 IST")).count() == 3, "{stdout}");
    assert!(!stderr.contains("schedule.cron"), "{stderr}");
}

// ---------------------------------------------------------------------------------------------------------------
// Loading messages (issue 13, item 12).
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn a_stray_prefixed_variable_is_named_with_the_valid_prefixes() {
    let (code, _, stderr) = check_args(VALID, &[], &[("UPSTOX_RELOGIN_LOG", "debug")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("`UPSTOX_RELOGIN_LOG`"), "{stderr}");
    assert!(stderr.contains("UPSTOX_RELOGIN_SCHEDULE") && stderr.contains("RUST_LOG"), "{stderr}");
}

#[test]
fn a_directory_as_config_says_it_is_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin().arg("--config").arg(dir.path()).arg("check-config").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("is a directory") && !stderr.contains("not found"), "{stderr}");
}

#[test]
fn an_unreadable_config_names_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, VALID).unwrap();
    support::hand_over(dir.path());
    support::make_private_to_someone_else(&path);
    let mut cmd = bin();
    cmd.arg("--config").arg(&path).arg("check-config");
    support::unprivileged(&mut cmd, dir.path());
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&path.display().to_string()) && stderr.contains("cannot read"), "{stderr}");
}

#[test]
fn an_unknown_key_does_not_hide_validation_errors() {
    let toml = format!("{}\n[browser]\nheadles = false\n", VALID.replace("mobile = \"9876543210\"", "mobile = \"12\""));
    let (code, _, stderr) = check(&toml);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("`browser.headles`") && stderr.contains("`accounts[0].mobile`"),
        "both reported:\n{stderr}"
    );
}

#[test]
fn a_host_name_listen_address_is_resolved() {
    let (code, _, stderr) = check(&format!("{VALID}\n[server]\nlisten = \"localhost:8787\"\n"));
    assert_eq!(code, 0, "{stderr}");
    assert_refused(&format!("{VALID}\n[server]\nlisten = \"localhost\"\n"), "server.listen", "HOST:PORT");
}

#[test]
fn cron_errors_name_the_key() {
    for cron in ["0 61 8 * * *", "0 30 8 * * Mon-Fry", "0 30 8 * * * *"] {
        assert_refused(&format!("{VALID}\n[schedule]\ncron = \"{cron}\"\n"), "schedule.cron", cron);
    }
}

#[test]
fn login_with_an_unknown_account_says_so_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, VALID).unwrap();
    let out = bin().arg("--config").arg(&path).args(["login", "--account", "nope"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no account named `nope` (configured: primary)"), "{stderr}");
    assert!(!stderr.contains("[\""), "no Rust debug list: {stderr}");
}

#[test]
fn a_closed_stdout_ends_a_printing_command_quietly() {
    // `check-config | head -0`: the reader is gone before the first line is written.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, VALID).unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = bin()
        .arg("--config")
        .arg(&path)
        .arg("check-config")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "ended by SIGPIPE, as `cat` is: {:?}", out.status);
}
