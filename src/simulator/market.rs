//! The market calendar [doc]: `GET /v2/market/holidays` and `GET /v2/market/holidays/{YYYY-MM-DD}`, no token
//! needed, answering `{"status":"success","data":[{date, description, holiday_type, closed_exchanges,
//! open_exchanges}]}` from `SimConfig::holidays` (replaceable at runtime with `Simulator::set_holidays`).
//!
//! The default calendar carries Upstox's traps: a `TRADING_HOLIDAY` on which NSE is open (only MCX closed), and a
//! `SETTLEMENT_HOLIDAY` on which every exchange trades. NSE is closed on a date only when `"NSE"` is in that entry's
//! `closed_exchanges` (upstox.md, "Market calendar"). This module never looks at tokens or login state.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{FixedOffset, NaiveDate, TimeZone};
use serde::{Deserialize, Serialize};

use super::SharedState;
use super::api::{KeyCase, envelope, success};

/// One entry of the holiday list, serialised exactly as Upstox's `data[]` element.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimHoliday {
    /// `"YYYY-MM-DD"`.
    pub date: NaiveDate,
    pub description: String,
    /// Not by itself "closed": see `closed_exchanges`.
    pub holiday_type: HolidayType,
    /// Exchanges shut for the whole day, e.g. `["NSE","NFO","BSE","BFO","CDS","BCD"]`.
    pub closed_exchanges: Vec<String>,
    /// Exchanges that trade that day, with their session.
    pub open_exchanges: Vec<OpenExchange>,
}

/// Upstox's `holiday_type` values [doc].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HolidayType {
    TradingHoliday,
    SettlementHoliday,
    SpecialTiming,
}

/// An exchange open on a holiday: `{"exchange":"MCX","start_time":<epoch ms>,"end_time":<epoch ms>}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenExchange {
    pub exchange: String,
    /// Epoch milliseconds.
    pub start_time: i64,
    /// Epoch milliseconds.
    pub end_time: i64,
}

impl OpenExchange {
    /// `exchange` open on `date` from `start` to `end`, both (hour, minute) in IST.
    pub fn ist(exchange: &str, date: NaiveDate, start: (u32, u32), end: (u32, u32)) -> OpenExchange {
        let ms = |(h, m): (u32, u32)| {
            let ist = FixedOffset::east_opt(5 * 3600 + 30 * 60).expect("+05:30 is a valid offset");
            date.and_hms_opt(h, m, 0)
                .and_then(|t| ist.from_local_datetime(&t).single())
                .map_or(0, |t| t.timestamp_millis())
        };
        OpenExchange { exchange: exchange.to_owned(), start_time: ms(start), end_time: ms(end) }
    }
}

const EQUITY: [&str; 6] = ["NSE", "NFO", "CDS", "BSE", "BFO", "BCD"];

/// An exchange open on a holiday: its name and its session's start and end, each (hour, minute) IST.
type OpenSession<'a> = (&'a str, (u32, u32), (u32, u32));

/// A plausible 2026 calendar: national holidays (everything closed, or equity closed with MCX's evening session),
/// NSE's short-notice election holiday of January 2026, a settlement-only holiday, and the trap: a trading holiday
/// that closes MCX only.
pub fn default_holidays() -> Vec<SimHoliday> {
    let date = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("the default calendar's dates are valid");
    let closed = |list: &[&str]| list.iter().map(|e| (*e).to_owned()).collect::<Vec<_>>();
    let all_closed: Vec<&str> = EQUITY.iter().copied().chain(["MCX"]).collect();
    let entry = |d: &str, description: &str, holiday_type, closed_exchanges: &[&str], open: &[OpenSession]| {
        let day = date(d);
        SimHoliday {
            date: day,
            description: description.to_owned(),
            holiday_type,
            closed_exchanges: closed(closed_exchanges),
            open_exchanges: open.iter().map(|(e, s, t)| OpenExchange::ist(e, day, *s, *t)).collect(),
        }
    };
    let mcx_evening = [("MCX", (17, 0), (23, 55))];
    let equity_open = [("NSE", (9, 15), (15, 30)), ("NFO", (9, 15), (15, 30)), ("BSE", (9, 15), (15, 30))];
    use HolidayType::*;
    vec![
        entry("2026-01-15", "Municipal Corporation Elections in Maharashtra", TradingHoliday, &EQUITY, &mcx_evening),
        entry("2026-01-26", "Republic Day", TradingHoliday, &all_closed, &[]),
        entry("2026-02-19", "Chhatrapati Shivaji Maharaj Jayanti", SettlementHoliday, &[], &equity_open),
        entry("2026-03-03", "Holi", TradingHoliday, &EQUITY, &mcx_evening),
        entry("2026-04-03", "Good Friday", TradingHoliday, &all_closed, &[]),
        entry("2026-05-01", "Maharashtra Day", TradingHoliday, &EQUITY, &mcx_evening),
        entry("2026-07-17", "Commodity market closed (equity trades as usual)", TradingHoliday, &["MCX"], &equity_open),
        entry("2026-10-02", "Mahatma Gandhi Jayanti", TradingHoliday, &all_closed, &[]),
        entry("2026-12-25", "Christmas", TradingHoliday, &all_closed, &[]),
    ]
}

