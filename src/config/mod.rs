//! Configuration: figment layers (built-in defaults → TOML file → `UPSTOX_RELOGIN_` environment) into `RawConfig`,
//! then `RawConfig::validate` into the typed `Config` the rest of the program uses.
//!
//! Validation reads the secret files and variables it is pointed at and nothing else: it never touches the network,
//! a browser or Redis. Every problem names its key (`schedule.cron`, `accounts[0].pin`), and all problems are
//! reported at once so a user fixes the file in one pass.

mod coordination;
#[cfg(test)]
mod fixtures;
mod load;
mod market_day;
mod ops;
pub mod raw;
mod schedule;
mod secrets;
mod sinks;
mod validate;

pub use load::{figment, load, load_str};
pub use market_day::{MarketDay, parse_extra_holidays, read_extra_holidays};
pub use ops::{LogFormat, MIN_AUTH_TOKEN_LEN, NotifierConfig, NotifyPolicy, peek_log_format};
pub use raw::RawConfig;
pub use schedule::Recheck;
pub use secrets::{Exposure, exposure};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// Problems that do not stop the program but that a human should fix (a secret other users can read): printed
    /// by `check-config` and `login`, logged by `run` at start.
    pub warnings: Vec<Problem>,
    pub coordination: CoordinationConfig,
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
    /// When the daemon re-checks published tokens (`schedule.recheck_*`).
    pub recheck: Recheck,
    /// `schedule.probe_cron`: when the daemon probes every account's login page (see `probe`); `None` is off.
    pub probe: Option<ProbeSchedule>,
}

/// `schedule.probe_cron`, validated like `schedule.cron` (six fields, seconds first, in `schedule.timezone`).
#[derive(Debug, Clone)]
pub struct ProbeSchedule {
    pub cron: String,
    pub parsed: croner::Cron,
}

impl ScheduleConfig {
    /// The first tick strictly after `after`, in the schedule's time zone.
    pub fn next_run(&self, after: chrono::DateTime<chrono::Utc>) -> Option<chrono::DateTime<chrono_tz::Tz>> {
        let after = chrono::Timelike::with_nanosecond(&after, 0).unwrap_or(after);
        self.parsed.find_next_occurrence(&after.with_timezone(&self.timezone), false).ok()
    }

    /// The next `n` ticks strictly after `after` (fewer when the cron stops firing).
    pub fn next_runs(&self, after: chrono::DateTime<chrono::Utc>, n: usize) -> Vec<chrono::DateTime<chrono_tz::Tz>> {
        let mut out: Vec<chrono::DateTime<chrono_tz::Tz>> = Vec::with_capacity(n);
        let mut from = after;
        while out.len() < n {
            let Some(next) = self.next_run(from) else { break };
            from = next.with_timezone(&chrono::Utc);
            out.push(next);
        }
        out
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
    /// The entry's position in `[[accounts]]` (0-based), so messages can name its keys (`accounts[0].client_id`).
    pub index: usize,
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

impl Account {
    /// The config key of one of this account's fields, as validation spells it: `accounts[0].client_id`.
    pub fn key(&self, field: &str) -> String {
        format!("accounts[{}].{field}", self.index)
    }
}

/// An Upstox API app, as registered on Upstox's developer console: all the token exchange needs to know.
#[derive(Debug, Clone)]
pub struct OAuthApp {
    /// The app's API key.
    pub client_id: String,
    pub client_secret: ClientSecret,
    /// Registered redirect URI, kept exactly as configured: Upstox compares it as a string [doc].
    pub redirect_uri: RedirectUri,
}

/// A registered redirect URI: the configured string, sent to Upstox byte for byte (the dialog's query and the token
/// form; Upstox compares it as a string with the registered one [doc]), and its parsed form, for recognising the
/// redirect in the browser, whose address bar shows its own normalised spelling (`http://127.0.0.1:9` comes back
/// as `http://127.0.0.1:9/?code=…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectUri {
    original: String,
    parsed: Url,
}

/// Why a `redirect_uri` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUriError {
    #[error("not a URL ({0})")]
    NotAUrl(url::ParseError),
    #[error("must be an http(s) URL, got scheme `{0}`")]
    Scheme(String),
    #[error("must not have a fragment (`#…`): OAuth forbids it (RFC 6749 §3.1.2)")]
    Fragment,
    #[error("has leading or trailing whitespace, which would be sent to Upstox as part of the URL")]
    Whitespace,
}

