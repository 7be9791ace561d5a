//! Every request a member sends its coordinator, as a value the
//! coordinator link can send: a name for messages and the wire function
//! that carries it.

use std::collections::BTreeMap;
use std::future::Future;

use crate::wire::consumer_group::{self as cg, ConsumerBeat, ConsumerBeatAnswer, TopicId};
use crate::wire::group_msgs::{self as gm, CommitArgs, JoinAnswer, JoinArgs, SyncAnswer, SyncArgs};
use crate::wire::share::{self as sw, ShareBeat, ShareBeatAnswer};
use crate::wire::{BrokerConn, WireResult};

/// One request to the coordinator: its name (for messages) and how it is
/// sent. Implemented below for every group request.
pub(crate) trait Request {
    const NAME: &'static str;
    type Answer;
    fn send(
        self,
        conn: &mut BrokerConn,
    ) -> impl Future<Output = crate::wire::WireResult<Self::Answer>> + Send;
}

pub(crate) struct Join<'a>(pub &'a JoinArgs<'a>);
pub(crate) struct Sync<'a>(pub &'a SyncArgs<'a>);
pub(crate) struct Commit<'a>(pub &'a CommitArgs<'a>);
pub(crate) struct ConsumerHeartbeat<'a>(pub &'a ConsumerBeat<'a>);
pub(crate) struct ShareHeartbeat<'a>(pub &'a ShareBeat<'a>);

/// The classic protocol's Heartbeat of one generation.
pub(crate) struct Heartbeat<'a> {
    pub group: &'a str,
    pub generation_id: i32,
    pub member_id: &'a str,
    pub instance_id: Option<&'a str>,
}

/// LeaveGroup for (member id, instance id) pairs.
pub(crate) struct Leave<'a> {
    pub group: &'a str,
    pub members: &'a [(String, Option<String>)],
}

/// OffsetFetch of partitions of one topic.
pub(crate) struct FetchOffsets<'a> {
    pub group: &'a str,
    pub topic: &'a str,
    pub partitions: &'a [i32],
}

/// Metadata: the partition counts of topics.
pub(crate) struct PartitionCounts<'a>(pub &'a [String]);

/// Metadata: the id of a topic.
pub(crate) struct TopicIdOf<'a>(pub &'a str);

impl Request for Join<'_> {
    const NAME: &'static str = "JoinGroup";
    type Answer = JoinAnswer;
    fn send(self, c: &mut BrokerConn) -> impl Future<Output = WireResult<JoinAnswer>> + Send {
        gm::join_group(c, self.0)
    }
}

impl Request for Sync<'_> {
    const NAME: &'static str = "SyncGroup";
    type Answer = SyncAnswer;
    fn send(self, c: &mut BrokerConn) -> impl Future<Output = WireResult<SyncAnswer>> + Send {
        gm::sync_group(c, self.0)
    }
}

impl Request for Heartbeat<'_> {
    const NAME: &'static str = "Heartbeat";
    type Answer = i16;
    fn send(self, c: &mut BrokerConn) -> impl Future<Output = WireResult<i16>> + Send {
        gm::heartbeat(
            c,
            self.group,
            self.generation_id,
            self.member_id,
            self.instance_id,
        )
    }
}

impl Request for Leave<'_> {
    const NAME: &'static str = "LeaveGroup";
    type Answer = gm::LeaveAnswer;
    fn send(self, c: &mut BrokerConn) -> impl Future<Output = WireResult<gm::LeaveAnswer>> + Send {
        gm::leave_group(c, self.group, self.members)
    }
}

impl Request for Commit<'_> {
    const NAME: &'static str = "OffsetCommit";
    type Answer = Vec<(i32, i16)>;
    fn send(self, c: &mut BrokerConn) -> impl Future<Output = WireResult<Vec<(i32, i16)>>> + Send {
        gm::offset_commit(c, self.0)
    }
}

impl Request for FetchOffsets<'_> {
    const NAME: &'static str = "OffsetFetch";
    type Answer = gm::FetchedOffsets;
    fn send(
        self,
        c: &mut BrokerConn,
    ) -> impl Future<Output = WireResult<gm::FetchedOffsets>> + Send {
        gm::offset_fetch(c, self.group, self.topic, self.partitions)
    }
}

impl Request for PartitionCounts<'_> {
    const NAME: &'static str = "Metadata";
    type Answer = BTreeMap<String, Result<i32, i16>>;
    fn send(self, c: &mut BrokerConn) -> impl Future<Output = WireResult<Self::Answer>> + Send {
        gm::partition_counts(c, self.0)
    }
}

impl Request for TopicIdOf<'_> {
    const NAME: &'static str = "Metadata";
    type Answer = Result<TopicId, i16>;
    fn send(self, c: &mut BrokerConn) -> impl Future<Output = WireResult<Self::Answer>> + Send {
        cg::topic_id(c, self.0)
    }
}

impl Request for ConsumerHeartbeat<'_> {
    const NAME: &'static str = "ConsumerGroupHeartbeat";
    type Answer = ConsumerBeatAnswer;
    fn send(
        self,
        c: &mut BrokerConn,
    ) -> impl Future<Output = WireResult<ConsumerBeatAnswer>> + Send {
        cg::consumer_group_heartbeat(c, self.0)
    }
}

impl Request for ShareHeartbeat<'_> {
    const NAME: &'static str = "ShareGroupHeartbeat";
    type Answer = ShareBeatAnswer;
    fn send(self, c: &mut BrokerConn) -> impl Future<Output = WireResult<ShareBeatAnswer>> + Send {
        sw::share_group_heartbeat(c, self.0)
    }
}
