//! An independent stand-in for Upstox's hosted login, written from `shared/docs/upstox.md` and *not* from our
//! simulator: a different page structure (all three steps in one document, toggled with `hidden`; no `<form>`;
//! labels as `aria-labelledby` captions; the OTP masked `ddd-ddd`), errors shown in ways the simulator does not
//! (plain text with no role, a toast appended to the body, a banner far from the input, the step replaced by a
//! message), and optionally ids that are neither Upstox's nor the simulator's. It records every request the page
//! makes and every keystroke (`keydown` beacons), so a test can prove what a client typed and submitted.
//!
//! Served by axum on 127.0.0.1:0: the dialog (`/v2/login/authorization/dialog`, JSON `UDAPI100068` for a wrong
//! client or redirect URI, compared as strings), the app (`/app/signin`), its XHRs (`/app/api/…`), the token
//! endpoint and the profile (which knows only the tokens it issued: a test's seeded tokens are rejected).
#![allow(dead_code)] // not every test uses every switch

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::json;

/// How the page shows a refusal. The server picks it per user, as a redesign might per A/B bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorStyle {
    /// Plain text in a `<p>` under the input: no `role`, no `aria-live`.
    Plain,
    /// A toast `<div>` appended to `<body>`, Upstox style `<message> [<code>]`, gone after 6 s.
    Toast,
    /// A banner at the top of the page, far from the input, no role.
    Banner,
    /// The step's section is replaced by a message and a "Back" button.
    Replace,
    /// A message no client can know: "Please verify your identity to proceed".
    Unknown,
}

/// How the page names its elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ids {
    /// The ids public scripts use on Upstox (`#mobileNum`, `#getOtp`, `#otpNum`, `#continueBtn`, `#pinCode`,
    /// `#pinContinueBtn`), in this page's own structure.
    Upstox,
    /// After a redesign: other ids, same labels.
    Renamed,
    /// A redesign nothing can recognise: other ids, captions in German, plain text inputs without a length, buttons
    /// reading "Weiter".
    Foreign,
}

#[derive(Debug, Clone)]
pub struct StandInUser {
    pub mobile: String,
    pub pin: String,
    /// Base32.
    pub totp_secret: String,
    pub errors: ErrorStyle,
}

#[derive(Debug, Clone)]
pub struct StandInClient {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
}

/// What the stand-in saw.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub dialog_hits: u32,
    /// `METHOD /path` of every request to `/app/api/…` (keystroke beacons included).
    pub api_requests: Vec<String>,
    pub keystrokes: u32,
    /// PIN submissions per mobile number.
    pub pins: HashMap<String, u32>,
    pub codes_issued: Vec<String>,
    pub token_posts: u32,
    /// Access tokens handed out (the profile accepts only these).
    pub tokens_issued: Vec<String>,
}

impl Record {
    /// Requests that submitted something (every POST but keystroke beacons).
    pub fn submissions(&self) -> Vec<&String> {
        self.api_requests.iter().filter(|r| r.starts_with("POST") && !r.ends_with("/key")).collect()
    }
}

struct Session {
    client: usize,
    state: Option<String>,
    user: Option<usize>,
    step: &'static str,
}

struct Inner {
    clients: Vec<StandInClient>,
    users: Vec<StandInUser>,
    ids: Ids,
    bot_block: bool,
    sessions: HashMap<String, Session>,
    used_totp: Vec<(usize, u64)>,
    record: Record,
}

type Shared = Arc<Mutex<Inner>>;

