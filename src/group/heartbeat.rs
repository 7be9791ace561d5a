//! The heartbeat of one generation: a tokio task with its own connection to
//! the coordinator, beating every heartbeat interval. It publishes what it
//! learns on a watch channel and stops once the generation is over.
//! Works on a current_thread runtime (it only needs the worker to await).
//!
//! A rebalance does not end the generation for us yet: the worker first
//! drains its handler and commits (up to 0.75 of the rebalance timeout), and
//! the coordinator still expires a member whose heartbeats stop for a
//! session. So on REBALANCE_IN_PROGRESS the task says "rebalance" and beats
//! on until the worker's JoinGroup replaces it, as Java's heartbeat thread
//! does during its revocation callback. Without this, a drain longer than the
//! session (Kafka's 6 s minimum against a 7.5 s drain bound) cost the member
//! its place, and two members could evict each other in turn for ever.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::coordinator::connect_coordinator;
use super::errors::{classify, Class};
use crate::wire::codes::REBALANCE_IN_PROGRESS;
use crate::wire::group_msgs::{self, code_name};
use crate::wire::BrokerConn;

/// What the heartbeat knows about our generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Beat {
    /// Beating fine.
    Alive,
    /// The group rebalances, or our generation is stale: rejoin.
    /// `reset_member`: the coordinator forgot our member id.
    Rebalance { reset_member: bool },
    /// Retrying cannot help.
    Fatal(String),
}

#[derive(Debug, Clone)]
pub struct BeatParams {
    pub brokers: Vec<String>,
    pub client_id: String,
    pub connect_timeout: Duration,
    pub group: String,
    pub generation_id: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub interval: Duration,
    pub session_timeout: Duration,
    /// The coordinator the join went to (reused first).
    pub coordinator: Option<String>,
    /// The group's leader: the partition counts its assignment was made
    /// from. Checked every [`GROWTH_CHECK`]; a topic with more partitions
    /// now ends the generation, so the leader rejoins and the group
    /// rebalances onto them (another host, or `-p auto`, grew the topic).
    pub led_counts: Option<BTreeMap<String, i32>>,
}

/// How often the leader looks for partitions added to its topics.
pub const GROWTH_CHECK: Duration = Duration::from_secs(5);

/// A running heartbeat; dropping it stops the task.
#[derive(Debug)]
pub struct Heartbeat {
    task: JoinHandle<()>,
    rx: watch::Receiver<Beat>,
}

impl Heartbeat {
    pub fn start(p: BeatParams) -> Self {
        let (tx, rx) = watch::channel(Beat::Alive);
        let task = tokio::spawn(run(p, tx));
        Self { task, rx }
    }

