//! One lazily made Redis connection, shared by the Redis sink and the Redis coordinator.
//!
//! Nothing connects at construction (Redis being down at start must not stop anything); the first command connects,
//! with a connect and a response timeout, and any error drops the connection so the next command reconnects.
//! Passwords come from the URL or are given separately, and never appear in messages: `display_url` has them
//! replaced by `***`. This module knows no key and no document.

use std::future::Future;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

use crate::secret::ClientSecret;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct RedisLink {
    client: redis::Client,
    display_url: String,
    connection: Mutex<Option<MultiplexedConnection>>,
}

impl RedisLink {
    /// Parse `url` (`redis://` or `rediss://`), with `password` overriding any in the URL. Makes no connection.
    pub fn new(url: &str, password: Option<&ClientSecret>) -> Result<Self, redis::RedisError> {
        let mut info = redis::IntoConnectionInfo::into_connection_info(url)?;
        if let Some(password) = password {
            let settings = info.redis_settings().clone().set_password(password.expose());
            info = info.set_redis_settings(settings);
        }
        let client = redis::Client::open(info)?;
        Ok(Self { client, display_url: redact_url(url), connection: Mutex::new(None) })
    }

    /// The URL without its password, for messages.
    pub fn display_url(&self) -> &str {
        &self.display_url
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

    /// Run `command` on the shared connection (made now if needed); after an error the connection is dropped so
    /// that the next call reconnects.
    pub async fn run<T, F, Fut>(&self, command: F) -> Result<T, redis::RedisError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, redis::RedisError>>,
    {
        let result = match self.connection().await {
            Ok(conn) => command(conn).await,
            Err(e) => Err(e),
        };
        if result.is_err() {
            *self.connection.lock().await = None;
        }
        result
    }
}

/// The URL with any password replaced by `***`, for messages.
pub fn redact_url(url: &str) -> String {
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
        let link = RedisLink::new("redis://:hunter2@127.0.0.1:1/0", Some(&ClientSecret::new("other"))).unwrap();
        assert!(!link.display_url().contains("hunter2") && !link.display_url().contains("other"));
    }

    #[tokio::test]
    async fn construction_makes_no_connection_and_errors_reconnect() {
        // Port 1 has nothing listening: construction succeeds, a command fails, and fails again (not stuck).
        let link = RedisLink::new("redis://127.0.0.1:1/0", None).unwrap();
        for _ in 0..2 {
            let r: Result<String, _> =
                link.run(|mut c| async move { redis::cmd("PING").query_async(&mut c).await }).await;
            assert!(r.is_err());
        }
    }
}
