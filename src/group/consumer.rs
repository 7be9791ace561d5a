//! The next-generation consumer group protocol (KIP-848, `--group-protocol
//! consumer`): no JoinGroup/SyncGroup and no group-wide barrier. A member
//! sends ConsumerGroupHeartbeat (member id chosen by us, member epoch, the
//! partitions it owns); the broker computes the assignment and answers with
//! the partitions the member may own now. Partitions move one member at a
//! time: the broker gives a partition to its new owner only after the old
//! owner's heartbeat no longer lists it (or its rebalance timeout ran out).
//!
//! How a worker uses it, through the same [`Member`] calls as the classic
//! protocol: `join` starts at epoch 0 and returns the first assignment; the
//! heartbeat task below keeps beating with the partitions the worker owns;
//! when the broker's answer differs, `rebalance_needed` fires, the worker
//! drains and commits, and its next `join` takes the new set (released
//! partitions are thereby acknowledged, with an immediate heartbeat). A
//! fenced member (FENCED_MEMBER_EPOCH, UNKNOWN_MEMBER_ID) gives everything up
//! and joins again at epoch 0 under the same member id.
//!
//! Nothing binds a member to a connection: a replacement worker that beats
//! with the member id and epoch of a dead one carries on as that member
//! ([`Member::resume`]), so a SIGKILLed worker's partitions do not move.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::common::{link_settings, Common, ProtocolMember};
use super::errors::{classify, Class};
use super::link::{CoordinatorLink, Pacer, Step};
use super::requests::{ConsumerHeartbeat, TopicIdOf};
use super::types::{Assigned, Beat, GroupError, GroupSettings};
use crate::wire::consumer_group::{self as cg, ConsumerBeat, ConsumerBeatAnswer, TopicId};
use crate::wire::group_msgs::code_name;
use crate::wire::BrokerConn;

/// Resolves with the next member epoch from [`Member::epochs`]; never
/// without one (or once its heartbeat has ended).
pub async fn next_epoch(rx: &mut Option<watch::Receiver<i32>>) -> i32 {
    if let Some(r) = rx.as_mut() {
        if r.changed().await.is_ok() {
            return *r.borrow_and_update();
        }
    }
    *rx = None;
    std::future::pending().await
}

/// Epoch -1: leave the group (a static member too: it is gone for good).
pub const LEAVE_EPOCH: i32 = -1;

/// What the member and its heartbeat task share.
#[derive(Debug)]
struct Shared {
    epoch: i32,
    /// The partitions we own (and tell the broker we own).
    owned: Vec<i32>,
    /// Our topic's id, learnt from an assignment or from Metadata.
    topic_id: Option<TopicId>,
    /// What the broker last said we may own, when it differs from `owned`.
    target: Option<Vec<i32>>,
    /// The broker's heartbeat interval.
    interval: Duration,
}

/// A member id of our own making (KIP-1082, and KIP-932's share members):
/// 16 random bytes written as Kafka's `Uuid` writes them (URL-safe base64
/// without padding, 22 characters), and like `Uuid.randomUuid` never
/// starting with '-' (such an id would read as an option to a CLI tool).
/// Brokers that parse member ids as a `Uuid` (Kafka 4.1's share groups)
/// refuse any other form.
pub fn new_member_id() -> String {
    loop {
        let bytes: [u8; 16] = rand::random();
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        if !id.starts_with('-') && bytes != [0; 16] {
            return id;
        }
    }
}

/// The partitions of our topic in an assignment, and its topic id. We
/// subscribe to one topic, so an assignment names at most one.
pub(crate) fn ours(assignment: &[(TopicId, Vec<i32>)]) -> (Option<TopicId>, Vec<i32>) {
    let mut id = None;
    let mut parts = Vec::new();
    for (t, p) in assignment {
        if id.is_none() || id == Some(*t) {
            id = Some(*t);
            parts.extend_from_slice(p);
        } else {
            tracing::warn!(
                "the broker assigned partitions of a second topic {t:032x}; ignoring them"
            );
        }
    }
    parts.sort_unstable();
    parts.dedup();
    (id, parts)
}

/// The heartbeat of a member in good standing: its own connection, beating
/// every broker-given interval and at once when poked.
#[derive(Debug)]
pub(super) struct Beating {
    task: JoinHandle<()>,
    shared: Arc<Mutex<Shared>>,
    state: Arc<watch::Sender<Beat>>,
    rx: watch::Receiver<Beat>,
    epoch_rx: watch::Receiver<i32>,
    poke: Arc<Notify>,
}

