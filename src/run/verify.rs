//! Asking Upstox about tokens: a new token is verified (`GET /v2/user/profile`) before any sink sees it, and a
//! published one can be re-checked at any time (the daemon does, to notice a token revoked by a logout elsewhere).
//!
//! Only an authoritative answer (401 / `UDAPI100050`) invalidates a token; a rate limit, a 5xx or a network error is
//! "no verdict", which keeps what is published.

use std::time::Duration;

use backon::Retryable;
use chrono::{DateTime, FixedOffset, Utc};
use tracing::warn;

use super::publish::freshest;
use super::{RunError, Runner};
use crate::config::Account;
use crate::oauth::{Profile, TokenCheck};
use crate::secret::AccessToken;

/// Profile calls after a "no verdict" answer while verifying a new token, and the first pause (doubling).
const VERIFY_RETRIES: usize = 2;
const VERIFY_FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// What Upstox says about the token an account's sinks hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No sink holds an unexpired token: nothing to check.
    NothingPublished,
    /// Accepted.
    Valid { generation: u64, expires_at: DateTime<FixedOffset> },
    /// Upstox said invalid (revoked by a logout elsewhere, an IP change, …): `reason` is its answer.
    Invalid { generation: u64, reason: String },
    /// No verdict now (rate limit, outage, network): keep it, ask again later.
    Unknown { generation: u64, reason: String },
}

impl Runner {
    /// Ask Upstox about the freshest unexpired token `account`'s sinks hold. Takes no permit and changes nothing.
    pub async fn verify_published(&self, account: &Account) -> Result<Verdict, RunError> {
        let held = self.publisher.read(&account.name).await;
        let Some(doc) = freshest(&held, Utc::now()) else { return Ok(Verdict::NothingPublished) };
        let generation = doc.generation;
        Ok(match self.api().await?.check_token(&AccessToken::new(doc.access_token.clone())).await {
            TokenCheck::Valid(_) => Verdict::Valid { generation, expires_at: doc.expires_at },
            TokenCheck::Invalid(e) => Verdict::Invalid { generation, reason: e.to_string() },
            TokenCheck::Unknown(reason) => Verdict::Unknown { generation, reason },
        })
    }

    /// Prove a just-issued token works, and learn the account facts the token response left out. Retries a "no
    /// verdict" briefly; when Upstox still gives none the token is published anyway (it was issued seconds ago,
    /// and throwing it away would cost a login), with a warning. `Err`: Upstox rejected it.
    pub(super) async fn verify_new_token(&self, token: &AccessToken) -> Result<Profile, RunError> {
        let api = self.api().await?;
        let ask = || async {
            match api.check_token(token).await {
                TokenCheck::Unknown(reason) => Err(reason),
                verdict => Ok(verdict),
            }
        };
        let retries =
            backon::ExponentialBuilder::default().with_min_delay(VERIFY_FIRST_BACKOFF).with_max_times(VERIFY_RETRIES);
        match ask.retry(retries).await {
            Ok(TokenCheck::Valid(profile)) => Ok(profile),
            Ok(TokenCheck::Invalid(e)) => Err(RunError::NewTokenRejected(e)),
            Ok(TokenCheck::Unknown(reason)) | Err(reason) => {
                warn!(%reason, "Upstox gave no verdict on the new token; publishing it unverified (issued just now)");
                Ok(Profile::default())
            }
        }
    }
}
