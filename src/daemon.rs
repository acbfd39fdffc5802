//! `run`: the long-running daemon. (Filled in by the daemon work; for now only the shutdown signal.)

/// Resolves on SIGINT or SIGTERM with the signal's name.
pub async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        // Without signal handlers we can only wait forever; the default disposition still stops the process.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

pub async fn run(_config: std::sync::Arc<crate::config::Config>) -> u8 {
    eprintln!("error: `run` is not built yet");
    crate::cli::EXIT_FAILURE
}
