//! The built-in Upstox stand-in: the authorization dialog, the hosted login single-page app and its backend, and the
//! token, profile and logout API, served by axum over real HTTP on one host.
//!
//! This file owns the public types (`SimConfig`, `Faults`, `Journal`, `Simulator`) and the shared state behind one
//! mutex; `api.rs` serves the OAuth and REST endpoints, `login.rs` the login pages, `config_file.rs` writes a
//! configuration that works against the simulator. The simulator is a test and demo
//! double: it never talks to the real Upstox, never writes to disk, and never logs a PIN, TOTP code or secret,
//! client secret, auth code or token (request paths without query strings are fine).

mod api;
mod config_file;
mod login;
#[cfg(test)]
mod testing;

pub use config_file::ConfigFile;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use axum::routing::{delete, get, post};
use chrono::{DateTime, Utc};
use rand::Rng;
use rand::distr::Alphanumeric;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use url::Url;

/// How long `shutdown` waits for open connections to finish before aborting the server task.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long a login session (dialog → PIN) stays usable.
const SESSION_TTL: Duration = Duration::from_secs(15 * 60);
/// How long an auth code can be exchanged (Upstox: 10 minutes).
const CODE_TTL: Duration = Duration::from_secs(10 * 60);
/// Wrong PINs before the account is blocked when `Faults::pin_lock_after` is 0 (Upstox's documented limit).
const DEFAULT_PIN_LOCK_AFTER: u32 = 5;

/// A registered Upstox app.
#[derive(Clone, Debug)]
pub struct SimClient {
    pub client_id: String,
    pub client_secret: String,
    /// Must be matched exactly by the dialog and the token request.
    pub redirect_uri: String,
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

/// Misbehaviour to inject; changeable at runtime with `Simulator::set_faults` (which restarts every count below).
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// The first N POSTs to the token endpoint answer 503 with an `UDAPI100500` envelope (the code is still consumed).
    pub token_5xx_first: u32,
    /// Every backend XHR of the login SPA (hydration, mobile, otp, pin) waits this long before answering.
    pub step_delay_ms: u64,
    /// The PIN XHR is counted in the journal on arrival, then waits this long more before it is checked and
    /// answered: the redirect after the PIN arrives late, or (longer than the client waits) never.
    pub pin_delay_ms: u64,
    /// The first otherwise-valid TOTP submission is answered "Invalid OTP".
    pub reject_first_totp: bool,
    /// The login page is replaced by a Cloudflare-style "Access denied | Error 1010" page (HTTP 403).
    pub bot_block: bool,
    /// Wrong PINs before the account is blocked; 0 means Upstox's 5.
    pub pin_lock_after: u32,
    /// The final redirect carries a `state` other than the one the dialog received (a CSRF stand-in); the code is
    /// still issued.
    pub tamper_state: bool,
    /// After a correct PIN the app is sent to a Cloudflare "Access denied | Error 1010" page instead of the
    /// redirect (the block reported after PIN + OTP); no code is issued.
    pub bot_block_after_pin: bool,
    /// Every response's `Date` header is this many seconds ahead of the real clock (negative: behind), as if the
    /// local clock were skewed the other way.
    pub date_skew_secs: i64,
}

impl Faults {
    fn pin_limit(&self) -> u32 {
        if self.pin_lock_after == 0 { DEFAULT_PIN_LOCK_AFTER } else { self.pin_lock_after }
    }
}

/// Everything the simulator knows at start.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub clients: Vec<SimClient>,
    pub users: Vec<SimUser>,
    /// The faults at start; `Simulator::set_faults` replaces them later without changing this copy.
    pub faults: Faults,
}

impl SimConfig {
    /// One client and one user with freshly generated random credentials.
    pub fn demo() -> SimConfig {
        let user_id = random_from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 6);
        let client = SimClient {
            client_id: format!(
                "{}-{}-{}-{}-{}",
                random_hex(8),
                random_hex(4),
                random_hex(4),
                random_hex(4),
                random_hex(12)
            ),
            client_secret: random_from(b"abcdefghijklmnopqrstuvwxyz0123456789", 10),
            redirect_uri: "http://127.0.0.1:9/upstox/callback".to_owned(),
        };
        let mut secret = [0u8; 20];
        rand::rng().fill(&mut secret);
        let user = SimUser {
            mobile: format!("{}{}", random_from(b"6789", 1), random_from(b"0123456789", 9)),
            pin: random_from(b"0123456789", 6),
            totp_secret: totp_rs::Secret::from(secret).to_base32(),
            email: format!("demo.{}@example.com", user_id.to_ascii_lowercase()),
            user_id,
            user_name: "Demo Trader".to_owned(),
        };
        SimConfig { clients: vec![client], users: vec![user], faults: Faults::default() }
    }
}

