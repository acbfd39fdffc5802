//! What must survive restarts, per account, under `{state_dir}/accounts/`: the generation counter, the last
//! attempt, the lockout guard's PIN count and the last TOTP step used.
//!
//! Each account has a JSON file replaced atomically, and a lock file held (flock) for the whole of a login so two
//! processes never log one account in at once. This module stores facts; deciding what they mean (the cap, the
//! skip rule) belongs to `login::guard` and `run`.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("state file `{}` is corrupt (move it away to start afresh; the generation then restarts from the sinks)", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write state file `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot lock `{}`", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}` is not writable by this user (uid {uid}; it belongs to uid {owner}); fix: chown -R {uid} {} (or run as uid {owner})", path.display(), fix.display())]
    NotWritable { path: PathBuf, uid: u32, owner: u32, fix: PathBuf },
    #[error("cannot create anything in `{}` (for `state_dir` `{}`); fix: point `state_dir` at a directory this user may write", path.display(), state_dir.display())]
    CannotCreate {
        path: PathBuf,
        state_dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How a run ended, as persisted and shown by `status` (`"success"`, `"skipped"`, `"republished"`, `"failed"` in
/// JSON; the spellings are stable).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AttemptResult {
    /// A new token was issued and published.
    Success,
    /// The published token was still valid in every sink.
    Skipped,
    Failed,
    /// The published token was still valid and was copied to sinks that lacked it; no login was needed.
    Republished,
}

impl AttemptResult {
    /// The persisted spelling, also the `result` label of `login_attempts_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptResult::Success => "success",
            AttemptResult::Skipped => "skipped",
            AttemptResult::Failed => "failed",
            AttemptResult::Republished => "republished",
        }
    }
}

impl std::fmt::Display for AttemptResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of failure ended a run: for people (the status page, notifications' `reason`) and for alert routing.
/// Persisted in `snake_case`; a class this version does not know reads as `other`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The page refused the PIN.
    WrongPin,
    /// The page refused the TOTP code (wrong secret, or a skewed clock).
    TotpRejected,
    /// The page refused the mobile number.
    WrongMobile,
    /// Upstox blocked the account (too many wrong PINs).
    AccountBlocked,
    /// The page refused an input with a message we do not recognise (or sent the login back to the start).
    PageRejected,
    /// Upstox blocked OTP for the account for about 10 minutes (1017078/1017125/1017069).
    OtpBlocked,
    /// The authorization dialog refused the app (`UDAPI100068`: client_id or redirect_uri).
    DialogRefused,
    /// A bot-block page instead of the login form.
    BotBlocked,
    /// An element of the login page did not appear: the page changed, or was too slow.
    PageChanged,
    /// The PIN went in and no code came back (no redirect, a lost session): whether it was accepted is unknown.
    OutcomeUnknown,
    /// The redirect did not carry our `state`, or no code.
    Redirect,
    /// chromedriver or Chromium failed (start, session, lost session).
    Browser,
    /// Upstox's token endpoint refused the code for a reason a human must fix (client id, secret, redirect URI).
    ExchangeRefused,
    /// The token request failed (transport, 5xx, malformed answer).
    Exchange,
    /// The lockout guard refused to submit a PIN.
    Guard,
    /// The token did not reach every sink.
    Publish,
    /// The run's deadline passed.
    Deadline,
    /// Another process was logging the account in.
    Busy,
    /// Local set-up: state files, the HTTP client, an unusable TOTP secret.
    Setup,
    /// A v3 access-token request was not approved (or its token not delivered) before it expired or the wait
    /// (`login.approval_timeout_secs`) ended.
    ApprovalMissing,
    /// A v3 access-token request could not be sent or Upstox refused it.
    TokenRequest,
    /// The coordination store (`coordination.url`) did not answer, or this run lost its lease.
    Coordination,
    /// A replica that took the lease later published a newer token; this run's token was refused (fenced).
    Superseded,
    /// A class written by a newer version.
    #[serde(other)]
    Other,
}

