//! The gauges that describe a state rather than count events — last success, the newest token's expiry and
//! generation, today's PIN submissions without a code — set from what survives a restart (state files, sinks), so
//! `/metrics` is complete right after a start instead of after the next login.

use chrono::{DateTime, Utc};
use futures_util::future::join_all;

use super::Runner;
use super::probe::Held;
use crate::error::error_chain;
use crate::token;

impl Runner {
    /// Set the state gauges (at daemon start, so `/metrics` is complete before the first login, and on every scrape): last success and PIN submissions without a code on `now`'s IST day from the coordinator
    /// (state files, or one Redis read per account), and the newest token's generation and expiry from what the
    /// sinks hold (probed with short timeouts and cached briefly, as `/status` does, so a scrape costs no more than
    /// that). On every scrape: the PIN count turns over at midnight IST, and with replicas a token another replica
    /// published shows here too. The newest document counts even when expired, so expiry alerts have data overnight.
    /// First asks the coordinator whether it answers (`coordination_up`: now, not as of the last run, whether a
    /// login could start); when it does not, the coordinator's gauges keep their values.
    pub async fn refresh_state_gauges(&self, now: DateTime<Utc>) {
        let up = self.coordinator.health().await.is_ok();
        self.metrics.coordination_up(up);
        let day = token::ist_day(now);
        let accounts = self.config.accounts.iter().map(|account| async move {
            let held = self.publisher.probe(&account.name).await;
            if let Some(doc) = held.iter().filter_map(Held::document).max_by_key(|d| d.generation) {
                self.metrics.token(&account.name, doc.generation, doc.expires_at_unix() as f64);
            }
            if !up {
                return;
            }
            match self.coordinator.facts(&account.name).await {
                Ok(facts) => {
                    if let Some(at) = facts.last_success_at {
                        self.metrics.last_success(&account.name, at.timestamp() as f64);
                    }
                    self.metrics.pin_submissions(&account.name, facts.guard.pin_submissions_on(day));
                }
                Err(e) => {
                    let error = error_chain(&e);
                    tracing::debug!(account = %account.name, %error, "cannot read state for the gauges")
                }
            }
        });
        join_all(accounts).await;
    }
}
