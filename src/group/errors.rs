//! What a Kafka error code in a group answer means for a member. This is our
//! own policy: kafka-protocol's `is_retriable()` calls REBALANCE_IN_PROGRESS
//! and UNKNOWN_MEMBER_ID non-retriable, yet both only mean "rejoin".

use crate::wire::codes::*;
use crate::wire::group_msgs::code_name;

/// How to react to an error code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    Ok,
    /// The generation moved on: rejoin with the same member id.
    Rejoin,
    /// The coordinator forgot us: forget the member id, then rejoin.
    ResetMember,
    /// First JoinGroup of a new member: join again with the id in the answer.
    MemberIdRequired,
    /// Ask FindCoordinator again, then retry.
    CoordinatorMoved,
    /// Transient on the broker side: retry the same request after a pause.
    Retry,
    /// Retrying cannot help; the message names the cause and the way out.
    Fatal(String),
}

/// Classify `code` from the answer to `request` (e.g. "JoinGroup").
pub fn classify(code: i16, request: &str) -> Class {
    let fatal =
        |why: &str| Class::Fatal(format!("{request} failed with {}: {why}", code_name(code)));
    match code {
        NONE => Class::Ok,
        REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION => Class::Rejoin,
        // FENCED_MEMBER_EPOCH (consumer protocol): our epoch is gone; give up
        // the partitions and join again at epoch 0 under the same member id.
        UNKNOWN_MEMBER_ID | FENCED_MEMBER_EPOCH => Class::ResetMember,
        MEMBER_ID_REQUIRED => Class::MemberIdRequired,
        COORDINATOR_NOT_AVAILABLE | NOT_COORDINATOR => Class::CoordinatorMoved,
        // UNKNOWN_TOPIC_OR_PARTITION: metadata lag right after the topic was created.
        COORDINATOR_LOAD_IN_PROGRESS
        | REQUEST_TIMED_OUT
        | NETWORK_EXCEPTION
        | UNKNOWN_SERVER_ERROR
        | UNSTABLE_OFFSET_COMMIT
        | UNKNOWN_TOPIC_OR_PARTITION
        | THROTTLING_QUOTA_EXCEEDED
        // A commit with an epoch the heartbeat has just moved past, and a
        // static member whose previous incarnation has not left yet.
        | STALE_MEMBER_EPOCH
        | UNRELEASED_INSTANCE_ID => Class::Retry,
        UNSUPPORTED_ASSIGNOR => fatal(
            "the broker has no such server-side assignor; use --assignor uniform or range \
             (the broker's group.consumer.assignors), or leave --assignor out",
        ),
        INVALID_REQUEST => fatal(
            "the broker refused the request; with --group-protocol consumer, check that the broker \
             enables it (group.coordinator.rebalance.protocols includes consumer)",
        ),
        FENCED_INSTANCE_ID => fatal(
            "another live member uses the same group instance id; two kswarm runs with \
             --static-membership and the same --group/--instance-prefix collide: give each its own \
             --instance-prefix (or stop the other run)",
        ),
        INVALID_GROUP_ID => fatal("the broker rejects this group id; pick another --group"),
        GROUP_AUTHORIZATION_FAILED => {
            fatal("not authorized for this consumer group; grant the principal access to --group")
        }
        TOPIC_AUTHORIZATION_FAILED => {
            fatal("not authorized for the topic; grant the principal access to --topic")
        }
        INCONSISTENT_GROUP_PROTOCOL => fatal(
            "the group's other members speak no assignor in common with ours (or are not consumers); \
             match --assignor to the other members (range, roundrobin) or use another --group",
        ),
        INVALID_SESSION_TIMEOUT => fatal(
            "the broker refuses this session timeout (outside its group.min/max.session.timeout.ms); \
             change --session-timeout",
        ),
        GROUP_MAX_SIZE_REACHED => {
            fatal("the group is full (broker group.max.size); run fewer --workers or raise the limit")
        }
        UNSUPPORTED_VERSION => fatal(
            "the broker does not support this request version; upgrade the broker (or, for \
             ConsumerGroupHeartbeat, use --group-protocol classic)",
        ),
        OFFSET_METADATA_TOO_LARGE | INVALID_COMMIT_OFFSET_SIZE => {
            fatal("the broker refused the offset commit")
        }
        // The group vanished under us (deleted): start over.
        GROUP_ID_NOT_FOUND => Class::ResetMember,
        _ => fatal("unexpected error from the group coordinator"),
    }
}

/// The exit-2 message for a broker without share groups.
pub fn share_unsupported_message(broker: &str, detail: &str) -> String {
    format!(
        "--group-protocol share: the broker {broker} does not offer share groups ({detail}); \
         share groups (KIP-932) need Apache Kafka 4.2 or newer (or 4.1 with the storage formatted \
         with --feature share.version=1, or enabled later with kafka-features upgrade \
         --feature share.version=1); use --group-protocol classic or consumer with this broker"
    )
}