/// What happened so far, for tests. Values are recorded even for failed requests.
#[derive(Clone, Debug, Default)]
pub struct Journal {
    /// Every `code` POSTed to the token endpoint, in order (even failed or invalid ones).
    pub token_posts: Vec<String>,
    /// Every auth code the login page handed out.
    pub codes_issued: Vec<String>,
    /// Every POST to the mobile step, counted on arrival (before `Faults::step_delay_ms`).
    pub mobile_submissions: u32,
    /// Every POST to the PIN step.
    pub pin_submissions: u32,
    /// PIN submissions that did not match the user's PIN.
    pub wrong_pins: u32,
    /// Every TOTP code submitted, in order.
    pub totp_submissions: Vec<String>,
    pub access_tokens_issued: u32,
    /// The `state` values received at the dialog.
    pub states_seen: Vec<String>,
}

/// Where a login session stands; the backend accepts only the matching submission. A session that produced a code is
/// removed.
///
/// Invariant: every `user: usize` in this module indexes both `SimConfig::users` and `State::users`, which are built
/// together in `Shared::new` and never change length, so indexing with it cannot go out of bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Mobile,
    Otp { user: usize },
    Pin { user: usize },
}

/// One pass through the dialog: what the final redirect needs.
#[derive(Debug)]
struct LoginSession {
    client_id: String,
    redirect_uri: String,
    state: Option<String>,
    created: Instant,
    step: Step,
}

/// An auth code waiting for its single exchange.
#[derive(Debug)]
struct IssuedCode {
    client_id: String,
    redirect_uri: String,
    user: usize,
    issued: Instant,
}

/// An access token the profile and logout endpoints recognise.
#[derive(Debug)]
struct IssuedToken {
    user: usize,
    expires_at: DateTime<Utc>,
    revoked: bool,
}

/// Per-user state that outlives login sessions.
#[derive(Debug, Default)]
struct UserStatus {
    wrong_pins: u32,
    blocked: bool,
    used_totp_steps: HashSet<u64>,
}

/// How far the current faults have progressed; reset by `set_faults`.
#[derive(Debug, Default)]
struct FaultProgress {
    token_5xx_served: u32,
    totp_rejected: bool,
}

#[derive(Debug)]
struct State {
    faults: Faults,
    progress: FaultProgress,
    journal: Journal,
    sessions: HashMap<String, LoginSession>,
    codes: HashMap<String, IssuedCode>,
    tokens: HashMap<String, IssuedToken>,
    users: Vec<UserStatus>,
}

impl State {
    /// The session, unless it is unknown or past `SESSION_TTL` (then it is forgotten).
    fn live_session(&mut self, id: &str) -> Option<&mut LoginSession> {
        let expired = self.sessions.get(id)?.created.elapsed() > SESSION_TTL;
        if expired {
            self.sessions.remove(id);
            return None;
        }
        self.sessions.get_mut(id)
    }
}

/// What every handler gets: the fixed configuration and the mutable state.
#[derive(Debug)]
struct Shared {
    config: SimConfig,
    state: Mutex<State>,
}

