//! The simulator's OAuth and REST endpoints: the authorization dialog (which opens a login session), the token
//! exchange, profile and logout, the 404/405 answers, and the JSON error envelope every endpoint uses.
//!
//! Auth codes are consumed before anything else is checked, as Upstox does: a failed exchange burns the code. This
//! module never renders login pages (see `login.rs`) and never logs a code, secret or token.

use std::time::Instant;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use super::jwt::mint_jwt;
use super::{CODE_TTL, IssuedToken, LoginRecord, LoginSession, SharedState, SimUser, Step, random_alphanumeric};
use crate::token::expiry_for;

const EXCHANGES: [&str; 6] = ["NSE", "NFO", "BSE", "CDS", "BFO", "MCX"];
const PRODUCTS: [&str; 3] = ["D", "CO", "I"];
const ORDER_TYPES: [&str; 4] = ["MARKET", "LIMIT", "SL", "SL-M"];
/// Extended tokens live about a year.
const EXTENDED_TOKEN_DAYS: i64 = 365;

/// How the keys of one error object are spelled: `/token` errors are seen in camelCase, everything else snake_case.
#[derive(Clone, Copy, Debug)]
pub(super) enum KeyCase {
    Snake,
    Camel,
}

/// `{"status":"error","errors":[{"error_code":…,"message":…,"property_path":null,"invalid_value":null}]}`.
pub(super) fn envelope(status: StatusCode, code: &str, message: &str, case: KeyCase) -> Response {
    let error = match case {
        KeyCase::Snake => {
            json!({"error_code": code, "message": message, "property_path": null, "invalid_value": null})
        }
        KeyCase::Camel => {
            json!({"errorCode": code, "message": message, "propertyPath": null, "invalidValue": null})
        }
    };
    (status, Json(json!({"status": "error", "errors": [error]}))).into_response()
}

/// `{"status":"success","data":…}`.
pub(super) fn success(data: impl Serialize) -> Response {
    Json(json!({"status": "success", "data": data})).into_response()
}

/// Every way the API refuses a request. The `Display` text is the envelope's `message`.
#[derive(Debug, thiserror::Error)]
pub(super) enum ApiError {
    #[error("Check your 'client_id' and 'redirect_uri'; one or both are incorrect.")]
    ClientOrRedirect,
    #[error("Check your 'client_id' and 'client_secret'; one or both are incorrect.")]
    ClientCredentials,
    #[error("Invalid Auth code")]
    AuthCode,
    #[error("Invalid 'grant_type'; it must be 'authorization_code'.")]
    GrantType,
    #[error("Something went wrong. Please try again after some time.")]
    Internal,
    #[error("Invalid token used to access API")]
    Token,
    #[error("The requested resource was not found.")]
    NotFound,
    #[error("The request method is not supported for this resource.")]
    MethodNotAllowed,
    /// A v3 token request whose body is not JSON with a `client_secret`.
    #[error("Invalid request body; send JSON with 'client_secret'.")]
    RequestBody,
    /// `Faults::profile_429` [doc: UDAPI10005 too many requests].
    #[error("Too Many Request Sent")]
    TooManyRequests,
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::ClientOrRedirect | ApiError::AuthCode | ApiError::GrantType | ApiError::RequestBody => {
                StatusCode::BAD_REQUEST
            }
            ApiError::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ApiError::ClientCredentials | ApiError::Token => StatusCode::UNAUTHORIZED,
            ApiError::Internal => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// Upstox's code where it is known; the grant-type, 404, 405 and request-body codes are the simulator's own.
    fn code(&self) -> &'static str {
        match self {
            ApiError::ClientOrRedirect => "UDAPI100068",
            ApiError::ClientCredentials => "UDAPI100069",
            ApiError::AuthCode => "UDAPI100057",
            ApiError::GrantType => "UDAPI100036",
            ApiError::Internal => "UDAPI100500",
            ApiError::Token => "UDAPI100050",
            ApiError::NotFound => "UDAPI100404",
            ApiError::MethodNotAllowed => "UDAPI100405",
            ApiError::RequestBody => "UDAPI100038",
            ApiError::TooManyRequests => "UDAPI10005",
        }
    }

    pub(super) fn respond(&self, case: KeyCase) -> Response {
        envelope(self.status(), self.code(), &self.to_string(), case)
    }
}

