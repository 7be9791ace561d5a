//! Members removed on their behalf: the supervisor's fast failover for
//! crashed workers, its leave-together at shutdown, and a share worker
//! cleaning up after its dead predecessor. One entry point for every
//! protocol: the coordinator drops the members now, not after their
//! session timeout (45 s by default). Members it no longer knows count as
//! gone.

use std::time::Duration;

use super::consumer::{check_broker, CONSUMER_HINT, LEAVE_EPOCH};
use super::errors::{classify, classify_share, Class};
use super::link::{CoordinatorLink, LinkSettings, Pacer, Step};
use super::requests::{ConsumerHeartbeat, Leave, ShareHeartbeat};
use super::types::GroupError;
use crate::config::GroupProtocol;
use crate::wire::codes;
use crate::wire::consumer_group::ConsumerBeat;
use crate::wire::share::ShareBeat;

/// Which group, and how its members leave.
#[derive(Debug, Clone)]
pub struct Eviction {
    pub brokers: Vec<String>,
    pub connect_timeout: Duration,
    pub group: String,
    pub protocol: GroupProtocol,
}

impl Eviction {
    pub fn new(
        brokers: &[String],
        connect_timeout: Duration,
        group: &str,
        protocol: GroupProtocol,
    ) -> Self {
        Self {
            brokers: brokers.to_vec(),
            connect_timeout,
            group: group.to_string(),
            protocol,
        }
    }
}

/// Who to remove: members by id, and (classic static members) by group
/// instance id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Leaving {
    members: Vec<String>,
    instances: Vec<String>,
}

impl Leaving {
    fn is_empty(&self) -> bool {
        self.members.is_empty() && self.instances.is_empty()
    }
}

/// Remove `member_ids` (and, classic only, `instance_ids`) from the group,
/// retrying moved coordinators and transient errors within the connect timeout.
pub async fn evict(
    e: &Eviction,
    member_ids: &[String],
    instance_ids: &[String],
) -> Result<(), GroupError> {
    let mut left = Leaving {
        members: member_ids.to_vec(),
        instances: instance_ids.to_vec(),
    };
    if left.is_empty() {
        return Ok(());
    }
    let what = format!("evicting members of --group {}", e.group);
    let mut pacer = Pacer::new(e.connect_timeout);
    let mut link = CoordinatorLink::new(LinkSettings {
        brokers: e.brokers.clone(),
        client_id: "kswarm-supervisor".into(),
        group: e.group.clone(),
        kind: crate::group::CoordinatorKind::Group,
        connect_timeout: e.connect_timeout,
        window: e.connect_timeout,
    });
    let timeout = e.connect_timeout.max(Duration::from_secs(10));
    loop {
        let step = match e.protocol {
            GroupProtocol::Classic => leave_group(&mut link, e, &left, timeout).await,
            GroupProtocol::Consumer | GroupProtocol::Share => {
                leave_one_by_one(&mut link, e, &mut left, timeout).await
            }
        };
        match step {
            Ok(()) => return Ok(()),
            Err(step) => pacer.step(&what, step).await?,
        }
    }
}

/// What an eviction makes of one member's error code: gone (or nothing
/// left to evict), try again, or give up.
fn outcome(link: &mut CoordinatorLink, request: &str, code: i16, class: Class) -> Option<Step> {
    match class {
        Class::Ok | Class::Rejoin | Class::ResetMember | Class::MemberIdRequired => None,
        class => link.common(request, code, class),
    }
}

/// Classic: one LeaveGroup naming every member (v3+; one per member before).
async fn leave_group(
    link: &mut CoordinatorLink,
    e: &Eviction,
    left: &Leaving,
    timeout: Duration,
) -> Result<(), Step> {
    let mut members: Vec<(String, Option<String>)> =
        left.members.iter().map(|m| (m.clone(), None)).collect();
    members.extend(
        left.instances
            .iter()
            .map(|i| (String::new(), Some(i.clone()))),
    );
    let req = Leave {
        group: &e.group,
        members: &members,
    };
    let hint = "evicting static members needs LeaveGroup v3+ (Kafka 2.4)";
    let ans = link.call(req, timeout, hint).await?;
    // UNKNOWN_MEMBER_ID per member: already gone, which is what we want.
    let codes = std::iter::once(ans.error).chain(ans.members.iter().map(|m| m.2));
    let mut again = None;
    for code in codes.filter(|&c| c != codes::NONE && c != codes::UNKNOWN_MEMBER_ID) {
        match outcome(link, "LeaveGroup", code, classify(code, "LeaveGroup")) {
            Some(Step::Fail(f)) => return Err(Step::Fail(f)),
            Some(step) => again = Some(step),
            None => {}
        }
    }
    again.map_or(Ok(()), Err)
}

/// Consumer protocol and share groups: a leave heartbeat (epoch -1) per
/// member; those that must be tried again stay in `left`.
async fn leave_one_by_one(
    link: &mut CoordinatorLink,
    e: &Eviction,
    left: &mut Leaving,
    timeout: Duration,
) -> Result<(), Step> {
    if e.protocol == GroupProtocol::Consumer {
        check_broker(link.conn().await?)?;
    }
    let mut again = Vec::new();
    let mut problem = None;
    for id in std::mem::take(&mut left.members) {
        match leave_heartbeat(link, e, &id, timeout).await {
            Ok(()) => {}
            Err(Step::Fail(f)) => return Err(Step::Fail(f)),
            Err(step) => {
                again.push(id);
                problem = Some(step);
            }
        }
    }
    left.members = again;
    problem.map_or(Ok(()), Err)
}

/// One member's leave heartbeat, and what its answer means.
async fn leave_heartbeat(
    link: &mut CoordinatorLink,
    e: &Eviction,
    id: &str,
    timeout: Duration,
) -> Result<(), Step> {
    let (request, code, class) = if e.protocol == GroupProtocol::Share {
        let req = ShareBeat {
            group: &e.group,
            member_id: id,
            member_epoch: LEAVE_EPOCH,
            topics: None,
        };
        let ans = link.call(ShareHeartbeat(&req), timeout, "").await?;
        // A group that is gone has no members left to remove.
        if ans.error == codes::GROUP_ID_NOT_FOUND {
            return Ok(());
        }
        let broker = link.addr().unwrap_or_default();
        let class = classify_share(ans.error, ans.error_message.as_deref(), &broker);
        ("ShareGroupHeartbeat", ans.error, class)
    } else {
        let req = ConsumerBeat {
            group: &e.group,
            member_id: id,
            member_epoch: LEAVE_EPOCH,
            instance_id: None,
            rebalance_timeout_ms: None,
            topics: None,
            server_assignor: None,
            owned: None,
        };
        let ans = link
            .call(ConsumerHeartbeat(&req), timeout, CONSUMER_HINT)
            .await?;
        let class = classify(ans.error, "ConsumerGroupHeartbeat");
        ("ConsumerGroupHeartbeat", ans.error, class)
    };
    outcome(link, request, code, class).map_or(Ok(()), Err)
}
