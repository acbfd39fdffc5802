//! `upstox-relogin`: parse the command line, set up logging, run the command, exit with its code.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use upstox_relogin::cli::{self, ExitStatus};
use upstox_relogin::config::LogFormat;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // Commands that only print (`status | head -1`): a closed stdout ends them quietly, as it ends `cat`, instead of
    // a panic in `println!`. Not for commands that drive a browser or serve: they must never die half-way on a pipe.
    if matches!(
        cli.command,
        cli::Command::Status { .. } | cli::Command::CheckConfig { .. } | cli::Command::Token { .. }
    ) {
        // SAFETY: restores the default disposition of one signal before any thread exists.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let console = cli::Console::default();
    // Our own events at INFO, libraries' (cron scheduler, HTTP, WebDriver) only from WARN; RUST_LOG overrides.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,upstox_relogin=info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(console.clone()).with_target(false);
    match cli::log_format(&cli) {
        // One object per line: the event's fields at the top level, the enclosing span's (e.g. `account`) under "span".
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(true).with_span_list(false).init(),
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
    }
    // One malloc arena: the blocking-pool threads (file sink writes, building the API client's TLS context, profile
    // removal) would otherwise each get an arena whose pages stay resident in an idle daemon (measured: 0.5 MiB of
    // the idle RSS after a login), and they never contend enough for a second arena to pay.
    // SAFETY: only sets an allocator tunable; called before the runtime starts any thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    // One thread: a login is a sequence of awaits on chromedriver and the daemon idles between them; every extra
    // worker thread costs resident memory (stack, malloc arena) for nothing.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitStatus::Failure.into();
        }
    };
    runtime.block_on(cli::execute(cli, console)).into()
}
