//! Validation, key by key: every problem named by its key, several at once, secrets never echoed.

use super::*;
use figment::Jail;
use std::path::Path;

const VALID: &str = r#"
    state_dir = "/tmp/x"
    [[accounts]]
    name = "primary"
    client_id = "cid"
    redirect_uri = "http://127.0.0.1:5000/cb"
    mobile = "9876543210"
    client_secret = "sec"
    pin = "123456"
    totp_secret = "jbsw y3dp ehpk 3pxp jbsw y3dp ehpk 3pxp"
    [[sinks]]
    type = "file"
    path = "/tmp/x/{account}.json"
"#;

fn load_str(toml: &str) -> Result<Config, ConfigError> {
    let mut out = None;
    Jail::expect_with(|jail| {
        jail.create_file("config.toml", toml)?;
        out = Some(load(Path::new("config.toml")));
        Ok(())
    });
    out.unwrap()
}

fn problems(toml: &str) -> String {
    load_str(toml).unwrap_err().to_string()
}

#[test]
fn valid_config_loads_with_defaults() {
    let c = load_str(VALID).unwrap();
    assert_eq!(c.schedule.timezone, chrono_tz::Asia::Kolkata);
    assert_eq!(c.schedule.cron, "0 30 8 * * Mon-Fri");
    assert_eq!(c.accounts[0].credentials.as_ref().unwrap().totp_secret.expose(), "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP");
    assert_eq!(c.upstox.token_url().as_str(), "https://api.upstox.com/v2/login/authorization/token");
    assert_eq!(c.upstox.profile_url().as_str(), "https://api.upstox.com/v2/user/profile");
    assert_eq!(
        c.upstox.token_request_url("615b-d443/x").as_str(),
        "https://api.upstox.com/v3/login/auth/token/request/615b-d443%2Fx"
    );
    let a = &c.accounts[0];
    assert_eq!((a.method, a.fallback, a.user_id.as_deref()), (Method::Browser, Fallback::None, None));
    assert!(!a.may_request_token());
    assert_eq!(c.server.notifier_path, "/upstox/notifier");
    assert_eq!(c.login.approval_timeout, Duration::from_secs(1800));
}

/// `VALID` with the browser credentials taken out and `extra` added to the account.
fn token_request_account(extra: &str) -> String {
    VALID
        .replace("mobile = \"9876543210\"", "")
        .replace("pin = \"123456\"", "")
        .replace("totp_secret = \"jbsw y3dp ehpk 3pxp jbsw y3dp ehpk 3pxp\"", extra)
}

#[test]
fn a_token_request_account_needs_no_browser_credentials() {
    let c = load_str(&token_request_account("method = \"token-request\"\nuser_id = \"AB1234\"")).unwrap();
    let a = &c.accounts[0];
    assert_eq!((a.method, a.fallback), (Method::TokenRequest, Fallback::None));
    assert!(a.credentials.is_none() && a.may_request_token());
    assert_eq!(a.user_id.as_deref(), Some("AB1234"));
    // Without them a browser account is refused, naming each missing key.
    let msg = problems(&token_request_account(""));
    for key in ["accounts[0].mobile", "accounts[0].pin", "accounts[0].totp_secret"] {
        assert!(msg.contains(&format!("`{key}`")), "{key} missing from {msg}");
    }
    // Given some, they are all checked.
    let msg = problems(&token_request_account("method = \"token-request\"\nmobile = \"9876543210\""));
    assert!(msg.contains("`accounts[0].pin`"), "{msg}");
}

#[test]
fn method_and_fallback_are_closed_sets() {
    let msg = problems(&VALID.replace("pin = \"123456\"", "pin = \"123456\"\nmethod = \"magic\"\nfallback = \"pray\""));
    assert!(msg.contains("`accounts[0].method`: expected \"browser\" or \"token-request\", got \"magic\""), "{msg}");
    assert!(msg.contains("`accounts[0].fallback`: expected \"none\" or \"token-request\""), "{msg}");
    let c = load_str(&VALID.replace("pin = \"123456\"", "pin = \"123456\"\nfallback = \"token-request\"")).unwrap();
    assert_eq!((c.accounts[0].method, c.accounts[0].fallback), (Method::Browser, Fallback::TokenRequest));
    let msg = problems(&token_request_account("method = \"token-request\"\nfallback = \"token-request\""));
    assert!(msg.contains("`accounts[0].fallback`: only a browser account falls back"), "{msg}");
    let msg = problems(&token_request_account("method = \"token-request\"\nuser_id = \"AB 12\""));
    assert!(msg.contains("`accounts[0].user_id`"), "{msg}");
}

