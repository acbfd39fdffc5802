//! Failure artifacts: what the page looked like when a step failed, as `{dir}/<time>-<account>-<step>.png` and
//! `.html`, keeping only the newest N.
//!
//! Before the screenshot every input on the page is blanked, and the HTML is scrubbed of the values typed (PIN,
//! mobile) and of every `value="…"` attribute, so no secret lands on disk. Capturing is best effort: a failure here
//! is logged and never masks the error being recorded.

use std::path::{Path, PathBuf};

use fantoccini::Client;

/// Strings that must never be written to an artifact.
pub struct Scrub {
    secrets: Vec<String>,
}

impl Scrub {
    pub fn new(secrets: Vec<String>) -> Self {
        Self { secrets: secrets.into_iter().filter(|s| !s.is_empty()).collect() }
    }

    /// Remove every secret and every `value` attribute from `html`.
    pub fn html(&self, html: &str) -> String {
        let mut out = scrub_value_attributes(html);
        for s in &self.secrets {
            out = out.replace(s.as_str(), "[redacted]");
        }
        out
    }
}

fn scrub_value_attributes(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(pos) = rest.find(" value=\"") {
        out.push_str(&rest[..pos]);
        out.push_str(" value=\"[redacted]\"");
        let after = &rest[pos + " value=\"".len()..];
        rest = match after.find('"') {
            Some(end) => &after[end + 1..],
            None => "",
        };
    }
    out.push_str(rest);
    out
}

pub struct ArtifactStore {
    dir: PathBuf,
    keep: usize,
}

impl ArtifactStore {
    pub fn new(dir: PathBuf, keep: usize) -> Self {
        Self { dir, keep }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Screenshot + HTML of the current page. Returns the files written.
    pub async fn capture(&self, client: &Client, account: &str, step: &str, scrub: &Scrub) -> Vec<PathBuf> {
        if self.keep == 0 {
            return Vec::new();
        }
        let blank = "document.querySelectorAll('input').forEach(function (i) { i.value = ''; });";
        let _ = client.execute(blank, vec![]).await;
        let png = client.screenshot().await.ok();
        let html = client.source().await.ok().map(|h| scrub.html(&h));
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let stem = format!("{stamp}-{account}-{step}");
        let mut written = Vec::new();
        // 0700 whatever the umask: the names tell which account failed where.
        if let Err(e) = crate::sink::ensure_private_dir(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot create the failure artifact dir");
            return written;
        }
        for (ext, bytes) in [("png", png), ("html", html.map(String::into_bytes))] {
            let Some(bytes) = bytes else { continue };
            let path = self.dir.join(format!("{stem}.{ext}"));
            match crate::sink::write_atomically(&path, &bytes) {
                Ok(()) => written.push(path),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot write a failure artifact"),
            }
        }
        if !written.is_empty() {
            let shown: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
            tracing::warn!(account, step, files = %shown.join(", "), "saved failure artifacts");
        }
        self.prune();
        written
    }

    /// Keep the newest `keep` captures (a capture is the .png/.html pair sharing a name).
    fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        let mut stems: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                let p = e.path();
                matches!(p.extension().and_then(|x| x.to_str()), Some("png" | "html"))
                    .then(|| p.file_stem()?.to_str().map(str::to_owned))
                    .flatten()
            })
            .collect();
        stems.sort();
        stems.dedup();
        let excess = stems.len().saturating_sub(self.keep);
        for stem in &stems[..excess] {
            for ext in ["png", "html"] {
                let _ = std::fs::remove_file(self.dir.join(format!("{stem}.{ext}")));
            }
        }
    }
}

/// The parts of an artifact's file name `<stamp>-<account>-<step>.<ext>`, when it is one (only
/// `[A-Za-z0-9._-]`, no leading dot): `(stamp, account, step, ext)`. Names that do not parse are not ours.
pub fn parse_artifact_name(name: &str) -> Option<(&str, &str, &str, &str)> {
    let safe = !name.starts_with('.') && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    let (stem, ext) = name.rsplit_once('.')?;
    let (stamp, rest) = stem.split_once('-')?;
    let (account, step) = rest.rsplit_once('-')?;
    let parts_ok =
        [stamp, account, step].iter().all(|p| !p.is_empty()) && stamp.starts_with(|c: char| c.is_ascii_digit());
    (safe && parts_ok && matches!(ext, "png" | "html")).then_some((stamp, account, step, ext))
}

/// The file name of `account`'s newest screenshot in `dir` (stamps sort by time), if any. Regular files only.
pub fn newest_screenshot(dir: &Path, account: &str) -> Option<String> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| matches!(parse_artifact_name(name), Some((_, a, _, "png")) if a == account))
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_names_parse_and_the_newest_screenshot_is_found() {
        assert_eq!(
            parse_artifact_name("20261129T080000.123Z-my-acct-pin.png"),
            Some(("20261129T080000.123Z", "my-acct", "pin", "png"))
        );
        for bad in [
            "../x-a-pin.png",
            ".20261129-a-pin.png",
            "20261129-a-pin.txt",
            "x-a-pin.png",
            "2026-pin.png",
            "2026-a-b.png/x",
        ] {
            assert_eq!(parse_artifact_name(bad), None, "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "20260101T000000Z-a-pin.png",
            "20260103T000000Z-a-otp.html",
            "20260102T000000Z-a-otp.png",
            "20260104T000000Z-b-pin.png",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        assert_eq!(newest_screenshot(dir.path(), "a").as_deref(), Some("20260102T000000Z-a-otp.png"));
        assert_eq!(newest_screenshot(dir.path(), "c"), None);
        assert_eq!(newest_screenshot(&dir.path().join("missing"), "a"), None);
    }

    #[test]
    fn html_is_scrubbed_of_values_and_secrets() {
        let scrub = Scrub::new(vec!["123456".into(), "9876543210".into()]);
        let html = r#"<input id="pinCode" value="123456"><p>mobile 9876543210</p><input value="x" id="a">"#;
        let out = scrub.html(html);
        assert!(!out.contains("123456") && !out.contains("9876543210"), "{out}");
        assert_eq!(
            out,
            r#"<input id="pinCode" value="[redacted]"><p>mobile [redacted]</p><input value="[redacted]" id="a">"#
        );
    }

    #[test]
    fn prune_keeps_the_newest_pairs() {
        let dir = tempfile::tempdir().unwrap();
        for stamp in ["20260101T000000Z-a-pin", "20260102T000000Z-a-pin", "20260103T000000Z-a-otp"] {
            std::fs::write(dir.path().join(format!("{stamp}.png")), b"p").unwrap();
            std::fs::write(dir.path().join(format!("{stamp}.html")), b"h").unwrap();
        }
        ArtifactStore::new(dir.path().to_path_buf(), 2).prune();
        let mut left: Vec<_> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(
            left,
            [
                "20260102T000000Z-a-pin.html",
                "20260102T000000Z-a-pin.png",
                "20260103T000000Z-a-otp.html",
                "20260103T000000Z-a-otp.png"
            ]
        );
    }
}
