//! `RawConfig::validate`: every key checked, every problem named by its key and reported together, secrets
//! resolved from inline / `_env` / `_file`. Reads the secret files and variables it is pointed at; no other I/O.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::IntoDeserializer;
use url::Url;

use super::raw::RawAccount;
use super::secrets::{FileVerdict, judge_secret_file};
use super::*;
use crate::secret::{ClientSecret, Pin, TotpSecret};

/// What validation found: errors (the configuration is refused) and warnings (it is used, a human should look).
#[derive(Default)]
pub(super) struct Problems(Vec<Problem>, Vec<Problem>);

impl Problems {
    pub(super) fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem { key: key.into(), message: message.into() });
    }

    pub(super) fn warn(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.1.push(Problem { key: key.into(), message: message.into() });
    }

    /// How many problems so far (to tell whether a part of the config added any).
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

impl RawConfig {
    /// Check every key and build the typed configuration. Reads secret files/variables; no other I/O.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let mut p = Problems(Vec::new(), Vec::new());

        if self.state_dir.as_os_str().is_empty() {
            p.add("state_dir", "must not be empty");
        }
        let listen = resolve_listen(&self.server.listen).unwrap_or_else(|e| {
            p.add("server.listen", e);
            SocketAddr::from(([127, 0, 0, 1], 8787))
        });

        validate_notifier_path(&mut p, &self.server.notifier_path);

        let cron = super::schedule::validate_cron(&self.schedule.cron).map_err(|m| p.add("schedule.cron", m)).ok();
        let recheck = super::schedule::validate_recheck(&mut p, &self.schedule);
        let probe = match non_empty(&self.schedule.probe_cron) {
            None => None,
            Some(expr) => super::schedule::validate_cron(expr)
                .map(|parsed| ProbeSchedule { cron: expr.to_owned(), parsed })
                .map_err(|m| p.add("schedule.probe_cron", m))
                .ok(),
        };
        let timezone = self
            .schedule
            .timezone
            .parse::<chrono_tz::Tz>()
            .map_err(|_| {
                p.add(
                    "schedule.timezone",
                    format!("unknown IANA time zone `{}` (e.g. Asia/Kolkata)", self.schedule.timezone),
                )
            })
            .ok();
        let on_start = OnStart::deserialize(self.schedule.on_start.as_str().into_deserializer()).unwrap_or_else(
            |_: serde::de::value::Error| {
                p.add(
                    "schedule.on_start",
                    format!("expected \"if-stale\", \"always\" or \"never\", got \"{}\"", self.schedule.on_start),
                );
                OnStart::IfStale
            },
        );

        let market = market_day::validate(&mut p, &self.schedule);

        let authorize_url = api_url(&mut p, "upstox.authorize_url", &self.upstox.authorize_url);
        let api_base_url = api_url(&mut p, "upstox.api_base_url", &self.upstox.api_base_url);
        positive(&mut p, "upstox.http_timeout_secs", self.upstox.http_timeout_secs);

        let browser = self.validate_browser(&mut p);
        let login = self.validate_login(&mut p);
        let accounts = validate_accounts(&mut p, &self.accounts);
        let sinks = super::sinks::validate_sinks(&mut p, &self.sinks, accounts.len());
        let auth_token = ops::validate_auth_token(&mut p, &self.server);
        let log_format = ops::validate_log_format(&mut p, &self.log_format);
        let notify = ops::validate_notify(&mut p, &self.notify);
        let notifiers = ops::validate_notifiers(&mut p, &self.notifiers);
        let coordination = super::coordination::validate(&mut p, &self.coordination);

