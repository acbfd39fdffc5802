//! `run` against the simulator: start-up catch-up, cron ticks in Asia/Kolkata, the four endpoints, no overlapping
//! runs, and a clean stop on SIGTERM with no browser left.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{Rig, free_port, http_get, wait_for};
use upstox_relogin::simulator::Faults;

struct Daemon {
    child: tokio::process::Child,
    base: String,
    log: std::path::PathBuf,
}

impl Daemon {
    async fn start(rig: &Rig, schedule: &str) -> Daemon {
        let port = free_port();
        let top = format!("[server]\nlisten = \"127.0.0.1:{port}\"\n{schedule}");
        let config = rig.write_config(&rig.config_toml(&top, ""));
        let log = rig.path("daemon.log");
        let mut cmd = rig.command(&config, &["run"], &[]);
        cmd.stdout(Stdio::null()).stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
        let child = cmd.spawn().expect("daemon starts");
        let base = format!("http://127.0.0.1:{port}");
        let health = format!("{base}/healthz");
        wait_for("/healthz", Duration::from_secs(15), || {
            let health = health.clone();
            async move { http_get(&health).await.filter(|(s, _)| *s == 200) }
        })
        .await;
        Daemon { child, base, log }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        http_get(&format!("{}{path}", self.base)).await.expect("daemon answers")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit code and how long the stop took.
    async fn terminate(mut self) -> (i32, Duration, String) {
        let pid = self.child.id().expect("running") as i32;
        let started = Instant::now();
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let status = tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await.expect("stops").unwrap();
        (status.code().unwrap_or(-1), started.elapsed(), self.log())
    }
}

impl Drop for Daemon {
    /// A failed assertion must not leave the daemon's browser behind: ask for a clean stop first (SIGTERM lets it
    /// tear its browser down), then let `kill_on_drop` finish the job.
    fn drop(&mut self) {
        let Some(pid) = self.child.id() else { return };
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::yield_now();
        }
    }
}

