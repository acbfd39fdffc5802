//! `status`: not built yet.
pub async fn print(_config: std::sync::Arc<crate::config::Config>, _json: bool) -> u8 {
    eprintln!("error: `status` is not built yet");
    crate::cli::EXIT_FAILURE
}
