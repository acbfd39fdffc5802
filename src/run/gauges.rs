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
    /// Set every state gauge from the state files and from what the sinks hold (probed, short timeouts): once, at
    /// daemon start. The newest document counts even when expired, so expiry alerts have data overnight.
    pub async fn restore_gauges(&self) {
        self.refresh_state_gauges(Utc::now()).await;
        let probes = self.config.accounts.iter().map(|account| async move {
            let held = self.publisher.probe(&account.name).await;
            if let Some(doc) = held.iter().filter_map(Held::document).max_by_key(|d| d.generation) {
                self.metrics.token(&account.name, doc.generation, doc.expires_at_unix() as f64);
            }
        });
        join_all(probes).await;
    }

    /// Set the gauges kept by the coordinator (last success, PIN submissions without a code on `now`'s IST day).
    /// State files, or one Redis read per account: cheap enough for every scrape, which also turns the PIN count
    /// over at midnight IST.
    /// First asks the coordinator whether it answers (`coordination_up`: now, not as of the last run, whether a
    /// login could start); when it does not, the other gauges keep their values.
    pub async fn refresh_state_gauges(&self, now: DateTime<Utc>) {
        let up = self.coordinator.health().await.is_ok();
        self.metrics.coordination_up(up);
        if !up {
            return;
        }
        let day = token::ist_day(now);
        for account in &self.config.accounts {
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
        }
    }
}
