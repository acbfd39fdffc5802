//! The v3 access-token request [doc]: an app asks for a token without a browser, the user approves in the Upstox
//! app, and Upstox POSTs the token to the app's notifier webhook.
//!
//! `POST /v3/login/auth/token/request/{client_id}` with JSON `{"client_secret": …}` opens a pending request (one per
//! client; a new one replaces it) that dies at the next 03:30 IST. Approval stands in for the user's tap:
//! `POST /sim/approve/{client_id}`, `Simulator::approve_token_request`, or `Faults::approve_after_ms`. On approval
//! the simulator mints a live token (the profile API accepts it) and POSTs, unsigned,
//! `{"client_id","user_id","access_token","token_type":"Bearer","expires_at","issued_at","message_type":"access_token"}`
//! (epoch-ms strings) to the client's notifier URL, recording every delivery and the webhook's status in the journal.
//! This module never logs a secret or token and never retries a delivery on its own.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::api::{ApiError, KeyCase, envelope, success};
use super::jwt::mint_jwt;
use super::{Delivery, IssuedToken, Shared, SharedState, TokenRequestSeen, random_hex};
use crate::token::expiry_for;

/// How long one webhook POST may take before it counts as unanswered.
pub(super) const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// A request waiting for the user's approval.
#[derive(Debug)]
pub(super) struct PendingRequest {
    /// The next 03:30 IST after the request [doc]: approving later finds nothing.
    pub(super) expires_at: DateTime<Utc>,
}

/// Why an approval delivered nothing.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApprovalError {
    #[error("no registered client `{0}`")]
    UnknownClient(String),
    #[error("no pending token request for this client")]
    NothingPending,
    #[error("the pending token request expired at 03:30 IST")]
    Expired,
    #[error("the user never approves (`Faults::never_approve`)")]
    Withheld,
    #[error("the client has no notifier webhook URL")]
    NoNotifierUrl,
    #[error("the simulator has no user to own this client")]
    NoOwner,
}

impl IntoResponse for ApprovalError {
    fn into_response(self) -> Response {
        // The simulator's own endpoint, so its own codes.
        let (status, code) = match &self {
            ApprovalError::UnknownClient(_) => (StatusCode::NOT_FOUND, "SIM_UNKNOWN_CLIENT"),
            ApprovalError::NothingPending => (StatusCode::CONFLICT, "SIM_NOTHING_PENDING"),
            ApprovalError::Expired => (StatusCode::CONFLICT, "SIM_REQUEST_EXPIRED"),
            ApprovalError::Withheld => (StatusCode::CONFLICT, "SIM_APPROVAL_WITHHELD"),
            ApprovalError::NoNotifierUrl => (StatusCode::CONFLICT, "SIM_NO_NOTIFIER_URL"),
            ApprovalError::NoOwner => (StatusCode::CONFLICT, "SIM_NO_OWNER"),
        };
        envelope(status, code, &self.to_string(), KeyCase::Snake)
    }
}

#[derive(Deserialize)]
struct RequestBody {
    client_secret: String,
}

/// `POST /v3/login/auth/token/request/{client_id}`.
pub(super) async fn request(
    State(sim): State<SharedState>,
    Path(client_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/json"));
    let secret = is_json.then(|| serde_json::from_slice::<RequestBody>(&body).ok()).flatten().map(|b| b.client_secret);
    let client = sim.config.clients.iter().position(|c| c.client_id == client_id);
    let mut state = sim.lock();
    let seen = |accepted| TokenRequestSeen { client_id: client_id.clone(), accepted };
    let Some(secret) = secret else {
        // The docs' own Python sample sends a form body by mistake [doc]: it does not work.
        state.journal.token_requests.push(seen(false));
        return ApiError::RequestBody.respond(KeyCase::Snake);
    };
    let Some(client) = client.filter(|&k| sim.config.clients[k].client_secret == secret) else {
        state.journal.token_requests.push(seen(false));
        return ApiError::ClientCredentials.respond(KeyCase::Snake);
    };
    state.journal.token_requests.push(seen(true));
    let expires_at = expiry_for(Utc::now()).with_timezone(&Utc);
    state.pending.insert(client, PendingRequest { expires_at });
    let notifier_url = state.notifier_urls[client].clone();
    let auto = state.faults.approve_after_ms.filter(|_| !state.faults.never_approve);
    drop(state);
    tracing::info!(%client_id, %expires_at, "simulator received a v3 access-token request");
    if let Some(ms) = auto {
        let sim = sim.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = sim.cancel.cancelled() => {}
                () = tokio::time::sleep(Duration::from_millis(ms)) => {
                    if let Err(error) = approve(&sim, client).await {
                        tracing::info!(%error, "simulator's automatic approval delivered nothing");
                    }
                }
            }
        });
    }
    success(json!({
        "authorization_expiry": expires_at.timestamp_millis().to_string(),
        "notifier_url": notifier_url,
    }))
}

