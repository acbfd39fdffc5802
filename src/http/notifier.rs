//! `POST {server.notifier_path}`: Upstox's notifier webhook, where the token of an approved v3 access-token request
//! arrives [doc]. Unsigned and reachable from the internet (through a reverse proxy), so every POST is hostile
//! until `login::token_request::Outstanding::accept` has proven it.
//!
//! This handler bounds what it reads (size and time), hands the body over, and answers with a fixed word per status:
//! the response never echoes the payload, and the log line says why a POST was refused but never holds the token.
//! Nothing is published here: an accepted token goes to the run that is waiting for it, which publishes it through
//! the same path as a browser login.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use tracing::{info, warn};

use super::AppState;
use crate::error::error_chain;

/// The largest body read. Upstox's notification is a few hundred bytes plus the token (~1 KiB) [doc].
pub const BODY_LIMIT: usize = 16 * 1024;
/// How long a client may take to send its body.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A router serving only the notifier webhook at `server.notifier_path` (what `login` serves while it waits; the
/// daemon merges it into its own).
pub fn router(state: AppState) -> Router {
    let path = state.config().server.notifier_path.clone();
    Router::new().route(&path, post(notify)).with_state(state)
}

async fn notify(State(runner): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let status = verdict(&runner, &headers, body).await;
    runner.metrics().notifier_post(status.as_u16());
    answer(status)
}

/// The status to answer `body` with, logged; a 200 means the token went to the run waiting for it.
async fn verdict(runner: &AppState, headers: &HeaderMap, body: Body) -> StatusCode {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        warn!(limit = BODY_LIMIT, "notifier webhook: body too large; refused, nothing published");
        return StatusCode::PAYLOAD_TOO_LARGE;
    }
    let body = match tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, BODY_LIMIT)).await {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => {
            warn!(limit = BODY_LIMIT, "notifier webhook: body too large or unreadable; refused, nothing published");
            return StatusCode::PAYLOAD_TOO_LARGE;
        }
        Err(_) => {
            warn!(timeout = ?BODY_READ_TIMEOUT, "notifier webhook: body not sent in time; refused, nothing published");
            return StatusCode::REQUEST_TIMEOUT;
        }
    };
    let api = match runner.api().await {
        Ok(api) => api,
        Err(e) => {
            warn!(error = %error_chain(&e), "notifier webhook: no API client to verify with; refused, nothing published");
            return StatusCode::SERVICE_UNAVAILABLE;
        }
    };
    match runner.outstanding().accept(&body, &api, Utc::now()).await {
        Ok(accepted) => {
            info!(account = %accepted.account, user_id = %accepted.user_id, "notifier webhook: token verified and handed to the waiting run");
            StatusCode::OK
        }
        Err(refusal) => {
            let status = StatusCode::from_u16(refusal.http_status()).unwrap_or(StatusCode::FORBIDDEN);
            warn!(status = status.as_u16(), reason = %refusal, "notifier webhook: POST refused; nothing published");
            status
        }
    }
}

/// A fixed plain-text answer per status: nothing from the request.
fn answer(status: StatusCode) -> Response {
    let word = match status {
        StatusCode::OK => "accepted\n",
        StatusCode::BAD_REQUEST => "not an access-token notification\n",
        StatusCode::FORBIDDEN => "not accepted\n",
        StatusCode::PAYLOAD_TOO_LARGE => "too large\n",
        StatusCode::REQUEST_TIMEOUT => "too slow\n",
        _ => "try again later\n",
    };
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], word)
        .into_response()
}
