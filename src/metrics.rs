//! Prometheus metrics (prometheus-client, an explicit registry passed around; no global recorder).
//!
//! Names are part of the public contract; all carry the `upstox_relogin_` prefix. This module only counts; it
//! never decides anything. Two expositions of the same registry: OpenMetrics (`render`, the default) and the
//! Prometheus text format 0.0.4 (`render_prometheus_text`, for `Accept: text/plain;version=0.0.4`), both accepted
//! by `promtool check metrics`; `negotiate` picks one from an `Accept` header.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Registry,
    login_attempts: Family<Labels, Counter>,
    last_success: Family<Labels, Gauge<f64, AtomicU64>>,
    token_expiry: Family<Labels, Gauge<f64, AtomicU64>>,
    login_duration: Family<Labels, Histogram>,
    sink_write_failures: Family<Labels, Counter>,
    lockout_guard_refusals: Family<Labels, Counter>,
    notifier_posts: Family<Labels, Counter>,
    token_generation: Family<Labels, Gauge>,
    pin_submissions: Family<Labels, Gauge>,
    skip_check_duration: Histogram,
    coordination_up: Gauge,
    lease_waits: Family<Labels, Counter>,
    fenced_writes: Family<Labels, Counter>,
    locator_fallbacks: Family<Labels, Counter>,
    probe_ready: Family<Labels, Gauge>,
    probe_timestamp: Family<Labels, Gauge<f64, AtomicU64>>,
}

