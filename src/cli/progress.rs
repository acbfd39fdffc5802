//! How `login` shows a pass over the accounts: one line per account as its result arrives (above a progress bar
//! when stderr is a terminal, plain lines otherwise), then, for several accounts, a summary table. `Console` is the
//! log writer: while a bar is shown, log lines are written above it instead of through it.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// stderr for the logs (`tracing_subscriber`'s writer), aware of the progress bar on screen, if any.
#[derive(Clone, Default)]
pub struct Console {
    bar: Arc<Mutex<Option<ProgressBar>>>,
}

impl Console {
    fn show(&self, bar: Option<ProgressBar>) {
        *self.bar.lock().unwrap_or_else(|p| p.into_inner()) = bar;
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Console {
    type Writer = ConsoleLine;

    fn make_writer(&'a self) -> ConsoleLine {
        ConsoleLine { bar: self.bar.lock().unwrap_or_else(|p| p.into_inner()).clone(), text: Vec::new() }
    }
}

/// One log event, written to stderr when dropped (with the bar lifted while it is written).
pub struct ConsoleLine {
    bar: Option<ProgressBar>,
    text: Vec<u8>,
}

impl Write for ConsoleLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ConsoleLine {
    fn drop(&mut self) {
        if self.text.is_empty() {
            return;
        }
        // A log line that cannot be written has nowhere else to go.
        let write = || {
            let _ = std::io::stderr().write_all(&self.text);
        };
        match &self.bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }
}

use crate::error::error_chain;
use crate::run::Outcome;
use crate::run::pool::AccountResult;

/// The live part: the bar (on a terminal) or nothing, and the result lines.
pub struct Progress {
    bar: Option<ProgressBar>,
    console: Console,
}

impl Progress {
    /// A bar for `total` accounts when stderr is a terminal and there is more than one; logs go above it.
    pub fn new(total: usize, console: &Console) -> Progress {
        let bar = (total > 1 && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(total as u64);
            let style =
                ProgressStyle::with_template("{spinner} {elapsed_precise} [{bar:30}] {pos}/{len} accounts {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        console.show(bar.clone());
        Progress { bar, console: console.clone() }
    }

    /// Show how many browsers are running (called while the pass runs).
    pub fn browsers(&self, running: usize) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("· {running} browser(s) running"));
        }
    }

    /// One account's result: its line, and the bar moves on.
    pub fn done(&self, done: &AccountResult<'_>) {
        let line = match &done.result {
            Ok(outcome @ Outcome::Skipped { .. }) => {
                format!("{}: {outcome} (use --force to log in anyway)", done.account.name)
            }
            Ok(outcome) => format!("{}: {outcome}", done.account.name),
            Err(e) => format!("{}: FAILED: {}", done.account.name, error_chain(e)),
        };
        match &self.bar {
            Some(bar) => {
                bar.println(line);
                bar.inc(1);
            }
            None => eprintln!("{line}"),
        }
    }

    pub fn finish(&self) {
        self.console.show(None);
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The per-account table: result, time, steps (seconds each) and where the token is.
pub fn summary(results: &[AccountResult<'_>]) -> String {
    let header = ["account", "result", "time", "steps", "sinks"].map(String::from);
    let mut rows = vec![header];
    for r in results {
        let time = format!("{:.1}s", r.elapsed.as_secs_f64());
        let (result, steps, sinks) = match &r.result {
            Ok(Outcome::LoggedIn { generation, attempts, timings, locations, .. }) => {
                let steps: Vec<String> =
                    timings.iter().map(|t| format!("{} {:.2}", t.step, t.elapsed.as_secs_f64())).collect();
                let result = if *attempts > 1 {
                    format!("logged in (generation {generation}, attempt {attempts})")
                } else {
                    format!("logged in (generation {generation})")
                };
                (result, steps.join(", "), locations.join(", "))
            }
            Ok(Outcome::Republished { generation, sinks, .. }) => {
                (format!("copied (generation {generation})"), "-".into(), sinks.join(", "))
            }
            Ok(Outcome::Skipped { generation, .. }) => {
                (format!("still valid (generation {generation})"), "-".into(), "-".into())
            }
            Ok(Outcome::Unverified { generation, .. }) => {
                (format!("kept unverified (generation {generation})"), "-".into(), "-".into())
            }
            Err(_) => ("FAILED".into(), "-".into(), "-".into()),
        };
        rows.push([r.account.name.clone(), result, time, steps, sinks]);
    }
    let widths: Vec<usize> = (0..5).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&rule.join("  "));
            out.push('\n');
        }
    }
    let failed: Vec<&str> = results.iter().filter(|r| r.result.is_err()).map(|r| r.account.name.as_str()).collect();
    let ok = results.len() - failed.len();
    if failed.is_empty() {
        out.push_str(&format!("{ok} of {} account(s) hold a valid token\n", results.len()));
    } else {
        out.push_str(&format!("{} of {} account(s) FAILED: {}\n", failed.len(), results.len(), failed.join(", ")));
    }
    out
}
