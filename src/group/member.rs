//! One consumer-group member: join (JoinGroup + SyncGroup, the leader
//! computing the assignment), heartbeat in the background, fetch and commit
//! offsets, leave. Every request goes to the coordinator; a coordinator that
//! moves or a connection that drops is found again within the connect timeout.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use bytes::Bytes;

use super::coordinator::{connect_coordinator, fatal_or_retry, Pacer};
use super::errors::{classify, Class};
use super::heartbeat::{Beat, BeatParams, Heartbeat};
use super::{Assigned, GroupError, GroupSettings};
use crate::assignor::{self, MemberSubscription};
use crate::config::{Assignor, GroupProtocol, SESSION_TIMEOUT_STEPS};
use crate::wire::consumer_protocol::{self as cp, MemberAssignment, Subscription};
use crate::wire::group_msgs::{self as gm, code_name, JoinAnswer};
use crate::wire::{codes, ApiKey, BrokerConn, WireError};

const STATIC_HINT: &str =
    "--static-membership needs a broker with JoinGroup v5+ (Kafka 2.3 or later); run without --static-membership";

/// See the follower branch of `join_once`.
const FOLLOWER_SYNC_DELAY: Duration = Duration::from_millis(100);

/// The one path of every request to the coordinator, inside a method of
/// [`Member`] that returns `Result<_, Step>`: (re)connect, send with a
/// deadline, and on no answer or a transport problem drop the connection,
/// so that the next try starts afresh (a request abandoned mid-way leaves
/// the stream out of step). Error codes in the answer are the caller's to
/// classify. (A macro, not a method taking a closure: the future must stay
/// `Send` for callers that spawn it.)
macro_rules! call {
    ($m:expr, $name:expr, $timeout:expr, $hint:expr, |$c:ident| $send:expr) => {{
        let timeout: Duration = $timeout;
        let $c = $m.coordinator().await?;
        match tokio::time::timeout(timeout, $send).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => return Err($m.lost(e, $hint)),
            Err(_) => {
                $m.conn = None;
                return Err(Step::Pause(format!(
                    "{}: no answer within {timeout:?}",
                    $name
                )));
            }
        }
    }};
}

/// How one try of a multi-step operation ended.
pub(crate) enum Step {
    /// Go again at once (new member id, rebalance under way).
    Again,
    /// Go again after a pause; the problem, for the final error.
    Pause(String),
    Fail(GroupError),
}

impl From<GroupError> for Step {
    fn from(e: GroupError) -> Self {
        Step::Fail(e)
    }
}

/// Called with each member id the coordinator assigns.
type MemberIdHook = Box<dyn FnMut(&str) + Send>;

pub struct Member {
    pub(super) s: GroupSettings,
    pub(super) conn: Option<BrokerConn>,
    pub(super) member_id: String,
    pub(super) generation_id: i32,
    hb: Option<Heartbeat>,
    /// Told every new member id the coordinator hands out, before the join
    /// completes, so that a supervisor can evict a member that dies mid-join.
    on_member_id: Option<MemberIdHook>,
    /// The leader named by our last JoinGroup answers whose SyncGroup failed
    /// as a follower, and since when (see `note_silent_leader`).
    silent_leader: Option<(String, std::time::Instant, bool)>,
    /// As the group's leader: the partition counts the assignment was made
    /// from, which the heartbeat watches (a topic that grows needs a new
    /// assignment, as Java's leader does on a metadata change).
    led_counts: Option<BTreeMap<String, i32>>,
    /// Consumer protocol: the heartbeat of a member in good standing.
    pub(super) beating: Option<super::consumer::Beating>,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("group", &self.s.group)
            .field("member_id", &self.member_id)
            .field("generation_id", &self.generation_id)
            .finish_non_exhaustive()
    }
}

impl Member {
    /// Bootstrap + FindCoordinator (retries until connect_timeout, then an
    /// error naming the brokers).
    pub async fn connect(settings: GroupSettings) -> Result<Member, GroupError> {
        if settings.assignors.is_empty() {
            return Err(GroupError::Fatal(
                "--assignor: name at least one of range, roundrobin".into(),
            ));
        }
        let conn = connect_coordinator(
            &settings.brokers,
            &settings.client_id,
            settings.connect_timeout,
            settings.connect_timeout,
            &settings.group,
        )
        .await?;
        if settings.protocol == GroupProtocol::Consumer {
            super::consumer::check_broker(&conn)?;
        } else if settings.instance_id.is_some()
            && conn.version_for(ApiKey::JoinGroup, 5, 9).is_none()
        {
            return Err(GroupError::Fatal(format!(
                "broker {}: {STATIC_HINT}",
                conn.addr()
            )));
        }
        Ok(Member {
            s: settings,
            conn: Some(conn),
            member_id: String::new(),
            generation_id: -1,
            hb: None,
            on_member_id: None,
            silent_leader: None,
            led_counts: None,
            beating: None,
        })
    }

