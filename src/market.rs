//! The market calendar: on which IST dates NSE is closed, from Upstox's holiday list
//! (`GET {api_base_url}/v2/market/holidays`, no token needed [doc]) and the operator's extra dates file
//! (`schedule.extra_holidays_file`).
//!
//! Upstox's rule [doc]: NSE is closed on a date when `"NSE"` is in that entry's `closed_exchanges`; `holiday_type`
//! alone says nothing (a `TRADING_HOLIDAY` can close MCX only, and special sessions happen). Interpreting the answer
//! is pure (`interpret_holidays`, `ClosedDays`); `Calendar` is the thin reqwest adapter plus a cache refreshed at
//! most once per IST day (holidays are declared days ahead [doc]: NSE added one in January 2026 three days before).
//! This module never decides whether to log in: `daemon` and `schedule` do.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use url::Url;

use crate::config::{UpstoxConfig, read_extra_holidays};
use crate::oauth::{UpstoxError, interpret_error};
use crate::token;

/// How long one fetch of the holiday list may take: a slow API must not hold a morning run for long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum HolidayError {
    #[error("cannot reach Upstox's holiday list at `{url}`")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Upstox's holiday list at `{url}` answered {error}")]
    Refused { url: String, error: UpstoxError },
    #[error("Upstox's holiday list at `{url}` is not `{{\"status\":\"success\",\"data\":[…]}}`")]
    Malformed {
        url: String,
        #[source]
        source: serde_json::Error,
    },
}

/// One entry of Upstox's holiday list (`data[]`); fields this program does not need are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Holiday {
    /// `YYYY-MM-DD`, an Indian calendar date.
    pub date: NaiveDate,
    #[serde(default)]
    pub description: String,
    /// `TRADING_HOLIDAY`, `SETTLEMENT_HOLIDAY`, `SPECIAL_TIMING`: informational only.
    #[serde(default)]
    pub holiday_type: String,
    /// Exchanges shut for the whole day, e.g. `["NSE","NFO","BSE"]`.
    #[serde(default)]
    pub closed_exchanges: Vec<String>,
}

#[derive(Deserialize)]
struct HolidayList {
    status: String,
    data: Vec<Holiday>,
}

/// The holiday list from an HTTP answer: 200 with `{"status":"success","data":[…]}`, else Upstox's error.
pub fn interpret_holidays(url: &Url, http_status: u16, body: &[u8]) -> Result<Vec<Holiday>, HolidayError> {
    let url = url.to_string();
    if http_status != 200 {
        return Err(HolidayError::Refused { url, error: interpret_error(http_status, body) });
    }
    let list: HolidayList =
        serde_json::from_slice(body).map_err(|source| HolidayError::Malformed { url: url.clone(), source })?;
    if list.status != "success" {
        return Err(HolidayError::Refused { url, error: interpret_error(http_status, body) });
    }
    Ok(list.data)
}

/// Why NSE is closed on a date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closure {
    /// Upstox's holiday list says so; its description.
    Holiday(String),
    /// The operator's `schedule.extra_holidays_file` lists the date.
    Operator,
}

impl std::fmt::Display for Closure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Closure::Holiday(d) if d.is_empty() => f.write_str("Upstox's holiday list"),
            Closure::Holiday(d) => write!(f, "{d} (Upstox's holiday list)"),
            Closure::Operator => f.write_str("listed in `schedule.extra_holidays_file`"),
        }
    }
}

/// The dates NSE is closed on, as far as is known: a pure value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClosedDays(BTreeMap<NaiveDate, Closure>);

impl ClosedDays {
    /// The dates of `holidays` whose `closed_exchanges` holds `"NSE"`, plus the operator's `extra` dates.
    pub fn new(holidays: &[Holiday], extra: &BTreeSet<NaiveDate>) -> Self {
        let mut days: BTreeMap<NaiveDate, Closure> = extra.iter().map(|d| (*d, Closure::Operator)).collect();
        for h in holidays.iter().filter(|h| h.closed_exchanges.iter().any(|e| e == "NSE")) {
            days.insert(h.date, Closure::Holiday(h.description.clone()));
        }
        Self(days)
    }

