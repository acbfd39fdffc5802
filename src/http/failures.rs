//! `GET /failures/{name}`: a failure screenshot from `{state_dir}/failures/`, for the status page's link.
//!
//! Only PNG screenshots, only names the artifact store writes (`<stamp>-<account>-<step>.png`, no `/`, no leading
//! dot), only regular files found by listing that directory (never a path joined from the request and opened
//! blindly, never a symlink). The artifacts were scrubbed when written (inputs blanked before the screenshot).
//! The page HTML saved beside each screenshot is not served: it is Upstox's page, with Upstox's scripts.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::login::browser::parse_artifact_name;

pub async fn screenshot(State(runner): State<AppState>, Path(name): Path<String>) -> Response {
    let not_found = || (StatusCode::NOT_FOUND, "no such failure screenshot\n").into_response();
    if !matches!(parse_artifact_name(&name), Some((_, _, _, "png"))) {
        return not_found();
    }
    let dir = runner.config().failures_dir();
    let Ok(mut entries) = tokio::fs::read_dir(&dir).await else { return not_found() };
    while let Ok(Some(entry)) = entries.next_entry().await {
        if entry.file_name().to_str() != Some(name.as_str()) {
            continue;
        }
        // `file_type` does not follow symlinks: a link planted in the directory is not served.
        if !entry.file_type().await.is_ok_and(|t| t.is_file()) {
            return not_found();
        }
        return match tokio::fs::read(entry.path()).await {
            Ok(bytes) => (
                [
                    (header::CONTENT_TYPE, "image/png"),
                    (header::CACHE_CONTROL, "no-store"),
                    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                ],
                bytes,
            )
                .into_response(),
            Err(_) => not_found(),
        };
    }
    not_found()
}
