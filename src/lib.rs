//! upstox-relogin: logs in to Upstox through a real headless browser every morning and publishes the token.
//!
//! Reading order: `config` (what the user asked for) → `secret`, `totp`, `token` (the values) → `oauth` (the
//! protocol) → `browser` (the hosted login) → `sink` and `state` (what is kept) → `relogin` (one account's run) →
//! `daemon`, `status`, `metrics` (the long-running side) → `cli`, `demo` (the commands) → `simulator` (the
//! stand-in for Upstox used by tests, `demo` and `simulate`).

pub mod browser;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod metrics;
pub mod oauth;
pub mod relogin;
pub mod secret;
pub mod simulator;
pub mod sink;
pub mod state;
pub mod status;
pub mod token;
pub mod totp;
