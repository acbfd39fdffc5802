//! Secret newtypes: PIN, TOTP secret, client secret, access tokens, auth codes, the server's bearer token, notifier
//! credentials (a bot token, a webhook URL with a key in it).
//!
//! Each wraps a `secrecy::SecretString`, so `Debug` prints `[redacted]` and there is no `Display`. The only way to
//! the bytes is `.expose()`, which keeps every use greppable. This module never logs, prints or persists anything.

use secrecy::{ExposeSecret, SecretString};

macro_rules! secret_newtype {
    ($(#[$doc:meta] $name:ident),* $(,)?) => {$(
        #[$doc]
        #[derive(Clone)]
        pub struct $name(SecretString);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(SecretString::from(value.into()))
            }

            /// The secret itself. Call only where the value must leave the process (a form field, a key press).
            pub fn expose(&self) -> &str {
                self.0.expose_secret()
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }
    )*};
}

secret_newtype! {
    /// The app's API secret from the Upstox developer console.
    ClientSecret,
    /// The 6-digit login PIN.
    Pin,
    /// The base32 TOTP seed Upstox shows when TOTP is enabled (normalised: upper case, no spaces or padding).
    TotpSecret,
    /// A bearer access token or extended token.
    AccessToken,
    /// A single-use OAuth authorization code.
    AuthCode,
    /// A TOTP code as typed into the login page.
    OneTimeCode,
    /// The bearer token that protects the daemon's HTTP endpoints (`server.auth_token_file`).
    BearerToken,
    /// A Telegram bot token (`notifiers[N].bot_token`), as BotFather hands it out.
    BotToken,
}

/// A URL that may carry a credential in its path or query (a Slack or Discord incoming webhook, a webhook with a
/// key): `Debug` shows only its scheme and host, and `host` is what messages and labels name.
#[derive(Clone)]
pub struct SecretUrl(url::Url);

impl SecretUrl {
    pub fn new(url: url::Url) -> Self {
        Self(url)
    }

    /// The URL itself. Call only where the request is built.
    pub fn expose(&self) -> &url::Url {
        &self.0
    }

    /// `scheme://host[:port]`: safe to log.
    pub fn origin(&self) -> String {
        self.0.origin().ascii_serialization()
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretUrl({}/[redacted])", self.origin())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let pin = Pin::new("123456");
        let secret = ClientSecret::new("s3cr3t-value");
        let shown = format!("{pin:?} {secret:?} {:?}", AuthCode::new("abc123"));
        assert_eq!(shown, "Pin([redacted]) ClientSecret([redacted]) AuthCode([redacted])");
        assert_eq!(pin.expose(), "123456");
    }

    #[test]
    fn secret_url_shows_only_its_origin() {
        let url = SecretUrl::new("https://hooks.slack.com/services/T000/B000/XXXXSECRET".parse().unwrap());
        let shown = format!("{url:?} {}", url.origin());
        assert!(!shown.contains("XXXXSECRET") && !shown.contains("T000"), "{shown}");
        assert!(shown.contains("https://hooks.slack.com"), "{shown}");
    }
}