/// First value of each key, like a lenient query/form parser.
fn first_values(raw: &str) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    out
}

/// `GET /v2/login/authorization/dialog`: check the client and redirect, open a login session, 302 to the login SPA.
pub(super) async fn dialog(State(sim): State<SharedState>, RawQuery(query): RawQuery) -> Response {
    let params = first_values(query.as_deref().unwrap_or(""));
    let get = |k: &str| params.get(k).map(String::as_str);
    let state_param = params.get("state").cloned();
    let mut state = sim.lock();
    if let Some(s) = &state_param {
        state.journal.states_seen.push(s.clone());
    }
    let client = sim.config.clients.iter().find(|c| Some(c.client_id.as_str()) == get("client_id"));
    let client = match client {
        Some(c) if get("response_type") == Some("code") && get("redirect_uri") == Some(c.redirect_uri.as_str()) => c,
        _ => return ApiError::ClientOrRedirect.respond(KeyCase::Snake),
    };
    if state.faults.dialog_udapi100068 {
        tracing::warn!("simulator refuses a correct client at the dialog");
        return ApiError::ClientOrRedirect.respond(KeyCase::Snake);
    }
    let session_id = random_alphanumeric(24);
    let now = Instant::now();
    state.journal.logins.push(LoginRecord {
        client_id: client.client_id.clone(),
        mobile: None,
        opened: now,
        last_seen: now,
        pin_submissions: 0,
        wrong_pins: 0,
        ended: None,
    });
    let record = state.journal.logins.len() - 1;
    state.sessions.insert(
        session_id.clone(),
        LoginSession {
            record,
            client_id: client.client_id.clone(),
            redirect_uri: client.redirect_uri.clone(),
            state: state_param,
            created: now,
            step: Step::Mobile,
        },
    );
    drop(state);
    tracing::info!(client_id = %client.client_id, "simulator opened a login session");
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("user_id", &session_id)
        .append_pair("client_id", &client.client_id)
        .append_pair("user_type", "individual")
        .finish();
    (StatusCode::FOUND, [(header::LOCATION, format!("/login?{query}"))]).into_response()
}

/// What Upstox says about an account, first in both the token body and the profile (same order in both).
#[derive(Serialize)]
struct AccountFacts<'a> {
    email: &'a str,
    exchanges: [&'static str; 6],
    products: [&'static str; 3],
    broker: &'static str,
    user_id: &'a str,
    /// `None` only under `Faults::token_null_user_name`.
    user_name: Option<&'a str>,
    order_types: [&'static str; 4],
    user_type: &'static str,
    poa: bool,
}

impl<'a> AccountFacts<'a> {
    fn of(user: &'a SimUser) -> Self {
        AccountFacts {
            email: &user.email,
            exchanges: EXCHANGES,
            products: PRODUCTS,
            broker: "UPSTOX",
            user_id: &user.user_id,
            user_name: Some(&user.user_name),
            order_types: ORDER_TYPES,
            user_type: "individual",
            poa: false,
        }
    }
}

/// The flat token success body: exactly these 12 fields, in Upstox's order.
#[derive(Serialize)]
struct TokenBody<'a> {
    #[serde(flatten)]
    facts: AccountFacts<'a>,
    is_active: bool,
    access_token: String,
    extended_token: String,
}

/// The profile's `data`: 11 fields.
#[derive(Serialize)]
struct ProfileData<'a> {
    #[serde(flatten)]
    facts: AccountFacts<'a>,
    ddpi: bool,
    is_active: bool,
}

