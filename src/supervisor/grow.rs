//! `-p auto` across hosts, while running: every [`CHECK`] the supervisor
//! reads the group's hosts and worker counts (see `group_size`) and grows
//! the topic to one partition per worker of the whole group. Hosts that
//! start at the same moment each see only themselves at first and size for
//! themselves; Kafka never shrinks a topic and CreatePartitions refuses a
//! count below the current one, so whatever order their grows land in, the
//! next check of any of them brings the topic to the sum. The group's
//! leader then sees the new partitions and rebalances onto them (see
//! `group::heartbeat`).
//!
//! Runs on its own thread with its own runtime, like the evictor.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

use crate::admin::{Admin, Applied};
use crate::config::{PartitionsSpec, RunConfig};

/// How soon the group's size is checked after the start or a change (of
/// this host's workers, or of the group's members); each check that finds
/// nothing changed doubles the pause, up to [`CHECK_MAX`], so that a large
/// group is not described by every host every few seconds (a description
/// of 6,400 members is about a megabyte).
pub const CHECK: Duration = Duration::from_secs(10);
pub const CHECK_MAX: Duration = Duration::from_secs(160);

/// The pause before the next check: back to [`CHECK`] after a change,
/// else twice the last, at most [`CHECK_MAX`].
pub fn next_pause(last: Duration, changed: bool) -> Duration {
    if changed {
        CHECK
    } else {
        (last * 2).min(CHECK_MAX)
    }
}

/// The growing thread; dropping it stops the thread.
pub struct Grower {
    _stop: Option<Sender<()>>,
}

impl Grower {
    /// Only for `-p auto`; `wanted` is this host's worker count, kept
    /// current by the supervisor (TTIN/TTOU change it).
    /// `state_dir`: where this run's state file names its workers' member
    /// ids, which count as this host's whatever the broker says of them.
    pub fn start(cfg: &RunConfig, wanted: Arc<AtomicUsize>, state_dir: PathBuf) -> Self {
        // A share group's workers share partitions: nothing to grow for.
        if cfg.sizing.partitions != PartitionsSpec::Auto
            || cfg.consume.group_protocol == crate::config::GroupProtocol::Share
        {
            return Self { _stop: None };
        }
        let (tx, rx) = mpsc::channel::<()>();
        let cfg = cfg.clone();
        let spawned = std::thread::Builder::new().name("grow".into()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    warn!("-p auto will not follow the group's other hosts (cannot start a runtime: {e})");
                    return;
                }
            };
            let mut admin: Option<Admin> = None;
            let mut pause = CHECK;
            let mut last_seen: Option<Seen> = None;
            loop {
                match rx.recv_timeout(pause) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                let own = wanted.load(Ordering::Relaxed) as u32;
                let seen = match rt.block_on(check(&cfg, own, &state_dir, &mut admin)) {
                    Ok(members) => Some(Seen { own, members }),
                    Err(e) => {
                        debug!("group-wide sizing: {e:#}");
                        admin = None;
                        None
                    }
                };
                pause = next_pause(pause, seen.is_none() || seen != last_seen);
                last_seen = seen;
            }
        });
        if let Err(e) = spawned {
            warn!("-p auto will not follow the group's other hosts (cannot start a thread: {e})");
        }
        Self { _stop: Some(tx) }
    }
}

/// What one check saw: this host's workers and the group's members. The
/// checks slow down while it stays the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    own: u32,
    members: u32,
}

/// One check; the group's member count.
async fn check(
    cfg: &RunConfig,
    own: u32,
    state_dir: &Path,
    admin: &mut Option<Admin>,
) -> anyhow::Result<u32> {
    if admin.is_none() {
        *admin = Some(Admin::connect(&cfg.connect).await?);
    }
    let a = admin.as_ref().expect("just connected");
    let Some(current) = a.partition_count(&cfg.topic).await? else {
        return Ok(0);
    };
    let own_members = crate::group_size::OwnMembers {
        host: cfg.sizing.host_id.clone(),
        member_ids: crate::state_file::own_member_ids(state_dir, &cfg.consume.group, &cfg.topic),
    };
    let view =
        crate::status::group_view(&cfg.connect, &cfg.consume.group, &cfg.topic, &own_members).await;
    let members = view.hosts.iter().map(|h| h.members).sum::<u32>() + view.other_members;
    let others = view.others(&cfg.sizing.host_id);
    let target = (own + others).min(crate::config::MAX_PARTITIONS as u32);
    if target <= current {
        return Ok(members);
    }
    match a.grow_topic(&cfg.topic, current, target).await? {
        Applied::Grown { from, to } => info!(
            event = "grown",
            "the group has {target} workers ({own} here, {others} on {} other host(s) or clients): \
             grew topic '{}' from {from} to {to} partitions",
            view.hosts.iter().filter(|h| h.host != cfg.sizing.host_id).count()
                + view.other_members as usize,
            cfg.topic
        ),
        other => debug!("{}", other.describe(&cfg.topic)),
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_back_off_while_nothing_changes() {
        let mut p = CHECK;
        let mut seen = vec![];
        for _ in 0..6 {
            p = next_pause(p, false);
            seen.push(p.as_secs());
        }
        assert_eq!(seen, vec![20, 40, 80, 160, 160, 160]);
        assert_eq!(next_pause(CHECK_MAX, true), CHECK);
    }
}