pub struct StandIn {
    inner: Shared,
    pub base: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StandIn {
    pub async fn start(clients: Vec<StandInClient>, users: Vec<StandInUser>, ids: Ids) -> StandIn {
        let inner = Arc::new(Mutex::new(Inner {
            clients,
            users,
            ids,
            bot_block: false,
            sessions: HashMap::new(),
            used_totp: Vec::new(),
            record: Record::default(),
        }));
        let app = Router::new()
            .route("/v2/login/authorization/dialog", get(dialog))
            .route("/v2/login/authorization/token", post(token))
            .route("/v2/user/profile", get(profile))
            .route("/app/signin", get(page))
            .route("/app/api/start", get(start))
            .route("/app/api/key", post(key))
            .route("/app/api/mobile", post(mobile))
            .route("/app/api/otp", post(otp))
            .route("/app/api/pin", post(pin))
            .fallback(|| async { (StatusCode::NOT_FOUND, "not found") })
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        StandIn { inner, base, task }
    }

    pub fn authorize_url(&self) -> String {
        format!("{}/v2/login/authorization/dialog", self.base)
    }

    pub fn record(&self) -> Record {
        self.inner.lock().unwrap().record.clone()
    }

    /// Serve a Cloudflare block page instead of the app from now on (or stop doing so).
    pub fn set_bot_block(&self, on: bool) {
        self.inner.lock().unwrap().bot_block = on;
    }
}

/// A random base32 TOTP secret (160 bits) and a mobile number Upstox would accept (`^[6-9]\d{9}$`).
pub fn random_user(errors: ErrorStyle) -> StandInUser {
    use rand::Rng;
    let mut rng = rand::rng();
    let secret: [u8; 20] = rng.random();
    StandInUser {
        mobile: format!("9{:09}", rng.random_range(0..1_000_000_000u64)),
        pin: format!("{:06}", rng.random_range(0..1_000_000u32)),
        totp_secret: totp_rs::Secret::from(secret).to_base32(),
        errors,
    }
}

pub fn random_client() -> StandInClient {
    use rand::Rng;
    let mut rng = rand::rng();
    StandInClient {
        client_id: format!("si-{:016x}", rng.random::<u64>()),
        client_secret: format!("sec{:016x}", rng.random::<u64>()),
        redirect_uri: "http://127.0.0.1:9/upstox/callback".into(),
    }
}

fn api_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"status": "error", "errors": [{"errorCode": code, "message": message, "propertyPath": null, "invalidValue": null}]});
    (status, Json(body)).into_response()
}

async fn dialog(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut inner = s.lock().unwrap();
    inner.record.dialog_hits += 1;
    let client = inner
        .clients
        .iter()
        .position(|c| q.get("client_id") == Some(&c.client_id) && q.get("redirect_uri") == Some(&c.redirect_uri));
    let Some(client) = client.filter(|_| q.get("response_type").map(String::as_str) == Some("code")) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "UDAPI100068",
            "Check your 'client_id' and 'redirect_uri'; one or both are incorrect.",
        );
    };
    let sid = format!("{:032x}", rand::random::<u128>());
    inner.sessions.insert(sid.clone(), Session { client, state: q.get("state").cloned(), user: None, step: "mobile" });
    (StatusCode::FOUND, [(header::LOCATION, format!("/app/signin?sid={sid}"))]).into_response()
}

const BLOCKED: &str = r#"<!DOCTYPE html><html><head><title>Attention Required! | Cloudflare</title></head>
<body><h1>Sorry, you have been blocked</h1><p>You are unable to access upstox.com</p>
<p>This website is using a security service to protect itself from online attacks.</p>
<p>Cloudflare Ray ID: 8f1a2b3c4d5e6f70</p></body></html>"#;

async fn page(State(s): State<Shared>) -> Response {
    let inner = s.lock().unwrap();
    if inner.bot_block {
        return (StatusCode::FORBIDDEN, [(header::SERVER, "cloudflare")], Html(BLOCKED)).into_response();
    }
    let ids = match inner.ids {
        Ids::Upstox => ["mobileNum", "getOtp", "otpNum", "continueBtn", "pinCode", "pinContinueBtn"],
        Ids::Renamed | Ids::Foreign => ["fld-a1", "act-b2", "fld-c3", "act-d4", "fld-e5", "act-f6"],
    };
    let mut html = APP.to_owned();
    if inner.ids == Ids::Foreign {
        for (from, to) in [
            ("Enter mobile number", "Handynummer"),
            ("Enter OTP or TOTP", "Einmalcode"),
            ("Enter 6-digit PIN", "Geheimzahl"),
            ("type=\"tel\"", "type=\"text\""),
            ("type=\"password\"", "type=\"text\""),
            (" maxlength=\"10\"", ""),
            (" maxlength=\"7\"", ""),
            (" maxlength=\"6\"", ""),
            (">Get OTP<", ">Weiter<"),
            (">Continue<", ">Weiter<"),
        ] {
            html = html.replace(from, to);
        }
    }
    for (i, id) in ids.iter().enumerate() {
        html = html.replace(&format!("{{{{id{i}}}}}"), id);
    }
    Html(html).into_response()
}