impl Drop for Beating {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Beating {
    fn start(
        s: &GroupSettings,
        member_id: &str,
        shared: Shared,
        coordinator: Option<String>,
    ) -> Self {
        let (tx, rx) = watch::channel(Beat::Alive);
        let (epoch_tx, epoch_rx) = watch::channel(shared.epoch);
        let state = Arc::new(tx);
        let shared = Arc::new(Mutex::new(shared));
        let poke = Arc::new(Notify::new());
        // Beat at once: it acknowledges what we now own.
        poke.notify_one();
        let link = CoordinatorLink::starting_at(link_settings(s), coordinator);
        let task = tokio::spawn(beat_loop(
            BeatLoop {
                s: s.clone(),
                member_id: member_id.to_string(),
                shared: shared.clone(),
                state: state.clone(),
                epoch_tx,
                poke: poke.clone(),
            },
            link,
        ));
        Self {
            task,
            shared,
            state,
            rx,
            epoch_rx,
            poke,
        }
    }

    fn epoch(&self) -> i32 {
        self.shared.lock().unwrap().epoch
    }

    fn ended(&self) -> bool {
        self.task.is_finished()
    }

    /// Take the broker's latest assignment as what we own, and say so at once.
    fn accept_target(&self) -> (i32, Vec<i32>) {
        let mut sh = self.shared.lock().unwrap();
        if let Some(t) = sh.target.take() {
            sh.owned = t;
        }
        self.state.send_replace(Beat::Alive);
        self.poke.notify_one();
        (sh.epoch, sh.owned.clone())
    }
}

struct BeatLoop {
    s: GroupSettings,
    member_id: String,
    shared: Arc<Mutex<Shared>>,
    state: Arc<watch::Sender<Beat>>,
    epoch_tx: watch::Sender<i32>,
    poke: Arc<Notify>,
}

async fn beat_loop(b: BeatLoop, mut link: CoordinatorLink) {
    let verdict = b.beat(&mut link).await;
    tracing::debug!(member = %b.member_id, ?verdict, "consumer heartbeat stops");
    b.state.send_replace(verdict);
}

impl BeatLoop {
    /// Beat until fenced or failed: every broker-given interval, and at
    /// once when poked.
    async fn beat(&self, link: &mut CoordinatorLink) -> Beat {
        let request_timeout = self.s.request_timeout();
        loop {
            let interval = self.shared.lock().unwrap().interval;
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.poke.notified() => {}
            }
            let Some(topic_id) = self.topic_id(link, request_timeout).await else {
                continue;
            };
            let (epoch, owned) = {
                let sh = self.shared.lock().unwrap();
                (sh.epoch, sh.owned.clone())
            };
            let topics = [self.s.topic.clone()];
            let req = request(
                &self.s,
                &self.member_id,
                epoch,
                &topics,
                topic_id.map(|id| (id, owned.as_slice())),
            );
            let ans = match link
                .call(ConsumerHeartbeat(&req), request_timeout, "")
                .await
            {
                Ok(a) => a,
                Err(step) => {
                    tracing::debug!("consumer heartbeat: {step:?}");
                    if link.addr().is_none() {
                        // No coordinator found: try again soon.
                        self.poke.notify_one();
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    continue;
                }
            };
            match classify(ans.error, "ConsumerGroupHeartbeat") {
                Class::Ok => self.learn(&ans),
                Class::ResetMember | Class::Rejoin | Class::MemberIdRequired => {
                    tracing::info!(
                        member = %self.member_id,
                        "the coordinator fenced member epoch {epoch} ({}); joining again",
                        code_name(ans.error)
                    );
                    return Beat::Rebalance { reset_member: true };
                }
                Class::CoordinatorMoved => {
                    link.forget();
                    self.poke.notify_one();
                }
                Class::Retry => {}
                Class::Fatal(m) => return Beat::Fatal(with_message(m, &ans)),
            }
        }
    }

    /// Our topic's id, which names the partitions we own: looked up once (a
    /// worker that took a member over knows the partitions, not the id).
    /// `None`: not known yet, beat again later. `Some(None)`: not needed.
    async fn topic_id(
        &self,
        link: &mut CoordinatorLink,
        timeout: Duration,
    ) -> Option<Option<TopicId>> {
        let (known, owns) = {
            let sh = self.shared.lock().unwrap();
            (sh.topic_id, !sh.owned.is_empty())
        };
        if known.is_some() || !owns {
            return Some(known);
        }
        match link.call(TopicIdOf(&self.s.topic), timeout, "").await {
            Ok(Ok(id)) => {
                self.shared.lock().unwrap().topic_id = Some(id);
                Some(Some(id))
            }
            Ok(Err(code)) => {
                tracing::debug!(
                    "consumer heartbeat: topic id of {}: {}",
                    self.s.topic,
                    code_name(code)
                );
                None
            }
            Err(step) => {
                tracing::debug!("consumer heartbeat: topic id: {step:?}");
                None
            }
        }
    }

