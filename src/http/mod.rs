//! The daemon's HTTP server: the router and its shared state. `/` (the status page, `page.rs`), `/healthz` (the
//! process is up), `/readyz` (every account holds a valid token in every sink), `/metrics` (Prometheus text),
//! `/status` (the status report as JSON), `/failures/{name}` (a failure screenshot, `failures.rs`), and
//! `POST {server.notifier_path}` (`notifier`: Upstox's webhook delivering an approved token request's token).
//!
//! Handlers only read: they never start a login and never expose a token or a secret (the status report has no
//! field that could hold one). With `server.auth_token_file` set, every route but `/healthz` needs the token
//! (`auth.rs`); a route that Upstox itself calls (the notifier webhook) is added outside that layer. The notifier
//! hands a verified token to the run waiting for it; it publishes nothing.

mod auth;
mod failures;
pub mod notifier;
mod page;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::run::Runner;
use crate::status;

/// What every handler can read.
pub type AppState = Arc<Runner>;

/// The daemon's endpoints.
pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/", get(status_page))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status_json))
        .route("/failures/{name}", get(failures::screenshot))
        .route_layer(from_fn_with_state(state.clone(), auth::require_token));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(protected)
        .with_state(Arc::clone(&state))
        // Upstox POSTs the webhook itself, without our token: outside the auth layer, proven by its own checks.
        .merge(notifier::router(state))
}

async fn status_page(State(runner): State<AppState>) -> Response {
    let report = status::report(&runner).await;
    let html = page::render(&report, chrono::Utc::now()).into_string();
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            // Nothing but the page's own inline style and script, and images from here (the screenshots).
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src 'self'; \
                 base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        html,
    )
        .into_response()
}

async fn readyz(State(runner): State<AppState>) -> Response {
    let report = status::report(&runner).await;
    let not_ready: Vec<&str> =
        report.accounts.iter().filter(|a| !a.valid_in_every_sink).map(|a| a.name.as_str()).collect();
    if not_ready.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: no valid token in every sink for {}\n", not_ready.join(", ")),
        )
            .into_response()
    }
}

async fn metrics(State(runner): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], runner.metrics().render())
        .into_response()
}

async fn status_json(State(runner): State<AppState>) -> Response {
    axum::Json(status::report(&runner).await).into_response()
}
