//! The raw layer: what the TOML file and the environment say, with serde defaults and `deny_unknown_fields`.
//! Field docs are the reference for `config.toml.example`. Nothing here is checked; `validate` does that.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    /// Directory for what must survive restarts (generation counters, attempt counters, failure artifacts).
    pub state_dir: PathBuf,
    pub server: RawServer,
    pub schedule: RawSchedule,
    pub upstox: RawUpstox,
    pub browser: RawBrowser,
    pub login: RawLogin,
    pub accounts: Vec<RawAccount>,
    pub sinks: Vec<RawSink>,
    /// Log lines as "text" (for people) or "json" (one object per line, for log shippers); `--log-format` wins.
    pub log_format: String,
    /// How notifications are sent: rate limit, retries.
    pub notify: RawNotify,
    /// Where notifications go (`[[notifiers]]`, none by default).
    pub notifiers: Vec<RawNotifier>,
    pub coordination: RawCoordination,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from("/var/lib/upstox-relogin"),
            server: RawServer::default(),
            schedule: RawSchedule::default(),
            upstox: RawUpstox::default(),
            browser: RawBrowser::default(),
            login: RawLogin::default(),
            accounts: Vec::new(),
            sinks: Vec::new(),
            log_format: "text".into(),
            notify: RawNotify::default(),
            notifiers: Vec::new(),
            coordination: RawCoordination::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawServer {
    /// Address of the health/metrics/status HTTP server started by `run`.
    pub listen: String,
    /// A file holding a bearer token (at least 16 characters) that every endpoint but `/healthz` then requires.
    pub auth_token_file: Option<PathBuf>,
    /// The same, from an environment variable.
    pub auth_token_env: Option<String>,
    /// Path (on `listen`) that receives Upstox's notifier webhook: the token of an approved v3 access-token request.
    pub notifier_path: String,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8787".into(),
            auth_token_file: None,
            auth_token_env: None,
            notifier_path: "/upstox/notifier".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSchedule {
    /// Six-field cron (sec min hour day-of-month month day-of-week), evaluated in `timezone`.
    pub cron: String,
    /// IANA time zone name.
    pub timezone: String,
    /// At daemon start: "if-stale" | "always" | "never" (parsed into `OnStart` by validation, so that a bad value is
    /// reported together with every other problem).
    pub on_start: String,
    /// Skip cron runs on days NSE is closed: Upstox's holiday list (`GET {api_base_url}/v2/market/holidays`, a date
    /// whose `closed_exchanges` holds "NSE") and `extra_holidays_file`. `on_start` and `login` never skip.
    pub skip_holidays: bool,
    /// More closed dates from the operator: one `YYYY-MM-DD` a line, `#` starts a comment. Re-read once a day.
    pub extra_holidays_file: Option<PathBuf>,
    /// A failed cron run is retried until this time of day, Asia/Kolkata (`HH:MM` or `HH:MM:SS`).
    pub retry_until: String,
    /// Pause between retried cron runs: starts here, doubles, with jitter …
    pub retry_min_backoff_secs: u64,
    /// … capped here.
    pub retry_max_backoff_secs: u64,
    /// When the market opens, Asia/Kolkata (`HH:MM` or `HH:MM:SS`).
    pub market_open: String,
    /// Minutes before `market_open` at which every account must hold a valid token, on days the cron runs and NSE
    /// is open; an account without one raises `token_missing_near_open`. 0: no check.
    pub token_check_mins_before_open: u64,
    /// The daemon re-checks every published token (one `GET /v2/user/profile`) this often within
    /// `recheck_hours` on `recheck_days`, and logs in again when Upstox says it is invalid. 0: never.
    pub recheck_interval_secs: u64,
    /// `HH:MM-HH:MM` in Asia/Kolkata (market hours, whatever `timezone` says).
    pub recheck_hours: String,
    /// Days (Asia/Kolkata) the re-check runs on: `["Mon", "Tue", …]`.
    pub recheck_days: Vec<String>,
    /// Six-field cron (like `cron`, in `timezone`) at which the daemon probes every account's login page without
    /// typing anything (see the `probe` command); empty: never.
    pub probe_cron: String,
}

impl Default for RawSchedule {
    fn default() -> Self {
        Self {
            cron: "0 30 8 * * Mon-Fri".into(),
            timezone: "Asia/Kolkata".into(),
            on_start: "if-stale".into(),
            skip_holidays: true,
            extra_holidays_file: None,
            retry_until: "09:00".into(),
            retry_min_backoff_secs: 60,
            retry_max_backoff_secs: 300,
            market_open: "09:15".into(),
            token_check_mins_before_open: 15,
            recheck_interval_secs: 900,
            recheck_hours: "09:15-15:30".into(),
            recheck_days: ["Mon", "Tue", "Wed", "Thu", "Fri"].map(String::from).to_vec(),
            probe_cron: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawUpstox {
    /// The OAuth authorization dialog.
    pub authorize_url: String,
    /// Base of the REST API (token exchange, profile).
    pub api_base_url: String,
    /// Timeout of one HTTP request to the API.
    pub http_timeout_secs: u64,
}

impl Default for RawUpstox {
    fn default() -> Self {
        Self {
            authorize_url: "https://api.upstox.com/v2/login/authorization/dialog".into(),
            api_base_url: "https://api.upstox.com".into(),
            http_timeout_secs: 20,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawBrowser {
    /// Empty: spawn `chromedriver` on a free loopback port. Else the URL of a running WebDriver server.
    pub webdriver_url: String,
    /// chromedriver binary (path or name on PATH), used when `webdriver_url` is empty.
    pub chromedriver: String,
    /// Chrome/Chromium binary; empty lets chromedriver find it.
    pub chrome: String,
    /// Run Chromium without a window (a headed run needs an X server, e.g. `xvfb-run`).
    pub headless: bool,
    /// How long one step (an element appearing, the redirect) may take.
    pub step_timeout_secs: u64,
    /// How often waits re-check their condition.
    pub poll_interval_ms: u64,
    /// User agent override; empty keeps Chromium's own.
    pub user_agent: String,
    /// Extra Chromium command-line arguments, appended after the built-in ones.
    pub extra_args: Vec<String>,
    pub selectors: RawSelectors,
    /// Browser logins in flight at once, across accounts (`login` and `run` alike); at least 1. With
    /// `webdriver_url` at a Selenium Grid this is the client-side cap: the grid's own queue is never relied on.
    pub max_sessions: u32,
}

impl Default for RawBrowser {
    fn default() -> Self {
        Self {
            webdriver_url: String::new(),
            chromedriver: "chromedriver".into(),
            chrome: String::new(),
            headless: true,
            step_timeout_secs: 30,
            poll_interval_ms: 50,
            user_agent: String::new(),
            extra_args: Vec::new(),
            selectors: RawSelectors::default(),
            max_sessions: 2,
        }
    }
}

/// CSS selectors of the hosted login page. Upstox has redesigned it before; override here when it changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSelectors {
    pub mobile_input: String,
    pub mobile_submit: String,
    pub otp_input: String,
    pub otp_submit: String,
    pub pin_input: String,
    pub pin_submit: String,
    /// Where the page shows a rejected input ("Invalid OTP", "You have entered an incorrect PIN").
    pub error: String,
}

impl Default for RawSelectors {
    fn default() -> Self {
        Self {
            mobile_input: "#mobileNum".into(),
            mobile_submit: "#getOtp".into(),
            otp_input: "#otpNum".into(),
            otp_submit: "#continueBtn".into(),
            pin_input: "#pinCode".into(),
            pin_submit: "#pinContinueBtn".into(),
            error: "[role=alert]".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawLogin {
    /// Whole browser logins one run may make for one account (retryable failures only).
    pub max_attempts: u32,
    /// Backoff between attempts: starts here, doubles, with jitter.
    pub retry_min_backoff_secs: u64,
    /// Upper bound of one backoff.
    pub retry_max_backoff_secs: u64,
    /// Deadline of one run for one account, retries included.
    pub run_deadline_secs: u64,
    /// PIN submissions without a code per account per IST day before the lockout guard refuses (1..=4). Whatever
    /// the days, at most 4 in a row are ever submitted (Upstox blocks at 5).
    pub max_pin_submissions_per_day: u32,
    /// Wait for the next 30 s TOTP window when fewer seconds than this remain in the current one.
    pub totp_min_remaining_secs: u64,
    /// Failure artifacts (screenshot + HTML) kept under `{state_dir}/failures/`, newest first.
    pub failure_artifacts_keep: usize,
    /// How long a run waits for the account holder to approve a v3 access-token request (Upstox's own limit, the
    /// next 03:30 IST, may end the wait sooner).
    pub approval_timeout_secs: u64,
}

impl Default for RawLogin {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            retry_min_backoff_secs: 5,
            retry_max_backoff_secs: 60,
            run_deadline_secs: 600,
            max_pin_submissions_per_day: 2,
            totp_min_remaining_secs: 5,
            failure_artifacts_keep: 20,
            approval_timeout_secs: 1800,
        }
    }
}

#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAccount {
    /// `[a-z0-9_-]+`, unique; `{account}` in sink paths and keys.
    pub name: String,
    pub client_id: String,
    /// Must equal the redirect URL registered for the app, byte for byte (it is sent exactly as written; no
    /// fragment). Need not be served by anything.
    pub redirect_uri: String,
    /// The 10-digit mobile number the Upstox account logs in with.
    pub mobile: String,
    pub client_secret: Option<String>,
    pub client_secret_env: Option<String>,
    pub client_secret_file: Option<PathBuf>,
    pub pin: Option<String>,
    pub pin_env: Option<String>,
    pub pin_file: Option<PathBuf>,
    pub totp_secret: Option<String>,
    pub totp_secret_env: Option<String>,
    pub totp_secret_file: Option<PathBuf>,
    /// How the account gets its token: "browser" (default) | "token-request" (Upstox's v3 access-token request,
    /// approved by the account holder; no browser, and `mobile`, `pin`, `totp_secret` may be left out).
    pub method: Option<String>,
    /// What a browser account does when the browser path fails for a page reason (bot block): "none" (default) |
    /// "token-request" (once per token slot).
    pub fallback: Option<String>,
    /// The Upstox user id (e.g. "AB1234") the account's tokens must belong to; checked on every token delivered to
    /// the notifier webhook. Empty: the user id of the account's last token, once there was one.
    pub user_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum RawSink {
    File {
        /// Absolute; `{account}` is replaced by the account name. Written atomically, mode 0600 unless `mode`.
        path: String,
        /// Octal permission bits of the file, e.g. `"0640"` for readers in `group`; never readable by others.
        #[serde(default)]
        mode: Option<String>,
        /// Group (name or numeric id) the file is given, for bots running as another user.
        #[serde(default)]
        group: Option<String>,
        /// Also write the 1-year read-only `extended_token` (off: a leaked document stays useful one day at most).
        #[serde(default)]
        include_extended_token: bool,
    },
    Redis {
        /// `redis://` or `rediss://`, optionally with user:password and a database number.
        url: String,
        /// `{account}` is replaced by the account name.
        #[serde(default = "default_redis_key")]
        key: String,
        /// When set, the document is PUBLISHed here after the SET.
        #[serde(default)]
        channel: Option<String>,
        #[serde(default)]
        password_env: Option<String>,
        #[serde(default)]
        password_file: Option<PathBuf>,
        /// Also write (and PUBLISH) the 1-year read-only `extended_token`.
        #[serde(default)]
        include_extended_token: bool,
    },
}

fn default_redis_key() -> String {
    "upstox:token:{account}".into()
}

/// `[coordination]`: how replicas agree on who logs an account in (`type = "local" | "redis"`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum RawCoordination {
    /// One host: a flock and the state files under `state_dir`.
    Local {},
    /// Several replicas sharing a Redis: a lease per account, a fencing generation, shared guard facts.
    Redis {
        /// `redis://` or `rediss://` (TLS), optionally with user:password and a database number.
        url: String,
        /// Prepended to every coordination key (`{key_prefix}{account}:lease`, `…:generation`, `…:facts`).
        #[serde(default = "default_key_prefix")]
        key_prefix: String,
        #[serde(default)]
        password_env: Option<String>,
        #[serde(default)]
        password_file: Option<PathBuf>,
        /// Seconds a lease outlives its holder's last renewal (renewed every third of it while a login runs): how
        /// long the other replicas wait after a holder died.
        #[serde(default = "default_lease_ttl_secs")]
        lease_ttl_secs: u64,
    },
}

impl Default for RawCoordination {
    fn default() -> Self {
        RawCoordination::Local {}
    }
}

fn default_key_prefix() -> String {
    "upstox-relogin:".into()
}

fn default_lease_ttl_secs() -> u64 {
    30
}

impl std::fmt::Debug for RawAccount {
    // Hand-written: the inline secrets must never reach a log line through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inline = |v: &Option<String>| v.as_ref().map(|_| "[redacted]");
        f.debug_struct("RawAccount")
            .field("name", &self.name)
            .field("client_id", &self.client_id)
            .field("redirect_uri", &self.redirect_uri)
            .field("client_secret", &inline(&self.client_secret))
            .field("client_secret_env", &self.client_secret_env)
            .field("client_secret_file", &self.client_secret_file)
            .field("pin", &inline(&self.pin))
            .field("pin_env", &self.pin_env)
            .field("pin_file", &self.pin_file)
            .field("totp_secret", &inline(&self.totp_secret))
            .field("totp_secret_env", &self.totp_secret_env)
            .field("totp_secret_file", &self.totp_secret_file)
            .field("method", &self.method)
            .field("fallback", &self.fallback)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

/// `[notify]`: how notifications are sent, whatever the notifier.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawNotify {
    /// At most one notification per account and event within this many seconds (0: no limit).
    pub rate_limit_secs: u64,
    /// Retries of a failed delivery (a 5xx, a 429, no answer), with exponential backoff.
    pub max_retries: usize,
    /// The first pause between retries; doubles each time.
    pub retry_min_backoff_ms: u64,
    /// Timeout of one delivery request.
    pub timeout_secs: u64,
}

impl Default for RawNotify {
    fn default() -> Self {
        Self { rate_limit_secs: 1800, max_retries: 5, retry_min_backoff_ms: 1000, timeout_secs: 10 }
    }
}

/// One `[[notifiers]]` entry. Each credential (a webhook URL, which for Slack and Discord carries a key; a bot
/// token) is given exactly one way: inline, `_env` or `_file`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum RawNotifier {
    /// POST of a JSON object `{"event","account","message","at","reason","fix"}`.
    Webhook {
        #[serde(default)]
        url: Option<String>,
        #[serde(default)]
        url_env: Option<String>,
        #[serde(default)]
        url_file: Option<PathBuf>,
    },
    /// A Slack incoming webhook (`{"text": …}`).
    Slack {
        #[serde(default)]
        url: Option<String>,
        #[serde(default)]
        url_env: Option<String>,
        #[serde(default)]
        url_file: Option<PathBuf>,
    },
    /// A Discord webhook (`{"content": …}`).
    Discord {
        #[serde(default)]
        url: Option<String>,
        #[serde(default)]
        url_env: Option<String>,
        #[serde(default)]
        url_file: Option<PathBuf>,
    },
    /// A Telegram bot's `sendMessage` to `chat_id`.
    Telegram {
        #[serde(default)]
        bot_token: Option<String>,
        #[serde(default)]
        bot_token_env: Option<String>,
        #[serde(default)]
        bot_token_file: Option<PathBuf>,
        /// A chat id (`"-1001234567890"`, quoted) or a channel's `"@name"`.
        #[serde(default)]
        chat_id: String,
        /// The Bot API's base URL (a self-hosted Bot API server, a test receiver).
        #[serde(default = "default_telegram_api")]
        api_base_url: String,
    },
}

fn default_telegram_api() -> String {
    "https://api.telegram.org".into()
}

impl std::fmt::Debug for RawNotifier {
    // Hand-written: an inline bot token or webhook URL (Slack and Discord URLs carry a key) must never be logged.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, inline) = match self {
            RawNotifier::Webhook { url, .. } => ("webhook", url.is_some()),
            RawNotifier::Slack { url, .. } => ("slack", url.is_some()),
            RawNotifier::Discord { url, .. } => ("discord", url.is_some()),
            RawNotifier::Telegram { bot_token, .. } => ("telegram", bot_token.is_some()),
        };
        f.debug_struct("RawNotifier").field("type", &kind).field("inline_secret", &inline).finish_non_exhaustive()
    }
}