    /// Take in a successful answer: the epoch, the interval, and a new
    /// assignment (which ends the worker's current set of partitions).
    fn learn(&self, ans: &ConsumerBeatAnswer) {
        let mut sh = self.shared.lock().unwrap();
        if ans.heartbeat_interval_ms > 0 {
            sh.interval = beat_interval(&self.s, ans.heartbeat_interval_ms);
        }
        if ans.member_epoch > 0 && ans.member_epoch != sh.epoch {
            sh.epoch = ans.member_epoch;
            self.epoch_tx.send_replace(sh.epoch);
        }
        let Some(a) = &ans.assignment else { return };
        let (id, parts) = ours(a);
        if id.is_some() {
            sh.topic_id = id;
        }
        if parts == sh.owned {
            sh.target = None;
            return;
        }
        tracing::debug!(member = %self.member_id, epoch = sh.epoch, owned = ?sh.owned, assigned = ?parts, "new assignment");
        sh.target = Some(parts);
        self.state.send_if_modified(|b| {
            let first = *b == Beat::Alive;
            if first {
                *b = Beat::Rebalance {
                    reset_member: false,
                };
            }
            first
        });
    }
}

/// How often to beat: the broker's interval (5 s by default, 5 s at the
/// least) or `--heartbeat-interval`, whichever is shorter. The broker hands
/// a released partition to its next owner only in an answer to that owner's
/// heartbeat, so its interval is how long a partition may sit idle on every
/// move; kswarm beats as often as its classic members do (250 ms by default)
/// and moves partitions in about that time.
fn beat_interval(s: &GroupSettings, broker_ms: i32) -> Duration {
    if broker_ms > 0 {
        s.heartbeat_interval
            .min(Duration::from_millis(broker_ms as u64))
    } else {
        s.heartbeat_interval
    }
}

/// A full heartbeat: every field set, so that the broker never depends on
/// what an earlier (maybe lost) request told it.
fn request<'a>(
    s: &'a GroupSettings,
    member_id: &'a str,
    epoch: i32,
    topics: &'a [String],
    owned: Option<(TopicId, &'a [i32])>,
) -> ConsumerBeat<'a> {
    ConsumerBeat {
        group: &s.group,
        member_id,
        member_epoch: epoch,
        instance_id: s.instance_id.as_deref(),
        rebalance_timeout_ms: Some(super::classic::millis(s.rebalance_timeout)),
        topics: Some(topics),
        server_assignor: s.remote_assignor.as_deref(),
        // Nothing owned yet: an empty list (no topic id needed).
        owned: Some(owned.unwrap_or((0, &[]))),
    }
}

fn with_message(m: String, ans: &ConsumerBeatAnswer) -> String {
    match ans.error_message.as_deref() {
        Some(x) if !x.is_empty() => format!("{m} (the broker says: {x})"),
        _ => m,
    }
}

pub(crate) const CONSUMER_HINT: &str = "--group-protocol consumer needs a broker with KIP-848's ConsumerGroupHeartbeat v1 (Apache Kafka 4.0 or later, with group.coordinator.rebalance.protocols including consumer); use --group-protocol classic";

/// Whether `conn`'s broker can host a consumer-protocol member; the error
/// names the flag and the way out.
pub(crate) fn check_broker(conn: &BrokerConn) -> Result<(), GroupError> {
    if cg::supports_consumer_groups(conn) {
        Ok(())
    } else {
        Err(GroupError::Fatal(format!(
            "broker {}: {CONSUMER_HINT}",
            conn.addr()
        )))
    }
}

/// The consumer protocol's own state.
#[derive(Debug)]
pub(crate) struct Consumer {
    /// The member epoch of the last join (the heartbeat keeps the latest).
    epoch: i32,
    /// The heartbeat of a member in good standing.
    beating: Option<Beating>,
}

impl Consumer {
    /// A member of a consumer-protocol group, if the broker can host one.
    pub(crate) async fn new(c: &mut Common) -> Result<Self, GroupError> {
        check_broker(c.link.conn().await?)?;
        Ok(Self {
            epoch: -1,
            beating: None,
        })
    }

