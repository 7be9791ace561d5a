//! kswarm: a parallel, crash-tolerant Kafka consumer group on one host.
//!
//! Layout: `cli` (raw flags) -> `config` (validated settings) -> the
//! subcommands: `plan`/`admin`/`sizing` (topic sizing), `produce`, `status`,
//! `supervisor` (the parent of `run`), `worker` (one group member), which uses
//! `group` (membership over the wire), `assignor` and `handler`.
//! Every kafka-protocol type stays inside `wire`.
#![deny(unsafe_code, rust_2018_idioms)]

pub mod cli;
pub mod config;
pub mod handler;
pub mod record;
pub mod report;
pub mod supervisor;

pub mod admin;
pub mod plan;
pub mod produce;
pub mod sizing;

pub mod assignor;
pub mod group;

pub mod app;
pub mod backoff;
pub mod logging;
pub mod proctree;
pub mod state_file;
pub mod status;
pub mod wire;
pub mod worker;
