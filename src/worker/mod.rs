//! One worker process: one member of the consumer group.
//!
//! - [`bootstrap`]: the process (`kswarm worker`, `kswarm spawned`), its
//!   runtime and the checks before it;
//! - `partitioned`: the worker of a classic or consumer-protocol group
//!   (partitions assigned, offsets committed);
//! - `share`: the worker of a share group (records acquired and
//!   acknowledged);
//! - `core`: what both workers share (the link to the supervisor, the
//!   outage wait, the stop, the handler's side);
//! - `cluster`, `fetch`, `positions`, `verdicts`, `copies`, `report`,
//!   `shutdown`: their parts.

use crate::config::{GroupProtocol, WorkerConfig};
use crate::error::ExitWith;

mod bootstrap;
mod cluster;
mod copies;
mod core;
mod error;
mod fetch;
mod fetch_budget;
mod output;
mod partitioned;
mod positions;
mod report;
mod share;
mod shutdown;
mod verdicts;

pub use bootstrap::{cmd, spawned};

/// The worker for the group's protocol; its failure decides the exit status.
async fn run(cfg: WorkerConfig) -> anyhow::Result<()> {
    let result = if cfg.consume.group_protocol == GroupProtocol::Share {
        share::run(cfg).await
    } else {
        partitioned::run(cfg).await
    };
    result.map_err(|e| ExitWith(e.exit_code(), format!("{e:#}")).into())
}
