//! The operators' settings, typed and validated: how logs look (`log_format`), the bearer token that protects the
//! daemon's endpoints (`server.auth_token_file`), where notifications go (`[[notifiers]]`) and how they are sent
//! (`[notify]`).
//!
//! Validation reads the secret files and variables it is pointed at and nothing else: it never reaches a webhook
//! or the Telegram API (that is a runtime matter for `notify`).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::IntoDeserializer;
use url::Url;

use super::raw::{RawNotifier, RawNotify, RawServer};
use super::validate::{Problems, api_url, resolve_secret};
use crate::secret::{BearerToken, BotToken, SecretUrl};

/// The shortest bearer token `server.auth_token_file` may hold.
pub const MIN_AUTH_TOKEN_LEN: usize = 16;

/// How log lines are written (`log_format`, `--log-format`): `"text"` for people, `"json"` for log shippers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `message`, the event's fields, `span` (the run's `account`).
    Json,
}

/// `[notify]`, parsed.
#[derive(Debug, Clone)]
pub struct NotifyPolicy {
    /// At most one notification per account and event within this window; zero: no limit.
    pub rate_limit: Duration,
    /// Retries of a failed delivery.
    pub max_retries: usize,
    /// The first pause between retries (doubling, with jitter).
    pub retry_min_backoff: Duration,
    /// Timeout of one delivery request.
    pub timeout: Duration,
}

impl Default for NotifyPolicy {
    fn default() -> Self {
        NotifyPolicy::from(&RawNotify::default())
    }
}

impl From<&RawNotify> for NotifyPolicy {
    fn from(raw: &RawNotify) -> Self {
        NotifyPolicy {
            rate_limit: Duration::from_secs(raw.rate_limit_secs),
            max_retries: raw.max_retries,
            retry_min_backoff: Duration::from_millis(raw.retry_min_backoff_ms),
            timeout: Duration::from_secs(raw.timeout_secs),
        }
    }
}

/// One notifier (`[[notifiers]]`), the closed set `notify` builds its backends from.
#[derive(Debug, Clone)]
pub enum NotifierConfig {
    /// POST of the event as a JSON object.
    Webhook { url: SecretUrl },
    /// A Slack incoming webhook.
    Slack { url: SecretUrl },
    /// A Discord webhook.
    Discord { url: SecretUrl },
    /// A Telegram bot's `sendMessage` (Bot API: `POST {api_base_url}/bot{token}/sendMessage`).
    Telegram { bot_token: BotToken, chat_id: String, api_base_url: Url },
}

impl NotifierConfig {
    /// A short name for logs that holds no credential: `webhook:https://hooks.example.com`, `telegram:-100123`.
    pub fn label(&self) -> String {
        match self {
            NotifierConfig::Webhook { url } => format!("webhook:{}", url.origin()),
            NotifierConfig::Slack { url } => format!("slack:{}", url.origin()),
            NotifierConfig::Discord { url } => format!("discord:{}", url.origin()),
            NotifierConfig::Telegram { chat_id, .. } => format!("telegram:{chat_id}"),
        }
    }
}

/// The `log_format` that `path` (and the environment) set, read before logging starts; `None` when the file
/// cannot be read or says something else than "text" or "json" (validation reports that later).
pub fn peek_log_format(path: &std::path::Path) -> Option<LogFormat> {
    let value: String = super::figment(path).ok()?.extract_inner("log_format").ok()?;
    let parsed: Result<LogFormat, serde::de::value::Error> = LogFormat::deserialize(value.as_str().into_deserializer());
    parsed.ok()
}

pub(super) fn validate_log_format(p: &mut Problems, raw: &str) -> LogFormat {
    LogFormat::deserialize(raw.into_deserializer()).unwrap_or_else(|_: serde::de::value::Error| {
        p.add("log_format", format!("expected \"text\" or \"json\", got \"{raw}\""));
        LogFormat::Text
    })
}

/// `server.auth_token_file` / `server.auth_token_env`: none, or one of them holding a long enough token.
pub(super) fn validate_auth_token(p: &mut Problems, server: &RawServer) -> Option<BearerToken> {
    if server.auth_token_file.is_none() && server.auth_token_env.is_none() {
        return None;
    }
    let token = resolve_secret(p, "server.auth_token", &None, &server.auth_token_env, &server.auth_token_file)?;
    let token = token.trim();
    if token.chars().count() < MIN_AUTH_TOKEN_LEN || token.chars().any(char::is_whitespace) {
        p.add(
            "server.auth_token_file",
            format!(
                "the token must be at least {MIN_AUTH_TOKEN_LEN} characters without spaces \
                 (e.g. `openssl rand -hex 32`)"
            ),
        );
        return None;
    }
    Some(BearerToken::new(token))
}

