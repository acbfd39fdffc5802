//! The daemon's HTTP server: the router and its shared state. `/healthz` (the process is up), `/readyz` (every
//! account holds a valid token in every sink), `/metrics` (Prometheus text), `/status` (the status report as JSON).
//!
//! Handlers only read: they never start a login and never expose a token or a secret (the status report has no
//! field that could hold one).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::run::Runner;
use crate::status;

/// What every handler can read.
pub type AppState = Arc<Runner>;

/// The daemon's endpoints.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status_json))
        .with_state(state)
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
