//! `kswarm status`: per partition, the group's committed offset, the end of the
//! log and the lag; and, when a kswarm supervisor for the group runs on this
//! host, which slot and pid own which partitions (from its state file, since
//! DescribeGroups is not answered with members by every broker). For a
//! consumer-protocol group (KIP-848) it also lists every member on every host,
//! from ConsumerGroupDescribe.

use std::collections::BTreeMap;

use anyhow::Context as _;
use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
use serde::Serialize;

use crate::cli::StatusArgs;
use crate::config::{validate_group, validate_topic, ConnectConfig};
use crate::state_file::{read_state, SupervisorState};
use crate::wire::group_msgs;

#[derive(Debug, Serialize)]
struct PartitionRow {
    partition: i32,
    committed: Option<i64>,
    end: i64,
    lag: Option<i64>,
    owner_slot: Option<u32>,
    owner_pid: Option<u32>,
}

/// A member of a consumer-protocol group (`--group-protocol consumer`), from
/// ConsumerGroupDescribe: every member on every host, kswarm's or not.
#[derive(Debug, Serialize)]
struct GroupMember {
    member_id: String,
    instance_id: Option<String>,
    client_id: String,
    /// The member's address as the broker sees it.
    client_host: String,
    member_epoch: i32,
    /// Its partitions of --topic, owned now.
    partitions: Vec<i32>,
}

#[derive(Debug, Serialize)]
struct StatusOut {
    group: String,
    topic: String,
    partitions: Vec<PartitionRow>,
    total_lag: i64,
    supervisor: Option<SupervisorState>,
    /// "consumer" for a KIP-848 group whose members the broker describes,
    /// else null (a classic group, or a broker without ConsumerGroupDescribe).
    group_protocol: Option<String>,
    /// The members of a consumer-protocol group (null otherwise).
    members: Option<Vec<GroupMember>>,
}

pub fn run(args: &StatusArgs) -> anyhow::Result<()> {
    let connect = ConnectConfig::from_args(&args.connect)?;
    let group = validate_group(&args.group)?;
    let topic = validate_topic(&args.topic)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let out = rt.block_on(collect(&connect, &group, &topic))?;
    // A closed pipe (`kswarm status | head`) is not an error.
    if args.json {
        crate::plan::print_out(&serde_json::to_string_pretty(&out)?)
    } else {
        crate::plan::print_out(table_text(&out).trim_end())
    }
}

async fn collect(connect: &ConnectConfig, group: &str, topic: &str) -> anyhow::Result<StatusOut> {
    let admin = crate::admin::Admin::connect(connect).await?;
    let Some(count) = admin.partition_count(topic).await? else {
        anyhow::bail!(
            "topic '{topic}' does not exist (--topic); create it with `kswarm plan --apply`"
        );
    };
    let partitions: Vec<i32> = (0..count as i32).collect();
    let mut coord = crate::group::coordinator::connect_coordinator(
        &connect.brokers,
        "kswarm-status",
        connect.connect_timeout,
        connect.connect_timeout,
        group,
    )
    .await?;
    let fetched = group_msgs::offset_fetch(&mut coord, group, topic, &partitions)
        .await
        .with_context(|| format!("reading the committed offsets of --group {group}"))?;
    let committed: BTreeMap<i32, i64> = fetched
        .partitions
        .iter()
        .filter(|(_, off, err)| *err == 0 && *off >= 0)
        .map(|(p, off, _)| (*p, *off))
        .collect();

    let members = describe_members(&mut coord, group, topic).await;
    let supervisor = read_state(group, topic);
    let mut ends = BTreeMap::new();
    for &p in &partitions {
        let pc = admin
            .client()
            .partition_client(topic.to_string(), p, UnknownTopicHandling::Retry)
            .await
            .with_context(|| format!("partition {p} of {topic}"))?;
        let end = tokio::time::timeout(connect.connect_timeout, pc.get_offset(OffsetAt::Latest))
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "no answer for the end offset of partition {p} within --connect-timeout"
                )
            })?
            .with_context(|| format!("end offset of partition {p}"))?;
        ends.insert(p, end);
    }
    let (rows, total_lag) = table(&ends, &committed, supervisor.as_ref());
    Ok(StatusOut {
        group: group.to_string(),
        topic: topic.to_string(),
        partitions: rows,
        total_lag,
        supervisor,
        group_protocol: members.as_ref().map(|_| "consumer".to_string()),
        members,
    })
}

