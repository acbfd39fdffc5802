//! Several replicas with `[coordination] type = "redis"`: real binaries (each with its own `state_dir`, via
//! `UPSTOX_RELOGIN_STATE_DIR`), one real `redis-server`, the simulator and real browsers. One login per account per
//! slot whoever starts first; a dead holder is replaced only once its lease expired; a holder that stalled past its
//! lease cannot publish over the newer token; a rejected PIN on one replica stops all of them; without Redis nobody
//! logs in, and readiness says why.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use redis::Commands;
use serde_json::Value;
use support::{Process, RedisServer, Rig, free_port, http_get, toml_set, wait_for};
use upstox_relogin::simulator::{Faults, SimConfig};

/// Lease TTL for these tests: short, so that taking over a dead or stalled holder is quick.
const LEASE_TTL_SECS: u64 = 3;
const TOKEN_KEY: &str = "upstox:token:primary";

/// One config for every replica: coordination and the only sink in `redis`, then `extra` tables.
fn replica_config(rig: &Rig, redis: &RedisServer, extra: &str) -> PathBuf {
    let url = redis.url();
    let coordination =
        format!("[coordination]\ntype = \"redis\"\nurl = \"{url}\"\nlease_ttl_secs = {LEASE_TTL_SECS}\n{extra}");
    let sink = format!("\n[[sinks]]\ntype = \"redis\"\nurl = \"{url}\"\nkey = \"upstox:token:{{account}}\"\n");
    let toml = rig.config_toml(&coordination, &sink);
    // Only Redis: a file sink would let a restarted replica copy the token back instead of logging in.
    let lines: Vec<&str> = toml.lines().collect();
    let file_sink = lines.windows(2).position(|w| w == ["[[sinks]]", "type = \"file\""]).expect("a file sink");
    let toml = [&lines[..file_sink], &lines[file_sink + 3..]].concat().join("\n");
    rig.write_config(&toml)
}

/// A replica's own `state_dir` (nothing shared on disk) and any more variables.
fn replica_env(rig: &Rig, name: &str) -> Vec<(&'static str, String)> {
    vec![("UPSTOX_RELOGIN_STATE_DIR", rig.path(&format!("state-{name}")).display().to_string())]
}