fn duration_histogram() -> Histogram {
    Histogram::new([0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0])
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("upstox_relogin");
        let login_attempts = Family::<Labels, Counter>::default();
        let last_success = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        let token_expiry = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        let login_duration = Family::<Labels, Histogram>::new_with_constructor(duration_histogram as fn() -> Histogram);
        let sink_write_failures = Family::<Labels, Counter>::default();
        let lockout_guard_refusals = Family::<Labels, Counter>::default();
        let notifier_posts = Family::<Labels, Counter>::default();
        registry.register(
            "login_attempts",
            "Runs per account by result: success (logged in), skipped (valid everywhere), \
             republished (a valid token copied to sinks that lacked it), failed",
            login_attempts.clone(),
        );
        let locator_fallbacks = Family::<Labels, Counter>::default();
        let probe_ready = Family::<Labels, Gauge>::default();
        let probe_timestamp = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "last_success_timestamp_seconds",
            "Unix time of the last successful login",
            last_success.clone(),
        );
        registry.register(
            "token_expiry_timestamp_seconds",
            "Unix time at which the published token expires",
            token_expiry.clone(),
        );
        registry.register(
            "login_duration_seconds",
            "Duration of login steps, by step; step=total is a whole run that logged in or failed",
            login_duration.clone(),
        );
        registry.register("sink_write_failures", "Failed writes per sink", sink_write_failures.clone());
        registry.register(
            "lockout_guard_refusals",
            "Logins refused by the PIN lockout guard",
            lockout_guard_refusals.clone(),
        );
        registry.register(
            "notifier_posts",
            "POSTs to the notifier webhook by HTTP status answered (200: a verified token was delivered)",
            notifier_posts.clone(),
        );
        let token_generation = Family::<Labels, Gauge>::default();
        registry.register(
            "token_generation",
            "Generation of the newest token document the sinks hold (valid or not)",
            token_generation.clone(),
        );
        let pin_submissions = Family::<Labels, Gauge>::default();
        registry.register(
            "pin_submissions_without_code",
            "PIN submissions today (IST) that did not end with a code, as the lockout guard counts them",
            pin_submissions.clone(),
        );
        let skip_check_duration = duration_histogram();
        registry.register(
            "skip_check_duration_seconds",
            "Duration of runs that kept a still-valid token (checked with Upstox, copied to sinks that lacked it)",
            skip_check_duration.clone(),
        );
        let coordination_up = Gauge::default();
        let lease_waits = Family::<Labels, Counter>::default();
        let fenced_writes = Family::<Labels, Counter>::default();
        registry.register(
            "coordination_up",
            "1 when the coordinator (coordination.type) answered its last request, 0 when it did not (then no login starts)",
            coordination_up.clone(),
        );
        registry.register(
            "lease_waits",
            "Runs that found another replica holding the account's lease and waited for it",
            lease_waits.clone(),
        );
        registry.register(
            "fenced_writes",
            "Sink writes refused because the sink held a newer generation (a replica that lost its lease)",
            fenced_writes.clone(),
        );
        registry.register(
            "locator_fallbacks",
            "Page elements found only by a fallback locator (the configured selector matched nothing), per step",
            locator_fallbacks.clone(),
        );
        registry.register(
            "probe_ready",
            "1 when the last probe found the login page ready, else 0",
            probe_ready.clone(),
        );
        registry.register(
            "probe_timestamp_seconds",
            "Unix time of the last probe of the account's login page",
            probe_timestamp.clone(),
        );
        Self {
            registry,
            login_attempts,
            last_success,
            token_expiry,
            login_duration,
            sink_write_failures,
            lockout_guard_refusals,
            notifier_posts,
            token_generation,
            pin_submissions,
            skip_check_duration,
            coordination_up,
            lease_waits,
            fenced_writes,
            locator_fallbacks,
            probe_ready,
            probe_timestamp,
        }
    }

    fn l(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    pub fn attempt(&self, account: &str, result: &str) {
        self.login_attempts.get_or_create(&Self::l(&[("account", account), ("result", result)])).inc();
    }

    pub fn success(&self, account: &str, at_unix: f64, expires_unix: f64) {
        self.last_success.get_or_create(&Self::l(&[("account", account)])).set(at_unix);
        self.token_expiry(account, expires_unix);
    }

    pub fn token_expiry(&self, account: &str, expires_unix: f64) {
        self.token_expiry.get_or_create(&Self::l(&[("account", account)])).set(expires_unix);
    }

    /// The newest document the sinks hold for `account`: its expiry (Unix seconds) and generation.
    pub fn token(&self, account: &str, generation: u64, expires_unix: f64) {
        self.token_expiry(account, expires_unix);
        let generation = i64::try_from(generation).unwrap_or(i64::MAX);
        self.token_generation.get_or_create(&Self::l(&[("account", account)])).set(generation);
    }

    /// The last successful login (Unix seconds), e.g. as persisted before a restart.
    pub fn last_success(&self, account: &str, at_unix: f64) {
        self.last_success.get_or_create(&Self::l(&[("account", account)])).set(at_unix);
    }

    /// The lockout guard's count of today's PIN submissions without a code.
    pub fn pin_submissions(&self, account: &str, count: u32) {
        self.pin_submissions.get_or_create(&Self::l(&[("account", account)])).set(i64::from(count));
    }

    /// A run that kept a still-valid token (kept apart from logins: 0.3 s checks would drown 2 s logins).
    pub fn skip_check_duration(&self, secs: f64) {
        self.skip_check_duration.observe(secs);
    }

    pub fn step_duration(&self, step: &str, secs: f64) {
        self.login_duration.get_or_create(&Self::l(&[("step", step)])).observe(secs);
    }

    pub fn sink_failure(&self, sink: &str) {
        self.sink_write_failures.get_or_create(&Self::l(&[("sink", sink)])).inc();
    }

    pub fn guard_refusal(&self, account: &str) {
        self.lockout_guard_refusals.get_or_create(&Self::l(&[("account", account)])).inc();
    }

    pub fn notifier_post(&self, status: u16) {
        self.notifier_posts.get_or_create(&Self::l(&[("status", &status.to_string())])).inc();
    }

    pub fn coordination_up(&self, up: bool) {
        self.coordination_up.set(i64::from(up));
    }

    pub fn lease_wait(&self, account: &str) {
        self.lease_waits.get_or_create(&Self::l(&[("account", account)])).inc();
    }

    pub fn fenced_write(&self, sink: &str) {
        self.fenced_writes.get_or_create(&Self::l(&[("sink", sink)])).inc();
    }

    /// A page element (`input`/`button`) of `step` was found only by a fallback locator.
    pub fn locator_fallback(&self, account: &str, step: &str, element: &str) {
        self.locator_fallbacks
            .get_or_create(&Self::l(&[("account", account), ("step", step), ("element", element)]))
            .inc();
    }

    /// The verdict of a probe of `account`'s login page, at `at_unix`.
    pub fn page_probe(&self, account: &str, ready: bool, at_unix: f64) {
        self.probe_ready.get_or_create(&Self::l(&[("account", account)])).set(i64::from(ready));
        self.probe_timestamp.get_or_create(&Self::l(&[("account", account)])).set(at_unix);
    }

    /// The OpenMetrics text exposition (`application/openmetrics-text; version=1.0.0`).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // invariant: writing to a String cannot fail
        encode(&mut out, &self.registry).expect("encode to String");
        out
    }

    /// The Prometheus text exposition, format 0.0.4 (`text/plain; version=0.0.4`).
    pub fn render_prometheus_text(&self) -> String {
        openmetrics_to_prometheus_text(&self.render())
    }
}

