//! Secret newtypes: PIN, TOTP secret, client secret, access tokens, auth codes.
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
}
