//! The Redis sink: `SET key <document> EXAT <expires_at>`, then `PUBLISH channel <document>` when a channel is set.
//!
//! The connection is made lazily on the first publish or read (Redis being down at start must not stop anything)
//! and dropped after any error, so the next call reconnects. Passwords come from the URL or from
//! `password_env`/`password_file`, and never appear in messages: the URL is shown without its credentials.

use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

use super::{SinkError, expand, parse_document};
use crate::secret::ClientSecret;
use crate::token::TokenDocument;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct RedisSink {
    client: redis::Client,
    display_url: String,
    key: String,
    channel: Option<String>,
    connection: Mutex<Option<MultiplexedConnection>>,
}

impl RedisSink {
    pub fn new(
        url: &str,
        key: &str,
        channel: Option<String>,
        password: Option<ClientSecret>,
    ) -> Result<Self, SinkError> {
        let display_url = redact_url(url);
        let redis_error = |source| SinkError::Redis { url: display_url.clone(), key: key.to_owned(), source };
        let mut info = redis::IntoConnectionInfo::into_connection_info(url).map_err(redis_error)?;
        if let Some(password) = password {
            let settings = info.redis_settings().clone().set_password(password.expose());
            info = info.set_redis_settings(settings);
        }
        let client = redis::Client::open(info).map_err(redis_error)?;
        Ok(Self { client, display_url, key: key.to_owned(), channel, connection: Mutex::new(None) })
    }

    pub fn key_for(&self, account: &str) -> String {
        expand(&self.key, account)
    }

    pub fn url_for_display(&self) -> &str {
        &self.display_url
    }

    fn error(&self, account: &str, source: redis::RedisError) -> SinkError {
        SinkError::Redis { url: self.display_url.clone(), key: self.key_for(account), source }
    }

    async fn connection(&self) -> Result<MultiplexedConnection, redis::RedisError> {
        let mut slot = self.connection.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let conn = self.client.get_multiplexed_async_connection_with_config(&config).await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    async fn forget_connection(&self) {
        *self.connection.lock().await = None;
    }

    pub async fn publish(&self, doc: &TokenDocument) -> Result<(), SinkError> {
        let result = self.try_publish(doc).await;
        if result.is_err() {
            self.forget_connection().await;
        }
        result.map_err(|e| self.error(&doc.account, e))
    }

    async fn try_publish(&self, doc: &TokenDocument) -> Result<(), redis::RedisError> {
        let mut conn = self.connection().await?;
        let bytes = doc.to_bytes();
        let key = self.key_for(&doc.account);
        let expires = u64::try_from(doc.expires_at_unix()).unwrap_or(0);
        let options = redis::SetOptions::default().with_expiration(redis::SetExpiry::EXAT(expires));
        let () = conn.set_options(&key, &bytes, options).await?;
        if let Some(channel) = &self.channel {
            let _receivers: i64 = conn.publish(channel, &bytes).await?;
        }
        Ok(())
    }

    /// Connect (with the configured credentials) and PING.
    pub async fn preflight(&self, account: &str) -> Result<(), SinkError> {
        let result: Result<String, _> =
            async { redis::cmd("PING").query_async(&mut self.connection().await?).await }.await;
        if result.is_err() {
            self.forget_connection().await;
        }
        result.map(drop).map_err(|e| self.error(account, e))
    }

    pub async fn read(&self, account: &str) -> Result<Option<TokenDocument>, SinkError> {
        let result: Result<Option<Vec<u8>>, _> =
            async { self.connection().await?.get(self.key_for(account)).await }.await;
        match result {
            Ok(Some(bytes)) => parse_document(format!("redis key {}", self.key_for(account)), &bytes).map(Some),
            Ok(None) => Ok(None),
            Err(e) => {
                self.forget_connection().await;
                Err(self.error(account, e))
            }
        }
    }
}

/// The URL with any password replaced by `***`, for messages.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "<unparseable redis url>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_never_shown() {
        assert_eq!(redact_url("redis://user:hunter2@127.0.0.1:6379/0"), "redis://user:***@127.0.0.1:6379/0");
        assert_eq!(redact_url("rediss://redis.example:6380"), "rediss://redis.example:6380");
    }

    #[test]
    fn construction_makes_no_connection() {
        // Port 1 has nothing listening; creating the sink must still succeed (lazy connection).
        let sink = RedisSink::new("redis://127.0.0.1:1/0", "k:{account}", None, None).unwrap();
        assert_eq!(sink.key_for("primary"), "k:primary");
    }
}
