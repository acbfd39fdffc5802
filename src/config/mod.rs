//! Configuration: figment layers (built-in defaults → TOML file → `UPSTOX_RELOGIN_` environment) into `RawConfig`,
//! then `RawConfig::validate` into the typed `Config` the rest of the program uses.
//!
//! Validation reads the secret files and variables it is pointed at and nothing else: it never touches the network,
//! a browser or Redis. Every problem names its key (`schedule.cron`, `accounts[0].pin`), and all problems are
//! reported at once so a user fixes the file in one pass.

mod market_day;
mod ops;
pub mod raw;
mod validate;

pub use market_day::{MarketDay, parse_extra_holidays, read_extra_holidays};
pub use ops::{LogFormat, MIN_AUTH_TOKEN_LEN, NotifierConfig, NotifyPolicy, peek_log_format};
pub use raw::RawConfig;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use url::Url;

use crate::secret::{ClientSecret, Pin, TotpSecret};

/// The environment variable prefix for configuration overrides (`__` separates nesting levels).
pub const ENV_PREFIX: &str = "UPSTOX_RELOGIN_";

// ---------------------------------------------------------------------------------------------------------------
// Typed layer: what the rest of the program uses.
// ---------------------------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Config {
    pub state_dir: PathBuf,
    pub server: ServerConfig,
    pub schedule: ScheduleConfig,
    pub upstox: UpstoxConfig,
    pub browser: BrowserConfig,
    pub login: LoginPolicy,
    pub accounts: Vec<Account>,
    pub sinks: Vec<SinkConfig>,
    pub log_format: LogFormat,
    /// How notifications are sent (`[notify]`).
    pub notify: NotifyPolicy,
    /// Where they go (`[[notifiers]]`, possibly none).
    pub notifiers: Vec<NotifierConfig>,
}

impl Config {
    /// `{state_dir}/failures/`: the failure artifacts (screenshot + scrubbed HTML), served by the status page.
    pub fn failures_dir(&self) -> PathBuf {
        self.state_dir.join("failures")
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// When set, every endpoint but `/healthz` requires `Authorization: Bearer <token>` (or Basic, the token as
    /// the password, so a browser can ask for it).
    pub auth_token: Option<crate::secret::BearerToken>,
    /// Where Upstox POSTs an approved access-token request's token (`server.notifier_path`): an absolute path of
    /// `[A-Za-z0-9/_.~-]`, none of the other endpoints' paths.
    pub notifier_path: String,
}

/// What the daemon does at start (`schedule.on_start`), spelled in the file as `"if-stale"`, `"always"`, `"never"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnStart {
    /// Log in at start for accounts whose published token is not valid.
    IfStale,
    /// Log in at start for every account, valid token or not.
    Always,
    /// Wait for the first cron tick.
    Never,
}

#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    /// Validated six-field cron expression, as tokio-cron-scheduler takes it.
    pub cron: String,
    /// `cron` parsed once, with tokio-cron-scheduler's own settings.
    pub parsed: croner::Cron,
    pub timezone: chrono_tz::Tz,
    pub on_start: OnStart,
    /// Holidays, retries until a deadline and the check before the open (`schedule.skip_holidays` …).
    pub market: MarketDay,
}

impl ScheduleConfig {
    /// The first tick strictly after `after`, in the schedule's time zone.
    pub fn next_run(&self, after: chrono::DateTime<chrono::Utc>) -> Option<chrono::DateTime<chrono_tz::Tz>> {
        let after = chrono::Timelike::with_nanosecond(&after, 0).unwrap_or(after);
        self.parsed.find_next_occurrence(&after.with_timezone(&self.timezone), false).ok()
    }
}

#[derive(Debug, Clone)]
pub struct UpstoxConfig {
    pub authorize_url: Url,
    pub api_base_url: Url,
    pub http_timeout: Duration,
}

impl UpstoxConfig {
    pub fn token_url(&self) -> Url {
        join_api(&self.api_base_url, "v2/login/authorization/token")
    }

    pub fn profile_url(&self) -> Url {
        join_api(&self.api_base_url, "v2/user/profile")
    }