/// Classify a ShareGroupHeartbeat's `code` (with the broker's `message`):
/// [`classify`], but a broker with share groups off, and a group id held by
/// a group of another type, fail with messages that name the way out.
pub fn classify_share(code: i16, message: Option<&str>, broker: &str) -> Class {
    let said = message
        .filter(|m| !m.is_empty())
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    let failed = format!("ShareGroupHeartbeat failed with {}{said}", code_name(code));
    match code {
        // A broker with share groups off answers so (Kafka 4.1 without
        // share.version=1, or a newer one with it set back to 0).
        UNSUPPORTED_VERSION => Class::Fatal(share_unsupported_message(broker, &failed)),
        INVALID_REQUEST | GROUP_ID_NOT_FOUND
            if said.to_ascii_lowercase().contains("share") && said.contains("enable") =>
        {
            Class::Fatal(share_unsupported_message(broker, &failed))
        }
        // The group id belongs to a consumer group (or another type).
        GROUP_ID_NOT_FOUND | INCONSISTENT_GROUP_PROTOCOL => Class::Fatal(format!(
            "--group-protocol share: {failed}; the group id is probably in use by a consumer \
             group of another type: give the share group its own --group"
        )),
        _ => match classify(code, "ShareGroupHeartbeat") {
            Class::Fatal(m) => Class::Fatal(format!("--group-protocol share: {m}{said}")),
            // A share member has one way back in: epoch 0 under its id.
            Class::Rejoin | Class::MemberIdRequired => Class::ResetMember,
            other => other,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebalance_codes_mean_rejoin_not_failure() {
        assert_eq!(classify(0, "Heartbeat"), Class::Ok);
        assert_eq!(classify(27, "Heartbeat"), Class::Rejoin);
        assert_eq!(classify(22, "OffsetCommit"), Class::Rejoin);
        assert_eq!(classify(25, "Heartbeat"), Class::ResetMember);
        assert_eq!(classify(79, "JoinGroup"), Class::MemberIdRequired);
    }

    #[test]
    fn coordinator_moves_and_transients() {
        assert_eq!(classify(16, "JoinGroup"), Class::CoordinatorMoved);
        assert_eq!(classify(15, "FindCoordinator"), Class::CoordinatorMoved);
        assert_eq!(classify(14, "OffsetFetch"), Class::Retry);
        assert_eq!(classify(7, "OffsetCommit"), Class::Retry);
    }

    #[test]
    fn fatal_errors_name_the_flag() {
        let Class::Fatal(m) = classify(82, "JoinGroup") else {
            panic!()
        };
        assert!(
            m.contains("--instance-prefix") && m.contains("FencedInstanceId"),
            "{m}"
        );
        let Class::Fatal(m) = classify(24, "JoinGroup") else {
            panic!()
        };
        assert!(m.contains("--group"), "{m}");
        let Class::Fatal(m) = classify(23, "JoinGroup") else {
            panic!()
        };
        assert!(m.contains("--assignor"), "{m}");
        let Class::Fatal(m) = classify(26, "JoinGroup") else {
            panic!()
        };
        assert!(m.contains("--session-timeout"), "{m}");
        assert!(matches!(classify(30, "JoinGroup"), Class::Fatal(_)));
        assert!(matches!(classify(4242, "JoinGroup"), Class::Fatal(_)));
    }
    #[test]
    fn share_errors_of_a_broker_without_share_groups_name_the_flag_and_the_version() {
        let Class::Fatal(m) = classify_share(UNSUPPORTED_VERSION, None, "b:1") else {
            panic!()
        };
        assert!(
            m.contains("--group-protocol share")
                && m.contains("4.2")
                && m.contains("share.version=1"),
            "{m}"
        );
        let Class::Fatal(m) =
            classify_share(INVALID_REQUEST, Some("Share groups are not enabled"), "b:1")
        else {
            panic!()
        };
        assert!(m.contains("4.2"), "{m}");
        let Class::Fatal(m) = classify_share(
            GROUP_ID_NOT_FOUND,
            Some("Group g is not a share group"),
            "b:1",
        ) else {
            panic!()
        };
        assert!(m.contains("--group"), "{m}");
    }

    #[test]
    fn fenced_share_members_rejoin_and_moves_reconnect() {
        assert_eq!(
            classify_share(FENCED_MEMBER_EPOCH, None, "b"),
            Class::ResetMember
        );
        assert_eq!(
            classify_share(UNKNOWN_MEMBER_ID, None, "b"),
            Class::ResetMember
        );
        assert_eq!(
            classify_share(NOT_COORDINATOR, None, "b"),
            Class::CoordinatorMoved
        );
        assert_eq!(
            classify_share(COORDINATOR_LOAD_IN_PROGRESS, None, "b"),
            Class::Retry
        );
        assert_eq!(classify_share(NONE, None, "b"), Class::Ok);
    }
}
