//! What `GET /v2/user/profile` [doc] says about a token: valid (with the account's facts), invalid, or no verdict.
//! Only an authoritative answer (HTTP 401 or `UDAPI100050`) invalidates a token; a rate limit (429, `UDAPI10005`),
//! a 5xx or anything unexpected is "no verdict", which must never make anyone throw a token away.
//!
//! Pure interpretation of an answer; the request itself is `oauth::UpstoxApi::check_token`.

use serde::Deserialize;

use crate::oauth::{UpstoxError, interpret_error};

/// The account facts `GET /v2/user/profile` answers in `data` [doc], read leniently (every field optional).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Profile {
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub exchanges: Option<Vec<String>>,
    #[serde(default)]
    pub products: Option<Vec<String>>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub user_name: Option<String>,
}

impl Profile {
    /// These facts, each missing or empty one taken from `known` instead (say a token response's `"user_name":
    /// null`, filled from the profile).
    pub fn or(self, known: Profile) -> Profile {
        let text = |given: Option<String>, known: Option<String>| given.filter(|v| !v.is_empty()).or(known);
        Profile {
            email: text(self.email, known.email),
            exchanges: self.exchanges.or(known.exchanges),
            products: self.products.or(known.products),
            user_id: text(self.user_id, known.user_id),
            user_name: text(self.user_name, known.user_name),
        }
    }
}

#[derive(Deserialize)]
struct ProfileEnvelope {
    #[serde(default)]
    data: Option<Profile>,
}

/// What `GET /v2/user/profile` says about a token. Only an authoritative answer invalidates a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCheck {
    /// Accepted; with the profile Upstox answered (fields it left out are `None`).
    Valid(Profile),
    /// Upstox said the token is invalid: HTTP 401 or `UDAPI100050` [doc]. Log in again.
    Invalid(UpstoxError),
    /// No verdict: a rate limit (429, `UDAPI10005`), a 5xx, an unexpected answer or a network error. Keep what is
    /// published (it has not expired) and ask again later.
    Unknown(String),
}

/// Interpret the profile endpoint's answer.
pub fn interpret(http_status: u16, body: &[u8]) -> TokenCheck {
    if http_status == 200 {
        let profile = serde_json::from_slice::<ProfileEnvelope>(body).ok().and_then(|e| e.data).unwrap_or_default();
        return TokenCheck::Valid(profile);
    }
    let error = interpret_error(http_status, body);
    if http_status == 401 || error.code.as_deref() == Some("UDAPI100050") {
        TokenCheck::Invalid(error)
    } else {
        TokenCheck::Unknown(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_401_or_udapi100050_invalidates_a_token() {
        let invalid = br#"{"status":"error","errors":[{"error_code":"UDAPI100050","message":"Invalid token used to access API"}]}"#;
        assert!(matches!(interpret(401, invalid), TokenCheck::Invalid(e) if e.code.as_deref() == Some("UDAPI100050")));
        assert!(matches!(interpret(400, invalid), TokenCheck::Invalid(_)));
        let limited = br#"{"status":"error","errors":[{"error_code":"UDAPI10005","message":"Too Many Request Sent"}]}"#;
        for (status, body) in [(429, &limited[..]), (503, b"<html>Service Unavailable</html>"), (500, b""), (403, b"x")]
        {
            assert!(matches!(interpret(status, body), TokenCheck::Unknown(_)), "HTTP {status}");
        }
        match interpret(429, limited) {
            TokenCheck::Unknown(reason) => assert!(reason.contains("UDAPI10005") && reason.contains("429"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_profile_is_read_leniently() {
        let body = br#"{"status":"success","data":{"email":"a@b.c","user_id":"AB1234","user_name":"A B","exchanges":["NSE"],"products":["D"],"poa":false}}"#;
        let TokenCheck::Valid(p) = interpret(200, body) else { panic!("valid") };
        assert_eq!((p.user_id.as_deref(), p.user_name.as_deref()), (Some("AB1234"), Some("A B")));
        assert_eq!(interpret(200, b"not json"), TokenCheck::Valid(Profile::default()));
    }
}