        if !p.0.is_empty() {
            return Err(ConfigError::Invalid(p.0));
        }
        // invariant: every `None` above pushed a problem, and we returned when there was any
        Ok(Config {
            state_dir: self.state_dir,
            server: ServerConfig { listen, auth_token, notifier_path: self.server.notifier_path.clone() },
            schedule: ScheduleConfig {
                cron: self.schedule.cron.clone(),
                parsed: cron.expect("validated"),
                timezone: timezone.expect("validated"),
                on_start,
                market: market.expect("validated"),
                recheck,
                probe,
            },
            upstox: UpstoxConfig {
                authorize_url: authorize_url.expect("validated"),
                api_base_url: api_base_url.expect("validated"),
                http_timeout: Duration::from_secs(self.upstox.http_timeout_secs),
            },
            browser,
            login,
            accounts,
            sinks,
            log_format,
            notify,
            notifiers,
            warnings: p.1,
            coordination,
        })
    }

    fn validate_browser(&self, p: &mut Problems) -> BrowserConfig {
        let b = &self.browser;
        let webdriver_url = if b.webdriver_url.trim().is_empty() {
            None
        } else {
            match Url::parse(&b.webdriver_url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
                Ok(u) => {
                    p.add("browser.webdriver_url", format!("expected an http(s) URL, got scheme `{}`", u.scheme()));
                    None
                }
                Err(e) => {
                    p.add("browser.webdriver_url", format!("not a URL ({e}); leave empty to spawn chromedriver"));
                    None
                }
            }
        };
        if b.chromedriver.trim().is_empty() {
            p.add("browser.chromedriver", "must name the chromedriver binary (default \"chromedriver\")");
        }
        positive(p, "browser.step_timeout_secs", b.step_timeout_secs);
        if !(10..=5000).contains(&b.poll_interval_ms) {
            p.add("browser.poll_interval_ms", format!("expected 10..=5000, got {}", b.poll_interval_ms));
        }
        if b.max_sessions == 0 {
            p.add("browser.max_sessions", "expected at least 1 (browser logins in flight at once; default 2)");
        }
        let s = &b.selectors;
        for (key, value) in [
            ("mobile_input", &s.mobile_input),
            ("mobile_submit", &s.mobile_submit),
            ("otp_input", &s.otp_input),
            ("otp_submit", &s.otp_submit),
            ("pin_input", &s.pin_input),
            ("pin_submit", &s.pin_submit),
            ("error", &s.error),
        ] {
            if value.trim().is_empty() {
                p.add(format!("browser.selectors.{key}"), "must be a CSS selector");
            }
        }
        BrowserConfig {
            webdriver_url,
            chromedriver: PathBuf::from(&b.chromedriver),
            chrome: non_empty(&b.chrome).map(PathBuf::from),
            headless: b.headless,
            step_timeout: Duration::from_secs(b.step_timeout_secs),
            poll_interval: Duration::from_millis(b.poll_interval_ms),
            user_agent: non_empty(&b.user_agent).map(str::to_owned),
            extra_args: b.extra_args.clone(),
            selectors: Selectors::from(s),
            max_sessions: (b.max_sessions as usize).max(1),
        }
    }

    fn validate_login(&self, p: &mut Problems) -> LoginPolicy {
        let l = &self.login;
        if l.max_attempts == 0 {
            p.add("login.max_attempts", "must be at least 1");
        }
        if !(1..=4).contains(&l.max_pin_submissions_per_day) {
            p.add(
                "login.max_pin_submissions_per_day",
                format!(
                    "expected 1..=4 (Upstox blocks the account at 5 failures), got {}",
                    l.max_pin_submissions_per_day
                ),
            );
        }
        if l.retry_min_backoff_secs > l.retry_max_backoff_secs {
            p.add("login.retry_min_backoff_secs", "must not exceed `login.retry_max_backoff_secs`");
        }
        positive(p, "login.run_deadline_secs", l.run_deadline_secs);
        if l.totp_min_remaining_secs >= 25 {
            p.add(
                "login.totp_min_remaining_secs",
                format!("expected 0..=24 (a TOTP window is 30 s), got {}", l.totp_min_remaining_secs),
            );
        }
        if !(1..=86_400).contains(&l.approval_timeout_secs) {
            p.add(
                "login.approval_timeout_secs",
                format!("expected 1..=86400 (a request dies at 03:30 IST anyway), got {}", l.approval_timeout_secs),
            );
        }
        LoginPolicy {
            max_attempts: l.max_attempts,
            retry_min_backoff: Duration::from_secs(l.retry_min_backoff_secs),
            retry_max_backoff: Duration::from_secs(l.retry_max_backoff_secs),
            run_deadline: Duration::from_secs(l.run_deadline_secs),
            max_pin_submissions_per_day: l.max_pin_submissions_per_day,
            totp_min_remaining: Duration::from_secs(l.totp_min_remaining_secs),
            failure_artifacts_keep: l.failure_artifacts_keep,
            approval_timeout: Duration::from_secs(l.approval_timeout_secs),
        }
    }
}

/// `HOST:PORT`: an IP address, or a name resolved now (`localhost:8787`), first IPv4 address preferred.
fn resolve_listen(value: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let expected = "expected HOST:PORT such as 127.0.0.1:8787 or localhost:8787";
    let Some((host, port)) = value.rsplit_once(':') else { return Err(format!("{expected}, got \"{value}\"")) };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!("{expected}, got \"{value}\""));
    }
    let addrs: Vec<SocketAddr> =
        value.to_socket_addrs().map_err(|e| format!("cannot resolve `{host}` ({e}); {expected}"))?.collect();
    addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()).copied().ok_or_else(|| format!("`{host}` has no address"))
}

