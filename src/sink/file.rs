//! The file sink: the document at a path, replaced atomically, mode 0600 (or the sink's `mode` and `group`).
//!
//! Readers never see a torn or empty file: the new bytes go to a temporary file in the same directory, which is
//! fsynced and renamed over the target (a symlink at the target is replaced, never written through), and then the
//! directory is fsynced. A failure leaves the previous file untouched. Directories it has to create are 0700
//! whatever the umask (0750 with the sink's group when that group may read the file). A document of the same or
//! a higher generation is never replaced (`SinkError::Fenced`).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::Rng;

use super::{SinkError, expand, parse_document};
use crate::config::FileAccess;
use crate::token::TokenDocument;

pub struct FileSink {
    template: String,
    access: FileAccess,
}

impl FileSink {
    /// A sink writing mode 0600 files with this process's group.
    pub fn new(template: &str) -> Self {
        Self::with_access(template, FileAccess::PRIVATE)
    }

    /// A sink writing files with `access`'s mode and group (`sinks[i].mode`, `sinks[i].group`).
    pub fn with_access(template: &str, access: FileAccess) -> Self {
        Self { template: template.to_owned(), access }
    }

    pub fn path_for(&self, account: &str) -> PathBuf {
        PathBuf::from(expand(&self.template, account))
    }

    /// Replace the file with `doc`, unless it holds a document of the same or a higher generation
    /// (`SinkError::Fenced`; the same bytes count as written). The check and the rename are not one atomic step:
    /// only the lease keeps two writers apart, the check stops a replica that woke up after losing it.
    pub async fn publish(&self, doc: &TokenDocument) -> Result<(), SinkError> {
        let path = self.path_for(&doc.account);
        let bytes = doc.to_bytes();
        let access = self.access;
        let generation = doc.generation;
        tokio::task::spawn_blocking(move || {
            if let Ok(held) = std::fs::read(&path) {
                if held == bytes {
                    return Ok(());
                }
                if let Ok(held) = serde_json::from_slice::<TokenDocument>(&held)
                    && held.generation >= generation
                {
                    let what = path.display().to_string();
                    return Err(SinkError::Fenced { what, offered: generation, held: held.generation });
                }
            }
            write_with_access(&path, &bytes, access).map_err(|source| SinkError::Write { path, source })
        })
        .await
        .unwrap_or_else(|join| {
            Err(SinkError::Write { path: self.path_for(&doc.account), source: std::io::Error::other(join) })
        })
    }

    /// Prove that `account`'s document could be written now, before any login: the target is not a directory, and
    /// a temporary file with the sink's mode and group can be created (and is removed again) in its directory.
    pub async fn preflight(&self, account: &str) -> Result<(), SinkError> {
        let path = self.path_for(account);
        let access = self.access;
        tokio::task::spawn_blocking(move || {
            if std::fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
                return Err(SinkError::IsDirectory { path });
            }
            let dir = parent_dir(&path).to_path_buf();
            let probe = (|| {
                create_dirs(&dir, access)?;
                let (tmp, file) = create_temp(&dir, ".preflight", access)?;
                drop(file);
                std::fs::remove_file(&tmp)
            })();
            probe.map_err(|source| SinkError::Write { path: dir, source })
        })
        .await
        .unwrap_or_else(|join| {
            Err(SinkError::Write { path: self.path_for(account), source: std::io::Error::other(join) })
        })
    }

    pub async fn read(&self, account: &str) -> Result<Option<TokenDocument>, SinkError> {
        let path = self.path_for(account);
        match tokio::fs::read(&path).await {
            Ok(bytes) => parse_document(path.display().to_string(), &bytes).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SinkError::Read { path, source }),
        }
    }
}

/// Write `bytes` to `path` so that any reader sees either the old content or the new, never a mix; mode 0600.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with_access(path, bytes, FileAccess::PRIVATE)
}

