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

use super::errors::{classify, Class};
use super::link::{CoordinatorLink, LinkSettings};
use super::requests::{Heartbeat, PartitionCounts};
use super::types::Beat;
use crate::wire::codes::REBALANCE_IN_PROGRESS;
use crate::wire::group_msgs::code_name;

#[derive(Debug, Clone)]
pub struct BeatParams {
    /// How to reach the coordinator (a window of at most a session).
    pub link: LinkSettings,
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
pub struct HeartbeatTask {
    task: JoinHandle<()>,
    rx: watch::Receiver<Beat>,
}

impl HeartbeatTask {
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

impl Drop for HeartbeatTask {
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
    let mut link = CoordinatorLink::starting_at(p.link.clone(), p.coordinator.clone());
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
        if tokio::time::Instant::now() >= growth_check {
            growth_check = tokio::time::Instant::now() + GROWTH_CHECK;
            match topic_grew(p, &mut link, request_timeout).await {
                Ok(true) => {
                    return Beat::Rebalance {
                        reset_member: false,
                    }
                }
                Ok(false) => {}
                Err(()) => continue,
            }
        }
        let req = Heartbeat {
            group: &p.group,
            generation_id: p.generation_id,
            member_id: &p.member_id,
            instance_id: p.instance_id.as_deref(),
        };
        let code = match link.call(req, request_timeout, "").await {
            Ok(code) => code,
            Err(step) => {
                tracing::debug!("heartbeat: {step:?}");
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
                link.forget();
            }
            Class::Retry => {}
            Class::Fatal(m) => return Beat::Fatal(m),
        }
    }
}

/// As the group's leader: whether a topic it assigned has more partitions
/// now. `Err` when the coordinator could not be asked (try again later).
async fn topic_grew(
    p: &BeatParams,
    link: &mut CoordinatorLink,
    timeout: Duration,
) -> Result<bool, ()> {
    let Some(led) = &p.led_counts else {
        return Ok(false);
    };
    let topics: Vec<String> = led.keys().cloned().collect();
    match link.call(PartitionCounts(&topics), timeout, "").await {
        Ok(now) => match grown(led, &now) {
            Some((t, was, is)) => {
                tracing::info!(
                    "topic {t} grew from {was} to {is} partitions; rejoining so that the group takes them"
                );
                Ok(true)
            }
            None => Ok(false),
        },
        Err(step) => {
            tracing::debug!("partition counts: {step:?}");
            Err(())
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
