//! Committed offsets, read and written the same way under every protocol
//! that has them (classic and consumer): OffsetFetch and OffsetCommit
//! through the coordinator link. Only what a commit is stamped with differs
//! (a generation, or a member epoch): the member says it ([`CommitAs`]).

use std::collections::HashMap;

use super::errors::{classify, Class};
use super::link::{CoordinatorLink, Pacer, Step};
use super::requests::{Commit, FetchOffsets};
use super::types::{GroupError, GroupSettings};
use crate::wire::group_msgs::CommitArgs;

/// Whom a commit is from: the member's id and its generation (classic) or
/// member epoch (consumer), which the coordinator checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CommitAs {
    pub member_id: String,
    pub generation_id: i32,
}

/// How a refused commit ends: the member must rejoin, and whether it must
/// forget its member id first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    Rejoin,
    ForgetMemberId,
}

/// OffsetFetch: the committed next-offset per partition (None = nothing
/// committed), retrying within the connect timeout.
pub(crate) async fn committed(
    link: &mut CoordinatorLink,
    s: &GroupSettings,
    partitions: &[i32],
) -> Result<HashMap<i32, Option<i64>>, GroupError> {
    let what = format!("reading committed offsets of --group {}", s.group);
    let mut pacer = Pacer::new(s.connect_timeout);
    loop {
        match committed_once(link, s, partitions).await {
            Ok(v) => return Ok(v),
            Err(step) => pacer.step(&what, step).await?,
        }
    }
}

async fn committed_once(
    link: &mut CoordinatorLink,
    s: &GroupSettings,
    partitions: &[i32],
) -> Result<HashMap<i32, Option<i64>>, Step> {
    let req = FetchOffsets {
        group: &s.group,
        topic: &s.topic,
        partitions,
    };
    let ans = link.call(req, s.request_timeout(), "").await?;
    let worst = std::iter::once(ans.error)
        .chain(ans.partitions.iter().map(|p| p.2))
        .find(|&c| c != 0);
    if let Some(code) = worst {
        let class = classify(code, "OffsetFetch");
        return Err(link.common("OffsetFetch", code, class).unwrap_or_else(|| {
            Step::Pause(format!(
                "OffsetFetch: {}",
                crate::wire::group_msgs::code_name(code)
            ))
        }));
    }
    let mut out: HashMap<i32, Option<i64>> = partitions.iter().map(|&p| (p, None)).collect();
    for (p, off, _) in ans.partitions {
        if out.contains_key(&p) {
            out.insert(p, (off >= 0).then_some(off));
        }
    }
    Ok(out)
}

/// OffsetCommit of next-offsets as `from`, retrying transient problems
/// within the connect timeout. `Ok(Err(refusal))`: the coordinator refused
/// the member (a rebalance, a fenced epoch): nothing was committed.
pub(crate) async fn commit(
    link: &mut CoordinatorLink,
    s: &GroupSettings,
    from: &CommitAs,
    offsets: &[(i32, i64)],
) -> Result<Result<(), Refusal>, GroupError> {
    let what = format!("committing offsets of --group {}", s.group);
    let mut pacer = Pacer::new(s.connect_timeout);
    loop {
        match commit_once(link, s, from, offsets).await {
            Ok(v) => return Ok(v),
            Err(step) => pacer.step(&what, step).await?,
        }
    }
}

async fn commit_once(
    link: &mut CoordinatorLink,
    s: &GroupSettings,
    from: &CommitAs,
    offsets: &[(i32, i64)],
) -> Result<Result<(), Refusal>, Step> {
    let args = CommitArgs {
        group: &s.group,
        generation_id: from.generation_id,
        member_id: &from.member_id,
        instance_id: s.instance_id.as_deref(),
        topic: &s.topic,
        offsets,
    };
    let codes = link
        .call(
            Commit(&args),
            s.request_timeout(),
            super::types::STATIC_HINT,
        )
        .await?;
    let mut problem = None;
    for (_, code) in codes.into_iter().filter(|c| c.1 != 0) {
        match classify(code, "OffsetCommit") {
            Class::Ok => {}
            // As for the heartbeat: the next join keeps our id and learns
            // whether it is known.
            Class::Rejoin | Class::ResetMember => return Ok(Err(Refusal::Rejoin)),
            Class::MemberIdRequired => return Ok(Err(Refusal::ForgetMemberId)),
            class => match link.common("OffsetCommit", code, class) {
                Some(Step::Fail(e)) => return Err(Step::Fail(e)),
                other => problem = other,
            },
        }
    }
    match problem {
        None => Ok(Ok(())),
        Some(p) => Err(p),
    }
}