/// `write_atomically` with the file's mode and group given by `access` (set on the temporary file before the
/// rename, so the target never exists with other permissions).
pub fn write_with_access(path: &Path, bytes: &[u8], access: FileAccess) -> std::io::Result<()> {
    let dir = parent_dir(path);
    create_dirs(dir, access)?;
    let name = path.file_name().ok_or_else(|| std::io::Error::other("path has no file name"))?;
    let (tmp, mut file) = create_temp(dir, &name.to_string_lossy(), access)?;
    let result = (|| {
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// A new file `.{stem}.{random}.tmp` in `dir`, with `access`'s mode and group whatever the umask.
fn create_temp(dir: &Path, stem: &str, access: FileAccess) -> std::io::Result<(PathBuf, std::fs::File)> {
    let tmp = dir.join(format!(".{stem}.{:016x}.tmp", rand::rng().random::<u64>()));
    let file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    let set = (|| {
        if let Some(gid) = access.gid {
            std::os::unix::fs::fchown(&file, None, Some(gid))?;
        }
        // The umask can only remove bits: set them explicitly so the intent survives any umask.
        file.set_permissions(std::fs::Permissions::from_mode(access.mode))
    })();
    match set {
        Ok(()) => Ok((tmp, file)),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Create `dir` and its missing parents. Those it creates are 0700 whatever the umask (in a world-writable one
/// anybody could rename another file over the token), or 0750 with `access`'s group when the group may read the
/// file (it must reach it). Existing directories are left as they are.
fn create_dirs(dir: &Path, access: FileAccess) -> std::io::Result<()> {
    let shared = access.group_readable();
    let mode = if shared { 0o750 } else { 0o700 };
    let missing: Vec<&Path> = dir.ancestors().take_while(|d| !d.as_os_str().is_empty() && !d.exists()).collect();
    for d in missing.into_iter().rev() {
        match std::fs::DirBuilder::new().mode(mode).create(d) {
            Ok(()) => {
                if shared && let Some(gid) = access.gid {
                    std::os::unix::fs::chown(d, None, Some(gid))?;
                }
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Make `dir` (and its missing parents) exist as directories only this user can enter: what `create_dirs` does
/// for a private file, and an existing `dir` this user owns loses its group and other bits. For the directories
/// whose names tell something (`accounts/`, `failures/`); a parent such as `state_dir` is never changed when it
/// exists (systemd's `StateDirectory=` chooses its mode).
pub fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    create_dirs(dir, FileAccess::PRIVATE)?;
    let meta = std::fs::metadata(dir)?;
    // SAFETY: geteuid has no preconditions.
    let mine = meta.uid() == unsafe { libc::geteuid() };
    if mine && meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(meta.permissions().mode() & 0o7700))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn replaces_a_symlink_instead_of_writing_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep me").unwrap();
        let target = dir.path().join("token.json");
        symlink(&victim, &target).unwrap();
        write_atomically(&target, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        assert!(!std::fs::symlink_metadata(&target).unwrap().file_type().is_symlink());
    }

    fn doc(generation: u64, token: &str) -> TokenDocument {
        let now = chrono::Utc::now();
        TokenDocument {
            account: "a".into(),
            access_token: token.into(),
            extended_token: None,
            token_type: "Bearer".into(),
            user_id: "U".into(),
            user_name: "N".into(),
            email: "e@x".into(),
            exchanges: vec![],
            products: vec![],
            issued_at: crate::token::ist(now),
            expires_at: crate::token::expiry_for(now),
            generation,
        }
    }

    #[tokio::test]
    async fn never_goes_back_in_generation() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileSink::new(&format!("{}/{{account}}.json", dir.path().display()));
        sink.publish(&doc(7, "seven")).await.unwrap();
        sink.publish(&doc(7, "seven")).await.expect("the same bytes again count as written");
        let refused = sink.publish(&doc(6, "six")).await.unwrap_err();
        assert!(matches!(refused, SinkError::Fenced { offered: 6, held: 7, .. }), "{refused}");
        assert!(!refused.is_transient());
        assert!(matches!(sink.publish(&doc(7, "other")).await, Err(SinkError::Fenced { .. })));
        sink.publish(&doc(8, "eight")).await.unwrap();
        assert_eq!(sink.read("a").await.unwrap().unwrap().access_token, "eight");
    }

    #[test]
    fn group_mode_and_group_are_applied_and_created_dirs_let_the_group_in() {
        let dir = tempfile::tempdir().unwrap();
        // Root may give any group; others only their own.
        // SAFETY: geteuid/getegid have no preconditions.
        let gid = if unsafe { libc::geteuid() } == 0 { 65534 } else { unsafe { libc::getegid() } };
        let target = dir.path().join("shared/token.json");
        write_with_access(&target, b"doc", FileAccess { mode: 0o640, gid: Some(gid) }).unwrap();
        let meta = std::fs::metadata(&target).unwrap();
        assert_eq!((meta.permissions().mode() & 0o777, meta.gid()), (0o640, gid));
        let parent = std::fs::metadata(target.parent().unwrap()).unwrap();
        assert_eq!((parent.permissions().mode() & 0o777, parent.gid()), (0o750, gid));
    }

    #[test]
    fn created_dirs_are_0700_and_existing_private_dirs_are_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        ensure_private_dir(&deep).unwrap();
        for d in [dir.path().join("a"), dir.path().join("a/b"), deep.clone()] {
            assert_eq!(std::fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700, "{}", d.display());
        }
        std::fs::set_permissions(&deep, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&deep).unwrap();
        assert_eq!(std::fs::metadata(&deep).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[tokio::test]
    async fn preflight_refuses_a_directory_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileSink::new(&format!("{}/{{account}}.json", dir.path().display()));
        sink.preflight("a").await.unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the probe file was removed");
        std::fs::create_dir(dir.path().join("b.json")).unwrap();
        let err = sink.preflight("b").await.unwrap_err();
        assert!(matches!(err, SinkError::IsDirectory { .. }), "{err}");
    }

    #[test]
    fn mode_is_0600_and_no_temp_file_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("sub/token.json");
        write_atomically(&target, b"one").unwrap();
        write_atomically(&target, b"two").unwrap();
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> =
            std::fs::read_dir(target.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("token.json")]);
    }
}
