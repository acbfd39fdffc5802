//! What the simulator knows at start: registered apps (`SimClient`), accounts (`SimUser`), the market calendar and
//! the initial faults, plus generators of random demo credentials.
//!
//! Pure data: this module never binds a socket, never reads the environment and never logs a credential.

use rand::Rng;

use super::Faults;
use super::market::{SimHoliday, default_holidays};

/// A registered Upstox app.
#[derive(Clone, Debug)]
pub struct SimClient {
    pub client_id: String,
    pub client_secret: String,
    /// Must be matched exactly by the dialog and the token request.
    pub redirect_uri: String,
    /// The app's "Notifier Webhook Endpoint" (one per app, set in the app's settings [doc]): where an approved v3
    /// access-token request is POSTed. `None`: not set. `Simulator::set_notifier_url` changes it at runtime.
    pub notifier_url: Option<String>,
}

/// An Upstox account that can log in.
#[derive(Clone, Debug)]
pub struct SimUser {
    pub mobile: String,
    pub pin: String,
    /// Base32, as Upstox shows it when TOTP is enabled.
    pub totp_secret: String,
    pub user_id: String,
    pub user_name: String,
    pub email: String,
}

/// Everything the simulator knows at start.
///
/// Pairing of clients and users: the dialog of any client accepts any registered user (the login session learns its
/// user at the mobile step, not at the dialog), and the auth code is bound to the client whose dialog opened the
/// session, so it must be exchanged with that client's credentials. Where a client needs an owner (the v3 token
/// request names the approving user), client `k` belongs to user `k` (the last user when there are fewer users).
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub clients: Vec<SimClient>,
    pub users: Vec<SimUser>,
    /// The faults at start; `Simulator::set_faults` replaces them later without changing this copy.
    pub faults: Faults,
    /// What `GET /v2/market/holidays` serves at start; `Simulator::set_holidays` replaces it later.
    pub holidays: Vec<SimHoliday>,
}

impl SimConfig {
    /// One client and one user with freshly generated random credentials (`demo_accounts(1)`).
    pub fn demo() -> SimConfig {
        SimConfig::demo_accounts(1)
    }

    /// `n` clients and `n` users, client `k` paired with user `k`, every credential random and distinct: client ids,
    /// secrets, mobiles, PINs, TOTP secrets, user ids. Client 0 redirects to `http://127.0.0.1:9/upstox/callback`,
    /// client `k > 0` to `http://127.0.0.1:9/upstox/callback/{k}` (nothing listens there: the code is read from the
    /// browser's URL). No client has a notifier URL.
    pub fn demo_accounts(n: usize) -> SimConfig {
        let mut clients: Vec<SimClient> = Vec::with_capacity(n);
        let mut users: Vec<SimUser> = Vec::with_capacity(n);
        for k in 0..n {
            let client = loop {
                let candidate = demo_client(k);
                if clients.iter().all(|c| c.client_id != candidate.client_id) {
                    break candidate;
                }
            };
            let user = loop {
                let candidate = demo_user(k);
                let clash = users.iter().any(|u| {
                    u.mobile == candidate.mobile
                        || u.user_id == candidate.user_id
                        || u.totp_secret == candidate.totp_secret
                });
                if !clash {
                    break candidate;
                }
            };
            clients.push(client);
            users.push(user);
        }
        SimConfig { clients, users, faults: Faults::default(), holidays: default_holidays() }
    }

    /// The index of the user who owns client `client` (see the pairing rule above); `None` without users.
    pub(super) fn owner_of(&self, client: usize) -> Option<usize> {
        self.users.len().checked_sub(1).map(|last| client.min(last))
    }
}

fn demo_client(k: usize) -> SimClient {
    let redirect_uri = match k {
        0 => "http://127.0.0.1:9/upstox/callback".to_owned(),
        k => format!("http://127.0.0.1:9/upstox/callback/{k}"),
    };
    SimClient {
        client_id: format!(
            "{}-{}-{}-{}-{}",
            random_hex(8),
            random_hex(4),
            random_hex(4),
            random_hex(4),
            random_hex(12)
        ),
        client_secret: random_from(b"abcdefghijklmnopqrstuvwxyz0123456789", 10),
        redirect_uri,
        notifier_url: None,
    }
}

fn demo_user(k: usize) -> SimUser {
    let user_id = random_from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 6);
    let mut secret = [0u8; 20];
    rand::rng().fill(&mut secret);
    SimUser {
        mobile: format!("{}{}", random_from(b"6789", 1), random_from(b"0123456789", 9)),
        pin: random_from(b"0123456789", 6),
        totp_secret: totp_rs::Secret::from(secret).to_base32(),
        email: format!("demo.{}@example.com", user_id.to_ascii_lowercase()),
        user_id,
        user_name: match k {
            0 => "Demo Trader".to_owned(),
            k => format!("Demo Trader {}", k + 1),
        },
    }
}

/// `len` characters drawn uniformly from `alphabet` (ASCII).
pub(super) fn random_from(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len).map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())])).collect()
}

pub(super) fn random_hex(len: usize) -> String {
    random_from(b"0123456789abcdef", len)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn demo_credentials_have_upstox_shapes() {
        let config = SimConfig::demo();
        assert_eq!((config.clients.len(), config.users.len()), (1, 1));
        let client = &config.clients[0];
        let user = &config.users[0];
        let parts: Vec<_> = client.client_id.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12]);
        assert!(!client.client_secret.is_empty());
        assert_eq!(client.redirect_uri, "http://127.0.0.1:9/upstox/callback");
        assert!(client.notifier_url.is_none());
        assert!(user.mobile.len() == 10 && user.mobile.bytes().all(|b| b.is_ascii_digit()));
        assert!(user.pin.len() == 6 && user.pin.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(user.totp_secret.len(), 32);
        assert_eq!(totp_rs::Secret::try_from_base32(&user.totp_secret).unwrap().as_bytes().len(), 20);
        assert_ne!(SimConfig::demo().users[0].totp_secret, user.totp_secret);
        assert!(!config.holidays.is_empty());
    }

    #[test]
    fn demo_accounts_are_distinct_and_paired_by_index() {
        let config = SimConfig::demo_accounts(6);
        assert_eq!((config.clients.len(), config.users.len()), (6, 6));
        let distinct = |values: Vec<&String>| values.iter().collect::<HashSet<_>>().len();
        assert_eq!(distinct(config.clients.iter().map(|c| &c.client_id).collect()), 6);
        assert_eq!(distinct(config.clients.iter().map(|c| &c.client_secret).collect()), 6);
        assert_eq!(distinct(config.clients.iter().map(|c| &c.redirect_uri).collect()), 6);
        assert_eq!(distinct(config.users.iter().map(|u| &u.mobile).collect()), 6);
        assert_eq!(distinct(config.users.iter().map(|u| &u.user_id).collect()), 6);
        assert_eq!(distinct(config.users.iter().map(|u| &u.totp_secret).collect()), 6);
        assert!(config.users.iter().all(|u| u.mobile.as_bytes()[0] >= b'6'), "Upstox's ^[6-9]\\d{{9}}$");
        assert_eq!(config.clients[3].redirect_uri, "http://127.0.0.1:9/upstox/callback/3");
        assert_eq!((config.owner_of(3), config.owner_of(9)), (Some(3), Some(5)));
        assert_eq!(SimConfig::demo_accounts(0).owner_of(0), None);
    }
}
