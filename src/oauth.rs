//! The OAuth half of a login: the authorize URL with a fresh `state`, reading the `code` from the redirect, and the
//! one token exchange.
//!
//! Building the request and interpreting the response are pure functions (unit-tested); `UpstoxApi` is a thin
//! reqwest adapter with redirects off and timeouts. This module never drives a browser and never POSTs a code twice:
//! `exchange` takes the `AuthCode` by value.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::Deserialize;
use url::Url;

use crate::config::{OAuthApp, RedirectUri, UpstoxConfig};
pub use crate::profile::{Profile, TokenCheck};
use crate::secret::{AccessToken, AuthCode};

/// The `state` parameter: 192 random bits, hex. Generated per login, verified on the redirect.
#[derive(Clone, PartialEq, Eq)]
pub struct CsrfState(String);

impl CsrfState {
    pub fn random() -> Self {
        let mut bytes = [0u8; 24];
        rand::rng().fill_bytes(&mut bytes);
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for CsrfState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfState(..)")
    }
}

/// One authorization request: the dialog URL to open, with the fresh `state` it carries and the redirect URI the
/// answer must come back to. Built by the login layer, walked by a login method, checked on the way back.
#[derive(Debug)]
pub struct AuthorizationRequest {
    /// `authorize_url?response_type=code&client_id=…&redirect_uri=…&state=…`.
    pub url: Url,
    pub state: CsrfState,
    pub redirect_uri: RedirectUri,
}

impl AuthorizationRequest {
    /// A request for `app` at the dialog `authorize_base`, with a fresh random `state`.
    pub fn new(authorize_base: &Url, app: &OAuthApp) -> Self {
        let state = CsrfState::random();
        let url = authorize_url(authorize_base, &app.client_id, &app.redirect_uri, &state);
        Self { url, state, redirect_uri: app.redirect_uri.clone() }
    }

    /// Read the browser's current URL: see `parse_redirect`.
    pub fn read_redirect(&self, current: &str) -> Result<Option<AuthCode>, RedirectError> {
        parse_redirect(current, &self.redirect_uri, &self.state)
    }
}

/// `authorize_url?response_type=code&client_id=…&redirect_uri=…&state=…`; the redirect URI is the configured string
/// (percent-encoded as a query value, so Upstox decodes exactly those bytes).
pub fn authorize_url(base: &Url, client_id: &str, redirect_uri: &RedirectUri, state: &CsrfState) -> Url {
    let mut url = base.clone();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri.as_str())
        .append_pair("state", state.as_str());
    url
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RedirectError {
    #[error("the redirect carried a `state` that does not match the one sent; the code was not used")]
    StateMismatch,
    #[error("the redirect carried no `state`; the code was not used")]
    StateMissing,
    #[error("the redirect reached `redirect_uri` without a `code`")]
    CodeMissing,
    #[error("Upstox refused the authorization: {0}")]
    Denied(String),
}

/// Read the browser's current URL. `Ok(None)`: not at the redirect yet (keep polling). `Ok(Some(code))`: the
/// redirect arrived with a `code` and the expected `state`. The target is compared as a URL (scheme, host, port,
/// path after normalisation), not as a string: the address bar shows the browser's own spelling of it.
pub fn parse_redirect(
    current: &str,
    redirect_uri: &RedirectUri,
    expected: &CsrfState,
) -> Result<Option<AuthCode>, RedirectError> {
    let Ok(url) = Url::parse(current) else { return Ok(None) };
    let redirect_uri = redirect_uri.url();
    let same_target = url.scheme() == redirect_uri.scheme()
        && url.host_str() == redirect_uri.host_str()
        && url.port_or_known_default() == redirect_uri.port_or_known_default()
        && url.path() == redirect_uri.path();
    if !same_target {
        return Ok(None);
    }
    let (mut code, mut state, mut error) = (None, None, None);
    for (k, v) in url.query_pairs() {
        match &*k {
            "code" => code = Some(v.into_owned()),
            "state" => state = Some(v.into_owned()),
            "error" | "error_description" => error = Some(v.into_owned()),
            _ => {}
        }
    }
    if let Some(error) = error {
        return Err(RedirectError::Denied(error));
    }
    let Some(code) = code.filter(|c| !c.is_empty()) else {
        return Err(RedirectError::CodeMissing);
    };
    match state {
        None => Err(RedirectError::StateMissing),
        Some(s) if s == expected.as_str() => Ok(Some(AuthCode::new(code))),
        Some(_) => Err(RedirectError::StateMismatch),
    }
}

