//! The file sink: the document at a path, replaced atomically, mode 0600.
//!
//! Readers never see a torn or empty file: the new bytes go to a temporary file in the same directory, which is
//! fsynced and renamed over the target (a symlink at the target is replaced, never written through), and then the
//! directory is fsynced. A failure leaves the previous file untouched. Directories it has to create are 0700.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::Rng;

use super::{SinkError, expand, parse_document};
use crate::token::TokenDocument;

pub struct FileSink {
    template: String,
}

impl FileSink {
    pub fn new(template: &str) -> Self {
        Self { template: template.to_owned() }
    }

    pub fn path_for(&self, account: &str) -> PathBuf {
        PathBuf::from(expand(&self.template, account))
    }

    pub async fn publish(&self, doc: &TokenDocument) -> Result<(), SinkError> {
        let path = self.path_for(&doc.account);
        let bytes = doc.to_bytes();
        tokio::task::spawn_blocking(move || {
            write_atomically(&path, &bytes).map_err(|source| SinkError::Write { path, source })
        })
        .await
        .unwrap_or_else(|join| {
            Err(SinkError::Write { path: self.path_for(&doc.account), source: std::io::Error::other(join) })
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

/// Write `bytes` to `path` so that any reader sees either the old content or the new, never a mix.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // Directories we create are 0700 whatever the umask: in a world-writable one anybody could rename another file
    // over the token. Existing directories are left as they are.
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let name = path.file_name().ok_or_else(|| std::io::Error::other("path has no file name"))?;
    let tmp = dir.join(format!(".{}.{:016x}.tmp", name.to_string_lossy(), rand::rng().random::<u64>()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        // The umask can only remove bits from 0600, but set it explicitly so the intent survives any umask.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
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