    /// Call `f` with each member id the coordinator assigns us (first join,
    /// MEMBER_ID_REQUIRED, after a reset), as soon as it is known.
    pub fn on_member_id(&mut self, f: impl FnMut(&str) + Send + 'static) {
        self.on_member_id = Some(Box::new(f));
    }

    pub(super) fn tell_member_id(&mut self, id: &str) {
        if let Some(f) = self.on_member_id.as_mut() {
            if !id.is_empty() {
                f(id);
            }
        }
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The generation of the last successful join (-1 before, or after leave).
    pub fn generation_id(&self) -> i32 {
        self.generation_id
    }

    pub fn settings(&self) -> &GroupSettings {
        &self.s
    }

    /// The connection to the coordinator, (re)made if needed.
    pub(super) async fn coordinator(&mut self) -> Result<&mut BrokerConn, GroupError> {
        if self.conn.as_ref().is_none_or(BrokerConn::is_broken) {
            self.conn = None;
            let c = connect_coordinator(
                &self.s.brokers,
                &self.s.client_id,
                self.s.connect_timeout,
                self.s.connect_timeout,
                &self.s.group,
            )
            .await?;
            self.conn = Some(c);
        }
        Ok(self.conn.as_mut().expect("just connected"))
    }

    /// A transport problem: drop the connection, retry after a pause.
    pub(super) fn lost(&mut self, e: WireError, hint: &str) -> Step {
        self.conn = None;
        match fatal_or_retry(e, hint) {
            Ok(e) => Step::Pause(e.to_string()),
            Err(f) => Step::Fail(f),
        }
    }

    /// JoinGroup (incl. the MEMBER_ID_REQUIRED second join) + SyncGroup (the
    /// leader computes the assignment from Metadata partition counts).
    /// Retries through rebalances, coordinator moves and dropped connections;
    /// (re)starts the heartbeat for the new generation.
    pub async fn join(&mut self) -> Result<Assigned, GroupError> {
        if self.s.protocol == GroupProtocol::Consumer {
            return self.join_consumer().await;
        }
        self.hb = None;
        let what = format!("joining --group {}", self.s.group);
        let window = self.s.connect_timeout.max(self.s.session_timeout);
        let mut pacer = Pacer::new(window);
        loop {
            match self.join_once().await {
                Ok(assigned) => {
                    self.start_heartbeat();
                    return Ok(assigned);
                }
                Err(step) => pacer.step(&what, step).await?,
            }
        }
    }

    /// Join (at the next [`Member::join`]) under `member_id`, the id of this
    /// slot's previous worker, instead of asking for a new one. A coordinator
    /// that still counts that member in the rebalance under way (it died
    /// mid-join) gets it back at once instead of waiting for it; one that
    /// forgot it answers UNKNOWN_MEMBER_ID and the join asks for a new id.
    /// It also keeps a broker that still names a departed member as the
    /// group's leader (tansu does, for a leader that leaves while the group
    /// forms) from waiting on that leader forever: the slot's next worker is
    /// that leader again.
    pub fn rejoin_as(&mut self, member_id: &str) {
        self.hb = None;
        self.beating = None;
        self.member_id = member_id.to_string();
        self.generation_id = -1;
    }

    /// Take over a dead member's place without a rebalance: the classic
    /// protocol ties a member to its member id and generation, not to a TCP
    /// connection, so a replacement that starts heartbeating as that member
    /// before its session expires simply carries on with its partitions.
    /// If the coordinator has moved on (rebalance, expired session), the
    /// heartbeat says so and the caller joins as usual.
    pub fn resume(
        &mut self,
        member_id: &str,
        generation_id: i32,
        partitions: Vec<i32>,
    ) -> Assigned {
        if self.s.protocol == GroupProtocol::Consumer {
            return self.resume_consumer(member_id, generation_id, partitions);
        }
        self.member_id = member_id.to_string();
        self.generation_id = generation_id;
        self.start_heartbeat();
        Assigned {
            generation_id,
            member_id: member_id.to_string(),
            leader: false,
            partitions,
        }
    }

    fn protocols(&self) -> Result<Vec<(String, Bytes)>, GroupError> {
        let sub = Subscription {
            topics: vec![self.s.topic.clone()],
            generation_id: self.generation_id,
            ..Subscription::default()
        };
        let meta = cp::encode_subscription(&sub)
            .map_err(|e| GroupError::Fatal(format!("cannot encode our subscription: {e}")))?;
        Ok(self
            .s
            .assignors
            .iter()
            .map(|a| (a.protocol_name().to_string(), meta.clone()))
            .collect())
    }

    async fn join_once(&mut self) -> Result<Assigned, Step> {
        let protocols = self.protocols()?;
        // JoinGroup blocks until the group's members have rejoined: up to the
        // rebalance timeout on Kafka, half the session timeout on tansu.
        let wait = self.s.rebalance_timeout.max(self.s.session_timeout) + self.s.request_timeout();
        let (group, instance) = (self.s.group.clone(), self.s.instance_id.clone());
        let member_id = self.member_id.clone();
        let args = gm::JoinArgs {
            group: &group,
            session_timeout_ms: millis(self.s.session_timeout),
            rebalance_timeout_ms: millis(self.s.rebalance_timeout),
            member_id: &member_id,
            instance_id: instance.as_deref(),
            protocols,
        };
        let ans = call!(self, "JoinGroup", wait, STATIC_HINT, |c| gm::join_group(
            c, &args
        ));
        if ans.error == codes::INVALID_SESSION_TIMEOUT && self.s.session_timeout_auto {
            if let Some(next) = SESSION_TIMEOUT_STEPS
                .iter()
                .copied()
                .find(|&t| t > self.s.session_timeout)
            {
                tracing::info!(
                    "the broker refuses a {:?} session timeout; trying {next:?} (--session-timeout auto)",
                    self.s.session_timeout
                );
                self.s.session_timeout = next;
                return Err(Step::Again);
            }
        }
        self.react(ans.error, "JoinGroup", Some(&ans.member_id))
            .await?;
        if self.member_id != ans.member_id {
            self.tell_member_id(&ans.member_id);
        }
        self.member_id = ans.member_id.clone();
        self.generation_id = ans.generation_id;
        let leader = ans.leader == ans.member_id;
        self.led_counts = None;
        let assignments = if leader {
            self.lead(&ans).await?
        } else {
            Vec::new()
        };
        tracing::debug!(
            member = %self.member_id,
            generation = ans.generation_id,
            leader,
            protocol = ?ans.protocol_name,
            members = ans.members.len(),
            "joined; syncing"
        );

        if !leader {
            // Let the leader's SyncGroup (with the assignment) land first: a
            // follower's SyncGroup that arrives before it is parked by some
            // brokers (tansu polls once a second); Kafka answers either way.
            tokio::time::sleep(FOLLOWER_SYNC_DELAY).await;
        }
        let args = gm::SyncArgs {
            group: &group,
            generation_id: ans.generation_id,
            member_id: &ans.member_id,
            instance_id: instance.as_deref(),
            protocol_name: ans.protocol_name.as_deref(),
            assignments,
        };
        let sync = call!(self, "SyncGroup", wait, STATIC_HINT, |c| gm::sync_group(
            c, &args
        ));
        if sync.error != 0 && !leader {
            self.note_silent_leader(&ans.leader);
        }
        self.react(sync.error, "SyncGroup", None).await?;
        self.silent_leader = None;
        let assignment = cp::decode_assignment(&sync.assignment).map_err(|e| {
            GroupError::Fatal(format!(
                "the group leader sent an assignment kswarm cannot read ({e}); are all members of --group {} consumers of --topic {}?",
                self.s.group, self.s.topic
            ))
        })?;
        let partitions = assignment.partitions_of(&self.s.topic);
        tracing::debug!(member = %ans.member_id, generation = ans.generation_id, ?partitions, "synced");
        Ok(Assigned {
            generation_id: ans.generation_id,
            member_id: ans.member_id,
            leader,
            partitions,
        })
    }

    /// A follower whose SyncGroup failed: the leader of that generation did
    /// not hand out the assignment. Normal once during churn; the same leader
    /// failing us for longer than a session and a rebalance timeout means the
    /// broker names a member as leader that is gone (tansu does this after a
    /// leader leaves while the group forms). Say so once: the group cannot
    /// form until that member id joins again or the broker is restarted.
    fn note_silent_leader(&mut self, leader: &str) {
        let now = std::time::Instant::now();
        match &mut self.silent_leader {
            Some((l, since, warned)) if l == leader => {
                let limit = self.s.session_timeout + self.s.rebalance_timeout;
                if !*warned && now.duration_since(*since) > limit {
                    *warned = true;
                    tracing::warn!(
                        "the coordinator of --group {} has named {leader} as the group's leader \
                         for {:?}, but that member never assigns the partitions; it has probably \
                         left the group while it was forming (a broker bug: tansu keeps such a \
                         leader). The group cannot form until a member joins under that id or \
                         the broker restarts",
                        self.s.group,
                        now.duration_since(*since)
                    );
                }
            }
            _ => self.silent_leader = Some((leader.to_string(), now, false)),
        }
    }

    /// What a Join/Sync error code means for the join loop.
    async fn react(&mut self, code: i16, request: &str, new_id: Option<&str>) -> Result<(), Step> {
        if code != 0 {
            tracing::debug!(member = %self.member_id, "{request}: {}", code_name(code));
        }
        match classify(code, request) {
            Class::Ok => Ok(()),
            Class::MemberIdRequired => {
                self.member_id = new_id.unwrap_or_default().to_string();
                let id = self.member_id.clone();
                self.tell_member_id(&id);
                Err(Step::Again)
            }
            Class::ResetMember => {
                self.member_id.clear();
                Err(Step::Again)
            }
            Class::Rejoin => {
                // Do not hammer a coordinator that answers at once.
                tokio::time::sleep(Duration::from_millis(20)).await;
                Err(Step::Again)
            }
            Class::CoordinatorMoved => {
                self.conn = None;
                Err(Step::Pause(format!("{request}: {}", code_name(code))))
            }
            Class::Retry => Err(Step::Pause(format!("{request}: {}", code_name(code)))),
            Class::Fatal(m) => Err(Step::Fail(GroupError::Fatal(m))),
        }
    }

    /// As leader: every member's assignment, encoded.
    async fn lead(&mut self, ans: &JoinAnswer) -> Result<Vec<(String, Bytes)>, Step> {
        let name = ans
            .protocol_name
            .clone()
            .unwrap_or_else(|| self.s.assignors[0].protocol_name().to_string());
        let Some(alg) = Assignor::from_protocol_name(&name) else {
            return Err(Step::Fail(GroupError::Fatal(format!(
                "the coordinator chose assignor '{name}', which kswarm does not implement; use --assignor range or roundrobin on every member of --group {}",
                self.s.group
            ))));
        };
        let members: Vec<MemberSubscription> = ans
            .members
            .iter()
            .map(|m| {
                let topics = match cp::decode_subscription(&m.metadata) {
                    Ok(sub) => sub.topics,
                    Err(e) => {
                        tracing::warn!(member = %m.member_id, "unreadable subscription ({e}); it gets no partitions");
                        Vec::new()
                    }
                };
                MemberSubscription { member_id: m.member_id.clone(), instance_id: m.instance_id.clone(), topics }
            })
            .collect();
        let topics: Vec<String> = members
            .iter()
            .flat_map(|m| m.topics.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let timeout = self.s.request_timeout();
        let found = call!(self, "Metadata", timeout, "", |c| gm::partition_counts(
            c, &topics
        ));
        let mut counts = BTreeMap::new();
        for (topic, r) in found {
            match r {
                Ok(n) => {
                    counts.insert(topic, n);
                }
                Err(code) if topic == self.s.topic => {
                    let hint = if code == codes::UNKNOWN_TOPIC_OR_PARTITION {
                        " (no such topic: create it, or check --topic)"
                    } else {
                        ""
                    };
                    return Err(Step::Pause(format!(
                        "Metadata for --topic {topic}: {}{hint}",
                        code_name(code)
                    )));
                }
                Err(code) => tracing::warn!(
                    "topic {topic} of another member: {}; not assigned",
                    code_name(code)
                ),
            }
        }
        if !counts.contains_key(&self.s.topic) {
            return Err(Step::Pause(format!(
                "Metadata: --topic {} not in the answer",
                self.s.topic
            )));
        }
        let plan = assignor::assign(alg, &members, &counts);
        self.led_counts = Some(counts.clone());
        let mut out = Vec::with_capacity(plan.len());
        for (member, topics) in plan {
            let a = MemberAssignment {
                partitions: topics.into_iter().collect(),
                user_data: None,
            };
            let bytes = cp::encode_assignment(&a)
                .map_err(|e| GroupError::Fatal(format!("cannot encode an assignment: {e}")))?;
            out.push((member, bytes));
        }
        Ok(out)
    }

    fn start_heartbeat(&mut self) {
        self.hb = Some(Heartbeat::start(BeatParams {
            brokers: self.s.brokers.clone(),
            client_id: self.s.client_id.clone(),
            connect_timeout: self.s.connect_timeout,
            group: self.s.group.clone(),
            generation_id: self.generation_id,
            member_id: self.member_id.clone(),
            instance_id: self.s.instance_id.clone(),
            interval: self.s.heartbeat_interval,
            session_timeout: self.s.session_timeout,
            coordinator: self.conn.as_ref().map(|c| c.addr().to_string()),
            led_counts: self.led_counts.clone(),
        }));
    }

    /// Resolves once the heartbeat says the group is rebalancing (or our
    /// generation is stale), or with an error if heartbeating failed fatally.
    /// Right away when not joined. Cancel-safe.
    pub async fn rebalance_needed(&mut self) -> Result<(), GroupError> {
        if self.s.protocol == GroupProtocol::Consumer {
            return self.consumer_rebalance_needed().await;
        }
        let Some(hb) = self.hb.as_mut() else {
            return Ok(());
        };
        match hb.changed().await {
            Beat::Alive => Ok(()),
            // UNKNOWN_MEMBER_ID included: the next JoinGroup keeps our id (see
            // `rejoin_as` for why); it asks for a new one if the coordinator
            // confirms it does not know it.
            Beat::Rebalance { .. } => Ok(()),
            Beat::Fatal(m) => Err(GroupError::Fatal(m)),
        }
    }

    /// OffsetFetch: the committed next-offset per partition (None = nothing committed).
    pub async fn committed(
        &mut self,
        partitions: &[i32],
    ) -> Result<HashMap<i32, Option<i64>>, GroupError> {
        let what = format!("reading committed offsets of --group {}", self.s.group);
        let window = self.s.connect_timeout;
        let mut pacer = Pacer::new(window);
        loop {
            match self.committed_once(partitions).await {
                Ok(v) => return Ok(v),
                Err(step) => pacer.step(&what, step).await?,
            }
        }
    }

    async fn committed_once(
        &mut self,
        partitions: &[i32],
    ) -> Result<HashMap<i32, Option<i64>>, Step> {
        let (group, topic) = (self.s.group.clone(), self.s.topic.clone());
        let timeout = self.s.request_timeout();
        let ans = call!(self, "OffsetFetch", timeout, "", |c| gm::offset_fetch(
            c, &group, &topic, partitions
        ));
        let worst = std::iter::once(ans.error)
            .chain(ans.partitions.iter().map(|p| p.2))
            .find(|&c| c != 0);
        match worst.map(|c| (c, classify(c, "OffsetFetch"))) {
            None => {
                let mut out: HashMap<i32, Option<i64>> =
                    partitions.iter().map(|&p| (p, None)).collect();
                for (p, off, _) in ans.partitions {
                    if out.contains_key(&p) {
                        out.insert(p, (off >= 0).then_some(off));
                    }
                }
                Ok(out)
            }
            Some((_, Class::Fatal(m))) => Err(Step::Fail(GroupError::Fatal(m))),
            Some((c, Class::CoordinatorMoved)) => {
                self.conn = None;
                Err(Step::Pause(format!("OffsetFetch: {}", code_name(c))))
            }
            Some((c, _)) => Err(Step::Pause(format!("OffsetFetch: {}", code_name(c)))),
        }
    }

    /// OffsetCommit of next-offsets with the current generation;
    /// [`GroupError::Rebalance`] if the generation is stale.
    pub async fn commit(&mut self, offsets: &[(i32, i64)]) -> Result<(), GroupError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let what = format!("committing offsets of --group {}", self.s.group);
        let window = self.s.connect_timeout;
        let mut pacer = Pacer::new(window);
        loop {
            match self.commit_once(offsets).await {
                Ok(v) => return Ok(v),
                Err(step) => pacer.step(&what, step).await?,
            }
        }
    }

    async fn commit_once(&mut self, offsets: &[(i32, i64)]) -> Result<(), Step> {
        let (group, topic, instance) = (
            self.s.group.clone(),
            self.s.topic.clone(),
            self.s.instance_id.clone(),
        );
        let member_id = self.member_id.clone();
        // Consumer protocol: the member epoch, which the heartbeat keeps current.
        let generation_id = match self.s.protocol {
            GroupProtocol::Consumer => self.consumer_epoch(),
            // Share groups commit nothing (their workers never get here).
            GroupProtocol::Classic | GroupProtocol::Share => self.generation_id,
        };
        let args = gm::CommitArgs {
            group: &group,
            generation_id,
            member_id: &member_id,
            instance_id: instance.as_deref(),
            topic: &topic,
            offsets,
        };
        let timeout = self.s.request_timeout();
        let codes = call!(self, "OffsetCommit", timeout, STATIC_HINT, |c| {
            gm::offset_commit(c, &args)
        });
        let mut problem = None;
        for (_, code) in codes.into_iter().filter(|c| c.1 != 0) {
            match classify(code, "OffsetCommit") {
                Class::Ok => {}
                // As for the heartbeat: the next JoinGroup keeps our id and
                // learns whether it is known.
                Class::Rejoin | Class::ResetMember => {
                    return Err(Step::Fail(GroupError::Rebalance))
                }
                Class::MemberIdRequired => {
                    self.member_id.clear();
                    return Err(Step::Fail(GroupError::Rebalance));
                }
                Class::Fatal(m) => return Err(Step::Fail(GroupError::Fatal(m))),
                Class::CoordinatorMoved => {
                    self.conn = None;
                    problem = Some(format!("OffsetCommit: {}", code_name(code)));
                }
                Class::Retry => problem = Some(format!("OffsetCommit: {}", code_name(code))),
            }
        }
        match problem {
            None => Ok(()),
            Some(p) => Err(Step::Pause(p)),
        }
    }

    /// Stop heartbeating and LeaveGroup (v3+ with the member identity when an
    /// instance id is set). Fine to call twice.
    pub async fn leave(&mut self) -> Result<(), GroupError> {
        self.hb = None;
        self.beating = None;
        if self.member_id.is_empty() {
            return Ok(());
        }
        let what = format!("leaving --group {}", self.s.group);
        let window = self.s.connect_timeout;
        let mut pacer = Pacer::new(window);
        loop {
            match self.leave_once().await {
                Ok(v) => return Ok(v),
                Err(step) => pacer.step(&what, step).await?,
            }
        }
    }

    async fn leave_once(&mut self) -> Result<(), Step> {
        if self.s.protocol == GroupProtocol::Consumer {
            return self.leave_consumer_once().await;
        }
        let group = self.s.group.clone();
        let me = vec![(self.member_id.clone(), self.s.instance_id.clone())];
        let timeout = self.s.request_timeout();
        let ans = call!(self, "LeaveGroup", timeout, STATIC_HINT, |c| {
            gm::leave_group(c, &group, &me)
        });
        let bad = std::iter::once(ans.error)
            .chain(ans.members.iter().map(|m| m.2))
            .find(|&c| c != codes::NONE && c != codes::UNKNOWN_MEMBER_ID);
        match bad.map(|c| (c, classify(c, "LeaveGroup"))) {
            // UNKNOWN_MEMBER_ID: already gone. Rebalance codes: we are out anyway.
            None | Some((_, Class::Rejoin | Class::ResetMember | Class::MemberIdRequired)) => {
                self.member_id.clear();
                self.generation_id = -1;
                Ok(())
            }
            Some((_, Class::Fatal(m))) => Err(Step::Fail(GroupError::Fatal(m))),
            Some((c, Class::CoordinatorMoved)) => {
                self.conn = None;
                Err(Step::Pause(format!("LeaveGroup: {}", code_name(c))))
            }
            Some((c, _)) => Err(Step::Pause(format!("LeaveGroup: {}", code_name(c)))),
        }
    }
}

pub(super) fn millis(d: Duration) -> i32 {
    d.as_millis().min(i32::MAX as u128) as i32
}