fn spawn(rig: &Rig, config: &Path, args: &[&str], env: &[(&'static str, String)], name: &str) -> Process {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Process::spawn(rig, config, args, &env, name)
}

fn redis_conn(redis: &RedisServer) -> redis::Connection {
    redis::Client::open(redis.url()).unwrap().get_connection().unwrap()
}

fn redis_json(redis: &RedisServer, key: &str) -> Option<Value> {
    let text: Option<String> = redis_conn(redis).get(key).unwrap();
    text.map(|t| serde_json::from_str(&t).expect("JSON"))
}

/// Until the simulator counted `p`'s PIN (it then waits for `Faults::pin_delay_ms`); fails with `p`'s log if `p`
/// exits first or takes more than 90 s (a login on a loaded 2-core machine, with a TOTP window wait).
async fn wait_for_pin(p: &mut Process, sim: &upstox_relogin::simulator::Simulator) {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    while sim.journal().pin_submissions == 0 {
        let exited = p.child.try_wait().ok().flatten();
        assert!(exited.is_none(), "the holder exited ({exited:?}) before its PIN:\n{}", p.log());
        assert!(Instant::now() < deadline, "no PIN from the holder within 90 s:\n{}", p.log());
        tick.tick().await;
    }
}

/// A `run` daemon on its own port with its own `state_dir`.
struct Daemon {
    process: Process,
    base: String,
}

impl Daemon {
    fn start(rig: &Rig, config: &Path, name: &str) -> Daemon {
        let port = free_port();
        let mut env = replica_env(rig, name);
        env.push(("UPSTOX_RELOGIN_SERVER__LISTEN", format!("127.0.0.1:{port}")));
        Daemon { process: spawn(rig, config, &["run"], &env, name), base: format!("http://127.0.0.1:{port}") }
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(&format!("{}{path}", self.base)).await
    }

    /// Until `/readyz?strict=1` is 200 (every sink holds a valid token now; plain `/readyz` is 200 early on when no
    /// run is due yet), then plain `/readyz` must be 200 too.
    async fn wait_ready(&self, within: Duration) {
        wait_for(&format!("{}/readyz?strict=1 to turn 200", self.base), within, || async {
            self.get("/readyz?strict=1").await.filter(|(s, _)| *s == 200)
        })
        .await;
        assert_eq!(self.get("/readyz").await.map(|(s, _)| s), Some(200));
    }

    async fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics").await?;
        body.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_started_together_log_each_account_in_once_and_once_more_after_the_tokens_vanish() {
    let redis = RedisServer::start();
    let rig = Rig::with_sim(SimConfig { holidays: Vec::new(), ..SimConfig::demo_accounts(2) }).await;
    let config = replica_config(&rig, &redis, "[schedule]\ncron = \"0 0 0 1 1 *\"\non_start = \"if-stale\"\n");
    let accounts = ["primary-1", "primary-2"];
    let mobiles: Vec<String> = rig.sim.config().users.iter().map(|u| u.mobile.clone()).collect();
    let token = |account: &str| redis_json(&redis, &format!("upstox:token:{account}"));
    let names = ["a", "b", "c"];

    let daemons: Vec<Daemon> = names.iter().map(|n| Daemon::start(&rig, &config, n)).collect();
    // And a `login` on a fourth host at the same moment: whoever holds the leases, it ends with valid tokens.
    let mut login = spawn(&rig, &config, &["login"], &replica_env(&rig, "d"), "d");
    for d in &daemons {
        d.wait_ready(Duration::from_secs(120)).await;
    }
    assert_eq!(login.exit_code(Duration::from_secs(120)).await, 0, "{}", login.log());
    let journal = rig.sim.journal();
    for mobile in &mobiles {
        assert_eq!((journal.logins_for(mobile), journal.codes_for(mobile)), (1, 1), "one login per account");
    }
    assert_eq!(journal.access_tokens_issued, 2);
    let first: Vec<Value> = accounts.iter().map(|a| token(a).expect("a token in Redis")).collect();
    let logs: Vec<String> = daemons.iter().map(|d| d.process.log()).chain([login.log()]).collect();
    assert_eq!(logs.iter().map(|l| l.matches("token published").count()).sum::<usize>(), 2, "{logs:#?}");
    assert!(logs.iter().any(|l| l.contains("waiting for it to finish")), "nobody waited for a lease: {logs:#?}");

    // Any replica answers for every account with the shared facts.
    let mut success_times = Vec::new();
    for d in &daemons {
        let (status, body) = d.get("/status").await.expect("answers");
        assert_eq!(status, 200);
        let json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["coordination"]["type"], "redis");
        assert_eq!(json["coordination"]["reachable"], true);
        for (i, doc) in first.iter().enumerate() {
            let a = &json["accounts"][i];
            assert_eq!((&a["name"], &a["generation"]), (&Value::from(accounts[i]), &doc["generation"]), "{body}");
            assert!(!body.contains(doc["access_token"].as_str().unwrap()), "no token in /status");
        }
        success_times.push(json["accounts"][0]["last_success_at"].as_str().expect("shared last success").to_owned());
        // So do the gauges, on the replicas that did not publish too.
        let (_, metrics) = d.get("/metrics").await.expect("answers");
        for (account, doc) in accounts.iter().zip(&first) {
            let line = format!("upstox_relogin_token_generation{{account=\"{account}\"}} {}", doc["generation"]);
            assert!(metrics.lines().any(|l| l == line), "`{line}` in:\n{metrics}");
        }
    }
    assert!(success_times.windows(2).all(|w| w[0] == w[1]), "{success_times:?}");
    // So does the status command on a host that never ran (an empty state_dir of its own).
    let env = replica_env(&rig, "elsewhere");
    let status = rig.cli_env(&config, &["status", "--json"], &[(env[0].0, env[0].1.as_str())]).await;
    status.assert_code(0);
    let json: Value = serde_json::from_str(&status.stdout()).unwrap();
    assert_eq!(json["accounts"][0]["last_success_at"].as_str(), Some(success_times[0].as_str()));
    assert_eq!(json["accounts"][1]["generation"], first[1]["generation"]);

    for mut d in daemons {
        assert_eq!(d.process.terminate().await, 0, "{}", d.process.log());
    }
    for account in accounts {
        let () = redis_conn(&redis).del(format!("upstox:token:{account}")).unwrap();
    }

    let daemons: Vec<Daemon> = names.iter().map(|n| Daemon::start(&rig, &config, n)).collect();
    for d in &daemons {
        d.wait_ready(Duration::from_secs(120)).await;
    }
    let journal = rig.sim.journal();
    for mobile in &mobiles {
        assert_eq!((journal.logins_for(mobile), journal.codes_for(mobile)), (2, 2), "exactly one more login each");
    }
    let mut generations = Vec::new();
    for (account, before) in accounts.iter().zip(&first) {
        let (g1, g2) =
            (before["generation"].as_u64().unwrap(), token(account).unwrap()["generation"].as_u64().unwrap());
        assert!(g2 > g1, "{account}: generation {g1} then {g2}");
        generations.push(format!("{account} {g1} → {g2}"));
    }
    for mut d in daemons {
        assert_eq!(d.process.terminate().await, 0, "{}", d.process.log());
    }
    rig.assert_no_browser_left();
    eprintln!(
        "three daemons + a login, two accounts: one login per account per start; generations {}; at most {} logins at once",
        generations.join(", "),
        journal.max_concurrent_logins()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_killed_mid_login_is_replaced_only_once_its_lease_expired() {
    let redis = RedisServer::start();
    // The holder's PIN answer takes long enough to kill it while it waits.
    let rig = Rig::with_faults(Faults { pin_delay_ms: 30_000, ..Faults::default() }).await;
    let config = replica_config(&rig, &redis, "");
    let mut a = spawn(&rig, &config, &["login"], &replica_env(&rig, "a"), "a");
    let sim = &rig.sim;
    wait_for_pin(&mut a, sim).await;
    let b = spawn(&rig, &config, &["login"], &replica_env(&rig, "b"), "b");
    wait_for("b to wait for a's lease", Duration::from_secs(30), || async {
        b.log().contains("waiting for it to finish").then_some(())
    })
    .await;
    assert!(b.log().contains(&format!("/pid-{}/", a.pid())), "b names the holder:\n{}", b.log());
    sim.set_faults(Faults::default());

    // A crash: the holder and its browser die at once.
    let drivers = rig.chromedriver_pids();
    a.signal(libc::SIGKILL);
    for driver in drivers {
        // SAFETY: kill(2) on the process group of a chromedriver this test's binary spawned.
        unsafe { libc::kill(-driver, libc::SIGKILL) };
    }
    let killed = Instant::now();
    a.exit_code(Duration::from_secs(5)).await;
    // The lease had 2/3 of its TTL or more left: until then b must not start a login.
    let live = Duration::from_secs(LEASE_TTL_SECS) * 2 / 3 - Duration::from_millis(200);
    while killed.elapsed() < live {
        assert_eq!(sim.journal().states_seen.len(), 1, "b opened the dialog while a's lease was live");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    wait_for("b to open the dialog", Duration::from_secs(30), || async {
        (sim.journal().states_seen.len() == 2).then_some(())
    })
    .await;
    let took_over = killed.elapsed();
    let mut b = b;
    let code = b.exit_code(Duration::from_secs(120)).await;
    let log = b.log();
    assert_eq!(code, 0, "{log}");
    let journal = sim.journal();
    assert_eq!((journal.states_seen.len(), journal.pin_submissions, journal.access_tokens_issued), (2, 2, 1));
    assert!(!log.contains("TOTP rejected"), "b knew a's TOTP step from Redis:\n{log}");
    let doc = redis_json(&redis, TOKEN_KEY).expect("b's token");
    assert_eq!(doc["generation"], 2, "a allocated 1 when it took the lease");
    let facts = redis_json(&redis, "upstox-relogin:primary:facts").expect("shared facts");
    assert_eq!(facts["guard"]["pin_submissions"], 0, "b's code reset the count a left at 1: {facts}");
    assert_eq!(facts["last_attempt"]["result"], "success");
    // The next command sweeps what the crash left in TMPDIR; `cli` then proves no browser or profile is left.
    rig.cli(&config, &["login"]).await.assert_code(0);
    eprintln!(
        "killed holder: b opened the dialog {:.1}s after the kill (lease TTL {LEASE_TTL_SECS}s), logged in {:.1}s after it",
        took_over.as_secs_f64(),
        killed.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_paused_past_its_lease_cannot_publish_over_the_newer_generation() {
    let redis = RedisServer::start();
    let rig = Rig::with_faults(Faults { pin_delay_ms: 3_000, ..Faults::default() }).await;
    let config = replica_config(&rig, &redis, "");
    // a's waits must outlast its pause (a monotonic deadline keeps running while a process is stopped).
    let mut a_env = replica_env(&rig, "a");
    a_env.push(("UPSTOX_RELOGIN_BROWSER__STEP_TIMEOUT_SECS", "180".into()));
    let mut a = spawn(&rig, &config, &["login"], &a_env, "a");
    let sim = &rig.sim;
    wait_for_pin(&mut a, sim).await;
    a.signal(libc::SIGSTOP);
    sim.set_faults(Faults::default());

    let mut b = spawn(&rig, &config, &["login"], &replica_env(&rig, "b"), "b");
    let code = b.exit_code(Duration::from_secs(120)).await;
    assert_eq!(code, 0, "{}", b.log());
    assert!(b.log().contains(&format!("/pid-{}/", a.pid())), "b waited for a's lease:\n{}", b.log());
    let newer = redis_json(&redis, TOKEN_KEY).expect("b's token");
    assert_eq!(newer["generation"], 2);

    a.signal(libc::SIGCONT);
    let code = a.exit_code(Duration::from_secs(60)).await;
    let log = a.log();
    assert_eq!(code, 1, "{log}");
    assert!(log.contains("fenced") && log.contains("generation 2"), "the refused write is logged:\n{log}");
    assert!(log.contains("was not published") && log.contains("newer token stays"), "{log}");
    assert_eq!(redis_json(&redis, TOKEN_KEY).as_ref(), Some(&newer), "b's token is untouched");
    // What we cannot prevent: Upstox issued a's token too (it cannot be fenced); only our sinks are.
    assert_eq!(sim.journal().access_tokens_issued, 2);
    let facts = redis_json(&redis, "upstox-relogin:primary:facts").expect("shared facts");
    assert_eq!(facts["last_attempt"]["result"], "success", "a, having lost its lease, did not record: {facts}");
    rig.assert_no_browser_left();
    let refused = log.lines().filter(|l| l.contains("lease lost") || l.contains("fenced")).collect::<Vec<_>>();
    eprintln!("paused holder, after SIGCONT:\n  {}", refused.join("\n  "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_pin_on_one_replica_stops_every_replica() {
    let redis = RedisServer::start();
    let rig = Rig::start().await;
    let wrong: String = rig.sim.config().users[0].pin.bytes().map(|b| char::from(b'0' + (b - b'0' + 5) % 10)).collect();
    let config = replica_config(&rig, &redis, "");
    let toml = toml_set(&std::fs::read_to_string(&config).unwrap(), "accounts", "pin", &format!("\"{wrong}\""));
    let config = rig.write_config(&toml);

    let mut replicas: Vec<Process> =
        ["a", "b"].iter().map(|n| spawn(&rig, &config, &["login"], &replica_env(&rig, n), n)).collect();
    let mut logs = Vec::new();
    for p in &mut replicas {
        assert_eq!(p.exit_code(Duration::from_secs(120)).await, 1, "{}", p.log());
        logs.push(p.log());
    }
    let journal = rig.sim.journal();
    assert_eq!((journal.pin_submissions, journal.wrong_pins), (1, 1), "one wrong PIN in all: {logs:#?}");
    let facts: String = redis_conn(&redis).get("upstox-relogin:primary:facts").unwrap();
    let user = &rig.sim.config().users[0];
    for secret in [&wrong, &user.pin, &user.totp_secret, &user.mobile] {
        assert!(!facts.contains(secret.as_str()), "a secret in the shared facts: {facts}");
    }
    assert!(facts.contains("pin_rejected_day"), "{facts}");
    assert_eq!(logs.iter().filter(|l| l.contains("a PIN was rejected today")).count(), 1, "{logs:#?}");

    // A replica started later refuses before opening the dialog.
    let env = replica_env(&rig, "c");
    let late = rig.cli_env(&config, &["login"], &[(env[0].0, env[0].1.as_str())]).await;
    late.assert_code(1);
    assert!(late.stderr().contains("lockout guard") && late.stderr().contains("Redis key"), "{}", late.stderr());
    assert_eq!(rig.sim.journal().states_seen.len(), 1, "no second dialog");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_coordination_store_down_nobody_logs_in_and_readiness_says_why() {
    let port = free_port();
    let rig = Rig::start().await;
    let tables = format!(
        "[coordination]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:{port}/0\"\n\n[schedule]\ncron = \"*/2 * * * * *\"\non_start = \"if-stale\"\n"
    );
    let config = rig.write_config(&rig.config_toml(&tables, ""));
    let d = Daemon::start(&rig, &config, "a");
    let sim = &rig.sim;
    wait_for("a failed run", Duration::from_secs(30), || async {
        d.process.log().contains("coordination store").then_some(())
    })
    .await;
    let (status, body) = d.get("/readyz").await.expect("answers");
    assert_eq!(status, 503);
    assert!(body.contains("coordinator") && body.contains("does not answer"), "{body}");
    assert_eq!(d.metric("upstox_relogin_coordination_up").await, Some(0.0));
    let login = rig.cli_env(&config, &["login"], &[]).await;
    login.assert_code(1);
    assert!(login.stderr().contains("`coordination.url`"), "{}", login.stderr());
    assert!(sim.journal().states_seen.is_empty(), "nobody opened the dialog");

    // Redis comes up: the next tick logs in.
    let _redis = RedisServer::start_on(port);
    d.wait_ready(Duration::from_secs(60)).await;
    assert_eq!(d.metric("upstox_relogin_coordination_up").await, Some(1.0));
    assert_eq!(sim.journal().access_tokens_issued, 1);
    let mut d = d;
    assert_eq!(d.process.terminate().await, 0, "{}", d.process.log());
    rig.assert_no_browser_left();
}
