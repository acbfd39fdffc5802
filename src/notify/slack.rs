//! `type = "slack"`: a Slack incoming webhook, `{"text": …}` [doc: api.slack.com/messaging/webhooks]. The URL
//! carries the webhook's key, so it is a secret (`SecretUrl`).

use serde_json::{Value, json};
use url::Url;

use super::Event;
use crate::secret::SecretUrl;

pub struct Slack {
    url: SecretUrl,
}

impl Slack {
    pub fn new(url: SecretUrl) -> Self {
        Self { url }
    }

    /// Where to POST and what.
    pub fn request(&self, event: &Event) -> (Url, Value) {
        (self.url.expose().clone(), json!({ "text": event.text() }))
    }
}