impl FailureClass {
    /// The persisted spelling, also the `reason` of a notification.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::WrongPin => "wrong_pin",
            FailureClass::TotpRejected => "totp_rejected",
            FailureClass::WrongMobile => "wrong_mobile",
            FailureClass::AccountBlocked => "account_blocked",
            FailureClass::PageRejected => "page_rejected",
            FailureClass::OtpBlocked => "otp_blocked",
            FailureClass::DialogRefused => "dialog_refused",
            FailureClass::BotBlocked => "bot_blocked",
            FailureClass::PageChanged => "page_changed",
            FailureClass::OutcomeUnknown => "outcome_unknown",
            FailureClass::Redirect => "redirect",
            FailureClass::Browser => "browser",
            FailureClass::ExchangeRefused => "exchange_refused",
            FailureClass::Exchange => "exchange",
            FailureClass::Guard => "guard",
            FailureClass::Publish => "publish",
            FailureClass::Deadline => "deadline",
            FailureClass::Busy => "busy",
            FailureClass::Setup => "setup",
            FailureClass::ApprovalMissing => "approval_missing",
            FailureClass::TokenRequest => "token_request",
            FailureClass::Coordination => "coordination",
            FailureClass::Superseded => "superseded",
            FailureClass::Other => "other",
        }
    }
}

impl std::fmt::Display for FailureClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How long one step of a run took (`step` is `login::Step::as_str`: `browser`, `dialog`, `mobile`, `otp`, `pin`,
/// `exchange`, `publish`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StepTime {
    pub step: String,
    /// Milliseconds.
    pub ms: u64,
}

/// How a run ended, as `status` and the status page show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Attempt {
    pub at: DateTime<FixedOffset>,
    pub result: AttemptResult,
    /// The error for a failed attempt (never contains a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The class of a failed attempt's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<FailureClass>,
    /// The whole run, in milliseconds (absent in records written before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The steps of the run's last login (empty when no login was needed, or none started), then `publish`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepTime>,
}

impl Attempt {
    /// An attempt with no class, duration or steps (they are added by the fields' owners).
    pub fn new(at: DateTime<FixedOffset>, result: AttemptResult, error: Option<String>) -> Self {
        Attempt { at, result, error, class: None, duration_ms: None, steps: Vec::new() }
    }
}

/// How many attempts `AccountState::recent_attempts` keeps.
pub const RECENT_ATTEMPTS: usize = 5;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct AccountState {
    /// The generation of the last document published.
    pub generation: u64,
    pub last_attempt: Option<Attempt>,
    pub last_success_at: Option<DateTime<FixedOffset>>,
    /// The lockout guard's facts (flat in the file: `pin_day`, `pin_submissions`, `pin_rejected_day`,
    /// `pins_without_code_in_a_row`).
    #[serde(flatten)]
    pub guard: GuardFacts,
    /// The last TOTP time step typed into the page: never typed again.
    pub last_totp_step: Option<u64>,
    /// The last `RECENT_ATTEMPTS` attempts, newest first (`last_attempt` is the first of them).
    pub recent_attempts: Vec<Attempt>,
    /// The Upstox user id of the account's last published token: a token delivered to the notifier webhook must
    /// belong to it.
    pub user_id: Option<String>,
    /// The end (03:30 IST) of the token slot in which the browser path last fell back to a v3 access-token request:
    /// at most one fallback per slot.
    pub fallback_slot_end: Option<DateTime<FixedOffset>>,
    /// The last time a login found an element of the page only through a fallback locator (the configured
    /// selector no longer matched): `status` shows it so the selector is fixed before the fallback fails too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_locator_fallback: Option<LocatorFallback>,
    /// The last `probe` of the account's login page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_probe: Option<ProbeRecord>,
}

impl AccountState {
    /// Record `attempt` as the last one and at the head of `recent_attempts` (keeping `RECENT_ATTEMPTS`).
    pub fn push_attempt(&mut self, attempt: Attempt) {
        self.recent_attempts.insert(0, attempt.clone());
        self.recent_attempts.truncate(RECENT_ATTEMPTS);
        self.last_attempt = Some(attempt);
    }
}

/// A page element found by a fallback locator instead of its configured selector.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LocatorFallback {
    pub at: DateTime<FixedOffset>,
    /// The login step (`mobile`, `otp`, `pin`).
    pub step: String,
    /// `input` or `button`.
    pub element: String,
    /// The configured selector that did not match (`browser.selectors.<step>_<input|submit>`).
    pub configured: String,
    /// What matched instead, e.g. `label "Enter 6-digit PIN"`.
    pub matched: String,
}

/// How the last probe of an account's login page went.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProbeRecord {
    pub at: DateTime<FixedOffset>,
    pub ready: bool,
    /// One line: what was found (and by which locator), or what is wrong.
    pub summary: String,
}

/// The facts the lockout guard (`login::guard`) reads, counted before each PIN click.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GuardFacts {
    /// The IST day (`YYYY-MM-DD` in the file) `pin_submissions` counts for.
    pub pin_day: Option<NaiveDate>,
    /// PIN submissions on `pin_day` that did not end with a code.
    pub pin_submissions: u32,
    /// Set when the page rejected a PIN on that IST day: no more attempts that day.
    pub pin_rejected_day: Option<NaiveDate>,
    /// PIN submissions without a code in a row, whatever the day: reset only when a PIN ends with a code or by
    /// `reset-guard` (Upstox blocks the account after 5 failures in a row [doc help]).
    pub pins_without_code_in_a_row: u32,
}

