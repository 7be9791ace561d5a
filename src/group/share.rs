//! Share-group membership (KIP-932, `--group-protocol share`): one
//! ShareGroupHeartbeat task per worker. The member id is ours (a UUID, as
//! the consumer protocol's); epoch 0 joins with the subscribed topic, the
//! broker's answer carries the member epoch, its heartbeat interval and,
//! when it changed, the assignment (topic id -> partitions). Partitions of
//! a share group are shared: many members may be assigned one partition,
//! and records, not partitions, are handed out (by ShareFetch). So there is
//! no revocation and no drain at a rebalance: the worker simply fetches
//! from whatever it is assigned now. Epoch -1 leaves.

use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::coordinator::connect_coordinator;
use super::errors::{classify, Class};
use super::GroupSettings;
use crate::wire::codes;
use crate::wire::group_msgs::code_name;
use crate::wire::share::{self as sw, ShareBeat};
use crate::wire::BrokerConn;

/// What the worker sees of its membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareState {
    /// Not (or no longer) a member with an assignment yet.
    Joining,
    /// A member at `epoch`, assigned `partitions` of our topic.
    Assigned { epoch: i32, partitions: Vec<i32> },
    /// Retrying cannot help (the broker has no share groups, no rights, ..).
    Fatal(String),
}

/// The exit-2 message for a broker without share groups.
pub fn unsupported_message(broker: &str, detail: &str) -> String {
    format!(
        "--group-protocol share: the broker {broker} does not offer share groups ({detail}); \
         share groups (KIP-932) need Apache Kafka 4.2 or newer (or 4.1 with the storage formatted \
         with --feature share.version=1, or enabled later with kafka-features upgrade \
         --feature share.version=1); use --group-protocol classic or consumer with this broker"
    )
}