/// `GET /v2/market/holidays`: the whole calendar, by date.
pub(super) async fn holidays(State(sim): State<SharedState>) -> Response {
    answer(&sim, None)
}

/// `GET /v2/market/holidays/{YYYY-MM-DD}`: the entries of that date (an empty `data` when it is no holiday).
pub(super) async fn holidays_on(State(sim): State<SharedState>, Path(date): Path<String>) -> Response {
    match NaiveDate::parse_from_str(&date, "%Y-%m-%d") {
        Ok(day) => answer(&sim, Some(day)),
        // The code is the simulator's own: Upstox's answer to a malformed date is not documented.
        Err(_) => envelope(StatusCode::BAD_REQUEST, "UDAPI1088", "Invalid date; expected YYYY-MM-DD", KeyCase::Snake),
    }
}

fn answer(sim: &super::Shared, day: Option<NaiveDate>) -> Response {
    let state = sim.lock();
    if state.faults.holidays_5xx {
        return envelope(
            StatusCode::SERVICE_UNAVAILABLE,
            "UDAPI100500",
            "Something went wrong. Please try again after some time.",
            KeyCase::Snake,
        );
    }
    let mut data: Vec<&SimHoliday> = state.holidays.iter().filter(|h| day.is_none_or(|d| h.date == d)).collect();
    data.sort_by_key(|h| h.date);
    success(data)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::Faults;
    use super::super::testing::{Harness, assert_error};
    use super::*;

    async fn get(h: &Harness, path: &str) -> reqwest::Response {
        h.get(h.url(path)).await
    }

    #[tokio::test]
    async fn the_calendar_has_upstox_shape_and_the_trading_holiday_trap() {
        let h = Harness::start().await;
        let res = get(&h, "v2/market/holidays").await;
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["status"], "success");
        let data = body["data"].as_array().unwrap();
        assert!(data.len() >= 5);
        for entry in data {
            let mut keys: Vec<&str> = entry.as_object().unwrap().keys().map(String::as_str).collect();
            keys.sort_unstable();
            assert_eq!(keys, ["closed_exchanges", "date", "description", "holiday_type", "open_exchanges"]);
        }
        let republic = data.iter().find(|e| e["date"] == "2026-01-26").unwrap();
        assert_eq!(republic["holiday_type"], "TRADING_HOLIDAY");
        assert!(republic["closed_exchanges"].as_array().unwrap().contains(&json!("NSE")));
        let nse_open_trading_holiday = data.iter().find(|e| {
            e["holiday_type"] == "TRADING_HOLIDAY" && !e["closed_exchanges"].as_array().unwrap().contains(&json!("NSE"))
        });
        let trap = nse_open_trading_holiday.expect("a trading holiday on which NSE is open");
        let nse = trap["open_exchanges"].as_array().unwrap().iter().find(|o| o["exchange"] == "NSE").unwrap();
        let start = chrono::DateTime::from_timestamp_millis(nse["start_time"].as_i64().unwrap()).unwrap();
        assert_eq!(start.to_rfc3339(), format!("{}T03:45:00+00:00", trap["date"].as_str().unwrap()), "09:15 IST");
        let mcx = republic["open_exchanges"].as_array().unwrap();
        assert!(mcx.is_empty());
    }

    #[tokio::test]
    async fn one_date_answers_its_entries_or_none() {
        let h = Harness::start().await;
        let body: Value = get(&h, "v2/market/holidays/2026-01-26").await.json().await.unwrap();
        assert_eq!(body["data"].as_array().unwrap().len(), 1);
        assert_eq!(body["data"][0]["description"], "Republic Day");
        let body: Value = get(&h, "v2/market/holidays/2026-01-27").await.json().await.unwrap();
        assert_eq!(body, json!({"status": "success", "data": []}));
        assert_error(
            get(&h, "v2/market/holidays/26-01-2026").await,
            StatusCode::BAD_REQUEST,
            "UDAPI1088",
            KeyCase::Snake,
        )
        .await;
    }

    #[tokio::test]
    async fn holidays_are_replaceable_at_runtime_and_can_fail() {
        let h = Harness::start().await;
        let day = NaiveDate::from_ymd_opt(2026, 6, 1).unwrap();
        h.sim.set_holidays(vec![SimHoliday {
            date: day,
            description: "Declared at short notice".into(),
            holiday_type: HolidayType::TradingHoliday,
            closed_exchanges: vec!["NSE".into()],
            open_exchanges: vec![OpenExchange::ist("MCX", day, (17, 0), (23, 55))],
        }]);
        let body: Value = get(&h, "v2/market/holidays").await.json().await.unwrap();
        assert_eq!(body["data"].as_array().unwrap().len(), 1);
        assert_eq!(body["data"][0]["date"], "2026-06-01");
        assert_eq!(body["data"][0]["open_exchanges"][0]["exchange"], "MCX");

        h.sim.set_faults(Faults { holidays_5xx: true, ..Faults::default() });
        for path in ["v2/market/holidays", "v2/market/holidays/2026-06-01"] {
            assert_error(get(&h, path).await, StatusCode::SERVICE_UNAVAILABLE, "UDAPI100500", KeyCase::Snake).await;
        }
    }
}
