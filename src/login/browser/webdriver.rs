//! One browser for one login: spawn (or reach) a WebDriver server, open a Chromium session with a fresh profile,
//! and tear everything down again.
//!
//! Teardown is ordered (`close`): delete the session (Chromium quits), SIGTERM the chromedriver process group,
//! SIGKILL it after a grace period, remove the profile dir. If the future owning a `Browser` is dropped instead
//! (cancellation, a deadline), `Drop` SIGKILLs the process group and removes the profile synchronously, so no
//! path leaves a browser behind. This module knows nothing about Upstox's pages.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fantoccini::error::NewSessionError;
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;

use super::BrowserError;
use crate::config::BrowserConfig;

/// Name prefix of our Chromium profile dirs under the temp dir: `upstox-relogin-<pid>-<random>`.
const PROFILE_PREFIX: &str = "upstox-relogin-";
/// How long chromedriver may take to answer `/status` with `ready: true`.
const DRIVER_READY_TIMEOUT: Duration = Duration::from_secs(15);
/// Grace period between SIGTERM and SIGKILL for the chromedriver process group.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// Bytes of chromedriver's stderr kept for error messages.
const LOG_TAIL_BYTES: usize = 8 * 1024;

/// A live WebDriver session plus whatever we spawned for it.
pub struct Browser {
    client: Option<Client>,
    driver: Option<SpawnedDriver>,
    profile: Option<tempfile::TempDir>,
}

struct SpawnedDriver {
    child: tokio::process::Child,
    /// The process group chromedriver leads; Chromium and its helpers inherit it.
    pgid: i32,
    log_tail: Arc<Mutex<Vec<u8>>>,
}

impl Browser {
    /// Start chromedriver (unless `webdriver_url` is set) and open a session.
    pub async fn start(config: &BrowserConfig) -> Result<Browser, BrowserError> {
        let mut browser = Browser { client: None, driver: None, profile: None };
        let webdriver_url = match &config.webdriver_url {
            Some(url) => url.clone(),
            None => {
                // One dir per login holds the Chromium profile and the TMPDIR of chromedriver and Chromium (their
                // scoped dirs), so removing it removes everything they wrote.
                let scratch = tempfile::Builder::new()
                    .prefix(&format!("{PROFILE_PREFIX}{}-", std::process::id()))
                    .tempdir()
                    .map_err(|source| BrowserError::Profile { source })?;
                for sub in ["profile", "tmp"] {
                    std::fs::create_dir(scratch.path().join(sub)).map_err(|source| BrowserError::Profile { source })?;
                }
                let tmp = scratch.path().join("tmp");
                browser.profile = Some(scratch);
                let (driver, url) = spawn_chromedriver(&config.chromedriver, &tmp).await?;
                browser.driver = Some(driver);
                url
            }
        };
        let profile = browser.profile.as_ref().map(|p| p.path().join("profile"));
        let capabilities = capabilities(config, profile.as_deref());
        let connected = if browser.driver.is_some() {
            // Our own chromedriver speaks plain HTTP on loopback: no TLS context (OpenSSL set-up costs ~40 ms).
            ClientBuilder::new(HttpConnector::new()).capabilities(capabilities).connect(webdriver_url.as_str()).await
        } else {
            ClientBuilder::native().capabilities(capabilities).connect(webdriver_url.as_str()).await
        };
        match connected {
            Ok(client) => {
                browser.client = Some(client);
                Ok(browser)
            }
            Err(source) => {
                let log_tail = browser.driver.as_ref().map(|d| d.log_tail()).unwrap_or_default();
                browser.close().await;
                let webdriver = webdriver_url.to_string();
                Err(match source {
                    NewSessionError::Failed(_) | NewSessionError::FailedC(_) | NewSessionError::Lost(_) => {
                        let hint = if config.webdriver_url.is_some() {
                            " (is it running? `browser.webdriver_url`; leave it empty to spawn chromedriver)"
                        } else {
                            ""
                        };
                        BrowserError::DriverUnreachable { webdriver, hint, source: Box::new(source) }
                    }
                    source => BrowserError::Session { webdriver, source: Box::new(source), log_tail },
                })
            }
        }
    }

