//! `type = "webhook"`: POST the event itself as JSON (`{"event","account","message","at","reason","fix"}`), for
//! whatever the operator runs (n8n, a bot of their own, an alert router).

use serde_json::Value;
use url::Url;

use super::Event;
use crate::secret::SecretUrl;

pub struct Webhook {
    url: SecretUrl,
}

impl Webhook {
    pub fn new(url: SecretUrl) -> Self {
        Self { url }
    }

    /// Where to POST and what.
    pub fn request(&self, event: &Event) -> (Url, Value) {
        // invariant: an Event holds only strings and enums
        (self.url.expose().clone(), serde_json::to_value(event).expect("event serialises"))
    }
}