    /// Resolves with the first non-`Alive` state. Cancel-safe.
    pub async fn changed(&mut self) -> Beat {
        loop {
            let now = self.rx.borrow_and_update().clone();
            if now != Beat::Alive {
                return now;
            }
            if self.rx.changed().await.is_err() {
                // The task ended without a verdict (aborted): treat as stale.
                return Beat::Rebalance {
                    reset_member: false,
                };
            }
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(p: BeatParams, tx: watch::Sender<Beat>) {
    let verdict = beat(&p, &tx).await;
    tracing::debug!(generation = p.generation_id, ?verdict, "heartbeat stops");
    let _ = tx.send(verdict);
}

async fn beat(p: &BeatParams, tx: &watch::Sender<Beat>) -> Beat {
    let mut conn: Option<BrokerConn> = None;
    let mut known = p.coordinator.clone();
    let mut last_ok = Instant::now();
    let mut next = tokio::time::Instant::now() + p.interval;
    // A request must finish well inside the session, or it is as good as lost.
    let request_timeout = p.session_timeout.max(Duration::from_secs(1));
    let mut growth_check = tokio::time::Instant::now() + GROWTH_CHECK;
    loop {
        tokio::time::sleep_until(next).await;
        next = tokio::time::Instant::now() + p.interval;
        if last_ok.elapsed() > p.session_timeout {
            // No heartbeat got through for a whole session: the coordinator
            // has dropped us by now.
            tracing::warn!(
                "no heartbeat reached the coordinator for {:?} (the session timeout); rejoining",
                last_ok.elapsed()
            );
            return Beat::Rebalance {
                reset_member: false,
            };
        }
        if conn.as_ref().is_none_or(BrokerConn::is_broken) {
            conn = reconnect(p, known.as_deref()).await;
            if conn.is_none() {
                continue;
            }
        }
        let c = conn.as_mut().unwrap();
        if let Some(led) = &p.led_counts {
            if tokio::time::Instant::now() >= growth_check {
                growth_check = tokio::time::Instant::now() + GROWTH_CHECK;
                let topics: Vec<String> = led.keys().cloned().collect();
                match tokio::time::timeout(
                    request_timeout,
                    group_msgs::partition_counts(c, &topics),
                )
                .await
                {
                    Ok(Ok(now)) => {
                        if let Some((t, was, is)) = grown(led, &now) {
                            tracing::info!(
                                "topic {t} grew from {was} to {is} partitions; rejoining so that the group takes them"
                            );
                            return Beat::Rebalance {
                                reset_member: false,
                            };
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::debug!("partition counts: {e}");
                        conn = None;
                        continue;
                    }
                    Err(_) => {
                        conn = None;
                        continue;
                    }
                }
            }
        }
        let c = conn.as_mut().unwrap();
        let fut = group_msgs::heartbeat(
            c,
            &p.group,
            p.generation_id,
            &p.member_id,
            p.instance_id.as_deref(),
        );
        let code = match tokio::time::timeout(request_timeout, fut).await {
            Ok(Ok(code)) => code,
            Ok(Err(e)) => {
                tracing::debug!("heartbeat: {e}");
                conn = None;
                continue;
            }
            Err(_) => {
                tracing::debug!("heartbeat: no answer within {request_timeout:?}");
                conn = None;
                continue;
            }
        };
        match classify(code, "Heartbeat") {
            Class::Ok => last_ok = Instant::now(),
            // Our session goes on while we drain: say so once, beat on.
            Class::Rejoin if code == REBALANCE_IN_PROGRESS => {
                last_ok = Instant::now();
                tx.send_if_modified(|b| {
                    let first = *b == Beat::Alive;
                    if first {
                        *b = Beat::Rebalance {
                            reset_member: false,
                        };
                    }
                    first
                });
            }
            Class::Rejoin => {
                return Beat::Rebalance {
                    reset_member: false,
                }
            }
            Class::ResetMember | Class::MemberIdRequired => {
                return Beat::Rebalance { reset_member: true }
            }
            Class::CoordinatorMoved => {
                tracing::debug!(
                    "heartbeat: {}; finding the coordinator again",
                    code_name(code)
                );
                conn = None;
                known = None;
            }
            Class::Retry => {}
            Class::Fatal(m) => return Beat::Fatal(m),
        }
    }
}

/// The first topic with more partitions `now` than when the assignment
/// was made: (topic, then, now).
fn grown(
    led: &BTreeMap<String, i32>,
    now: &BTreeMap<String, Result<i32, i16>>,
) -> Option<(String, i32, i32)> {
    led.iter().find_map(|(t, was)| match now.get(t) {
        Some(Ok(is)) if is > was => Some((t.clone(), *was, *is)),
        _ => None,
    })
}

/// The coordinator again (first the known address, then via FindCoordinator).
/// None if it cannot be reached right now; the caller tries at the next beat.
async fn reconnect(p: &BeatParams, known: Option<&str>) -> Option<BrokerConn> {
    let timeout = p.connect_timeout.min(p.session_timeout);
    if let Some(addr) = known {
        if let Ok(c) = BrokerConn::connect(addr, &p.client_id, timeout).await {
            return Some(c);
        }
    }
    connect_coordinator(&p.brokers, &p.client_id, timeout, timeout, &p.group)
        .await
        .map_err(|e| tracing::debug!("heartbeat: {e}"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_topic_with_more_partitions_counts_as_grown() {
        let led: BTreeMap<String, i32> = [("t".to_string(), 4), ("u".to_string(), 2)].into();
        let same: BTreeMap<String, Result<i32, i16>> =
            [("t".to_string(), Ok(4)), ("u".to_string(), Err(3))].into();
        assert_eq!(grown(&led, &same), None);
        let more: BTreeMap<String, Result<i32, i16>> = [("t".to_string(), Ok(6))].into();
        assert_eq!(grown(&led, &more), Some(("t".to_string(), 4, 6)));
    }
}
