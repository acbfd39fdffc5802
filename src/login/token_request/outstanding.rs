//! The requests awaiting approval, shared by the runs that sent them and the notifier webhook that receives their
//! tokens, and the webhook's whole verdict on one POST (`Outstanding::accept`).
//!
//! A POST is hostile until proven otherwise: it must parse as an access-token notification, name the client of a
//! request outstanding here and not expired, carry a token issued after the request was sent, for the user the
//! account expects, and Upstox's profile API must vouch that the token is live and is that user's. Only then is the
//! token handed to the waiting run, through a one-shot channel that is moved out of the table: one request, at most
//! one delivery. This module never publishes (the run does) and never logs or returns the token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Semaphore, oneshot};

use crate::access_request::{NotificationError, ProfileAnswer, parse_notification};
use crate::error::error_chain;
use crate::oauth::{TokenResponse, UpstoxApi, UpstoxError};

/// Profile calls the webhook makes at once: forged POSTs cannot turn the daemon into a flood against Upstox.
const MAX_VERIFICATIONS: usize = 2;
/// How long a POST waits for a verification slot before it is turned away (503).
const VERIFICATION_QUEUE_WAIT: Duration = Duration::from_secs(5);
/// How much earlier than our request a delivered token may say it was issued (clocks differ).
const ISSUED_AT_SLACK: chrono::Duration = chrono::Duration::minutes(5);

/// A token the webhook received and verified, on its way to the run that asked for it.
pub struct Delivered {
    /// The token with its profile's fields (no extended token: the notifier sends none).
    pub token: TokenResponse,
    /// When Upstox says the token dies, if it said.
    pub expires_at: Option<DateTime<Utc>>,
}

/// One request awaiting approval.
struct Pending {
    /// Tells this registration from a later one for the same client.
    id: u64,
    account: String,
    /// When the request was sent (a delivered token issued well before it is someone else's).
    sent_at: DateTime<Utc>,
    /// When Upstox stops accepting approval (provisional until Upstox answers the request).
    expires_at: DateTime<Utc>,
    expected_user_id: Option<String>,
    /// Moved out on delivery: a request is delivered at most once.
    deliver: oneshot::Sender<Delivered>,
}

/// Why a webhook POST was turned away. The `Display` text is for the log: it never holds the token.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("not an access-token notification: {0}")]
    Malformed(#[from] NotificationError),
    #[error("no access-token request is outstanding for client `{client_id}`")]
    NotOutstanding { client_id: String },
    #[error("the access-token request of account `{account}` expired at {at}")]
    Expired { account: String, at: DateTime<Utc> },
    #[error("account `{account}`: the delivered token {why}")]
    Stale { account: String, why: &'static str },
    #[error(
        "account `{account}`: the notification names user `{claimed}`, the account's tokens belong to `{expected}`"
    )]
    WrongUser { account: String, claimed: String, expected: String },
    #[error("account `{account}`: Upstox's profile API refused the delivered token: {error}")]
    TokenRejected { account: String, error: UpstoxError },
    #[error(
        "account `{account}`: the profile of the delivered token is user `{profile}`, the notification says `{claimed}`"
    )]
    ProfileMismatch { account: String, claimed: String, profile: String },
    #[error("account `{account}`: cannot reach Upstox's profile API to verify the delivered token: {reason}")]
    Unverified { account: String, reason: String },
    #[error("too many notifications are being verified at once")]
    Busy,
    #[error("this process is not waiting for tokens")]
    NotReceiving,
}

impl Refusal {
    /// The HTTP status the webhook answers with: 400 for what is not a notification, 403 for a notification that
    /// is not accepted (one status for "unknown client", "nothing outstanding" and "failed verification", so the
    /// answer does not tell a prober which clients exist), 503 when we could not verify now (Upstox may retry).
    pub fn http_status(&self) -> u16 {
        match self {
            Refusal::Malformed(_) => 400,
            Refusal::Unverified { .. } | Refusal::Busy | Refusal::NotReceiving => 503,
            _ => 403,
        }
    }
}

/// The webhook accepted a notification and handed its token to the waiting run of `account`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub account: String,
    pub user_id: String,
}

/// The table of requests awaiting approval, keyed by client id (validation gives every account that may request a
/// token its own client).
pub struct Outstanding {
    pending: Mutex<HashMap<String, Pending>>,
    next_id: AtomicU64,
    receiving: AtomicBool,
    verifying: Semaphore,
}

impl std::fmt::Debug for Outstanding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outstanding").field("receiving", &self.is_receiving()).finish_non_exhaustive()
    }
}

impl Default for Outstanding {
    fn default() -> Self {
        Self::new()
    }
}

impl Outstanding {
    pub fn new() -> Self {
        Self {
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            receiving: AtomicBool::new(false),
            verifying: Semaphore::new(MAX_VERIFICATIONS),
        }
    }

    /// Say that this process serves the notifier webhook (the daemon, or `login` once it listens). A request is
    /// sent only while this holds: otherwise the approval would reach no one who waits for it.
    pub fn set_receiving(&self, receiving: bool) {
        self.receiving.store(receiving, Ordering::SeqCst);
    }

