//! `type = "discord"`: a Discord webhook, `{"content": …}` (at most 2000 characters) [doc:
//! discord.com/developers/docs/resources/webhook#execute-webhook]. The URL carries the webhook's token.

use serde_json::{Value, json};
use url::Url;

use super::Event;
use crate::secret::SecretUrl;

pub struct Discord {
    url: SecretUrl,
}

impl Discord {
    pub fn new(url: SecretUrl) -> Self {
        Self { url }
    }

    /// Where to POST and what. Mentions are switched off: a message never pings `@everyone`.
    pub fn request(&self, event: &Event) -> (Url, Value) {
        (self.url.expose().clone(), json!({ "content": event.text(), "allowed_mentions": { "parse": [] } }))
    }
}