/// Every API request is recorded before anything else.
fn note(s: &Shared, what: &str) {
    s.lock().unwrap().record.api_requests.push(what.to_owned());
}

#[derive(Deserialize)]
struct Sid {
    sid: String,
}

async fn start(State(s): State<Shared>, Query(q): Query<Sid>) -> Response {
    note(&s, "GET /app/api/start");
    let known = s.lock().unwrap().sessions.contains_key(&q.sid);
    if known {
        Json(json!({"ok": true})).into_response()
    } else {
        refuse("Session expired. Please start again.", "plain")
    }
}

async fn key(State(s): State<Shared>) -> StatusCode {
    note(&s, "POST /app/api/key");
    s.lock().unwrap().record.keystrokes += 1;
    StatusCode::NO_CONTENT
}

fn refuse(message: &str, display: &str) -> Response {
    (StatusCode::OK, Json(json!({"ok": false, "message": message, "display": display}))).into_response()
}

fn style_name(style: ErrorStyle) -> &'static str {
    match style {
        ErrorStyle::Plain | ErrorStyle::Unknown => "plain",
        ErrorStyle::Toast => "toast",
        ErrorStyle::Banner => "banner",
        ErrorStyle::Replace => "replace",
    }
}

#[derive(Deserialize)]
struct Submit {
    sid: String,
    #[serde(default)]
    value: String,
}

async fn mobile(State(s): State<Shared>, Json(body): Json<Submit>) -> Response {
    note(&s, "POST /app/api/mobile");
    let mut inner = s.lock().unwrap();
    let user = inner.users.iter().position(|u| u.mobile == body.value);
    let Some(session) = inner.sessions.get_mut(&body.sid) else { return refuse("Session expired [1017079]", "toast") };
    let Some(user) = user else { return refuse("Mobile number is not registered", "plain") };
    session.user = Some(user);
    session.step = "otp";
    Json(json!({"ok": true, "notice": "OTP sent to your registered mobile number"})).into_response()
}

async fn otp(State(s): State<Shared>, Json(body): Json<Submit>) -> Response {
    note(&s, "POST /app/api/otp");
    let mut inner = s.lock().unwrap();
    let Some(session) = inner.sessions.get(&body.sid) else { return refuse("Session expired [1017084]", "toast") };
    let (Some(user), "otp") = (session.user, session.step) else { return refuse("Please start again", "plain") };
    let secret = totp_rs::Secret::try_from_base32(&inner.users[user].totp_secret).unwrap();
    let totp = totp_rs::Builder::new().with_secret(secret).build_noncompliant();
    let now = chrono::Utc::now().timestamp() as u64;
    let digits: String = body.value.chars().filter(char::is_ascii_digit).collect();
    let step = [now - 30, now, now + 30].into_iter().find(|t| totp.generate(*t).to_string() == digits).map(|t| t / 30);
    let style = style_name(inner.users[user].errors);
    match step {
        Some(step) if !inner.used_totp.contains(&(user, step)) => {
            inner.used_totp.push((user, step));
            if let Some(session) = inner.sessions.get_mut(&body.sid) {
                session.step = "pin";
            }
            Json(json!({"ok": true})).into_response()
        }
        _ => refuse("Invalid OTP", style),
    }
}