    async fn join_once(&mut self, c: &mut Common) -> Result<Assigned, Step> {
        let topics = [c.s.topic.clone()];
        let member_id = c.id.get().to_string();
        let req = request(&c.s, &member_id, 0, &topics, None);
        check_broker(c.link.conn().await?)?;
        let ans = c
            .link
            .call(
                ConsumerHeartbeat(&req),
                c.s.request_timeout(),
                CONSUMER_HINT,
            )
            .await?;
        match classify(ans.error, "ConsumerGroupHeartbeat") {
            Class::Ok => {}
            // At epoch 0 the group is created if missing: this one exists and
            // is no consumer group kswarm may turn into one.
            _ if ans.error == crate::wire::codes::GROUP_ID_NOT_FOUND => {
                return Err(Step::Fail(GroupError::Fatal(with_message(format!(
                    "--group {} is a group the broker will not convert to --group-protocol consumer \
                     (a classic group whose members are not all plain consumers, a share or streams \
                     group, or group.consumer.migration.policy forbids it); use --group-protocol \
                     classic, or another --group",
                    c.s.group
                ), &ans))))
            }
            Class::ResetMember => {
                // Our id is fenced (a rejoin under a dead worker's id on
                // Kafka before 4.2): join as a new member.
                c.id.set(&new_member_id());
                return Err(Step::Again);
            }
            Class::Fatal(m) => return Err(Step::Fail(GroupError::Fatal(with_message(m, &ans)))),
            Class::CoordinatorMoved => {
                c.link.forget();
                return Err(Step::Pause(format!("ConsumerGroupHeartbeat: {}", code_name(ans.error))));
            }
            _ => {
                return Err(Step::Pause(format!(
                    "ConsumerGroupHeartbeat: {}{}",
                    code_name(ans.error),
                    ans.error_message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default()
                )))
            }
        }
        let (topic_id, partitions) = ours(ans.assignment.as_deref().unwrap_or_default());
        let epoch = ans.member_epoch;
        self.epoch = epoch;
        tracing::debug!(member = %c.id.get(), epoch, ?partitions, "joined (consumer protocol)");
        self.start_beating(
            c,
            epoch,
            partitions.clone(),
            topic_id,
            ans.heartbeat_interval_ms,
        );
        Ok(assigned(c, epoch, partitions))
    }

    fn start_beating(
        &mut self,
        c: &Common,
        epoch: i32,
        owned: Vec<i32>,
        topic_id: Option<TopicId>,
        interval_ms: i32,
    ) {
        let interval = beat_interval(&c.s, interval_ms);
        self.beating = Some(Beating::start(
            &c.s,
            c.id.get(),
            Shared {
                epoch,
                owned,
                topic_id,
                target: None,
                interval,
            },
            c.link.addr(),
        ));
    }
}

impl ProtocolMember for Consumer {
    fn generation_id(&self) -> i32 {
        self.epoch
    }

    /// The next assignment. A member in good standing takes the broker's
    /// latest one (the worker has drained and committed what it gives up);
    /// otherwise it joins at epoch 0.
    async fn join(&mut self, c: &mut Common) -> Result<Assigned, GroupError> {
        if let Some(b) = self.beating.as_ref() {
            if !b.ended() {
                let (epoch, partitions) = b.accept_target();
                self.epoch = epoch;
                return Ok(assigned(c, epoch, partitions));
            }
            // Fenced: Kafka before 4.2 refuses epoch 0 under the old id until
            // its session expires, so start over as a new member.
            c.id.clear();
        }
        self.beating = None;
        if c.id.is_empty() {
            c.id.set(&new_member_id());
        }
        let what = format!("joining --group {} (--group-protocol consumer)", c.s.group);
        let mut pacer = Pacer::new(c.s.connect_timeout.max(c.s.session_timeout));
        loop {
            match self.join_once(c).await {
                Ok(a) => return Ok(a),
                Err(step) => pacer.step(&what, step).await?,
            }
        }
    }

    /// Join at the next [`Consumer::join`] under `member_id`.
    fn rejoin_as(&mut self, c: &mut Common, member_id: &str) {
        self.beating = None;
        c.id.assume(member_id);
        self.epoch = -1;
    }

    /// Carry on as the member a dead worker was: nothing binds a member to
    /// a connection.
    fn resume(&mut self, c: &mut Common, epoch: i32, partitions: &[i32]) {
        self.epoch = epoch;
        self.start_beating(c, epoch, partitions.to_vec(), None, 0);
    }

    /// The epoch to commit with: the heartbeat's latest.
    fn commit_generation(&self) -> i32 {
        self.beating.as_ref().map_or(self.epoch, Beating::epoch)
    }

