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
    let out = bin().arg("demo").arg("--output").arg(&output).env("TMPDIR", dir.path().join("tmp")).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("logged in (generation 1"), "{stdout}");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&output).unwrap()).unwrap();
    assert_eq!(doc["account"], "demo");
    assert!(support::processes_mentioning(&dir.path().join("tmp").display().to_string()).is_empty());
}