/// `POST /sim/approve/{client_id}`: the user approves; answers the webhook's status per delivery.
pub(super) async fn approve_endpoint(State(sim): State<SharedState>, Path(client_id): Path<String>) -> Response {
    let Some(client) = sim.config.clients.iter().position(|c| c.client_id == client_id) else {
        return ApprovalError::UnknownClient(client_id).into_response();
    };
    match approve(&sim, client).await {
        Ok(statuses) => {
            success(json!({"deliveries": statuses.iter().map(|s| json!({"status": s})).collect::<Vec<_>>()}))
        }
        Err(error) => error.into_response(),
    }
}

/// Approve client `client`'s pending request: mint the token, POST it (twice under `Faults::approve_twice`), and
/// return each POST's HTTP status (`None`: no answer).
pub(super) async fn approve(sim: &Shared, client: usize) -> Result<Vec<Option<u16>>, ApprovalError> {
    let (url, body, times, delivery) = {
        let mut state = sim.lock();
        if state.faults.never_approve {
            return Err(ApprovalError::Withheld);
        }
        let pending = state.pending.get(&client).ok_or(ApprovalError::NothingPending)?;
        let now = Utc::now();
        if now >= pending.expires_at {
            state.pending.remove(&client);
            return Err(ApprovalError::Expired);
        }
        let url = state.notifier_urls[client].clone().ok_or(ApprovalError::NoNotifierUrl)?;
        let owner = sim.config.owner_of(client).ok_or(ApprovalError::NoOwner)?;
        state.pending.remove(&client);
        let user = &sim.config.users[owner];
        let expires_at = expiry_for(now).with_timezone(&Utc);
        let access_token = mint_jwt(user, now, expires_at, false);
        if !state.faults.notify_rejected_token {
            let token = IssuedToken { user: owner, expires_at, revoked: false, profile_rejects: false };
            state.tokens.insert(access_token.clone(), token);
        }
        let client_id = if state.faults.notify_unknown_client {
            format!("{}-{}-{}-{}-{}", random_hex(8), random_hex(4), random_hex(4), random_hex(4), random_hex(12))
        } else {
            sim.config.clients[client].client_id.clone()
        };
        let body = json!({
            "client_id": client_id,
            "user_id": user.user_id,
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_at": expires_at.timestamp_millis().to_string(),
            "issued_at": now.timestamp_millis().to_string(),
            "message_type": "access_token",
        });
        let delivery = Delivery { client_id, user_id: user.user_id.clone(), url: url.clone(), status: None };
        (url, body, if state.faults.approve_twice { 2 } else { 1 }, delivery)
    };
    let mut statuses = Vec::with_capacity(times);
    for _ in 0..times {
        let sent = sim.http.post(&url).timeout(DELIVERY_TIMEOUT).json(&body).send().await;
        let status = sent.ok().map(|res| res.status().as_u16());
        tracing::info!(?status, "simulator delivered an access token to the notifier webhook");
        sim.lock().journal.deliveries.push(Delivery { status, ..delivery.clone() });
        statuses.push(status);
    }
    Ok(statuses)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::super::Faults;
    use super::super::testing::{Harness, Webhook, assert_error};
    use super::*;

    /// A simulator whose client 0 notifies a fresh webhook answering `status`.
    async fn with_webhook(faults: Faults, status: StatusCode) -> (Harness, Webhook) {
        let h = Harness::start_with(faults).await;
        let hook = Webhook::start(status).await;
        assert!(h.sim.set_notifier_url(&h.client().client_id, Some(&hook.url)));
        (h, hook)
    }

    async fn accepted(h: &Harness) -> Value {
        let res = h.token_request(&h.client().client_id, &h.client().client_secret).await;
        assert_eq!(res.status(), StatusCode::OK);
        res.json().await.unwrap()
    }

    #[tokio::test]
    async fn a_json_request_is_accepted_until_0330_ist_and_anything_else_refused() {
        let (h, hook) = with_webhook(Faults::default(), StatusCode::OK).await;
        let (id, secret) = (h.client().client_id.clone(), h.client().client_secret.clone());
        let url = h.url(&format!("v3/login/auth/token/request/{id}"));
        let form = h.http.post(url).form(&[("client_secret", secret.as_str())]).send().await.unwrap();
        assert_error(form, StatusCode::BAD_REQUEST, "UDAPI100038", KeyCase::Snake).await;
        let wrong = h.token_request(&id, "not-the-secret").await;
        assert_error(wrong, StatusCode::UNAUTHORIZED, "UDAPI100069", KeyCase::Snake).await;
        let unknown = h.token_request("nope", &secret).await;
        assert_error(unknown, StatusCode::UNAUTHORIZED, "UDAPI100069", KeyCase::Snake).await;

        let before = Utc::now();
        let body = accepted(&h).await;
        let after = Utc::now();
        assert_eq!(body["status"], "success");
        assert_eq!(body["data"].as_object().unwrap().len(), 2, "{body}");
        assert_eq!(body["data"]["notifier_url"], hook.url.as_str());
        let expiry: i64 = body["data"]["authorization_expiry"].as_str().unwrap().parse().unwrap();
        let expected = [expiry_for(before), expiry_for(after)].map(|e| e.timestamp_millis());
        assert!(expected.contains(&expiry), "{expiry}");
        let seen: Vec<bool> = h.sim.journal().token_requests.iter().map(|r| r.accepted).collect();
        assert_eq!(seen, [false, false, false, true]);
        assert!(hook.received().is_empty(), "nothing is delivered before approval");
    }

    #[tokio::test]
    async fn approval_posts_a_live_token_to_the_notifier_webhook() {
        let (h, hook) = with_webhook(Faults::default(), StatusCode::OK).await;
        assert_eq!(h.approve(&h.client().client_id).await.status(), StatusCode::CONFLICT, "nothing pending yet");
        accepted(&h).await;
        let res = h.approve(&h.client().client_id).await;
        assert_eq!(res.status(), StatusCode::OK);
        let answer: Value = res.json().await.unwrap();
        assert_eq!(answer["data"]["deliveries"], serde_json::json!([{"status": 200}]));

        let bodies = hook.wait_for(1).await;
        let delivered = bodies[0].as_object().unwrap();
        let mut keys: Vec<&str> = delivered.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let expected_keys =
            ["access_token", "client_id", "expires_at", "issued_at", "message_type", "token_type", "user_id"];
        assert_eq!(keys, expected_keys);
        assert_eq!(delivered["client_id"], h.client().client_id.as_str());
        assert_eq!(delivered["user_id"], h.user().user_id.as_str());
        assert_eq!(
            (delivered["token_type"].as_str(), delivered["message_type"].as_str()),
            (Some("Bearer"), Some("access_token"))
        );
        let ms = |key: &str| delivered[key].as_str().unwrap().parse::<i64>().unwrap();
        let issued = DateTime::from_timestamp_millis(ms("issued_at")).unwrap();
        assert_eq!(ms("expires_at"), expiry_for(issued).timestamp_millis());

        let token = delivered["access_token"].as_str().unwrap();
        let profile = h.profile(Some(token)).await;
        assert_eq!(profile.status(), StatusCode::OK);
        assert_eq!(profile.json::<Value>().await.unwrap()["data"]["user_id"], h.user().user_id.as_str());
        assert_eq!(h.logout(token).await.status(), StatusCode::OK);
        assert_error(h.profile(Some(token)).await, StatusCode::UNAUTHORIZED, "UDAPI100050", KeyCase::Snake).await;

        let journal = h.sim.journal();
        assert_eq!(journal.deliveries.len(), 1);
        assert_eq!(journal.deliveries[0].status, Some(200));
        assert_eq!(journal.deliveries[0].url, hook.url);
        assert_eq!(journal.access_tokens_issued, 0, "no exchange happened");
        let again = h.approve(&h.client().client_id).await;
        assert_error(again, StatusCode::CONFLICT, "SIM_NOTHING_PENDING", KeyCase::Snake).await;
    }

    #[tokio::test]
    async fn approve_after_ms_approves_by_itself_and_records_the_webhooks_status() {
        let faults = Faults { approve_after_ms: Some(50), ..Faults::default() };
        let (h, hook) = with_webhook(faults, StatusCode::INTERNAL_SERVER_ERROR).await;
        accepted(&h).await;
        assert_eq!(hook.wait_for(1).await.len(), 1);
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(5));
        while h.sim.journal().deliveries.is_empty() {
            tick.tick().await;
        }
        assert_eq!(h.sim.journal().deliveries[0].status, Some(500), "a failing webhook is recorded, not retried");
    }

    #[tokio::test]
    async fn delivery_faults_twice_unknown_client_rejected_token() {
        let faults = Faults {
            approve_twice: true,
            notify_unknown_client: true,
            notify_rejected_token: true,
            ..Faults::default()
        };
        let (h, hook) = with_webhook(faults, StatusCode::OK).await;
        accepted(&h).await;
        let statuses = h.sim.approve_token_request(&h.client().client_id).await.unwrap();
        assert_eq!(statuses, [Some(200), Some(200)]);
        let bodies = hook.wait_for(2).await;
        assert_eq!(bodies[0], bodies[1], "the same delivery twice");
        let client_id = bodies[0]["client_id"].as_str().unwrap();
        assert!(h.sim.config().clients.iter().all(|c| c.client_id != client_id), "{client_id}");
        let token = bodies[0]["access_token"].as_str().unwrap();
        assert_error(h.profile(Some(token)).await, StatusCode::UNAUTHORIZED, "UDAPI100050", KeyCase::Snake).await;
        let journal = h.sim.journal();
        assert_eq!(journal.deliveries.len(), 2);
        assert_eq!(journal.deliveries[0].client_id, client_id);
    }

    #[tokio::test]
    async fn never_approve_expiry_and_a_missing_webhook_deliver_nothing() {
        let (h, hook) = with_webhook(Faults { never_approve: true, ..Faults::default() }, StatusCode::OK).await;
        let id = h.client().client_id.clone();
        accepted(&h).await;
        assert_error(h.approve(&id).await, StatusCode::CONFLICT, "SIM_APPROVAL_WITHHELD", KeyCase::Snake).await;

        h.sim.set_faults(Faults::default());
        h.sim.shared.lock().pending.get_mut(&0).unwrap().expires_at = Utc::now() - chrono::Duration::seconds(1);
        assert_eq!(h.sim.approve_token_request(&id).await, Err(ApprovalError::Expired), "past 03:30 IST");

        accepted(&h).await;
        assert!(h.sim.set_notifier_url(&id, None));
        assert_error(h.approve(&id).await, StatusCode::CONFLICT, "SIM_NO_NOTIFIER_URL", KeyCase::Snake).await;
        assert!(!h.sim.set_notifier_url("nope", Some(&hook.url)));
        assert_error(h.approve("nope").await, StatusCode::NOT_FOUND, "SIM_UNKNOWN_CLIENT", KeyCase::Snake).await;
        assert!(hook.received().is_empty());
        assert!(h.sim.journal().deliveries.is_empty());
    }

    #[tokio::test]
    async fn a_dead_webhook_is_recorded_without_a_status() {
        let h = Harness::start().await;
        let id = h.client().client_id.clone();
        assert!(h.sim.set_notifier_url(&id, Some("http://127.0.0.1:9/upstox/notify")));
        accepted(&h).await;
        assert_eq!(h.sim.approve_token_request(&id).await.unwrap(), [None]);
        assert_eq!(h.sim.journal().deliveries[0].status, None);
    }
}
