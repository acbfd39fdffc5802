//! Upstox's v3 access-token request as a protocol [doc]: the request (`POST
//! {api_base_url}/v3/login/auth/token/request/{client_id}`, a JSON body `{"client_secret": …}`), its answer
//! (`authorization_expiry`, `notifier_url`, epoch-millisecond strings), the payload Upstox POSTs to the app's
//! notifier webhook once the account holder approves, and the profile (`GET /v2/user/profile`) that vouches for a
//! delivered token.
//!
//! Building and interpreting are pure (unit-tested); the two reqwest calls, `UpstoxApi::request_access_token` and
//! `UpstoxApi::profile`, are thin adapters on `oauth`'s client (redirects off, timeouts), defined at the end. Nothing here logs, and no error message repeats a value from a payload: the
//! webhook's body comes from the internet, unauthenticated.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::OAuthApp;
use crate::oauth::{TokenResponse, UpstoxApi, UpstoxError, interpret_error};
use crate::secret::AccessToken;

/// The request's JSON body (`{"client_secret": …}`). Upstox's Python sample sends a form body by mistake; this is
/// the documented JSON. No `Debug`: it holds the secret.
#[derive(Serialize)]
pub struct RequestBody<'a> {
    client_secret: &'a str,
}

/// The body of the access-token request for `app`.
pub fn request_body(app: &OAuthApp) -> RequestBody<'_> {
    RequestBody { client_secret: app.client_secret.expose() }
}

/// Upstox accepted the request: the account holder can now approve it until `authorization_expiry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestAccepted {
    /// When the pending request dies (Upstox: the next 03:30 IST) [doc].
    pub authorization_expiry: DateTime<Utc>,
    /// The app's notifier webhook as Upstox has it registered, when the answer says; `None` when it does not.
    pub notifier_url: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("Upstox refused the access-token request: {0}")]
    Refused(UpstoxError),
    /// The request may or may not have reached Upstox.
    #[error("the access-token request to `{url}` failed")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Upstox answered the access-token request with a body that is not its documented answer: {0}")]
    Malformed(String),
}

#[derive(Deserialize)]
struct Envelope<T> {
    status: String,
    data: Option<T>,
}

#[derive(Deserialize)]
struct RequestData {
    #[serde(deserialize_with = "de_epoch_ms")]
    authorization_expiry: DateTime<Utc>,
    #[serde(default)]
    notifier_url: Option<String>,
}

/// Interpret the request's answer: 200 with `{"status":"success","data":{"authorization_expiry":"<ms>",
/// "notifier_url":"…"}}`, or Upstox's error envelope in either spelling (`UDAPI100069`: bad client credentials).
pub fn interpret_request_response(http_status: u16, body: &[u8]) -> Result<RequestAccepted, RequestError> {
    if http_status != 200 {
        return Err(RequestError::Refused(interpret_error(http_status, body)));
    }
    let envelope: Envelope<RequestData> =
        serde_json::from_slice(body).map_err(|e| RequestError::Malformed(shape_error(&e)))?;
    match (envelope.status.as_str(), envelope.data) {
        ("success", Some(data)) => {
            Ok(RequestAccepted { authorization_expiry: data.authorization_expiry, notifier_url: data.notifier_url })
        }
        ("success", None) => Err(RequestError::Malformed("`data` is missing".into())),
        _ => Err(RequestError::Refused(interpret_error(http_status, body))),
    }
}

/// What Upstox POSTs to the notifier webhook when the account holder approves a request [doc]:
/// `{"client_id","user_id","access_token","token_type":"Bearer","expires_at":"<ms>","issued_at":"<ms>",
/// "message_type":"access_token"}`. Unsigned: nothing in it is trusted until the profile API vouches for the token.
pub struct Notification {
    pub client_id: String,
    pub user_id: String,
    pub access_token: AccessToken,
    /// When Upstox says the token dies, if it said.
    pub expires_at: Option<DateTime<Utc>>,
    /// When Upstox says it issued the token, if it said.
    pub issued_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for Notification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notification")
            .field("client_id", &self.client_id)
            .field("user_id", &self.user_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct RawNotification {
    client_id: String,
    user_id: String,
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default, deserialize_with = "de_opt_epoch_ms")]
    expires_at: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "de_opt_epoch_ms")]
    issued_at: Option<DateTime<Utc>>,
    message_type: String,
}

