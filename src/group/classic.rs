//! The classic protocol's member: JoinGroup + SyncGroup (the leader
//! computing the assignment), a heartbeat task per generation, LeaveGroup.
//! Everything is revoked at each rebalance (eager protocol).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::common::{link_settings, Common, ProtocolMember};
use super::errors::{classify, Class};
use super::heartbeat::{BeatParams, HeartbeatTask};
use super::link::{Pacer, Step};
use super::requests::{Join, Leave, PartitionCounts, Sync};
use super::types::{Assigned, Beat, GroupError, STATIC_HINT};
use crate::assignor::{self, MemberSubscription};
use crate::config::{Assignor, SESSION_TIMEOUT_STEPS};
use crate::wire::consumer_protocol::{self as cp, MemberAssignment, Subscription};
use crate::wire::group_msgs::{code_name, JoinAnswer, JoinArgs, SyncArgs};
use crate::wire::{codes, ApiKey};

/// See the follower branch of `join_once`.
const FOLLOWER_SYNC_DELAY: Duration = Duration::from_millis(100);

/// A leader named by JoinGroup whose SyncGroup keeps failing us as a
/// follower (see [`Classic::note_silent_leader`]).
#[derive(Debug)]
struct SilentLeader {
    member_id: String,
    since: Instant,
    warned: bool,
}

/// The classic protocol's own state.
#[derive(Debug, Default)]
pub(crate) struct Classic {
    generation_id: i32,
    hb: Option<HeartbeatTask>,
    silent_leader: Option<SilentLeader>,
    /// As the group's leader: the partition counts the assignment was made
    /// from, which the heartbeat watches (a topic that grows needs a new
    /// assignment, as Java's leader does on a metadata change).
    led_counts: Option<BTreeMap<String, i32>>,
}

impl Classic {
    /// A member of a classic group; static membership needs JoinGroup v5+.
    pub(crate) async fn new(c: &mut Common) -> Result<Self, GroupError> {
        if c.s.assignors.is_empty() {
            return Err(GroupError::Fatal(
                "--assignor: name at least one of range, roundrobin".into(),
            ));
        }
        if c.s.instance_id.is_some() {
            let conn = c.link.conn().await?;
            if conn.version_for(ApiKey::JoinGroup, 5, 9).is_none() {
                return Err(GroupError::Fatal(format!(
                    "broker {}: {STATIC_HINT}",
                    conn.addr()
                )));
            }
        }
        Ok(Self {
            generation_id: -1,
            ..Self::default()
        })
    }

    fn subscription(&self, c: &Common) -> Result<Vec<(String, Bytes)>, GroupError> {
        let sub = Subscription {
            topics: vec![c.s.topic.clone()],
            generation_id: self.generation_id,
            ..Subscription::default()
        };
        let meta = cp::encode_subscription(&sub)
            .map_err(|e| GroupError::Fatal(format!("cannot encode our subscription: {e}")))?;
        Ok(c.s
            .assignors
            .iter()
            .map(|a| (a.protocol_name().to_string(), meta.clone()))
            .collect())
    }

    /// How long JoinGroup and SyncGroup may block: until the group's members
    /// have rejoined (the rebalance timeout on Kafka, half the session
    /// timeout on tansu), plus a request's time.
    fn barrier_wait(c: &Common) -> Duration {
        c.s.rebalance_timeout.max(c.s.session_timeout) + c.s.request_timeout()
    }

    async fn join_once(&mut self, c: &mut Common) -> Result<Assigned, Step> {
        let ans = self.join_group(c).await?;
        let leader = ans.leader == ans.member_id;
        self.led_counts = None;
        let assignments = if leader {
            self.lead(c, &ans).await?
        } else {
            Vec::new()
        };
        tracing::debug!(
            member = %c.id.get(),
            generation = ans.generation_id,
            leader,
            protocol = ?ans.protocol_name,
            members = ans.members.len(),
            "joined; syncing"
        );
        let partitions = self.sync_group(c, &ans, leader, assignments).await?;
        Ok(Assigned {
            generation_id: ans.generation_id,
            member_id: ans.member_id,
            leader,
            partitions,
        })
    }

