//! What a failed WebDriver command means for a login: the session is gone (stop), the page is mid-change (wait),
//! an element is briefly not interactable (wait), a click never reached the page (known harmless). Pure functions
//! of fantoccini's errors.

use fantoccini::error::{CmdError, ErrorStatus};

use super::BrowserError;
use crate::login::Step;

/// Map a failed WebDriver command: a lost session is told apart from a command the page refused.
pub(super) fn failed(step: Step, action: &'static str) -> impl FnOnce(CmdError) -> BrowserError {
    move |source| {
        if session_gone(&source) {
            BrowserError::SessionLost { step, action, source: Box::new(source) }
        } else {
            BrowserError::WebDriver { step, action, source: Box::new(source) }
        }
    }
}

/// A polled command's result: a failure means "not yet" (`Ok(None)`: no such element, a stale element, a page
/// mid-navigation), except when the session itself is gone, which no amount of waiting fixes.
pub(super) fn tolerate<T>(
    step: Step,
    action: &'static str,
    result: Result<T, CmdError>,
) -> Result<Option<T>, BrowserError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(source) if session_gone(&source) => {
            Err(BrowserError::SessionLost { step, action, source: Box::new(source) })
        }
        Err(_) => Ok(None),
    }
}

/// chromedriver is unreachable, or it reports that Chromium or the window is gone.
pub(super) fn session_gone(e: &CmdError) -> bool {
    if e.is_invalid_session_id() || e.is_no_such_window() {
        return true;
    }
    match e {
        CmdError::Failed(_) | CmdError::FailedC(_) | CmdError::Lost(_) => true,
        CmdError::Standard(w) => {
            let message = w.message.to_lowercase();
            ["not reachable", "disconnected", "session deleted", "tab crashed"].iter().any(|m| message.contains(m))
        }
        _ => false,
    }
}

/// An element state that passes: disabled for a moment, not yet interactable, replaced by a re-render.
pub(super) fn transient(e: &CmdError) -> bool {
    matches!(
        e,
        CmdError::Standard(w) if matches!(
            w.error,
            ErrorStatus::InvalidElementState | ErrorStatus::ElementNotInteractable | ErrorStatus::StaleElementReference
        )
    )
}

/// A click WebDriver refused before dispatching it: nothing reached the page.
pub(super) fn not_dispatched(e: &CmdError) -> bool {
    matches!(
        e,
        CmdError::Standard(w) if matches!(
            w.error,
            ErrorStatus::ElementClickIntercepted | ErrorStatus::ElementNotInteractable | ErrorStatus::StaleElementReference
        )
    )
}

#[cfg(test)]
mod tests {
    use fantoccini::error::WebDriver;

    use super::*;

    fn standard(status: ErrorStatus, message: &'static str) -> CmdError {
        CmdError::Standard(WebDriver::new(status, message))
    }

    #[test]
    fn a_dead_driver_or_browser_ends_the_wait_and_a_missing_element_does_not() {
        let lost = [
            CmdError::Lost(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
            standard(ErrorStatus::InvalidSessionId, "invalid session id"),
            standard(ErrorStatus::NoSuchWindow, "no such window: target window already closed"),
            standard(ErrorStatus::UnknownError, "unknown error: chrome not reachable"),
            standard(ErrorStatus::UnknownError, "disconnected: not connected to DevTools"),
            standard(ErrorStatus::UnknownError, "session deleted because of page crash"),
        ];
        for e in lost {
            assert!(session_gone(&e), "{e}");
            assert!(matches!(
                tolerate::<()>(Step::Pin, "find", Err(e)),
                Err(BrowserError::SessionLost { step: Step::Pin, .. })
            ));
        }
        let transient_errors = [
            standard(ErrorStatus::NoSuchElement, "no such element"),
            standard(ErrorStatus::StaleElementReference, "stale element reference"),
            standard(ErrorStatus::UnknownError, "unknown error: cannot determine loading status"),
            CmdError::NotJson("<html>".into()),
        ];
        for e in transient_errors {
            assert!(!session_gone(&e), "{e}");
            assert!(matches!(tolerate::<()>(Step::Pin, "find", Err(e)), Ok(None)));
        }
        assert!(matches!(
            failed(Step::Otp, "click")(standard(ErrorStatus::ElementNotInteractable, "x")),
            BrowserError::WebDriver { step: Step::Otp, action: "click", .. }
        ));
    }

    #[test]
    fn a_disabled_input_is_a_wait_and_only_an_undispatched_click_is_known_harmless() {
        assert!(transient(&standard(ErrorStatus::InvalidElementState, "invalid element state")));
        assert!(transient(&standard(ErrorStatus::ElementNotInteractable, "element not interactable")));
        assert!(!transient(&standard(ErrorStatus::UnknownError, "unknown error")));
        assert!(not_dispatched(&standard(ErrorStatus::ElementClickIntercepted, "element click intercepted")));
        assert!(!not_dispatched(&standard(ErrorStatus::UnknownError, "timeout")));
        assert!(!not_dispatched(&standard(ErrorStatus::Timeout, "timeout")));
    }
}