/// An exposition format of `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    PrometheusText,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::PrometheusText => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// The format an `Accept` header asks for: the Prometheus text format when `text/plain` is preferred (by q-value)
/// over OpenMetrics, OpenMetrics otherwise (also without a header, or for `*/*`).
pub fn negotiate(accept: Option<&str>) -> Format {
    let (mut openmetrics, mut text) = (-1.0f32, -1.0f32);
    for range in accept.unwrap_or_default().split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        match media.as_str() {
            "application/openmetrics-text" => openmetrics = openmetrics.max(q),
            "text/plain" => text = text.max(q),
            _ => {}
        }
    }
    if text > 0.0 && text > openmetrics { Format::PrometheusText } else { Format::OpenMetrics }
}

/// OpenMetrics text as the Prometheus text format 0.0.4: a counter family `x` (samples `x_total`) is described as
/// `x_total`, and `# UNIT` and `# EOF` lines go. Only what prometheus-client writes is handled (counters, gauges,
/// histograms, no exemplars).
fn openmetrics_to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let described = ["# HELP ", "# TYPE "].into_iter().find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match described {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(name) { "_total" } else { "" };
                out.push_str(&format!("{prefix}{name}{suffix} {tail}"));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_names_are_exposed() {
        let m = Metrics::new();
        m.attempt("primary", "success");
        m.success("primary", 1.0, 2.0);
        m.step_duration("pin", 0.3);
        m.sink_failure("redis:k");
        m.notifier_post(403);
        m.locator_fallback("primary", "pin", "input");
        m.page_probe("primary", false, 3.0);
        let text = m.render();
        for name in [
            "upstox_relogin_login_attempts_total{account=\"primary\",result=\"success\"} 1",
            "upstox_relogin_last_success_timestamp_seconds{account=\"primary\"} 1",
            "upstox_relogin_token_expiry_timestamp_seconds{account=\"primary\"} 2",
            "upstox_relogin_login_duration_seconds_bucket",
            "upstox_relogin_sink_write_failures_total{sink=\"redis:k\"} 1",
            "upstox_relogin_notifier_posts_total{status=\"403\"} 1",
            "upstox_relogin_locator_fallbacks_total{account=\"primary\",step=\"pin\",element=\"input\"} 1",
            "upstox_relogin_probe_ready{account=\"primary\"} 0",
            "upstox_relogin_probe_timestamp_seconds{account=\"primary\"} 3",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }

    #[test]
    fn prometheus_text_describes_counters_by_their_sample_names() {
        let m = Metrics::new();
        m.attempt("primary", "republished");
        m.token("primary", 7, 2.0);
        let text = m.render_prometheus_text();
        for line in [
            "# TYPE upstox_relogin_login_attempts_total counter",
            "upstox_relogin_login_attempts_total{account=\"primary\",result=\"republished\"} 1",
            "# TYPE upstox_relogin_token_generation gauge",
            "upstox_relogin_token_generation{account=\"primary\"} 7",
            "# TYPE upstox_relogin_skip_check_duration_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from\n{text}");
        }
        assert!(text.lines().any(|l| l.starts_with("# HELP upstox_relogin_login_attempts_total Runs per account")));
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"), "{text}");
        assert!(m.render().ends_with("# EOF\n"));
    }

    #[test]
    fn accept_headers_pick_the_format() {
        assert_eq!(negotiate(None), Format::OpenMetrics);
        assert_eq!(negotiate(Some("*/*")), Format::OpenMetrics);
        assert_eq!(negotiate(Some("text/plain;version=0.0.4")), Format::PrometheusText);
        assert_eq!(negotiate(Some("text/plain; version=0.0.4; charset=utf-8")), Format::PrometheusText);
        // What Prometheus itself sends: OpenMetrics first.
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
                          text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(negotiate(Some("application/openmetrics-text;q=0.2, text/plain;q=0.9")), Format::PrometheusText);
        assert_eq!(negotiate(Some("text/plain;q=0")), Format::OpenMetrics);
    }
}