/// Upstox URLs must be https, except on loopback (the simulator, a local proxy).
pub(super) fn api_url(p: &mut Problems, key: &str, value: &str) -> Option<Url> {
    match Url::parse(value) {
        Ok(url) if url.scheme() == "https" => Some(url),
        Ok(url) if url.scheme() == "http" && is_loopback(&url) => Some(url),
        Ok(url) => {
            p.add(key, format!("must be https (http is allowed only for loopback hosts), got `{}`", url.scheme()));
            None
        }
        Err(e) => {
            p.add(key, format!("not a URL: {e}"));
            None
        }
    }
}

pub(super) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn positive(p: &mut Problems, key: &str, value: u64) {
    if value == 0 {
        p.add(key, "must be greater than 0");
    }
}

fn non_empty(s: &str) -> Option<&str> {
    let t = s.trim();
    (!t.is_empty()).then_some(t)
}

fn validate_accounts(p: &mut Problems, raw: &[RawAccount]) -> Vec<Account> {
    if raw.is_empty() {
        p.add("accounts", "at least one [[accounts]] entry is required");
    }
    let mut names = HashSet::new();
    let mut requesting_clients = HashSet::new();
    let mut out = Vec::new();
    for (i, a) in raw.iter().enumerate() {
        let key = |field: &str| format!("accounts[{i}].{field}");
        let name_ok = !a.name.is_empty()
            && a.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !name_ok {
            p.add(key("name"), format!("expected [a-z0-9_-]+, got \"{}\"", a.name));
        } else if !names.insert(a.name.clone()) {
            p.add(key("name"), format!("\"{}\" is used by another account", a.name));
        }
        if a.client_id.trim().is_empty() {
            p.add(key("client_id"), "must be the API key of your Upstox app");
        }
        let redirect_uri = RedirectUri::parse(&a.redirect_uri)
            .map_err(|e| {
                p.add(key("redirect_uri"), format!("{e} (it must be the redirect URL registered for the app)"))
            })
            .ok();
        let method =
            parse_choice(p, &key("method"), a.method.as_deref(), Method::Browser, "\"browser\" or \"token-request\"");
        let fallback =
            parse_choice(p, &key("fallback"), a.fallback.as_deref(), Fallback::None, "\"none\" or \"token-request\"");
        if method == Method::TokenRequest && fallback == Fallback::TokenRequest {
            p.add(
                key("fallback"),
                "only a browser account falls back; this account's `method` is already \"token-request\"",
            );
        }
        let user_id = a.user_id.as_deref().map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned);
        if let Some(u) = &user_id
            && !u.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            p.add(key("user_id"), "expected the Upstox user id, letters and digits only (e.g. \"AB1234\")");
        }
        if method == Method::TokenRequest || fallback == Fallback::TokenRequest {
            let client_id = a.client_id.trim();
            if !client_id.is_empty() && !requesting_clients.insert(client_id.to_owned()) {
                p.add(
                    key("client_id"),
                    "another account that may send a token request uses this `client_id`: the notifier webhook names only the client, so each such account needs its own app",
                );
            }
        }
        let client_secret =
            resolve_secret(p, &key("client_secret"), &a.client_secret, &a.client_secret_env, &a.client_secret_file)
                .filter(|secret| {
                    // Upstox compares the secret byte for byte: a stray space costs a whole login (UDAPI100069).
                    let padded = secret.trim() != secret;
                    if padded {
                        p.add(
                    key("client_secret"),
                    "has leading or trailing whitespace, which Upstox would refuse (UDAPI100069); fix: remove it",
                );
                    }
                    !padded
                });
        // A token-request account needs no credentials; given any, all are checked as a browser account's.
        let wants_credentials = method == Method::Browser
            || !a.mobile.is_empty()
            || [a.pin.is_some(), a.pin_env.is_some(), a.pin_file.is_some()].contains(&true)
            || [a.totp_secret.is_some(), a.totp_secret_env.is_some(), a.totp_secret_file.is_some()].contains(&true);
        let credentials = if wants_credentials { validate_credentials(p, i, a) } else { Ok(None) };
        if let (true, Some(redirect_uri), Some(client_secret), Ok(credentials)) =
            (name_ok, redirect_uri, client_secret, credentials)
        {
            out.push(Account {
                name: a.name.clone(),
                index: i,
                app: OAuthApp {
                    client_id: a.client_id.trim().to_owned(),
                    client_secret: ClientSecret::new(client_secret),
                    redirect_uri,
                },
                method,
                fallback,
                user_id,
                credentials,
            });
        }
    }
    out
}