    /// Resolves once the broker assigned something else than we own, or
    /// fenced us. Cancel-safe.
    async fn rebalance_needed(&mut self) -> Result<(), GroupError> {
        let Some(b) = self.beating.as_mut() else {
            return Ok(());
        };
        loop {
            let now = b.rx.borrow_and_update().clone();
            match now {
                Beat::Alive => {}
                Beat::Rebalance { .. } => return Ok(()),
                Beat::Fatal(m) => return Err(GroupError::Fatal(m)),
            }
            if b.rx.changed().await.is_err() {
                return Ok(());
            }
        }
    }

    /// The member epochs to come (the supervisor hands a dead worker's
    /// member over with the latest).
    fn epochs(&self) -> Option<watch::Receiver<i32>> {
        // Not marked seen: an epoch that came between the join and this call
        // still shows up (the caller skips the one it knows).
        self.beating.as_ref().map(|b| b.epoch_rx.clone())
    }

    /// Leave (epoch -1), which moves our partitions at once.
    async fn leave_once(&mut self, c: &mut Common) -> Result<(), Step> {
        self.beating = None;
        let member_id = c.id.get().to_string();
        let req = ConsumerBeat {
            group: &c.s.group,
            member_id: &member_id,
            member_epoch: LEAVE_EPOCH,
            instance_id: c.s.instance_id.as_deref(),
            rebalance_timeout_ms: None,
            topics: None,
            server_assignor: None,
            owned: None,
        };
        let ans = c
            .link
            .call(
                ConsumerHeartbeat(&req),
                c.s.request_timeout(),
                CONSUMER_HINT,
            )
            .await?;
        match classify(ans.error, "ConsumerGroupHeartbeat") {
            // Fenced or unknown: we are out already.
            Class::Ok | Class::ResetMember | Class::Rejoin | Class::MemberIdRequired => Ok(()),
            class => Err(c
                .link
                .common("leaving", ans.error, class)
                .expect("the other classes are common")),
        }
    }

    /// Out of the group (the member id is kept: a leave heartbeat again is harmless).
    fn left(&mut self, _c: &mut Common) {
        self.beating = None;
        self.epoch = -1;
    }
}

fn assigned(c: &Common, epoch: i32, partitions: Vec<i32>) -> Assigned {
    Assigned {
        generation_id: epoch,
        member_id: c.id.get().to_string(),
        leader: false,
        partitions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_are_unique_and_printable() {
        let a = new_member_id();
        let b = new_member_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 22);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{a}"
        );
        for _ in 0..2000 {
            assert!(!new_member_id().starts_with('-'));
        }
    }

    #[test]
    fn our_partitions_sorted_from_one_topic() {
        assert_eq!(ours(&[]), (None, vec![]));
        assert_eq!(
            ours(&[(7, vec![3, 1]), (7, vec![2])]),
            (Some(7), vec![1, 2, 3])
        );
        // A second topic (we never subscribe to one) is left out.
        assert_eq!(ours(&[(7, vec![1]), (9, vec![0])]), (Some(7), vec![1]));
    }

    fn settings() -> GroupSettings {
        GroupSettings {
            brokers: vec!["h:1".into()],
            connect_timeout: Duration::from_secs(5),
            client_id: "c".into(),
            group: "g".into(),
            topic: "t".into(),
            session_timeout: Duration::from_secs(6),
            session_timeout_auto: false,
            rebalance_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_millis(250),
            assignors: vec![crate::config::Assignor::Range],
            instance_id: None,
            protocol: crate::config::GroupProtocol::Consumer,
            remote_assignor: Some("uniform".into()),
        }
    }

    #[test]
    fn beats_at_the_shorter_of_ours_and_the_brokers() {
        let s = settings();
        assert_eq!(beat_interval(&s, 5000), Duration::from_millis(250));
        assert_eq!(beat_interval(&s, 100), Duration::from_millis(100));
        assert_eq!(beat_interval(&s, 0), Duration::from_millis(250));
    }

    #[test]
    fn every_heartbeat_is_a_full_request() {
        let s = settings();
        let topics = ["t".to_string()];
        let join = request(&s, "m", 0, &topics, None);
        assert_eq!(join.member_epoch, 0);
        assert_eq!(join.rebalance_timeout_ms, Some(10_000));
        assert_eq!(join.topics, Some(&topics[..]));
        assert_eq!(join.server_assignor, Some("uniform"));
        // Joining: an empty owned list, not null.
        assert_eq!(join.owned, Some((0, &[][..])));
        let beat = request(&s, "m", 5, &topics, Some((42, &[0, 2])));
        assert_eq!(beat.owned, Some((42, &[0, 2][..])));
        assert_eq!(beat.member_epoch, 5);
    }
}
