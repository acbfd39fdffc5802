//! The two commands that use the built-in simulator: `demo` (a full login against it in-process, the first thing a
//! new user runs) and `simulate` (serve it for a rehearsal and print a config that works against it).
//!
//! Both use the real browser path and the real token exchange; only the Upstox side is simulated.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cli::{EXIT_FAILURE, EXIT_OK, EXIT_USAGE, describe};
use crate::config::{RawAccount, RawConfig, RawSink};
use crate::metrics::Metrics;
use crate::relogin::{Relogin, error_chain};
use crate::simulator::{Faults, SimConfig, Simulator};

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:8700")]
    pub listen: SocketAddr,
    /// `state_dir` written into the printed config.
    #[arg(long, default_value = "./upstox-relogin-sim-state")]
    pub state_dir: PathBuf,
    /// Fault: the first N token requests answer 503 (the code is still spent).
    #[arg(long, default_value_t = 0)]
    pub token_5xx_first: u32,
    /// Fault: every backend call of the login page waits this long.
    #[arg(long, default_value_t = 0)]
    pub step_delay_ms: u64,
    /// Fault: the first valid TOTP is answered "Invalid OTP".
    #[arg(long)]
    pub reject_first_totp: bool,
    /// Fault: serve a Cloudflare-style "Access denied" page instead of the login app.
    #[arg(long)]
    pub bot_block: bool,
    /// Fault: block the account after this many wrong PINs (Upstox: 5).
    #[arg(long, default_value_t = 5)]
    pub pin_lock_after: u32,
    /// Fault: the final redirect carries a `state` other than the one sent (a forged redirect).
    #[arg(long)]
    pub tamper_state: bool,
    /// Fault: after a correct PIN, a Cloudflare "Access denied" page instead of the redirect.
    #[arg(long)]
    pub bot_block_after_pin: bool,
    /// Fault: the PIN is answered this much later (longer than `browser.step_timeout_secs`: an unknown outcome).
    #[arg(long, default_value_t = 0)]
    pub pin_delay_ms: u64,
    /// Fault: every `Date` header is this many seconds off (the clock-skew warning).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub date_skew_secs: i64,
}

/// `simulate`: serve until SIGINT/SIGTERM.
pub async fn simulate(args: SimulateArgs) -> u8 {
    let mut config = SimConfig::demo();
    config.faults = Faults {
        token_5xx_first: args.token_5xx_first,
        step_delay_ms: args.step_delay_ms,
        reject_first_totp: args.reject_first_totp,
        bot_block: args.bot_block,
        pin_lock_after: args.pin_lock_after,
        tamper_state: args.tamper_state,
        bot_block_after_pin: args.bot_block_after_pin,
        pin_delay_ms: args.pin_delay_ms,
        date_skew_secs: args.date_skew_secs,
        ..Faults::default()
    };
    let sim = match Simulator::start(config, args.listen).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot listen on `{}`: {e}", args.listen);
            return EXIT_USAGE;
        }
    };
    println!("# Upstox simulator listening on {}", sim.base_url());
    println!("# Save this as sim.toml, then: upstox-relogin --config sim.toml login\n");
    println!("{}", sim.config_snippet(&args.state_dir));
    let signal = crate::daemon::shutdown_signal().await;
    eprintln!("stopping the simulator ({signal})");
    sim.shutdown().await;
    EXIT_OK
}

/// `demo`: simulator in-process, one real browser login, the document written to `output`.
pub async fn run(output: &Path) -> u8 {
    let sim = match Simulator::start(SimConfig::demo(), SocketAddr::from(([127, 0, 0, 1], 0))).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot start the simulator: {e}");
            return EXIT_FAILURE;
        }
    };
    let state_dir = match tempfile::Builder::new().prefix("upstox-relogin-demo-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: cannot create a temporary state dir: {e}");
            return EXIT_FAILURE;
        }
    };
    let raw = demo_config(&sim, state_dir.path(), output);
    let config = match raw.validate() {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("error: the demo's own config is invalid (a bug): {e}");
            return EXIT_FAILURE;
        }
    };
    println!("Upstox simulator on {} (demo credentials generated for this run)", sim.base_url());
    println!("Logging in through headless Chromium: dialog → mobile → TOTP → PIN → redirect → token exchange …");
    let relogin = match Relogin::new(Arc::clone(&config), Arc::new(Metrics::new())) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            return EXIT_FAILURE;
        }
    };
    let account = &config.accounts[0];
    let result = tokio::select! {
        r = relogin.run(account, true) => r,
        signal = crate::daemon::shutdown_signal() => {
            eprintln!("interrupted by {signal}");
            return EXIT_FAILURE;
        }
    };
    sim.shutdown().await;
    match result {
        Ok(outcome) => {
            println!("{}: {}", account.name, describe(&outcome));
            println!("Token document: {}", output.display());
            println!(
                "Next: copy config.toml.example to config.toml, fill in your Upstox app and account, run `upstox-relogin login`."
            );
            EXIT_OK
        }
        Err(e) => {
            eprintln!("demo login FAILED: {}", error_chain(&e));
            EXIT_FAILURE
        }
    }
}

fn demo_config(sim: &Simulator, state_dir: &Path, output: &Path) -> RawConfig {
    let sc = sim.config();
    let (client, user) = (&sc.clients[0], &sc.users[0]);
    let mut raw = RawConfig { state_dir: state_dir.to_path_buf(), ..RawConfig::default() };
    raw.upstox.authorize_url = sim.authorize_url().to_string();
    raw.upstox.api_base_url = sim.base_url().to_string();
    raw.login.max_attempts = 1;
    raw.accounts = vec![RawAccount {
        name: "demo".into(),
        client_id: client.client_id.clone(),
        redirect_uri: client.redirect_uri.clone(),
        mobile: user.mobile.clone(),
        client_secret: Some(client.client_secret.clone()),
        pin: Some(user.pin.clone()),
        totp_secret: Some(user.totp_secret.clone()),
        ..RawAccount::default()
    }];
    raw.sinks = vec![RawSink::File { path: output.display().to_string() }];
    raw
}
