//! Optional protection of the daemon's endpoints (`server.auth_token_file`): every route this layer wraps needs
//! `Authorization: Bearer <token>` (scrapers, scripts) or `Basic` with the token as the password (any user name),
//! which is what a browser on a phone can send: a 401 asks for both, so the browser shows its login prompt.
//! The comparison runs in constant time. `/healthz` and routes Upstox itself calls are never wrapped.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use super::AppState;

/// Pass the request on when no token is configured or the request carries it; else 401.
pub async fn require_token(State(runner): State<AppState>, request: Request, next: Next) -> Response {
    let Some(expected) = &runner.config().server.auth_token else {
        return next.run(request).await;
    };
    if presented(request.headers())
        .is_some_and(|t| constant_time_eq::constant_time_eq(t.as_bytes(), expected.expose().as_bytes()))
    {
        return next.run(request).await;
    }
    let mut response =
        (StatusCode::UNAUTHORIZED, "unauthorized: send `Authorization: Bearer <server.auth_token_file>`\n")
            .into_response();
    let challenges = response.headers_mut();
    challenges.append(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"upstox-relogin\""));
    challenges.append(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"upstox-relogin\", charset=\"UTF-8\""),
    );
    response
}

/// The token a request presents: a Bearer token, or a Basic password.
fn presented(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, credentials) = value.split_once(' ')?;
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(credentials.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(credentials).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        return text.split_once(':').map(|(_, password)| password.to_owned());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn bearer_and_basic_present_the_token() {
        assert_eq!(presented(&with("Bearer abc123")).as_deref(), Some("abc123"));
        assert_eq!(presented(&with("bearer  abc123 ")).as_deref(), Some("abc123"));
        let basic = base64::engine::general_purpose::STANDARD.encode("ops:abc:123");
        assert_eq!(presented(&with(&format!("Basic {basic}"))).as_deref(), Some("abc:123"));
        assert_eq!(presented(&with("Digest abc")), None);
        assert_eq!(presented(&with("Basic !!!")), None);
        assert_eq!(presented(&HeaderMap::new()), None);
    }
}
