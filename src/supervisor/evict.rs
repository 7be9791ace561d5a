//! Fast failover: when a worker dies without leaving the group, tell the
//! group coordinator at once (LeaveGroup on its behalf, [`crate::group::evict`])
//! instead of letting its partitions idle until its session timeout. At a
//! shutdown, all members leave together the same way (see
//! `Slots::leave_together`).
//!
//! The only Kafka traffic of the supervisor. It runs on its own thread with
//! its own small runtime, so the main thread (which forks the workers) never
//! holds a runtime, and a slow broker never blocks the event loop.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::config::{GroupProtocol, RunConfig};

pub struct Evictor {
    tx: Option<Sender<Job>>,
    pending: Arc<AtomicUsize>,
}

enum Job {
    /// A dead worker's member.
    Evict { slot: u32, member_id: String },
    /// Every member of a stopped kswarm, in one LeaveGroup.
    LeaveTogether { member_ids: Vec<String> },
}

impl Evictor {
    /// Off under --static-membership: a restarted static member takes its
    /// place back under the same group.instance.id without any rebalance, and
    /// an eviction would force one.
    pub fn start(cfg: &RunConfig) -> Self {
        let pending = Arc::new(AtomicUsize::new(0));
        if cfg.consume.static_membership {
            return Self { tx: None, pending };
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let eviction = crate::group::Eviction::new(
            &cfg.connect.brokers,
            cfg.connect.connect_timeout,
            &cfg.consume.group,
            cfg.consume.group_protocol,
        );
        let (group, protocol) = (eviction.group.clone(), eviction.protocol);
        let count = pending.clone();
        let spawned = std::thread::Builder::new().name("evict".into()).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    warn!("no fast failover (cannot start a runtime: {e}); dead members expire after --session-timeout");
                    return;
                }
            };
            while let Ok(job) = rx.recv() {
                let t0 = Instant::now();
                let members = match &job {
                    Job::Evict { member_id, .. } => std::slice::from_ref(member_id),
                    Job::LeaveTogether { member_ids } => member_ids.as_slice(),
                };
                let result = rt.block_on(crate::group::evict(&eviction, members, &[]));
                match (job, result) {
                    (Job::Evict { slot, member_id }, Ok(())) => info!(
                        event = "evicted",
                        slot,
                        member = %member_id,
                        "slot {slot}: evicted its dead member {member_id} from the group in {} ms",
                        t0.elapsed().as_millis()
                    ),
                    (Job::Evict { slot, member_id }, Err(e)) => warn!(
                        "slot {slot}: could not evict dead member {member_id} ({e}); it expires after --session-timeout"
                    ),
                    (Job::LeaveTogether { member_ids }, Ok(())) => info!(
                        event = "left_together",
                        members = member_ids.len(),
                        "left group {group}: {} members {} ({} ms)",
                        member_ids.len(),
                        match protocol {
                            GroupProtocol::Classic => "in one LeaveGroup",
                            GroupProtocol::Consumer | GroupProtocol::Share => "(a leave heartbeat each)",
                        },
                        t0.elapsed().as_millis()
                    ),
                    (Job::LeaveTogether { member_ids }, Err(e)) => warn!(
                        "could not leave group {group} ({e}); its {} members expire after --session-timeout",
                        member_ids.len()
                    ),
                }
                count.fetch_sub(1, Ordering::SeqCst);
            }
        });
        match spawned {
            Ok(_) => Self {
                tx: Some(tx),
                pending,
            },
            Err(e) => {
                warn!("no fast failover (cannot start a thread: {e})");
                Self { tx: None, pending }
            }
        }
    }

    pub fn evict(&self, slot: u32, member_id: String) {
        self.send(Job::Evict { slot, member_id });
    }

    /// Remove all `member_ids` from the group in one LeaveGroup (shutdown).
    pub fn leave_together(&self, member_ids: Vec<String>) {
        self.send(Job::LeaveTogether { member_ids });
    }

    fn send(&self, job: Job) {
        if let Some(tx) = &self.tx {
            self.pending.fetch_add(1, Ordering::SeqCst);
            if tx.send(job).is_err() {
                self.pending.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    /// Give evictions in flight up to `within` to finish (before exiting).
    pub fn drain(&self, within: Duration) {
        let until = Instant::now() + within;
        while self.pending.load(Ordering::SeqCst) > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