/// `POST /v2/login/authorization/token` (form): burn the code, then check everything, then mint tokens.
pub(super) async fn token(State(sim): State<SharedState>, body: String) -> Response {
    let form = first_values(&body);
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let code = field("code");
    let mut state = sim.lock();
    state.journal.token_posts.push(code.to_owned());
    let issued = state.codes.remove(code);
    if state.progress.token_5xx_served < state.faults.token_5xx_first {
        state.progress.token_5xx_served += 1;
        return ApiError::Internal.respond(KeyCase::Camel);
    }
    if state.faults.token_403_html {
        return firewall_page();
    }
    if field("grant_type") != "authorization_code" {
        return ApiError::GrantType.respond(KeyCase::Camel);
    }
    let client_ok = sim
        .config
        .clients
        .iter()
        .any(|c| c.client_id == field("client_id") && c.client_secret == field("client_secret"));
    if !client_ok {
        return ApiError::ClientCredentials.respond(KeyCase::Camel);
    }
    let Some(issued) = issued.filter(|i| i.client_id == field("client_id") && i.issued.elapsed() <= CODE_TTL) else {
        return ApiError::AuthCode.respond(KeyCase::Camel);
    };
    if issued.redirect_uri != field("redirect_uri") {
        return ApiError::ClientOrRedirect.respond(KeyCase::Camel);
    }
    let user = &sim.config.users[issued.user];
    let now = Utc::now();
    let expires_at = expiry_for(now).with_timezone(&Utc);
    let access_token = mint_jwt(user, now, expires_at, false);
    let extended_token = mint_jwt(user, now, now + chrono::Duration::days(EXTENDED_TOKEN_DAYS), true);
    let profile_rejects = state.faults.profile_rejects_new_tokens;
    state
        .tokens
        .insert(access_token.clone(), IssuedToken { user: issued.user, expires_at, revoked: false, profile_rejects });
    state.journal.access_tokens_issued += 1;
    let mut facts = AccountFacts::of(user);
    if state.faults.token_null_user_name {
        facts.user_name = None;
    }
    drop(state);
    tracing::info!(user_id = %user.user_id, %expires_at, "simulator issued an access token");
    Json(TokenBody { facts, is_active: true, access_token, extended_token }).into_response()
}

/// The live (issued, unexpired, unrevoked) access token named by `Authorization: Bearer …`, as a map key.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// A web-application firewall's 403 page, the same bytes every time (`Faults::token_403_html`): what a token client
/// sees when something in front of the API refuses it [3p: Cloudflare fronts the API hosts].
const FIREWALL_HTML: &str = "<!DOCTYPE html>\n<html><head><title>403 Forbidden</title></head>\n<body>\n\
<h1>403 Forbidden</h1>\n<p>Request blocked by the web application firewall.</p>\n\
<p>Reference: 0.4f2d1b17.1767225600.2a9c31</p>\n</body></html>\n";

