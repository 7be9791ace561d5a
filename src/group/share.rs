//! Share-group membership (KIP-932, `--group-protocol share`): one
//! ShareGroupHeartbeat task per worker. The member id is ours, a Kafka
//! `Uuid` in its text form (22 characters of URL-safe base64, as the
//! consumer protocol's): Kafka 4.1 parses it as one on every ShareFetch and
//! answers UNKNOWN_SERVER_ERROR to anything else. Epoch 0 joins with the subscribed topic, the
//! broker's answer carries the member epoch, its heartbeat interval and,
//! when it changed, the assignment (topic id -> partitions). Partitions of
//! a share group are shared: many members may be assigned one partition,
//! and records, not partitions, are handed out (by ShareFetch). So there is
//! no revocation and no drain at a rebalance: the worker simply fetches
//! from whatever it is assigned now. Epoch -1 leaves.

use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::common::link_settings;
use super::consumer::ours;
pub use super::errors::share_unsupported_message as unsupported_message;
use super::errors::{classify_share, Class};
use super::link::{CoordinatorLink, Step};
use super::requests::ShareHeartbeat;
use super::streak::{share_error_limit, ErrorStreaks, ShareRequest};
use super::types::{GroupError, GroupSettings};
use crate::wire::group_msgs::code_name;
use crate::wire::share::{self as sw, ShareBeat, ShareBeatAnswer};

/// What the worker sees of its membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareState {
    /// Not (or no longer) a member with an assignment yet.
    Joining,
    /// A member at `epoch`, assigned `partitions` of our topic.
    Assigned { epoch: i32, partitions: Vec<i32> },
    /// Retrying cannot help (the broker has no share groups, no rights, ..).
    Fatal(String),
    /// The coordinator answered every heartbeat with an error for a whole
    /// session timeout: the worker ends, and a restart may help.
    Failing(String),
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
        let member_id = super::consumer::new_member_id();
        let (tx, rx) = watch::channel(ShareState::Joining);
        let (leave_tx, leave_rx) = oneshot::channel();
        let limit = share_error_limit(s.session_timeout, s.session_timeout_auto);
        let beats = ShareBeats {
            link: CoordinatorLink::new(link_settings(&s)),
            topics: vec![s.topic.clone()],
            s,
            member_id: member_id.clone(),
            tx,
            epoch: 0,
            partitions: Vec::new(),
            interval: Duration::ZERO,
            failures: 0,
            errors: ErrorStreaks::new(limit),
        };
        let task = tokio::spawn(beats.run(leave_rx));
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

/// The heartbeat task's state.
struct ShareBeats {
    s: GroupSettings,
    link: CoordinatorLink,
    member_id: String,
    topics: Vec<String>,
    tx: watch::Sender<ShareState>,
    epoch: i32,
    partitions: Vec<i32>,
    /// Until the next beat.
    interval: Duration,
    /// Failed requests in a row (the pause grows with them).
    failures: u32,
    /// Error answers in a row.
    errors: ErrorStreaks,
}

/// Why the heartbeat task ends.
enum Fatal {
    /// Retrying cannot help: the reason, for [`ShareState::Fatal`].
    Refused(String),
    /// Error answers for a whole session: [`ShareState::Failing`].
    Stuck(String),
}

impl ShareBeats {
    async fn run(mut self, mut leave: oneshot::Receiver<()>) {
        loop {
            let leaving = tokio::select! {
                _ = tokio::time::sleep(self.interval) => false,
                _ = &mut leave => true,
            };
            if leaving {
                self.leave().await;
                return;
            }
            match self.beat().await {
                Ok(()) => {}
                Err(Fatal::Refused(m)) => {
                    self.tx.send_replace(ShareState::Fatal(m));
                    return;
                }
                Err(Fatal::Stuck(m)) => {
                    self.tx.send_replace(ShareState::Failing(m));
                    return;
                }
            }
        }
    }