impl GuardFacts {
    /// PIN submissions counted for `day` (a new day starts at zero).
    pub fn pin_submissions_on(&self, day: NaiveDate) -> u32 {
        if self.pin_day == Some(day) { self.pin_submissions } else { 0 }
    }
}

/// The per-account files under `{state_dir}/accounts/`.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    pub fn new(state_dir: &Path) -> Self {
        Self { dir: state_dir.join("accounts") }
    }

    /// `{state_dir}/accounts`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The account's lock file.
    pub fn lock_path(&self, account: &str) -> PathBuf {
        self.dir.join(format!("{account}.lock"))
    }

    /// The account's state file.
    pub fn path(&self, account: &str) -> PathBuf {
        self.dir.join(format!("{account}.json"))
    }

    pub fn load(&self, account: &str) -> Result<AccountState, StateError> {
        let path = self.path(account);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AccountState::default()),
            Err(source) => Err(StateError::Read { path, source }),
        }
    }

    pub fn save(&self, account: &str, state: &AccountState) -> Result<(), StateError> {
        let path = self.path(account);
        // invariant: AccountState holds only plain data
        let bytes = serde_json::to_vec_pretty(state).expect("state serialises");
        crate::sink::write_atomically(&path, &bytes).map_err(|source| StateError::Write { path, source })
    }

    /// Load, change, save.
    pub fn update(&self, account: &str, change: impl FnOnce(&mut AccountState)) -> Result<AccountState, StateError> {
        let mut state = self.load(account)?;
        change(&mut state);
        self.save(account, &state)?;
        Ok(state)
    }

    /// Take the account's login lock without waiting. `Ok(None)`: another process holds it. Creates `accounts/`
    /// (and `state_dir`) 0700 and the lock file 0600, whatever the umask.
    pub fn try_lock(&self, account: &str) -> Result<Option<AccountLock>, StateError> {
        let path = self.lock_path(account);
        let lock_err = |source| StateError::Lock { path: path.clone(), source };
        crate::sink::ensure_private_dir(&self.dir).map_err(lock_err)?;
        let file =
            File::options().create(true).truncate(false).write(true).mode(0o600).open(&path).map_err(lock_err)?;
        if file.metadata().is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
            // A lock file from an older version (0644): its name is all it tells, but keep the rule simple.
            file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(lock_err)?;
        }
        // SAFETY: flock on a descriptor we own; released when `file` closes.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(Some(AccountLock { _file: file }));
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) { Ok(None) } else { Err(lock_err(err)) }
    }
}

/// Check that this user can write everything under `state_dir` a run writes: `state_dir` itself (or, while it does
/// not exist, the directory it would be created in), `accounts/`, `failures/` and the files in them. For
/// `check-config`: after a `login` as root, the service user's runs would fail on root's files.
///
/// The directory a run creates things in is tried for real (a temporary directory made and removed there):
/// permission bits do not tell root about a path under a regular file, `/proc` or a read-only mount.
pub fn check_writable(state_dir: &Path) -> Result<(), StateError> {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let existing = state_dir.ancestors().find(|d| d.exists()).unwrap_or(Path::new("/"));
    let mut paths = vec![existing.to_path_buf()];
    for sub in ["accounts", "failures"] {
        let dir = state_dir.join(sub);
        if let Ok(entries) = std::fs::read_dir(&dir) {
            paths.push(dir);
            paths.extend(entries.flatten().map(|e| e.path()));
        } else if dir.exists() {
            paths.push(dir);
        }
    }
    for path in paths {
        let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else { continue };
        let is_dir = path.is_dir();
        let wanted = if is_dir { libc::W_OK | libc::X_OK } else { libc::W_OK | libc::R_OK };
        // SAFETY: access(2) reads a NUL-terminated path and touches no memory of ours.
        if unsafe { libc::access(c_path.as_ptr(), wanted) } != 0 {
            let owner = std::fs::metadata(&path).map(|m| m.uid()).unwrap_or(0);
            return Err(StateError::NotWritable { fix: state_dir.to_path_buf(), path, uid, owner });
        }
    }
    // The permission bits allow it (they always do for root): try it.
    if let Err(source) = tempfile::Builder::new().prefix(".upstox-relogin-check-").tempdir_in(existing) {
        return Err(StateError::CannotCreate {
            path: existing.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            source,
        });
    }
    Ok(())
}

