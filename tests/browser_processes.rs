//! What the browser's processes may see and how long they may live: a real login held at the PIN step, every child
//! of the binary inspected through `/proc`, then the binary SIGKILLed.

mod support;

use std::path::Path;
use std::time::Duration;

use support::{RedisServer, Rig, processes_mentioning, processes_with_tmpdir_under, wait_for};
use upstox_relogin::simulator::Faults;

const PIN_VAR: &str = "RELOGIN_TEST_PIN";
const REDIS_PASSWORD_VAR: &str = "RELOGIN_TEST_REDIS_PASSWORD";

/// `NAME=value` entries of a process's environment (empty when it is gone or unreadable).
fn environ(pid: i32) -> Vec<String> {
    let bytes = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    bytes.split(|b| *b == 0).filter(|v| !v.is_empty()).map(|v| String::from_utf8_lossy(v).into_owned()).collect()
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_owned()
}

/// Scratch dirs of the binary under the rig's TMPDIR.
fn scratch_dirs(tmp: &Path) -> Vec<String> {
    std::fs::read_dir(tmp).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_never_see_a_secret_and_die_with_a_killed_binary() {
    // The PIN's answer is held back, so the login stays in the browser while we look.
    let rig = Rig::with_faults(Faults { pin_delay_ms: 120_000, ..Faults::default() }).await;
    let password: String = {
        use rand::distr::{Alphanumeric, SampleString};
        Alphanumeric.sample_string(&mut rand::rng(), 32)
    };
    let redis = RedisServer::start_with_password(&password);
    let pin = rig.sim.config().users[0].pin.clone();
    let port = support::free_port();
    let tables = format!(
        "[[sinks]]\ntype = \"redis\"\nurl = \"{}\"\npassword_env = \"{REDIS_PASSWORD_VAR}\"\n\n\
         [server]\nlisten = \"127.0.0.1:{port}\"\n\n[schedule]\non_start = \"never\"\n",
        redis.url()
    );
    let toml = rig.config_toml("", &tables).replace(&format!("pin = \"{pin}\""), &format!("pin_env = \"{PIN_VAR}\""));
    assert!(toml.contains(PIN_VAR), "the PIN comes from the environment");
    let config = rig.write_config(&toml);
    let secrets = [(PIN_VAR, pin.as_str()), (REDIS_PASSWORD_VAR, password.as_str())];
    let mut child = rig.command(&config, &["login"], &secrets).stderr(std::process::Stdio::null()).spawn().unwrap();
    let pid = child.id().unwrap() as i32;
    let sim = &rig.sim;
    wait_for("the PIN to be submitted", Duration::from_secs(60), || async {
        (sim.journal().pin_submissions > 0).then_some(())
    })
    .await;

    // The binary holds both secrets (so this test could see them) …
    let own = environ(pid);
    assert!(own.contains(&format!("{PIN_VAR}={pin}")) && own.contains(&format!("{REDIS_PASSWORD_VAR}={password}")));
    // … its children (chromedriver, the guard, Chromium and its helpers; crashpad, reparented, by its TMPDIR) none.
    let tmp = rig.path("tmp");
    let mut children = support::descendants(pid);
    children.extend(processes_with_tmpdir_under(&tmp).into_iter().map(|(p, _)| p));
    children.sort_unstable();
    children.dedup();
    let names: Vec<String> = children.iter().map(|p| comm(*p)).collect();
    assert!(names.iter().any(|n| n == "chromedriver"), "{names:?}");
    assert!(names.iter().filter(|n| n.contains("chrom") && *n != "chromedriver").count() >= 2, "{names:?}");
    for child in &children {
        let env = environ(*child);
        for (var, value) in secrets {
            // A 6-digit PIN may occur inside a pid in a path: short values count only as a whole value.
            let leaked: Vec<&String> = env
                .iter()
                .filter(|e| {
                    e.starts_with(&format!("{var}="))
                        || e.split_once('=').is_some_and(|(_, v)| v == value)
                        || (value.len() >= 12 && e.contains(value))
                })
                .collect();
            assert!(leaked.is_empty(), "`{var}` reached {} ({child}): {leaked:?}", comm(*child));
        }
        let tmpdir = env.iter().find_map(|e| e.strip_prefix("TMPDIR="));
        if let Some(dir) = tmpdir {
            assert!(dir.starts_with(tmp.to_str().unwrap()), "{} has TMPDIR {dir}", comm(*child));
        }
    }

    // SIGKILL: no teardown runs, yet nothing of the browser survives.
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    child.wait().await.unwrap();
    let needle = tmp.display().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (by_env, by_cmdline) = (processes_with_tmpdir_under(&tmp), processes_mentioning(&needle));
        if by_env.is_empty() && by_cmdline.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "browser processes survived the binary by 10 s: {by_env:?} {by_cmdline:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(scratch_dirs(&tmp).len(), 1, "the killed binary could not remove its scratch dir");

    // The next start sweeps it (here the daemon, which logs nothing in: `on_start = "never"`).
    let mut daemon = rig.command(&config, &["run"], &secrets).stderr(std::process::Stdio::null()).spawn().unwrap();
    let url = format!("http://127.0.0.1:{port}/healthz");
    wait_for("the daemon to serve /healthz", Duration::from_secs(30), || async {
        support::http_get(&url).await.filter(|(status, _)| *status == 200)
    })
    .await;
    assert!(scratch_dirs(&tmp).is_empty(), "left after the sweep: {:?}", scratch_dirs(&tmp));
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(daemon.id().unwrap() as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(15), daemon.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}");
    rig.assert_no_browser_left();
}
