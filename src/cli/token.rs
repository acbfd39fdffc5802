//! `token [--account NAME]`: print the account's current valid access token on stdout, for scripts
//! (`export UPSTOX_TOKEN=$(upstox-relogin token)`). The one command that prints a token, and only on stdout.
//!
//! "Valid" means unexpired: the freshest document any sink holds whose `expires_at` is still ahead. No request
//! reaches Upstox and no login starts; when nothing valid is held the command says so on stderr and exits 1.

use std::io::Write;

use chrono::Utc;

use super::ExitStatus;
use crate::config::Config;
use crate::error::error_chain;
use crate::run::publish::{Publisher, freshest};

pub async fn token(config: &Config, account: Option<&str>) -> ExitStatus {
    let known: Vec<&str> = config.accounts.iter().map(|a| a.name.as_str()).collect();
    let name = match (account, known.as_slice()) {
        (Some(name), _) if known.contains(&name) => name,
        (Some(name), _) => {
            eprintln!("error: no account named {name:?}; configured: {}", known.join(", "));
            return ExitStatus::Usage;
        }
        (None, [only]) => only,
        (None, _) => {
            eprintln!(
                "error: {} accounts are configured ({}): name one with --account NAME",
                known.len(),
                known.join(", ")
            );
            return ExitStatus::Usage;
        }
    };
    let publisher = match Publisher::new(&config.sinks) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            return ExitStatus::Usage;
        }
    };
    let held = publisher.read(name).await;
    let Some(doc) = freshest(&held, Utc::now()) else {
        eprintln!(
            "error: no valid token for `{name}` in any sink (log in with `upstox-relogin login --account {name}`)"
        );
        return ExitStatus::Failure;
    };
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{}", doc.access_token).and_then(|_| out.flush()) {
        Ok(()) => ExitStatus::Success,
        // A closed pipe: the reader went away; nothing was lost but the output.
        Err(_) => ExitStatus::Failure,
    }
}
