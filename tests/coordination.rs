//! The Redis coordinator and the fenced Redis sink against a real `redis-server`, without a browser: one lease per
//! account (renewed while held, released by its owner only), generations that rise across holders, a lost lease
//! that can change nothing, guard facts shared whole, writes that never go back in generation, Redis down.

mod support;

use std::time::{Duration, Instant};

use redis::Commands;
use support::{RedisServer, free_port};
use upstox_relogin::config::{CoordinationConfig, RedisCoordination, SinkConfig};
use upstox_relogin::coordinate::{Acquired, CoordinationError, Coordinator, Permit};
use upstox_relogin::secret::ClientSecret;
use upstox_relogin::sink::{Sink, SinkError};
use upstox_relogin::state::{Attempt, AttemptResult, GuardFacts, StateStore};
use upstox_relogin::token::TokenDocument;

/// A replica's coordinator: its own (unused) state_dir, the shared Redis.
fn replica(url: &str, lease_ttl: Duration) -> (Coordinator, tempfile::TempDir) {
    let config = CoordinationConfig::Redis(RedisCoordination {
        url: url.to_owned(),
        key_prefix: "t:".into(),
        password: None,
        lease_ttl,
    });
    let dir = tempfile::tempdir().unwrap();
    (Coordinator::new(&config, StateStore::new(dir.path())).unwrap(), dir)
}

async fn permit<'a>(c: &'a Coordinator, account: &str) -> Permit<'a> {
    match c.try_acquire(account).await.unwrap() {
        Acquired::Permit(p) => p,
        Acquired::Held { holder } => panic!("`{account}` held by {holder}"),
    }
}