    pub fn client(&self) -> &Client {
        // invariant: `client` is Some from a successful `start` until `close` consumes the Browser
        self.client.as_ref().expect("browser session is open")
    }

    /// Ordered teardown; never fails (problems are logged).
    pub async fn close(mut self) {
        if let Some(client) = self.client.take()
            && let Err(e) = tokio::time::timeout(Duration::from_secs(10), client.close())
                .await
                .unwrap_or_else(|_| Err(fantoccini::error::CmdError::NotJson("timed out deleting the session".into())))
        {
            tracing::debug!(error = %e, "closing the WebDriver session failed; killing the driver");
        }
        if let Some(mut driver) = self.driver.take() {
            driver.terminate().await;
        }
        if let Some(profile) = self.profile.take() {
            remove_profile(profile);
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Reached with something still open only when the owning future was dropped mid-login.
        if let Some(driver) = self.driver.take() {
            kill_group(driver.pgid, libc::SIGKILL);
        }
        if let Some(profile) = self.profile.take() {
            remove_profile(profile);
        }
    }
}

fn remove_profile(profile: tempfile::TempDir) {
    let path = profile.path().to_path_buf();
    if let Err(e) = profile.close() {
        tracing::warn!(path = %path.display(), error = %e, "could not remove the browser profile dir");
    }
}

/// The session's capabilities: Chromium's flags (those a root, offline, headless machine needs), the start page,
/// the page-load strategy. Public so the benchmark's baseline program starts the very same browser.
pub fn capabilities(config: &BrowserConfig, profile: Option<&Path>) -> serde_json::Map<String, serde_json::Value> {
    let mut args: Vec<String> = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        "--disable-extensions",
        "--disable-breakpad",
        "--disable-default-apps",
        "--no-default-browser-check",
        "--window-size=1280,900",
    ]
    .map(String::from)
    .to_vec();
    if config.headless {
        args.insert(0, "--headless=new".into());
    }
    if let Some(profile) = profile {
        args.push(format!("--user-data-dir={}", profile.display()));
    }
    if let Some(ua) = &config.user_agent {
        args.push(format!("--user-agent={ua}"));
    }
    args.extend(config.extra_args.iter().cloned());
    let mut chrome = json!({
        "args": args,
        // Start on about:blank, not the new-tab page: chromedriver waits for the start page to settle before the
        // first `goto`, and the new-tab page loads the search engine's start page from the internet (1–10 s when
        // that is slow or unreachable). A startup URL cannot be passed in `args`: chromedriver prefixes it with `--`.
        "prefs": { "session": { "restore_on_startup": 4, "startup_urls": ["about:blank"] } },
    });
    if let Some(binary) = &config.chrome {
        chrome["binary"] = json!(binary.display().to_string());
    }
    let caps = json!({
        "browserName": "chrome",
        // Return from navigation as soon as the DOM is parsed: every step waits for its own elements anyway.
        "pageLoadStrategy": "eager",
        "goog:chromeOptions": chrome,
    });
    match caps {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("json! object literal"),
    }
}

async fn spawn_chromedriver(binary: &Path, tmp: &Path) -> Result<(SpawnedDriver, Url), BrowserError> {
    let port = free_port().map_err(|source| BrowserError::DriverSpawn { binary: binary.to_path_buf(), source })?;
    let mut child = tokio::process::Command::new(binary)
        .arg(format!("--port={port}"))
        // Only warnings: the INFO log would record every command, typed keys included.
        .arg("--log-level=WARNING")
        .env("TMPDIR", tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| BrowserError::DriverSpawn { binary: binary.to_path_buf(), source })?;
    let pgid = child.id().map(|id| id as i32).unwrap_or(0);
    let log_tail = Arc::new(Mutex::new(Vec::new()));
    if let Some(mut stderr) = child.stderr.take() {
        let tail = Arc::clone(&log_tail);
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let mut t = tail.lock().unwrap_or_else(|p| p.into_inner());
                t.extend_from_slice(&buf[..n]);
                let excess = t.len().saturating_sub(LOG_TAIL_BYTES);
                t.drain(..excess);
            }
        });
    }
    let mut driver = SpawnedDriver { child, pgid, log_tail };
    let url = Url::parse(&format!("http://127.0.0.1:{port}/")).expect("valid loopback URL");
    if let Err(e) = wait_ready(&mut driver, &url, binary).await {
        driver.terminate().await;
        return Err(e);
    }
    Ok((driver, url))
}

