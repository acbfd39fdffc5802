//! The status page in a real headless Chromium (fantoccini + chromedriver, started by the library's own
//! `Browser`): the daemon logs in once against the simulator, then the page is loaded at a phone's width and its
//! rendered DOM is checked (account, ticking countdown, attempt rows with step timings, screenshot link); a
//! screenshot of it is saved. Also: the page never holds a token, failure screenshots are served only from
//! `{state_dir}/failures/`, and `server.auth_token_file` guards every endpoint but `/healthz`.

mod support;

use std::time::Duration;

use base64::Engine;
use fantoccini::Locator;
use support::daemon::Daemon;
use support::{Rig, find_secrets, http_get, wait_for};
use upstox_relogin::login::browser::Browser;

/// A real 1×1 PNG, standing in for a failure screenshot of an earlier day.
const PNG_1X1: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=";
const SHOT: &str = "20261128T030041.000Z-primary-pin.png";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_in_a_real_browser_without_a_token() {
    let rig = Rig::start().await;
    let failures = rig.state_dir().join("failures");
    std::fs::create_dir_all(&failures).unwrap();
    let png = base64::engine::general_purpose::STANDARD.decode(PNG_1X1).unwrap();
    std::fs::write(failures.join(SHOT), &png).unwrap();
    // A newer "screenshot" that is a symlink out of the directory: never linked, never served.
    let planted = "20261129T030041.000Z-primary-otp.png";
    std::os::unix::fs::symlink(rig.path("config.toml"), failures.join(planted)).unwrap();

    let schedule = "[schedule]\ncron = \"0 30 8 * * Mon-Fri\"\non_start = \"if-stale\"\n";
    let d = Daemon::start(&rig, "", "", schedule, &[]).await;
    // Strict: plain /readyz is 200 before the login at hours when no run is due.
    let ready = d.url("/readyz?strict=1");
    wait_for("the start-up login (/readyz 200)", Duration::from_secs(90), || {
        let ready = ready.clone();
        async move { http_get(&ready).await.filter(|(s, _)| *s == 200) }
    })
    .await;
    let token = rig.read_token();
    let user = rig.sim.config().users[0].clone();
    let secrets = [
        ("access token", token["access_token"].as_str().unwrap().to_owned()),
        ("extended token", token["extended_token"].as_str().unwrap_or_default().to_owned()),
        ("mobile", user.mobile.clone()),
        ("PIN", user.pin.clone()),
        ("TOTP secret", user.totp_secret.clone()),
        ("client secret", rig.sim.config().clients[0].client_secret.clone()),
    ];

    // Without JavaScript: the raw HTML already carries the state and the countdown.
    let (status, raw) = http_get(&d.url("/")).await.unwrap();
    assert_eq!(status, 200);
    assert!(raw.contains("id=\"account-primary\"") && raw.contains("s left</span>"), "{raw}");
    let (_, leaks) = find_secrets(&raw, &secrets);
    assert!(leaks.is_empty(), "secrets in the page:\n{}", leaks.join("\n"));

    let config = upstox_relogin::config::load(&rig.path("config.toml")).unwrap();
    let browser = Browser::start(&config.browser, None).await.expect("a headless Chromium");
    let c = browser.client();
    c.set_window_size(390, 844).await.unwrap();
    c.goto(&d.url("/")).await.unwrap();
    let section = c.wait().for_element(Locator::Css("#account-primary")).await.unwrap();
    let text = |css: &'static str| async move { c.find(Locator::Css(css)).await.unwrap().text().await.unwrap() };
    assert_eq!(text("#account-primary .name").await, "primary");
    assert_eq!(text("#account-primary .badge").await, "token valid");
    assert!(section.text().await.unwrap().contains("generation 1"));

    let first = text("#account-primary .countdown").await;
    assert!(is_countdown(&first), "countdown text: {first:?}");
    let ticked = wait_for("the countdown to tick", Duration::from_secs(5), || async {
        let now = text("#account-primary .countdown").await;
        (now != first).then_some(now)
    })
    .await;
    assert!(is_countdown(&ticked), "{ticked:?}");

    let attempts = c.find_all(Locator::Css("#account-primary li.attempt")).await.unwrap();
    assert_eq!(attempts.len(), 1, "one attempt so far");
    assert_eq!(attempts[0].attr("class").await.unwrap().as_deref(), Some("attempt success"));
    let steps: Vec<String> = {
        let mut out = Vec::new();
        for s in attempts[0].find_all(Locator::Css(".step")).await.unwrap() {
            out.push(s.attr("data-step").await.unwrap().unwrap());
        }
        out
    };
    assert_eq!(steps, ["browser", "dialog", "mobile", "otp", "pin", "exchange", "publish"], "per-step timings");
    assert!(attempts[0].text().await.unwrap().contains("pin "), "timings shown");
    assert!(text("#next-run").await.contains("Next scheduled run: "), "next run shown");
    let sinks = c.find_all(Locator::Css("#account-primary li.sink.ok")).await.unwrap();
    assert_eq!(sinks.len(), 1, "the file sink holds the token");

    let link = c.find(Locator::Css("#account-primary a.failure")).await.unwrap();
    let href = link.prop("href").await.unwrap().unwrap();
    assert_eq!(href, d.url(&format!("/failures/{SHOT}")), "the newest real screenshot, not the planted link");
    let fetched = reqwest::get(&href).await.unwrap();
    assert_eq!(fetched.headers()["content-type"], "image/png");
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), png.as_slice());

    // Readable on a phone: nothing wider than the screen.
    let overflow = c.execute("return document.documentElement.scrollWidth - window.innerWidth;", vec![]).await.unwrap();
    assert!(overflow.as_i64().unwrap() <= 0, "horizontal overflow of {overflow} px at 390 px wide");

    let source = c.source().await.unwrap();
    let (_, leaks) = find_secrets(&source, &secrets);
    assert!(leaks.is_empty(), "secrets in the rendered DOM:\n{}", leaks.join("\n"));
    let shot = c.screenshot().await.unwrap();
    assert!(shot.starts_with(b"\x89PNG\r\n\x1a\n"));
    std::fs::write(rig.path("status-page.png"), &shot).unwrap();
    let kept = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    std::fs::write(&kept, &shot).unwrap();
    eprintln!("status page screenshot ({} bytes): {}", shot.len(), kept.display());
    browser.close().await;

    // Only screenshot names, only files that exist there, never through a symlink or a path.
    for path in [
        format!("/failures/{planted}"),
        "/failures/..%2Fconfig.toml".into(),
        "/failures/..%2F..%2Fconfig.toml".into(),
        format!("/failures/{}", SHOT.replace(".png", ".html")),
        "/failures/20261128T030041.000Z-primary-mobile.png".into(),
    ] {
        let (status, body) = http_get(&d.url(&path)).await.unwrap();
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (status, body) = http_get(&d.url("/status")).await.unwrap();
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["accounts"][0]["failure_screenshot"], SHOT);
    assert_eq!(json["accounts"][0]["recent_attempts"][0]["steps"][0]["step"], "browser");

    let (code, _, log) = d.stop_with(libc::SIGTERM).await;
    assert_eq!(code, 0, "{log}");
    rig.assert_no_browser_left();
}

