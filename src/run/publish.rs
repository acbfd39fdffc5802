//! What the sinks hold and getting a document into them: read every sink, pick the freshest valid document, and
//! publish to several sinks at once, each retried with backoff so that one failing sink never blocks the others.

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

/// Retries of a failed sink write within a run, and the first pause between them (doubling).
const SINK_RETRIES: usize = 3;
const SINK_FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// The configured sinks, in config order.
pub struct Publisher {
    sinks: Vec<Sink>,
}

impl Publisher {
    /// Build every sink from its validated configuration. Makes no connection.
    pub fn new(configs: &[SinkConfig]) -> Result<Self, SinkError> {
        Ok(Self { sinks: configs.iter().map(Sink::new).collect::<Result<_, _>>()? })
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

    /// Publish `doc` to `targets` concurrently, each retried with backoff. Returns the sinks that still failed.
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
                .notify(|e, pause| {
                    metrics.sink_failure(&sink.label());
                    warn!(sink = %sink.label(), error = %error_chain(e), retry_in_ms = pause.as_millis() as u64, "sink write failed");
                })
                .await;
            result.map_err(|e| {
                metrics.sink_failure(&sink.label());
                (sink.label(), e)
            })
        });
        join_all(writes).await.into_iter().filter_map(Result::err).collect()
    }
}

/// The unexpired document with the highest generation among what the sinks hold (of equal ones, one that carries
/// `extended_token`, so copying it to a sink that includes it loses nothing).
pub fn freshest(held: &[Option<TokenDocument>], now: DateTime<Utc>) -> Option<&TokenDocument> {
    held.iter().flatten().filter(|d| d.is_unexpired(now)).max_by_key(|d| (d.generation, d.extended_token.is_some()))
}