/// Held while an account logs in; dropping it releases the lock.
pub struct AccountLock {
    _file: File,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_defaults_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        assert_eq!(store.load("a").unwrap(), AccountState::default());
        let saved = store.update("a", |s| s.generation = 7).unwrap();
        assert_eq!(store.load("a").unwrap(), saved);
        assert_eq!(store.load("a").unwrap().generation, 7);
    }

    #[test]
    fn recent_attempts_keep_the_newest_five_and_read_old_files() {
        let at = |m: u32| chrono::DateTime::parse_from_rfc3339(&format!("2026-11-28T08:{m:02}:00+05:30")).unwrap();
        let mut state = AccountState::default();
        for m in 0..7 {
            state.push_attempt(Attempt::new(at(m), AttemptResult::Failed, None));
        }
        let minutes: Vec<u32> = state.recent_attempts.iter().map(|a| chrono::Timelike::minute(&a.at)).collect();
        assert_eq!(minutes, [6, 5, 4, 3, 2]);
        assert_eq!(state.last_attempt.as_ref().map(|a| a.at), Some(at(6)));
        // A file written before classes, steps and the history were kept still loads.
        let old = r#"{"generation":3,"last_attempt":{"at":"2026-11-28T08:30:00+05:30","result":"failed","error":"x"}}"#;
        let state: AccountState = serde_json::from_str(old).unwrap();
        assert!(state.recent_attempts.is_empty() && state.last_attempt.unwrap().class.is_none());
        // A class from a newer version reads as `other` rather than making the file corrupt.
        let newer = r#"{"at":"2026-11-28T08:30:00+05:30","result":"failed","class":"solar_flare"}"#;
        assert_eq!(serde_json::from_str::<Attempt>(newer).unwrap().class, Some(FailureClass::Other));
    }

    #[test]
    fn attempt_results_keep_their_spellings() {
        for (result, json) in [
            (AttemptResult::Success, "\"success\""),
            (AttemptResult::Skipped, "\"skipped\""),
            (AttemptResult::Failed, "\"failed\""),
            (AttemptResult::Republished, "\"republished\""),
        ] {
            assert_eq!(serde_json::to_string(&result).unwrap(), json);
            assert_eq!(serde_json::from_str::<AttemptResult>(json).unwrap(), result);
            assert_eq!(format!("\"{result}\""), json);
        }
    }

    #[test]
    fn pin_count_is_per_day() {
        let day = |d: &str| d.parse::<NaiveDate>().unwrap();
        let s = GuardFacts { pin_day: Some(day("2026-11-28")), pin_submissions: 2, ..Default::default() };
        assert_eq!(s.pin_submissions_on(day("2026-11-28")), 2);
        assert_eq!(s.pin_submissions_on(day("2026-11-29")), 0);
    }

    #[test]
    fn lock_and_state_files_are_private_and_dirs_0700() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        let store = StateStore::new(&state_dir);
        let _lock = store.try_lock("a").unwrap().unwrap();
        store.update("a", |s| s.generation = 1).unwrap();
        let mode = |p: PathBuf| std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(state_dir.clone()), 0o700);
        assert_eq!(mode(state_dir.join("accounts")), 0o700);
        assert_eq!(mode(state_dir.join("accounts/a.lock")), 0o600);
        assert_eq!(mode(state_dir.join("accounts/a.json")), 0o600);
        assert!(check_writable(&state_dir).is_ok());
    }

    #[test]
    fn old_state_files_load_with_the_new_facts_at_zero() {
        let old = r#"{"generation":3,"pin_day":"2026-11-28","pin_submissions":1,"last_totp_step":5}"#;
        let s: AccountState = serde_json::from_str(old).unwrap();
        assert_eq!((s.guard.pin_submissions, s.guard.pins_without_code_in_a_row), (1, 0));
        assert!(s.last_locator_fallback.is_none() && s.last_probe.is_none());
        let g = GuardFacts { pins_without_code_in_a_row: 4, ..Default::default() };
        let json = serde_json::to_value(g).unwrap();
        assert_eq!(json["pins_without_code_in_a_row"], 4, "a plain serde value: {json}");
        assert_eq!(serde_json::from_value::<GuardFacts>(json).unwrap(), g);
    }

    #[test]
    fn lock_is_exclusive_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        let held = store.try_lock("a").unwrap().expect("first lock");
        assert!(store.try_lock("a").unwrap().is_none());
        drop(held);
        assert!(store.try_lock("a").unwrap().is_some());
    }
}
