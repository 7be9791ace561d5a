//! The worker of a partitioned group (the classic and consumer protocols):
//! join, fetch (one request per leader), hand records to the handler,
//! commit what the handler acknowledged, report to the supervisor.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use tracing::info;

use crate::config::WorkerConfig;
use crate::group::{GroupError, GroupSettings, Member};
use crate::report::{Report, StopCause};

use super::cluster::{Cluster, ClusterError};
use super::core::{Core, Feed};
use super::error::{Result, WorkerError};
use super::positions::Positions;

use super::verdicts::Ledger;

mod generation;
mod pipeline;
mod retry_lanes;
mod settle;

use retry_lanes::{LaneRun, RetryTopic};

/// Why a generation's consume loop ended.
enum GenerationEnd {
    Rebalance,
    Shutdown,
    OutputClosed,
    /// A record the handler cannot take: everything before it is delivered
    /// and committed, then the worker stops with this message.
    Poison(String),
}

struct Worker {
    core: Core,
    feed: Feed,
    /// The topic's leaders and a connection per broker (start offsets; the
    /// fetch task of each generation gets a copy of its own).
    cluster: Cluster,
    member: Member,
    /// Per partition: the next offset after what the handler acknowledged in
    /// an earlier generation that could not be committed then (the group
    /// moved on, the broker was away). Every record below it was handled,
    /// so a later generation that owns the partition starts there and
    /// commits it, instead of delivering those records again.
    carried: BTreeMap<i32, i64>,
    /// Per partition fetched: the end of its log at the last fetch (-1:
    /// not known yet), written by the fetch task.
    high_watermarks: HashMap<i32, Arc<std::sync::atomic::AtomicI64>>,
    /// Per partition: the last committed offset we know (the metrics).
    committed_at: BTreeMap<i32, i64>,
    /// Times our partitions changed since the worker started.
    rebalances: u64,
    /// `--verdicts`: this generation's records between handler and commit.
    ledger: Option<Ledger>,
    /// `--dead-letter-topic`: the copies the dead-letter task has not
    /// confirmed yet.
    copies_pending: usize,
    verdict_counts: crate::metrics::VerdictCounts,
    /// `--output-topic`: the transactional producer.
    output: Option<crate::worker::output::Output>,
    /// `--retry-delays`: the retry topics, in order.
    retry_topics: Vec<RetryTopic>,
    /// `--retry-delays`: this generation's reading of each retry topic.
    lanes: Vec<LaneRun>,
}

pub(super) async fn run(cfg: WorkerConfig) -> Result<()> {
    let mut core = Core::open(cfg)?;
    let Some((cluster, member)) = connect(&mut core).await? else {
        return Ok(());
    };
    let Some(retry_topics) = connect_retry_topics(&mut core).await? else {
        return Ok(());
    };
    let feed = match Feed::start(&core.cfg, core.cfg.consume.verdicts.is_some()).await {
        Ok(f) => f,
        Err(e) => return Err(core.fatal(e)),
    };
    let output = match pipeline::start_output(&core.cfg).await {
        Ok(o) => o,
        Err(e) => return Err(core.fatal(e)),
    };
    let mut worker = Worker {
        core,
        feed,
        cluster,
        member,
        carried: BTreeMap::new(),
        high_watermarks: HashMap::new(),
        committed_at: BTreeMap::new(),
        rebalances: 0,
        ledger: None,
        copies_pending: 0,
        verdict_counts: Default::default(),
        output,
        retry_topics,
        lanes: Vec::new(),
    };
    let result = worker.consume().await;
    match result {
        Ok(()) => Ok(()),
        Err(e) => Err(worker.core.fatal(e)),
    }
}

/// The topic's leaders and the group's coordinator, waiting out outages:
/// the brokers may be down when we start (an outage, a restart of the whole
/// cluster). None: a stop signal came first.
async fn connect(core: &mut Core) -> Result<Option<(Cluster, Member)>> {
    let topic = core.cfg.topic.clone();
    let Some(cluster) = connect_cluster(core, &topic).await? else {
        return Ok(None);
    };
    let mut member = loop {
        let started = Instant::now();
        match Member::connect(GroupSettings::from_worker(&core.cfg)).await {
            Ok(m) => break m,
            Err(GroupError::Other(e)) => {
                if !core.wait_out(&e, started).await {
                    return Ok(None);
                }
            }
            Err(e) => return Err(core.fatal(group_error(e))),
        }
    };
    core.recovered();
    // Tell the supervisor our member id before the join completes: if we die
    // mid-join (say as the leader, before SyncGroup), it evicts us, and the
    // rest of the group does not wait on a dead member.
    let mut early = core.reporter.try_clone();
    member.on_member_id(move |id| {
        early.send(Report::MemberId {
            member_id: id.to_string(),
        })
    });
    if let Some(id) = &core.cfg.rejoin {
        info!(
            slot = core.cfg.slot,
            "rejoining as member {id} (this slot's previous worker)"
        );
        member.rejoin_as(id);
        core.reporter.send(Report::MemberId {
            member_id: id.clone(),
        });
    }
    Ok(Some((cluster, member)))
}

