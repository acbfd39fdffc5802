//! `check-config [--online]`: load and validate, check `state_dir` is writable by this user, show when the
//! schedule fires (in IST, so a `timezone` mistake is visible), and with `--online` pre-flight what a login needs
//! (every sink for every account, the coordination store, the WebDriver side). Exit 0 ok, 2 with every problem named
//! by its key.

use std::path::Path;

use chrono::{Timelike, Utc};
use chrono_tz::Asia::Kolkata;

use super::ExitStatus;
use crate::config::{self, Config, CoordinationConfig, Problem};
use crate::coordinate::Coordinator;
use crate::error::error_chain;
use crate::run::preflight;
use crate::run::publish::Publisher;

/// Runs shown.
const NEXT_RUNS: usize = 3;
/// A morning run belongs between the token's death (03:30 IST) and the market's opening (09:15 IST).
const MORNING_IST: ((u32, u32), (u32, u32)) = ((3, 30), (9, 15));

pub async fn check_config(path: &Path, online: bool) -> ExitStatus {
    let config = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitStatus::Usage;
        }
    };
    let mut problems = Vec::new();
    if let Err(e) = crate::state::check_writable(&config.state_dir) {
        problems.push(Problem { key: "state_dir".into(), message: error_chain(&e) });
    }
    if online {
        problems.extend(online_problems(&config).await);
    }
    for warning in config.warnings.iter().chain(&schedule_warnings(&config)) {
        eprintln!("warning: {warning}");
    }
    if !problems.is_empty() {
        let lines: Vec<String> = problems.iter().map(|p| format!("  - {p}")).collect();
        eprintln!("error: invalid configuration:\n{}", lines.join("\n"));
        return ExitStatus::Usage;
    }
    let names: Vec<&str> = config.accounts.iter().map(|a| a.name.as_str()).collect();
    let sinks: Vec<String> = config.sinks.iter().map(|s| s.label()).collect();
    let notifiers: Vec<String> = config.notifiers.iter().map(|n| n.label()).collect();
    let coordination = match &config.coordination {
        CoordinationConfig::Local => String::new(),
        CoordinationConfig::Redis(r) => format!(", coordination redis `{}`", crate::redis_link::redact_url(&r.url)),
    };
    println!(
        "config ok: {} account(s) [{}], sinks [{}], schedule \"{}\" in {}{}{coordination}",
        names.len(),
        names.join(", "),
        sinks.join(", "),
        config.schedule.cron,
        config.schedule.timezone,
        if notifiers.is_empty() { String::new() } else { format!(", notifiers [{}]", notifiers.join(", ")) }
    );
    println!("next runs (IST):");
    for run in config.schedule.next_runs(Utc::now(), NEXT_RUNS) {
        let ist = run.with_timezone(&Kolkata);
        let local = if config.schedule.timezone == Kolkata {
            String::new()
        } else {
            format!(" ({} {})", run.format("%H:%M"), config.schedule.timezone)
        };
        println!("  {} IST{local}", ist.format("%a %Y-%m-%d %H:%M"));
    }
    if online {
        let store = if coordination.is_empty() { "" } else { "; the coordination store answers" };
        println!(
            "online checks ok: {} sink(s) x {} account(s) can take a document now; the WebDriver side is there{store}",
            config.sinks.len(),
            config.accounts.len()
        );
    }
    ExitStatus::Success
}

/// Every sink pre-flighted for every account, the coordination store asked (`PING`: without it no replica logs in),
/// and the WebDriver side found.
async fn online_problems(config: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    if matches!(config.coordination, CoordinationConfig::Redis(_)) {
        let answered = match Coordinator::new(&config.coordination, crate::state::StateStore::new(&config.state_dir)) {
            Ok(coordinator) => coordinator.health().await,
            Err(e) => Err(e),
        };
        if let Err(e) = answered {
            problems.push(Problem { key: "coordination.url".into(), message: error_chain(&e) });
        }
    }
    match Publisher::new(&config.sinks) {
        Ok(publisher) => {
            for account in &config.accounts {
                for (i, sink) in publisher.sinks().iter().enumerate() {
                    if let Err(e) = sink.preflight(&account.name).await {
                        problems.push(Problem {
                            key: format!("sinks[{i}]"),
                            message: format!("not ready for account `{}`: {}", account.name, error_chain(&e)),
                        });
                    }
                }
            }
        }
        Err(e) => problems.push(Problem { key: "sinks".into(), message: error_chain(&e) }),
    }
    if let Err(e) = preflight::webdriver(&config.browser).await {
        problems.push(Problem { key: e.key().into(), message: e.to_string() });
    }
    problems
}

/// A warning when the next run falls outside 03:30–09:15 IST (say `timezone = "UTC"` with an 08:30 cron: 14:00 IST).
fn schedule_warnings(config: &Config) -> Vec<Problem> {
    let ((from_h, from_m), (to_h, to_m)) = MORNING_IST;
    let Some(next) = config.schedule.next_run(Utc::now()) else { return Vec::new() };
    let ist = next.with_timezone(&Kolkata);
    let minutes = ist.hour() * 60 + ist.minute();
    if (from_h * 60 + from_m..to_h * 60 + to_m).contains(&minutes) {
        return Vec::new();
    }
    vec![Problem {
        key: "schedule.cron".into(),
        message: format!(
            "the next run is at {} IST, outside {from_h:02}:{from_m:02}–{to_h:02}:{to_m:02} IST (tokens die at 03:30, the \
             market opens at 09:15); check `schedule.timezone` (\"{}\")",
            ist.format("%H:%M"),
            config.schedule.timezone
        ),
    }]
}
