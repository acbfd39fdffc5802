//! The command line: clap definitions and one function per command, each returning the process exit code.
//!
//! Commands parse and validate config, build the library's parts and report to the terminal. They hold no logic
//! of their own beyond choosing accounts and formatting results; SIGINT/SIGTERM cancel the work in progress so
//! that browsers are torn down before the process exits.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::config::{self, Config};
use crate::metrics::Metrics;
use crate::relogin::{Outcome, Relogin, error_chain};

/// Exit codes of the contract.
pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "upstox-relogin",
    version,
    about = "Logs in to Upstox every morning through a real headless browser and publishes the access token"
)]
pub struct Cli {
    /// Configuration file (TOML).
    #[arg(long, global = true, env = "UPSTOX_RELOGIN_CONFIG", default_value = "./config.toml")]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Daemon: log in on schedule, serve /healthz /readyz /metrics /status; stops on SIGINT/SIGTERM.
    Run,
    /// Log in now for all (or the named) accounts; a still-valid published token is kept unless --force.
    Login {
        /// Only this account (repeatable).
        #[arg(long = "account", value_name = "NAME")]
        accounts: Vec<String>,
        /// Log in even when the published token is still valid.
        #[arg(long)]
        force: bool,
    },
    /// Per account: token present, expiry, generation, last attempt, next scheduled run.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Load and validate the configuration; no network, no browser.
    CheckConfig,
    /// Serve the built-in Upstox simulator and print a config that works against it.
    Simulate(crate::demo::SimulateArgs),
    /// Start the simulator in-process and log in once through a real headless browser.
    Demo {
        /// Where to write the demo token document.
        #[arg(long, default_value = "./upstox-token.demo.json")]
        output: PathBuf,
    },
}

/// Run the parsed command and return the exit code.
pub async fn execute(cli: Cli) -> ExitCode {
    let code = match cli.command {
        Command::CheckConfig => check_config(&cli.config),
        Command::Login { accounts, force } => match load(&cli.config) {
            Ok(config) => login(config, &accounts, force).await,
            Err(code) => code,
        },
        Command::Status { json } => match load(&cli.config) {
            Ok(config) => crate::status::print(config, json).await,
            Err(code) => code,
        },
        Command::Run => match load(&cli.config) {
            Ok(config) => crate::daemon::run(config).await,
            Err(code) => code,
        },
        Command::Simulate(args) => crate::demo::simulate(args).await,
        Command::Demo { output } => crate::demo::run(&output).await,
    };
    ExitCode::from(code)
}

fn load(path: &std::path::Path) -> Result<Arc<Config>, u8> {
    config::load(path).map(Arc::new).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_USAGE
    })
}

fn check_config(path: &std::path::Path) -> u8 {
    match config::load(path) {
        Ok(c) => {
            let names: Vec<&str> = c.accounts.iter().map(|a| a.name.as_str()).collect();
            let sinks: Vec<String> = c.sinks.iter().map(|s| s.label()).collect();
            println!(
                "config ok: {} account(s) [{}], sinks [{}], schedule \"{}\" in {}",
                names.len(),
                names.join(", "),
                sinks.join(", "),
                c.schedule.cron,
                c.schedule.timezone
            );
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_USAGE
        }
    }
}

async fn login(config: Arc<Config>, selected: &[String], force: bool) -> u8 {
    let unknown: Vec<&String> = selected.iter().filter(|n| !config.accounts.iter().any(|a| &a.name == *n)).collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = config.accounts.iter().map(|a| a.name.as_str()).collect();
        eprintln!("error: no account named {:?}; configured: {}", unknown, known.join(", "));
        return EXIT_USAGE;
    }
    let relogin = match Relogin::new(Arc::clone(&config), Arc::new(Metrics::new())) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            return EXIT_FAILURE;
        }
    };
    crate::browser::sweep_stale_profiles();
    let accounts: Vec<_> =
        config.accounts.iter().filter(|a| selected.is_empty() || selected.contains(&a.name)).collect();
    let work = async {
        let mut failed = 0;
        for account in accounts {
            match relogin.run(account, force).await {
                Ok(outcome) => eprintln!("{}: {}", account.name, describe(&outcome)),
                Err(e) => {
                    failed += 1;
                    eprintln!("{}: FAILED: {}", account.name, error_chain(&e));
                }
            }
        }
        failed
    };
    tokio::select! {
        failed = work => if failed == 0 { EXIT_OK } else { EXIT_FAILURE },
        signal = crate::daemon::shutdown_signal() => {
            eprintln!("interrupted by {signal}; browser closed, published tokens untouched");
            EXIT_FAILURE
        }
    }
}

/// One line for a person.
pub fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Skipped { generation, expires_at } => {
            format!(
                "token still valid (generation {generation}, expires {expires_at}); skipped (use --force to log in anyway)"
            )
        }
        Outcome::Republished { generation, expires_at, sinks } => {
            format!("token still valid (generation {generation}, expires {expires_at}); copied to {}", sinks.join(", "))
        }
        Outcome::LoggedIn { generation, expires_at, attempts, timings, locations } => {
            let total: f64 = timings.iter().map(|t| t.elapsed.as_secs_f64()).sum();
            let steps: Vec<String> =
                timings.iter().map(|t| format!("{} {:.2}s", t.step, t.elapsed.as_secs_f64())).collect();
            format!(
                "logged in (generation {generation}, expires {expires_at}, attempt {attempts}, {total:.2}s: {}); written to {}",
                steps.join(", "),
                locations.join(", ")
            )
        }
    }
}
