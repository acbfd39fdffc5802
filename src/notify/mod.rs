//! Telling people: a closed set of notifiers (webhook, Slack, Discord, Telegram), built from the validated config
//! at start, and the one `Notifier` every event goes through.
//!
//! `Notifier::notify` never blocks and never fails its caller: it scrubs the event (configured secrets and mobile
//! numbers), applies the rate limit (one per account and event kind per `notify.rate_limit_secs`), and hands the
//! event to a bounded queue. One background task, started on the first event, delivers each event to every
//! notifier at once, retrying 5xx/429/transport failures with exponential backoff (backon); a full queue drops the
//! event with a warning. `close` lets the queue drain (bounded) before the process exits. This module never decides
//! *when* something is worth telling: `run` (outcomes) and `daemon` (deadlines) do, through `Event`'s constructors.

mod discord;
mod event;
mod slack;
mod telegram;
mod webhook;

pub use event::{Event, EventKind};

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use futures_util::future::join_all;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use url::Url;

use crate::config::{NotifierConfig, NotifyPolicy};
use crate::error::error_chain;
use discord::Discord;
use slack::Slack;
use telegram::Telegram;
use webhook::Webhook;

/// Events waiting for delivery; more are dropped (with a warning) rather than holding up a login.
const QUEUE: usize = 64;
/// The longest pause between two retries of one delivery.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Bytes of a refusing answer's body kept for the log.
const BODY_EXCERPT: usize = 200;

/// Why one delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("notifier `{notifier}` answered HTTP {status}: {body}")]
    Status { notifier: String, status: u16, body: String },
    /// The URL is stripped from `source` (Telegram's carries the bot token, Slack's and Discord's their key).
    #[error("cannot reach notifier `{notifier}`")]
    Transport {
        notifier: String,
        #[source]
        source: reqwest::Error,
    },
}

impl DeliveryError {
    /// Worth another try: no answer, a server error, a rate limit or a timeout. A 4xx means the notifier's
    /// configuration is wrong (a revoked webhook, an unknown chat): retrying cannot help.
    pub fn is_retryable(&self) -> bool {
        match self {
            DeliveryError::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            DeliveryError::Transport { .. } => true,
        }
    }
}

/// What `notify` did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Queued for delivery to every notifier.
    Queued,
    /// The same kind was sent for this account within `notify.rate_limit_secs`.
    RateLimited,
    /// No `[[notifiers]]` configured.
    NoNotifier,
    /// The queue was full or closed (or no async runtime runs): dropped, with a warning.
    Dropped,
}

/// One configured notifier: its label (no credential in it) and its kind.
struct Backend {
    label: String,
    kind: Kind,
}

/// The closed set of notifier kinds.
enum Kind {
    Webhook(Webhook),
    Slack(Slack),
    Discord(Discord),
    Telegram(Telegram),
}

impl Backend {
    fn new(config: &NotifierConfig) -> Self {
        let kind = match config.clone() {
            NotifierConfig::Webhook { url } => Kind::Webhook(Webhook::new(url)),
            NotifierConfig::Slack { url } => Kind::Slack(Slack::new(url)),
            NotifierConfig::Discord { url } => Kind::Discord(Discord::new(url)),
            NotifierConfig::Telegram { bot_token, chat_id, api_base_url } => {
                Kind::Telegram(Telegram::new(bot_token, chat_id, api_base_url))
            }
        };
        Backend { label: config.label(), kind }
    }

    /// The URL to POST to and the JSON body, for `event`.
    fn request(&self, event: &Event) -> (Url, Value) {
        match &self.kind {
            Kind::Webhook(k) => k.request(event),
            Kind::Slack(k) => k.request(event),
            Kind::Discord(k) => k.request(event),
            Kind::Telegram(k) => k.request(event),
        }
    }
}

/// At most one event per (account, kind) per `window`. Pure: the caller passes the time.
#[derive(Debug, Default)]
pub struct RateLimit {
    window: Duration,
    last: HashMap<(String, EventKind), Instant>,
}

impl RateLimit {
    pub fn new(window: Duration) -> Self {
        Self { window, last: HashMap::new() }
    }

    /// Whether an event of `kind` for `account` may go out at `now`; if so, it counts from `now`.
    pub fn allow(&mut self, account: &str, kind: EventKind, now: Instant) -> bool {
        let key = (account.to_owned(), kind);
        if let Some(last) = self.last.get(&key)
            && now.saturating_duration_since(*last) < self.window
        {
            return false;
        }
        self.last.insert(key, now);
        true
    }
}

/// Every event goes through here; see the module doc.
pub struct Notifier {
    /// `None`: no notifier configured, every event is a no-op.
    inner: Option<Inner>,
}

