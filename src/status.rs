//! What each account looks like right now — for `status`, `/status`, `/readyz` — and the daemon's HTTP server.
//!
//! A report is built from `state_dir` and the sinks only, so `status` works whether or not the daemon runs. It
//! carries expiry, generation and attempt results, never a token or a secret: `AccountStatus` has no field that
//! could hold one.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use serde::Serialize;

use crate::cli::{EXIT_FAILURE, EXIT_OK};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::relogin::{Relogin, error_chain};
use crate::state::Attempt;
use crate::token::{self, TokenDocument};

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub schedule: String,
    pub timezone: String,
    /// The next cron tick, in `timezone`.
    pub next_run: Option<String>,
    pub accounts: Vec<AccountStatus>,
}

#[derive(Debug, Serialize)]
pub struct AccountStatus {
    pub name: String,
    /// Some sink holds an unexpired document for the account.
    pub token_present: bool,
    /// Every sink holds an unexpired document.
    pub valid_in_every_sink: bool,
    pub expires_at: Option<String>,
    pub generation: Option<u64>,
    pub sinks: Vec<SinkStatus>,
    pub last_attempt: Option<Attempt>,
    pub last_success_at: Option<String>,
    pub pin_submissions_today: u32,
}

#[derive(Debug, Serialize)]
pub struct SinkStatus {
    pub sink: String,
    pub generation: Option<u64>,
    pub expires_at: Option<String>,
    pub valid: bool,
}

/// Build the report from state files and what the sinks hold.
pub async fn report(relogin: &Relogin) -> StatusReport {
    let config = relogin.config();
    let now = Utc::now();
    let day = token::ist_day(now);
    let mut accounts = Vec::new();
    for account in &config.accounts {
        let held = relogin.read_sinks(&account.name).await;
        let state = relogin.state().load(&account.name).unwrap_or_else(|e| {
            tracing::warn!(account = %account.name, error = %error_chain(&e), "cannot read state");
            Default::default()
        });
        let best: Option<&TokenDocument> =
            held.iter().flatten().filter(|d| d.is_unexpired(now)).max_by_key(|d| d.generation);
        let sinks: Vec<SinkStatus> = relogin
            .sinks()
            .iter()
            .zip(&held)
            .map(|(sink, doc)| SinkStatus {
                sink: sink.label(),
                generation: doc.as_ref().map(|d| d.generation),
                expires_at: doc.as_ref().map(|d| d.expires_at.to_rfc3339()),
                valid: doc.as_ref().is_some_and(|d| d.is_unexpired(now)),
            })
            .collect();
        accounts.push(AccountStatus {
            name: account.name.clone(),
            token_present: best.is_some(),
            valid_in_every_sink: sinks.iter().all(|s| s.valid),
            expires_at: best.map(|d| d.expires_at.to_rfc3339()),
            generation: best.map(|d| d.generation),
            sinks,
            last_attempt: state.last_attempt.clone(),
            last_success_at: state.last_success_at.map(|t| t.to_rfc3339()),
            pin_submissions_today: state.pin_submissions_on(&day),
        });
    }
    StatusReport {
        schedule: config.schedule.cron.clone(),
        timezone: config.schedule.timezone.to_string(),
        next_run: config.schedule.next_run(now).map(|t| t.to_rfc3339()),
        accounts,
    }
}

/// `status [--json]`.
pub async fn print(config: Arc<Config>, json: bool) -> u8 {
    let relogin = match Relogin::new(config, Arc::new(Metrics::new())) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            return EXIT_FAILURE;
        }
    };
    let report = report(&relogin).await;
    if json {
        // invariant: the report holds only strings, numbers and options
        println!("{}", serde_json::to_string_pretty(&report).expect("report serialises"));
        return EXIT_OK;
    }
    println!(
        "schedule \"{}\" ({}), next run {}",
        report.schedule,
        report.timezone,
        report.next_run.as_deref().unwrap_or("never")
    );
    for a in &report.accounts {
        let token = match (&a.expires_at, a.generation) {
            (Some(exp), Some(g)) => format!("valid until {exp} (generation {g})"),
            _ => "no valid token".into(),
        };
        println!(
            "{}: {token}{}",
            a.name,
            if a.token_present && !a.valid_in_every_sink { "; missing from some sinks" } else { "" }
        );
        for s in &a.sinks {
            let held = match (&s.expires_at, s.generation) {
                (Some(exp), Some(g)) => {
                    format!("generation {g}, expires {exp}{}", if s.valid { "" } else { " (expired)" })
                }
                _ => "nothing".into(),
            };
            println!("  {}: {held}", s.sink);
        }
        match &a.last_attempt {
            Some(at) => println!(
                "  last attempt {}: {}{}",
                at.at.to_rfc3339(),
                at.result,
                at.error.as_ref().map(|e| format!(" — {e}")).unwrap_or_default()
            ),
            None => println!("  no attempt recorded"),
        }
        if a.pin_submissions_today > 0 {
            println!("  PIN submissions without a code today: {}", a.pin_submissions_today);
        }
    }
    EXIT_OK
}

/// The daemon's HTTP endpoints.
pub fn router(relogin: Arc<Relogin>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status_json))
        .with_state(relogin)
}

async fn readyz(State(relogin): State<Arc<Relogin>>) -> Response {
    let report = report(&relogin).await;
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

async fn metrics(State(relogin): State<Arc<Relogin>>) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], relogin.metrics().render())
        .into_response()
}

async fn status_json(State(relogin): State<Arc<Relogin>>) -> Response {
    axum::Json(report(&relogin).await).into_response()
}