/// The form fields of the token request, in Upstox's documented order.
pub fn token_form(app: &OAuthApp, code: &AuthCode) -> [(&'static str, String); 5] {
    [
        ("code", code.expose().to_owned()),
        ("client_id", app.client_id.clone()),
        ("client_secret", app.client_secret.expose().to_owned()),
        ("redirect_uri", app.redirect_uri.as_str().to_owned()),
        ("grant_type", "authorization_code".to_owned()),
    ]
}

/// The flat success body of the token endpoint (12 fields [doc]; unknown ones ignored). Only `access_token` is
/// essential: every other field may be missing or `null` (observed: `"user_name": null`), since the profile call
/// that verifies a new token fills them in. A good token is never thrown away for a cosmetic field.
#[derive(Deserialize)]
pub struct TokenResponse {
    /// The account facts beside the token (`email`, `exchanges`, `products`, `user_id`, `user_name`): the same
    /// fields the profile answers.
    #[serde(flatten)]
    pub account: Profile,
    #[serde(deserialize_with = "de_token")]
    pub access_token: AccessToken,
    #[serde(default, deserialize_with = "de_opt_token")]
    pub extended_token: Option<AccessToken>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse").field("user_id", &self.account.user_id).finish_non_exhaustive()
    }
}

fn de_token<'de, D: serde::Deserializer<'de>>(d: D) -> Result<AccessToken, D::Error> {
    String::deserialize(d).map(AccessToken::new)
}

fn de_opt_token<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<AccessToken>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()).map(AccessToken::new))
}

/// One entry of Upstox's error envelope; both spellings seen in the wild are accepted.
#[derive(Debug, Deserialize)]
struct ApiErrorItem {
    #[serde(alias = "errorCode")]
    error_code: Option<String>,
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ApiErrorEnvelope {
    #[serde(default)]
    errors: Vec<ApiErrorItem>,
}

/// An error Upstox answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstoxError {
    pub http_status: u16,
    /// `UDAPI…`, when the body carried one.
    pub code: Option<String>,
    pub message: String,
}

impl std::fmt::Display for UpstoxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{code} (HTTP {}): {}", self.http_status, self.message),
            None => write!(f, "HTTP {}: {}", self.http_status, self.message),
        }
    }
}

impl UpstoxError {
    /// What a human should do about it, for the errors that no retry can fix.
    pub fn advice(&self) -> Option<&'static str> {
        if self.http_status == 403 && self.code.is_none() {
            // Not Upstox's JSON: a firewall or bot protection (Cloudflare fronts the API [3p]) answered with a page,
            // and will answer the same page to the next code.
            return Some(
                "a firewall or bot protection in front of Upstox refused the token request (HTTP 403 page): check this host's network and IP (proxy, VPN, blocklists); not retried",
            );
        }
        match self.code.as_deref()? {
            "UDAPI100069" | "UDAPI100016" => {
                Some("check `client_id` and the client secret against the Upstox developer console")
            }
            "UDAPI100068" => Some("`redirect_uri` must equal the app's registered redirect URL exactly"),
            "UDAPI100073" => Some("the app is inactive: reactivate it in the Upstox developer console"),
            _ => None,
        }
    }

    /// Errors that a new attempt cannot fix.
    pub fn is_permanent(&self) -> bool {
        self.advice().is_some()
    }
}

/// Parse an error body into `UpstoxError`, whatever its spelling; non-JSON bodies keep a short excerpt.
pub fn interpret_error(http_status: u16, body: &[u8]) -> UpstoxError {
    if let Ok(env) = serde_json::from_slice::<ApiErrorEnvelope>(body)
        && let Some(first) = env.errors.into_iter().next()
    {
        return UpstoxError {
            http_status,
            code: first.error_code,
            message: first.message.unwrap_or_else(|| "no message".into()),
        };
    }
    let text = String::from_utf8_lossy(body);
    if let Some(title) = html_title(&text) {
        return UpstoxError { http_status, code: None, message: format!("an HTML page titled \"{title}\"") };
    }
    let excerpt: String = text.chars().take(200).collect();
    UpstoxError { http_status, code: None, message: if excerpt.is_empty() { "empty body".into() } else { excerpt } }
}

/// The `<title>` of an HTML page (a firewall's block page), trimmed to one short line.
fn html_title(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let start = lower.find("<title")?;
    let open_end = start + lower[start..].find('>')? + 1;
    let close = open_end + lower[open_end..].find("</title")?;
    let title: String = text[open_end..close].split_whitespace().collect::<Vec<_>>().join(" ");
    Some(title.chars().take(120).collect())
}

