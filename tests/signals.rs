//! Honest signals and the market day, against the real binary and the simulator: `/readyz` is 200 overnight for an
//! account that is not due (and `?strict=1` is not), a hung Redis costs one short probe and shows as an error,
//! `/metrics` carries the persisted gauges after a restart and passes `promtool check metrics`, `republished` is a
//! result of its own, cron runs are skipped on NSE holidays, and a failed morning is retried until the deadline.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Asia::Kolkata;
use support::daemon::Daemon;
use support::{HookReceiver, Rig, find_secrets, free_port, toml_set, wait_for};
use upstox_relogin::simulator::{Faults, HolidayType, SimHoliday};

/// GET `url` with an optional `Accept`: (status, content type, body, how long it took).
async fn get(url: &str, accept: Option<&str>) -> (u16, String, String, Duration) {
    let started = Instant::now();
    let mut request = reqwest::Client::new().get(url).timeout(Duration::from_secs(20));
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.expect("daemon answers");
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    (status, content_type, response.text().await.unwrap(), started.elapsed())
}

/// The value of the sample line starting with `name` (labels included).
fn sample(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// `promtool check metrics` on `exposition`: (passed, what it said).
fn promtool_check(exposition: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run `promtool` ({e}): install it with `make promtool` (part of `make test-deps`)")
        });
    child.stdin.take().unwrap().write_all(exposition.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success() && said.trim().is_empty(), said)
}

fn ist_now() -> DateTime<chrono_tz::Tz> {
    Utc::now().with_timezone(&Kolkata)
}

/// Rewrite the document at the rig's token path as if issued two days ago (expired at the last 03:30 IST or before).
fn expire_seeded_token(rig: &Rig) {
    let mut doc: serde_json::Value = serde_json::from_slice(&rig.seed_token()).unwrap();
    let issued = Utc::now() - chrono::Duration::days(2);
    doc["issued_at"] = upstox_relogin::token::ist(issued).to_rfc3339().into();
    doc["expires_at"] = upstox_relogin::token::expiry_for(issued).to_rfc3339().into();
    let mut bytes = serde_json::to_vec_pretty(&doc).unwrap();
    bytes.push(b'\n');
    upstox_relogin::sink::write_atomically(&rig.token_path(), &bytes).unwrap();
}

