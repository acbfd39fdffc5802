//! `GET /`: the status page, server-rendered HTML (maud: markup checked at compile time, every value escaped) that
//! reads on a phone. Per account: the token's state with a countdown to its expiry, the sinks, the recent attempts
//! with their result class and step timings, the newest failure screenshot; above them the next scheduled run.
//!
//! It renders completely without JavaScript (the countdown is computed on the server, and the page reloads itself
//! every minute); a tiny inline script only makes the countdown tick. Built from `status::StatusReport` alone,
//! which has no field that could hold a token or a secret.

use chrono::{DateTime, FixedOffset, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::state::{Attempt, AttemptResult};
use crate::status::{AccountStatus, StatusReport};

/// How often the page reloads itself, in seconds.
const REFRESH_SECS: u32 = 60;

const STYLE: &str = "
:root{color-scheme:light dark;--ok:#1a7f37;--bad:#c62828;--muted:#6b7280}
*{box-sizing:border-box}
body{font:16px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;padding:12px;max-width:760px}
h1{font-size:1.3rem;margin:.2rem 0}h2{font-size:1.15rem;margin:0 0 .4rem}h3{font-size:.95rem;margin:.8rem 0 .3rem}
header p,footer{color:var(--muted);font-size:.9rem}
section.account{border:1px solid #8884;border-radius:10px;padding:12px;margin:12px 0}
.badge{font-size:.8rem;padding:1px 8px;border-radius:999px;color:#fff;vertical-align:middle}
.badge.ok{background:var(--ok)}.badge.bad{background:var(--bad)}
.countdown{font-weight:600;font-variant-numeric:tabular-nums}
ul,ol{padding-left:0;list-style:none;margin:0}
li{padding:6px 0;border-top:1px solid #8882;overflow-wrap:anywhere}
.result{font-weight:600}
.success .result,.sink.ok .state{color:var(--ok)}.failed .result,.sink.bad .state{color:var(--bad)}
.steps,.error,.muted{color:var(--muted);font-size:.85rem}
a{color:inherit}
";

/// Make every `.countdown[data-expires]` tick; the server already wrote the same text.
const SCRIPT: &str = "(function(){\
function f(s){if(s<=0)return'expired';var h=Math.floor(s/3600),m=Math.floor(s%3600/60),x=s%60;\
return h+'h '+m+'m '+(x<10?'0':'')+x+'s left';}\
function t(){var n=Date.now()/1000;document.querySelectorAll('.countdown[data-expires]')\
.forEach(function(e){e.textContent=f(Math.floor(e.dataset.expires-n));});}\
t();setInterval(t,1000);})();";

/// The page for `report`, as of `now`.
pub fn render(report: &StatusReport, now: DateTime<Utc>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta http-equiv="refresh" content=(REFRESH_SECS);
                title { "upstox-relogin" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    h1 { "upstox-relogin" }
                    p #next-run {
                        "Next scheduled run: "
                        @match report.next_run.as_deref() {
                            Some(at) => time datetime=(at) { (when(at)) },
                            None => "none",
                        }
                        " · cron " code { (report.schedule) } " (" (report.timezone) ")"
                    }
                    @let c = &report.coordination;
                    @if !c.reachable {
                        p #coordination.badge.bad {
                            "Coordination (" (c.kind) ", " code { (c.store) } ") does not answer: no login can start. "
                            (c.error.as_deref().unwrap_or(""))
                        }
                    } @else if c.kind != "local" {
                        p #coordination.muted { "Coordination: " (c.kind) " at " code { (c.store) } " (answers)" }
                    }
                }
                main {
                    @for account in &report.accounts {
                        (account_section(account, now))
                    }
                }
                footer {
                    p {
                        "As of " (when(&now.with_timezone(&ist()).to_rfc3339())) "; reloads every minute. "
                        a href="status" { "JSON" } " · " a href="metrics" { "metrics" }
                    }
                }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    }
}

fn account_section(a: &AccountStatus, now: DateTime<Utc>) -> Markup {
    let expires = a.expires_at.as_deref().and_then(|t| DateTime::parse_from_rfc3339(t).ok());
    let valid = expires.is_some_and(|e| e > now);
    html! {
        section.account id={ "account-" (a.name) } {
            h2 {
                span.name { (a.name) } " "
                @if valid { span.badge.ok { "token valid" } } @else { span.badge.bad { "no valid token" } }
            }
            @if let (Some(expires), true) = (expires, valid) {
                p.token {
                    "Expires " time datetime=(expires.to_rfc3339()) { (when(&expires.to_rfc3339())) } " — "
                    span.countdown data-expires=(expires.timestamp()) {
                        (countdown(expires.timestamp() - now.timestamp()))
                    }
                    @if let Some(g) = a.generation { span.muted { " · generation " (g) } }
                    @if !a.valid_in_every_sink { " · " strong { "missing from some sinks" } }
                }
            } @else {
                p.token {
                    "No sink holds an unexpired token."
                    @if a.due_since.is_none() { " Not due yet: no scheduled run since the 03:30 IST expiry." }
                }
            }
            p.muted {
                "Last success: " (a.last_success_at.as_deref().map(when).unwrap_or_else(|| "never".into()))
                @if a.pin_rejected_today {
                    " · a PIN was rejected today: none is tried again today (`reset-guard` clears)"
                }
                @if a.pin_submissions_today > 0 {
                    " · PIN submissions without a code today: " (a.pin_submissions_today)
                }
                @if a.pins_without_code_in_a_row > 0 {
                    " · in a row: " (a.pins_without_code_in_a_row) " (none is tried at 4)"
                }
            }
            @if let Some(f) = &a.last_locator_fallback {
                p.fallback {
                    strong { "Selector out of date: " }
                    "the " (f.element) " of step " code { (f.step) } " was found only by " (f.matched) " ("
                    code { (f.configured) } " matched nothing, " (when(&f.at.to_rfc3339())) "): update "
                    code { "browser.selectors" }
                }
            }
            @if let Some(p) = &a.last_probe {
                p.muted { "Last probe " (when(&p.at.to_rfc3339())) ": " (p.summary) }
            }
            @if let Some(error) = &a.state_error {
                p.token { strong { "State cannot be read: " } (error) }
            }
            h3 { "Sinks" }
            ul.sinks {
                @for s in &a.sinks {
                    li class={ "sink " (if s.valid { "ok" } else { "bad" }) } {
                        code { (s.sink) } br;
                        span.state {
                            @match (&s.expires_at, s.generation, &s.error) {
                                (_, _, Some(error)) => { "cannot be read: " (error) }
                                (Some(exp), Some(g), None) => {
                                    "generation " (g) ", "
                                    (if s.valid { "valid until " } else { "expired " }) (when(exp))
                                }
                                _ => "holds nothing",
                            }
                        }
                    }
                }
            }
            h3 { "Recent attempts" }
            @if a.recent_attempts.is_empty() {
                p.muted { "None recorded yet." }
            } @else {
                ol.attempts {
                    @for attempt in &a.recent_attempts { (attempt_item(attempt)) }
                }
            }
            @if let Some(file) = &a.failure_screenshot {
                p {
                    a.failure href={ "failures/" (file) } { "Newest failure screenshot" }
                    span.muted { " (" (file) ")" }
                }
            }
        }
    }
}

fn attempt_item(a: &Attempt) -> Markup {
    let result = a.result.as_str();
    html! {
        li class={ "attempt " (result) } {
            time datetime=(a.at.to_rfc3339()) { (when(&a.at.to_rfc3339())) } " · "
            span.result { (result) }
            @if let Some(class) = a.class { " " span.class { "(" (class) ")" } }
            @if let Some(ms) = a.duration_ms { " · " (seconds(ms)) }
            @if !a.steps.is_empty() {
                div.steps {
                    @for (i, s) in a.steps.iter().enumerate() {
                        @if i > 0 { " · " }
                        span.step data-step=(s.step) { (s.step) " " (seconds(s.ms)) }
                    }
                }
            }
            @if let (AttemptResult::Failed, Some(error)) = (a.result, &a.error) { div.error { (error) } }
        }
    }
}

fn ist() -> FixedOffset {
    // invariant: 5.5 h is a valid offset
    FixedOffset::east_opt(5 * 3600 + 1800).expect("IST offset")
}

/// `Mon 30 Nov 03:30 +05:30` from an RFC 3339 time (shown as given when it does not parse).
fn when(rfc3339: &str) -> String {
    DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.format("%a %d %b %H:%M %:z").to_string())
        .unwrap_or_else(|_| rfc3339.into())
}

/// `0.81 s`.
fn seconds(ms: u64) -> String {
    format!("{:.2} s", ms as f64 / 1000.0)
}

/// `5h 12m 03s left`, as the script writes it.
fn countdown(secs: i64) -> String {
    if secs <= 0 {
        return "expired".into();
    }
    format!("{}h {}m {:02}s left", secs / 3600, secs % 3600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{FailureClass, StepTime};
    use crate::status::SinkStatus;

    fn report() -> StatusReport {
        let at = DateTime::parse_from_rfc3339("2026-11-28T08:30:41+05:30").unwrap();
        let failed = Attempt {
            class: Some(FailureClass::WrongPin),
            duration_ms: Some(4100),
            steps: vec![StepTime { step: "browser".into(), ms: 810 }, StepTime { step: "pin".into(), ms: 1200 }],
            ..Attempt::new(at, AttemptResult::Failed, Some("step `pin`: <script>alert(1)</script>".into()))
        };
        StatusReport {
            schedule: "0 30 8 * * Mon-Fri".into(),
            timezone: "Asia/Kolkata".into(),
            next_run: Some("2026-11-30T08:30:00+05:30".into()),
            accounts: vec![AccountStatus {
                name: "primary".into(),
                token_present: true,
                valid_in_every_sink: true,
                expires_at: Some("2026-11-29T03:30:00+05:30".into()),
                generation: Some(7),
                sinks: vec![SinkStatus {
                    sink: "file:/var/lib/{account}.json".into(),
                    generation: Some(7),
                    expires_at: Some("2026-11-29T03:30:00+05:30".into()),
                    valid: true,
                    error: None,
                }],
                last_attempt: Some(failed.clone()),
                last_success_at: None,
                pin_submissions_today: 1,
                pin_rejected_today: false,
                recent_attempts: vec![failed],
                failure_screenshot: Some("20261128T030041.000Z-primary-pin.png".into()),
                due_since: Some("2026-11-28T08:30:00+05:30".into()),
                ready: true,
                state_error: None,
                lease_holder: None,
                pins_without_code_in_a_row: 2,
                last_locator_fallback: Some(crate::state::LocatorFallback {
                    at,
                    step: "pin".into(),
                    element: "input".into(),
                    configured: "#pinCode".into(),
                    matched: "label \"Enter 6-digit PIN\"".into(),
                }),
                last_probe: Some(crate::state::ProbeRecord { at, ready: true, summary: "ready: <b>".into() }),
            }],
            closed_today: None,
            probe_cron: None,
            next_probe: None,
            coordination: crate::status::CoordinationStatus {
                kind: "local",
                store: "/var/lib/upstox-relogin/accounts".into(),
                reachable: true,
                error: None,
            },
        }
    }

    #[test]
    fn page_shows_countdown_attempts_and_screenshot_and_escapes_text() {
        let now = DateTime::parse_from_rfc3339("2026-11-28T22:00:00+05:30").unwrap().with_timezone(&Utc);
        let page = render(&report(), now).into_string();
        assert!(page.contains("name=\"viewport\""), "phone-readable");
        assert!(page.contains("5h 30m 00s left"), "server-side countdown: {page}");
        assert!(page.contains("Mon 30 Nov 08:30 +05:30"), "next run");
        assert!(page.contains("id=\"account-primary\""));
        assert!(page.contains("(wrong_pin)") && page.contains("4.10 s") && page.contains("pin 1.20 s"));
        assert!(page.contains("href=\"failures/20261128T030041.000Z-primary-pin.png\""));
        assert!(!page.contains("<script>alert"), "error text is escaped");
        assert!(page.contains("&lt;script&gt;alert(1)"));
        assert!(page.contains("Selector out of date") && page.contains("#pinCode"), "the fallback use is shown");
        assert!(page.contains("in a row: 2") && page.contains("Last probe") && page.contains("ready: &lt;b&gt;"));
        assert!(!page.contains("id=\"coordination\""), "one host, answering: nothing to say");
        let later = DateTime::parse_from_rfc3339("2026-11-29T04:00:00+05:30").unwrap().with_timezone(&Utc);
        assert!(render(&report(), later).into_string().contains("no valid token"));
        let mut down = report();
        down.coordination = crate::status::CoordinationStatus {
            kind: "redis",
            store: "redis://r:6379/0".into(),
            reachable: false,
            error: Some("connection refused".into()),
        };
        let page = render(&down, now).into_string();
        assert!(page.contains("does not answer: no login can start") && page.contains("connection refused"), "{page}");
    }

    #[test]
    fn countdown_matches_the_script() {
        assert_eq!(countdown(3 * 3600 + 5 * 60 + 7), "3h 5m 07s left");
        assert_eq!(countdown(0), "expired");
    }
}
