//! The command line: clap definitions and one function per command. The only place that prints a command's result
//! and picks the process's exit code (`ExitStatus`).
//!
//! Commands load config, build the library's parts and report to the terminal; they hold no logic of their own
//! beyond choosing accounts and formatting results. SIGINT/SIGTERM cancel the work in progress so that browsers are
//! torn down before the process exits. `demo` and `simulate` live in `demo.rs`, the text form of `status` in
//! `print.rs`.

mod check;
mod demo;
mod print;
mod progress;
mod token;

pub use progress::Console;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{self, Account, Config, LogFormat};
use crate::daemon::{self, DaemonError};
use crate::error::error_chain;
use crate::metrics::Metrics;
use crate::run::page_probe::probe_pages;
use crate::run::pool::run_accounts;
use crate::run::{Runner, Trigger, WhenValid};
use crate::shutdown;

/// How long a command waits at exit for notifications still being delivered (retries included).
const NOTIFY_GRACE: Duration = Duration::from_secs(10);

/// The contract's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: success.
    Success = 0,
    /// 1: runtime failure (a login, an exchange or a sink failed; interrupted).
    Failure = 1,
    /// 2: usage or configuration error.
    Usage = 2,
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        std::process::ExitCode::from(status as u8)
    }
}

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
    /// Log lines as `text` or `json` (one object per line); default: the config's `log_format`, else text.
    #[arg(long, global = true, value_enum, env = "UPSTOX_RELOGIN_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Daemon: log in on schedule, serve the status page, /healthz /readyz /metrics /status; stop on SIGINT/TERM/HUP.
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
    /// Load and validate the configuration (and check `state_dir` is writable); no network, no browser.
    CheckConfig {
        /// Also check what a login will need: every sink can take a document now (file: a temporary file in its
        /// directory; Redis: PING with auth) and the WebDriver side is there (chromedriver found, or
        /// `browser.webdriver_url` answering).
        #[arg(long)]
        online: bool,
    },
    /// Serve the built-in Upstox simulator and print a config that works against it.
    Simulate(demo::SimulateArgs),
    /// Print the account's current valid access token on stdout (for scripts); exit 1 when none is valid.
    Token {
        /// The account (may be left out when only one is configured).
        #[arg(long = "account", value_name = "NAME")]
        account: Option<String>,
    },
    /// Start the simulator in-process and log in once through a real headless browser.
    Demo {
        /// Where to write the demo token document.
        #[arg(long, default_value = "./upstox-token.demo.json")]
        output: PathBuf,
    },
    /// Open each account's login dialog and check, typing nothing, that it is ready for a login.
    Probe {
        /// Only this account (repeatable).
        #[arg(long = "account", value_name = "NAME")]
        accounts: Vec<String>,
    },
    /// Clear the lockout guard's facts for an account after a human fixed the cause; says what it reset.
    ResetGuard {
        /// The account's `name`.
        account: String,
    },
}

/// Run the parsed command and return its exit status; `console` is the log writer (see `Console`).
pub async fn execute(cli: Cli, console: Console) -> ExitStatus {
    match cli.command {
        Command::CheckConfig { online } => check::check_config(&cli.config, online).await,
        Command::Login { accounts, force } => match load(&cli.config) {
            Ok(config) => {
                let when_valid = if force { WhenValid::LogIn } else { WhenValid::Skip };
                login(config, &accounts, when_valid, &console).await
            }
            Err(status) => status,
        },
        Command::Status { json } => match load(&cli.config).and_then(runner) {
            Ok(runner) => print::status(&runner, json).await,
            Err(status) => status,
        },
        Command::Run => match load(&cli.config) {
            Ok(config) => run(config).await,
            Err(status) => status,
        },
        Command::Token { account } => match load(&cli.config) {
            Ok(config) => token::token(&config, account.as_deref()).await,
            Err(status) => status,
        },
        Command::Probe { accounts } => match load(&cli.config) {
            Ok(config) => probe(config, &accounts).await,
            Err(status) => status,
        },
        Command::ResetGuard { account } => match load(&cli.config) {
            Ok(config) => reset_guard(config, &account).await,
            Err(status) => status,
        },
        Command::Simulate(args) => demo::simulate(args).await,
        Command::Demo { output } => demo::run(&output).await,
    }
}