/// `mobile`, `pin` and `totp_secret` of account `i`. `Err(())`: a problem was added.
fn validate_credentials(p: &mut Problems, i: usize, a: &RawAccount) -> Result<Option<Credentials>, ()> {
    let key = |field: &str| format!("accounts[{i}].{field}");
    let mobile_ok = a.mobile.len() == 10 && a.mobile.bytes().all(|b| b.is_ascii_digit());
    if !mobile_ok {
        p.add(key("mobile"), "expected the 10-digit mobile number, digits only");
    }
    let pin = resolve_secret(p, &key("pin"), &a.pin, &a.pin_env, &a.pin_file);
    let pin_ok = pin.as_ref().is_some_and(|pin| pin.len() == 6 && pin.bytes().all(|b| b.is_ascii_digit()));
    if pin.is_some() && !pin_ok {
        p.add(key("pin"), "expected 6 digits");
    }
    let totp = resolve_secret(p, &key("totp_secret"), &a.totp_secret, &a.totp_secret_env, &a.totp_secret_file)
        .and_then(|s| match crate::totp::normalise_secret(&s) {
            Ok(s) => Some(s),
            Err(e) => {
                p.add(key("totp_secret"), e.to_string());
                None
            }
        });
    match (mobile_ok, pin.filter(|_| pin_ok), totp) {
        (true, Some(pin), Some(totp)) => {
            Ok(Some(Credentials { mobile: a.mobile.clone(), pin: Pin::new(pin), totp_secret: TotpSecret::new(totp) }))
        }
        _ => Err(()),
    }
}

/// A kebab-case choice such as `method`; absent means `default`.
fn parse_choice<T: serde::de::DeserializeOwned>(
    p: &mut Problems,
    key: &str,
    value: Option<&str>,
    default: T,
    expected: &str,
) -> T {
    let Some(value) = value else { return default };
    T::deserialize(value.into_deserializer()).unwrap_or_else(|_: serde::de::value::Error| {
        p.add(key, format!("expected {expected}, got \"{value}\""));
        default
    })
}

/// The daemon's own paths (and `/failures/…`); the notifier webhook must not shadow them.
const RESERVED_PATHS: [&str; 6] = ["/", "/healthz", "/readyz", "/metrics", "/status", "/failures"];

fn validate_notifier_path(p: &mut Problems, path: &str) {
    let chars_ok = path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/_.~-".contains(&b));
    if !path.starts_with('/') || !chars_ok || path.len() > 200 || path.contains("//") {
        p.add(
            "server.notifier_path",
            "expected an absolute path of letters, digits and `/_.~-` (at most 200 bytes), e.g. \"/upstox/notifier\"",
        );
    } else if RESERVED_PATHS.contains(&path.trim_end_matches('/')) || path == "/" || path.starts_with("/failures/") {
        p.add("server.notifier_path", format!("`{path}` is one of the daemon's own endpoints; pick another path"));
    }
}

/// Exactly one of `x`, `x_env`, `x_file`. A file's trailing newline is trimmed; a file every user can read is
/// refused (and one another group can read gets a warning).
pub(super) fn resolve_secret(
    p: &mut Problems,
    key: &str,
    inline: &Option<String>,
    env: &Option<String>,
    file: &Option<PathBuf>,
) -> Option<String> {
    let given = [inline.is_some(), env.is_some(), file.is_some()].iter().filter(|g| **g).count();
    if given != 1 {
        let got = if given == 0 { "none" } else { "several" };
        p.add(key, format!("give exactly one of `{key}`, `{key}_env` or `{key}_file` (got {got})"));
        return None;
    }
    let value = if let Some(v) = inline {
        v.clone()
    } else if let Some(var) = env {
        match std::env::var(var) {
            Ok(v) => v,
            Err(_) => {
                p.add(format!("{key}_env"), format!("environment variable `{var}` is not set"));
                return None;
            }
        }
    } else {
        // invariant: exactly one form is given and it is neither inline nor env
        let path = file.as_ref().expect("one form given");
        match judge_secret_file(path) {
            FileVerdict::Fine => {}
            FileVerdict::Warn(message) => p.warn(format!("{key}_file"), message),
            FileVerdict::Refuse(message) => {
                p.add(format!("{key}_file"), message);
                return None;
            }
        }
        match std::fs::read_to_string(path) {
            Ok(v) => v.trim_end_matches(['\n', '\r']).to_owned(),
            Err(e) => {
                p.add(format!("{key}_file"), format!("cannot read `{}`: {e}", path.display()));
                return None;
            }
        }
    };
    if value.trim().is_empty() {
        p.add(key, "is empty");
        return None;
    }
    Some(value)
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature
mod tests;