fn firewall_page() -> Response {
    let headers = [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")];
    (StatusCode::FORBIDDEN, headers, FIREWALL_HTML).into_response()
}

/// `GET /v2/user/profile`.
pub(super) async fn profile(State(sim): State<SharedState>, headers: HeaderMap) -> Response {
    let state = sim.lock();
    if state.faults.profile_429 {
        return ApiError::TooManyRequests.respond(KeyCase::Snake);
    }
    let live =
        bearer(&headers).and_then(|t| state.tokens.get(t)).filter(|t| is_live(t, Utc::now()) && !t.profile_rejects);
    let Some(token) = live else {
        return ApiError::Token.respond(KeyCase::Snake);
    };
    let user = &sim.config.users[token.user];
    success(ProfileData { facts: AccountFacts::of(user), ddpi: false, is_active: true })
}

/// `DELETE /v2/logout`: revoke the bearer token.
pub(super) async fn logout(State(sim): State<SharedState>, headers: HeaderMap) -> Response {
    let mut state = sim.lock();
    let live = bearer(&headers).and_then(|t| state.tokens.get_mut(t)).filter(|t| is_live(t, Utc::now()));
    let Some(token) = live else {
        return ApiError::Token.respond(KeyCase::Snake);
    };
    token.revoked = true;
    success(true)
}

fn is_live(token: &IssuedToken, now: DateTime<Utc>) -> bool {
    !token.revoked && now < token.expires_at
}

pub(super) async fn not_found(uri: Uri) -> Response {
    tracing::debug!(path = %uri.path(), "simulator: no such route");
    ApiError::NotFound.respond(KeyCase::Snake)
}

pub(super) async fn method_not_allowed() -> Response {
    ApiError::MethodNotAllowed.respond(KeyCase::Snake)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::Faults;
    use super::super::testing::{Harness, assert_error};
    use super::*;

    #[tokio::test]
    async fn dialog_redirects_to_the_login_app_with_a_session() {
        let h = Harness::start().await;
        let res = h.get(h.dialog_url(Some("st 1/é"))).await;
        assert_eq!(res.status(), StatusCode::FOUND);
        let location = res.headers()[header::LOCATION].to_str().unwrap().to_owned();
        let url = h.sim.base_url().join(&location).unwrap();
        assert_eq!(url.path(), "/login");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(pairs.len(), 3, "{location}");
        assert_eq!(pairs[0].0, "user_id");
        assert_eq!(pairs[0].1.len(), 24);
        assert_eq!(pairs[1], ("client_id".into(), h.client().client_id.clone()));
        assert_eq!(pairs[2], ("user_type".into(), "individual".into()));
        assert_eq!(h.sim.journal().states_seen, ["st 1/é"]);
    }

    #[tokio::test]
    async fn dialog_rejects_a_redirect_uri_that_is_not_exactly_the_registered_one() {
        let h = Harness::start().await;
        let redirect = format!("{}/", h.client().redirect_uri);
        let wrong = h.dialog_url_with(&[
            ("response_type", "code"),
            ("client_id", &h.client().client_id),
            ("redirect_uri", &redirect),
            ("state", "s"),
        ]);
        let res = h.get(wrong).await;
        assert_error(res, StatusCode::BAD_REQUEST, "UDAPI100068", KeyCase::Snake).await;

        let unknown_client = h.dialog_url_with(&[
            ("response_type", "code"),
            ("client_id", "nope"),
            ("redirect_uri", &h.client().redirect_uri),
        ]);
        assert_error(h.get(unknown_client).await, StatusCode::BAD_REQUEST, "UDAPI100068", KeyCase::Snake).await;

        let token_flow = h.dialog_url_with(&[
            ("response_type", "token"),
            ("client_id", &h.client().client_id),
            ("redirect_uri", &h.client().redirect_uri),
        ]);
        assert_error(h.get(token_flow).await, StatusCode::BAD_REQUEST, "UDAPI100068", KeyCase::Snake).await;
    }

    #[tokio::test]
    async fn token_exchange_answers_the_flat_twelve_field_body() {
        let h = Harness::start().await;
        let code = h.login(0).await;
        let before = Utc::now();
        let res = h.exchange(&code, &h.client().client_secret).await;
        let after = Utc::now();
        assert_eq!(res.status(), StatusCode::OK);
        let body: serde_json::Value = res.json().await.unwrap();
        let mut keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut expected = [
            "email",
            "exchanges",
            "products",
            "broker",
            "user_id",
            "user_name",
            "order_types",
            "user_type",
            "poa",
            "is_active",
            "access_token",
            "extended_token",
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(body["user_id"], h.user().user_id.as_str());
        assert_eq!(body["email"], h.user().email.as_str());
        assert_eq!(body["broker"], "UPSTOX");
        assert_eq!(body["exchanges"], json!(EXCHANGES));
        assert_eq!(body["products"], json!(PRODUCTS));
        assert_eq!(body["order_types"], json!(ORDER_TYPES));
        assert_eq!(
            (body["user_type"].as_str(), body["poa"].as_bool(), body["is_active"].as_bool()),
            (Some("individual"), Some(false), Some(true))
        );
        for key in ["access_token", "extended_token"] {
            let token = body[key].as_str().unwrap();
            assert!(token.starts_with("eyJ") && token.len() >= 100, "{key} has a JWT shape");
        }
        assert_ne!(body["access_token"], body["extended_token"]);
        let journal = h.sim.journal();
        assert_eq!(journal.token_posts, [code]);
        assert_eq!(journal.access_tokens_issued, 1);
        let expires_at = h.sim.shared.lock().tokens[body["access_token"].as_str().unwrap()].expires_at;
        let expected_expiry = [expiry_for(before), expiry_for(after)].map(|e| e.with_timezone(&Utc));
        assert!(expected_expiry.contains(&expires_at), "{expires_at}");
    }

    #[tokio::test]
    async fn a_code_works_once() {
        let h = Harness::start().await;
        let code = h.login(0).await;
        assert_eq!(h.exchange(&code, &h.client().client_secret).await.status(), StatusCode::OK);
        let again = h.exchange(&code, &h.client().client_secret).await;
        assert_error(again, StatusCode::BAD_REQUEST, "UDAPI100057", KeyCase::Camel).await;
        assert_eq!(h.sim.journal().token_posts, [code.clone(), code]);
        assert_eq!(h.sim.journal().access_tokens_issued, 1);
    }

    #[tokio::test]
    async fn a_failed_exchange_burns_the_code() {
        let h = Harness::start().await;
        let code = h.login(0).await;
        let wrong = h.exchange(&code, "not-the-secret").await;
        assert_error(wrong, StatusCode::UNAUTHORIZED, "UDAPI100069", KeyCase::Camel).await;
        let right = h.exchange(&code, &h.client().client_secret).await;
        assert_error(right, StatusCode::BAD_REQUEST, "UDAPI100057", KeyCase::Camel).await;
    }

    #[tokio::test]
    async fn token_5xx_fault_answers_503_and_still_burns_the_code() {
        let h = Harness::start_with(Faults { token_5xx_first: 1, ..Faults::default() }).await;
        let code = h.login(0).await;
        let first = h.exchange(&code, &h.client().client_secret).await;
        assert_error(first, StatusCode::SERVICE_UNAVAILABLE, "UDAPI100500", KeyCase::Camel).await;
        let retry = h.exchange(&code, &h.client().client_secret).await;
        assert_error(retry, StatusCode::BAD_REQUEST, "UDAPI100057", KeyCase::Camel).await;
        let fresh = h.login(1).await;
        assert_eq!(h.exchange(&fresh, &h.client().client_secret).await.status(), StatusCode::OK);
    }

    fn token_form<'a>(h: &'a Harness, code: &'a str) -> Vec<(&'static str, &'a str)> {
        let c = h.client();
        vec![
            ("code", code),
            ("client_id", &c.client_id),
            ("client_secret", &c.client_secret),
            ("redirect_uri", &c.redirect_uri),
            ("grant_type", "authorization_code"),
        ]
    }

    #[tokio::test]
    async fn token_rejects_a_redirect_uri_other_than_the_codes() {
        let h = Harness::start().await;
        let code = h.login(0).await;
        let mut form = token_form(&h, &code);
        form[3].1 = "http://127.0.0.1:9/other";
        assert_error(h.post_token(&form).await, StatusCode::BAD_REQUEST, "UDAPI100068", KeyCase::Camel).await;
        let again = h.exchange(&code, &h.client().client_secret).await;
        assert_error(again, StatusCode::BAD_REQUEST, "UDAPI100057", KeyCase::Camel).await;
    }

    #[tokio::test]
    async fn token_rejects_other_grant_types() {
        let h = Harness::start().await;
        let code = h.login(0).await;
        let mut form = token_form(&h, &code);
        form[4].1 = "client_credentials";
        assert_error(h.post_token(&form).await, StatusCode::BAD_REQUEST, "UDAPI100036", KeyCase::Camel).await;
    }

    #[tokio::test]
    async fn token_rejects_an_expired_or_unknown_code() {
        let h = Harness::start().await;
        let code = h.login(0).await;
        let backdated = Instant::now().checked_sub(CODE_TTL + Duration::from_secs(1)).unwrap();
        h.sim.shared.lock().codes.get_mut(&code).unwrap().issued = backdated;
        let expired = h.exchange(&code, &h.client().client_secret).await;
        assert_error(expired, StatusCode::BAD_REQUEST, "UDAPI100057", KeyCase::Camel).await;
        let unknown = h.exchange("AbC123", &h.client().client_secret).await;
        assert_error(unknown, StatusCode::BAD_REQUEST, "UDAPI100057", KeyCase::Camel).await;
        assert_eq!(h.sim.journal().token_posts, [code.as_str(), "AbC123"]);
    }

    #[tokio::test]
    async fn profile_accepts_the_issued_token_only() {
        let h = Harness::start().await;
        let token = h.access_token().await;
        let res = h.profile(Some(&token)).await;
        assert_eq!(res.status(), StatusCode::OK);
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["status"], "success");
        assert_eq!(body["data"].as_object().unwrap().len(), 11);
        assert_eq!(body["data"]["user_id"], h.user().user_id.as_str());
        assert_eq!(body["data"]["email"], h.user().email.as_str());
        assert_eq!(body["data"]["ddpi"], false);

        let forged = format!("{}x", token);
        assert_error(h.profile(Some(&forged)).await, StatusCode::UNAUTHORIZED, "UDAPI100050", KeyCase::Snake).await;
        assert_error(h.profile(None).await, StatusCode::UNAUTHORIZED, "UDAPI100050", KeyCase::Snake).await;

        h.sim.shared.lock().tokens.get_mut(&token).unwrap().expires_at = Utc::now() - chrono::Duration::seconds(1);
        assert_error(h.profile(Some(&token)).await, StatusCode::UNAUTHORIZED, "UDAPI100050", KeyCase::Snake).await;
    }

    #[tokio::test]
    async fn logout_revokes_the_token() {
        let h = Harness::start().await;
        let token = h.access_token().await;
        let res = h.logout(&token).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.json::<serde_json::Value>().await.unwrap(), json!({"status": "success", "data": true}));
        assert_error(h.profile(Some(&token)).await, StatusCode::UNAUTHORIZED, "UDAPI100050", KeyCase::Snake).await;
        assert_error(h.logout(&token).await, StatusCode::UNAUTHORIZED, "UDAPI100050", KeyCase::Snake).await;
    }

    #[tokio::test]
    async fn profile_429_refuses_even_a_valid_token() {
        let h = Harness::start().await;
        let token = h.access_token().await;
        h.sim.set_faults(Faults { profile_429: true, ..Faults::default() });
        assert_error(h.profile(Some(&token)).await, StatusCode::TOO_MANY_REQUESTS, "UDAPI10005", KeyCase::Snake).await;
        h.sim.set_faults(Faults::default());
        assert_eq!(h.profile(Some(&token)).await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn token_null_user_name_keeps_the_twelve_fields() {
        let h = Harness::start_with(Faults { token_null_user_name: true, ..Faults::default() }).await;
        let code = h.login(0).await;
        let body: serde_json::Value = h.exchange(&code, &h.client().client_secret).await.json().await.unwrap();
        assert_eq!(body.as_object().unwrap().len(), 12);
        assert!(body["user_name"].is_null(), "{body}");
        assert_eq!(h.profile(body["access_token"].as_str()).await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn token_403_html_is_the_same_page_every_time_and_spends_the_code() {
        let h = Harness::start_with(Faults { token_403_html: true, ..Faults::default() }).await;
        let code = h.login(0).await;
        let mut pages = Vec::new();
        for attempt in [code.clone(), h.login(1).await] {
            let res = h.exchange(&attempt, &h.client().client_secret).await;
            assert_eq!(res.status(), StatusCode::FORBIDDEN);
            assert!(res.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
            pages.push(res.text().await.unwrap());
        }
        assert_eq!(pages[0], pages[1]);
        assert!(pages[0].contains("403 Forbidden"));
        h.sim.set_faults(Faults::default());
        let again = h.exchange(&code, &h.client().client_secret).await;
        assert_error(again, StatusCode::BAD_REQUEST, "UDAPI100057", KeyCase::Camel).await;
        assert_eq!(h.sim.journal().access_tokens_issued, 0);
    }

    #[tokio::test]
    async fn profile_rejects_new_tokens_only_those_issued_under_the_fault() {
        let h = Harness::start().await;
        let old = h.access_token().await;
        h.sim.set_faults(Faults { profile_rejects_new_tokens: true, ..Faults::default() });
        let code = h.login(1).await;
        let res = h.exchange(&code, &h.client().client_secret).await;
        assert_eq!(res.status(), StatusCode::OK, "the exchange itself succeeds");
        let fresh = res.json::<serde_json::Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
        assert_error(h.profile(Some(&fresh)).await, StatusCode::UNAUTHORIZED, "UDAPI100050", KeyCase::Snake).await;
        assert_eq!(h.profile(Some(&old)).await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn unknown_routes_and_methods_answer_the_envelope() {
        let h = Harness::start().await;
        let res = h.get(h.sim.base_url().join("v2/nothing?x=1").unwrap()).await;
        assert_error(res, StatusCode::NOT_FOUND, "UDAPI100404", KeyCase::Snake).await;
        let res = h.http.post(h.sim.base_url().join("v2/user/profile").unwrap()).send().await.unwrap();
        assert_error(res, StatusCode::METHOD_NOT_ALLOWED, "UDAPI100405", KeyCase::Snake).await;
    }
}
