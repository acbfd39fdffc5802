//! What the sinks hold and getting a document into them: read every sink, pick the freshest valid document, and
//! publish to several sinks at once, each retried with backoff so that one failing sink never blocks the others.
//! `probe` is the cached, short-timeout view for status and readiness (`probe.rs`).

use std::sync::Arc;
use std::time::Duration;

use backon::Retryable;
use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use tracing::warn;

use crate::config::SinkConfig;
use crate::error::error_chain;
use crate::metrics::Metrics;
use crate::sink::{Sink, SinkError};
use crate::token::TokenDocument;

use super::probe::{Held, ProbeCache};

/// Retries of a failed sink write within a run, and the first pause between them (doubling).
const SINK_RETRIES: usize = 3;
const SINK_FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// The configured sinks, in config order.
pub struct Publisher {
    sinks: Vec<Sink>,
    probes: ProbeCache,
}

impl Publisher {
    /// Build every sink from its validated configuration. Makes no connection.
    pub fn new(configs: &[SinkConfig]) -> Result<Self, SinkError> {
        Ok(Self { sinks: configs.iter().map(Sink::new).collect::<Result<_, _>>()?, probes: ProbeCache::default() })
    }

    /// What each sink holds for `account`, in sink order, for status and readiness: a short timeout per sink, the
    /// answer cached briefly and shared (see `probe.rs`). An unreadable sink says why.
    pub async fn probe(&self, account: &str) -> Arc<[Held]> {
        self.probes.held(&self.sinks, account).await
    }

    pub fn sinks(&self) -> &[Sink] {
        &self.sinks
    }

    /// What each sink holds for `account`, in sink order (`None` for nothing, unreadable or corrupt).
    pub async fn read(&self, account: &str) -> Vec<Option<TokenDocument>> {
        let reads = self.sinks.iter().map(|s| async move {
            match s.read(account).await {
                Ok(doc) => doc.filter(|d| d.account == account),
                Err(e) => {
                    warn!(sink = %s.label(), error = %error_chain(&e), "cannot read the published token");
                    None
                }
            }
        });
        join_all(reads).await
    }

    /// Publish `doc` to `targets` concurrently, each retried with backoff while the failure is transient (a fenced
    /// write is refused for good: logged, counted in `fenced_writes_total`, never retried). Returns the sinks that
    /// still failed.
    pub async fn publish(
        &self,
        doc: &TokenDocument,
        targets: Vec<&Sink>,
        metrics: &Metrics,
    ) -> Vec<(String, SinkError)> {
        let writes = targets.into_iter().map(|sink| async move {
            let retries =
                backon::ExponentialBuilder::default().with_min_delay(SINK_FIRST_BACKOFF).with_max_times(SINK_RETRIES);
            let result = (|| sink.publish(doc))
                .retry(retries)
                .when(SinkError::is_transient)
                .notify(|e, pause| {
                    metrics.sink_failure(&sink.label());
                    warn!(sink = %sink.label(), error = %error_chain(e), retry_in_ms = pause.as_millis() as u64, "sink write failed");
                })
                .await;
            result.map_err(|e| {
                if let SinkError::Fenced { .. } = e {
                    metrics.fenced_write(&sink.label());
                    warn!(sink = %sink.label(), error = %error_chain(&e), "sink write refused (fenced); not retried");
                } else {
                    metrics.sink_failure(&sink.label());
                }
                (sink.label(), e)
            })
        });
        let failures = join_all(writes).await.into_iter().filter_map(Result::err).collect();
        self.probes.forget(&doc.account);
        failures
    }
}

/// The unexpired document with the highest generation among what the sinks hold (of equal ones, one that carries
/// `extended_token`, so copying it to a sink that includes it loses nothing).
pub fn freshest(held: &[Option<TokenDocument>], now: DateTime<Utc>) -> Option<&TokenDocument> {
    freshest_of(held.iter().flatten(), now)
}

/// `freshest` over any documents: the unexpired one of the highest generation; of two with the same generation, the
/// one that carries an `extended_token`.
pub fn freshest_of<'a>(
    docs: impl IntoIterator<Item = &'a TokenDocument>,
    now: DateTime<Utc>,
) -> Option<&'a TokenDocument> {
    docs.into_iter().filter(|d| d.is_unexpired(now)).max_by_key(|d| (d.generation, d.extended_token.is_some()))
}