async fn metric(d: &Daemon, needle: &str) -> Option<f64> {
    let (_, body) = d.get("/metrics").await;
    body.lines().find(|l| l.starts_with(needle)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_logs_in_at_start_skips_while_valid_serves_endpoints_and_stops_on_sigterm() {
    let rig = Rig::start().await;
    let d = Daemon::start(
        &rig,
        "[schedule]\ncron = \"*/2 * * * * *\"\ntimezone = \"Asia/Kolkata\"\non_start = \"if-stale\"\n",
    )
    .await;

    // The start-up catch-up logs in (stale: nothing published yet).
    let ready = format!("{}/readyz?strict=1", d.base);
    wait_for("/readyz to turn 200", Duration::from_secs(60), || {
        let ready = ready.clone();
        async move { http_get(&ready).await.filter(|(s, _)| *s == 200) }
    })
    .await;
    let token = rig.read_token();
    assert_eq!(token["generation"], 1);

    // Cron ticks find the token valid and skip.
    wait_for("a skipped cron tick", Duration::from_secs(20), || async {
        metric(&d, "upstox_relogin_login_attempts_total{account=\"primary\",result=\"skipped\"}")
            .await
            .filter(|v| *v >= 1.0)
    })
    .await;
    assert_eq!(rig.sim.journal().token_posts.len(), 1, "ticks did not log in again");

    let (status, body) = d.get("/status").await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["accounts"][0]["generation"], 1);
    assert_eq!(json["timezone"], "Asia/Kolkata");
    assert!(json["next_run"].as_str().unwrap().ends_with("+05:30"), "{body}");
    assert!(!body.contains(token["access_token"].as_str().unwrap()), "no token in /status");
    assert!(token.get("extended_token").is_none(), "the 1-year token is opt-in per sink (include_extended_token)");
    let (status, metrics) = d.get("/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "upstox_relogin_login_attempts_total{account=\"primary\",result=\"success\"} 1",
        "upstox_relogin_token_expiry_timestamp_seconds{account=\"primary\"}",
        "upstox_relogin_last_success_timestamp_seconds{account=\"primary\"}",
        "upstox_relogin_login_duration_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }

    // Between logins no browser exists.
    rig.assert_no_browser_left();
    let (code, took, log) = d.terminate().await;
    assert_eq!(code, 0, "{log}");
    assert!(took < Duration::from_secs(10), "stop took {took:?}");
    rig.assert_no_browser_left();
    // One line per account per run (with its time), and a summary per run.
    let start_line = log.lines().find(|l| l.contains("run finished") && l.contains("trigger=start"));
    let start_line = start_line.unwrap_or_else(|| panic!("no run summary:\n{log}"));
    assert!(start_line.contains("logged_in=1") && start_line.contains("failed=0"), "{start_line}");
    assert!(
        log.lines().any(|l| l.contains("account=primary") && l.contains("elapsed_secs=") && l.contains("logged in"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_ticks_are_skipped_and_sigterm_cancels_an_inflight_login() {
    // Every page step takes 1.5 s, so one login spans several one-second ticks.
    let rig = Rig::with_faults(Faults { step_delay_ms: 1500, ..Faults::default() }).await;
    let d = Daemon::start(&rig, "[schedule]\ncron = \"* * * * * *\"\non_start = \"never\"\n").await;
    let sim = &rig.sim;
    wait_for("the login to reach the PIN step", Duration::from_secs(30), || async {
        (!sim.journal().totp_submissions.is_empty()).then_some(())
    })
    .await;
    let (status, _) = d.get("/readyz").await;
    assert_eq!(status, 503, "not ready while no token is published");
    let (code, took, log) = d.terminate().await;
    assert_eq!(code, 0, "{log}");
    assert!(took < Duration::from_secs(10), "stop took {took:?}");
    assert!(log.contains("a run is still in progress; this one is skipped"), "{log}");
    assert_eq!(log.matches("run started").count(), 1, "only one run ever started:\n{log}");
    assert!(sim.journal().token_posts.is_empty(), "the cancelled login exchanged nothing");
    assert!(!rig.token_path().exists());
    rig.assert_no_browser_left();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_cli_reports_without_the_daemon_and_never_shows_a_token() {
    let rig = Rig::start().await;
    let config = rig.default_config();
    rig.cli(&config, &["login"]).await.assert_code(0);
    let run = rig.cli(&config, &["status", "--json"]).await;
    run.assert_code(0);
    let json: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    let a = &json["accounts"][0];
    assert_eq!(
        (a["name"].as_str(), a["token_present"].as_bool(), a["generation"].as_u64()),
        (Some("primary"), Some(true), Some(1))
    );
    assert_eq!(a["last_attempt"]["result"], "success");
    let token = rig.read_token();
    assert!(!run.stdout().contains(token["access_token"].as_str().unwrap()));
    let human = rig.cli(&config, &["status"]).await;
    human.assert_code(0);
    assert!(human.stdout().contains("primary: valid until"), "{}", human.stdout());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_does_not_stop_the_daemon() {
    let rig = Rig::start().await;
    let dead = format!("redis://127.0.0.1:{}/0", free_port());
    let port = free_port();
    let top = format!("[server]\nlisten = \"127.0.0.1:{port}\"\n[schedule]\non_start = \"never\"\n");
    let tables = format!("\n[[sinks]]\ntype = \"redis\"\nurl = \"{dead}\"\n");
    let config = rig.write_config(&rig.config_toml(&top, &tables));
    let log = rig.path("daemon.log");
    let mut cmd = rig.command(&config, &["run"], &[]);
    cmd.stdout(Stdio::null()).stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
    let d = Daemon { child: cmd.spawn().unwrap(), base: format!("http://127.0.0.1:{port}"), log };
    let health = format!("{}/healthz", d.base);
    wait_for("/healthz with Redis down", Duration::from_secs(15), || {
        let health = health.clone();
        async move { http_get(&health).await.filter(|(s, _)| *s == 200) }
    })
    .await;
    // Strict: whether or not a run is due at this hour, no sink holds a valid token now.
    let (status, body) = d.get("/readyz?strict=1").await;
    assert_eq!(status, 503, "{body}");
    let (status, body) = d.get("/status").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Redis at `redis://127.0.0.1:"), "the unreachable sink says why: {body}");
    let (code, _, log) = d.terminate().await;
    assert_eq!(code, 0, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_probes_on_probe_cron_and_reports_in_status_and_metrics() {
    // A redesigned page (renamed ids): ready, through fallbacks, which the metrics count.
    let rig = Rig::with_faults(Faults { renamed_ids: true, ..Faults::default() }).await;
    let d = Daemon::start(
        &rig,
        "[schedule]\ncron = \"0 0 0 1 1 *\"\ntimezone = \"Asia/Kolkata\"\non_start = \"never\"\nprobe_cron = \"*/3 * * * * *\"\n",
    )
    .await;
    let ready = wait_for("probe_ready in /metrics", Duration::from_secs(60), || async {
        metric(&d, "upstox_relogin_probe_ready{account=\"primary\"}").await
    })
    .await;
    assert_eq!(ready, 1.0, "the simulator's page is ready");
    let (_, body) = d.get("/status").await;
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["probe_cron"], "*/3 * * * * *", "{status}");
    assert!(status["next_probe"].is_string(), "{status}");
    let probe = &status["accounts"][0]["last_probe"];
    assert_eq!(probe["ready"], true, "{status}");
    let summary = probe["summary"].as_str().unwrap();
    assert!(summary.contains("fallback label") && summary.contains("update `browser.selectors.mobile_*`"), "{status}");
    let fallbacks =
        metric(&d, "upstox_relogin_locator_fallbacks_total{account=\"primary\",step=\"mobile\",element=\"input\"}")
            .await;
    assert!(fallbacks.is_some_and(|n| n >= 1.0), "the fallback is counted");
    let journal = rig.sim.journal();
    assert_eq!(journal.mobile_submissions, 0, "a probe submits nothing");
    assert!(journal.totp_submissions.is_empty() && journal.pin_submissions == 0);
    let (code, _, log) = d.terminate().await;
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("probe finished"), "{log}");
    rig.assert_no_browser_left();
}
