//! The file sink through its public API, the way trading bots meet it: readers polling the token file while it is
//! replaced never see a torn, empty or unparseable document; the file is 0600 even under `umask 000`; a symlink at
//! the target is replaced, never written through.
//!
//! `umask` is process-wide, so the `umask 000` writes run in a child process (this test binary re-run with a filter
//! for that one test); nothing else in this process ever changes the umask.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use chrono::{DateTime, FixedOffset};
use upstox_relogin::sink::FileSink;
use upstox_relogin::token::TokenDocument;

/// Set in the child process of `token_file_is_0600_under_umask_000`: the directory to write into.
const UMASK_CHILD_DIR: &str = "UPSTOX_RELOGIN_TEST_UMASK_CHILD_DIR";

fn at(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).unwrap()
}

/// A document for `generation`; its size varies with the generation, so a read mixing two writes cannot parse
/// as either.
fn doc(generation: u64) -> TokenDocument {
    TokenDocument {
        account: "primary".into(),
        access_token: format!("eyJaccess.{generation}.{}", "a".repeat(64)),
        extended_token: Some(format!("eyJextended.{generation}")),
        token_type: "Bearer".into(),
        user_id: "AB1234".into(),
        user_name: "x".repeat((generation % 7) as usize * 500),
        email: "trader@example.com".into(),
        exchanges: vec!["NSE".into(), "NFO".into()],
        products: vec!["D".into(), "I".into()],
        issued_at: at("2026-11-28T08:30:05+05:30"),
        expires_at: at("2026-11-29T03:30:00+05:30"),
        generation,
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_a_torn_or_empty_token_during_many_writes() {
    const MIN_WRITES: u64 = 200;
    const MIN_READS: u64 = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let sink = FileSink::new(&dir.path().join("{account}.json").display().to_string());
    let path = sink.path_for("primary");
    sink.publish(&doc(1)).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (stop, reads, path) = (Arc::clone(&stop), Arc::clone(&reads), path.clone());
        std::thread::spawn(move || {
            let mut bad = Vec::new();
            let mut last = 0;
            while !stop.load(Ordering::Acquire) {
                match std::fs::read(&path) {
                    Ok(bytes) => match serde_json::from_slice::<TokenDocument>(&bytes) {
                        Ok(d) if d.generation < last => bad.push(format!("generation {last} then {}", d.generation)),
                        Ok(d) if d != doc(d.generation) => bad.push(format!("generation {} altered", d.generation)),
                        Ok(d) => last = d.generation,
                        Err(e) => bad.push(format!("unparseable read of {} bytes: {e}", bytes.len())),
                    },
                    Err(e) => bad.push(format!("read failed: {e}")),
                }
                reads.fetch_add(1, Ordering::Release);
            }
            bad
        })
    };

    // At least MIN_WRITES writes, and more until the reader has looked MIN_READS times (a starved reader would
    // prove nothing).
    let mut generation = 1;
    while generation <= MIN_WRITES || reads.load(Ordering::Acquire) < MIN_READS {
        generation += 1;
        sink.publish(&doc(generation)).await.unwrap();
        assert!(generation < 1_000_000, "the reader thread stopped reading");
    }
    stop.store(true, Ordering::Release);
    let bad = reader.join().unwrap();
    let total = reads.load(Ordering::Acquire);
    assert!(bad.is_empty(), "{} bad reads out of {total}, e.g. {:?}", bad.len(), &bad[..bad.len().min(5)]);
    assert_eq!(sink.read("primary").await.unwrap(), Some(doc(generation)), "the last write wins");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, ["primary.json"], "no temporary file is left behind");
    eprintln!("{total} reads during {} writes: 0 torn, empty or unparseable", generation - 1);
}

#[tokio::test]
async fn a_symlink_at_the_target_is_replaced_not_written_through() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "keep me").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    let sink = FileSink::new(&dir.path().join("{account}.json").display().to_string());
    let target = sink.path_for("primary");
    symlink(&victim, &target).unwrap();

    sink.publish(&doc(7)).await.unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me", "the link's target is untouched");
    assert_eq!(mode(&victim), 0o644);
    let meta = std::fs::symlink_metadata(&target).unwrap();
    assert!(meta.file_type().is_file(), "the link itself was replaced by a regular file");
    assert_eq!(mode(&target), 0o600);
    assert_eq!(std::fs::read(&target).unwrap(), doc(7).to_bytes());

    // A dangling link too.
    std::fs::remove_file(&target).unwrap();
    symlink(dir.path().join("nowhere"), &target).unwrap();
    sink.publish(&doc(8)).await.unwrap();
    assert!(!dir.path().join("nowhere").exists(), "nothing was created through the link");
    assert_eq!(std::fs::read(&target).unwrap(), doc(8).to_bytes());
}

#[test]
fn token_file_is_0600_under_umask_000() {
    if let Some(dir) = std::env::var_os(UMASK_CHILD_DIR) {
        write_under_umask_000(Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // An existing world-readable token (from an older version, or copied by hand) gets replaced as 0600 too.
    let existing = dir.path().join("old/primary.json");
    std::fs::create_dir_all(existing.parent().unwrap()).unwrap();
    std::fs::write(&existing, b"{}").unwrap();
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o666)).unwrap();

    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "token_file_is_0600_under_umask_000", "--test-threads=1", "--nocapture"])
        .env(UMASK_CHILD_DIR, dir.path())
        .output()
        .unwrap();
    let output = format!("{}{}", String::from_utf8_lossy(&child.stdout), String::from_utf8_lossy(&child.stderr));
    assert!(child.status.success(), "child failed:\n{output}");
    assert!(output.contains("umask child: 000"), "the child ran the writes under umask 000:\n{output}");

    let fresh = dir.path().join("new/sub/primary.json");
    assert_eq!(std::fs::read(&fresh).unwrap(), doc(1).to_bytes());
    assert_eq!(mode(&fresh), 0o600, "new token file");
    assert_eq!(mode(fresh.parent().unwrap()), 0o700, "a directory the sink had to create");
    assert_eq!(mode(dir.path().join("new").as_path()), 0o700);
    assert_eq!(std::fs::read(&existing).unwrap(), doc(2).to_bytes());
    assert_eq!(mode(&existing), 0o600, "replaced token file");
}

/// In the child process: umask 000, then publish a new file (in directories that do not exist yet) and replace an
/// existing 0666 one.
fn write_under_umask_000(dir: &Path) {
    // SAFETY: umask(2) only changes this (child) process's file creation mask.
    unsafe { libc::umask(0) };
    // SAFETY: as above; reading the mask means setting it, so set it back to 000.
    let current = unsafe { libc::umask(0) };
    println!("umask child: {current:03o}");
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    runtime.block_on(async {
        FileSink::new(&dir.join("new/sub/{account}.json").display().to_string()).publish(&doc(1)).await.unwrap();
        FileSink::new(&dir.join("old/{account}.json").display().to_string()).publish(&doc(2)).await.unwrap();
    });
}
