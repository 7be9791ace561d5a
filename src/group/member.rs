//! The face a partitioned worker (classic or consumer protocol) drives:
//! [`Member`]. The protocol is chosen once, when the member connects; each
//! call is handed to that protocol's own member type ([`Classic`],
//! [`Consumer`], each a [`ProtocolMember`]) in one place, `each!`. What every protocol does alike —
//! the coordinator link, the member id, committed offsets, leaving with
//! retries — lives here and in [`Common`].

use std::collections::HashMap;

use tokio::sync::watch;

use super::classic::Classic;
use super::common::{Common, ProtocolMember};
use super::consumer::Consumer;
use super::link::{Pacer, Step};
use super::offsets::{self, CommitAs, Refusal};
use super::types::{Assigned, GroupError, GroupSettings};
use crate::config::GroupProtocol;

/// The protocol a member speaks, with that protocol's state.
#[derive(Debug)]
enum Protocol {
    Classic(Classic),
    Consumer(Consumer),
}

/// The one dispatch on the protocol: `each!(&mut self.protocol, p => expr)`
/// runs `expr` with `p` bound to the protocol's member ([`ProtocolMember`]).
macro_rules! each {
    ($protocol:expr, $p:ident => $e:expr) => {
        match $protocol {
            Protocol::Classic($p) => $e,
            Protocol::Consumer($p) => $e,
        }
    };
}

/// One member of a classic or consumer-protocol group.
#[derive(Debug)]
pub struct Member {
    common: Common,
    protocol: Protocol,
}

impl Member {
    /// Bootstrap + FindCoordinator (retries until the connect timeout, then
    /// an error naming the brokers), and a check that the broker can host
    /// this protocol's member.
    pub async fn connect(settings: GroupSettings) -> Result<Member, GroupError> {
        let kind = settings.protocol;
        let mut common = Common::connect(settings).await?;
        let protocol = match kind {
            GroupProtocol::Classic => Protocol::Classic(Classic::new(&mut common).await?),
            GroupProtocol::Consumer => Protocol::Consumer(Consumer::new(&mut common).await?),
            GroupProtocol::Share => {
                return Err(GroupError::Fatal(
                    "a share group has no partitioned member: use group::share::ShareMember".into(),
                ))
            }
        };
        Ok(Member { common, protocol })
    }

    /// Call `f` with each member id the coordinator assigns us (first join,
    /// MEMBER_ID_REQUIRED, after a reset), or we choose, as soon as it is known.
    pub fn on_member_id(&mut self, f: impl FnMut(&str) + Send + 'static) {
        self.common.id.on_change(Box::new(f));
    }

    pub fn member_id(&self) -> &str {
        self.common.id.get()
    }

    /// The generation (classic) or member epoch (consumer) of the last
    /// successful join; -1 before, or after leave.
    pub fn generation_id(&self) -> i32 {
        each!(&self.protocol, p => p.generation_id())
    }

    pub fn settings(&self) -> &GroupSettings {
        &self.common.s
    }

    /// Join (classic: JoinGroup + SyncGroup; consumer: take the broker's
    /// latest assignment, or join at epoch 0). Retries through rebalances,
    /// coordinator moves and dropped connections, and starts the heartbeat.
    pub async fn join(&mut self) -> Result<Assigned, GroupError> {
        each!(&mut self.protocol, p => p.join(&mut self.common).await)
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
        each!(&mut self.protocol, p => p.rejoin_as(&mut self.common, member_id))
    }

    /// Take over a dead member's place without a rebalance: neither protocol
    /// ties a member to a TCP connection, so a replacement that beats as that
    /// member (id and generation or epoch) before its session expires simply
    /// carries on with its partitions. If the coordinator has moved on
    /// (rebalance, expired session), the heartbeat says so and the caller
    /// joins as usual.
    pub fn resume(
        &mut self,
        member_id: &str,
        generation_id: i32,
        partitions: Vec<i32>,
    ) -> Assigned {
        self.common.id.assume(member_id);
        each!(&mut self.protocol, p => p.resume(&mut self.common, generation_id, &partitions));
        Assigned {
            generation_id,
            member_id: member_id.to_string(),
            leader: false,
            partitions,
        }
    }

    /// Resolves once the group wants our partitions back (classic: a
    /// rebalance, or a stale generation; consumer: a new assignment or a
    /// fence), or with an error if heartbeating failed fatally. Right away
    /// when not joined. Cancel-safe.
    pub async fn rebalance_needed(&mut self) -> Result<(), GroupError> {
        each!(&mut self.protocol, p => p.rebalance_needed().await)
    }

    /// The member epochs to come (the supervisor hands a dead worker's
    /// member over with the latest). None under the classic protocol.
    pub fn epochs(&self) -> Option<watch::Receiver<i32>> {
        each!(&self.protocol, p => p.epochs())
    }

    /// OffsetFetch: the committed next-offset per partition (None = nothing committed).
    pub async fn committed(
        &mut self,
        partitions: &[i32],
    ) -> Result<HashMap<i32, Option<i64>>, GroupError> {
        let topic = self.common.s.topic.clone();
        self.committed_in(&topic, partitions).await
    }

    /// [`Member::committed`] for partitions of another topic the member
    /// reads (a retry topic, whose partitions follow the assignment).
    pub async fn committed_in(
        &mut self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<HashMap<i32, Option<i64>>, GroupError> {
        offsets::committed(&mut self.common.link, &self.common.s, topic, partitions).await
    }

    /// OffsetCommit of next-offsets, stamped with the current generation
    /// (classic) or the heartbeat's latest member epoch (consumer);
    /// [`GroupError::Rebalance`] if the coordinator refuses it.
    pub async fn commit(&mut self, offsets: &[(i32, i64)]) -> Result<(), GroupError> {
        let topic = self.common.s.topic.clone();
        self.commit_in(&topic, offsets).await
    }

    /// [`Member::commit`] for partitions of another topic the member reads
    /// (a retry topic): the coordinator checks the member, not the topic.
    pub async fn commit_in(
        &mut self,
        topic: &str,
        offsets: &[(i32, i64)],
    ) -> Result<(), GroupError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let from = CommitAs {
            member_id: self.common.id.get().to_string(),
            generation_id: each!(&self.protocol, p => p.commit_generation()),
        };
        let c = &mut self.common;
        match offsets::commit(&mut c.link, &c.s, &from, topic, offsets).await? {
            Ok(()) => Ok(()),
            Err(Refusal::Rejoin) => Err(GroupError::Rebalance),
            Err(Refusal::ForgetMemberId) => {
                c.id.clear();
                Err(GroupError::Rebalance)
            }
        }
    }

    /// Stop heartbeating and leave (classic: LeaveGroup, v3+ with the member
    /// identity when an instance id is set; consumer: epoch -1). Fine to
    /// call twice.
    pub async fn leave(&mut self) -> Result<(), GroupError> {
        if !self.common.id.is_empty() {
            let what = format!("leaving --group {}", self.common.s.group);
            let mut pacer = Pacer::new(self.common.s.connect_timeout);
            loop {
                let step: Result<(), Step> =
                    each!(&mut self.protocol, p => p.leave_once(&mut self.common).await);
                match step {
                    Ok(()) => break,
                    Err(step) => pacer.step(&what, step).await?,
                }
            }
        }
        each!(&mut self.protocol, p => p.left(&mut self.common));
        Ok(())
    }
}