impl RedirectUri {
    /// Validate `configured` without rewriting it: an absolute http(s) URL, no fragment, no surrounding whitespace.
    pub fn parse(configured: &str) -> Result<Self, RedirectUriError> {
        if configured.trim() != configured {
            return Err(RedirectUriError::Whitespace);
        }
        let parsed = Url::parse(configured).map_err(RedirectUriError::NotAUrl)?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(RedirectUriError::Scheme(parsed.scheme().to_owned()));
        }
        if configured.contains('#') || parsed.fragment().is_some() {
            return Err(RedirectUriError::Fragment);
        }
        Ok(Self { original: configured.to_owned(), parsed })
    }

    /// The configured string, byte for byte: what Upstox receives.
    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// The parsed (normalised) URL: only for comparing with what the browser shows.
    pub fn url(&self) -> &Url {
        &self.parsed
    }
}

impl std::fmt::Display for RedirectUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.original)
    }
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
    File {
        path: String,
        access: FileAccess,
        include_extended_token: bool,
    },
    Redis {
        url: String,
        key: String,
        channel: Option<String>,
        password: Option<ClientSecret>,
        include_extended_token: bool,
    },
}

/// Who may read a file the program writes: its permission bits and group (`sinks[i].mode`, `sinks[i].group`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileAccess {
    /// Permission bits, validated: owner read, group read (and write) at most, nothing for others.
    pub mode: u32,
    /// The group id the file is given; `None`: the process's own.
    pub gid: Option<u32>,
}

impl FileAccess {
    /// 0600, the process's group: only the service user.
    pub const PRIVATE: FileAccess = FileAccess { mode: 0o600, gid: None };

    /// The group may read files written with this access.
    pub fn group_readable(&self) -> bool {
        self.mode & 0o040 != 0
    }
}

impl SinkConfig {
    /// Whether the document this sink writes carries `extended_token` (`include_extended_token`, default false).
    pub fn include_extended_token(&self) -> bool {
        match self {
            SinkConfig::File { include_extended_token, .. } | SinkConfig::Redis { include_extended_token, .. } => {
                *include_extended_token
            }
        }
    }

    /// A short human name for messages and metrics labels: `file:/path/{account}.json`, `redis:upstox:token:{account}`.
    pub fn label(&self) -> String {
        match self {
            SinkConfig::File { path, .. } => format!("file:{path}"),
            SinkConfig::Redis { key, .. } => format!("redis:{key}"),
        }
    }
}

/// `[coordination]`: who may log an account in now, and where the generation and guard facts live.
#[derive(Debug, Clone)]
pub enum CoordinationConfig {
    /// One host: a flock and the state files under `state_dir` (the default).
    Local,
    /// Several replicas sharing one Redis.
    Redis(RedisCoordination),
}

impl CoordinationConfig {
    /// How long a dead holder keeps an account (zero for `Local`: a flock dies with its process).
    pub fn lease_ttl(&self) -> Duration {
        match self {
            CoordinationConfig::Local => Duration::ZERO,
            CoordinationConfig::Redis(r) => r.lease_ttl,
        }
    }
}

/// `[coordination] type = "redis"`, validated.
#[derive(Debug, Clone)]
pub struct RedisCoordination {
    /// `redis://` or `rediss://`, as written (it may carry a password: show it only through a redacting helper).
    pub url: String,
    /// Prepended to every key (`{key_prefix}{account}:lease`).
    pub key_prefix: String,
    /// From `password_env`/`password_file`; overrides any password in the URL.
    pub password: Option<ClientSecret>,
    /// How long a lease outlives its holder's last renewal.
    pub lease_ttl: Duration,
}

// ---------------------------------------------------------------------------------------------------------------
// Loading.
// ---------------------------------------------------------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file `{}` not found (start from config.toml.example, or pass --config PATH)", .0.display())]
    Missing(PathBuf),
    #[error("`{}` is a directory: --config takes the config file itself (e.g. `{}`)", .0.display(), .0.join("config.toml").display())]
    IsDirectory(PathBuf),
    #[error("cannot read config file `{}`: {source} (fix: make it readable by this user, uid {uid})", path.display())]
    Unreadable { path: PathBuf, source: std::io::Error, uid: u32 },
    #[error("{}", load::format_figment_error(.0))]
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