/// The leaders of `topic`, waiting out outages. None: a stop signal came first.
async fn connect_cluster(core: &mut Core, topic: &str) -> Result<Option<Cluster>> {
    let cfg = &core.cfg;
    let mut cluster = Cluster::new(
        topic,
        &cfg.connect.brokers,
        &crate::group_size::client_id(cfg.slot, cfg.host_workers, &cfg.host_id),
        cfg.connect.connect_timeout,
    );
    loop {
        let started = Instant::now();
        match cluster.refresh().await {
            Ok(()) => return Ok(Some(cluster)),
            Err(e @ ClusterError::Fatal(_)) => {
                return Err(core.fatal(WorkerError::Config(format!("{e:#}"))))
            }
            Err(e) => {
                if !core.wait_out(&e, started).await {
                    return Ok(None);
                }
            }
        }
    }
}

/// `--retry-delays`: the leaders of each retry topic. None: a stop signal
/// came first.
async fn connect_retry_topics(core: &mut Core) -> Result<Option<Vec<RetryTopic>>> {
    let delays = match &core.cfg.consume.verdicts {
        Some(v) => v.retry_delays.clone(),
        None => Vec::new(),
    };
    let mut out = Vec::new();
    for (index, d) in delays.iter().enumerate() {
        let topic = d.topic(&core.cfg.topic);
        let Some(cluster) = connect_cluster(core, &topic).await? else {
            return Ok(None);
        };
        out.push(RetryTopic {
            index: index as u8,
            delay: d.delay,
            cluster,
            carried: BTreeMap::new(),
        });
    }
    Ok(Some(out))
}

impl Worker {
    async fn consume(&mut self) -> Result<()> {
        let mut resume = self.core.cfg.resume.take();
        loop {
            let assigned = match resume.take() {
                Some(r) => {
                    info!(
                        slot = self.core.cfg.slot,
                        "taking over member {} (generation {})", r.member_id, r.generation
                    );
                    self.member.resume(&r.member_id, r.generation, r.partitions)
                }
                None => match self.join().await? {
                    Some(a) => a,
                    None => return self.finish(StopCause::Signal).await,
                },
            };
            info!(
                event = "member_joined",
                slot = self.core.cfg.slot,
                generation = assigned.generation_id,
                partitions = ?assigned.partitions,
                "joined group {} as {}",
                self.core.cfg.consume.group,
                assigned.member_id
            );
            self.core.reporter.send(Report::Joined {
                member_id: assigned.member_id.clone(),
                generation: assigned.generation_id,
                partitions: assigned.partitions.clone(),
            });
            match self.consume_generation(&assigned.partitions).await? {
                GenerationEnd::Rebalance => {
                    self.rebalances += 1;
                    self.core.reporter.send(Report::Revoked {
                        partitions: assigned.partitions.clone(),
                    });
                }
                GenerationEnd::Shutdown => return self.finish(StopCause::Signal).await,
                GenerationEnd::OutputClosed => return self.finish(StopCause::StdoutClosed).await,
                GenerationEnd::Poison(msg) => {
                    self.core.reporter.send(Report::Stopping {
                        reason: StopCause::Poison,
                    });
                    return Err(WorkerError::Poison(msg));
                }
            }
        }
    }

    /// Join the group, waiting out broker outages. None: a stop signal came first.
    async fn join(&mut self) -> Result<Option<crate::group::Assigned>> {
        loop {
            let started = Instant::now();
            let r = tokio::select! {
                r = self.member.join() => r,
                _ = self.core.shutdown.recv() => return Ok(None),
            };
            match r {
                Ok(a) => {
                    self.core.recovered();
                    return Ok(Some(a));
                }
                Err(GroupError::Other(e)) => {
                    if !self.core.wait_out(&e, started).await {
                        return Ok(None);
                    }
                }
                Err(e) => return Err(group_error(e)),
            }
        }
    }

