//! Torua integration tests: real binaries over real sockets.
//! One test binary; each file is a module (see testkit for the helpers).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cluster;

mod chaos;
mod client;
mod config;
mod coordinators;
mod crud;
mod dev;
mod dist;
mod encryption;
mod failures;
mod placement;
mod replication;
mod security;
mod tls;
mod trust;