#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("the token endpoint refused the code: {0}")]
    Refused(UpstoxError),
    /// The request may or may not have reached Upstox: the code must be treated as spent.
    #[error("the token request to `{url}` failed; the code is spent")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the token endpoint answered 200 with a body that is not a token response: {0}")]
    Malformed(String),
}

/// Interpret the token endpoint's answer.
pub fn interpret_token_response(http_status: u16, body: &[u8]) -> Result<TokenResponse, ExchangeError> {
    if http_status != 200 {
        return Err(ExchangeError::Refused(interpret_error(http_status, body)));
    }
    serde_json::from_slice::<TokenResponse>(body).map_err(|e| ExchangeError::Malformed(e.to_string()))
}

/// How far the local clock is ahead of the server's (negative: behind), from a response's `Date` header and the
/// local times the request was sent and its answer received. `Date` carries whole seconds (the server's clock was
/// somewhere in `[date, date + 1 s)`), so its middle is compared with the middle of the round trip. `None` when the
/// header is not an HTTP date.
pub fn clock_skew(date_header: &str, sent: DateTime<Utc>, received: DateTime<Utc>) -> Option<chrono::Duration> {
    let server = DateTime::parse_from_rfc2822(date_header.trim()).ok()?.with_timezone(&Utc);
    let server_mid = server + chrono::Duration::milliseconds(500);
    let local_mid = sent + (received - sent) / 2;
    Some(local_mid - server_mid)
}

/// The thin reqwest adapter for the API calls a login makes.
#[derive(Clone)]
pub struct UpstoxApi {
    http: reqwest::Client,
    base_url: Url,
    token_url: Url,
    profile_url: Url,
    config: UpstoxConfig,
}