/// A share-group member's heartbeat task.
pub struct ShareMember {
    pub member_id: String,
    state: watch::Receiver<ShareState>,
    leave: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Drop for ShareMember {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ShareMember {
    /// Start beating (joining at epoch 0) as a new member.
    pub fn start(s: GroupSettings) -> Self {
        let member_id = uuid::Builder::from_random_bytes(rand::random())
            .into_uuid()
            .to_string();
        let (tx, rx) = watch::channel(ShareState::Joining);
        let (leave_tx, leave_rx) = oneshot::channel();
        let task = tokio::spawn(beat_loop(s, member_id.clone(), tx, leave_rx));
        Self {
            member_id,
            state: rx,
            leave: Some(leave_tx),
            task,
        }
    }

    pub fn state(&self) -> watch::Receiver<ShareState> {
        self.state.clone()
    }

    /// Leave the group (epoch -1), waiting at most `within`.
    pub async fn leave(&mut self, within: Duration) {
        if let Some(tx) = self.leave.take() {
            let _ = tx.send(());
        }
        let _ = tokio::time::timeout(within, &mut self.task).await;
    }
}

/// A heartbeat with epoch -1 for `member_id`, on behalf of a dead worker
/// (the supervisor's eviction, or a replacement worker cleaning up after
/// the member it was meant to take over): its share of the partitions goes
/// to the others now, not after the session timeout.
pub async fn evict(s: &GroupSettings, member_id: &str) -> anyhow::Result<()> {
    let mut conn = connect_coordinator(
        &s.brokers,
        &s.client_id,
        s.connect_timeout,
        s.connect_timeout,
        &s.group,
    )
    .await?;
    let a = sw::share_group_heartbeat(
        &mut conn,
        &ShareBeat {
            group: &s.group,
            member_id,
            member_epoch: -1,
            topics: None,
        },
    )
    .await?;
    match a.error {
        codes::NONE | codes::UNKNOWN_MEMBER_ID | codes::GROUP_ID_NOT_FOUND => Ok(()),
        e => anyhow::bail!("leave heartbeat for {member_id}: {}", code_name(e)),
    }
}

/// How one heartbeat answer's error code is dealt with.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Ok,
    /// Join again at epoch 0 under the same member id.
    Rejoin,
    /// Find the coordinator again.
    Reconnect,
    /// Pause and beat again.
    Retry,
    Fatal(String),
}

fn judge(error: i16, message: Option<&str>, broker: &str) -> Next {
    let said = message
        .filter(|m| !m.is_empty())
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    match error {
        codes::NONE => Next::Ok,
        // A broker with share groups off answers so (Kafka 4.1 without
        // share.version=1, or a newer one with it set back to 0).
        codes::UNSUPPORTED_VERSION => Next::Fatal(unsupported_message(
            broker,
            &format!("ShareGroupHeartbeat failed with {}{said}", code_name(error)),
        )),
        codes::INVALID_REQUEST | codes::GROUP_ID_NOT_FOUND
            if said.to_ascii_lowercase().contains("share") && said.contains("enable") =>
        {
            Next::Fatal(unsupported_message(
                broker,
                &format!("ShareGroupHeartbeat failed with {}{said}", code_name(error)),
            ))
        }
        // The group id belongs to a consumer group (or another type).
        codes::GROUP_ID_NOT_FOUND | codes::INCONSISTENT_GROUP_PROTOCOL => Next::Fatal(format!(
            "--group-protocol share: ShareGroupHeartbeat failed with {}{said}; the group id is \
             probably in use by a consumer group of another type: give the share group its own --group",
            code_name(error)
        )),
        _ => match classify(error, "ShareGroupHeartbeat") {
            Class::Ok => Next::Ok,
            Class::Rejoin | Class::ResetMember | Class::MemberIdRequired => Next::Rejoin,
            Class::CoordinatorMoved => Next::Reconnect,
            Class::Retry => Next::Retry,
            Class::Fatal(m) => Next::Fatal(format!("--group-protocol share: {m}{said}")),
        },
    }
}

/// How often to beat: the broker's interval, but at most 1 s (so that a new
/// assignment reaches every member soon) and at least our own.
fn beat_interval(broker_ms: i32, ours: Duration) -> Duration {
    let broker = Duration::from_millis(broker_ms.max(0) as u64);
    let cap = Duration::from_secs(1).max(ours);
    if broker.is_zero() {
        cap
    } else {
        broker.min(cap)
    }
}

/// The partitions of our topic in an assignment (we subscribe to one topic).
fn ours(assignment: &[(u128, Vec<i32>)]) -> Vec<i32> {
    let mut p: Vec<i32> = assignment
        .iter()
        .take(1)
        .flat_map(|(_, p)| p.iter().copied())
        .collect();
    p.sort_unstable();
    p.dedup();
    p
}

async fn beat_loop(
    s: GroupSettings,
    member_id: String,
    tx: watch::Sender<ShareState>,
    mut leave: oneshot::Receiver<()>,
) {
    let topics = vec![s.topic.clone()];
    let mut conn: Option<BrokerConn> = None;
    let mut epoch = 0;
    let mut partitions: Vec<i32> = Vec::new();
    let mut interval = Duration::ZERO;
    let mut failures: u32 = 0;
    let mut leaving = false;
    loop {
        if !leaving {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = &mut leave => leaving = true,
            }
        }
        if leaving && epoch == 0 {
            return; // never joined: nothing to leave
        }
        if conn.as_ref().is_none_or(BrokerConn::is_broken) {
            match connect_coordinator(
                &s.brokers,
                &s.client_id,
                s.connect_timeout,
                s.connect_timeout,
                &s.group,
            )
            .await
            {
                Ok(c) => {
                    if !sw::supports_share_groups(&c) {
                        let detail = format!("its ApiVersions lists {}", sw::share_support(&c));
                        tx.send_replace(ShareState::Fatal(unsupported_message(c.addr(), &detail)));
                        return;
                    }
                    conn = Some(c);
                }
                Err(crate::group::GroupError::Fatal(m)) => {
                    tx.send_replace(ShareState::Fatal(m));
                    return;
                }
                Err(e) => {
                    if leaving {
                        return;
                    }
                    tracing::warn!("share group heartbeat: {e:#}; retrying");
                    interval = Duration::from_millis(500);
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected above");
        let beat = ShareBeat {
            group: &s.group,
            member_id: &member_id,
            member_epoch: if leaving { -1 } else { epoch },
            topics: (epoch == 0).then_some(topics.as_slice()),
        };
        let answer =
            tokio::time::timeout(s.request_timeout(), sw::share_group_heartbeat(c, &beat)).await;
        let a = match answer {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                if let crate::wire::WireError::Unsupported { .. } = e {
                    let detail = e.to_string();
                    tx.send_replace(ShareState::Fatal(unsupported_message(c.addr(), &detail)));
                    return;
                }
                if leaving {
                    return;
                }
                tracing::debug!("share group heartbeat: {e}; reconnecting");
                conn = None;
                failures += 1;
                interval = Duration::from_millis(200 * u64::from(failures.min(10)));
                continue;
            }
            Err(_) => {
                if leaving {
                    return;
                }
                conn = None;
                interval = Duration::from_millis(200);
                continue;
            }
        };
        if leaving {
            tracing::debug!(member = %member_id, error = a.error, "left the share group");
            return;
        }
        let addr = c.addr().to_string();
        match judge(a.error, a.error_message.as_deref(), &addr) {
            Next::Ok => {
                failures = 0;
                epoch = a.member_epoch;
                interval = beat_interval(a.heartbeat_interval_ms, s.heartbeat_interval);
                let mut changed = matches!(*tx.borrow(), ShareState::Joining);
                if let Some(asg) = &a.assignment {
                    let now = ours(asg);
                    changed |= now != partitions;
                    partitions = now;
                }
                // Until the broker's assignor has given us partitions (it
                // runs every group.share.assignment.interval.ms, 1 s), beat
                // at our own interval so that the first records come soon.
                if partitions.is_empty() {
                    interval = interval.min(s.heartbeat_interval);
                }
                if changed {
                    tx.send_replace(ShareState::Assigned {
                        epoch,
                        partitions: partitions.clone(),
                    });
                }
            }
            Next::Rejoin => {
                tracing::info!(
                    member = %member_id,
                    "share group heartbeat: {}; joining again",
                    code_name(a.error)
                );
                epoch = 0;
                partitions.clear();
                tx.send_replace(ShareState::Joining);
                interval = Duration::ZERO;
            }
            Next::Reconnect => {
                conn = None;
                interval = Duration::from_millis(100);
            }
            Next::Retry => interval = Duration::from_millis(500),
            Next::Fatal(m) => {
                tx.send_replace(ShareState::Fatal(m));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_of_a_broker_without_share_groups_name_the_flag_and_the_version() {
        let Next::Fatal(m) = judge(codes::UNSUPPORTED_VERSION, None, "b:1") else {
            panic!()
        };
        assert!(
            m.contains("--group-protocol share")
                && m.contains("4.2")
                && m.contains("share.version=1"),
            "{m}"
        );
        let Next::Fatal(m) = judge(
            codes::INVALID_REQUEST,
            Some("Share groups are not enabled"),
            "b:1",
        ) else {
            panic!()
        };
        assert!(m.contains("4.2"), "{m}");
        let Next::Fatal(m) = judge(
            codes::GROUP_ID_NOT_FOUND,
            Some("Group g is not a share group"),
            "b:1",
        ) else {
            panic!()
        };
        assert!(m.contains("--group"), "{m}");
    }

    #[test]
    fn fenced_members_rejoin_and_moves_reconnect() {
        assert_eq!(judge(codes::FENCED_MEMBER_EPOCH, None, "b"), Next::Rejoin);
        assert_eq!(judge(codes::UNKNOWN_MEMBER_ID, None, "b"), Next::Rejoin);
        assert_eq!(judge(codes::NOT_COORDINATOR, None, "b"), Next::Reconnect);
        assert_eq!(
            judge(codes::COORDINATOR_LOAD_IN_PROGRESS, None, "b"),
            Next::Retry
        );
        assert_eq!(judge(codes::NONE, None, "b"), Next::Ok);
    }

    #[test]
    fn beat_interval_follows_the_broker_within_bounds() {
        let ours = Duration::from_millis(250);
        assert_eq!(beat_interval(5000, ours), Duration::from_secs(1));
        assert_eq!(beat_interval(300, ours), Duration::from_millis(300));
        assert_eq!(beat_interval(0, ours), Duration::from_secs(1));
        assert_eq!(ours_of(), vec![0, 2]);
    }

    fn ours_of() -> Vec<i32> {
        ours(&[(7, vec![2, 0, 2])])
    }
}
