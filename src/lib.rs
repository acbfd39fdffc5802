//! upstox-relogin: logs in to Upstox through a real headless browser every morning and publishes the token.
//!
//! Reading order: `config` (what the user asked for) → `secret`, `totp`, `token` (the values) → `oauth` (the
//! protocol) → `browser` (the hosted login) → `sink` and `state` (what is kept) → `relogin` (one account's run) →
//! `daemon`, `status`, `metrics` (the long-running side) → `cli`, `demo` (the commands) → `simulator` (the
//! stand-in for Upstox used by tests, `demo` and `simulate`).

pub mod config;
pub mod secret;
pub mod totp;
pub mod token;
pub mod oauth;
pub mod browser;
pub mod sink;
pub mod state;
pub mod relogin;
pub mod daemon;
pub mod status;
pub mod metrics;
pub mod cli;
pub mod demo;
pub mod simulator;