impl UpstoxApi {
    pub fn new(config: &UpstoxConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.http_timeout)
            .connect_timeout(Duration::from_secs(10).min(config.http_timeout))
            .user_agent(concat!("upstox-relogin/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base_url: config.api_base_url.clone(),
            token_url: config.token_url(),
            profile_url: config.profile_url(),
            config: config.clone(),
        })
    }

    /// POST the code. Consumes it: whatever happens, it is never sent again.
    pub async fn exchange(&self, app: &OAuthApp, code: AuthCode) -> Result<TokenResponse, ExchangeError> {
        let transport = |source| ExchangeError::Transport { url: self.token_url.to_string(), source };
        let response = self
            .http
            .post(self.token_url.clone())
            .header("accept", "application/json")
            .header("Api-Version", "2.0")
            .form(&token_form(app, &code))
            .send()
            .await
            .map_err(transport)?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(transport)?;
        interpret_token_response(status, &body)
    }

    /// The local clock's offset from the API server's, from the `Date` header of a `HEAD` on the API base URL (any
    /// status will do). `Ok(None)`: the answer had no usable `Date`.
    pub async fn clock_skew(&self) -> Result<Option<chrono::Duration>, reqwest::Error> {
        let sent = Utc::now();
        let response = self.http.head(self.base_url.clone()).send().await?;
        let received = Utc::now();
        let date = response.headers().get(reqwest::header::DATE).and_then(|v| v.to_str().ok());
        Ok(date.and_then(|d| clock_skew(d, sent, received)))
    }

    /// The HTTP client (redirects off, timeouts), for the thin adapters of other protocol modules.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The API's settings (base URL, timeouts).
    pub(crate) fn upstox_config(&self) -> &UpstoxConfig {
        &self.config
    }

    /// `GET /v2/user/profile` with `token` as the bearer (a sensitive header: never logged).
    pub(crate) fn profile_request(&self, token: &AccessToken) -> reqwest::RequestBuilder {
        let mut auth = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static("Bearer invalid"));
        auth.set_sensitive(true);
        self.http
            .get(self.profile_url.clone())
            .header("accept", "application/json")
            .header("Api-Version", "2.0")
            .header(reqwest::header::AUTHORIZATION, auth)
    }

    /// Ask the profile endpoint whether `token` is accepted. Transport failures are no verdict
    /// (`TokenCheck::Unknown`).
    pub async fn check_token(&self, token: &AccessToken) -> TokenCheck {
        match self.profile_status(token).await {
            Ok((status, body)) => crate::profile::interpret(status, &body),
            Err(e) => TokenCheck::Unknown(crate::error::error_chain(&e)),
        }
    }

    /// The profile endpoint's status and body for `token` (the request of `profile_request`).
    async fn profile_status(&self, token: &AccessToken) -> Result<(u16, Vec<u8>), reqwest::Error> {
        let response = self.profile_request(token).send().await?;
        let status = response.status().as_u16();
        Ok((status, response.bytes().await?.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect() -> RedirectUri {
        RedirectUri::parse("http://127.0.0.1:5000/upstox/callback").unwrap()
    }

    #[test]
    fn state_is_random_and_long() {
        let (a, b) = (CsrfState::random(), CsrfState::random());
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 48); // 192 bits of hex
    }

    #[test]
    fn authorize_url_encodes_every_parameter() {
        let state = CsrfState("abc".into());
        let url = authorize_url(
            &Url::parse("https://api.upstox.com/v2/login/authorization/dialog").unwrap(),
            "615b-d443",
            &RedirectUri::parse("http://127.0.0.1:5000/upstox/callback?x=1&y=2").unwrap(),
            &state,
        );
        assert_eq!(
            url.as_str(),
            "https://api.upstox.com/v2/login/authorization/dialog?response_type=code&client_id=615b-d443\
             &redirect_uri=http%3A%2F%2F127.0.0.1%3A5000%2Fupstox%2Fcallback%3Fx%3D1%26y%3D2&state=abc"
        );
    }

    #[test]
    fn the_configured_redirect_uri_is_sent_byte_for_byte() {
        let state = CsrfState("abc".into());
        let base = Url::parse("https://api.upstox.com/v2/login/authorization/dialog").unwrap();
        for configured in ["http://127.0.0.1:9", "HTTP://LocalHost:5000/a/../cb", "https://example.com:443/cb?x=%2F"] {
            let redirect = RedirectUri::parse(configured).unwrap();
            let url = authorize_url(&base, "cid", &redirect, &state);
            let sent = url.query_pairs().find(|(k, _)| k == "redirect_uri").unwrap().1.into_owned();
            assert_eq!(sent, configured, "the dialog's query");
            let app = OAuthApp {
                client_id: "cid".into(),
                client_secret: crate::secret::ClientSecret::new("s"),
                redirect_uri: redirect,
            };
            let form = token_form(&app, &AuthCode::new("c"));
            assert_eq!(form[3], ("redirect_uri", configured.to_owned()), "the token form");
        }
    }

    #[test]
    fn the_redirect_is_recognised_in_the_browsers_spelling() {
        let state = CsrfState("s1".into());
        let bare = RedirectUri::parse("http://127.0.0.1:9").unwrap();
        let code = parse_redirect("http://127.0.0.1:9/?code=Ab&state=s1", &bare, &state).unwrap().unwrap();
        assert_eq!(code.expose(), "Ab");
        let odd = RedirectUri::parse("HTTP://LocalHost:80/a/../cb").unwrap();
        assert!(parse_redirect("http://localhost/cb?code=Ab&state=s1", &odd, &state).unwrap().is_some());
    }

    #[test]
    fn redirect_with_code_and_state_yields_only_the_code() {
        let state = CsrfState("s1".into());
        let code = parse_redirect("http://127.0.0.1:5000/upstox/callback?code=Ab12Cd&state=s1", &redirect(), &state)
            .unwrap()
            .unwrap();
        assert_eq!(code.expose(), "Ab12Cd"); // not "Ab12Cd&state=s1"
    }

    #[test]
    fn other_urls_mean_keep_waiting() {
        let state = CsrfState("s1".into());
        for url in [
            "http://127.0.0.1:8000/login/pin?user_id=x",
            "chrome-error://chromewebdata/",
            "about:blank",
            "http://127.0.0.1:5000/upstox/callbackX?code=1&state=s1",
            "http://127.0.0.1:5001/upstox/callback?code=1&state=s1",
        ] {
            assert!(matches!(parse_redirect(url, &redirect(), &state), Ok(None)), "{url}");
        }
    }

    #[test]
    fn tampered_or_missing_state_is_refused() {
        let state = CsrfState("s1".into());
        let r = |u: &str| parse_redirect(u, &redirect(), &state).map(|c| c.map(|c| c.expose().to_owned()));
        assert_eq!(r("http://127.0.0.1:5000/upstox/callback?code=c&state=s2"), Err(RedirectError::StateMismatch));
        assert_eq!(r("http://127.0.0.1:5000/upstox/callback?code=c"), Err(RedirectError::StateMissing));
        assert_eq!(r("http://127.0.0.1:5000/upstox/callback?state=s1"), Err(RedirectError::CodeMissing));
        assert_eq!(
            r("http://127.0.0.1:5000/upstox/callback?error=access_denied&state=s1"),
            Err(RedirectError::Denied("access_denied".into()))
        );
    }

    #[test]
    fn error_envelope_in_both_spellings() {
        let snake = br#"{"status":"error","errors":[{"error_code":"UDAPI100057","message":"Invalid Auth code","property_path":null,"invalid_value":null}]}"#;
        let camel = br#"{"status":"error","errors":[{"errorCode":"UDAPI100069","message":"Check your client credentials","propertyPath":null,"invalidValue":null}]}"#;
        let e = interpret_error(400, snake);
        assert_eq!((e.code.as_deref(), e.message.as_str()), (Some("UDAPI100057"), "Invalid Auth code"));
        let e = interpret_error(401, camel);
        assert_eq!(e.code.as_deref(), Some("UDAPI100069"));
        assert!(e.is_permanent());
        assert!(!interpret_error(400, snake).is_permanent());
    }

    #[test]
    fn non_json_error_body_keeps_an_excerpt() {
        let e = interpret_error(502, b"<html>Bad gateway</html>");
        assert_eq!((e.code, e.message.as_str()), (None, "<html>Bad gateway</html>"));
    }

    #[test]
    fn token_response_is_flat_with_twelve_fields() {
        let body = br#"{"email":"a@b.c","exchanges":["NSE"],"products":["D"],"broker":"UPSTOX","user_id":"AB1234",
            "user_name":"A B","order_types":["MARKET"],"user_type":"individual","poa":false,"is_active":true,
            "access_token":"eyJ.acc","extended_token":"eyJ.ext"}"#;
        let t = interpret_token_response(200, body).unwrap();
        assert_eq!((t.account.user_id.as_deref(), t.access_token.expose()), (Some("AB1234"), "eyJ.acc"));
        assert_eq!(t.extended_token.unwrap().expose(), "eyJ.ext");
        assert!(!format!("{:?}", interpret_token_response(200, body).unwrap()).contains("eyJ"));
    }

    #[test]
    fn clock_skew_compares_round_trip_middles() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let date = "Sat, 28 Nov 2026 08:30:05 GMT";
        // Sent at :05.2, answered at :05.8: the server said :05 (so :05.5 on average): no skew.
        let skew = clock_skew(date, at("2026-11-28T08:30:05.2Z"), at("2026-11-28T08:30:05.8Z")).unwrap();
        assert_eq!(skew, chrono::Duration::zero());
        // The local clock reads 3 s later than the server's.
        let skew = clock_skew(date, at("2026-11-28T08:30:08.4Z"), at("2026-11-28T08:30:08.6Z")).unwrap();
        assert_eq!(skew, chrono::Duration::seconds(3));
        // Behind, and across a day in another offset.
        let skew = clock_skew(date, at("2026-11-28T14:00:00.5+05:30"), at("2026-11-28T14:00:00.5+05:30")).unwrap();
        assert_eq!(skew, chrono::Duration::seconds(-5));
        assert_eq!(clock_skew("yesterday", at("2026-11-28T08:30:05Z"), at("2026-11-28T08:30:05Z")), None);
    }

    #[test]
    fn token_response_needs_only_the_access_token() {
        let body =
            br#"{"email":"a@b.c","user_id":"AB1234","user_name":null,"exchanges":null,"access_token":"eyJ.acc"}"#;
        let t = interpret_token_response(200, body).unwrap();
        assert_eq!((t.account.user_name, t.account.exchanges, t.account.email.as_deref()), (None, None, Some("a@b.c")));
        assert!(t.extended_token.is_none());
        assert!(matches!(interpret_token_response(200, br#"{"user_id":"AB1234"}"#), Err(ExchangeError::Malformed(_))));
    }

    #[test]
    fn a_403_html_page_is_permanent_and_named_by_its_title() {
        let page = b"<!DOCTYPE html><html><head><title>Attention Required! | Cloudflare</title></head><body>blocked</body></html>";
        let e = interpret_error(403, page);
        assert_eq!(e.message, "an HTML page titled \"Attention Required! | Cloudflare\"");
        assert!(e.is_permanent(), "{e}");
        assert!(!interpret_error(503, page).is_permanent());
    }

    #[test]
    fn token_refusal_carries_code() {
        let body = br#"{"status":"error","errors":[{"errorCode":"UDAPI100057","message":"Invalid Auth code"}]}"#;
        match interpret_token_response(400, body) {
            Err(ExchangeError::Refused(e)) => assert_eq!(e.code.as_deref(), Some("UDAPI100057")),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(interpret_token_response(200, b"{}"), Err(ExchangeError::Malformed(_))));
    }
}
