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
mod tests;
