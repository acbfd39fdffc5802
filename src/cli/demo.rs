//! The two commands that use the built-in simulator: `demo` (a full login against it in-process, the first thing a
//! new user runs) and `simulate` (serve it for a rehearsal and print a config that works against it).
//!
//! Both use the real browser path and the real token exchange; only the Upstox side is simulated.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::ExitStatus;
use crate::error::error_chain;
use crate::metrics::Metrics;
use crate::run::{Runner, Trigger, WhenValid};
use crate::shutdown;
use crate::simulator::{ConfigFile, Faults, SimConfig, Simulator};

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:8700")]
    pub listen: SocketAddr,
    /// `state_dir` written into the printed config.
    #[arg(long, default_value = "./upstox-relogin-sim-state")]
    pub state_dir: PathBuf,
    /// Simulated accounts, each with its own app (client id, secret), mobile, PIN and TOTP secret; the printed
    /// config has one `[[accounts]]` per account (`demo-1`, `demo-2`, … when more than one).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub accounts: u16,
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
    /// Where an approved v3 access-token request's token is POSTed (the app's notifier webhook).
    #[arg(long, default_value = "http://127.0.0.1:8787/upstox/notifier")]
    pub notifier_url: String,
    /// The account holder approves a v3 access-token request by themselves this long after it arrives (else only
    /// `POST /sim/approve/{client_id}` approves).
    #[arg(long)]
    pub approve_after_ms: Option<u64>,
    /// Fault: the account holder never approves a v3 access-token request.
    #[arg(long)]
    pub never_approve: bool,
    /// Page habit: every id and class of the login page renamed, labels kept (a redesign).
    #[arg(long)]
    pub renamed_ids: bool,
    /// Page habit: errors as a toast appended to the page, "<message> [<7-digit code>]".
    #[arg(long)]
    pub toast_errors: bool,
    /// Page habit: errors as plain text next to the input (no role=alert).
    #[arg(long)]
    pub plain_errors: bool,
    /// Page habit: the OTP input masked as ddd-ddd.
    #[arg(long)]
    pub masked_otp: bool,
    /// Page habit: "OTP sent to your registered mobile number" after the mobile step.
    #[arg(long)]
    pub info_toast_after_mobile: bool,
    /// Page habit: the PIN input stays disabled this long after it appears.
    #[arg(long, default_value_t = 0)]
    pub pin_input_disabled_ms: u64,
    /// Page habit: an unknown "confirm your device" page after a correct PIN, no code.
    #[arg(long)]
    pub interstitial_after_pin: bool,
    /// Page habit: OTP blocked for 10 minutes [1017078].
    #[arg(long)]
    pub otp_blocked: bool,
    /// Page habit: the dialog answers UDAPI100068 (a wrong client_id/redirect_uri).
    #[arg(long = "dialog-udapi100068")]
    pub dialog_udapi100068: bool,
}

/// `simulate`: serve until SIGINT/SIGTERM.
pub async fn simulate(args: SimulateArgs) -> ExitStatus {
    let mut config = SimConfig::demo_accounts(usize::from(args.accounts));
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
        approve_after_ms: args.approve_after_ms,
        never_approve: args.never_approve,
        renamed_ids: args.renamed_ids,
        toast_errors: args.toast_errors,
        plain_errors: args.plain_errors,
        masked_otp: args.masked_otp,
        info_toast_after_mobile: args.info_toast_after_mobile,
        pin_input_disabled_ms: args.pin_input_disabled_ms,
        interstitial_after_pin: args.interstitial_after_pin,
        otp_blocked: args.otp_blocked,
        dialog_udapi100068: args.dialog_udapi100068,
        ..Faults::default()
    };
    for client in &mut config.clients {
        client.notifier_url = Some(args.notifier_url.clone());
    }
    let sim = match Simulator::start(config, args.listen).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot listen on `{}`: {e}", args.listen);
            return ExitStatus::Usage;
        }
    };
    println!("# Upstox simulator listening on {}", sim.base_url());
    println!("# Save this as sim.toml, then: upstox-relogin --config sim.toml login");
    println!(
        "# Browser-free: add method = \"token-request\" to the account; approve with POST {}sim/approve/<client_id>",
        sim.base_url()
    );
    println!("# (or start with --approve-after-ms 500); the token goes to {}\n", args.notifier_url);
    // Sink paths must be absolute (a daemon's working directory is rarely the shell's).
    let state_dir = std::path::absolute(&args.state_dir).unwrap_or_else(|_| args.state_dir.clone());
    let token_path = state_dir.join("{account}.json").display().to_string();
    println!(
        "{}",
        sim.config_toml(&ConfigFile { state_dir: &state_dir, token_path: &token_path, account_name: "demo" })
    );
    let signal = shutdown::signal().await;
    eprintln!("stopping the simulator ({signal})");
    sim.shutdown().await;
    ExitStatus::Success
}

/// `demo`: simulator in-process, one real browser login, the document written to `output`.
pub async fn run(output: &Path) -> ExitStatus {
    let sim = match Simulator::start(SimConfig::demo(), SocketAddr::from(([127, 0, 0, 1], 0))).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot start the simulator: {e}");
            return ExitStatus::Failure;
        }
    };
    let state_dir = match tempfile::Builder::new().prefix("upstox-relogin-demo-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: cannot create a temporary state dir: {e}");
            return ExitStatus::Failure;
        }
    };
    let token_path = std::path::absolute(output).unwrap_or_else(|_| output.to_path_buf()).display().to_string();
    let toml =
        sim.config_toml(&ConfigFile { state_dir: state_dir.path(), token_path: &token_path, account_name: "demo" });
    // One attempt: a demo that fails should say why at once, not retry.
    let config = match crate::config::load_str(&format!("{toml}\n[login]\nmax_attempts = 1\n")) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("error: the demo's own config is invalid (a bug): {e}");
            return ExitStatus::Failure;
        }
    };
    println!("Upstox simulator on {} (demo credentials generated for this run)", sim.base_url());
    println!("Logging in through headless Chromium: dialog → mobile → TOTP → PIN → redirect → token exchange …");
    let runner = match Runner::new(Arc::clone(&config), Arc::new(Metrics::new())) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            return ExitStatus::Failure;
        }
    };
    let account = &config.accounts[0];
    let result = tokio::select! {
        r = runner.run(account, WhenValid::LogIn, Trigger::Command) => r,
        signal = shutdown::signal() => {
            eprintln!("interrupted by {signal}");
            return ExitStatus::Failure;
        }
    };
    runner.settle().await;
    sim.shutdown().await;
    match result {
        Ok(outcome) => {
            println!("{}: {outcome}", account.name);
            println!("Token document: {}", output.display());
            println!(
                "Next: copy config.toml.example to config.toml, fill in your Upstox app and account, run `upstox-relogin login`."
            );
            ExitStatus::Success
        }
        Err(e) => {
            eprintln!("demo login FAILED: {}", error_chain(&e));
            ExitStatus::Failure
        }
    }
}