#[test]
fn accounts_that_may_request_a_token_need_their_own_client() {
    let account = &VALID[VALID.find("[[accounts]]").unwrap()..VALID.find("[[sinks]]").unwrap()];
    let second = account.replace("primary", "second");
    let both = |first_extra: &str, second_extra: &str| {
        VALID.replace(
            account,
            &format!("{}\n{first_extra}\n{}\n{second_extra}\n", account.trim_end(), second.trim_end()),
        )
    };
    assert!(load_str(&both("", "")).is_ok(), "two browser accounts may share an app");
    let msg = problems(&both("fallback = \"token-request\"", "fallback = \"token-request\""));
    assert!(msg.contains("`accounts[1].client_id`: another account that may send a token request"), "{msg}");
}

#[test]
fn the_notifier_path_is_checked() {
    for bad in ["upstox", "/a b", "/x?y=1", "/{id}", "/status", "/healthz/", "/", "//x", "/failures/x.png"] {
        let msg = problems(&format!("{VALID}\n[server]\nnotifier_path = \"{bad}\""));
        assert!(msg.contains("`server.notifier_path`"), "{bad}: {msg}");
    }
    let c = load_str(&format!("{VALID}\n[server]\nnotifier_path = \"/hooks/upstox-7Qm2_x.v1\"")).unwrap();
    assert_eq!(c.server.notifier_path, "/hooks/upstox-7Qm2_x.v1");
    let msg = problems(&format!("{VALID}\n[login]\napproval_timeout_secs = 0"));
    assert!(msg.contains("`login.approval_timeout_secs`"), "{msg}");
}

#[test]
fn five_field_cron_names_the_key() {
    let msg = problems(&format!("{VALID}\n[schedule]\ncron = \"30 8 * * Mon-Fri\""));
    assert!(msg.contains("`schedule.cron`: expected 6 fields"), "{msg}");
}

#[test]
fn unknown_key_is_rejected_with_its_path() {
    let msg = problems(&format!("{VALID}\n[browser]\nheadles = true"));
    assert!(msg.contains("browser.headles") || msg.contains("`browser`"), "{msg}");
    assert!(msg.contains("unknown field"), "{msg}");
}

#[test]
fn missing_and_double_secrets_name_the_key() {
    let msg = problems(&VALID.replace("pin = \"123456\"", ""));
    assert!(msg.contains("`accounts[0].pin`: give exactly one of"), "{msg}");
    let msg = problems(&VALID.replace("pin = \"123456\"", "pin = \"123456\"\npin_env = \"X\""));
    assert!(msg.contains("(got several)"), "{msg}");
}

#[test]
fn secret_from_unset_env_names_the_variable() {
    let msg = problems(&VALID.replace("pin = \"123456\"", "pin_env = \"UPSTOX_RELOGIN_TEST_UNSET_PIN\""));
    assert!(
        msg.contains("`accounts[0].pin_env`: environment variable `UPSTOX_RELOGIN_TEST_UNSET_PIN` is not set"),
        "{msg}"
    );
}

#[test]
fn secret_file_trailing_newline_is_trimmed() {
    Jail::expect_with(|jail| {
        jail.create_file("pin", "654321\n")?;
        // A secret file others can read is refused (see `secrets`).
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o600);
        std::fs::set_permissions(jail.directory().join("pin"), mode).unwrap();
        jail.create_file("config.toml", &VALID.replace("pin = \"123456\"", "pin_file = \"pin\""))?;
        let c = load(Path::new("config.toml")).unwrap();
        assert_eq!(c.accounts[0].credentials.as_ref().unwrap().pin.expose(), "654321");
        Ok(())
    });
}

#[test]
fn env_overrides_file() {
    Jail::expect_with(|jail| {
        jail.create_file("config.toml", VALID)?;
        jail.set_env("UPSTOX_RELOGIN_BROWSER__HEADLESS", "false");
        jail.set_env("UPSTOX_RELOGIN_CONFIG", "config.toml");
        let c = load(Path::new("config.toml")).unwrap();
        assert!(!c.browser.headless);
        Ok(())
    });
}

#[test]
fn plain_http_to_a_remote_host_is_refused() {
    let msg = problems(&format!("{VALID}\n[upstox]\napi_base_url = \"http://api.upstox.com\""));
    assert!(msg.contains("`upstox.api_base_url`: must be https"), "{msg}");
    assert!(load_str(&format!("{VALID}\n[upstox]\napi_base_url = \"http://127.0.0.1:9000\"")).is_ok());
}

#[test]
fn several_problems_are_reported_together() {
    let msg = problems(&format!(
        "{}\n[schedule]\ntimezone = \"Mars/Olympus\"\non_start = \"sometimes\"",
        VALID.replace("mobile = \"9876543210\"", "mobile = \"12\"")
    ));
    for key in ["schedule.timezone", "schedule.on_start", "accounts[0].mobile"] {
        assert!(msg.contains(&format!("`{key}`")), "{key} missing from {msg}");
    }
}

#[test]
fn lockout_cap_above_four_is_refused() {
    let msg = problems(&format!("{VALID}\n[login]\nmax_pin_submissions_per_day = 5"));
    assert!(msg.contains("`login.max_pin_submissions_per_day`"), "{msg}");
}