    /// `{api_base_url}/v3/login/auth/token/request/{client_id}` (the client id percent-encoded as a path segment).
    pub fn token_request_url(&self, client_id: &str) -> Url {
        let mut url = join_api(&self.api_base_url, "v3/login/auth/token/request");
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.push(client_id);
        }
        url
    }

    /// The market holidays list (no token needed) [doc].
    pub fn holidays_url(&self) -> Url {
        join_api(&self.api_base_url, "v2/market/holidays")
    }
}

fn join_api(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!("{}/{}", base.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    url
}

#[derive(Debug, Clone)]
pub struct BrowserConfig {
    pub webdriver_url: Option<Url>,
    pub chromedriver: PathBuf,
    pub chrome: Option<PathBuf>,
    pub headless: bool,
    pub step_timeout: Duration,
    pub poll_interval: Duration,
    pub user_agent: Option<String>,
    pub extra_args: Vec<String>,
    pub selectors: Selectors,
    /// Browser logins in flight at once across accounts (`browser.max_sessions`, ≥ 1).
    pub max_sessions: usize,
}

/// The CSS selectors of one login step (`browser.selectors.<step>_input` / `<step>_submit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepSelectors {
    /// The field the step types into.
    pub input: String,
    /// The button that submits it.
    pub submit: String,
}

/// The CSS selectors of the hosted login page (`[browser.selectors]`), validated non-empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selectors {
    pub mobile: StepSelectors,
    pub otp: StepSelectors,
    pub pin: StepSelectors,
    /// Where the page shows a rejected input.
    pub error: String,
}

impl From<&raw::RawSelectors> for Selectors {
    fn from(s: &raw::RawSelectors) -> Self {
        let step = |input: &String, submit: &String| StepSelectors { input: input.clone(), submit: submit.clone() };
        Selectors {
            mobile: step(&s.mobile_input, &s.mobile_submit),
            otp: step(&s.otp_input, &s.otp_submit),
            pin: step(&s.pin_input, &s.pin_submit),
            error: s.error.clone(),
        }
    }
}

impl Default for Selectors {
    /// The ids public scripts use on today's page ([code], see `shared/docs/upstox.md`).
    fn default() -> Self {
        Selectors::from(&raw::RawSelectors::default())
    }
}

#[derive(Debug, Clone)]
pub struct LoginPolicy {
    pub max_attempts: u32,
    pub retry_min_backoff: Duration,
    pub retry_max_backoff: Duration,
    pub run_deadline: Duration,
    pub max_pin_submissions_per_day: u32,
    pub totp_min_remaining: Duration,
    pub failure_artifacts_keep: usize,
    /// How long a run waits for a v3 access-token request to be approved (`login.approval_timeout_secs`).
    pub approval_timeout: Duration,
}

/// How an account gets its token (`accounts[].method`, spelled `"browser"` | `"token-request"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Upstox's hosted login dialog in a headless browser (mobile, TOTP, PIN), then one code exchange.
    Browser,
    /// Upstox's v3 access-token request: the account holder approves it (app, WhatsApp, developer apps page) and
    /// Upstox POSTs the token to `server.notifier_path`.
    TokenRequest,
}

/// What a browser account does when the browser path fails for a page reason (`accounts[].fallback`, spelled
/// `"none"` | `"token-request"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fallback {
    None,
    /// Send a v3 access-token request, at most once per token slot (03:30 IST to 03:30 IST).
    TokenRequest,
}

/// One configured Upstox account: the OAuth app it logs in through, how, and the user's own credentials.
#[derive(Debug, Clone)]
pub struct Account {
    /// `[a-z0-9_-]+`, unique.
    pub name: String,
    pub app: OAuthApp,
    pub method: Method,
    /// `Fallback::None` whenever `method` is `TokenRequest`.
    pub fallback: Fallback,
    /// The Upstox user id the account's tokens must belong to (`accounts[].user_id`), when configured.
    pub user_id: Option<String>,
    /// What the browser types. Always `Some` when `method` is `Browser` (validation refuses the account otherwise);
    /// `None` for a token-request account configured without them.
    pub credentials: Option<Credentials>,
}

impl Account {
    /// Whether this account may send a v3 access-token request (as its method or as its fallback).
    pub fn may_request_token(&self) -> bool {
        self.method == Method::TokenRequest || self.fallback == Fallback::TokenRequest
    }
}

