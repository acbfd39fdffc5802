//! Who can read a secret: the permission checks behind `*_file` secrets (refused when every user can read the file,
//! as ssh refuses such a private key) and behind a config file holding inline secrets (a warning).
//!
//! Reads file metadata only; never the secret itself.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Who besides the owner can read a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// Every user on the machine (the "other" read bit).
    Everyone,
    /// Members of this group, which is not this process's own group.
    Group(u32),
}

/// Who besides its owner can read the file behind `meta`: `None` when nobody, or only this process's own group
/// (`root:upstox-relogin 0640` for a service running as `upstox-relogin`, the layout the systemd recipe uses).
pub fn exposure(meta: &std::fs::Metadata) -> Option<Exposure> {
    let mode = meta.permissions().mode();
    if mode & 0o004 != 0 {
        return Some(Exposure::Everyone);
    }
    // SAFETY: getegid has no preconditions and cannot fail.
    let own_group = unsafe { libc::getegid() };
    (mode & 0o040 != 0 && meta.gid() != own_group).then_some(Exposure::Group(meta.gid()))
}

/// What the permissions of the secret file at `path` (given as `key`) call for.
pub(super) enum FileVerdict {
    Fine,
    /// Readable by a group other than ours: worth a warning.
    Warn(String),
    /// Readable by everyone: refused.
    Refuse(String),
}

/// Judge the secret file at `path` by its permissions (following symlinks, as reading it does).
pub(super) fn judge_secret_file(path: &Path) -> FileVerdict {
    let Ok(meta) = std::fs::metadata(path) else { return FileVerdict::Fine };
    let mode = meta.permissions().mode() & 0o7777;
    match exposure(&meta) {
        None => FileVerdict::Fine,
        Some(Exposure::Everyone) => FileVerdict::Refuse(format!(
            "`{}` is readable by every user on this machine (mode {mode:04o}); fix: chmod 0600 {} (or 0640 with a \
             group only the service user is in)",
            path.display(),
            path.display()
        )),
        Some(Exposure::Group(gid)) => FileVerdict::Warn(format!(
            "`{}` is readable by group {gid} (mode {mode:04o}), which is not this process's group; fix: chmod 0600 \
             {}, unless only the service user is in that group",
            path.display(),
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(mode: u32) -> FileVerdict {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin");
        std::fs::write(&path, "123456").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        judge_secret_file(&path)
    }

    #[test]
    fn a_world_readable_secret_file_is_refused_with_the_fix() {
        let FileVerdict::Refuse(msg) = verdict(0o644) else { panic!("0644 must be refused") };
        assert!(msg.contains("every user") && msg.contains("chmod 0600"), "{msg}");
        assert!(!msg.contains("123456"));
        assert!(matches!(verdict(0o444), FileVerdict::Refuse(_)));
    }

    #[test]
    fn owner_only_and_own_group_files_are_fine() {
        assert!(matches!(verdict(0o600), FileVerdict::Fine));
        assert!(matches!(verdict(0o400), FileVerdict::Fine));
        // A file created here has this process's group: shared with our own group only.
        assert!(matches!(verdict(0o640), FileVerdict::Fine));
    }

    #[test]
    fn another_group_gets_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pin");
        std::fs::write(&path, "1").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        // SAFETY: getegid has no preconditions.
        let other = if unsafe { libc::getegid() } == 65534 { 0 } else { 65534 };
        // Only root may give a file a group it is not in; elsewhere this case cannot be built.
        if std::os::unix::fs::chown(&path, None, Some(other)).is_ok() {
            let FileVerdict::Warn(msg) = judge_secret_file(&path) else { panic!("another group warns") };
            assert!(msg.contains(&format!("group {other}")), "{msg}");
        }
    }
}
