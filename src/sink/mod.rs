//! Where token documents are published: a closed set of sinks (file, Redis), dispatched with `match`.
//!
//! A sink writes the exact bytes of `TokenDocument::to_bytes` and can read back what it holds (to skip a login
//! whose token is still valid, and for `status`). A sink never goes back in generation: a document is refused
//! (`SinkError::Fenced`) where one of the same or a higher generation is held (atomically in Redis; checked just
//! before the rename for files). Sinks never touch the browser or the Upstox API, and a failed
//! write never damages what a sink held before.

mod file;
mod redis;

pub use file::FileSink;
pub use file::{ensure_private_dir, write_atomically, write_with_access};
pub use redis::RedisSink;

use crate::config::SinkConfig;
use crate::token::TokenDocument;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot write `{}`", path.display())]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read `{}`", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Redis at `{url}` failed for key `{key}`")]
    Redis {
        url: String,
        key: String,
        #[source]
        source: ::redis::RedisError,
    },
    #[error("`{}` is a directory, not a file: fix: point the sink's `path` at a file", path.display())]
    IsDirectory { path: std::path::PathBuf },
    #[error("`{what}` holds something that is not a token document")]
    Corrupt {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// The sink holds a document of the same or a higher generation: a replica that took the lease later has
    /// published. Refused for good, never retried.
    #[error(
        "`{what}` holds generation {held}, not older than this document's {offered}: not replaced (fenced; a later lease published it)"
    )]
    Fenced { what: String, offered: u64, held: u64 },
}

impl SinkError {
    /// Another try of the same write could succeed (I/O and connection trouble); `false` for a fenced write.
    pub fn is_transient(&self) -> bool {
        !matches!(self, SinkError::Fenced { .. } | SinkError::Corrupt { .. })
    }
}

/// One configured sink: its configuration (for its label) and the backend that does the I/O.
pub struct Sink {
    config: SinkConfig,
    backend: Backend,
}

/// The closed set of sink kinds.
enum Backend {
    File(FileSink),
    Redis(Box<RedisSink>),
}

impl Sink {
    /// Build a sink from its validated configuration. Makes no connection.
    pub fn new(config: &SinkConfig) -> Result<Self, SinkError> {
        let backend = match config {
            SinkConfig::File { path, access, .. } => Backend::File(FileSink::with_access(path, *access)),
            SinkConfig::Redis { url, key, channel, password, .. } => {
                Backend::Redis(Box::new(RedisSink::new(url, key, channel.clone(), password.clone())?))
            }
        };
        Ok(Sink { config: config.clone(), backend })
    }

    /// `file:/var/lib/…/{account}.json` or `redis:upstox:token:{account}`: for messages and metric labels.
    pub fn label(&self) -> String {
        self.config.label()
    }

    /// Where this sink puts `account`'s document, for messages.
    pub fn location(&self, account: &str) -> String {
        match &self.backend {
            Backend::File(s) => s.path_for(account).display().to_string(),
            Backend::Redis(s) => format!("{} key {}", s.url_for_display(), s.key_for(account)),
        }
    }

    /// Write `doc` as this sink publishes it (`document_for`).
    pub async fn publish(&self, doc: &TokenDocument) -> Result<(), SinkError> {
        let doc = self.document_for(doc);
        match &self.backend {
            Backend::File(s) => s.publish(&doc).await,
            Backend::Redis(s) => s.publish(&doc).await,
        }
    }

    /// `doc` as this sink writes it: without `extended_token` unless the sink has `include_extended_token` (the
    /// 1-year token stays out of every place that does not ask for it).
    pub fn document_for(&self, doc: &TokenDocument) -> TokenDocument {
        let mut doc = doc.clone();
        if !self.config.include_extended_token() {
            doc.extended_token = None;
        }
        doc
    }

    /// Prove, without publishing anything, that a document for `account` could be written now (file: create and
    /// remove a temporary file beside it; Redis: connect, authenticate, PING). Run before a login starts a browser.
    pub async fn preflight(&self, account: &str) -> Result<(), SinkError> {
        match &self.backend {
            Backend::File(s) => s.preflight(account).await,
            Backend::Redis(s) => s.preflight(account).await,
        }
    }

    /// The document this sink holds for `account`, if any.
    pub async fn read(&self, account: &str) -> Result<Option<TokenDocument>, SinkError> {
        match &self.backend {
            Backend::File(s) => s.read(account).await,
            Backend::Redis(s) => s.read(account).await,
        }
    }
}

/// `{account}` expanded.
fn expand(template: &str, account: &str) -> String {
    template.replace("{account}", account)
}

fn parse_document(what: String, bytes: &[u8]) -> Result<TokenDocument, SinkError> {
    serde_json::from_slice(bytes).map_err(|source| SinkError::Corrupt { what, source })
}
