//! What the sinks hold, as the status report, `/readyz` and the start-up gauges see it: each sink read with a short
//! timeout (`PROBE_TIMEOUT`), the answers cached per account for `PROBE_TTL` and shared by concurrent readers, so
//! a hung Redis costs one short timeout per period instead of the sink's own 5 s on every request.
//!
//! Runs never read through this cache (they read the sinks themselves, with the sinks' own timeouts); a publish
//! forgets the account's entry so the next look is fresh. An unreadable sink is `Held::Unreadable`, never mistaken
//! for an empty one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::error::error_chain;
use crate::sink::Sink;
use crate::token::TokenDocument;

/// How long one sink may take to answer a probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a probe's answer is reused.
pub const PROBE_TTL: Duration = Duration::from_secs(10);

/// What one sink holds for one account, as probed.
#[derive(Debug, Clone)]
pub enum Held {
    Nothing,
    Document(Box<TokenDocument>),
    /// The sink could not be read (unreachable, no answer in time, corrupt content); the reason, without secrets.
    Unreadable(String),
}

impl Held {
    pub fn document(&self) -> Option<&TokenDocument> {
        match self {
            Held::Document(d) => Some(d),
            Held::Nothing | Held::Unreadable(_) => None,
        }
    }

    pub fn error(&self) -> Option<&str> {
        match self {
            Held::Unreadable(e) => Some(e),
            Held::Nothing | Held::Document(_) => None,
        }
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<(Instant, Arc<[Held]>)>>>;

/// The per-account cache of probe answers.
#[derive(Default)]
pub(super) struct ProbeCache {
    slots: Mutex<HashMap<String, Slot>>,
}

impl ProbeCache {
    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        // A poisoned map only holds cached reads: keep using it.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What `sinks` hold for `account` (in sink order): cached, or probed now by one caller while the others wait.
    pub(super) async fn held(&self, sinks: &[Sink], account: &str) -> Arc<[Held]> {
        let slot = Arc::clone(self.slots().entry(account.to_owned()).or_default());
        let mut entry = slot.lock().await;
        if let Some((at, held)) = entry.as_ref()
            && at.elapsed() < PROBE_TTL
        {
            return Arc::clone(held);
        }
        let held: Arc<[Held]> = join_all(sinks.iter().map(|s| probe(s, account))).await.into();
        let previous = entry.replace((Instant::now(), Arc::clone(&held))).map(|(_, h)| h);
        log_changes(sinks, account, previous.as_deref(), &held);
        held
    }

    /// Drop `account`'s cached answer (its sinks were just written).
    pub(super) fn forget(&self, account: &str) {
        self.slots().remove(account);
    }
}

/// Say when a sink becomes unreadable (once, not on every probe) and when it can be read again.
fn log_changes(sinks: &[Sink], account: &str, previous: Option<&[Held]>, now: &[Held]) {
    for (i, (sink, held)) in sinks.iter().zip(now).enumerate() {
        let was_unreadable = previous.and_then(|p| p.get(i)).is_some_and(|h| h.error().is_some());
        match (held.error(), was_unreadable) {
            (Some(error), false) => {
                tracing::warn!(sink = %sink.label(), account, error, "cannot read the published token")
            }
            (None, true) => tracing::info!(sink = %sink.label(), account, "the sink can be read again"),
            _ => {}
        }
    }
}

async fn probe(sink: &Sink, account: &str) -> Held {
    match tokio::time::timeout(PROBE_TIMEOUT, sink.read(account)).await {
        Err(_) => Held::Unreadable(format!("no answer within {} ms", PROBE_TIMEOUT.as_millis())),
        Ok(Err(e)) => Held::Unreadable(error_chain(&e)),
        Ok(Ok(Some(doc))) if doc.account == account => Held::Document(Box::new(doc)),
        Ok(Ok(_)) => Held::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SinkConfig;

    #[tokio::test]
    async fn a_silent_redis_is_unreadable_within_the_timeout_and_cached() {
        // Accepts connections, never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let sinks = [
            Sink::new(&SinkConfig::File {
                path: format!("{}/{{account}}.json", dir.path().display()),
                access: crate::config::FileAccess::PRIVATE,
                include_extended_token: false,
            })
            .unwrap(),
            Sink::new(&SinkConfig::Redis {
                url: format!("redis://127.0.0.1:{port}/0"),
                key: "k:{account}".into(),
                channel: None,
                password: None,
                include_extended_token: false,
            })
            .unwrap(),
        ];
        let cache = ProbeCache::default();
        let started = Instant::now();
        let (a, b, c) =
            tokio::join!(cache.held(&sinks, "primary"), cache.held(&sinks, "primary"), cache.held(&sinks, "primary"));
        let took = started.elapsed();
        assert!(took < PROBE_TIMEOUT * 2, "three concurrent looks took {took:?}: one probe should serve them all");
        for held in [&a, &b, &c] {
            assert!(matches!(held[0], Held::Nothing), "{held:?}");
            assert!(held[1].error().is_some_and(|e| e.contains("no answer within 1000 ms")), "{held:?}");
        }
        let started = Instant::now();
        cache.held(&sinks, "primary").await;
        assert!(started.elapsed() < Duration::from_millis(100), "the answer is cached");
        cache.forget("primary");
        let started = Instant::now();
        cache.held(&sinks, "primary").await;
        assert!(started.elapsed() >= PROBE_TIMEOUT, "forgotten: probed again");
        accepted.abort();
    }
}