async fn pin(State(s): State<Shared>, Json(body): Json<Submit>) -> Response {
    note(&s, "POST /app/api/pin");
    let mut inner = s.lock().unwrap();
    let Some(session) = inner.sessions.get(&body.sid) else { return refuse("Session expired [1017007]", "toast") };
    let (Some(user), "pin") = (session.user, session.step) else { return refuse("Please start again", "plain") };
    let mobile = inner.users[user].mobile.clone();
    *inner.record.pins.entry(mobile).or_default() += 1;
    let u = inner.users[user].clone();
    if body.value != u.pin {
        let message = match u.errors {
            ErrorStyle::Toast => "You have entered an incorrect PIN [1017106]",
            ErrorStyle::Plain => "You have entered an incorrect PIN",
            ErrorStyle::Banner => "Incorrect PIN entered. Attempts left: 4",
            ErrorStyle::Replace => "The PIN you entered is wrong",
            ErrorStyle::Unknown => "Please verify your identity to proceed",
        };
        return refuse(message, style_name(u.errors));
    }
    let session = inner.sessions.remove(&body.sid).expect("checked above");
    let code = format!("{:012x}", rand::random::<u64>());
    inner.record.codes_issued.push(code.clone());
    let client = &inner.clients[session.client];
    let mut target = format!("{}?code={code}", client.redirect_uri);
    if let Some(state) = session.state {
        target.push_str(&format!(
            "&state={}",
            url::form_urlencoded::byte_serialize(state.as_bytes()).collect::<String>()
        ));
    }
    Json(json!({"ok": true, "go": target})).into_response()
}

async fn token(State(s): State<Shared>, Form(form): Form<HashMap<String, String>>) -> Response {
    let mut inner = s.lock().unwrap();
    inner.record.token_posts += 1;
    let code = form.get("code").cloned().unwrap_or_default();
    let Some(i) = inner.record.codes_issued.iter().position(|c| *c == code) else {
        return api_error(StatusCode::BAD_REQUEST, "UDAPI100057", "Invalid Auth code");
    };
    inner.record.codes_issued[i] = String::new();
    let ok = inner.clients.iter().any(|c| {
        form.get("client_id") == Some(&c.client_id)
            && form.get("client_secret") == Some(&c.client_secret)
            && form.get("redirect_uri") == Some(&c.redirect_uri)
    });
    if !ok {
        return api_error(StatusCode::UNAUTHORIZED, "UDAPI100069", "Check your 'client_id' and 'client_secret'");
    }
    let access_token = format!("eyJstandin{:024x}", rand::random::<u128>());
    inner.record.tokens_issued.push(access_token.clone());
    Json(json!({
        "email": "stand.in@example.com", "exchanges": ["NSE"], "products": ["D"], "broker": "UPSTOX",
        "user_id": "SI0001", "user_name": "Stand In", "order_types": ["MARKET"], "user_type": "individual",
        "poa": false, "is_active": true,
        "access_token": access_token,
        "extended_token": format!("eyJstandinext{:024x}", rand::random::<u128>()),
    }))
    .into_response()
}

/// `GET /v2/user/profile`: the profile for a token this stand-in issued, `UDAPI100050` for any other.
async fn profile(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let bearer =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let known = bearer.is_some_and(|t| s.lock().unwrap().record.tokens_issued.iter().any(|i| i == t));
    if !known {
        return api_error(StatusCode::UNAUTHORIZED, "UDAPI100050", "Invalid token used to access API");
    }
    Json(json!({"status": "success", "data": {
        "email": "stand.in@example.com", "exchanges": ["NSE"], "products": ["D"], "broker": "UPSTOX",
        "user_id": "SI0001", "user_name": "Stand In", "order_types": ["MARKET"], "user_type": "individual",
        "poa": false, "ddpi": false, "is_active": true,
    }}))
    .into_response()
}

