//! Truxe integration tests: the real `truxe` binary over real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod server;

mod accounts;
mod admin;
mod audit;
mod browser;
mod compat;
mod console;
mod cookies;
mod dist;
mod edge;
mod email;
mod import;
mod keys;
mod limits;
mod machines;
mod mail;
mod mfa;
mod oidc;
mod orgs;
mod passkeys;
mod postgres;
mod sessions;
mod shared_limits;
mod smtp;
mod social;
mod webhooks;
