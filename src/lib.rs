//! upstox-relogin: logs in to Upstox through a real headless browser every morning and publishes the token.
//!
//! Layers, from the bottom up (a module imports only from its own layer or below):
//! 1. values: `config` (what the user asked for), `secret`, `totp`, `token`, `error`, `clock`;
//! 2. parts: `oauth` (the protocol), `profile` (what Upstox says about a token), `access_request` (Upstox's v3
//!    access-token request and its webhook payload), `state` (what survives restarts), `sink` (where tokens go),
//!    `metrics`, `notify` (telling people: webhook, Slack, Discord, Telegram), `market` (the days NSE is closed),
//!    `schedule` (when a run is due, retry deadlines, the check before the open), `redis_link` (the lazy Redis
//!    connection that the Redis sink and coordinator share);
//! 3. `coordinate` (may I log this account in now, with which generation), `login` (the ways to get a token:
//!    `login::browser` drives the hosted dialog; `login::guard` is the lockout guard);
//! 4. `run` (one account's run, the pass over accounts, publishing);
//! 5. `status` (what each account looks like), `http` (the daemon's endpoints), `daemon` (the schedule),
//!    `shutdown` (the stop signal);
//! 6. `cli` (the commands; the only place that prints results and picks exit codes).
//!
//! `simulator` stands apart: a stand-in for Upstox used by tests, `demo` and `simulate`; only `cli` uses it.

pub mod clock;
pub mod config;
pub mod error;
pub mod secret;
pub mod token;
pub mod totp;

pub mod access_request;
pub mod metrics;
pub mod notify;
pub mod oauth;
pub mod profile;
pub mod redis_link;
pub mod sink;
pub mod state;

pub mod market;
pub mod schedule;

pub mod coordinate;
pub mod login;

pub mod run;

pub mod daemon;
pub mod http;
pub mod shutdown;
pub mod status;

pub mod cli;

pub mod simulator;