async fn holder(c: &Coordinator, account: &str) -> Option<String> {
    match c.try_acquire(account).await.unwrap() {
        Acquired::Permit(p) => {
            p.release().await;
            None
        }
        Acquired::Held { holder } => Some(holder),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_lease_per_account_renewed_while_held_and_released_by_its_owner_only() {
    let redis = RedisServer::start();
    let ttl = Duration::from_secs(1);
    let ((a, _a), (b, _b)) = (replica(&redis.url(), ttl), replica(&redis.url(), ttl));
    let held = permit(&a, "acct").await;

    // For three TTLs the other replica finds it held, by this process: the watchdog keeps renewing it.
    let until = Instant::now() + 3 * ttl;
    let mut checks = 0;
    while Instant::now() < until {
        let who = holder(&b, "acct").await.expect("the lease outlives its TTL while held");
        assert!(who.contains(&format!("/pid-{}/", std::process::id())), "{who}");
        checks += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(checks >= 10, "checked {checks} times");
    assert!(b.holder("acct").await.unwrap().is_some());
    assert!(holder(&b, "other").await.is_none(), "leases are per account");

    held.release().await;
    assert!(a.holder("acct").await.unwrap().is_none(), "released at once, not after the TTL");
    let taken = permit(&b, "acct").await;

    // A dropped permit whose lease was taken over must not delete the new holder's lease.
    let mut conn = redis::Client::open(redis.url()).unwrap().get_connection().unwrap();
    let stale = permit(&a, "x").await;
    let () = conn.del("t:x:lease").unwrap(); // as if it had expired
    let newer = permit(&b, "x").await;
    stale.release().await;
    assert!(holder(&a, "x").await.is_some(), "compare-and-delete left the newer lease alone");
    newer.release().await;
    taken.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generations_rise_across_holders_and_a_lost_lease_changes_nothing() {
    let redis = RedisServer::start();
    let ttl = Duration::from_secs(30);
    let ((a, _a), (b, _b)) = (replica(&redis.url(), ttl), replica(&redis.url(), ttl));
    let p = permit(&a, "acct").await;
    assert_eq!(p.next_generation(41).await.unwrap(), 42, "seeded above what the sinks hold");
    assert_eq!(p.next_generation(0).await.unwrap(), 43);
    p.release().await;
    let p = permit(&b, "acct").await;
    assert_eq!(p.next_generation(0).await.unwrap(), 44, "another replica continues the sequence");

    // The PIN count is changed and checked in one step, and every replica sees it.
    assert_eq!(p.update_guard(count_pin_under_cap_of_one).await.unwrap().unwrap().pin_submissions, 1);
    assert_eq!(p.update_guard(count_pin_under_cap_of_one).await.unwrap(), Err("cap"), "refused, nothing written");
    let attempt = Attempt::new(upstox_relogin::token::ist(chrono::Utc::now()), AttemptResult::Success, None);
    p.record_attempt(attempt, None).await.unwrap();
    let facts = a.facts("acct").await.unwrap();
    assert_eq!((facts.generation, facts.guard.pin_submissions), (44, 1), "replica a reads what b wrote");
    assert_eq!(facts.last_attempt.map(|a| a.result), Some(AttemptResult::Success));
    let mut conn = redis::Client::open(redis.url()).unwrap().get_connection().unwrap();
    let stored: String = conn.get("t:acct:facts").unwrap();
    let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(stored["guard"]["pin_submissions"], 1, "the guard's facts are one JSON value: {stored}");

    // The lease expires under the holder (as after a pause): it can no longer allocate, count or record.
    let () = conn.del("t:acct:lease").unwrap();
    let lost = |r: Result<_, CoordinationError>| matches!(r, Err(CoordinationError::LeaseLost { .. }));
    assert!(lost(p.next_generation(0).await.map(|_| ())));
    assert!(lost(p.update_guard(remember_totp_step).await.map(|_| ())));
    let attempt = Attempt::new(upstox_relogin::token::ist(chrono::Utc::now()), AttemptResult::Failed, None);
    assert!(lost(p.record_attempt(attempt, None).await));
    let facts = a.facts("acct").await.unwrap();
    assert_eq!((facts.generation, facts.guard.pin_submissions), (44, 1), "nothing changed");
    assert_eq!(facts.last_attempt.map(|a| a.result), Some(AttemptResult::Success));
}

/// Upstox's invariant (at most 4 PINs without a code in a row, whatever the days) is one count for every replica:
/// four PINs spread over two replicas and three days stop both; `reset-guard` on either clears it for both; the
/// probe and fallback records the status page shows are shared too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_in_a_row_span_replicas_and_days_until_reset_guard_and_records_are_shared() {
    use upstox_relogin::login::guard::{self, Refusal};
    use upstox_relogin::state::{LocatorFallback, ProbeRecord};
    let redis = RedisServer::start();
    let ttl = Duration::from_secs(30);
    let ((a, _a), (b, _b)) = (replica(&redis.url(), ttl), replica(&redis.url(), ttl));
    let days = ["2026-11-02", "2026-11-03", "2026-11-03", "2026-11-05"].map(|d| d.parse().unwrap());
    for (i, day) in days.into_iter().enumerate() {
        let c = if i % 2 == 0 { &a } else { &b };
        let p = permit(c, "acct").await;
        let counted = p
            .update_guard(|g, _| {
                guard::check(g, day, 2)?;
                guard::pin_submitted(g, day);
                Ok::<(), Refusal>(())
            })
            .await
            .unwrap();
        assert!(counted.is_ok(), "PIN {} of 4 may go in: {counted:?}", i + 1);
        p.release().await;
    }
    let later = "2026-11-20".parse().unwrap();
    for c in [&a, &b] {
        let p = permit(c, "acct").await;
        let (facts, _) = p.guard_facts().await.unwrap();
        assert_eq!(
            guard::check(&facts, later, 2),
            Err(Refusal::InARow { count: 4 }),
            "a fifth PIN, any day, any replica"
        );
        p.release().await;
    }

    let cleared = b.reset_guard("acct").await.unwrap().expect("no login holds the account");
    assert_eq!(cleared.pins_without_code_in_a_row, 4, "reset-guard says what it cleared");
    let facts = a.facts("acct").await.unwrap();
    assert_eq!(facts.guard, GuardFacts::default(), "replica a sees the reset");
    // While a login holds the account, reset-guard and the probe record change nothing.
    let p = permit(&a, "acct").await;
    assert!(b.reset_guard("acct").await.unwrap().is_none());
    let at = upstox_relogin::token::ist(chrono::Utc::now());
    let probe = ProbeRecord { at, ready: true, summary: "ready".into() };
    assert!(!b.record_probe("acct", probe.clone()).await.unwrap(), "a login holds the account: not written");
    let used = LocatorFallback {
        at,
        step: "pin".into(),
        element: "input".into(),
        configured: "#pinCode".into(),
        matched: "label \"Enter 6-digit PIN\"".into(),
    };
    p.record_fallback(used.clone()).await.unwrap();
    p.release().await;
    assert!(b.record_probe("acct", probe.clone()).await.unwrap());
    let facts = a.facts("acct").await.unwrap();
    assert_eq!((facts.last_probe, facts.last_locator_fallback), (Some(probe), Some(used)), "b's records, read by a");
}

/// A guard change that refuses at one PIN, as `login::guard` refuses at its cap.
fn count_pin_under_cap_of_one(g: &mut GuardFacts, _: &mut Option<u64>) -> Result<(), &'static str> {
    if g.pin_submissions >= 1 {
        return Err("cap");
    }
    g.pin_submissions += 1;
    Ok(())
}

fn remember_totp_step(_: &mut GuardFacts, step: &mut Option<u64>) -> Result<(), &'static str> {
    *step = Some(1);
    Ok(())
}

fn doc(generation: u64, token: &str) -> TokenDocument {
    let now = chrono::Utc::now();
    TokenDocument {
        account: "acct".into(),
        access_token: token.into(),
        extended_token: None,
        token_type: "Bearer".into(),
        user_id: "U1".into(),
        user_name: "N".into(),
        email: "e@example.com".into(),
        exchanges: vec!["NSE".into()],
        products: vec!["D".into()],
        issued_at: upstox_relogin::token::ist(now),
        expires_at: upstox_relogin::token::expiry_for(now),
        generation,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_sink_never_goes_back_in_generation() {
    let redis = RedisServer::start();
    let config = SinkConfig::Redis {
        url: redis.url(),
        key: "tok:{account}".into(),
        channel: None,
        password: None,
        include_extended_token: false,
    };
    let sink = Sink::new(&config).unwrap();
    sink.publish(&doc(5, "five")).await.unwrap();
    sink.publish(&doc(5, "five")).await.expect("the same bytes again count as written (a retried write)");
    let refused = sink.publish(&doc(4, "four")).await.unwrap_err();
    assert!(matches!(refused, SinkError::Fenced { offered: 4, held: 5, .. }), "{refused}");
    assert!(!refused.is_transient(), "a fenced write is not retried");
    assert!(refused.to_string().contains("fenced"), "{refused}");
    assert!(
        matches!(sink.publish(&doc(5, "other")).await, Err(SinkError::Fenced { .. })),
        "same generation, other token"
    );
    assert_eq!(sink.read("acct").await.unwrap().unwrap().access_token, "five");
    sink.publish(&doc(6, "six")).await.unwrap();
    assert_eq!(sink.read("acct").await.unwrap().unwrap().access_token, "six");
    let mut conn = redis::Client::open(redis.url()).unwrap().get_connection().unwrap();
    let ttl: i64 = conn.ttl("tok:acct").unwrap();
    assert!(ttl > 0, "still SET with EXAT: {ttl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_means_no_permit_and_the_error_names_the_key_without_the_password() {
    let port = free_port();
    let url = format!("redis://:hunter2secret@127.0.0.1:{port}/0");
    let (c, _dir) = replica(&url, Duration::from_secs(5));
    let Err(e) = c.try_acquire("acct").await else { panic!("a permit without Redis") };
    let text = upstox_relogin::error::error_chain(&e);
    assert!(matches!(e, CoordinationError::Unavailable { .. }), "{text}");
    assert!(text.contains("`coordination.url`") && !text.contains("hunter2secret"), "{text}");
    assert!(c.health().await.is_err());
    assert!(!c.describe().store.contains("hunter2secret"));

    // And with a password given separately, once Redis is up and requires it, everything works.
    let _redis = RedisServer::start_on(port);
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{port}/0")).unwrap().get_connection().unwrap();
    let () = redis::cmd("CONFIG").arg("SET").arg("requirepass").arg("pw2").query(&mut conn).unwrap();
    let config = CoordinationConfig::Redis(RedisCoordination {
        url: format!("redis://127.0.0.1:{port}/0"),
        key_prefix: "t:".into(),
        password: Some(ClientSecret::new("pw2")),
        lease_ttl: Duration::from_secs(5),
    });
    let c = Coordinator::new(&config, StateStore::new(_dir.path())).unwrap();
    c.health().await.expect("authenticated with coordination.password_*");
    permit(&c, "acct").await.release().await;
}