pub(super) fn validate_notify(p: &mut Problems, raw: &RawNotify) -> NotifyPolicy {
    if raw.timeout_secs == 0 {
        p.add("notify.timeout_secs", "must be greater than 0");
    }
    if raw.max_retries > 20 {
        p.add("notify.max_retries", format!("expected 0..=20, got {}", raw.max_retries));
    }
    NotifyPolicy::from(raw)
}

pub(super) fn validate_notifiers(p: &mut Problems, raw: &[RawNotifier]) -> Vec<NotifierConfig> {
    let mut out = Vec::new();
    for (i, n) in raw.iter().enumerate() {
        let key = |field: &str| format!("notifiers[{i}].{field}");
        let built = match n {
            RawNotifier::Webhook { url, url_env, url_file } => {
                notifier_url(p, &key("url"), url, url_env, url_file, false).map(|url| NotifierConfig::Webhook { url })
            }
            RawNotifier::Slack { url, url_env, url_file } => {
                notifier_url(p, &key("url"), url, url_env, url_file, true).map(|url| NotifierConfig::Slack { url })
            }
            RawNotifier::Discord { url, url_env, url_file } => {
                notifier_url(p, &key("url"), url, url_env, url_file, true).map(|url| NotifierConfig::Discord { url })
            }
            RawNotifier::Telegram { bot_token, bot_token_env, bot_token_file, chat_id, api_base_url } => {
                let token = resolve_secret(p, &key("bot_token"), bot_token, bot_token_env, bot_token_file);
                // BotFather's shape: `<bot id>:<35 characters>` [doc: core.telegram.org/bots/api#authorizing-your-bot].
                let token = token.filter(|t| {
                    let ok = t.split_once(':').is_some_and(|(id, rest)| {
                        !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) && !rest.is_empty()
                    }) && !t.contains(['/', ' ']);
                    if !ok {
                        p.add(key("bot_token"), "expected a bot token as BotFather gives it (`123456:ABC…`)");
                    }
                    ok
                });
                let chat_ok = is_chat_id(chat_id);
                if !chat_ok {
                    p.add(key("chat_id"), "expected a chat id such as \"-1001234567890\" (quoted) or \"@channelname\"");
                }
                let api = api_url(p, &key("api_base_url"), api_base_url);
                match (token, chat_ok, api) {
                    (Some(token), true, Some(api_base_url)) => Some(NotifierConfig::Telegram {
                        bot_token: BotToken::new(token),
                        chat_id: chat_id.clone(),
                        api_base_url,
                    }),
                    _ => None,
                }
            }
        };
        out.extend(built);
    }
    out
}

