//! `type = "telegram"`: a bot's `sendMessage` [doc: core.telegram.org/bots/api#sendmessage]:
//! `POST {api_base_url}/bot{token}/sendMessage` with `{"chat_id", "text"}`, as plain text (no `parse_mode`, so no
//! escaping to get wrong). The token sits in the URL's path: the URL is never logged (`NotifierConfig::label` names
//! the chat) and transport errors are stripped of it.

use serde_json::{Value, json};
use url::Url;

use super::Event;
use crate::secret::BotToken;

pub struct Telegram {
    bot_token: BotToken,
    chat_id: String,
    api_base_url: Url,
}

impl Telegram {
    pub fn new(bot_token: BotToken, chat_id: String, api_base_url: Url) -> Self {
        Self { bot_token, chat_id, api_base_url }
    }

    /// Where to POST and what.
    pub fn request(&self, event: &Event) -> (Url, Value) {
        let mut url = self.api_base_url.clone();
        let path = format!("{}/bot{}/sendMessage", url.path().trim_end_matches('/'), self.bot_token.expose());
        url.set_path(&path);
        let body = json!({ "chat_id": self.chat_id, "text": event.text(), "disable_web_page_preview": true });
        (url, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_message_url_and_body() {
        let t = Telegram::new(BotToken::new("123:abc"), "-100".into(), "https://api.telegram.org".parse().unwrap());
        let (url, body) = t.request(&Event::login_recovered("primary", "logged in"));
        assert_eq!(url.as_str(), "https://api.telegram.org/bot123:abc/sendMessage");
        assert_eq!(body["chat_id"], "-100");
        assert_eq!(body["text"], "[upstox-relogin] primary: login recovered\nlogged in");
        let t = Telegram::new(BotToken::new("1:x"), "@chan".into(), "http://127.0.0.1:9/tg/".parse().unwrap());
        assert_eq!(t.request(&Event::login_recovered("a", "b")).0.as_str(), "http://127.0.0.1:9/tg/bot1:x/sendMessage");
    }
}
