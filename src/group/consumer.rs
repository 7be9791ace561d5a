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

use super::coordinator::connect_coordinator;
use super::errors::{classify, Class};
use super::heartbeat::Beat;
use super::member::{Member, Step};
use super::{Assigned, GroupError, GroupSettings};
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

/// A member id of our own making (KIP-1082): 16 random bytes, written like
/// the Java client's (URL-safe base64).
pub fn new_member_id() -> String {
    let bytes: [u8; 16] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The partitions of our topic in an assignment, and its topic id. We
/// subscribe to one topic, so an assignment names at most one.
fn ours(assignment: &[(TopicId, Vec<i32>)]) -> (Option<TopicId>, Vec<i32>) {
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
        let task = tokio::spawn(beat_loop(
            BeatLoop {
                s: s.clone(),
                member_id: member_id.to_string(),
                shared: shared.clone(),
                state: state.clone(),
                epoch_tx,
                poke: poke.clone(),
            },
            coordinator,
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

async fn beat_loop(b: BeatLoop, coordinator: Option<String>) {
    let verdict = beat(&b, coordinator).await;
    tracing::debug!(member = %b.member_id, ?verdict, "consumer heartbeat stops");
    b.state.send_replace(verdict);
}

async fn beat(b: &BeatLoop, mut known: Option<String>) -> Beat {
    let mut conn: Option<BrokerConn> = None;
    let request_timeout = b.s.request_timeout();
    loop {
        let interval = b.shared.lock().unwrap().interval;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = b.poke.notified() => {}
        }
        if conn.as_ref().is_none_or(BrokerConn::is_broken) {
            conn = reconnect(&b.s, known.as_deref()).await;
            let Some(c) = conn.as_ref() else {
                b.poke.notify_one();
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            known = Some(c.addr().to_string());
        }
        let c = conn.as_mut().expect("connected above");
        let (epoch, owned, topic_id) = {
            let sh = b.shared.lock().unwrap();
            (sh.epoch, sh.owned.clone(), sh.topic_id)
        };
        // Owned partitions are named by topic id: look it up once (a worker
        // that took a member over knows the partitions, not the id).
        let topic_id = match topic_id {
            Some(id) => Some(id),
            None if owned.is_empty() => None,
            None => {
                match tokio::time::timeout(request_timeout, cg::topic_id(c, &b.s.topic)).await {
                    Ok(Ok(Ok(id))) => {
                        b.shared.lock().unwrap().topic_id = Some(id);
                        Some(id)
                    }
                    Ok(Ok(Err(code))) => {
                        tracing::debug!(
                            "consumer heartbeat: topic id of {}: {}",
                            b.s.topic,
                            code_name(code)
                        );
                        continue;
                    }
                    Ok(Err(_)) | Err(_) => {
                        conn = None;
                        continue;
                    }
                }
            }
        };
        let topics = [b.s.topic.clone()];
        let req = request(
            &b.s,
            &b.member_id,
            epoch,
            &topics,
            topic_id.map(|id| (id, owned.as_slice())),
        );
        let ans = match tokio::time::timeout(request_timeout, cg::consumer_group_heartbeat(c, &req))
            .await
        {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                tracing::debug!("consumer heartbeat: {e}");
                conn = None;
                continue;
            }
            Err(_) => {
                tracing::debug!("consumer heartbeat: no answer within {request_timeout:?}");
                conn = None;
                continue;
            }
        };
        match classify(ans.error, "ConsumerGroupHeartbeat") {
            Class::Ok => b.learn(&ans),
            Class::ResetMember | Class::Rejoin | Class::MemberIdRequired => {
                tracing::info!(
                    member = %b.member_id,
                    "the coordinator fenced member epoch {epoch} ({}); joining again",
                    code_name(ans.error)
                );
                return Beat::Rebalance { reset_member: true };
            }
            Class::CoordinatorMoved => {
                conn = None;
                known = None;
                b.poke.notify_one();
            }
            Class::Retry => {}
            Class::Fatal(m) => return Beat::Fatal(with_message(m, &ans)),
        }
    }
}

impl BeatLoop {
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
        rebalance_timeout_ms: Some(super::member::millis(s.rebalance_timeout)),
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

async fn reconnect(s: &GroupSettings, known: Option<&str>) -> Option<BrokerConn> {
    if let Some(addr) = known {
        if let Ok(c) = BrokerConn::connect(addr, &s.client_id, s.connect_timeout).await {
            return Some(c);
        }
    }
    connect_coordinator(
        &s.brokers,
        &s.client_id,
        s.connect_timeout,
        s.connect_timeout,
        &s.group,
    )
    .await
    .map_err(|e| tracing::debug!("consumer heartbeat: {e}"))
    .ok()
}

const CONSUMER_HINT: &str = "--group-protocol consumer needs a broker with KIP-848's ConsumerGroupHeartbeat v1 (Apache Kafka 4.0 or later, with group.coordinator.rebalance.protocols including consumer); use --group-protocol classic";

/// Whether `conn`'s broker can host a consumer-protocol member; the error
/// names the flag and the way out.
pub(super) fn check_broker(conn: &BrokerConn) -> Result<(), GroupError> {
    if cg::supports_consumer_groups(conn) {
        Ok(())
    } else {
        Err(GroupError::Fatal(format!(
            "broker {}: {CONSUMER_HINT}",
            conn.addr()
        )))
    }
}

impl Member {
    /// Consumer protocol: the next assignment. A member in good standing
    /// takes the broker's latest one (the worker has drained and committed
    /// what it gives up); otherwise it joins at epoch 0.
    pub(super) async fn join_consumer(&mut self) -> Result<Assigned, GroupError> {
        if let Some(b) = self.beating.as_ref() {
            if !b.ended() {
                let (epoch, partitions) = b.accept_target();
                self.generation_id = epoch;
                return Ok(self.assigned(epoch, partitions));
            }
            // Fenced: Kafka before 4.2 refuses epoch 0 under the old id until
            // its session expires, so start over as a new member.
            self.member_id.clear();
        }
        self.beating = None;
        if self.member_id.is_empty() {
            self.member_id = new_member_id();
            let id = self.member_id.clone();
            self.tell_member_id(&id);
        }
        let what = format!(
            "joining --group {} (--group-protocol consumer)",
            self.s.group
        );
        let mut pacer =
            super::coordinator::Pacer::new(self.s.connect_timeout.max(self.s.session_timeout));
        loop {
            match self.join_consumer_once().await {
                Ok(a) => return Ok(a),
                Err(step) => pacer.step(&what, step).await?,
            }
        }
    }

    async fn join_consumer_once(&mut self) -> Result<Assigned, Step> {
        let topics = [self.s.topic.clone()];
        let member_id = self.member_id.clone();
        let settings = self.s.clone();
        let req = request(&settings, &member_id, 0, &topics, None);
        let timeout = self.s.request_timeout();
        let ans = {
            let c = self.coordinator().await?;
            check_broker(c)?;
            match tokio::time::timeout(timeout, cg::consumer_group_heartbeat(c, &req)).await {
                Ok(Ok(a)) => a,
                Ok(Err(e)) => return Err(self.lost(e, CONSUMER_HINT)),
                Err(_) => {
                    self.conn = None;
                    return Err(Step::Pause(format!(
                        "ConsumerGroupHeartbeat: no answer within {timeout:?}"
                    )));
                }
            }
        };
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
                    self.s.group
                ), &ans))))
            }
            Class::ResetMember => {
                // Our id is fenced (a rejoin under a dead worker's id on
                // Kafka before 4.2): join as a new member.
                self.member_id = new_member_id();
                let id = self.member_id.clone();
                self.tell_member_id(&id);
                return Err(Step::Again);
            }
            Class::CoordinatorMoved => {
                self.conn = None;
                return Err(Step::Pause(format!("ConsumerGroupHeartbeat: {}", code_name(ans.error))));
            }
            Class::Fatal(m) => return Err(Step::Fail(GroupError::Fatal(with_message(m, &ans)))),
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
        self.generation_id = epoch;
        tracing::debug!(member = %self.member_id, epoch, ?partitions, "joined (consumer protocol)");
        self.start_beating(
            epoch,
            partitions.clone(),
            topic_id,
            ans.heartbeat_interval_ms,
        );
        Ok(self.assigned(epoch, partitions))
    }

    fn start_beating(
        &mut self,
        epoch: i32,
        owned: Vec<i32>,
        topic_id: Option<TopicId>,
        interval_ms: i32,
    ) {
        let interval = beat_interval(&self.s, interval_ms);
        let known = self.conn.as_ref().map(|c| c.addr().to_string());
        self.beating = Some(Beating::start(
            &self.s,
            &self.member_id,
            Shared {
                epoch,
                owned,
                topic_id,
                target: None,
                interval,
            },
            known,
        ));
    }

    fn assigned(&self, epoch: i32, partitions: Vec<i32>) -> Assigned {
        Assigned {
            generation_id: epoch,
            member_id: self.member_id.clone(),
            leader: false,
            partitions,
        }
    }

    /// Consumer protocol: carry on as the member a dead worker was.
    pub(super) fn resume_consumer(
        &mut self,
        member_id: &str,
        epoch: i32,
        partitions: Vec<i32>,
    ) -> Assigned {
        self.member_id = member_id.to_string();
        self.generation_id = epoch;
        self.start_beating(epoch, partitions.clone(), None, 0);
        self.assigned(epoch, partitions)
    }

    /// The epoch to commit with: the heartbeat's latest.
    pub(super) fn consumer_epoch(&self) -> i32 {
        self.beating
            .as_ref()
            .map_or(self.generation_id, Beating::epoch)
    }

    pub(super) async fn consumer_rebalance_needed(&mut self) -> Result<(), GroupError> {
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
    /// member over with the latest). None under the classic protocol.
    pub fn epochs(&self) -> Option<watch::Receiver<i32>> {
        // Not marked seen: an epoch that came between the join and this call
        // still shows up (the caller skips the one it knows).
        self.beating.as_ref().map(|b| b.epoch_rx.clone())
    }

    /// Consumer protocol: leave (epoch -1), which moves our partitions at once.
    pub(super) async fn leave_consumer_once(&mut self) -> Result<(), Step> {
        self.beating = None;
        let topics = [self.s.topic.clone()];
        let member_id = self.member_id.clone();
        let settings = self.s.clone();
        let mut req = request(&settings, &member_id, LEAVE_EPOCH, &topics, None);
        req.topics = None;
        req.rebalance_timeout_ms = None;
        req.owned = None;
        req.server_assignor = None;
        let timeout = self.s.request_timeout();
        let c = self.coordinator().await?;
        let ans = match tokio::time::timeout(timeout, cg::consumer_group_heartbeat(c, &req)).await {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => return Err(self.lost(e, CONSUMER_HINT)),
            Err(_) => {
                self.conn = None;
                return Err(Step::Pause(format!(
                    "leaving: no answer within {timeout:?}"
                )));
            }
        };
        match classify(ans.error, "ConsumerGroupHeartbeat") {
            // Fenced or unknown: we are out already.
            Class::Ok | Class::ResetMember | Class::Rejoin | Class::MemberIdRequired => {
                self.generation_id = -1;
                Ok(())
            }
            Class::CoordinatorMoved => {
                self.conn = None;
                Err(Step::Pause(format!("leaving: {}", code_name(ans.error))))
            }
            Class::Retry => Err(Step::Pause(format!("leaving: {}", code_name(ans.error)))),
            Class::Fatal(m) => Err(Step::Fail(GroupError::Fatal(m))),
        }
    }
}

