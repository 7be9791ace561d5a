//! Committed offsets, read and written the same way under every protocol
//! that has them (classic and consumer): OffsetFetch and OffsetCommit
//! through the coordinator link. Only what a commit is stamped with differs
//! (a generation, or a member epoch): the member says it ([`CommitAs`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::errors::{classify, Class};
use super::link::{CoordinatorLink, Pacer, Step};
use super::requests::{Commit, FetchOffsets};
use super::types::{GroupError, GroupSettings};
use crate::backoff::Doubling;
use crate::wire::codes::UNSTABLE_OFFSET_COMMIT;
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
/// committed), retrying within the connect timeout. A partition whose
/// offsets sit in another producer's open transaction (KIP-447) is waited
/// for until that transaction ends, however long that takes within
/// [`OpenTransaction::LIMIT`]: starting before it would redo what its
/// commit is about to make final.
pub(crate) async fn committed(
    link: &mut CoordinatorLink,
    s: &GroupSettings,
    topic: &str,
    partitions: &[i32],
) -> Result<HashMap<i32, Option<i64>>, GroupError> {
    let what = format!("reading committed offsets of --group {}", s.group);
    let mut pacer = Pacer::new(s.connect_timeout);
    let mut open = OpenTransaction::new();
    loop {
        match committed_once(link, s, topic, partitions).await {
            Ok(Fetched::Offsets(v)) => return Ok(v),
            Ok(Fetched::Unsettled(parts)) => open.wait(s, topic, &parts).await?,
            Err(step) => pacer.step(&what, step).await?,
        }
    }
}

/// One OffsetFetch's answer.
enum Fetched {
    Offsets(HashMap<i32, Option<i64>>),
    /// These partitions' offsets are in an open transaction.
    Unsettled(Vec<i32>),
}

/// Waiting out an open transaction that holds committed offsets.
struct OpenTransaction {
    since: Instant,
    attempt: u32,
    told: Option<Instant>,
}

impl OpenTransaction {
    /// Kafka's largest transaction timeout (transaction.max.timeout.ms,
    /// 15 min) and a minute for the coordinator to abort it.
    const LIMIT: Duration = Duration::from_secs(16 * 60);
    const PAUSE: Doubling = Doubling::new(Duration::from_millis(50), Duration::from_millis(500));
    /// How often the wait is logged at info.
    const TELL_EVERY: Duration = Duration::from_secs(10);

    fn new() -> Self {
        Self {
            since: Instant::now(),
            attempt: 0,
            told: None,
        }
    }

    async fn wait(
        &mut self,
        s: &GroupSettings,
        topic: &str,
        parts: &[i32],
    ) -> Result<(), GroupError> {
        let waited = self.since.elapsed();
        if waited >= Self::LIMIT {
            return Err(GroupError::Other(anyhow::anyhow!(
                "partitions {parts:?} of -t {} are held by an open transaction of --group {} \
                 for over {waited:?} (UNSTABLE_OFFSET_COMMIT, KIP-447): the producer that \
                 opened it is stuck; kafka-transactions.sh --bootstrap-server ... list finds it, \
                 and abort ends it",
                topic,
                s.group
            )));
        }
        if self.told.is_none_or(|t| t.elapsed() >= Self::TELL_EVERY) {
            self.told = Some(Instant::now());
            tracing::info!(
                "partitions {parts:?}: waiting for an open transaction with offsets of --group {} \
                 to end before reading them (KIP-447; a producer that stopped is aborted after its \
                 transaction timeout)",
                s.group
            );
        }
        let pause = Self::PAUSE.delay(self.attempt);
        self.attempt += 1;
        tokio::time::sleep(pause).await;
        Ok(())
    }
}

async fn committed_once(
    link: &mut CoordinatorLink,
    s: &GroupSettings,
    topic: &str,
    partitions: &[i32],
) -> Result<Fetched, Step> {
    let req = FetchOffsets {
        group: &s.group,
        topic,
        partitions,
    };
    let ans = link.call(req, s.request_timeout(), "").await?;
    let unsettled: Vec<i32> = match ans.error {
        UNSTABLE_OFFSET_COMMIT => partitions.to_vec(),
        _ => ans
            .partitions
            .iter()
            .filter(|p| p.2 == UNSTABLE_OFFSET_COMMIT)
            .map(|p| p.0)
            .collect(),
    };
    if !unsettled.is_empty() {
        return Ok(Fetched::Unsettled(unsettled));
    }
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
    Ok(Fetched::Offsets(out))
}

/// OffsetCommit of next-offsets as `from`, retrying transient problems
/// within the connect timeout. `Ok(Err(refusal))`: the coordinator refused
/// the member (a rebalance, a fenced epoch): nothing was committed.
pub(crate) async fn commit(
    link: &mut CoordinatorLink,
    s: &GroupSettings,
    from: &CommitAs,
    topic: &str,
    offsets: &[(i32, i64)],
) -> Result<Result<(), Refusal>, GroupError> {
    let what = format!("committing offsets of --group {}", s.group);
    let mut pacer = Pacer::new(s.connect_timeout);
    loop {
        match commit_once(link, s, from, topic, offsets).await {
            Ok(v) => return Ok(v),
            Err(step) => pacer.step(&what, step).await?,
        }
    }
}

async fn commit_once(
    link: &mut CoordinatorLink,
    s: &GroupSettings,
    from: &CommitAs,
    topic: &str,
    offsets: &[(i32, i64)],
) -> Result<Result<(), Refusal>, Step> {
    let args = CommitArgs {
        group: &s.group,
        generation_id: from.generation_id,
        member_id: &from.member_id,
        instance_id: s.instance_id.as_deref(),
        topic,
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
