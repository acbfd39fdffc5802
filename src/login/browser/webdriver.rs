//! One browser for one login: spawn (or reach) a WebDriver server, open a Chromium session with a fresh profile,
//! and tear everything down again.
//!
//! With our own chromedriver (`process`), teardown is a SIGKILL of the login's process group: nothing in a
//! throwaway profile is worth a graceful quit, and it costs ~15–30 ms where deleting the session costs ~150–220 ms.
//! Once the code is in hand, `kill` stops the browser at once and `close` (run in the background) reaps it, frees
//! the browser slot and deletes the scratch dir. A remote WebDriver (a Selenium Grid) gets `DELETE /session`, the
//! only way its slot frees. If the future owning a `Browser` is dropped instead (cancellation, a deadline), `Drop`
//! SIGKILLs the group and removes the dir synchronously, so no path leaves a browser behind. The browser slot (a
//! permit of `browser.max_sessions`) is held until the processes are gone. This module knows nothing about
//! Upstox's pages.

use std::path::Path;
use std::time::{Duration, Instant};

use fantoccini::error::NewSessionError;
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OwnedSemaphorePermit;
use url::Url;

use super::BrowserError;
use super::process::{Scratch, SpawnedDriver};
use crate::config::BrowserConfig;

/// How long chromedriver may take to answer `/status` with `ready: true`.
const DRIVER_READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long deleting a remote session may take.
const DELETE_SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// A live WebDriver session plus whatever we spawned for it.
pub struct Browser {
    client: Option<Client>,
    driver: Option<SpawnedDriver>,
    scratch: Option<Scratch>,
    /// One of `browser.max_sessions` permits, released once the browser's processes are gone (or its remote
    /// session deleted).
    slot: Option<OwnedSemaphorePermit>,
}

impl Browser {
    /// Start chromedriver (unless `webdriver_url` is set) and open a session; `slot` is held until teardown.
    pub async fn start(config: &BrowserConfig, slot: Option<OwnedSemaphorePermit>) -> Result<Browser, BrowserError> {
        let mut browser = Browser { client: None, driver: None, scratch: None, slot };
        let webdriver_url = match &config.webdriver_url {
            Some(url) => url.clone(),
            None => {
                // One dir per login holds the Chromium profile and the TMPDIR of chromedriver and Chromium (their
                // scoped dirs), so removing it removes everything they wrote.
                let scratch = Scratch::create()?;
                let port = free_port()
                    .map_err(|source| BrowserError::DriverSpawn { binary: config.chromedriver.clone(), source })?;
                let driver = SpawnedDriver::spawn(&config.chromedriver, port, &scratch);
                browser.scratch = Some(scratch);
                browser.driver = Some(driver?);
                let url = Url::parse(&format!("http://127.0.0.1:{port}/")).expect("valid loopback URL");
                let ready = match browser.driver.as_mut() {
                    Some(driver) => wait_ready(driver, &url, &config.chromedriver).await,
                    None => Ok(()),
                };
                if let Err(e) = ready {
                    browser.close().await;
                    return Err(e);
                }
                url
            }
        };
        let profile = browser.scratch.as_ref().map(Scratch::profile);
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

    /// Stop our own browser processes now (SIGKILL of the group, no waiting): nothing more is needed from them.
    /// `close` still has to run (it reaps them, frees the slot, removes the dir). No-op for a remote WebDriver.
    pub fn kill(&self) {
        if let Some(driver) = &self.driver {
            driver.kill();
        }
    }

    /// Teardown; never fails (problems are logged). Own chromedriver: SIGKILL the group and wait until its
    /// processes are gone; remote WebDriver: delete the session. Then free the slot and remove the scratch dir.
    pub async fn close(mut self) {
        let started = Instant::now();
        let client = self.client.take();
        if let Some(driver) = self.driver.take() {
            // The session dies with chromedriver; keep fantoccini from sending `DELETE /session` to a dead port.
            if let Some(client) = client {
                let _ = client.persist().await;
            }
            driver.terminate().await;
        } else if let Some(client) = client {
            let closed = tokio::time::timeout(DELETE_SESSION_TIMEOUT, client.close()).await;
            if !matches!(closed, Ok(Ok(()))) {
                tracing::warn!("could not delete the remote WebDriver session; the grid frees it at its own timeout");
            }
        }
        drop(self.slot.take());
        if let Some(scratch) = self.scratch.take() {
            // Deleting a used profile takes ~0.1–0.4 s of file-system work: off the runtime's thread.
            if tokio::task::spawn_blocking(move || scratch.remove()).await.is_err() {
                tracing::warn!("removing the browser profile dir panicked");
            }
        }
        tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "browser closed");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Reached with something still open only when the owning future was dropped mid-login.
        if let Some(driver) = self.driver.take() {
            driver.kill();
        }
        if let Some(scratch) = self.scratch.take() {
            scratch.remove();
        }
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

/// Poll `GET /status` until chromedriver says `ready`, or it exits, or the timeout passes.
async fn wait_ready(driver: &mut SpawnedDriver, url: &Url, binary: &Path) -> Result<(), BrowserError> {
    let started = Instant::now();
    let mut interval = tokio::time::interval(Duration::from_millis(5));
    loop {
        interval.tick().await;
        if let Some(exit) = driver.exited() {
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

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}