struct Inner {
    policy: NotifyPolicy,
    /// Strings that never leave in a notification (mobile numbers, PINs, client and TOTP secrets).
    secrets: Vec<String>,
    limit: Mutex<RateLimit>,
    tx: Mutex<Option<mpsc::Sender<Event>>>,
    /// The queue's other end and the backends, until the first event starts the delivery task.
    idle: Mutex<Option<(mpsc::Receiver<Event>, Vec<Backend>)>>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl Notifier {
    /// Build the notifiers from their validated configuration. No I/O and no task yet: the delivery task and its
    /// HTTP client start with the first event. `secrets` are scrubbed from every message.
    pub fn new(configs: &[NotifierConfig], policy: &NotifyPolicy, secrets: Vec<String>) -> Self {
        if configs.is_empty() {
            return Notifier { inner: None };
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let backends = configs.iter().map(Backend::new).collect();
        Notifier {
            inner: Some(Inner {
                policy: policy.clone(),
                secrets: secrets.into_iter().filter(|s| !s.is_empty()).collect(),
                limit: Mutex::new(RateLimit::new(policy.rate_limit)),
                tx: Mutex::new(Some(tx)),
                idle: Mutex::new(Some((rx, backends))),
                worker: Mutex::new(None),
            }),
        }
    }

    /// No notifiers: every event is dropped silently.
    pub fn disabled() -> Self {
        Notifier { inner: None }
    }

    /// Scrub, rate-limit and queue `event` for delivery; returns at once. Call from within the Tokio runtime.
    pub fn notify(&self, mut event: Event) -> Sent {
        let Some(inner) = &self.inner else {
            debug!(event = %event.event, account = %event.account, "no notifier configured");
            return Sent::NoNotifier;
        };
        event.scrub(&inner.secrets);
        // invariant (every `lock` below): no code panics while holding these locks
        if !inner.limit.lock().expect("rate limit lock").allow(&event.account, event.event, Instant::now()) {
            debug!(event = %event.event, account = %event.account, "notification rate-limited");
            return Sent::RateLimited;
        }
        if let Err(reason) = inner.start_worker() {
            warn!(event = %event.event, account = %event.account, reason, "notification dropped");
            return Sent::Dropped;
        }
        let tx = inner.tx.lock().expect("queue lock");
        let Some(tx) = tx.as_ref() else {
            warn!(event = %event.event, account = %event.account, "notification dropped: the notifier is closed");
            return Sent::Dropped;
        };
        let (kind, account) = (event.event, event.account.clone());
        match tx.try_send(event) {
            Ok(()) => {
                debug!(event = %kind, %account, "notification queued");
                Sent::Queued
            }
            Err(e) => {
                let why = match e {
                    mpsc::error::TrySendError::Full(_) => "the queue is full",
                    mpsc::error::TrySendError::Closed(_) => "the delivery task stopped",
                };
                warn!(event = %kind, %account, "notification dropped: {why}");
                Sent::Dropped
            }
        }
    }

    /// Stop taking events and wait up to `grace` for the queued ones to be delivered (retries included); what is
    /// still pending then is dropped with a warning. Idempotent.
    pub async fn close(&self, grace: Duration) {
        let Some(inner) = &self.inner else { return };
        inner.tx.lock().expect("queue lock").take();
        let worker = inner.worker.lock().expect("worker lock").take();
        let Some(mut worker) = worker else { return };
        if tokio::time::timeout(grace, &mut worker).await.is_err() {
            worker.abort();
            warn!(grace_secs = grace.as_secs_f64(), "notifications still being delivered were dropped at shutdown");
        }
    }
}

impl Inner {
    /// Spawn the delivery task if it is not running yet.
    fn start_worker(&self) -> Result<(), &'static str> {
        let mut worker = self.worker.lock().expect("worker lock");
        if worker.is_some() {
            return Ok(());
        }
        let Some((rx, backends)) = self.idle.lock().expect("idle lock").take() else {
            return Err("the notifier is closed");
        };
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| "no async runtime")?;
        *worker = Some(runtime.spawn(deliver_all(rx, backends, self.policy.clone())));
        Ok(())
    }
}

/// The delivery task: each event to every backend at once, until the queue closes.
async fn deliver_all(mut rx: mpsc::Receiver<Event>, backends: Vec<Backend>, policy: NotifyPolicy) {
    let client = match reqwest::Client::builder()
        .timeout(policy.timeout)
        // A webhook that redirects would carry the body elsewhere: refuse.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("upstox-relogin/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %error_chain(&e), "cannot build the notifiers' HTTP client; notifications are dropped");
            return;
        }
    };
    while let Some(event) = rx.recv().await {
        join_all(backends.iter().map(|b| deliver(&client, b, &event, &policy))).await;
    }
}

/// One event to one backend, retried with backoff while the failure is retryable.
async fn deliver(client: &reqwest::Client, backend: &Backend, event: &Event, policy: &NotifyPolicy) {
    let (url, body) = backend.request(event);
    let backoff = ExponentialBuilder::default()
        .with_min_delay(policy.retry_min_backoff)
        .with_max_delay(MAX_BACKOFF.max(policy.retry_min_backoff))
        .with_max_times(policy.max_retries)
        .with_jitter();
    let (notifier, kind, account) = (&backend.label, event.event, &event.account);
    let result = (|| post(client, notifier, &url, &body))
        .retry(backoff)
        .when(DeliveryError::is_retryable)
        .notify(|e, pause| {
            let retry_in_ms = pause.as_millis() as u64;
            warn!(%notifier, event = %kind, error = %error_chain(e), retry_in_ms, "notification failed; retrying")
        })
        .await;
    match result {
        Ok(()) => info!(%notifier, event = %kind, %account, "notification sent"),
        Err(e) => warn!(%notifier, event = %kind, %account, error = %error_chain(&e), "notification not delivered"),
    }
}

async fn post(client: &reqwest::Client, label: &str, url: &Url, body: &Value) -> Result<(), DeliveryError> {
    let transport =
        |e: reqwest::Error| DeliveryError::Transport { notifier: label.to_owned(), source: e.without_url() };
    let response = client.post(url.clone()).json(body).send().await.map_err(transport)?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    let body = text.chars().take(BODY_EXCERPT).collect::<String>().replace('\n', " ");
    Err(DeliveryError::Status { notifier: label.to_owned(), status: status.as_u16(), body })
}

#[cfg(test)]
mod tests;
