//! The check before the open: on each day the cron runs, `schedule.token_check_mins_before_open` before
//! `schedule.market_open` (IST), every account must hold a valid token in every sink; one that does not raises
//! `token_missing_near_open`. Days NSE is closed are left alone. Reads sinks; never logs in.

use std::sync::Arc;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{events, sleep_until};
use crate::error::error_chain;
use crate::market::Today;
use crate::run::Runner;
use crate::{schedule, token};

/// Check before every open until `cancel` fires.
pub(super) async fn watch(runner: Arc<Runner>, cancel: CancellationToken) {
    loop {
        let Some((check_at, open_at)) = schedule::next_open_check(&runner.config().schedule, Utc::now()) else {
            debug!("no token check before the open is scheduled");
            return;
        };
        debug!(check_at = %token::ist(check_at).to_rfc3339(), "next token check before the open");
        if !sleep_until(check_at, &cancel).await {
            return;
        }
        match runner.calendar().today(Utc::now()).await {
            Today::Closed(why) => {
                info!("NSE is closed today ({why}); no token check before the open");
                continue;
            }
            Today::Unknown(e) => {
                warn!(error = %error_chain(&e), "cannot tell whether NSE is open today; checking tokens anyway")
            }
            Today::Open => {}
        }
        let mut missing = 0;
        for account in &runner.config().accounts {
            let held = runner.publisher().read(&account.name).await;
            let now = Utc::now();
            if !held.iter().all(|d| d.as_ref().is_some_and(|d| d.is_unexpired(now))) {
                missing += 1;
                events::on_token_missing_near_open(&runner, &account.name, token::ist(open_at));
            }
        }
        if missing == 0 {
            info!(open_at = %token::ist(open_at).to_rfc3339(), "every account holds a valid token before the open");
        }
    }
}