/// `5h 12m 03s left`.
fn is_countdown(text: &str) -> bool {
    let Some(rest) = text.strip_suffix("s left") else { return false };
    let parts: Vec<&str> = rest.split(['h', 'm']).map(str::trim).collect();
    parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_token_guards_every_endpoint_but_healthz() {
    let rig = Rig::start().await;
    let secret = "s3cr3t-status-token-0123456789";
    std::fs::write(rig.path("auth_token"), format!("{secret}\n")).unwrap();
    // A secret file every user can read is refused.
    std::fs::set_permissions(rig.path("auth_token"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let server = format!("auth_token_file = \"{}\"\n", rig.path("auth_token").display());
    let d = Daemon::start(&rig, "", &server, "[schedule]\non_start = \"never\"\n", &[]).await;
    let client = reqwest::Client::new();
    let get = |path: &str, auth: Option<String>| {
        let mut request = client.get(d.url(path));
        if let Some(value) = auth {
            request = request.header("authorization", value);
        }
        async move { request.send().await.unwrap() }
    };

    assert_eq!(get("/healthz", None).await.status(), 200, "liveness probes need no token");
    for path in ["/", "/status", "/readyz", "/metrics", &format!("/failures/{SHOT}")] {
        let denied = get(path, None).await;
        assert_eq!(denied.status(), 401, "{path}");
        let challenges: Vec<_> =
            denied.headers().get_all("www-authenticate").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
        assert!(challenges.iter().any(|c| c.starts_with("Basic")), "a browser can ask for it: {challenges:?}");
        assert_eq!(get(path, Some("Bearer wrong-token-0123456789".into())).await.status(), 401, "{path}");
    }
    let page = get("/", Some(format!("Bearer {secret}"))).await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("id=\"account-primary\""));
    assert_eq!(get("/status", Some(format!("Bearer {secret}"))).await.status(), 200);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("ops:{secret}"));
    assert_eq!(get("/metrics", Some(format!("Basic {basic}"))).await.status(), 200, "Basic with the token as password");

    let (code, _, log) = d.stop_with(libc::SIGTERM).await;
    assert_eq!(code, 0, "{log}");
    assert!(!log.contains(secret), "the token is never logged");
}
