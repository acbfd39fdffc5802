//! The stop signal: SIGINT, SIGTERM or SIGHUP, as one future (mini-redis `shutdown.rs`). Commands `select!` on it
//! so that work in progress is dropped, and browsers torn down, before the process exits.
//!
//! SIGHUP is a stop like SIGTERM (the daemon exits 0 after a clean stop): without a handler its default action
//! would end the process on the spot, browser and all — a closed terminal or a stray `kill -HUP` must not do that.
//! It does not reload the configuration: restart the daemon for that.

/// The signal that asked us to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
    Hangup,
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
            Signal::Hangup => "SIGHUP",
        })
    }
}

/// Resolves on SIGINT, SIGTERM or SIGHUP.
pub async fn signal() -> Signal {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup()))
    else {
        // Without handlers the default disposition still stops the process; nothing to wait for here.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => Signal::Terminate,
        _ = int.recv() => Signal::Interrupt,
        _ = hup.recv() => Signal::Hangup,
    }
}
