//! Consumer-group membership over the wire, for the three group protocols:
//! classic (JoinGroup/SyncGroup/Heartbeat, speaking the standard
//! ConsumerProtocol and assignor names, so librdkafka, Java and kafka-python
//! members can share the group with ours), consumer (KIP-848's
//! ConsumerGroupHeartbeat) and share (KIP-932's ShareGroupHeartbeat).
//!
//! From the bottom up (each module uses only those above it):
//! - [`types`]: settings, what a join hands back, [`GroupError`].
//! - [`errors`]: what each Kafka error code means for a member (one policy).
//! - [`link`]: the coordinator link every request goes through: finding the
//!   coordinator, timed calls that drop a failed connection, retry pacing.
//! - [`requests`]: every group request, as a value the link sends.
//! - [`common`]: what every member has (settings, link, member id) and the
//!   [`common::ProtocolMember`] trait each partitioned protocol implements.
//! - [`offsets`]: OffsetFetch and OffsetCommit, alike for classic and consumer.
//! - [`heartbeat`] + [`classic`]: the classic member and its heartbeat task.
//! - [`consumer`]: the consumer-protocol member and its heartbeat task.
//! - [`streak`]: error answers in a row to a share member's requests, and
//!   when they end the member (pure).
//! - [`share`]: the share-group member (no partitions of its own to commit or
//!   drain, so it has its own small face: a state to watch, and leave).
//! - [`member`]: [`Member`], the face a partitioned worker drives, choosing
//!   the protocol once.
//! - [`evict`]: removing dead members on their behalf, for every protocol.
//!
//! A worker drives a [`Member`] like this (everything is revoked at each
//! rebalance under the classic protocol; under the consumer protocol the
//! next `join` takes the broker's new assignment):
//!
//! ```text
//! let mut m = Member::connect(GroupSettings::from_worker(&cfg)).await?;
//! loop {
//!     let a = m.join().await?;                 // a.partitions: ours for a.generation_id
//!     let start = m.committed(&a.partitions).await?;
//!     loop {
//!         tokio::select! {
//!             r = m.rebalance_needed() => { r?; break; }   // cancel-safe
//!             .. fetch, hand to the handler, then m.commit(&acked).await
//!                (Err(GroupError::Rebalance) => break) ..
//!         }
//!     }
//!     m.commit(&acked).await.ok();             // commit on revoke, then rejoin
//! }
//! // on shutdown: m.commit(..), then m.leave()
//! ```

pub(crate) mod classic;
pub(crate) mod common;
pub(crate) mod consumer;
pub(crate) mod errors;
pub(crate) mod evict;
pub(crate) mod heartbeat;
pub(crate) mod link;
pub(crate) mod member;
pub(crate) mod offsets;
pub(crate) mod requests;
pub(crate) mod share;
pub(crate) mod streak;
pub(crate) mod types;

pub use consumer::next_epoch;
pub use evict::{evict, Eviction};
pub(crate) use link::{connect_coordinator, CoordinatorKind, CoordinatorLink, LinkSettings};
pub use member::Member;
pub use types::{Assigned, GroupError, GroupSettings};

#[cfg(test)]
mod tests;
