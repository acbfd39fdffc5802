//! Pre-flight checks: what must work before a login starts a browser, so that a problem costs nothing instead of a
//! spent code and a thrown-away token. Every sink proves it can take a document (`Sink::preflight`), and the
//! WebDriver side is found (`chromedriver` resolvable, or `browser.webdriver_url` answering).
//!
//! Used by every run (sinks) and by `check-config --online` (everything). Never types or submits anything.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::future::join_all;

use crate::config::BrowserConfig;
use crate::sink::{Sink, SinkError};

/// How long `check-config --online` waits for a configured WebDriver server's `/status`.
const WEBDRIVER_STATUS_TIMEOUT: Duration = Duration::from_secs(5);

/// Pre-flight every sink for `account`, concurrently. `Err`: the sinks that failed, by label.
pub async fn sinks(sinks: &[Sink], account: &str) -> Result<(), Vec<(String, SinkError)>> {
    let checks = sinks.iter().map(|s| async move { s.preflight(account).await.map_err(|e| (s.label(), e)) });
    let failures: Vec<_> = join_all(checks).await.into_iter().filter_map(Result::err).collect();
    if failures.is_empty() { Ok(()) } else { Err(failures) }
}

/// What `check-config --online` found missing on the WebDriver side.
#[derive(Debug, thiserror::Error)]
pub enum DriverProblem {
    #[error(
        "`{}` is not an executable file on PATH (install it: apt-get install chromium-driver, or set the path)",
        .0.display()
    )]
    ChromedriverMissing(PathBuf),
    #[error("the WebDriver server at `{url}` did not answer `/status` within {WEBDRIVER_STATUS_TIMEOUT:?}: {reason}")]
    WebDriverUnreachable { url: String, reason: String },
}

impl DriverProblem {
    /// The config key a human fixes.
    pub fn key(&self) -> &'static str {
        match self {
            DriverProblem::ChromedriverMissing(_) => "browser.chromedriver",
            DriverProblem::WebDriverUnreachable { .. } => "browser.webdriver_url",
        }
    }
}

/// Find the WebDriver side: the `chromedriver` we would spawn, or the configured server answering `/status`.
pub async fn webdriver(config: &BrowserConfig) -> Result<(), DriverProblem> {
    match &config.webdriver_url {
        None => find_executable(&config.chromedriver)
            .map(drop)
            .ok_or_else(|| DriverProblem::ChromedriverMissing(config.chromedriver.clone())),
        Some(url) => {
            let status = url.join("status").unwrap_or_else(|_| url.clone());
            let unreachable = |reason: String| DriverProblem::WebDriverUnreachable { url: url.to_string(), reason };
            let client = reqwest::Client::builder()
                .timeout(WEBDRIVER_STATUS_TIMEOUT)
                .build()
                .map_err(|e| unreachable(e.to_string()))?;
            let response = client.get(status).send().await.map_err(|e| unreachable(crate::error::error_chain(&e)))?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(unreachable(format!("HTTP {}", response.status().as_u16())))
            }
        }
    }
}

/// `binary` as the OS would run it: a path (containing `/`) that is an executable file, or the first executable
/// file of that name on `PATH`.
pub fn find_executable(binary: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if binary.components().count() > 1 || binary.is_absolute() {
        return executable(binary).then(|| binary.to_path_buf());
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths).map(|dir| dir.join(binary)).find(|p| executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executables_are_found_on_path_or_by_path() {
        assert!(find_executable(Path::new("sh")).is_some());
        assert!(find_executable(Path::new("/bin/sh")).is_some());
        assert!(find_executable(Path::new("no-such-binary-here")).is_none());
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("chromedriver");
        std::fs::write(&plain, "#!/bin/sh\n").unwrap();
        assert!(find_executable(&plain).is_none(), "a file without execute bits");
    }
}
