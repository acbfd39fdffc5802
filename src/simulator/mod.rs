//! The built-in Upstox stand-in: the authorization dialog, the hosted login single-page app and its backend, the
//! token, profile and logout API, the v3 access-token request with its webhook delivery, and the market calendar,
//! served by axum over real HTTP on one host. Facts and sources: `/work/shared/docs/upstox.md`.
//!
//! This file owns `Simulator` and the shared state behind one mutex. Code map: `config.rs` (clients, users, demo
//! credentials), `faults.rs` (the switchable habits), `journal.rs` (what the server saw), `api.rs` (dialog, token,
//! profile, logout, the error envelope), `jwt.rs` (token shape), `page.rs` + `login.html` (the login app as the
//! browser sees it), `login.rs` (its backend), `token_request.rs` (v3), `market.rs` (holidays), `config_file.rs` (a
//! configuration that works against the simulator, for `demo`, `simulate` and the tests). The simulator is a
//! test and demo double: it never talks to the real Upstox, never writes to disk, and never logs a PIN, TOTP code or
//! secret, client secret, auth code or token (request paths without query strings are fine). The only requests it
//! makes are v3 deliveries to the notifier URLs it was given.

mod api;
mod config;
mod config_file;
mod faults;
mod journal;
mod jwt;
mod login;
mod market;
mod page;
#[cfg(test)]
mod testing;
mod token_request;

use config::random_hex;
pub use config::{SimClient, SimConfig, SimUser};
pub use config_file::ConfigFile;
pub use faults::Faults;
pub use journal::{Delivery, Journal, LoginEnd, LoginRecord, TokenRequestSeen};
pub use market::{HolidayType, OpenExchange, SimHoliday, default_holidays};
pub use page::PageIds;
pub use token_request::ApprovalError;

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
use tokio_util::sync::CancellationToken;
use url::Url;

/// How long `shutdown` waits for open connections to finish before aborting the server task.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long a login session (dialog → PIN) stays usable.
const SESSION_TTL: Duration = Duration::from_secs(15 * 60);
/// How long an auth code can be exchanged (Upstox: 10 minutes).
const CODE_TTL: Duration = Duration::from_secs(10 * 60);
/// Wrong PINs before the account is blocked when `Faults::pin_lock_after` is 0 (Upstox's documented limit).
const DEFAULT_PIN_LOCK_AFTER: u32 = 5;

/// Where a login session stands; the backend accepts only the matching submission. A session that produced a code is
/// removed.
///
/// Invariant: every `user: usize` in this module indexes both `SimConfig::users` and `State::users`, which are built
/// together in `Shared::new` and never change length, so indexing with it cannot go out of bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Mobile,
    Otp {
        user: usize,
    },
    Pin {
        user: usize,
    },
    /// After a correct PIN under `Faults::interstitial_after_pin`: nothing more can be submitted.
    Interstitial {
        user: usize,
    },
}

/// One pass through the dialog: what the final redirect needs.
#[derive(Debug)]
struct LoginSession {
    /// This session's entry in `Journal::logins`.
    record: usize,
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
    /// Issued under `Faults::profile_rejects_new_tokens`: the profile API answers 401 `UDAPI100050`.
    profile_rejects: bool,
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
    /// What the market calendar serves now.
    holidays: Vec<SimHoliday>,
    /// Each client's notifier webhook URL now, by client index (starts as `SimClient::notifier_url`).
    notifier_urls: Vec<Option<String>>,
    /// v3 token requests awaiting approval, by client index.
    pending: HashMap<usize, token_request::PendingRequest>,
}

impl State {
    /// The session, unless it is unknown or past `SESSION_TTL` (then it is forgotten and its login ends `Expired`).
    /// Every lookup counts as the session being seen.
    fn live_session(&mut self, id: &str) -> Option<&mut LoginSession> {
        let session = self.sessions.get(id)?;
        let (record, created) = (session.record, session.created);
        if created.elapsed() > SESSION_TTL {
            self.sessions.remove(id);
            self.end_login(record, created + SESSION_TTL, LoginEnd::Expired);
            return None;
        }
        if let Some(login) = self.journal.logins.get_mut(record) {
            login.last_seen = Instant::now();
        }
        self.sessions.get_mut(id)
    }

    /// Record how login `record` ended (the first end wins).
    fn end_login(&mut self, record: usize, at: Instant, how: LoginEnd) {
        if let Some(login) = self.journal.logins.get_mut(record) {
            login.last_seen = login.last_seen.max(at);
            login.ended.get_or_insert((at, how));
        }
    }

    /// The journal record of a live session, to count what it submitted.
    fn login_record(&mut self, id: &str) -> Option<&mut LoginRecord> {
        let record = self.sessions.get(id)?.record;
        self.journal.logins.get_mut(record)
    }
}