/// The app: every step in one document, shown one at a time.
const APP: &str = r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Login | Upstox</title>
<style>
 body { font-family: sans-serif; margin: 0; }
 #banner { background: #fee; padding: 8px; }
 .snack { position: fixed; bottom: 16px; left: 16px; background: #333; color: #fff; padding: 10px; }
 main { max-width: 360px; margin: 40px auto; }
 .cap { display: block; font-size: 13px; color: #555; }
 .note { color: #b00; font-size: 13px; }
</style></head>
<body>
<div id="banner" hidden></div>
<main>
  <div class="logo">UPSTOX</div>
  <section data-s="mobile">
    <div class="fld"><span class="cap" id="cap-m">Enter mobile number</span>
      <input id="{{id0}}" aria-labelledby="cap-m" type="tel" inputmode="numeric" maxlength="10" autocomplete="off"></div>
    <p class="note"></p>
    <div class="row"><button type="button" id="{{id1}}" disabled>Get OTP</button></div>
  </section>
  <section data-s="otp" hidden>
    <div class="fld"><span class="cap" id="cap-o">Enter OTP or TOTP</span>
      <input id="{{id2}}" aria-labelledby="cap-o" type="text" inputmode="numeric" maxlength="7" autocomplete="off"></div>
    <p class="note"></p>
    <div class="row"><button type="button" id="{{id3}}" disabled>Continue</button></div>
  </section>
  <section data-s="pin" hidden>
    <div class="fld"><span class="cap" id="cap-p">Enter 6-digit PIN</span>
      <input id="{{id4}}" aria-labelledby="cap-p" type="password" inputmode="numeric" maxlength="6" autocomplete="off"></div>
    <p class="note"></p>
    <div class="row"><button type="button" id="{{id5}}" disabled>Continue</button></div>
  </section>
</main>
<script>
(function () {
  var sid = new URLSearchParams(location.search).get("sid") || "";
  document.addEventListener("keydown", function () { navigator.sendBeacon("/app/api/key", ""); }, true);
  function post(path, value) {
    return fetch("/app/api/" + path, { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sid: sid, value: value }) }).then(function (r) { return r.json(); });
  }
  var rules = { mobile: /^[6-9][0-9]{9}$/, otp: /^[0-9]{3}-[0-9]{3}$/, pin: /^[0-9]{6}$/ };
  function section(name) { return document.querySelector('section[data-s="' + name + '"]'); }
  function show(name) {
    ["mobile", "otp", "pin"].forEach(function (n) { section(n).hidden = n !== name; });
    var input = section(name).querySelector("input");
    if (input) { input.focus(); }
  }
  function say(name, text, display) {
    if (display === "toast") {
      var t = document.createElement("div");
      t.className = "snack";
      t.textContent = text;
      document.body.appendChild(t);
      setTimeout(function () { t.remove(); }, 6000);
    } else if (display === "banner") {
      var b = document.getElementById("banner");
      b.textContent = text;
      b.hidden = false;
    } else if (display === "replace") {
      var s = section(name);
      s.innerHTML = "";
      var p = document.createElement("div");
      p.className = "gone";
      p.textContent = text;
      var back = document.createElement("button");
      back.type = "button";
      back.textContent = "Back";
      back.onclick = function () { location.reload(); };
      s.appendChild(p);
      s.appendChild(back);
    } else {
      section(name).querySelector(".note").textContent = text;
    }
  }
  function wire(name, next) {
    var s = section(name), input = s.querySelector("input"), button = s.querySelector("button");
    input.addEventListener("input", function () {
      if (name === "otp") {
        var d = input.value.replace(/[^0-9]/g, "").slice(0, 6);
        input.value = d.length > 3 ? d.slice(0, 3) + "-" + d.slice(3) : d;
      }
      button.disabled = !rules[name].test(input.value);
    });
    button.addEventListener("click", function () {
      button.disabled = true;
      s.querySelector(".note").textContent = "";
      document.getElementById("banner").hidden = true;
      post(name, input.value.replace(/-/g, "")).then(function (r) {
        if (!r.ok) {
          if (name !== "mobile") { input.value = ""; }
          say(name, r.message, r.display);
          return;
        }
        if (r.go) { location.assign(r.go); return; }
        if (r.notice) { say(name, r.notice, "toast"); }
        show(next);
      });
    });
  }
  wire("mobile", "otp");
  wire("otp", "pin");
  wire("pin", null);
  fetch("/app/api/start?sid=" + encodeURIComponent(sid)).then(function (r) { return r.json(); }).then(function (r) {
    if (!r.ok) { say("mobile", r.message, r.display); }
  });
})();
</script>
</body></html>
"#;
