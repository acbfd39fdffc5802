//! Prometheus metrics (prometheus-client, an explicit registry passed around; no global recorder).
//!
//! Names are part of the public contract; all carry the `upstox_relogin_` prefix. This module only counts; it
//! never decides anything.

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
        registry.register("login_attempts", "Login runs per account by result", login_attempts.clone());
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
        registry.register("login_duration_seconds", "Duration of login steps", login_duration.clone());
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
        Self {
            registry,
            login_attempts,
            last_success,
            token_expiry,
            login_duration,
            sink_write_failures,
            lockout_guard_refusals,
            notifier_posts,
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

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // invariant: writing to a String cannot fail
        encode(&mut out, &self.registry).expect("encode to String");
        out
    }
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
        let text = m.render();
        for name in [
            "upstox_relogin_login_attempts_total{account=\"primary\",result=\"success\"} 1",
            "upstox_relogin_last_success_timestamp_seconds{account=\"primary\"} 1",
            "upstox_relogin_token_expiry_timestamp_seconds{account=\"primary\"} 2",
            "upstox_relogin_login_duration_seconds_bucket",
            "upstox_relogin_sink_write_failures_total{sink=\"redis:k\"} 1",
            "upstox_relogin_notifier_posts_total{status=\"403\"} 1",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