/// Poll `GET /status` until chromedriver says `ready`, or it exits, or the timeout passes.
async fn wait_ready(driver: &mut SpawnedDriver, url: &Url, binary: &Path) -> Result<(), BrowserError> {
    let started = Instant::now();
    let mut interval = tokio::time::interval(Duration::from_millis(5));
    loop {
        interval.tick().await;
        if let Ok(Some(exit)) = driver.child.try_wait() {
            return Err(BrowserError::DriverExited {
                binary: binary.to_path_buf(),
                status: exit.to_string(),
                log_tail: driver.log_tail(),
            });
        }
        if let Ok(Some(body)) = tokio::time::timeout(Duration::from_secs(2), get_status(url)).await
            && body["value"]["ready"] == json!(true)
        {
            return Ok(());
        }
        if started.elapsed() > DRIVER_READY_TIMEOUT {
            return Err(BrowserError::DriverNotReady {
                url: url.to_string(),
                waited: DRIVER_READY_TIMEOUT,
                log_tail: driver.log_tail(),
            });
        }
    }
}

/// `GET /status` on our loopback chromedriver, as JSON; `None` while it does not answer yet. A few lines of
/// HTTP/1.1 instead of an HTTP client, which would set up TLS (~40 ms) for a plain-HTTP probe. chromedriver keeps
/// the connection open (it ignores `Connection: close`), so the body is read by its `Content-Length`.
async fn get_status(url: &Url) -> Option<serde_json::Value> {
    let port = url.port()?;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    stream.write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n").await.ok()?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).ok()?;
            let length = head.lines().find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.trim().eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
            })?;
            if buf.len() >= end + 4 + length {
                return serde_json::from_slice(&buf[end + 4..end + 4 + length]).ok();
            }
        }
        if stream.read_buf(&mut buf).await.ok()? == 0 || buf.len() > 64 * 1024 {
            return None;
        }
    }
}

impl SpawnedDriver {
    fn log_tail(&self) -> String {
        let t = self.log_tail.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&t).trim().to_owned()
    }

    /// SIGTERM the whole group, wait for chromedriver to exit, SIGKILL the group after the grace period.
    async fn terminate(&mut self) {
        kill_group(self.pgid, libc::SIGTERM);
        if tokio::time::timeout(KILL_GRACE, self.child.wait()).await.is_err() {
            tracing::debug!(pgid = self.pgid, "chromedriver ignored SIGTERM; sending SIGKILL");
        }
        // Chromium helpers may outlive chromedriver's exit: the group gets SIGKILL either way.
        kill_group(self.pgid, libc::SIGKILL);
        let _ = self.child.wait().await;
    }
}

fn kill_group(pgid: i32, signal: i32) {
    if pgid > 0 {
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is touched.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// Remove profile dirs left by processes of ours that no longer run (a crash or SIGKILL skips `Drop`).
pub fn sweep_stale_profiles() -> usize {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PROFILE_PREFIX) else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else { continue };
        // SAFETY: kill(pid, 0) only checks that the process exists.
        let alive =
            unsafe { libc::kill(pid, 0) } == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if !alive && std::fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// The profile dir prefix, for tests that check nothing is left behind.
pub fn profile_prefix() -> PathBuf {
    std::env::temp_dir().join(PROFILE_PREFIX)
}