#[test]
fn shared_sink_path_with_two_accounts_is_refused() {
    let two = VALID.replace("{account}", "token")
        + &VALID[VALID.find("[[accounts]]").unwrap()..VALID.find("[[sinks]]").unwrap()].replace("primary", "second");
    let msg = problems(&two);
    assert!(msg.contains("`sinks[0].path`: must contain `{account}`"), "{msg}");
}

#[test]
fn a_secret_of_the_wrong_type_is_not_echoed() {
    let msg = problems(&VALID.replace("pin = \"123456\"", "pin = 987654"));
    assert!(msg.contains("`accounts[0].pin`"), "{msg}");
    assert!(!msg.contains("987654"), "the PIN came back in the error: {msg}");
    assert!(msg.contains("quote the value"), "{msg}");
}

#[test]
fn a_toml_syntax_error_does_not_quote_the_line() {
    let msg = problems(&VALID.replace("pin = \"123456\"", "pin = \"246810"));
    assert!(!msg.contains("246810"), "the line with the PIN was quoted: {msg}");
    assert!(msg.to_lowercase().contains("line"), "the error still says where: {msg}");
}

#[test]
fn raw_debug_hides_inline_secrets() {
    let raw = RawAccount { pin: Some("135790".into()), client_secret: Some("topsecret".into()), ..Default::default() };
    let shown = format!("{raw:?}");
    assert!(!shown.contains("135790") && !shown.contains("topsecret"), "{shown}");
}

#[test]
fn bad_totp_secret_is_named() {
    let msg = problems(&VALID.replace("jbsw y3dp ehpk 3pxp jbsw y3dp ehpk 3pxp", "not base32!"));
    assert!(msg.contains("`accounts[0].totp_secret`"), "{msg}");
}

#[test]
fn max_sessions_defaults_to_two_and_refuses_zero() {
    assert_eq!(load_str(VALID).unwrap().browser.max_sessions, 2);
    let c = load_str(&format!("{VALID}\n[browser]\nmax_sessions = 4")).unwrap();
    assert_eq!(c.browser.max_sessions, 4);
    let msg = problems(&format!("{VALID}\n[browser]\nmax_sessions = 0"));
    assert!(msg.contains("`browser.max_sessions`: expected at least 1"), "{msg}");
}

#[test]
fn redirect_uri_is_kept_byte_for_byte_and_a_fragment_is_refused() {
    let c = load_str(&VALID.replace("http://127.0.0.1:5000/cb", "http://127.0.0.1:9"));
    let app = &c.unwrap().accounts[0].app;
    assert_eq!(app.redirect_uri.as_str(), "http://127.0.0.1:9", "not normalised to a trailing slash");
    assert_eq!(app.redirect_uri.url().as_str(), "http://127.0.0.1:9/");
    let c = load_str(&VALID.replace("http://127.0.0.1:5000/cb", "HTTP://LocalHost:5000/a/../cb?x=1%2f"));
    assert_eq!(c.unwrap().accounts[0].app.redirect_uri.as_str(), "HTTP://LocalHost:5000/a/../cb?x=1%2f");
    for bad in ["http://127.0.0.1:5000/cb#frag", "http://127.0.0.1:5000/cb#", " http://127.0.0.1:5000/cb"] {
        let msg = problems(&VALID.replace("http://127.0.0.1:5000/cb", bad));
        assert!(msg.contains("`accounts[0].redirect_uri`"), "{bad}: {msg}");
    }
    let msg = problems(&VALID.replace("http://127.0.0.1:5000/cb", "http://127.0.0.1:5000/cb#x"));
    assert!(msg.contains("fragment"), "{msg}");
    let msg = problems(&VALID.replace("http://127.0.0.1:5000/cb", "ftp://127.0.0.1/cb"));
    assert!(msg.contains("http(s)"), "{msg}");
}

#[test]
fn accounts_know_their_index_for_messages() {
    let two = VALID.to_owned()
        + &VALID[VALID.find("[[accounts]]").unwrap()..VALID.find("[[sinks]]").unwrap()].replace("primary", "second");
    let c = load_str(&two).unwrap();
    assert_eq!(c.accounts[1].key("client_id"), "accounts[1].client_id");
    assert_eq!(c.accounts[0].index, 0);
}

#[test]
fn probe_cron_is_off_by_default_and_validated() {
    assert!(load_str(VALID).unwrap().schedule.probe.is_none());
    let c = load_str(&format!("{VALID}\n[schedule]\nprobe_cron = \"0 0 8 * * Mon-Fri\"")).unwrap();
    assert_eq!(c.schedule.probe.unwrap().cron, "0 0 8 * * Mon-Fri");
    let msg = problems(&format!("{VALID}\n[schedule]\nprobe_cron = \"0 8 * * *\""));
    assert!(msg.contains("`schedule.probe_cron`: expected 6 fields"), "{msg}");
}

#[test]
fn pin_cap_defaults_to_two() {
    assert_eq!(load_str(VALID).unwrap().login.max_pin_submissions_per_day, 2);
}
