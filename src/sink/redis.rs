//! The Redis sink: one Lua script compares the stored document's `generation` with the new one's, and only when the
//! stored one is lower (or there is none) does `SET key <document> EXAT <expires_at>`, then `PUBLISH channel
//! <document>` when a channel is set. A replica that woke up after its lease expired therefore cannot replace a
//! newer token (fencing): its write is refused with `SinkError::Fenced`, which is not retried.
//!
//! The connection is lazy and re-made after an error (`redis_link`). Passwords come from the URL or from
//! `password_env`/`password_file`, and never appear in messages.

use redis::AsyncCommands;

use super::{SinkError, expand, parse_document};
use crate::redis_link::RedisLink;
use crate::secret::ClientSecret;
use crate::token::TokenDocument;

/// KEYS[1] the document's key; ARGV: document, its generation, EXAT unix seconds, channel ('' for none).
/// Returns {1, 1} written, {1, 0} the same bytes were already there (a retried write), {0, held} refused: the key
/// holds generation `held` >= ours. Anything stored that is not a document with a numeric generation is replaced.
const FENCED_SET: &str = r"
local held = redis.call('GET', KEYS[1])
if held then
  if held == ARGV[1] then return {1, 0} end
  local ok, doc = pcall(cjson.decode, held)
  if ok and type(doc) == 'table' and type(doc.generation) == 'number' and doc.generation >= tonumber(ARGV[2]) then
    return {0, doc.generation}
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EXAT', ARGV[3])
if ARGV[4] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[1]) end
return {1, 1}
";

pub struct RedisSink {
    link: RedisLink,
    key: String,
    channel: Option<String>,
}

impl RedisSink {
    pub fn new(
        url: &str,
        key: &str,
        channel: Option<String>,
        password: Option<ClientSecret>,
    ) -> Result<Self, SinkError> {
        let link = RedisLink::new(url, password.as_ref()).map_err(|source| SinkError::Redis {
            url: crate::redis_link::redact_url(url),
            key: key.to_owned(),
            source,
        })?;
        Ok(Self { link, key: key.to_owned(), channel })
    }

    pub fn key_for(&self, account: &str) -> String {
        expand(&self.key, account)
    }

    pub fn url_for_display(&self) -> &str {
        self.link.display_url()
    }

    fn error(&self, account: &str, source: redis::RedisError) -> SinkError {
        SinkError::Redis { url: self.url_for_display().to_owned(), key: self.key_for(account), source }
    }

    /// Write `doc` unless the key holds a document of the same or a higher generation (`SinkError::Fenced`; the
    /// same bytes count as written).
    pub async fn publish(&self, doc: &TokenDocument) -> Result<(), SinkError> {
        let key = self.key_for(&doc.account);
        let bytes = doc.to_bytes();
        let expires = u64::try_from(doc.expires_at_unix()).unwrap_or(0);
        let channel = self.channel.as_deref().unwrap_or("");
        let (written, held): (u8, u64) = self
            .link
            .run(|mut conn| async move {
                redis::cmd("EVAL")
                    .arg(FENCED_SET)
                    .arg(1)
                    .arg(&key)
                    .arg(&bytes)
                    .arg(doc.generation)
                    .arg(expires)
                    .arg(channel)
                    .query_async(&mut conn)
                    .await
            })
            .await
            .map_err(|e| self.error(&doc.account, e))?;
        if written == 1 {
            Ok(())
        } else {
            Err(SinkError::Fenced {
                what: format!("redis key {}", self.key_for(&doc.account)),
                offered: doc.generation,
                held,
            })
        }
    }

    /// Connect (with the configured credentials) and PING.
    pub async fn preflight(&self, account: &str) -> Result<(), SinkError> {
        let result: Result<String, _> =
            self.link.run(|mut conn| async move { redis::cmd("PING").query_async(&mut conn).await }).await;
        result.map(drop).map_err(|e| self.error(account, e))
    }

    pub async fn read(&self, account: &str) -> Result<Option<TokenDocument>, SinkError> {
        let key = self.key_for(account);
        let bytes: Option<Vec<u8>> =
            self.link.run(|mut conn| async move { conn.get(key).await }).await.map_err(|e| self.error(account, e))?;
        bytes.map(|b| parse_document(format!("redis key {}", self.key_for(account)), &b)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn construction_makes_no_connection() {
        // Port 1 has nothing listening; creating the sink must still succeed (lazy connection).
        let sink = RedisSink::new("redis://127.0.0.1:1/0", "k:{account}", None, None).unwrap();
        assert_eq!(sink.key_for("primary"), "k:primary");
    }
}
