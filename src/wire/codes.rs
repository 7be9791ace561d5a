//! Kafka's protocol error codes by name, for the places that act on one
//! (what each means for a group member is `group::errors`). Plain numbers,
//! so that no kafka-protocol type leaves `wire`; a test checks every one
//! against kafka-protocol's own table.

pub const NONE: i16 = 0;
pub const UNKNOWN_SERVER_ERROR: i16 = -1;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const REQUEST_TIMED_OUT: i16 = 7;
pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
pub const NETWORK_EXCEPTION: i16 = 13;
pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub const NOT_COORDINATOR: i16 = 16;
pub const ILLEGAL_GENERATION: i16 = 22;
pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
pub const INVALID_GROUP_ID: i16 = 24;
pub const UNKNOWN_MEMBER_ID: i16 = 25;
pub const INVALID_SESSION_TIMEOUT: i16 = 26;
pub const REBALANCE_IN_PROGRESS: i16 = 27;
pub const INVALID_COMMIT_OFFSET_SIZE: i16 = 28;
pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
pub const UNSUPPORTED_VERSION: i16 = 35;
pub const GROUP_ID_NOT_FOUND: i16 = 69;
pub const MEMBER_ID_REQUIRED: i16 = 79;
pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
pub const FENCED_INSTANCE_ID: i16 = 82;
pub const UNSTABLE_OFFSET_COMMIT: i16 = 88;
pub const THROTTLING_QUOTA_EXCEEDED: i16 = 89;
pub const INVALID_REQUEST: i16 = 42;
pub const FENCED_MEMBER_EPOCH: i16 = 110;
pub const UNRELEASED_INSTANCE_ID: i16 = 111;
pub const UNSUPPORTED_ASSIGNOR: i16 = 112;
pub const STALE_MEMBER_EPOCH: i16 = 113;
// fetching
pub const OFFSET_OUT_OF_RANGE: i16 = 1;
pub const CORRUPT_MESSAGE: i16 = 2;
pub const LEADER_NOT_AVAILABLE: i16 = 5;
pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
pub const REPLICA_NOT_AVAILABLE: i16 = 9;
pub const KAFKA_STORAGE_ERROR: i16 = 56;
pub const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
pub const INVALID_FETCH_SESSION_EPOCH: i16 = 71;
pub const FENCED_LEADER_EPOCH: i16 = 74;
pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
pub const OFFSET_NOT_AVAILABLE: i16 = 78;
pub const UNKNOWN_TOPIC_ID: i16 = 100;
pub const INCONSISTENT_TOPIC_ID: i16 = 103;
pub const FETCH_SESSION_TOPIC_ID_ERROR: i16 = 106;

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::error::ResponseError as E;

    #[test]
    fn every_name_is_kafkas() {
        let ours = [
            (UNKNOWN_SERVER_ERROR, E::UnknownServerError),
            (UNKNOWN_TOPIC_OR_PARTITION, E::UnknownTopicOrPartition),
            (REQUEST_TIMED_OUT, E::RequestTimedOut),
            (OFFSET_METADATA_TOO_LARGE, E::OffsetMetadataTooLarge),
            (NETWORK_EXCEPTION, E::NetworkException),
            (COORDINATOR_LOAD_IN_PROGRESS, E::CoordinatorLoadInProgress),
            (COORDINATOR_NOT_AVAILABLE, E::CoordinatorNotAvailable),
            (NOT_COORDINATOR, E::NotCoordinator),
            (ILLEGAL_GENERATION, E::IllegalGeneration),
            (INCONSISTENT_GROUP_PROTOCOL, E::InconsistentGroupProtocol),
            (INVALID_GROUP_ID, E::InvalidGroupId),
            (UNKNOWN_MEMBER_ID, E::UnknownMemberId),
            (INVALID_SESSION_TIMEOUT, E::InvalidSessionTimeout),
            (REBALANCE_IN_PROGRESS, E::RebalanceInProgress),
            (INVALID_COMMIT_OFFSET_SIZE, E::InvalidCommitOffsetSize),
            (TOPIC_AUTHORIZATION_FAILED, E::TopicAuthorizationFailed),
            (GROUP_AUTHORIZATION_FAILED, E::GroupAuthorizationFailed),
            (UNSUPPORTED_VERSION, E::UnsupportedVersion),
            (GROUP_ID_NOT_FOUND, E::GroupIdNotFound),
            (MEMBER_ID_REQUIRED, E::MemberIdRequired),
            (GROUP_MAX_SIZE_REACHED, E::GroupMaxSizeReached),
            (FENCED_INSTANCE_ID, E::FencedInstanceId),
            (UNSTABLE_OFFSET_COMMIT, E::UnstableOffsetCommit),
            (THROTTLING_QUOTA_EXCEEDED, E::ThrottlingQuotaExceeded),
            (INVALID_REQUEST, E::InvalidRequest),
            (FENCED_MEMBER_EPOCH, E::FencedMemberEpoch),
            (UNRELEASED_INSTANCE_ID, E::UnreleasedInstanceId),
            (UNSUPPORTED_ASSIGNOR, E::UnsupportedAssignor),
            (STALE_MEMBER_EPOCH, E::StaleMemberEpoch),
            (OFFSET_OUT_OF_RANGE, E::OffsetOutOfRange),
            (CORRUPT_MESSAGE, E::CorruptMessage),
            (LEADER_NOT_AVAILABLE, E::LeaderNotAvailable),
            (NOT_LEADER_OR_FOLLOWER, E::NotLeaderOrFollower),
            (REPLICA_NOT_AVAILABLE, E::ReplicaNotAvailable),
            (KAFKA_STORAGE_ERROR, E::KafkaStorageError),
            (FETCH_SESSION_ID_NOT_FOUND, E::FetchSessionIdNotFound),
            (INVALID_FETCH_SESSION_EPOCH, E::InvalidFetchSessionEpoch),
            (FENCED_LEADER_EPOCH, E::FencedLeaderEpoch),
            (UNKNOWN_LEADER_EPOCH, E::UnknownLeaderEpoch),
            (OFFSET_NOT_AVAILABLE, E::OffsetNotAvailable),
            (UNKNOWN_TOPIC_ID, E::UnknownTopicId),
            (INCONSISTENT_TOPIC_ID, E::InconsistentTopicId),
            (FETCH_SESSION_TOPIC_ID_ERROR, E::FetchSessionTopicIdError),
        ];
        for (code, e) in ours {
            assert_eq!(e.code(), code, "{e:?}");
        }
        assert!(E::try_from_code(NONE).is_none());
    }
}
