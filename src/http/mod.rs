//! The daemon's HTTP server: the router and its shared state. `/` (the status page, `page.rs`), `/healthz` (the
//! process is up), `/readyz` (the daemon is doing its job: the coordinator answers, and every account holds a valid
//! token in every sink or is not due yet; `/readyz?strict=1`: every account holds a valid token in every sink now),
//! `/metrics` (OpenMetrics, or the Prometheus text format 0.0.4 for `Accept: text/plain;version=0.0.4`), `/status`
//! (the status report as JSON), `/failures/{name}` (a failure screenshot, `failures.rs`), and
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
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::metrics;
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

/// `/readyz`'s query: `strict=1` (or `true`) asks for a valid token in every sink now, due or not.
#[derive(Debug, Default, serde::Deserialize)]
struct ReadyQuery {
    #[serde(default)]
    strict: Option<String>,
}

async fn readyz(State(runner): State<AppState>, Query(query): Query<ReadyQuery>) -> Response {
    let strict = query.strict.as_deref().is_some_and(|v| matches!(v, "1" | "true" | "yes" | ""));
    let report = status::report(&runner).await;
    let c = &report.coordination;
    if !c.reachable {
        let why = c.error.as_deref().unwrap_or("no answer");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: the {} coordinator at `{}` does not answer, so no login can start: {why}\n",
                c.kind, c.store
            ),
        )
            .into_response();
    }
    let not_ready: Vec<String> = report
        .accounts
        .iter()
        .filter(|a| if strict { !a.valid_in_every_sink } else { !a.ready })
        .map(|a| match &a.due_since {
            Some(since) if !strict => format!("{} (due since {since})", a.name),
            _ => a.name.clone(),
        })
        .collect();
    if not_ready.is_empty() {
        (StatusCode::OK, if strict { "ready: every sink holds a valid token\n" } else { "ready\n" }).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: no valid token in every sink for {}\n", not_ready.join(", ")),
        )
            .into_response()
    }
}

async fn metrics(State(runner): State<AppState>, headers: HeaderMap) -> Response {
    runner.refresh_state_gauges(chrono::Utc::now()).await;
    let format = metrics::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let body = match format {
        metrics::Format::OpenMetrics => runner.metrics().render(),
        metrics::Format::PrometheusText => runner.metrics().render_prometheus_text(),
    };
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

async fn status_json(State(runner): State<AppState>) -> Response {
    axum::Json(status::report(&runner).await).into_response()
}