/// A numeric chat id (negative for groups and channels) or a public channel's `@username` [doc: Bot API
/// `sendMessage`].
fn is_chat_id(chat_id: &str) -> bool {
    let digits = chat_id.strip_prefix('-').unwrap_or(chat_id);
    let numeric = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    let channel = chat_id
        .strip_prefix('@')
        .is_some_and(|n| n.len() >= 5 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    numeric || channel
}

/// A webhook URL given one way. `https_only`: Slack and Discord URLs carry their key, so plain http is refused
/// (except on loopback, where tests and local relays listen).
fn notifier_url(
    p: &mut Problems,
    key: &str,
    inline: &Option<String>,
    env: &Option<String>,
    file: &Option<PathBuf>,
    https_only: bool,
) -> Option<SecretUrl> {
    let value = resolve_secret(p, key, inline, env, file)?;
    // Never echo the value: it may carry the webhook's key.
    match Url::parse(value.trim()) {
        Ok(url) if url.scheme() == "https" => Some(SecretUrl::new(url)),
        Ok(url) if url.scheme() == "http" && (!https_only || super::validate::is_loopback(&url)) => {
            Some(SecretUrl::new(url))
        }
        Ok(url) if url.scheme() == "http" => {
            p.add(key, "must be https (the URL carries the webhook's key); http is allowed only for loopback hosts");
            None
        }
        Ok(_) | Err(_) => {
            p.add(key, "expected an http(s) URL");
            None
        }
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closure signature
mod tests {
    use crate::config::fixtures::VALID;
    use std::path::Path;

    use figment::Jail;

    use super::super::{Config, ConfigError, load};
    use super::*;

    /// `VALID` plus `extra`; top-level keys in `extra` come before its first table.
    fn load_with(extra: &str, files: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let split = extra.find('[').unwrap_or(extra.len());
        let (top, tables) = extra.split_at(split);
        let mut out = None;
        Jail::expect_with(|jail| {
            for (name, content) in files {
                jail.create_file(name, content)?;
                // A secret file every user can read is refused (`config::secrets`).
                let private = std::os::unix::fs::PermissionsExt::from_mode(0o600);
                std::fs::set_permissions(jail.directory().join(name), private).unwrap();
            }
            jail.create_file("config.toml", &format!("{top}\n{VALID}\n{tables}"))?;
            out = Some(load(Path::new("config.toml")));
            Ok(())
        });
        out.unwrap()
    }

    #[test]
    fn defaults_have_no_notifier_no_auth_and_text_logs() {
        let c = load_with("", &[]).unwrap();
        assert!(c.notifiers.is_empty());
        assert!(c.server.auth_token.is_none());
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.notify.rate_limit, Duration::from_secs(1800));
    }

    #[test]
    fn every_notifier_kind_loads_and_its_label_holds_no_secret() {
        let toml = r#"
            log_format = "json"
            [notify]
            rate_limit_secs = 60
            [[notifiers]]
            type = "webhook"
            url = "http://10.0.0.5/hook?key=webhookkey123"
            [[notifiers]]
            type = "slack"
            url_file = "slack_url"
            [[notifiers]]
            type = "discord"
            url = "https://discord.com/api/webhooks/1/discordkey123"
            [[notifiers]]
            type = "telegram"
            bot_token_file = "bot"
            chat_id = "-1001234567890"
        "#;
        let files =
            [("slack_url", "https://hooks.slack.com/services/T0/B0/slackkey123\n"), ("bot", "123456:botkey123\n")];
        let c = load_with(toml, &files).unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.notify.rate_limit, Duration::from_secs(60));
        let labels: Vec<String> = c.notifiers.iter().map(NotifierConfig::label).collect();
        assert_eq!(
            labels,
            [
                "webhook:http://10.0.0.5",
                "slack:https://hooks.slack.com",
                "discord:https://discord.com",
                "telegram:-1001234567890"
            ]
        );
        let shown = format!("{:?} {labels:?}", c.notifiers);
        for key in ["webhookkey123", "slackkey123", "discordkey123", "botkey123"] {
            assert!(!shown.contains(key), "{key} shown in {shown}");
        }
        match &c.notifiers[3] {
            NotifierConfig::Telegram { bot_token, api_base_url, .. } => {
                assert_eq!(bot_token.expose(), "123456:botkey123");
                assert_eq!(api_base_url.as_str(), "https://api.telegram.org/");
            }
            other => panic!("expected telegram, got {other:?}"),
        }
    }

    #[test]
    fn bad_notifiers_name_their_keys_and_never_echo_a_secret() {
        let toml = r#"
            [[notifiers]]
            type = "slack"
            url = "http://hooks.slack.com/services/T0/B0/slackkey123"
            [[notifiers]]
            type = "telegram"
            bot_token = "not-a-token-botkey123"
            chat_id = "somebody"
            [[notifiers]]
            type = "discord"
        "#;
        let msg = load_with(toml, &[]).unwrap_err().to_string();
        for key in ["notifiers[0].url", "notifiers[1].bot_token", "notifiers[1].chat_id", "notifiers[2].url"] {
            assert!(msg.contains(&format!("`{key}`")), "{key} missing from {msg}");
        }
        assert!(!msg.contains("slackkey123") && !msg.contains("botkey123"), "{msg}");
    }

    #[test]
    fn unknown_notifier_type_or_key_is_refused() {
        let msg = load_with("[[notifiers]]\ntype = \"pager\"\nurl = \"https://x\"", &[]).unwrap_err().to_string();
        assert!(msg.contains("notifiers") && msg.contains("pager"), "{msg}");
        let msg = load_with("[[notifiers]]\ntype = \"webhook\"\nurl = \"https://x\"\nchannel = \"y\"", &[])
            .unwrap_err()
            .to_string();
        assert!(msg.contains("unknown field"), "{msg}");
    }

    #[test]
    fn auth_token_must_be_long_enough_and_is_never_echoed() {
        let c = load_with("[server]\nauth_token_file = \"tok\"", &[("tok", "0123456789abcdef0123\n")]).unwrap();
        assert_eq!(c.server.auth_token.unwrap().expose(), "0123456789abcdef0123");
        let msg = load_with("[server]\nauth_token_file = \"tok\"", &[("tok", "short42\n")]).unwrap_err().to_string();
        assert!(msg.contains("`server.auth_token_file`: the token must be at least 16"), "{msg}");
        assert!(!msg.contains("short42"), "{msg}");
        let msg = load_with("[server]\nauth_token_file = \"missing\"", &[]).unwrap_err().to_string();
        assert!(msg.contains("`server.auth_token_file`: cannot read"), "{msg}");
    }

    #[test]
    fn bad_log_format_names_the_key() {
        let msg = load_with("log_format = \"xml\"", &[]).unwrap_err().to_string();
        assert!(msg.contains("`log_format`: expected \"text\" or \"json\""), "{msg}");
    }
}