    /// Why NSE is closed on `date` (an IST date), or `None` when it is not known to be.
    pub fn closed_on(&self, date: NaiveDate) -> Option<&Closure> {
        self.0.get(&date)
    }
}

/// What is known about today when a scheduled run is due.
#[derive(Debug)]
pub enum Today {
    Closed(Closure),
    Open,
    /// The holiday list could not be had today (the operator's dates do not close today either).
    Unknown(HolidayError),
}

#[derive(Debug, Default)]
struct Cached {
    /// The IST day the Upstox list was last fetched, and the list.
    upstox: Option<(NaiveDate, Vec<Holiday>)>,
    /// The IST day `extra_holidays_file` was last read, and its dates.
    extra_read: Option<NaiveDate>,
    extra: BTreeSet<NaiveDate>,
}

/// Upstox's holiday list and the operator's dates, each refreshed at most once per IST day. Cheap to build: the
/// HTTP client is made on the first fetch.
pub struct Calendar {
    url: Url,
    timeout: Duration,
    extra_file: Option<PathBuf>,
    /// Built on first fetch, dropped when the daemon goes idle (`drop_client`).
    http: Mutex<Option<reqwest::Client>>,
    cached: Mutex<Cached>,
    /// One fetch at a time; callers that waited find the fresh answer.
    fetching: tokio::sync::Mutex<()>,
}

