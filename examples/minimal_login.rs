//! The benchmark's baseline: the same Upstox login as `upstox-relogin login`, with only the WebDriver commands it
//! needs and nothing else (no config layers, no state, no lockout guard, no error detection, no retries).
//!
//! `cargo run --release --example minimal_login -- JOB.json` where the job file holds `authorize_url`,
//! `token_url`, `client_id`, `client_secret`, `redirect_uri`, `mobile`, `pin`, `totp_secret`, `output`, and
//! optionally `chromedriver`. It spawns chromedriver on a free port, opens a session with the same Chromium flags
//! as the app, walks mobile → TOTP → PIN, polls the URL for the redirect, POSTs the token exchange once, writes the
//! JSON answer to `output`, closes the session and kills chromedriver. Every step prints
//! `step done step=NAME elapsed_ms=N` on stderr, the app's own step names. Like the benchmark's app config
//! (`totp_min_remaining_secs = 0`), it types the current TOTP window's code whatever time is left in it.
//! `examples/bench.rs` runs it against the app.

use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

/// How often waits re-check their condition: the app's default `browser.poll_interval_ms`.
const POLL: Duration = Duration::from_millis(50);
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(serde::Deserialize)]
struct Job {
    authorize_url: String,
    token_url: String,
    client_id: String,
    client_secret: String,
    redirect_uri: String,
    mobile: String,
    pin: String,
    totp_secret: String,
    output: std::path::PathBuf,
    #[serde(default = "default_chromedriver")]
    chromedriver: String,
}

fn default_chromedriver() -> String {
    "chromedriver".into()
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn done(step: &str, since: Instant) -> Instant {
    eprintln!("step done step={step} elapsed_ms={}", since.elapsed().as_millis());
    Instant::now()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let path = std::env::args().nth(1).ok_or("usage: minimal_login JOB.json")?;
    let job: Job = serde_json::from_slice(&std::fs::read(path)?)?;

    let t = Instant::now();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut driver = tokio::process::Command::new(&job.chromedriver)
        .arg(format!("--port={port}"))
        .arg("--log-level=WARNING")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    // Ready when it accepts connections.
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let profile = tempfile::tempdir()?;
    let client = ClientBuilder::native()
        .capabilities(capabilities(profile.path()))
        .connect(&format!("http://127.0.0.1:{port}"))
        .await?;
    let result = login(&client, &job, t).await;

    let t = Instant::now();
    let closed = client.close().await;
    driver.kill().await?;
    drop(profile);
    done("close", t);
    result?;
    Ok(closed?)
}

/// The app's own capabilities (Chromium flags, start page, page-load strategy) with the default browser settings.
fn capabilities(profile: &std::path::Path) -> serde_json::Map<String, serde_json::Value> {
    let browser = upstox_relogin::config::BrowserConfig {
        webdriver_url: None,
        chromedriver: "chromedriver".into(),
        chrome: None,
        headless: true,
        step_timeout: STEP_TIMEOUT,
        poll_interval: POLL,
        user_agent: None,
        extra_args: Vec::new(),
        selectors: Default::default(),
        max_sessions: 1,
    };
    upstox_relogin::login::browser::capabilities(&browser, Some(profile))
}

async fn wait_for(client: &Client, css: &str) -> Result<fantoccini::elements::Element, Error> {
    Ok(client.wait().at_most(STEP_TIMEOUT).every(POLL).for_element(Locator::Css(css)).await?)
}

async fn login(client: &Client, job: &Job, t: Instant) -> Result<(), Error> {
    let t = done("browser", t);
    let mut url = url::Url::parse(&job.authorize_url)?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &job.client_id)
        .append_pair("redirect_uri", &job.redirect_uri)
        .append_pair("state", "minimal");
    client.goto(url.as_str()).await?;
    let mobile = wait_for(client, "#mobileNum").await?;
    let t = done("dialog", t);

    mobile.send_keys(&job.mobile).await?;
    wait_for(client, "#getOtp:not([disabled])").await?.click().await?;
    let otp = wait_for(client, "#otpNum").await?;
    let t = done("mobile", t);

    let secret = totp_rs::Secret::try_from_base32(&job.totp_secret).map_err(|e| format!("totp_secret: {e:?}"))?;
    let totp = totp_rs::Builder::new().with_secret(secret).build_noncompliant();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    otp.send_keys(&totp.generate(now).to_string()).await?;
    wait_for(client, "#continueBtn:not([disabled])").await?.click().await?;
    let pin = wait_for(client, "#pinCode").await?;
    let t = done("otp", t);

    pin.send_keys(&job.pin).await?;
    wait_for(client, "#pinContinueBtn:not([disabled])").await?.click().await?;
    let deadline = Instant::now() + STEP_TIMEOUT;
    let code = loop {
        let current = client.current_url().await?;
        if current.as_str().starts_with(&job.redirect_uri)
            && let Some((_, code)) = current.query_pairs().find(|(k, _)| k == "code")
        {
            break code.into_owned();
        }
        if Instant::now() > deadline {
            return Err("no redirect after the PIN".into());
        }
        tokio::time::sleep(POLL).await;
    };
    let t = done("pin", t);

    let response = reqwest::Client::new()
        .post(&job.token_url)
        .header("accept", "application/json")
        .form(&[
            ("code", code.as_str()),
            ("client_id", &job.client_id),
            ("client_secret", &job.client_secret),
            ("redirect_uri", &job.redirect_uri),
            ("grant_type", "authorization_code"),
        ])
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    let t = done("exchange", t);
    std::fs::write(&job.output, &response)?;
    done("write", t);
    Ok(())
}
