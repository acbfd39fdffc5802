//! The one builder of a configuration that works against a running simulator, used by `demo`, `simulate` and the
//! integration tests: `state_dir`, `[upstox]` pointing at the simulator, one `[[accounts]]` per simulated client
//! and user (paired by position), and a file sink.

use std::path::Path;

use super::Simulator;

/// What the caller chooses; the simulator fills in the rest.
#[derive(Debug, Clone)]
pub struct ConfigFile<'a> {
    pub state_dir: &'a Path,
    /// The file sink's path template (`{account}` is replaced by the account's name).
    pub token_path: &'a str,
    /// The account's name; with several simulated accounts, `NAME-1`, `NAME-2`, ….
    pub account_name: &'a str,
}

impl Simulator {
    /// A complete TOML configuration (with inline secrets: the simulator's throwaway credentials).
    pub fn config_toml(&self, file: &ConfigFile<'_>) -> String {
        let api_base = self.base_url.as_str().trim_end_matches('/');
        let mut out = format!(
            "# upstox-relogin configuration for the simulator at {api_base}\n\
             state_dir = {}\n\n\
             [upstox]\n\
             authorize_url = {}\n\
             api_base_url = {}\n",
            toml_string(&file.state_dir.display().to_string()),
            toml_string(self.authorize_url().as_str()),
            toml_string(api_base),
        );
        let config = self.config();
        let pairs: Vec<_> = config.clients.iter().zip(&config.users).collect();
        if pairs.is_empty() {
            out.push_str("\n# the simulator has no client or no user: no account can be configured\n");
        }
        for (i, (client, user)) in pairs.iter().enumerate() {
            let name = if pairs.len() == 1 {
                file.account_name.to_owned()
            } else {
                format!("{}-{}", file.account_name, i + 1)
            };
            out.push_str(&format!(
                "\n[[accounts]]\n\
                 name = {}\n\
                 client_id = {}\n\
                 redirect_uri = {}\n\
                 mobile = {}\n\
                 client_secret = {}\n\
                 pin = {}\n\
                 totp_secret = {}\n",
                toml_string(&name),
                toml_string(&client.client_id),
                toml_string(&client.redirect_uri),
                toml_string(&user.mobile),
                toml_string(&client.client_secret),
                toml_string(&user.pin),
                toml_string(&user.totp_secret),
            ));
        }
        out.push_str(&format!("\n[[sinks]]\ntype = \"file\"\npath = {}\n", toml_string(file.token_path)));
        out
    }
}

/// A TOML basic string: quoted, with `\`, `"` and control characters escaped.
fn toml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use figment::providers::Format;

    use super::*;
    use crate::simulator::SimConfig;

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string(r#"C:\a "b""#), r#""C:\\a \"b\"""#);
        assert_eq!(toml_string("x\ny"), r#""x\ny""#);
    }

    #[tokio::test]
    async fn config_is_complete_toml_pointing_here() {
        let sim = Simulator::start(SimConfig::demo(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let dir = Path::new("/tmp/sim \"state\"");
        let snippet = sim.config_toml(&ConfigFile {
            state_dir: dir,
            token_path: "/tmp/sim \"state\"/{account}.json",
            account_name: "demo",
        });
        let value: serde_json::Value =
            figment::Figment::from(figment::providers::Toml::string(&snippet)).extract().unwrap();
        let (client, user) = (&sim.config().clients[0], &sim.config().users[0]);
        assert_eq!(value["state_dir"], "/tmp/sim \"state\"");
        assert_eq!(value["upstox"]["authorize_url"], sim.authorize_url().as_str());
        assert_eq!(value["upstox"]["api_base_url"], sim.base_url().as_str().trim_end_matches('/'));
        let account = &value["accounts"][0];
        assert_eq!(account["name"], "demo");
        assert_eq!(account["client_id"], client.client_id.as_str());
        assert_eq!(account["redirect_uri"], client.redirect_uri.as_str());
        assert_eq!(account["mobile"], user.mobile.as_str());
        assert_eq!(account["client_secret"], client.client_secret.as_str());
        assert_eq!(account["pin"], user.pin.as_str());
        assert_eq!(account["totp_secret"], user.totp_secret.as_str());
        assert_eq!(value["sinks"][0]["type"], "file");
        assert_eq!(value["sinks"][0]["path"], "/tmp/sim \"state\"/{account}.json");
        assert_eq!(value.as_object().unwrap().len(), 4, "{value}");
        sim.shutdown().await;
    }
}