impl Shared {
    fn new(config: SimConfig) -> Shared {
        let state = State {
            faults: config.faults.clone(),
            progress: FaultProgress::default(),
            journal: Journal::default(),
            sessions: HashMap::new(),
            codes: HashMap::new(),
            tokens: HashMap::new(),
            users: config.users.iter().map(|_| UserStatus::default()).collect(),
        };
        Shared { config, state: Mutex::new(state) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A handler that panicked mid-update leaves the state as a test double may well see it; keep serving.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn faults(&self) -> Faults {
        self.lock().faults.clone()
    }
}

type SharedState = Arc<Shared>;

fn router(shared: SharedState) -> Router {
    Router::new()
        .route("/v2/login/authorization/dialog", get(api::dialog))
        .route("/v2/login/authorization/token", post(api::token))
        .route("/v2/user/profile", get(api::profile))
        .route("/v2/logout", delete(api::logout))
        .route("/login", get(login::page))
        .route("/login/otp", get(login::page))
        .route("/login/pin", get(login::page))
        .route("/login/api/session/{id}", get(login::hydrate))
        .route("/login/api/session/{id}/mobile", post(login::mobile))
        .route("/login/api/session/{id}/otp", post(login::otp))
        .route("/login/api/session/{id}/pin", post(login::pin))
        .route("/cdn-cgi/access-denied", get(login::blocked))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(axum::middleware::map_response_with_state(shared.clone(), skew_date))
        .with_state(shared)
}

/// With `Faults::date_skew_secs`, set the `Date` header hyper would add, shifted by the skew.
async fn skew_date(axum::extract::State(sim): axum::extract::State<SharedState>, mut response: Response) -> Response {
    let skew = sim.faults().date_skew_secs;
    if skew != 0 {
        let shown = Utc::now() + chrono::Duration::seconds(skew);
        if let Ok(value) = HeaderValue::from_str(&shown.format("%a, %d %b %Y %H:%M:%S GMT").to_string()) {
            response.headers_mut().insert(header::DATE, value);
        }
    }
    response
}

/// A running simulator. Stops on `shutdown`, or abruptly when dropped.
pub struct Simulator {
    shared: SharedState,
    base_url: Url,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator").field("base_url", &self.base_url.as_str()).finish_non_exhaustive()
    }
}

impl Simulator {
    /// Bind `listen` (port 0 picks a free port) and serve in a spawned task.
    pub async fn start(config: SimConfig, listen: SocketAddr) -> std::io::Result<Simulator> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let local = listener.local_addr()?;
        let host = match local.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let base_url = Url::parse(&format!("http://{}/", SocketAddr::new(host, local.port())))
            .map_err(|e| std::io::Error::other(format!("simulator base url: {e}")))?;
        let shared = Arc::new(Shared::new(config));
        let app = router(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    // Either `shutdown` sent the signal or the sender was dropped: stop both ways.
                    let _ = stopped.await;
                })
                .await;
            if let Err(error) = served {
                tracing::warn!(%error, "simulator server stopped with an error");
            }
        });
        tracing::info!(base_url = %base_url, "upstox simulator listening");
        Ok(Simulator { shared, base_url, stop: Some(stop), task: Some(task) })
    }

    /// `http://HOST:PORT/`.
    pub fn base_url(&self) -> Url {
        self.base_url.clone()
    }

    /// `{base}v2/login/authorization/dialog`.
    pub fn authorize_url(&self) -> Url {
        let mut url = self.base_url.clone();
        url.set_path("/v2/login/authorization/dialog");
        url
    }

    pub fn config(&self) -> &SimConfig {
        &self.shared.config
    }

    /// Replace the faults; their counters (5xx answers served, TOTP rejected) start again from zero.
    pub fn set_faults(&self, faults: Faults) {
        let mut state = self.shared.lock();
        state.faults = faults;
        state.progress = FaultProgress::default();
    }

    /// A copy of the journal as it stands.
    pub fn journal(&self) -> Journal {
        self.shared.lock().journal.clone()
    }

    /// Stop accepting, let open requests finish (at most `SHUTDOWN_GRACE`), then stop.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(mut task) = self.task.take() else {
            return;
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await.is_err() {
            task.abort();
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// `len` characters drawn uniformly from `alphabet` (ASCII).
fn random_from(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len).map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())])).collect()
}

fn random_hex(len: usize) -> String {
    random_from(b"0123456789abcdef", len)
}

fn random_alphanumeric(len: usize) -> String {
    rand::rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_credentials_have_upstox_shapes() {
        let config = SimConfig::demo();
        let client = &config.clients[0];
        let user = &config.users[0];
        let parts: Vec<_> = client.client_id.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12]);
        assert!(!client.client_secret.is_empty());
        assert_eq!(client.redirect_uri, "http://127.0.0.1:9/upstox/callback");
        assert!(user.mobile.len() == 10 && user.mobile.bytes().all(|b| b.is_ascii_digit()));
        assert!(user.pin.len() == 6 && user.pin.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(user.totp_secret.len(), 32);
        assert_eq!(totp_rs::Secret::try_from_base32(&user.totp_secret).unwrap().as_bytes().len(), 20);
        assert_ne!(SimConfig::demo().users[0].totp_secret, user.totp_secret);
    }

    #[tokio::test]
    async fn date_skew_shifts_the_date_header_of_every_answer() {
        let faults = Faults { date_skew_secs: -120, ..Faults::default() };
        let sim =
            Simulator::start(SimConfig { faults, ..SimConfig::demo() }, "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let offset = |res: &reqwest::Response| {
            let date = DateTime::parse_from_rfc2822(res.headers()[header::DATE].to_str().unwrap()).unwrap();
            (date.with_timezone(&Utc) - Utc::now()).num_seconds()
        };
        let res = reqwest::Client::new().head(sim.base_url()).send().await.unwrap();
        assert!((offset(&res) + 120).abs() <= 2, "{:?}", res.headers()[header::DATE]);
        sim.set_faults(Faults::default());
        let res = reqwest::Client::new().head(sim.base_url()).send().await.unwrap();
        assert!(offset(&res).abs() <= 2, "{:?}", res.headers()[header::DATE]);
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn urls_point_at_the_bound_port() {
        let sim = Simulator::start(SimConfig::demo(), "0.0.0.0:0".parse().unwrap()).await.unwrap();
        let base = sim.base_url();
        assert_eq!(base.host_str(), Some("127.0.0.1"));
        assert_ne!(base.port(), Some(0));
        assert_eq!(base.path(), "/");
        assert_eq!(sim.authorize_url().as_str(), format!("{base}v2/login/authorization/dialog"));
        sim.shutdown().await;
    }
}
