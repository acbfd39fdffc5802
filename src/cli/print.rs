//! `status [--json]`: the status report for a person, or as JSON.

use super::ExitStatus;
use crate::run::Runner;
use crate::status;

pub async fn status(runner: &Runner, json: bool) -> ExitStatus {
    let report = status::report(runner).await;
    // Unreadable state or sinks (root's files after a `login` as root) make the report incomplete: say so, exit 1.
    let exit = if report.has_errors() { ExitStatus::Failure } else { ExitStatus::Success };
    if json {
        // invariant: the report holds only strings, numbers and options
        println!("{}", serde_json::to_string_pretty(&report).expect("report serialises"));
        return exit;
    }
    println!(
        "schedule \"{}\" ({}), next run {}",
        report.schedule,
        report.timezone,
        report.next_run.as_deref().unwrap_or("never")
    );
    let c = &report.coordination;
    match &c.error {
        None => println!("coordination: {} ({})", c.kind, c.store),
        Some(e) => println!("coordination: {} ({}) UNREACHABLE: {e}", c.kind, c.store),
    }
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
        match &a.due_since {
            Some(since) if !a.valid_in_every_sink => println!("  due since {since} (a scheduled run has happened)"),
            None if !a.valid_in_every_sink => println!("  not due yet (no scheduled run since the 03:30 IST expiry)"),
            _ => {}
        }
        for s in &a.sinks {
            let held = match (&s.expires_at, s.generation, &s.error) {
                (_, _, Some(error)) => format!("UNREADABLE: {error}"),
                (Some(exp), Some(g), None) => {
                    format!("generation {g}, expires {exp}{}", if s.valid { "" } else { " (expired)" })
                }
                _ => match &s.error {
                    Some(e) => format!("unreadable ({e})"),
                    None => "nothing".into(),
                },
            };
            println!("  {}: {held}", s.sink);
        }
        if let Some(error) = &a.state_error {
            println!("  state UNREADABLE: {error}");
        }
        match &a.last_attempt {
            Some(at) => println!(
                "  last attempt {}: {}{}{}",
                at.at.to_rfc3339(),
                at.result,
                at.class.map(|c| format!(" ({c})")).unwrap_or_default(),
                at.error.as_ref().map(|e| format!(" — {e}")).unwrap_or_default()
            ),
            None => println!("  no attempt recorded"),
        }
        if let Some(file) = &a.failure_screenshot {
            println!("  newest failure screenshot: {}", runner.config().failures_dir().join(file).display());
        }
        if let Some(holder) = &a.lease_holder {
            println!("  being logged in now by {holder}");
        }
        if a.pin_rejected_today {
            println!(
                "  a PIN was rejected today (IST): no PIN is tried again today; fix `pin`, then `reset-guard {}` (or wait for tomorrow)",
                a.name
            );
        }
        if a.pin_submissions_today > 0 || a.pins_without_code_in_a_row > 0 {
            println!(
                "  PIN submissions without a code: {} today, {} in a row (no PIN is tried at 4; `reset-guard` clears)",
                a.pin_submissions_today, a.pins_without_code_in_a_row
            );
        }
        if let Some(f) = &a.last_locator_fallback {
            println!(
                "  WARNING: at {} the {} of step `{}` was found only by {} (`{}` matched nothing): update `browser.selectors` (the last of that login's fallbacks; its log and `locator_fallbacks_total` name every one)",
                f.at.to_rfc3339(),
                f.element,
                f.step,
                f.matched,
                f.configured
            );
        }
        if let Some(p) = &a.last_probe {
            println!("  last probe {}: {}", p.at.to_rfc3339(), p.summary);
        }
    }
    exit
}
