//! Several accounts in one pass, and the one bound on browsers. `login` and the daemon both call `run_accounts`;
//! every browser login of the process first waits for a permit of the `Runner`'s `BrowserSlots`
//! (`browser.max_sessions`), so the bound holds across accounts, passes and commands alike, and a run that only
//! checks or copies a still-valid token never waits for a browser.
//!
//! Accounts are independent: each run has its own permit, deadline and result, and one account's failure, TOTP
//! wait or slow page never fails another (it only holds a slot while its browser runs). The wait for a slot does
//! not count against `login.run_deadline_secs` (`RunClock`). Dropping `run_accounts` cancels every run in flight;
//! each browser is killed by `Browser`'s `Drop`.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Outcome, RunError, Runner, Trigger, WhenValid};
use crate::config::Account;

/// Runs in flight per browser slot: enough that skip checks flow past queued logins, few enough that hundreds of
/// accounts do not hold hundreds of lock files and connections at once.
const RUNS_PER_SLOT: usize = 4;
/// At least this many runs in flight (skip checks are cheap).
const MIN_RUNS_IN_FLIGHT: usize = 8;

/// One account's result within a pass.
pub struct AccountResult<'a> {
    pub account: &'a Account,
    pub result: Result<Outcome, RunError>,
    /// The run's wall time, from its start to its result (a wait for a browser slot included).
    pub elapsed: Duration,
}

/// Run `accounts` concurrently (browser logins bounded by `browser.max_sessions`), report each result to
/// `on_done` as it arrives, wait for browser teardowns left running, and return every result in `accounts` order.
pub async fn run_accounts<'a>(
    runner: &Runner,
    accounts: &[&'a Account],
    when_valid: WhenValid,
    trigger: Trigger,
    mut on_done: impl FnMut(&AccountResult<'a>),
) -> Vec<AccountResult<'a>> {
    let in_flight = (runner.browser_slots().capacity() * RUNS_PER_SLOT).max(MIN_RUNS_IN_FLIGHT);
    let mut waiting = accounts.iter().copied().enumerate();
    let mut running = FuturesUnordered::new();
    let mut results: Vec<Option<AccountResult<'a>>> = accounts.iter().map(|_| None).collect();
    loop {
        while running.len() < in_flight
            && let Some((i, account)) = waiting.next()
        {
            running.push(run_one(runner, i, account, when_valid, trigger));
        }
        let Some((i, done)) = running.next().await else { break };
        on_done(&done);
        results[i] = Some(done);
    }
    runner.settle().await;
    // invariant: every account was pushed once and every pushed run yields once
    results.into_iter().map(|r| r.expect("one result per account")).collect()
}

async fn run_one<'a>(
    runner: &Runner,
    i: usize,
    account: &'a Account,
    when_valid: WhenValid,
    trigger: Trigger,
) -> (usize, AccountResult<'a>) {
    let started = Instant::now();
    let result = runner.run(account, when_valid, trigger).await;
    (i, AccountResult { account, result, elapsed: started.elapsed() })
}

/// The process's browser slots: at most `browser.max_sessions` browsers exist at once.
pub struct BrowserSlots {
    semaphore: Arc<Semaphore>,
    capacity: usize,
}

impl BrowserSlots {
    /// `capacity` slots (at least one).
    pub fn new(capacity: usize) -> BrowserSlots {
        let capacity = capacity.max(1);
        BrowserSlots { semaphore: Arc::new(Semaphore::new(capacity)), capacity }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Browsers alive right now (slots taken).
    pub fn in_use(&self) -> usize {
        self.capacity - self.semaphore.available_permits()
    }

    /// Wait (first come, first served) for a slot; the wait does not count against `clock`'s deadline.
    pub(super) async fn acquire(&self, clock: &RunClock) -> OwnedSemaphorePermit {
        let _paused = clock.pause();
        // invariant: the semaphore is never closed
        Arc::clone(&self.semaphore).acquire_owned().await.expect("browser slots are never closed")
    }
}

/// A run's deadline, counting only the time the run works: waits for a browser slot are left out, so a long queue
/// of accounts does not fail the last ones.
pub(super) struct RunClock {
    limit: Duration,
    started: Instant,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    /// Finished waits.
    waited: Duration,
    /// The wait in progress, if any.
    since: Option<Instant>,
}

impl RunClock {
    pub fn new(limit: Duration) -> RunClock {
        RunClock { limit, started: Instant::now(), queue: Mutex::new(Queue::default()) }
    }