/// The log format to set up before anything runs: `--log-format` (or its variable), else the config file's
/// `log_format`, else text. A config that cannot be read yet is reported later, by the command.
pub fn log_format(cli: &Cli) -> LogFormat {
    cli.log_format.or_else(|| config::peek_log_format(&cli.config)).unwrap_or_default()
}

fn load(path: &Path) -> Result<Arc<Config>, ExitStatus> {
    config::load(path).map(Arc::new).map_err(|e| {
        eprintln!("error: {e}");
        ExitStatus::Usage
    })
}

/// What the configuration says a human should fix, without stopping anything.
fn print_warnings(config: &Config) {
    for warning in &config.warnings {
        eprintln!("warning: {warning}");
    }
}

/// The runner for `config`; a sink that cannot even be set up is a configuration problem.
fn runner(config: Arc<Config>) -> Result<Runner, ExitStatus> {
    Runner::new(config, Arc::new(Metrics::new())).map_err(|e| {
        eprintln!("error: {}", error_chain(&e));
        ExitStatus::Usage
    })
}

/// The accounts named in `selected` (all when empty), or a usage error naming the unknown ones.
fn select_accounts<'a>(config: &'a Config, selected: &[String]) -> Result<Vec<&'a Account>, ExitStatus> {
    let unknown: Vec<String> =
        selected.iter().filter(|n| !config.accounts.iter().any(|a| &a.name == *n)).map(|n| format!("`{n}`")).collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = config.accounts.iter().map(|a| a.name.as_str()).collect();
        let what = if unknown.len() == 1 { "no account named" } else { "no accounts named" };
        eprintln!("error: {what} {} (configured: {})", unknown.join(", "), known.join(", "));
        return Err(ExitStatus::Usage);
    }
    Ok(config.accounts.iter().filter(|a| selected.is_empty() || selected.contains(&a.name)).collect())
}

async fn login(config: Arc<Config>, selected: &[String], when_valid: WhenValid, console: &Console) -> ExitStatus {
    let accounts = match select_accounts(&config, selected) {
        Ok(a) => a,
        Err(status) => return status,
    };
    print_warnings(&config);
    let runner = match runner(Arc::clone(&config)) {
        Ok(r) => Arc::new(r),
        Err(status) => return status,
    };
    crate::login::browser::sweep_stale_profiles();
    if accounts.iter().any(|a| a.may_request_token()) {
        serve_notifier(&runner, &accounts).await;
    }
    let progress = progress::Progress::new(accounts.len(), console);
    let work = run_accounts(&runner, &accounts, when_valid, Trigger::Command, |done| progress.done(done));
    let watch = async {
        loop {
            progress.browsers(runner.browser_slots().in_use());
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    };
    let status = tokio::select! {
        results = work => {
            progress.finish();
            if results.len() > 1 {
                print!("{}", progress::summary(&results));
            }
            if results.iter().all(|r| r.result.is_ok()) { ExitStatus::Success } else { ExitStatus::Failure }
        }
        () = watch => unreachable!("the watch loop never ends"),
        signal = shutdown::signal() => {
            progress.finish();
            // Browsers of runs in flight were killed as their futures dropped; teardowns already under way finish.
            runner.settle().await;
            eprintln!("interrupted by {signal}; browsers closed, published tokens untouched");
            ExitStatus::Failure
        }
    };
    // A failed login's notification is still being delivered: let it go out before the process ends.
    runner.notifier().close(NOTIFY_GRACE).await;
    status
}

/// `login` with accounts that may send a token request: serve the notifier webhook on `server.listen` for as long
/// as the command runs, and say what the person at the terminal will be asked to approve. When the address is
/// taken (the daemon serves it), say so: those accounts' requests are then not sent.
async fn serve_notifier(runner: &Arc<Runner>, accounts: &[&config::Account]) {
    let server = &runner.config().server;
    let listener = match tokio::net::TcpListener::bind(server.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "warning: cannot serve the notifier webhook on `server.listen` = {} ({e}); access-token requests will not be sent (is the daemon running? it receives them itself)",
                server.listen
            );
            return;
        }
    };
    runner.outstanding().set_receiving(true);
    let app = crate::http::notifier::router(Arc::clone(runner));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "notifier webhook server failed");
        }
    });
    let wait = runner.config().login.approval_timeout.as_secs();
    for account in accounts {
        let when = match account.method {
            config::Method::TokenRequest => "needs a new token",
            config::Method::Browser if account.fallback == config::Fallback::TokenRequest => {
                "falls back to an access-token request"
            }
            config::Method::Browser => continue,
        };
        eprintln!(
            "{}: when it {when}, Upstox asks the account holder to approve the request (Upstox app, WhatsApp message, or the developer apps page); this command waits up to {wait}s for the token at POST http://{}{}",
            account.name, server.listen, server.notifier_path
        );
    }
}