impl Calendar {
    /// `extra` is `extra_holidays_file` as validation read it (used until the first daily re-read succeeds).
    pub fn new(upstox: &UpstoxConfig, extra_file: Option<PathBuf>, extra: BTreeSet<NaiveDate>) -> Self {
        Self {
            url: upstox.holidays_url(),
            timeout: FETCH_TIMEOUT.min(upstox.http_timeout),
            extra_file,
            http: Mutex::new(None),
            cached: Mutex::new(Cached { extra, ..Cached::default() }),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, Cached> {
        // A poisoned cache only holds dates: keep using it.
        self.cached.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Everything known now, without I/O (a list fetched on an earlier day still counts).
    pub fn known(&self) -> ClosedDays {
        let c = self.cached();
        ClosedDays::new(c.upstox.as_ref().map_or(&[][..], |(_, l)| l), &c.extra)
    }

    /// Is NSE closed on `now`'s IST date? Re-reads the operator's file and fetches Upstox's list when they were
    /// last read on an earlier IST day.
    pub async fn today(&self, now: DateTime<Utc>) -> Today {
        let day = token::ist_day(now);
        self.reread_extra(day);
        if let Some(closure) = self.known().closed_on(day).filter(|c| **c == Closure::Operator) {
            return Today::Closed(closure.clone());
        }
        match self.refresh(day).await {
            Ok(()) => self.known().closed_on(day).cloned().map_or(Today::Open, Today::Closed),
            Err(e) => Today::Unknown(e),
        }
    }

    /// Fetch Upstox's list unless it was fetched on `day` already.
    pub async fn refresh(&self, day: NaiveDate) -> Result<(), HolidayError> {
        let _one = self.fetching.lock().await;
        if self.cached().upstox.as_ref().is_some_and(|(d, _)| *d == day) {
            return Ok(());
        }
        let list = self.fetch().await?;
        tracing::debug!(entries = list.len(), "fetched Upstox's holiday list");
        self.cached().upstox = Some((day, list));
        Ok(())
    }

    async fn fetch(&self) -> Result<Vec<Holiday>, HolidayError> {
        let transport = |source| HolidayError::Transport { url: self.url.to_string(), source };
        let http = {
            // A poisoned slot only holds a client: keep using it.
            let mut slot = self.http.lock().unwrap_or_else(|p| p.into_inner());
            match slot.as_ref() {
                Some(h) => h.clone(),
                None => {
                    let built = reqwest::Client::builder()
                        .redirect(reqwest::redirect::Policy::none())
                        .timeout(self.timeout)
                        .connect_timeout(self.timeout)
                        .user_agent(concat!("upstox-relogin/", env!("CARGO_PKG_VERSION")))
                        .build()
                        .map_err(transport)?;
                    slot.insert(built).clone()
                }
            }
        };
        let response =
            http.get(self.url.clone()).header("accept", "application/json").send().await.map_err(transport)?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(transport)?;
        interpret_holidays(&self.url, status, &body)
    }

    /// Let the HTTP client go (its TLS context, ~1 MiB) until the next fetch, once a day at most.
    pub fn drop_client(&self) {
        self.http.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Re-read `extra_holidays_file` once per IST day; a file that became unreadable or invalid keeps the last
    /// good dates (and says so).
    fn reread_extra(&self, day: NaiveDate) {
        let Some(path) = &self.extra_file else { return };
        if self.cached().extra_read == Some(day) {
            return;
        }
        let read = read_extra_holidays(path);
        let mut c = self.cached();
        c.extra_read = Some(day);
        match read {
            Ok(dates) => c.extra = dates,
            Err(e) => tracing::warn!(
                error = %e,
                "`schedule.extra_holidays_file` is unusable today; keeping the dates read before (fix the file)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn url() -> Url {
        Url::parse("http://127.0.0.1:1/v2/market/holidays").unwrap()
    }

    const LIST: &str = r#"{"status":"success","data":[
        {"date":"2026-01-26","description":"Republic Day","holiday_type":"TRADING_HOLIDAY",
         "closed_exchanges":["NSE","NFO","BSE","MCX"],"open_exchanges":[]},
        {"date":"2026-07-17","description":"Commodity closed","holiday_type":"TRADING_HOLIDAY",
         "closed_exchanges":["MCX"],"open_exchanges":[{"exchange":"NSE","start_time":1,"end_time":2}]},
        {"date":"2026-02-19","description":"Settlement","holiday_type":"SETTLEMENT_HOLIDAY",
         "closed_exchanges":[],"open_exchanges":[]}]}"#;

    #[test]
    fn nse_is_closed_only_when_listed_in_closed_exchanges() {
        let list = interpret_holidays(&url(), 200, LIST.as_bytes()).unwrap();
        let closed = ClosedDays::new(&list, &BTreeSet::from([day("2026-11-09")]));
        assert_eq!(closed.closed_on(day("2026-01-26")), Some(&Closure::Holiday("Republic Day".into())));
        assert_eq!(closed.closed_on(day("2026-07-17")), None, "a TRADING_HOLIDAY that closes MCX only");
        assert_eq!(closed.closed_on(day("2026-02-19")), None, "a settlement holiday trades");
        assert_eq!(closed.closed_on(day("2026-11-09")), Some(&Closure::Operator));
        assert_eq!(closed.closed_on(day("2026-11-10")), None);
    }

    #[test]
    fn errors_and_malformed_answers_are_errors() {
        let envelope =
            br#"{"status":"error","errors":[{"error_code":"UDAPI100500","message":"Something went wrong"}]}"#;
        let err = interpret_holidays(&url(), 503, envelope).unwrap_err();
        assert!(err.to_string().contains("UDAPI100500 (HTTP 503)"), "{err}");
        assert!(matches!(interpret_holidays(&url(), 200, b"<html>"), Err(HolidayError::Malformed { .. })));
        assert!(matches!(interpret_holidays(&url(), 200, envelope), Err(HolidayError::Malformed { .. })));
    }

    #[tokio::test]
    async fn an_unreachable_api_is_unknown_but_the_operators_dates_still_close() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("extra.txt");
        std::fs::write(&file, "2026-11-30\n").unwrap();
        let upstox = UpstoxConfig {
            authorize_url: Url::parse("http://127.0.0.1:1/dialog").unwrap(),
            api_base_url: Url::parse("http://127.0.0.1:1").unwrap(),
            http_timeout: Duration::from_secs(2),
        };
        let calendar = Calendar::new(&upstox, Some(file.clone()), BTreeSet::new());
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert!(matches!(calendar.today(at("2026-11-30T08:30:00+05:30")).await, Today::Closed(Closure::Operator)));
        assert!(matches!(calendar.today(at("2026-12-01T08:30:00+05:30")).await, Today::Unknown(_)));
        // A broken file keeps the dates read before.
        std::fs::write(&file, "not a date\n").unwrap();
        assert!(matches!(calendar.today(at("2026-12-02T08:30:00+05:30")).await, Today::Unknown(_)));
        assert!(calendar.known().closed_on(day("2026-11-30")).is_some());
    }
}