/// Why a webhook body is not an access-token notification. Messages never quote the body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationError {
    #[error("the body is not the notifier's JSON ({0})")]
    Shape(String),
    #[error("`message_type` is not \"access_token\"")]
    MessageType,
    #[error("`token_type` is not \"Bearer\"")]
    TokenType,
    #[error("`{0}` is not of the expected form")]
    Field(&'static str),
}

/// Parse a webhook body. The ids must look like Upstox's (so they can be logged safely); the token must be a
/// plausible bearer token (printable ASCII, no spaces, at most 4096 bytes).
pub fn parse_notification(body: &[u8]) -> Result<Notification, NotificationError> {
    let raw: RawNotification = serde_json::from_slice(body).map_err(|e| NotificationError::Shape(shape_error(&e)))?;
    if raw.message_type != "access_token" {
        return Err(NotificationError::MessageType);
    }
    if raw.token_type.as_deref().is_some_and(|t| !t.eq_ignore_ascii_case("bearer")) {
        return Err(NotificationError::TokenType);
    }
    let id_like = |s: &str, extra: &[u8], max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
    };
    if !id_like(&raw.client_id, b"-_", 64) {
        return Err(NotificationError::Field("client_id"));
    }
    if !id_like(&raw.user_id, b"", 32) {
        return Err(NotificationError::Field("user_id"));
    }
    if raw.access_token.is_empty()
        || raw.access_token.len() > 4096
        || !raw.access_token.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(NotificationError::Field("access_token"));
    }
    Ok(Notification {
        client_id: raw.client_id,
        user_id: raw.user_id,
        access_token: AccessToken::new(raw.access_token),
        expires_at: raw.expires_at,
        issued_at: raw.issued_at,
    })
}

/// The profile fields a token document needs (`GET /v2/user/profile`'s `data`; unknown fields ignored).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Profile {
    pub user_id: String,
    #[serde(default, deserialize_with = "de_null_string")]
    pub user_name: String,
    #[serde(default, deserialize_with = "de_null_string")]
    pub email: String,
    #[serde(default)]
    pub exchanges: Vec<String>,
    #[serde(default)]
    pub products: Vec<String>,
}

impl Profile {
    /// The token response a browser login would have had for this token: the profile's fields, no extended token
    /// (the v3 delivery carries none). An empty
    /// string field of the profile is `None`.
    pub fn into_token_response(self, access_token: AccessToken) -> TokenResponse {
        TokenResponse {
            account: crate::oauth::Profile {
                email: Some(self.email).filter(|v| !v.is_empty()),
                exchanges: Some(self.exchanges),
                products: Some(self.products),
                user_id: Some(self.user_id).filter(|v| !v.is_empty()),
                user_name: Some(self.user_name).filter(|v| !v.is_empty()),
            },
            access_token,
            extended_token: None,
        }
    }
}

/// The profile endpoint's verdict on a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileAnswer {
    /// 200 with a profile: the token is live and belongs to `Profile::user_id`.
    Valid(Profile),
    /// Upstox refused the token (401 `UDAPI100050`…), or answered 200 without a profile.
    Rejected(UpstoxError),
}

/// Interpret `GET /v2/user/profile`'s answer.
pub fn interpret_profile(http_status: u16, body: &[u8]) -> ProfileAnswer {
    if http_status != 200 {
        return ProfileAnswer::Rejected(interpret_error(http_status, body));
    }
    match serde_json::from_slice::<Envelope<Profile>>(body) {
        Ok(Envelope { status, data: Some(profile) }) if status == "success" => ProfileAnswer::Valid(profile),
        Ok(_) => ProfileAnswer::Rejected(interpret_error(http_status, body)),
        Err(e) => ProfileAnswer::Rejected(UpstoxError {
            http_status,
            code: None,
            message: format!("the profile is not of the documented shape ({})", shape_error(&e)),
        }),
    }
}

/// A serde_json error described by its kind and position only: its own message can quote the offending value.
fn shape_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let kind = match e.classify() {
        Category::Io => "unreadable",
        Category::Syntax => "not JSON",
        Category::Data => "a field is missing or of the wrong type",
        Category::Eof => "truncated",
    };
    format!("{kind} at line {} column {}", e.line(), e.column())
}

