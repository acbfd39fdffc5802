//! Test support for the simulator's own unit tests: start one on 127.0.0.1:0 and talk to it over real HTTP, the way
//! the browser and the token client do. Compiled only for tests; it never sleeps to wait for anything.

use axum::http::StatusCode;
use serde_json::{Value, json};
use url::Url;

use super::api::KeyCase;
use super::{Faults, SimClient, SimConfig, SimUser, Simulator};

pub(super) struct Harness {
    pub sim: Simulator,
    pub http: reqwest::Client,
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(Faults::default()).await
    }

    pub async fn start_with(faults: Faults) -> Harness {
        Harness::start_config(SimConfig { faults, ..SimConfig::demo() }).await
    }

    pub async fn start_config(config: SimConfig) -> Harness {
        let sim = Simulator::start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap();
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Harness { sim, http }
    }

    pub fn client(&self) -> &SimClient {
        &self.sim.config().clients[0]
    }

    pub fn user(&self) -> &SimUser {
        &self.sim.config().users[0]
    }

    pub fn url(&self, path: &str) -> Url {
        self.sim.base_url().join(path).unwrap()
    }

    pub fn dialog_url_with(&self, pairs: &[(&str, &str)]) -> Url {
        let mut url = self.sim.authorize_url();
        url.query_pairs_mut().extend_pairs(pairs);
        url
    }

    /// The dialog URL the real client builds, with `state` when given.
    pub fn dialog_url(&self, state: Option<&str>) -> Url {
        self.dialog_url_of(0, state)
    }

    /// The dialog URL of client `k`.
    pub fn dialog_url_of(&self, k: usize, state: Option<&str>) -> Url {
        let c = &self.sim.config().clients[k];
        let mut pairs = vec![("response_type", "code"), ("client_id", &c.client_id), ("redirect_uri", &c.redirect_uri)];
        pairs.extend(state.map(|s| ("state", s)));
        self.dialog_url_with(&pairs)
    }

    pub async fn get(&self, url: Url) -> reqwest::Response {
        self.http.get(url).send().await.unwrap()
    }

    /// Pass the dialog and return the login session id from the `Location`.
    pub async fn open_session(&self, state: Option<&str>) -> String {
        self.open_session_of(0, state).await
    }

    /// Pass client `k`'s dialog and return the login session id.
    pub async fn open_session_of(&self, k: usize, state: Option<&str>) -> String {
        let res = self.get(self.dialog_url_of(k, state)).await;
        assert_eq!(res.status(), StatusCode::FOUND);
        let location = res.headers()["location"].to_str().unwrap();
        let url = self.sim.base_url().join(location).unwrap();
        url.query_pairs().find(|(k, _)| k == "user_id").unwrap().1.into_owned()
    }

    pub async fn hydrate(&self, session: &str) -> (StatusCode, Value) {
        let res = self.get(self.url(&format!("login/api/session/{session}"))).await;
        (res.status(), res.json().await.unwrap())
    }

    /// POST one step (`mobile`, `otp`, `pin`) as the page's script does.
    pub async fn submit(&self, session: &str, step: &str, body: Value) -> (StatusCode, Value) {
        let url = self.url(&format!("login/api/session/{session}/{step}"));
        let res = self.http.post(url).json(&body).send().await.unwrap();
        (res.status(), res.json().await.unwrap())
    }

    pub async fn submit_mobile(&self, session: &str, mobile: &str) -> (StatusCode, Value) {
        self.submit(session, "mobile", json!({"mobile_number": mobile})).await
    }

    pub async fn submit_otp(&self, session: &str, otp: &str) -> (StatusCode, Value) {
        self.submit(session, "otp", json!({"otp": otp})).await
    }

    pub async fn submit_pin(&self, session: &str, pin: &str) -> (StatusCode, Value) {
        self.submit(session, "pin", json!({"pin": pin})).await
    }

    /// The user's TOTP for the time step `steps_ahead` after the current one (0 or 1 stay valid across a rollover).
    pub fn totp(&self, steps_ahead: u64) -> String {
        self.totp_of(0, steps_ahead)
    }

    /// User `k`'s TOTP, `steps_ahead` time steps after the current one.
    pub fn totp_of(&self, k: usize, steps_ahead: u64) -> String {
        let secret = totp_rs::Secret::try_from_base32(&self.sim.config().users[k].totp_secret).unwrap();
        let totp = totp_rs::Builder::new().with_secret(secret).build().unwrap();
        let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap();
        totp.generate(now + 30 * steps_ahead).to_string()
    }

    /// Dialog → mobile → OTP; returns the session, now at the PIN step.
    pub async fn session_at_pin(&self, totp_steps_ahead: u64) -> String {
        let session = self.open_session(Some("st")).await;
        assert_eq!(self.submit_mobile(&session, &self.user().mobile.clone()).await.0, StatusCode::OK);
        let (status, body) = self.submit_otp(&session, &self.totp(totp_steps_ahead)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        session
    }

    /// A whole login; returns the auth code. Use a different `totp_steps_ahead` for each login in one test.
    pub async fn login(&self, totp_steps_ahead: u64) -> String {
        let session = self.session_at_pin(totp_steps_ahead).await;
        let (status, body) = self.submit_pin(&session, &self.user().pin.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["data"]["code"].as_str().unwrap().to_owned()
    }

    /// Drive an opened session of user `k` to its auth code.
    pub async fn finish_login_of(&self, session: &str, k: usize, totp_steps_ahead: u64) -> String {
        let user = &self.sim.config().users[k];
        assert_eq!(self.submit_mobile(session, &user.mobile).await.0, StatusCode::OK);
        let (status, body) = self.submit_otp(session, &self.totp_of(k, totp_steps_ahead)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = self.submit_pin(session, &user.pin).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["data"]["code"].as_str().unwrap().to_owned()
    }

    pub async fn post_token(&self, form: &[(&str, &str)]) -> reqwest::Response {
        let url = self.url("v2/login/authorization/token");
        self.http.post(url).header("accept", "application/json").form(form).send().await.unwrap()
    }

    pub async fn exchange(&self, code: &str, client_secret: &str) -> reqwest::Response {
        let c = self.client();
        self.post_token(&[
            ("code", code),
            ("client_id", &c.client_id),
            ("client_secret", client_secret),
            ("redirect_uri", &c.redirect_uri),
            ("grant_type", "authorization_code"),
        ])
        .await
    }

    /// Log in and exchange; returns the access token.
    pub async fn access_token(&self) -> String {
        let code = self.login(0).await;
        let body: Value = self.exchange(&code, &self.client().client_secret).await.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn profile(&self, token: Option<&str>) -> reqwest::Response {
        let mut req = self.http.get(self.url("v2/user/profile"));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send().await.unwrap()
    }

    pub async fn logout(&self, token: &str) -> reqwest::Response {
        self.http.delete(self.url("v2/logout")).bearer_auth(token).send().await.unwrap()
    }
}

/// The response is `status` with a one-error envelope carrying `code`, its keys spelled in `case` only.
pub(super) async fn assert_error(res: reqwest::Response, status: StatusCode, code: &str, case: KeyCase) {
    assert_eq!(res.status(), status);
    let body: Value = res.json().await.unwrap();
    assert_error_body(&body, code, case);
}

pub(super) fn assert_error_body(body: &Value, code: &str, case: KeyCase) {
    assert_eq!(body["status"], "error", "{body}");
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{body}");
    let error = errors[0].as_object().unwrap();
    let keys = match case {
        KeyCase::Snake => ["error_code", "message", "property_path", "invalid_value"],
        KeyCase::Camel => ["errorCode", "message", "propertyPath", "invalidValue"],
    };
    let mut actual: Vec<&str> = error.keys().map(String::as_str).collect();
    actual.sort_unstable();
    let mut expected = keys.to_vec();
    expected.sort_unstable();
    assert_eq!(actual, expected, "{body}");
    assert_eq!(error[keys[0]], code, "{body}");
    assert!(!error["message"].as_str().unwrap().is_empty());
}

/// The message the page would show for this error body.
pub(super) fn message(body: &Value) -> &str {
    body["errors"][0]["message"].as_str().unwrap_or("")
}

/// An app's notifier webhook: records every JSON body POSTed to `/upstox/notify` and answers `status`.
pub(super) struct Webhook {
    pub url: String,
    received: std::sync::Arc<(std::sync::Mutex<Vec<Value>>, tokio::sync::Notify)>,
    task: tokio::task::JoinHandle<()>,
}

impl Webhook {
    pub async fn start(status: StatusCode) -> Webhook {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/upstox/notify", listener.local_addr().unwrap());
        let received = std::sync::Arc::new((std::sync::Mutex::new(Vec::new()), tokio::sync::Notify::new()));
        let sink = received.clone();
        let app = axum::Router::new().route(
            "/upstox/notify",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                let sink = sink.clone();
                async move {
                    sink.0.lock().unwrap().push(body);
                    sink.1.notify_waiters();
                    status
                }
            }),
        );
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Webhook { url, received, task }
    }

    /// The bodies received so far, once there are at least `n` (at most 10 s).
    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        let wait = async {
            loop {
                let notified = self.received.1.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let bodies = self.received.0.lock().unwrap().clone();
                if bodies.len() >= n {
                    return bodies;
                }
                notified.await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), wait).await.expect("webhook deliveries")
    }

    pub fn received(&self) -> Vec<Value> {
        self.received.0.lock().unwrap().clone()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Harness {
    /// `POST /v3/login/auth/token/request/{client_id}` with a JSON body, as the docs ask.
    pub async fn token_request(&self, client_id: &str, client_secret: &str) -> reqwest::Response {
        let url = self.url(&format!("v3/login/auth/token/request/{client_id}"));
        let body = json!({ "client_secret": client_secret });
        self.http.post(url).header("accept", "application/json").json(&body).send().await.unwrap()
    }

    /// `POST /sim/approve/{client_id}`.
    pub async fn approve(&self, client_id: &str) -> reqwest::Response {
        self.http.post(self.url(&format!("sim/approve/{client_id}"))).send().await.unwrap()
    }
}
