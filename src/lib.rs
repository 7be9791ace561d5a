//! kswarm: a parallel, crash-tolerant Kafka consumer group on one host.
//!
//! Layout: `cli` (raw flags) -> `config` (validated settings) -> the
//! subcommands: `plan`/`admin`/`sizing` (topic sizing), `produce`, `status`,
//! `supervisor` (the parent of `run`), `worker` (one group member), which uses
//! `group` (membership over the wire), `assignor` and `handler`; `settings`
//! (`-F` files and `-X` flags) -> `security` (checked TLS/SASL settings) ->
//! `transport` (how every connection is opened); `error`
//! holds the errors that decide exit codes. Every kafka-protocol type stays
//! inside `wire`.
//!
//! The public modules are what the binary and the integration tests use;
//! the rest is the crate's own, so that the compiler sees what is unused.
#![deny(unsafe_code, rust_2018_idioms)]

pub mod admin;
pub mod app;
pub mod cli;
pub mod config;
pub mod error;
pub mod from_env;
pub mod group;
pub mod handler;
pub mod logging;
pub mod metrics;
pub mod plan;
pub mod record;
pub mod report;
pub mod security;
pub mod settings;
pub mod state_file;
pub mod wire;

pub(crate) mod assignor;
pub(crate) mod backoff;
pub(crate) mod connect;
pub(crate) mod fds;
pub(crate) mod group_size;
pub(crate) mod install;
pub(crate) mod proctree;
pub(crate) mod produce;
pub(crate) mod sizing;
pub(crate) mod status;
pub(crate) mod stdout;
pub(crate) mod supervisor;
pub(crate) mod transport;
pub(crate) mod worker;