/// Epoch milliseconds, as Upstox sends them: a string of digits (or, leniently, a JSON number).
fn de_epoch_ms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let ms = match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(t) => t.trim().parse::<i64>().ok(),
        serde_json::Value::Number(n) => n.as_i64(),
        _ => None,
    };
    ms.and_then(DateTime::from_timestamp_millis).ok_or_else(|| serde::de::Error::custom("not epoch milliseconds"))
}

fn de_opt_epoch_ms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    de_epoch_ms(d).map(Some)
}

fn de_null_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// The two calls of this protocol, on `oauth`'s client: thin reqwest adapters around the pure functions above.
impl UpstoxApi {
    /// POST Upstox's v3 access-token request for `app` (JSON body, no auth header) [doc]. One call, one request: a
    /// transport error may still have created one at Upstox, so callers do not resend on their own.
    pub async fn request_access_token(&self, app: &OAuthApp) -> Result<RequestAccepted, RequestError> {
        let url = self.upstox_config().token_request_url(&app.client_id);
        let transport = |source| RequestError::Transport { url: url.to_string(), source };
        let response = self
            .http()
            .post(url.clone())
            .header("accept", "application/json")
            .json(&request_body(app))
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(transport)?;
        interpret_request_response(status, &body)
    }

    /// The profile behind `token` (`GET /v2/user/profile`): whose it is, or Upstox's refusal. Transport failures
    /// are errors, not verdicts.
    pub async fn profile(&self, token: &AccessToken) -> Result<ProfileAnswer, reqwest::Error> {
        let response = self.profile_request(token).send().await?;
        let status = response.status().as_u16();
        let body = response.bytes().await?;
        Ok(interpret_profile(status, &body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::ClientSecret;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    #[test]
    fn the_request_body_is_json_with_the_secret_only() {
        let app = OAuthApp {
            client_id: "cid".into(),
            client_secret: ClientSecret::new("s\"ec"),
            redirect_uri: crate::config::RedirectUri::parse("http://127.0.0.1:9/cb").unwrap(),
        };
        assert_eq!(serde_json::to_string(&request_body(&app)).unwrap(), r#"{"client_secret":"s\"ec"}"#);
    }

    #[test]
    fn the_documented_answer_is_parsed() {
        let body = br#"{"status":"success","data":{"authorization_expiry":"1764973800000","notifier_url":"https://example.com/upstox/notifier"}}"#;
        let accepted = interpret_request_response(200, body).unwrap();
        assert_eq!(accepted.authorization_expiry, at(1_764_973_800_000));
        assert_eq!(accepted.authorization_expiry.to_rfc3339(), "2025-12-05T22:30:00+00:00"); // 04:00 IST
        assert_eq!(accepted.notifier_url.as_deref(), Some("https://example.com/upstox/notifier"));
        let numeric = br#"{"status":"success","data":{"authorization_expiry":1764973800000}}"#;
        let accepted = interpret_request_response(200, numeric).unwrap();
        assert_eq!((accepted.authorization_expiry, accepted.notifier_url), (at(1_764_973_800_000), None));
    }

    #[test]
    fn refusals_in_both_spellings_and_odd_answers() {
        let camel = br#"{"status":"error","errors":[{"errorCode":"UDAPI100069","message":"Check your 'client_id' and 'client_secret'","propertyPath":null,"invalidValue":null}]}"#;
        let snake = br#"{"status":"error","errors":[{"error_code":"UDAPI100069","message":"Check your 'client_id' and 'client_secret'","property_path":null,"invalid_value":null}]}"#;
        for body in [&camel[..], &snake[..]] {
            match interpret_request_response(401, body) {
                Err(RequestError::Refused(e)) => {
                    assert_eq!(e.code.as_deref(), Some("UDAPI100069"));
                    assert!(e.is_permanent());
                }
                other => panic!("{other:?}"),
            }
        }
        // 200 carrying an error envelope is a refusal; 200 with nonsense is malformed, and says nothing of the body.
        assert!(matches!(interpret_request_response(200, snake), Err(RequestError::Refused(_))));
        let odd = br#"{"status":"success","data":{"authorization_expiry":"soon-ish-SECRET"}}"#;
        match interpret_request_response(200, odd) {
            Err(RequestError::Malformed(m)) => assert!(!m.contains("SECRET"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(interpret_request_response(200, br#"{"status":"success"}"#), Err(RequestError::Malformed(_))));
    }

    const PAYLOAD: &str = r#"{"client_id":"615b1297-d443","user_id":"AB1234","access_token":"eyJ.a.b",
        "token_type":"Bearer","expires_at":"1764973800000","issued_at":"1764906000000","message_type":"access_token"}"#;

    #[test]
    fn the_documented_notification_is_parsed_and_its_debug_hides_the_token() {
        let n = parse_notification(PAYLOAD.as_bytes()).unwrap();
        assert_eq!(
            (n.client_id.as_str(), n.user_id.as_str(), n.access_token.expose()),
            ("615b1297-d443", "AB1234", "eyJ.a.b")
        );
        assert_eq!((n.expires_at, n.issued_at), (Some(at(1_764_973_800_000)), Some(at(1_764_906_000_000))));
        assert!(!format!("{n:?}").contains("eyJ"));
    }

    #[test]
    fn hostile_notifications_are_refused_without_quoting_them() {
        let with = |from: &str, to: &str| parse_notification(PAYLOAD.replace(from, to).as_bytes()).map(|_| ());
        assert_eq!(
            with(r#""message_type":"access_token""#, r#""message_type":"order_update""#),
            Err(NotificationError::MessageType)
        );
        assert_eq!(with("Bearer", "Basic"), Err(NotificationError::TokenType));
        assert_eq!(with("AB1234", "AB 1234\\n"), Err(NotificationError::Field("user_id")));
        assert_eq!(with("615b1297-d443", "../../etc"), Err(NotificationError::Field("client_id")));
        assert_eq!(with("eyJ.a.b", "eyJ a"), Err(NotificationError::Field("access_token")));
        let huge = "x".repeat(5000);
        assert_eq!(with("eyJ.a.b", &huge), Err(NotificationError::Field("access_token")));
        for body in [&b"not json SECRET"[..], br#"{"client_id":"SECRET"}"#, br#"{"access_token":7}"#] {
            match parse_notification(body) {
                Err(e @ NotificationError::Shape(_)) => assert!(!e.to_string().contains("SECRET"), "{e}"),
                other => panic!("{:?}", other.map(|_| ())),
            }
        }
        let bad_time = with("1764973800000", "tomorrow");
        assert!(matches!(bad_time, Err(NotificationError::Shape(_))), "{bad_time:?}");
        // Optional fields may be absent; the message type may not.
        let minimal = r#"{"client_id":"c1","user_id":"U1","access_token":"t","message_type":"access_token"}"#;
        let n = parse_notification(minimal.as_bytes()).unwrap();
        assert_eq!((n.expires_at, n.issued_at), (None, None));
        assert!(matches!(
            parse_notification(br#"{"client_id":"c1","user_id":"U1","access_token":"t"}"#),
            Err(NotificationError::Shape(_))
        ));
    }

    #[test]
    fn the_profile_vouches_or_refuses() {
        let ok = br#"{"status":"success","data":{"email":"a@b.c","exchanges":["NSE"],"products":["D"],"broker":"UPSTOX",
            "user_id":"AB1234","user_name":null,"order_types":[],"user_type":"individual","poa":false,"ddpi":false,"is_active":true}}"#;
        let ProfileAnswer::Valid(p) = interpret_profile(200, ok) else { panic!("valid") };
        assert_eq!((p.user_id.as_str(), p.user_name.as_str(), p.email.as_str()), ("AB1234", "", "a@b.c"));
        let t = p.into_token_response(AccessToken::new("tok"));
        assert_eq!(
            (t.account.user_id.as_deref().unwrap_or_default(), t.access_token.expose(), t.extended_token.is_none()),
            ("AB1234", "tok", true)
        );
        let refused = br#"{"status":"error","errors":[{"error_code":"UDAPI100050","message":"Invalid token used to access API"}]}"#;
        match interpret_profile(401, refused) {
            ProfileAnswer::Rejected(e) => assert_eq!(e.code.as_deref(), Some("UDAPI100050")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(interpret_profile(200, b"<html>"), ProfileAnswer::Rejected(_)));
        assert!(matches!(interpret_profile(200, br#"{"status":"success","data":{}}"#), ProfileAnswer::Rejected(_)));
    }
}
