//! Where token documents are published: a closed set of sinks (file, Redis), dispatched with `match`.
//!
//! A sink writes the exact bytes of `TokenDocument::to_bytes` and can read back what it holds (to skip a login
//! whose token is still valid, and for `status`). Sinks never touch the browser or the Upstox API, and a failed
//! write never damages what a sink held before.

mod file;
mod redis;

pub use file::FileSink;
pub use file::write_atomically;
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
    #[error("`{what}` holds something that is not a token document")]
    Corrupt {
        what: String,
        #[source]
        source: serde_json::Error,
    },
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
            SinkConfig::File { path } => Backend::File(FileSink::new(path)),
            SinkConfig::Redis { url, key, channel, password } => {
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

    pub async fn publish(&self, doc: &TokenDocument) -> Result<(), SinkError> {
        match &self.backend {
            Backend::File(s) => s.publish(doc).await,
            Backend::Redis(s) => s.publish(doc).await,
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