/// An Upstox API app, as registered on Upstox's developer console: all the token exchange needs to know.
#[derive(Debug, Clone)]
pub struct OAuthApp {
    /// The app's API key.
    pub client_id: String,
    pub client_secret: ClientSecret,
    /// Registered redirect URI; Upstox compares it as a string [doc].
    pub redirect_uri: Url,
}

/// What the user types into the hosted login page. Only the browser login method reads these.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The 10-digit mobile number the account logs in with.
    pub mobile: String,
    pub pin: Pin,
    pub totp_secret: TotpSecret,
}

#[derive(Debug, Clone)]
pub enum SinkConfig {
    File { path: String },
    Redis { url: String, key: String, channel: Option<String>, password: Option<ClientSecret> },
}

impl SinkConfig {
    /// A short human name for messages and metrics labels: `file:/path/{account}.json`, `redis:upstox:token:{account}`.
    pub fn label(&self) -> String {
        match self {
            SinkConfig::File { path } => format!("file:{path}"),
            SinkConfig::Redis { key, .. } => format!("redis:{key}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Loading.
// ---------------------------------------------------------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file `{}` not found (start from config.toml.example, or pass --config PATH)", .0.display())]
    Missing(PathBuf),
    #[error("{}", format_figment_error(.0))]
    Parse(Box<figment::Error>),
    #[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// One validation problem, tied to the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}`: {}", self.key, self.message)
    }
}

fn format_figment_error(error: &figment::Error) -> String {
    // figment's own text says "for key "default.browser.foo"": name the key the way the file spells it.
    error
        .clone()
        .into_iter()
        .map(|e| {
            // `accounts.0.pin` → `accounts[0].pin`, as validation messages spell it.
            let key = e.path.iter().fold(String::new(), |mut key, part| {
                if part.parse::<usize>().is_ok() {
                    key.push_str(&format!("[{part}]"));
                } else {
                    if !key.is_empty() {
                        key.push('.');
                    }
                    key.push_str(part);
                }
                key
            });
            let what = describe_kind(&e.kind);
            let source = e.metadata.as_ref().map(|m| format!(" (in {})", m.name)).unwrap_or_default();
            if key.is_empty() { format!("{what}{source}") } else { format!("`{key}`: {what}{source}") }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// figment's message for one error, minus anything that could repeat a value from the file: a PIN written as a
/// number (`pin = 123456`) must not come back on stderr, nor a line of TOML quoted by a syntax error.
fn describe_kind(kind: &figment::error::Kind) -> String {
    use figment::error::Kind;
    match kind {
        Kind::InvalidType(_, expected) | Kind::InvalidValue(_, expected) => {
            let hint = if expected.contains("string") { " (quote the value)" } else { "" };
            format!("invalid value: expected {expected}{hint}")
        }
        Kind::Message(message) => {
            // TOML syntax errors quote the offending line (`3 | pin = …`): keep only the prose.
            let prose: Vec<&str> = message
                .lines()
                .filter(|l| {
                    let t = l.trim_start();
                    !(t.starts_with('|') || t.split_once('|').is_some_and(|(n, _)| n.trim().parse::<u32>().is_ok()))
                })
                .filter(|l| !l.trim().is_empty())
                .collect();
            prose.join(" ")
        }
        other => other.to_string(),
    }
}

/// The figment of defaults → `path` → environment. The file must exist.
pub fn figment(path: &Path) -> Result<Figment, ConfigError> {
    if !path.is_file() {
        return Err(ConfigError::Missing(path.to_path_buf()));
    }
    Ok(Figment::from(Serialized::defaults(RawConfig::default()))
        .merge(Toml::file_exact(path))
        .merge(Env::prefixed(ENV_PREFIX).ignore(&["CONFIG"]).split("__")))
}

/// Load and validate a configuration given as TOML text (defaults → `toml`; no file, no environment): for
/// configurations the program writes itself (`demo`).
pub fn load_str(toml: &str) -> Result<Config, ConfigError> {
    let raw: RawConfig = Figment::from(Serialized::defaults(RawConfig::default()))
        .merge(Toml::string(toml))
        .extract()
        .map_err(|e| ConfigError::Parse(Box::new(e)))?;
    raw.validate()
}

/// Load and validate the configuration at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let raw: RawConfig = figment(path)?.extract().map_err(|e| ConfigError::Parse(Box::new(e)))?;
    raw.validate()
}