/// `probe`: one line per account; 0 when every selected account is ready.
async fn probe(config: Arc<Config>, selected: &[String]) -> ExitStatus {
    let accounts = match select_accounts(&config, selected) {
        Ok(a) => a,
        Err(status) => return status,
    };
    let runner = match runner(Arc::clone(&config)) {
        Ok(r) => r,
        Err(status) => return status,
    };
    crate::login::browser::sweep_stale_profiles();
    let work = probe_pages(&runner, &accounts, |done| println!("{}: {}", done.account.name, done.summary()));
    let status = tokio::select! {
        results = work => {
            if results.iter().all(|r| r.ready()) { ExitStatus::Success } else { ExitStatus::Failure }
        }
        signal = shutdown::signal() => {
            eprintln!("interrupted by {signal}; browser closed");
            ExitStatus::Failure
        }
    };
    // A `page_changed` notification may still be on its way out.
    runner.notifier().close(NOTIFY_GRACE).await;
    status
}

/// `reset-guard ACCOUNT`: clear the lockout guard's facts and say what they were.
async fn reset_guard(config: Arc<Config>, name: &str) -> ExitStatus {
    if let Err(status) = select_accounts(&config, &[name.to_owned()]) {
        return status;
    }
    let runner = match runner(config) {
        Ok(r) => r,
        Err(status) => return status,
    };
    match runner.coordinator().reset_guard(name).await {
        Ok(Some(before)) => {
            let mut what = Vec::new();
            if before.pins_without_code_in_a_row > 0 {
                what.push(format!("{} PIN submission(s) without a code in a row", before.pins_without_code_in_a_row));
            }
            if let (Some(day), n) = (before.pin_day, before.pin_submissions)
                && n > 0
            {
                what.push(format!("{n} PIN submission(s) without a code on {day} (IST)"));
            }
            if let Some(day) = before.pin_rejected_day {
                what.push(format!("the rejected-PIN mark of {day} (IST)"));
            }
            if what.is_empty() {
                println!("{name}: the lockout guard had nothing recorded; nothing to reset");
            } else {
                println!("{name}: lockout guard reset: cleared {}", what.join(", "));
            }
            ExitStatus::Success
        }
        Ok(None) => {
            eprintln!(
                "error: a login of `{name}` is in progress (here or on another replica); try again when it has finished"
            );
            ExitStatus::Failure
        }
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitStatus::Failure
        }
    }
}

async fn run(config: Arc<Config>) -> ExitStatus {
    match daemon::run(config).await {
        Ok(_signal) => ExitStatus::Success,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            match e {
                DaemonError::Setup(_) | DaemonError::Schedule(_) => ExitStatus::Usage,
                DaemonError::Listen { .. } => ExitStatus::Failure,
            }
        }
    }
}