    pub fn is_receiving(&self) -> bool {
        self.receiving.load(Ordering::SeqCst)
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        // A panic while holding the lock leaves a table that is still consistent (every change is one insert or
        // remove): keep serving.
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Enter a request for `client_id` before it is sent (so that even a very fast approval finds it). Replaces an
    /// older entry for the client, whose waiting run then sees its channel closed.
    pub(super) fn register(
        &self,
        client_id: &str,
        account: &str,
        sent_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
        expected_user_id: Option<String>,
    ) -> (Registration<'_>, oneshot::Receiver<Delivered>) {
        let (deliver, receiver) = oneshot::channel();
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let pending = Pending { id, account: account.to_owned(), sent_at, expires_at, expected_user_id, deliver };
        self.table().insert(client_id.to_owned(), pending);
        (Registration { table: self, client_id: client_id.to_owned(), id }, receiver)
    }

    /// The webhook's verdict on one POSTed body, at `now`. On `Ok` the token went to the waiting run.
    pub async fn accept(&self, body: &[u8], api: &UpstoxApi, now: DateTime<Utc>) -> Result<Accepted, Refusal> {
        if !self.is_receiving() {
            return Err(Refusal::NotReceiving);
        }
        let notification = parse_notification(body)?;
        let (id, account, expected) = {
            let table = self.table();
            let Some(pending) = table.get(&notification.client_id) else {
                return Err(Refusal::NotOutstanding { client_id: notification.client_id });
            };
            let account = pending.account.clone();
            if now >= pending.expires_at {
                return Err(Refusal::Expired { account, at: pending.expires_at });
            }
            if notification.expires_at.is_some_and(|e| e <= now) {
                return Err(Refusal::Stale { account, why: "has expired already" });
            }
            if notification.issued_at.is_some_and(|i| i < pending.sent_at - ISSUED_AT_SLACK) {
                return Err(Refusal::Stale { account, why: "was issued before the request was sent" });
            }
            if let Some(expected) = &pending.expected_user_id
                && *expected != notification.user_id
            {
                let (claimed, expected) = (notification.user_id.clone(), expected.clone());
                return Err(Refusal::WrongUser { account, claimed, expected });
            }
            (pending.id, account, pending.expected_user_id.clone())
        };

        let _slot = tokio::time::timeout(VERIFICATION_QUEUE_WAIT, self.verifying.acquire())
            .await
            .map_err(|_| Refusal::Busy)?
            .map_err(|_| Refusal::Busy)?;
        let profile = match api.profile(&notification.access_token).await {
            Ok(ProfileAnswer::Valid(profile)) => profile,
            Ok(ProfileAnswer::Rejected(error)) => return Err(Refusal::TokenRejected { account, error }),
            Err(e) => return Err(Refusal::Unverified { account, reason: error_chain(&e) }),
        };
        if profile.user_id != notification.user_id {
            return Err(Refusal::ProfileMismatch { account, claimed: notification.user_id, profile: profile.user_id });
        }
        if let Some(expected) = expected
            && expected != profile.user_id
        {
            return Err(Refusal::WrongUser { account, claimed: profile.user_id, expected });
        }

        // Verified. Take the request out of the table (if it is still the same one) and hand the token over.
        let pending = {
            let mut table = self.table();
            match table.get(&notification.client_id) {
                Some(p) if p.id == id => table.remove(&notification.client_id),
                _ => None,
            }
        };
        let Some(pending) = pending else {
            return Err(Refusal::NotOutstanding { client_id: notification.client_id });
        };
        let user_id = profile.user_id.clone();
        let delivered = Delivered {
            token: profile.into_token_response(notification.access_token),
            expires_at: notification.expires_at,
        };
        match pending.deliver.send(delivered) {
            Ok(()) => Ok(Accepted { account, user_id }),
            // The run stopped waiting (deadline, shutdown) between our check and now.
            Err(_) => Err(Refusal::NotOutstanding { client_id: notification.client_id }),
        }
    }

    /// Upstox's answer fixed the request's expiry.
    fn set_expiry(&self, client_id: &str, id: u64, expires_at: DateTime<Utc>) {
        if let Some(p) = self.table().get_mut(client_id).filter(|p| p.id == id) {
            p.expires_at = expires_at;
        }
    }

    /// Whether a request is outstanding for `client_id` (for tests and status).
    pub fn is_outstanding(&self, client_id: &str) -> bool {
        self.table().contains_key(client_id)
    }
}

/// A request's place in the table, removed when dropped (the run gave up, failed or got its token).
pub(super) struct Registration<'a> {
    table: &'a Outstanding,
    client_id: String,
    id: u64,
}

impl Registration<'_> {
    pub(super) fn set_expiry(&self, expires_at: DateTime<Utc>) {
        self.table.set_expiry(&self.client_id, self.id, expires_at);
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut table = self.table.table();
        if table.get(&self.client_id).is_some_and(|p| p.id == self.id) {
            table.remove(&self.client_id);
        }
    }
}