/// What every handler gets: the fixed configuration and the mutable state.
#[derive(Debug)]
struct Shared {
    config: SimConfig,
    state: Mutex<State>,
    /// Posts v3 deliveries to notifier webhooks; redirects are not followed.
    http: reqwest::Client,
    /// Cancelled at shutdown: stops pending automatic approvals.
    cancel: CancellationToken,
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
            holidays: config.holidays.clone(),
            notifier_urls: config.clients.iter().map(|c| c.notifier_url.clone()).collect(),
            pending: HashMap::new(),
        };
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Shared { config, state: Mutex::new(state), http, cancel: CancellationToken::new() }
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
        .route("/v2/market/holidays", get(market::holidays))
        .route("/v2/market/holidays/{date}", get(market::holidays_on))
        .route("/login", get(page::login_page))
        .route("/login/otp", get(page::login_page))
        .route("/login/pin", get(page::login_page))
        .route("/login/device", get(page::login_page))
        .route("/login/api/session/{id}", get(login::hydrate))
        .route("/login/api/session/{id}/mobile", post(login::mobile))
        .route("/login/api/session/{id}/otp", post(login::otp))
        .route("/login/api/session/{id}/pin", post(login::pin))
        .route("/v3/login/auth/token/request/{client_id}", post(token_request::request))
        .route("/sim/approve/{client_id}", post(token_request::approve_endpoint))
        .route("/cdn-cgi/access-denied", get(page::blocked))
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

    /// Replace the market calendar `GET /v2/market/holidays` serves (a holiday declared at short notice).
    pub fn set_holidays(&self, holidays: Vec<SimHoliday>) {
        self.shared.lock().holidays = holidays;
    }

    /// The ids and classes the login page uses under the current faults.
    pub fn page_ids(&self) -> PageIds {
        PageIds::for_faults(&self.shared.lock().faults)
    }

    /// Set (or with `None` clear) the notifier webhook URL of the client `client_id`, as in the app's settings;
    /// `false` when no such client is registered. `config()` keeps showing the URL at start.
    pub fn set_notifier_url(&self, client_id: &str, url: Option<&str>) -> bool {
        let Some(k) = self.shared.config.clients.iter().position(|c| c.client_id == client_id) else {
            return false;
        };
        self.shared.lock().notifier_urls[k] = url.map(str::to_owned);
        true
    }

    /// The user approves client `client_id`'s pending v3 token request (like `POST /sim/approve/{client_id}`): the
    /// token is POSTed to the notifier URL; returns each POST's HTTP status (`None`: no answer).
    pub async fn approve_token_request(&self, client_id: &str) -> Result<Vec<Option<u16>>, ApprovalError> {
        let Some(k) = self.shared.config.clients.iter().position(|c| c.client_id == client_id) else {
            return Err(ApprovalError::UnknownClient(client_id.to_owned()));
        };
        token_request::approve(&self.shared, k).await
    }

    /// A copy of the journal as it stands.
    pub fn journal(&self) -> Journal {
        self.shared.lock().journal.clone()
    }

    /// Stop accepting, let open requests finish (at most `SHUTDOWN_GRACE`), then stop.
    pub async fn shutdown(mut self) {
        self.shared.cancel.cancel();
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
        self.shared.cancel.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn random_alphanumeric(len: usize) -> String {
    rand::rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
    async fn each_account_logs_in_on_its_clients_dialog_and_the_journal_proves_the_overlap() {
        let h = testing::Harness::start_config(SimConfig::demo_accounts(3)).await;
        // Three logins in flight at once: all dialogs first, then each finished.
        let sessions: Vec<String> =
            futures_util::future::join_all((0..3).map(|k| h.open_session_of(k, Some("s")))).await;
        for (k, session) in sessions.iter().enumerate() {
            let code = h.finish_login_of(session, k, 0).await;
            let c = &h.sim.config().clients[k];
            let res = h
                .post_token(&[
                    ("code", code.as_str()),
                    ("client_id", &c.client_id),
                    ("client_secret", &c.client_secret),
                    ("redirect_uri", &c.redirect_uri),
                    ("grant_type", "authorization_code"),
                ])
                .await;
            assert_eq!(res.status(), axum::http::StatusCode::OK);
            let body: serde_json::Value = res.json().await.unwrap();
            assert_eq!(body["user_id"], h.sim.config().users[k].user_id.as_str());
        }
        let journal = h.sim.journal();
        assert_eq!(journal.max_concurrent_logins(), 3);
        for (k, user) in h.sim.config().users.iter().enumerate() {
            assert_eq!((journal.logins_for(&user.mobile), journal.pins_for(&user.mobile)), (1, 1), "user {k}");
            assert_eq!(journal.codes_for(&user.mobile), 1);
            assert_eq!(journal.logins[k].client_id, h.sim.config().clients[k].client_id);
            assert_eq!(journal.logins[k].ended.map(|(_, how)| how), Some(LoginEnd::CodeIssued));
        }

        // One after the other: never more than one in flight.
        let h = testing::Harness::start_config(SimConfig::demo_accounts(2)).await;
        for k in 0..2 {
            let session = h.open_session_of(k, None).await;
            h.finish_login_of(&session, k, 0).await;
        }
        // A user may log in on another client's dialog too (the pairing is a convention, not a rule).
        let session = h.open_session_of(1, None).await;
        h.finish_login_of(&session, 0, 1).await;
        let journal = h.sim.journal();
        assert_eq!(journal.max_concurrent_logins(), 1);
        assert_eq!(journal.codes_for(&h.sim.config().users[0].mobile), 2);
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