/// Remove `member_ids` from a consumer-protocol group on their behalf (epoch
/// -1 each, [`crate::group::evict`] for the classic protocol): their
/// partitions move now, not after the broker's session timeout (45 s by
/// default). Unknown or fenced members are already gone.
pub async fn evict_consumer_members(
    brokers: &[String],
    connect_timeout: Duration,
    group: &str,
    member_ids: &[String],
) -> Result<(), GroupError> {
    if member_ids.is_empty() {
        return Ok(());
    }
    let what = format!("evicting members of --group {group}");
    let mut pacer = super::coordinator::Pacer::new(connect_timeout);
    let mut left: Vec<String> = member_ids.to_vec();
    loop {
        let mut conn = connect_coordinator(
            brokers,
            "kswarm-supervisor",
            connect_timeout,
            connect_timeout,
            group,
        )
        .await?;
        check_broker(&conn)?;
        let timeout = connect_timeout.max(Duration::from_secs(10));
        let codes = match leave_for(&mut conn, group, &left, timeout).await {
            Ok(c) => c,
            Err(e) => {
                pacer.pause(&what, e).await?;
                continue;
            }
        };
        let mut again = Vec::new();
        let mut problem = None;
        for (id, code) in left.iter().zip(
            codes
                .iter()
                .copied()
                .chain(std::iter::repeat(crate::wire::codes::REQUEST_TIMED_OUT)),
        ) {
            match classify(code, "ConsumerGroupHeartbeat") {
                Class::Ok | Class::ResetMember | Class::Rejoin | Class::MemberIdRequired => {}
                Class::Fatal(m) => return Err(GroupError::Fatal(m)),
                Class::CoordinatorMoved | Class::Retry => {
                    again.push(id.clone());
                    problem = Some(code_name(code));
                }
            }
        }
        match problem {
            None => return Ok(()),
            Some(p) => {
                left = again;
                pacer.pause(&what, p).await?;
            }
        }
    }
}

async fn leave_for(
    conn: &mut BrokerConn,
    group: &str,
    member_ids: &[String],
    timeout: Duration,
) -> Result<Vec<i16>, crate::wire::WireError> {
    let mut codes = Vec::with_capacity(member_ids.len());
    for id in member_ids {
        let req = ConsumerBeat {
            group,
            member_id: id,
            member_epoch: LEAVE_EPOCH,
            instance_id: None,
            rebalance_timeout_ms: None,
            topics: None,
            server_assignor: None,
            owned: None,
        };
        let ans =
            match tokio::time::timeout(timeout, cg::consumer_group_heartbeat(conn, &req)).await {
                Ok(r) => r?,
                Err(_) => {
                    codes.push(crate::wire::codes::REQUEST_TIMED_OUT);
                    break;
                }
            };
        codes.push(ans.error);
    }
    Ok(codes)
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