    /// One heartbeat, and what its answer means.
    async fn beat(&mut self) -> Result<(), Fatal> {
        let Some(ans) = self.send(self.epoch).await? else {
            return Ok(());
        };
        let broker = self.link.addr().unwrap_or_default();
        let class = classify_share(ans.error, ans.error_message.as_deref(), &broker);
        if class == Class::Ok {
            self.errors.answered(ShareRequest::Heartbeat, &broker);
        } else if !matches!(class, Class::Fatal(_)) {
            let error = format!(
                "{}{}",
                code_name(ans.error),
                ans.error_message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            );
            let now = std::time::Instant::now();
            if let Some(why) = self
                .errors
                .failed(ShareRequest::Heartbeat, &broker, &error, now)
            {
                return Err(Fatal::Stuck(why));
            }
        }
        match class {
            Class::Ok => self.learn(&ans),
            Class::ResetMember | Class::Rejoin | Class::MemberIdRequired => {
                tracing::info!(
                    member = %self.member_id,
                    "share group heartbeat: {}; joining again",
                    code_name(ans.error)
                );
                self.epoch = 0;
                self.partitions.clear();
                self.tx.send_replace(ShareState::Joining);
                self.interval = Duration::ZERO;
            }
            Class::CoordinatorMoved => {
                self.link.forget();
                self.interval = Duration::from_millis(100);
            }
            Class::Retry => self.interval = Duration::from_millis(500),
            Class::Fatal(m) => return Err(Fatal::Refused(m)),
        }
        Ok(())
    }

    /// Send a heartbeat at `epoch`. `Ok(None)`: no answer (paced for the
    /// next try); `Err`: retrying cannot help.
    async fn send(&mut self, epoch: i32) -> Result<Option<ShareBeatAnswer>, Fatal> {
        let conn = match self.link.conn().await {
            Ok(c) => c,
            Err(GroupError::Fatal(m)) => return Err(Fatal::Refused(m)),
            Err(e) => {
                tracing::warn!("share group heartbeat: {e:#}; retrying");
                self.interval = Duration::from_millis(500);
                return Ok(None);
            }
        };
        if !sw::supports_share_groups(conn) {
            let detail = format!("its ApiVersions lists {}", sw::share_support(conn));
            return Err(Fatal::Refused(unsupported_message(conn.addr(), &detail)));
        }
        let hint = unsupported_message(conn.addr(), "it lacks ShareGroupHeartbeat v1");
        let req = ShareBeat {
            group: &self.s.group,
            member_id: &self.member_id,
            member_epoch: epoch,
            topics: (epoch == 0).then_some(self.topics.as_slice()),
        };
        match self
            .link
            .call(ShareHeartbeat(&req), self.s.request_timeout(), &hint)
            .await
        {
            Ok(a) => Ok(Some(a)),
            Err(Step::Fail(GroupError::Fatal(m))) => Err(Fatal::Refused(m)),
            Err(step) => {
                tracing::debug!("share group heartbeat: {step:?}; reconnecting");
                self.failures += 1;
                self.interval = Duration::from_millis(200 * u64::from(self.failures.min(10)));
                Ok(None)
            }
        }
    }

    /// Take in a successful answer: the epoch, the interval, the assignment.
    fn learn(&mut self, a: &ShareBeatAnswer) {
        self.failures = 0;
        self.epoch = a.member_epoch;
        self.interval = beat_interval(a.heartbeat_interval_ms, self.s.heartbeat_interval);
        let mut changed = matches!(*self.tx.borrow(), ShareState::Joining);
        if let Some(asg) = &a.assignment {
            let (_, now) = ours(asg);
            changed |= now != self.partitions;
            self.partitions = now;
        }
        // Until the broker's assignor has given us partitions (it runs every
        // group.share.assignment.interval.ms, 1 s), beat at our own interval
        // so that the first records come soon.
        if self.partitions.is_empty() {
            self.interval = self.interval.min(self.s.heartbeat_interval);
        }
        if changed {
            self.tx.send_replace(ShareState::Assigned {
                epoch: self.epoch,
                partitions: self.partitions.clone(),
            });
        }
    }

    /// Leave (epoch -1), once, if we ever joined.
    async fn leave(&mut self) {
        if self.epoch == 0 {
            return; // never joined: nothing to leave
        }
        if let Ok(Some(a)) = self.send(super::consumer::LEAVE_EPOCH).await {
            tracing::debug!(member = %self.member_id, error = a.error, "left the share group");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beat_interval_follows_the_broker_within_bounds() {
        let ours = Duration::from_millis(250);
        assert_eq!(beat_interval(5000, ours), Duration::from_secs(1));
        assert_eq!(beat_interval(300, ours), Duration::from_millis(300));
        assert_eq!(beat_interval(0, ours), Duration::from_secs(1));
    }
}
