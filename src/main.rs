//! `upstox-relogin`: parse the command line, set up logging, run the command, exit with its code.

use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let cli = upstox_relogin::cli::Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,hyper=warn,reqwest=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // One thread: a login is a sequence of awaits on chromedriver and the daemon idles between them; every extra
    // worker thread costs resident memory (stack, malloc arena) for nothing.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(upstox_relogin::cli::EXIT_FAILURE);
        }
    };
    runtime.block_on(upstox_relogin::cli::execute(cli))
}