const REDIS_PASSWORD: &str = "hunter2-sink-password";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_200_overnight_for_an_account_not_due_and_a_hung_redis_costs_one_short_probe() {
    support::require("redis-server");
    let rig = Rig::start().await;
    expire_seeded_token(&rig);
    // A Redis that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let _silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    // The cron runs only on the weekday three days ahead (IST): no run since the last 03:30 IST, whatever the hour.
    let weekday = ist_now().weekday().succ().succ().succ();
    let tables = format!(
        "[schedule]\ncron = \"0 30 8 * * {weekday}\"\ntimezone = \"Asia/Kolkata\"\non_start = \"never\"\n\
         token_check_mins_before_open = 0\n\n[[sinks]]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:{silent_port}/0\"\n\
         \n[[sinks]]\ntype = \"redis\"\nurl = \"redis://:{REDIS_PASSWORD}@127.0.0.1:{}/0\"\n",
        free_port()
    );
    let d = Daemon::start(&rig, "", "", &tables, &[]).await;

    let (status, _, body, took) = get(&d.url("/readyz"), None).await;
    assert_eq!((status, body.as_str()), (200, "ready\n"), "an expired token that is not due yet is no alarm");
    assert!(took < Duration::from_millis(2500), "/readyz took {took:?} with a hung Redis");
    let (status, _, body, _) = get(&d.url("/readyz?strict=1"), None).await;
    assert_eq!(status, 503, "strict: no sink holds a valid token now: {body}");
    assert!(body.contains("primary"), "{body}");

    // Three at once: one probe (or the cache) serves them all.
    let started = Instant::now();
    let (ready, status) = (d.url("/readyz"), d.url("/status"));
    let (a, b, c) = tokio::join!(get(&ready, None), get(&status, None), get(&ready, None));
    assert!(started.elapsed() < Duration::from_millis(2500), "three parallel requests took {:?}", started.elapsed());
    assert_eq!((a.0, b.0, c.0), (200, 200, 200));
    let status: serde_json::Value = serde_json::from_str(&b.2).unwrap();
    let account = &status["accounts"][0];
    assert_eq!(account["ready"], true, "{account}");
    assert!(account["due_since"].is_null(), "{account}");
    let (file, redis) = (&account["sinks"][0], &account["sinks"][1]);
    assert_eq!((file["generation"].as_u64(), file["valid"].as_bool()), (Some(41), Some(false)), "{file}");
    assert!(file["error"].is_null(), "{file}");
    assert!(redis["generation"].is_null(), "{redis}");
    assert!(redis["error"].as_str().is_some_and(|e| e.contains("no answer within 1000 ms")), "{redis}");
    // Nothing listens there: unreachable, said with the password masked.
    let closed = &account["sinks"][2];
    assert!(closed["error"].as_str().is_some_and(|e| e.contains("redis://:***@127.0.0.1:")), "{closed}");
    assert!(!b.2.contains(REDIS_PASSWORD), "{}", b.2);

    // The newest document's expiry and generation are exported at start even though it expired.
    let (_, _, metrics, _) = get(&d.url("/metrics"), None).await;
    assert_eq!(sample(&metrics, "upstox_relogin_token_generation{account=\"primary\"}"), Some(41.0), "{metrics}");
    let expiry = sample(&metrics, "upstox_relogin_token_expiry_timestamp_seconds{account=\"primary\"}").unwrap();
    assert!(expiry < Utc::now().timestamp() as f64, "{metrics}");
    let (code, _, log) = d.stop_with(libc::SIGTERM).await;
    assert_eq!(code, 0, "{log}");
    assert!(rig.sim.journal().states_seen.is_empty(), "no login was attempted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_metrics_carry_the_persisted_gauges_pass_promtool_and_count_republished() {
    let rig = Rig::start().await;
    let second = format!("{}/{{account}}.json", rig.path("mirror").display());
    let sinks = format!("[[sinks]]\ntype = \"file\"\npath = \"{second}\"\n");
    let config = rig.write_config(&rig.config_toml("", &sinks));
    rig.cli(&config, &["login"]).await.assert_code(0);
    let token = rig.read_token();
    let state = rig.account_state();
    // The mirror loses its copy while the daemon is down: the start-up pass copies the valid token back.
    std::fs::remove_file(rig.path("mirror/primary.json")).unwrap();

    let d = Daemon::start(&rig, "", "", &format!("[schedule]\non_start = \"if-stale\"\n\n{sinks}"), &[]).await;
    let republished = "upstox_relogin_login_attempts_total{account=\"primary\",result=\"republished\"}";
    let url = d.url("/metrics");
    let metrics = wait_for("the start-up pass to republish", Duration::from_secs(30), || {
        let url = url.clone();
        async move {
            let (_, _, body, _) = get(&url, None).await;
            (sample(&body, republished) == Some(1.0)).then_some(body)
        }
    })
    .await;
    assert!(rig.path("mirror/primary.json").exists());
    assert_eq!(rig.sim.journal().token_posts.len(), 1, "no second login");
    assert_eq!(rig.account_state()["last_attempt"]["result"], "republished");

    // Gauges from state and sinks, although this process never logged in.
    let last_success = DateTime::parse_from_rfc3339(state["last_success_at"].as_str().unwrap()).unwrap();
    let expires_at = DateTime::parse_from_rfc3339(token["expires_at"].as_str().unwrap()).unwrap();
    for (name, value) in [
        ("upstox_relogin_last_success_timestamp_seconds{account=\"primary\"}", last_success.timestamp() as f64),
        ("upstox_relogin_token_expiry_timestamp_seconds{account=\"primary\"}", expires_at.timestamp() as f64),
        ("upstox_relogin_token_generation{account=\"primary\"}", 1.0),
        ("upstox_relogin_pin_submissions_without_code{account=\"primary\"}", 0.0),
        ("upstox_relogin_skip_check_duration_seconds_count", 1.0),
        ("upstox_relogin_login_duration_seconds_count{step=\"total\"}", -1.0),
    ] {
        let got = sample(&metrics, name);
        if value < 0.0 {
            assert_eq!(got, None, "{name}: a skip check is no login\n{metrics}");
        } else {
            assert_eq!(got, Some(value), "{name}\n{metrics}");
        }
    }

    // Content negotiation, and promtool's verdict on the Prometheus text format.
    let (_, content_type, openmetrics, _) = get(&url, None).await;
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    assert!(openmetrics.ends_with("# EOF\n"));
    let (status, content_type, text, _) = get(&url, Some("text/plain;version=0.0.4")).await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    assert!(text.contains("# HELP upstox_relogin_login_attempts_total "), "{text}");
    let (passed, said) = promtool_check(&text);
    assert!(passed, "promtool check metrics:\n{said}\n--- exposition\n{text}");
    let (status, _, _, _) = get(&d.url("/readyz?strict=1"), None).await;
    assert_eq!(status, 200);
    let (code, _, log) = d.stop_with(libc::SIGTERM).await;
    assert_eq!(code, 0, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_morning_is_retried_until_the_deadline_then_deadline_missed_and_token_missing_near_open() {
    // Every page step answers after 3 s and the browser waits 1 s: each login fails at the first step, a retryable
    // failure, before any TOTP or PIN is typed.
    let rig = Rig::with_faults(Faults { step_delay_ms: 3000, ..Faults::default() }).await;
    let now = ist_now();
    let tick = now + chrono::Duration::seconds(6);
    // Whole seconds, as `retry_until` is written.
    let deadline = chrono::Timelike::with_nanosecond(&(now + chrono::Duration::seconds(30)), 0).unwrap();
    let open = now + chrono::Duration::seconds(34) + chrono::Duration::minutes(1);
    let schedule = format!(
        "[schedule]\ncron = \"{}\"\ntimezone = \"Asia/Kolkata\"\non_start = \"never\"\nretry_until = \"{}\"\n\
         retry_min_backoff_secs = 1\nretry_max_backoff_secs = 1\nmarket_open = \"{}\"\n\
         token_check_mins_before_open = 1\n",
        tick.format("%S %M %H * * *"),
        deadline.format("%H:%M:%S"),
        open.format("%H:%M:%S"),
    );
    let receiver = HookReceiver::start(&[]).await;
    let notifier = format!("\n[[notifiers]]\ntype = \"webhook\"\nurl = \"{}\"\n", receiver.url("/hook"));
    let port = free_port();
    let mut toml = rig.config_toml(&format!("[server]\nlisten = \"127.0.0.1:{port}\"\n"), &(schedule + &notifier));
    toml = toml_set(&toml, "browser", "step_timeout_secs", "1");
    toml = toml_set(&toml, "login", "max_attempts", "1");
    let config = rig.write_config(&toml);
    let d = Daemon::start_with(&rig, &config, port, &[]).await;

    wait_for("deadline missed", Duration::from_secs(60), || async {
        let log = d.log();
        log.contains("deadline missed").then_some(log)
    })
    .await;
    assert!(Utc::now() >= deadline, "reported at the deadline, not before");
    let (status, _, body, _) = get(&d.url("/readyz"), None).await;
    assert_eq!(status, 503, "due since the morning run and no token: {body}");
    wait_for("token_missing_near_open", Duration::from_secs(30), || async {
        let log = d.log();
        log.contains("token missing near the open").then_some(log)
    })
    .await;
    let (code, _, log) = d.stop_with(libc::SIGTERM).await;
    assert_eq!(code, 0, "{log}");

    assert_eq!(log.matches("run started").count(), 1, "one morning:\n{log}");
    let failures = log.matches("run failed; retrying until the deadline").count();
    let logins = rig.sim.journal().states_seen.len();
    assert!(failures >= 3, "retried more than max_attempts (1) within the morning: {failures} failures\n{log}");
    assert_eq!(logins, failures, "one login per run:\n{log}");
    assert!(log.contains("no time for another try before the deadline"), "{log}");
    assert_eq!(rig.sim.journal().pin_submissions, 0, "no PIN was ever submitted");
    let missed = log.lines().find(|l| l.contains("deadline missed")).unwrap();
    assert!(missed.contains("ERROR") && missed.contains("primary") && missed.contains("last_error"), "{missed}");
    assert!(log.lines().any(|l| l.contains("ERROR") && l.contains("token_missing_near_open")), "{log}");
    assert!(!rig.token_path().exists());

    // Both alarms reached the notifier, once each, naming the account and carrying no secret.
    let events: Vec<serde_json::Value> = receiver.requests().into_iter().map(|(_, body)| body).collect();
    for kind in ["deadline_missed", "token_missing_near_open"] {
        let sent: Vec<_> = events.iter().filter(|e| e["event"] == kind).collect();
        assert_eq!(sent.len(), 1, "{kind}: {events:?}");
        assert_eq!(sent[0]["account"], "primary");
    }
    let user = &rig.sim.config().users[0];
    let client = &rig.sim.config().clients[0];
    let secrets = [
        ("pin", user.pin.clone()),
        ("mobile", user.mobile.clone()),
        ("totp secret", user.totp_secret.clone()),
        ("client secret", client.client_secret.clone()),
    ];
    let (_, leaks) = find_secrets(&serde_json::to_string_pretty(&events).unwrap(), &secrets);
    assert!(leaks.is_empty(), "{leaks:?}");
}

fn holiday(date: chrono::NaiveDate, holiday_type: HolidayType, closed: &[&str]) -> SimHoliday {
    SimHoliday {
        date,
        description: "Test holiday".into(),
        holiday_type,
        closed_exchanges: closed.iter().map(|e| (*e).to_owned()).collect(),
        open_exchanges: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_runs_are_skipped_on_an_nse_holiday_and_the_same_schedule_logs_in_on_a_trading_day() {
    let rig = Rig::start().await;
    let today = ist_now().date_naive();
    let yesterday = today.pred_opt().unwrap();
    let equity = ["NSE", "NFO", "BSE", "BFO", "CDS", "BCD"];
    // Yesterday too, so that no run since the last 03:30 IST counts, whatever the hour.
    rig.sim.set_holidays(vec![
        holiday(yesterday, HolidayType::TradingHoliday, &equity),
        holiday(today, HolidayType::TradingHoliday, &equity),
    ]);
    let schedule = "[schedule]\ncron = \"* * * * * *\"\ntimezone = \"Asia/Kolkata\"\non_start = \"never\"\n\
                    token_check_mins_before_open = 0\n";
    let d = Daemon::start(&rig, "", "", schedule, &[]).await;
    wait_for("three skipped ticks", Duration::from_secs(20), || async {
        (d.log().matches("scheduled run skipped").count() >= 3).then_some(())
    })
    .await;
    let (status, _, body, _) = get(&d.url("/readyz"), None).await;
    assert_eq!(status, 200, "no run is due on a holiday: {body}");
    let (status, _, _, _) = get(&d.url("/readyz?strict=1"), None).await;
    assert_eq!(status, 503, "but no sink holds a token");
    let (_, _, body, _) = get(&d.url("/status"), None).await;
    assert!(body.contains("\"closed_today\":\"Test holiday (Upstox's holiday list)\""), "{body}");
    let (code, _, log) = d.stop_with(libc::SIGTERM).await;
    assert_eq!(code, 0, "{log}");
    let line = log.lines().find(|l| l.contains("scheduled run skipped")).unwrap();
    assert!(line.contains("NSE is closed today: Test holiday (Upstox's holiday list)"), "{line}");
    assert!(line.contains(&today.to_string()), "{line}");
    assert!(!log.contains("run started"), "{log}");
    assert!(rig.sim.journal().states_seen.is_empty(), "no login on a holiday");

    // The same schedule on a trading day. The trap: a TRADING_HOLIDAY that closes MCX only leaves NSE open.
    rig.sim.set_holidays(vec![holiday(today, HolidayType::TradingHoliday, &["MCX"])]);
    let d = Daemon::start(&rig, "", "", schedule, &[]).await;
    let token = rig.token_path();
    wait_for("a login on a trading day", Duration::from_secs(60), || async { token.exists().then_some(()) }).await;
    let (code, _, log) = d.stop_with(libc::SIGTERM).await;
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains("scheduled run skipped"), "{log}");
    assert_eq!(rig.read_token()["generation"], 1);

    // Upstox's list unreachable: the day is taken as a trading day, and the log says so.
    rig.sim.set_holidays(vec![holiday(today, HolidayType::TradingHoliday, &equity)]);
    rig.sim.set_faults(Faults { holidays_5xx: true, ..Faults::default() });
    let d = Daemon::start(&rig, "", "", schedule, &[]).await;
    wait_for("a run despite the unknown calendar", Duration::from_secs(20), || async {
        d.log().contains("token still valid").then_some(())
    })
    .await;
    let (code, _, log) = d.stop_with(libc::SIGTERM).await;
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("cannot tell whether NSE is open today; logging in anyway"), "{log}");
    assert!(log.contains("UDAPI100500"), "{log}");
    assert!(!log.contains("scheduled run skipped"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_names_the_bad_lines_of_the_extra_holidays_file() {
    let rig = Rig::start().await;
    let file = rig.path("holidays.txt");
    std::fs::write(&file, "# our own\n2026-12-24\n24/12/2026\n").unwrap();
    let schedule = format!("[schedule]\nextra_holidays_file = \"{}\"\nretry_until = \"9\"\n", file.display());
    let config = rig.write_config(&rig.config_toml("", &schedule));
    let run = rig.cli(&config, &["check-config"]).await;
    run.assert_code(2);
    let stderr = run.stderr();
    assert!(stderr.contains("`schedule.extra_holidays_file`") && stderr.contains("line 3"), "{stderr}");
    assert!(!stderr.contains("line 2"), "{stderr}");
    assert!(stderr.contains("`schedule.retry_until`"), "{stderr}");
    std::fs::write(&file, "# our own\n2026-12-24  # Christmas Eve\n").unwrap();
    let config = rig.write_config(&rig.config_toml("", &schedule.replace("\"9\"", "\"09:05\"")));
    rig.cli(&config, &["check-config"]).await.assert_code(0);
}