    /// JoinGroup: our member id and generation, and (as leader) the members.
    async fn join_group(&mut self, c: &mut Common) -> Result<JoinAnswer, Step> {
        let protocols = self.subscription(c)?;
        let member_id = c.id.get().to_string();
        let args = JoinArgs {
            group: &c.s.group,
            session_timeout_ms: millis(c.s.session_timeout),
            rebalance_timeout_ms: millis(c.s.rebalance_timeout),
            member_id: &member_id,
            instance_id: c.s.instance_id.as_deref(),
            protocols,
        };
        let ans = c
            .link
            .call(Join(&args), Self::barrier_wait(c), STATIC_HINT)
            .await?;
        if ans.error == codes::INVALID_SESSION_TIMEOUT && raise_session_timeout(c) {
            return Err(Step::Again);
        }
        self.react(c, ans.error, "JoinGroup", Some(&ans.member_id))
            .await?;
        c.id.set(&ans.member_id);
        self.generation_id = ans.generation_id;
        Ok(ans)
    }

    /// SyncGroup: our partitions of the generation `ans` started.
    async fn sync_group(
        &mut self,
        c: &mut Common,
        ans: &JoinAnswer,
        leader: bool,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<Vec<i32>, Step> {
        if !leader {
            // Let the leader's SyncGroup (with the assignment) land first: a
            // follower's SyncGroup that arrives before it is parked by some
            // brokers (tansu polls once a second); Kafka answers either way.
            tokio::time::sleep(FOLLOWER_SYNC_DELAY).await;
        }
        let args = SyncArgs {
            group: &c.s.group,
            generation_id: ans.generation_id,
            member_id: &ans.member_id,
            instance_id: c.s.instance_id.as_deref(),
            protocol_name: ans.protocol_name.as_deref(),
            assignments,
        };
        let sync = c
            .link
            .call(Sync(&args), Self::barrier_wait(c), STATIC_HINT)
            .await?;
        if sync.error != 0 && !leader {
            self.note_silent_leader(c, &ans.leader);
        }
        self.react(c, sync.error, "SyncGroup", None).await?;
        self.silent_leader = None;
        let assignment = cp::decode_assignment(&sync.assignment).map_err(|e| {
            GroupError::Fatal(format!(
                "the group leader sent an assignment kswarm cannot read ({e}); are all members of --group {} consumers of --topic {}?",
                c.s.group, c.s.topic
            ))
        })?;
        let partitions = assignment.partitions_of(&c.s.topic);
        tracing::debug!(member = %ans.member_id, generation = ans.generation_id, ?partitions, "synced");
        Ok(partitions)
    }

    /// A follower whose SyncGroup failed: the leader of that generation did
    /// not hand out the assignment. Normal once during churn; the same leader
    /// failing us for longer than a session and a rebalance timeout means the
    /// broker names a member as leader that is gone (tansu does this after a
    /// leader leaves while the group forms). Say so once: the group cannot
    /// form until that member id joins again or the broker is restarted.
    fn note_silent_leader(&mut self, c: &Common, leader: &str) {
        let now = Instant::now();
        match &mut self.silent_leader {
            Some(l) if l.member_id == leader => {
                let limit = c.s.session_timeout + c.s.rebalance_timeout;
                if !l.warned && now.duration_since(l.since) > limit {
                    l.warned = true;
                    tracing::warn!(
                        "the coordinator of --group {} has named {leader} as the group's leader \
                         for {:?}, but that member never assigns the partitions; it has probably \
                         left the group while it was forming (a broker bug: tansu keeps such a \
                         leader). The group cannot form until a member joins under that id or \
                         the broker restarts",
                        c.s.group,
                        now.duration_since(l.since)
                    );
                }
            }
            _ => {
                self.silent_leader = Some(SilentLeader {
                    member_id: leader.to_string(),
                    since: now,
                    warned: false,
                })
            }
        }
    }

    /// What a Join/Sync error code means for the join loop.
    async fn react(
        &mut self,
        c: &mut Common,
        code: i16,
        request: &str,
        new_id: Option<&str>,
    ) -> Result<(), Step> {
        if code != 0 {
            tracing::debug!(member = %c.id.get(), "{request}: {}", code_name(code));
        }
        match classify(code, request) {
            Class::Ok => Ok(()),
            Class::MemberIdRequired => {
                c.id.set(new_id.unwrap_or_default());
                Err(Step::Again)
            }
            Class::ResetMember => {
                c.id.clear();
                Err(Step::Again)
            }
            Class::Rejoin => {
                // Do not hammer a coordinator that answers at once.
                tokio::time::sleep(Duration::from_millis(20)).await;
                Err(Step::Again)
            }
            class => Err(c
                .link
                .common(request, code, class)
                .expect("the other classes are common")),
        }
    }

    /// As leader: every member's assignment, encoded.
    async fn lead(
        &mut self,
        c: &mut Common,
        ans: &JoinAnswer,
    ) -> Result<Vec<(String, Bytes)>, Step> {
        let alg = chosen_assignor(c, ans)?;
        let members = subscriptions(ans);
        let topics: Vec<String> = members
            .iter()
            .flat_map(|m| m.topics.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let counts = partition_counts(c, &topics).await?;
        let plan = assignor::assign(alg, &members, &counts);
        self.led_counts = Some(counts);
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

    fn start_heartbeat(&mut self, c: &Common) {
        // A heartbeat that cannot reach the coordinator within a session is
        // too late anyway.
        let window = c.s.connect_timeout.min(c.s.session_timeout);
        let mut link = link_settings(&c.s);
        link.connect_timeout = window;
        link.window = window;
        self.hb = Some(HeartbeatTask::start(BeatParams {
            link,
            group: c.s.group.clone(),
            generation_id: self.generation_id,
            member_id: c.id.get().to_string(),
            instance_id: c.s.instance_id.clone(),
            interval: c.s.heartbeat_interval,
            session_timeout: c.s.session_timeout,
            coordinator: c.link.addr(),
            led_counts: self.led_counts.clone(),
        }));
    }
}

impl ProtocolMember for Classic {
    fn generation_id(&self) -> i32 {
        self.generation_id
    }

    fn commit_generation(&self) -> i32 {
        self.generation_id
    }

    fn epochs(&self) -> Option<tokio::sync::watch::Receiver<i32>> {
        None
    }

    /// JoinGroup (incl. the MEMBER_ID_REQUIRED second join) + SyncGroup.
    /// Retries through rebalances, coordinator moves and dropped
    /// connections; (re)starts the heartbeat for the new generation.
    async fn join(&mut self, c: &mut Common) -> Result<Assigned, GroupError> {
        self.hb = None;
        let what = format!("joining --group {}", c.s.group);
        let mut pacer = Pacer::new(c.s.connect_timeout.max(c.s.session_timeout));
        loop {
            match self.join_once(c).await {
                Ok(assigned) => {
                    self.start_heartbeat(c);
                    return Ok(assigned);
                }
                Err(step) => pacer.step(&what, step).await?,
            }
        }
    }

    /// Join at the next [`Classic::join`] under `member_id` (see `Member::rejoin_as`).
    fn rejoin_as(&mut self, c: &mut Common, member_id: &str) {
        self.hb = None;
        c.id.assume(member_id);
        self.generation_id = -1;
    }

    /// Carry on as a dead member: a member is its id and generation, not a
    /// connection. If the coordinator has moved on, the heartbeat says so.
    fn resume(&mut self, c: &mut Common, generation_id: i32, _partitions: &[i32]) {
        self.generation_id = generation_id;
        self.start_heartbeat(c);
    }

    /// Resolves once the heartbeat says the group is rebalancing (or our
    /// generation is stale); right away when not joined. Cancel-safe.
    async fn rebalance_needed(&mut self) -> Result<(), GroupError> {
        let Some(hb) = self.hb.as_mut() else {
            return Ok(());
        };
        match hb.changed().await {
            Beat::Alive => Ok(()),
            // UNKNOWN_MEMBER_ID included: the next JoinGroup keeps our id (see
            // `Member::rejoin_as` for why); it asks for a new one if the
            // coordinator confirms it does not know it.
            Beat::Rebalance { .. } => Ok(()),
            Beat::Fatal(m) => Err(GroupError::Fatal(m)),
        }
    }

    /// Stop heartbeating and LeaveGroup (v3+ with the member identity when
    /// an instance id is set).
    async fn leave_once(&mut self, c: &mut Common) -> Result<(), Step> {
        self.hb = None;
        let me = vec![(c.id.get().to_string(), c.s.instance_id.clone())];
        let req = Leave {
            group: &c.s.group,
            members: &me,
        };
        let ans = c.link.call(req, c.s.request_timeout(), STATIC_HINT).await?;
        let bad = std::iter::once(ans.error)
            .chain(ans.members.iter().map(|m| m.2))
            .find(|&code| code != codes::NONE && code != codes::UNKNOWN_MEMBER_ID);
        let Some(code) = bad else {
            return Ok(());
        };
        match classify(code, "LeaveGroup") {
            // Rebalance codes: we are out anyway.
            Class::Ok | Class::Rejoin | Class::ResetMember | Class::MemberIdRequired => Ok(()),
            class => Err(c
                .link
                .common("LeaveGroup", code, class)
                .expect("the other classes are common")),
        }
    }

    /// Out of the group: no generation, no member id.
    fn left(&mut self, c: &mut Common) {
        self.hb = None;
        self.generation_id = -1;
        c.id.clear();
    }
}

/// `--session-timeout auto`: the next step up after the broker refused ours.
fn raise_session_timeout(c: &mut Common) -> bool {
    if !c.s.session_timeout_auto {
        return false;
    }
    let Some(next) = SESSION_TIMEOUT_STEPS
        .iter()
        .copied()
        .find(|&t| t > c.s.session_timeout)
    else {
        return false;
    };
    tracing::info!(
        "the broker refuses a {:?} session timeout; trying {next:?} (--session-timeout auto)",
        c.s.session_timeout
    );
    c.s.session_timeout = next;
    true
}

/// The assignor the coordinator chose, if kswarm implements it.
fn chosen_assignor(c: &Common, ans: &JoinAnswer) -> Result<Assignor, Step> {
    let name = ans
        .protocol_name
        .clone()
        .unwrap_or_else(|| c.s.assignors[0].protocol_name().to_string());
    Assignor::from_protocol_name(&name).ok_or_else(|| {
        Step::Fail(GroupError::Fatal(format!(
            "the coordinator chose assignor '{name}', which kswarm does not implement; use --assignor range or roundrobin on every member of --group {}",
            c.s.group
        )))
    })
}

/// The members of the group and the topics each subscribes to.
fn subscriptions(ans: &JoinAnswer) -> Vec<MemberSubscription> {
    ans.members
        .iter()
        .map(|m| {
            let topics = match cp::decode_subscription(&m.metadata) {
                Ok(sub) => sub.topics,
                Err(e) => {
                    tracing::warn!(member = %m.member_id, "unreadable subscription ({e}); it gets no partitions");
                    Vec::new()
                }
            };
            MemberSubscription {
                member_id: m.member_id.clone(),
                instance_id: m.instance_id.clone(),
                topics,
            }
        })
        .collect()
}

/// The partition counts of `topics`; ours must be among them.
async fn partition_counts(
    c: &mut Common,
    topics: &[String],
) -> Result<BTreeMap<String, i32>, Step> {
    let found = c
        .link
        .call(PartitionCounts(topics), c.s.request_timeout(), "")
        .await?;
    let mut counts = BTreeMap::new();
    for (topic, r) in found {
        match r {
            Ok(n) => {
                counts.insert(topic, n);
            }
            Err(code) if topic == c.s.topic => {
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
    if !counts.contains_key(&c.s.topic) {
        return Err(Step::Pause(format!(
            "Metadata: --topic {} not in the answer",
            c.s.topic
        )));
    }
    Ok(counts)
}

pub(crate) fn millis(d: Duration) -> i32 {
    d.as_millis().min(i32::MAX as u128) as i32
}