/// The members of a consumer-protocol group; None for a classic group (or a
/// broker that cannot describe one), whose members only the state file shows.
async fn describe_members(
    coord: &mut crate::wire::BrokerConn,
    group: &str,
    topic: &str,
) -> Option<Vec<GroupMember>> {
    use crate::wire::consumer_group as cg;
    if !cg::supports_consumer_groups(coord) {
        return None;
    }
    let d = cg::consumer_group_describe(coord, group)
        .await
        .map_err(|e| tracing::debug!("ConsumerGroupDescribe: {e}"))
        .ok()?;
    if d.error != 0 {
        return None;
    }
    let mut members: Vec<GroupMember> = d
        .members
        .into_iter()
        .map(|m| GroupMember {
            partitions: m
                .assignment
                .iter()
                .filter(|(t, _)| t == topic)
                .flat_map(|(_, p)| p.iter().copied())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
            member_id: m.member_id,
            instance_id: m.instance_id,
            client_id: m.client_id,
            client_host: m.client_host.trim_start_matches('/').to_string(),
            member_epoch: m.member_epoch,
        })
        .collect();
    members.sort_by(|a, b| (&a.client_host, &a.client_id).cmp(&(&b.client_host, &b.client_id)));
    Some(members)
}

/// One row per partition, and the total lag: a partition with nothing
/// committed counts its whole log (from offset 0) as lag, and shows none.
fn table(
    ends: &BTreeMap<i32, i64>,
    committed: &BTreeMap<i32, i64>,
    supervisor: Option<&SupervisorState>,
) -> (Vec<PartitionRow>, i64) {
    let mut rows = Vec::new();
    let mut total_lag = 0;
    for (&p, &end) in ends {
        let c = committed.get(&p).copied();
        let lag = c.map(|c| (end - c).max(0));
        total_lag += lag.unwrap_or(end);
        let owner = supervisor.and_then(|s| s.workers.iter().find(|w| w.partitions.contains(&p)));
        rows.push(PartitionRow {
            partition: p,
            committed: c,
            end,
            lag,
            owner_slot: owner.map(|w| w.slot),
            owner_pid: owner.map(|w| w.pid),
        });
    }
    (rows, total_lag)
}

fn table_text(out: &StatusOut) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "group {}  topic {}  total lag {}",
        out.group, out.topic, out.total_lag
    );
    let _ = match &out.supervisor {
        Some(s) => writeln!(
            t,
            "supervisor pid {} on this host: {} workers",
            s.pid,
            s.workers.len()
        ),
        None => writeln!(t, "no kswarm supervisor for this group on this host"),
    };
    if let Some(members) = &out.members {
        let _ = writeln!(
            t,
            "{} members (consumer protocol, all hosts):",
            members.len()
        );
        for m in members {
            let _ = writeln!(
                t,
                "  {:<24} {:<16} {:<18} epoch {:<5} partitions {:?}",
                m.member_id, m.client_id, m.client_host, m.member_epoch, m.partitions
            );
        }
    }
    let _ = writeln!(
        t,
        "{:>9}  {:>12}  {:>12}  {:>10}  owner",
        "partition", "committed", "end", "lag"
    );
    for r in &out.partitions {
        let owner = match (r.owner_slot, r.owner_pid) {
            (Some(s), Some(pid)) => format!("slot {s} pid {pid}"),
            _ => "-".into(),
        };
        let _ = writeln!(
            t,
            "{:>9}  {:>12}  {:>12}  {:>10}  {owner}",
            r.partition,
            r.committed
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            r.end,
            r.lag.map(|l| l.to_string()).unwrap_or_else(|| "-".into()),
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state_file::WorkerState;

    #[test]
    fn lag_per_partition_and_in_total() {
        let ends = BTreeMap::from([(0, 100), (1, 50), (2, 7)]);
        // 0: behind by 40; 1: committed past the end it was told (a broker
        // with a stale end): no negative lag; 2: nothing committed.
        let committed = BTreeMap::from([(0, 60), (1, 55)]);
        let sup = SupervisorState {
            pid: 42,
            group: "g".into(),
            topic: "t".into(),
            workers: vec![WorkerState {
                slot: 1,
                pid: 4242,
                member_id: Some("m".into()),
                generation: Some(3),
                partitions: vec![0, 2],
                records: 0,
                restarts: 0,
            }],
            members: vec![],
        };
        let (rows, total) = table(&ends, &committed, Some(&sup));
        let lags: Vec<Option<i64>> = rows.iter().map(|r| r.lag).collect();
        assert_eq!(lags, vec![Some(40), Some(0), None]);
        assert_eq!(total, 40 + 7);
        assert_eq!(
            (rows[0].owner_slot, rows[0].owner_pid),
            (Some(1), Some(4242))
        );
        assert_eq!(rows[1].owner_slot, None);
        assert_eq!(rows[2].owner_pid, Some(4242));
        let (_, no_sup) = table(&ends, &BTreeMap::new(), None);
        assert_eq!(no_sup, 157);
    }
}