    /// Leave the group (the generation loop has already drained and committed).
    async fn finish(&mut self, reason: StopCause) -> Result<()> {
        self.core.reporter.send(Report::Stopping {
            reason: reason.clone(),
        });
        if self.core.shutdown.hands_over() {
            // The supervisor hands the member to this slot's next worker
            // (rolling restart) or removes it with the others (shutdown).
            info!(
                slot = self.core.cfg.slot,
                "stopping ({reason}); member {} stays in the group for the supervisor to hand on",
                self.member.member_id()
            );
            return Ok(());
        }
        info!(slot = self.core.cfg.slot, "stopping ({reason})");
        let _ = self.member.leave().await;
        Ok(())
    }

    /// Where each owned partition starts: its committed offset, or --from;
    /// and where the retry topics' partitions that go with them start.
    /// Waits out broker outages; None if the group rebalanced or a stop
    /// signal came meanwhile.
    async fn start_offsets(&mut self, owned: &[i32]) -> Result<Option<Starts>> {
        let mut stop = self.core.shutdown.clone();
        loop {
            let started = Instant::now();
            let attempt = tokio::select! {
                r = self.try_start_offsets(owned) => r,
                _ = stop.recv() => return Ok(None),
            };
            match attempt {
                Ok(p) => {
                    self.core.recovered();
                    return Ok(Some(p));
                }
                Err(StartError::Group(GroupError::Rebalance)) => return Ok(None),
                Err(StartError::Group(GroupError::Fatal(m))) => return Err(WorkerError::Config(m)),
                Err(e) => {
                    let e: &dyn std::fmt::Display = match &e {
                        StartError::Group(GroupError::Other(e)) => e,
                        StartError::Group(e) => e,
                        StartError::Cluster(e) => e,
                    };
                    tokio::select! {
                        go_on = self.core.wait_out(e, started) => if !go_on {
                            return Ok(None);
                        },
                        r = self.member.rebalance_needed() => {
                            r.map_err(group_error)?;
                            return Ok(None);
                        }
                    }
                }
            }
        }
    }

    async fn try_start_offsets(
        &mut self,
        owned: &[i32],
    ) -> std::result::Result<Starts, StartError> {
        let broker: BTreeMap<i32, Option<i64>> = (self.member.committed(owned).await)
            .map_err(StartError::Group)?
            .into_iter()
            .collect();
        let (mut positions, from) = Positions::plan(owned, &broker, &self.carried);
        if !from.is_empty() {
            let starts = self
                .cluster
                .start_offsets(&from, self.core.cfg.consume.from)
                .await
                .map_err(StartError::Cluster)?;
            for (p, start) in starts {
                positions.start_at(p, start);
            }
        }
        let mut lanes = Vec::with_capacity(self.retry_topics.len());
        for t in &mut self.retry_topics {
            lanes.push(t.positions(&mut self.member, owned).await?);
        }
        Ok(Starts { positions, lanes })
    }

    /// The statistics `--metrics-addr` shows, to the supervisor.
    fn report_stats(&mut self, owned: &[i32]) {
        use std::sync::atomic::Ordering;
        let mut stats = self.feed.stats(owned, self.rebalances, self.verdict_counts);
        for e in &mut stats.partitions {
            e.committed = self.committed_at.get(&e.partition).copied();
            e.high_watermark = self
                .high_watermarks
                .get(&e.partition)
                .map(|h| h.load(Ordering::Relaxed))
                .filter(|&h| h >= 0);
        }
        self.core.reporter.send(Report::Stats(stats));
    }
}

/// A group error for the worker's exit: retrying cannot fix a fatal one, so
/// it is a configuration error (a setting the broker refuses, no rights...).
fn group_error(e: GroupError) -> WorkerError {
    match e {
        GroupError::Fatal(m) => WorkerError::Config(m),
        GroupError::Rebalance => WorkerError::Other(e.into()),
        GroupError::Other(e) => WorkerError::Other(e),
    }
}

/// Where a generation starts: the owned partitions, and the partitions of
/// each retry topic that go with them.
struct Starts {
    positions: Positions,
    lanes: Vec<Positions>,
}

/// Why the start offsets could not be read.
enum StartError {
    Group(GroupError),
    Cluster(ClusterError),
}