    /// Time spent working (not waiting for a slot) up to `now`.
    fn worked(&self, now: Instant) -> Duration {
        let queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let waiting = queue.since.map(|since| now.saturating_duration_since(since)).unwrap_or_default();
        now.saturating_duration_since(self.started).saturating_sub(queue.waited + waiting)
    }

    /// Stop the clock until the returned guard is dropped.
    fn pause(&self) -> Paused<'_> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).since = Some(Instant::now());
        Paused(self)
    }

    /// `work`'s output, or `None` when it worked longer than the limit.
    pub async fn bound<F: Future>(&self, work: F) -> Option<F::Output> {
        let mut work = std::pin::pin!(work);
        loop {
            let left = self.limit.saturating_sub(self.worked(Instant::now()));
            if left.is_zero() {
                return None;
            }
            tokio::select! {
                out = &mut work => return Some(out),
                // Woken while paused, the time left is unchanged and the loop sleeps again.
                _ = tokio::time::sleep(left) => {}
            }
        }
    }
}

struct Paused<'a>(&'a RunClock);

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        let mut queue = self.0.queue.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(since) = queue.since.take() {
            queue.waited += since.elapsed();
        }
    }
}

#[cfg(test)]
mod tests {
    //! Real time, scaled down (tokio's paused clock would need its `test-util` feature, and with it a rebuild of
    //! every crate on tokio): margins of several times the work keep these stable on a loaded machine.
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test]
    async fn waiting_for_a_slot_does_not_count_against_the_deadline() {
        let slots = BrowserSlots::new(1);
        let clock = RunClock::new(400 * MS);
        let held = slots.acquire(&RunClock::new(400 * MS)).await;
        assert_eq!(slots.in_use(), 1);
        let work = async {
            // Queued for 1.2 s behind another browser, then 100 ms of work: within the 400 ms deadline.
            let slot = slots.acquire(&clock).await;
            tokio::time::sleep(100 * MS).await;
            drop(slot);
            "done"
        };
        let release = async {
            tokio::time::sleep(1200 * MS).await;
            drop(held);
        };
        let (out, ()) = tokio::join!(clock.bound(work), release);
        assert_eq!(out, Some("done"));
        assert_eq!(slots.in_use(), 0);
    }

    #[tokio::test]
    async fn work_past_the_deadline_is_cut_off() {
        let clock = RunClock::new(50 * MS);
        let started = Instant::now();
        let out = clock.bound(tokio::time::sleep(5000 * MS)).await;
        assert!(out.is_none());
        assert!(started.elapsed() < 4000 * MS);
    }

    #[tokio::test]
    async fn slots_bound_concurrency_first_come_first_served() {
        let slots = BrowserSlots::new(2);
        let clock = RunClock::new(60_000 * MS);
        let peak = std::sync::atomic::AtomicUsize::new(0);
        let order = Mutex::new(Vec::new());
        let job = |i: u32| {
            let (slots, clock, peak, order) = (&slots, &clock, &peak, &order);
            async move {
                tokio::time::sleep(i * 20 * MS).await;
                let _slot = slots.acquire(clock).await;
                order.lock().unwrap().push(i);
                peak.fetch_max(slots.in_use(), std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(300 * MS).await;
            }
        };
        futures_util::future::join_all((0..6).map(job)).await;
        assert_eq!(peak.into_inner(), 2);
        assert_eq!(order.into_inner().unwrap(), vec![0, 1, 2, 3, 4, 5]);
    }
}
