//! `kswarm status`: per partition, the group's committed offset, the end of the
//! log and the lag; and, when a kswarm supervisor for the group runs on this
//! host, which slot and pid own which partitions (from its state file, since
//! DescribeGroups is not answered with members by every broker). For a
//! consumer-protocol group (KIP-848) it also lists every member on every host,
//! from ConsumerGroupDescribe. A share group (KIP-932) has a view of its
//! own: [`share`].

mod share;

pub use share::spawn_backlog_poller;

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

/// One member of the group, on any host, kswarm's or not: from
/// ConsumerGroupDescribe for a consumer-protocol group, from DescribeGroups
/// for a classic one.
#[derive(Debug, Serialize)]
struct GroupMember {
    member_id: String,
    instance_id: Option<String>,
    client_id: String,
    /// The member's address as the broker sees it.
    client_host: String,
    /// "classic" or "consumer" (the protocol this member speaks).
    protocol: String,
    /// Its member epoch (consumer protocol) or null.
    member_epoch: Option<i32>,
    /// Its partitions of --topic, owned now.
    partitions: Vec<i32>,
}

/// The layout of `status --json`; raised only when a field changes meaning
/// or goes away (new fields may be added).
const JSON_VERSION: u32 = 1;

#[derive(Debug, Serialize)]
struct StatusOut {
    version: u32,
    group: String,
    topic: String,
    partitions: Vec<PartitionRow>,
    total_lag: i64,
    supervisor: Option<SupervisorState>,
    /// How status connected, as `plan --json` shows it: the protocol, SASL
    /// mechanism and user, CA file; never a secret.
    security: String,
    /// The group's protocol ("classic" or "consumer") and state as the
    /// broker describes them; null when it does not (no such group yet).
    group_protocol: Option<String>,
    group_state: Option<String>,
    /// Every member on every host, as the broker describes them; null when
    /// it does not (tansu describes no members).
    members: Option<Vec<GroupMember>>,
    /// State directories this user may not read (a service's under another
    /// user), when no supervisor was found.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    unreadable: Vec<String>,
}

/// What `status` shows: a group that commits offsets (classic or consumer
/// protocol), or a share group; each with its own JSON layout.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Status {
    Committing(Box<StatusOut>),
    Share(Box<share::ShareStatusOut>),
}

impl Status {
    fn table_text(&self) -> String {
        match self {
            Status::Committing(o) => table_text(o),
            Status::Share(o) => share::table_text(o),
        }
    }
}

pub fn run(args: &StatusArgs) -> anyhow::Result<()> {
    let connect = ConnectConfig::from_args(&args.connect)?;
    crate::connect::prepare(&connect)?;
    let group = validate_group(&args.group)?;
    let topic = validate_topic(&args.topic)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // --interval is checked before anything is drawn.
    let every = crate::config::parse_positive_duration("--interval", &args.interval)?;
    let out = rt.block_on(collect(&connect, &group, &topic))?;
    // A closed pipe (`kswarm status | head`) is not an error.
    if !args.watch {
        return if args.json {
            crate::stdout::print_out(&serde_json::to_string_pretty(&out)?)
        } else {
            crate::stdout::print_out(out.table_text().trim_end())
        };
    }
    let mut out = Some(out);
    loop {
        let now = match out.take() {
            Some(o) => o,
            None => rt.block_on(collect(&connect, &group, &topic))?,
        };
        if args.json {
            crate::stdout::print_out(&serde_json::to_string(&now)?)?;
        } else {
            // Home, clear the screen, then the table: a live view in a terminal.
            crate::stdout::print_out(&format!(
                "\x1b[H\x1b[2J{}\n(every {every:?}, {}; Ctrl-C to stop)",
                now.table_text().trim_end(),
                time_of_day()
            ))?;
        }
        std::thread::sleep(every);
    }
}

async fn collect(connect: &ConnectConfig, group: &str, topic: &str) -> anyhow::Result<Status> {
    let admin = crate::admin::Admin::connect(connect).await?;
    let Some(count) = admin.partition_count(topic).await? else {
        anyhow::bail!(
            "topic '{topic}' does not exist (--topic); create it with `kswarm plan --apply`"
        );
    };
    let partitions: Vec<i32> = (0..count as i32).collect();
    let mut coord = connect_coordinator(connect, "kswarm-status", group).await?;
    if let Some(g) = share::describe_if_share(&mut coord, group).await {
        let out = share::collect(&admin, connect, &mut coord, g, (group, topic), &partitions);
        return Ok(Status::Share(Box::new(out.await?)));
    }
    let fetched = group_msgs::offset_fetch(&mut coord, group, topic, &partitions)
        .await
        .with_context(|| format!("reading the committed offsets of --group {group}"))?;
    let committed: BTreeMap<i32, i64> = fetched
        .partitions
        .iter()
        .filter(|(_, off, err)| *err == 0 && *off >= 0)
        .map(|(p, off, _)| (*p, *off))
        .collect();

    let described = describe_members(&mut coord, group, topic).await;
    let supervisor = read_state(group, topic);
    let ends = end_offsets(&admin, connect, topic, &partitions).await?;
    let (rows, total_lag) = table(&ends, &committed, supervisor.as_ref());
    let supervisor_missing = supervisor.is_none();
    Ok(Status::Committing(Box::new(StatusOut {
        group: group.to_string(),
        topic: topic.to_string(),
        partitions: rows,
        total_lag,
        supervisor,
        security: connect.security.describe(),
        version: JSON_VERSION,
        unreadable: unreadable_if(supervisor_missing),
        group_protocol: described.as_ref().map(|d| d.protocol.clone()),
        group_state: described.as_ref().map(|d| d.state.clone()),
        members: described.map(|d| d.members),
    })))
}

/// The state directories this user may not read, when no supervisor was found.
fn unreadable_if(supervisor_missing: bool) -> Vec<String> {
    if !supervisor_missing {
        return Vec::new();
    }
    crate::state_file::unreadable_dirs_for_status()
        .iter()
        .map(|d| d.display().to_string())
        .collect()
}

/// The end of each partition's log (its high watermark).
async fn end_offsets(
    admin: &crate::admin::Admin,
    connect: &ConnectConfig,
    topic: &str,
    partitions: &[i32],
) -> anyhow::Result<BTreeMap<i32, i64>> {
    let mut ends = BTreeMap::new();
    for &p in partitions {
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
    Ok(ends)
}

/// UTC time of day, HH:MM:SS, for the --watch footer.
fn time_of_day() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        % 86_400;
    format!(
        "{:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

struct Described {
    protocol: String,
    state: String,
    members: Vec<GroupMember>,
}

/// The group's hosts and their worker counts (see `group_size`), from the
/// broker's description of `group`. An empty view if the group has no
/// members yet or cannot be described (the caller sizes for itself then).
pub(crate) async fn group_view(
    connect: &ConnectConfig,
    group: &str,
    topic: &str,
    own: &crate::group_size::OwnMembers,
) -> crate::group_size::GroupView {
    let coord = connect_coordinator(connect, "kswarm-sizing", group).await;
    let mut coord = match coord {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!("cannot describe --group {group} for sizing: {e}");
            return Default::default();
        }
    };
    match describe_members(&mut coord, group, topic).await {
        Some(d) => crate::group_size::GroupView::from_members(
            d.members
                .iter()
                .map(|m| (m.member_id.as_str(), m.client_id.as_str())),
            own,
        ),
        None => Default::default(),
    }
}

/// The group's members on every host, as the broker describes them:
/// ConsumerGroupDescribe for a consumer-protocol group (its classic members
/// included), else DescribeGroups. None if the broker describes neither (no
/// such group, or no members: tansu).
async fn describe_members(
    coord: &mut crate::wire::BrokerConn,
    group: &str,
    topic: &str,
) -> Option<Described> {
    use crate::wire::consumer_group as cg;
    if cg::supports_consumer_groups(coord) {
        match cg::consumer_group_describe(coord, group).await {
            Ok(d) if d.error == 0 => {
                let members = d
                    .members
                    .into_iter()
                    .map(|m| GroupMember {
                        partitions: sorted(
                            m.assignment
                                .iter()
                                .filter(|(t, _)| t == topic)
                                .flat_map(|(_, p)| p.iter().copied()),
                        ),
                        protocol: if m.classic == Some(true) {
                            "classic"
                        } else {
                            "consumer"
                        }
                        .into(),
                        member_id: m.member_id,
                        instance_id: m.instance_id,
                        client_id: m.client_id,
                        client_host: m.client_host.trim_start_matches('/').to_string(),
                        member_epoch: Some(m.member_epoch),
                    })
                    .collect();
                return Some(Described {
                    protocol: "consumer".into(),
                    state: d.state,
                    members: by_host(members),
                });
            }
            Ok(_) => {} // not a consumer-protocol group: try the classic view
            Err(e) => tracing::debug!("ConsumerGroupDescribe: {e}"),
        }
    }
    let g = group_msgs::describe_group(coord, group)
        .await
        .map_err(|e| tracing::debug!("DescribeGroups: {e}"))
        .ok()?;
    if g.error != 0 || g.members.is_empty() {
        return None;
    }
    let members = g
        .members
        .into_iter()
        .map(|m| GroupMember {
            partitions: crate::wire::consumer_protocol::decode_assignment(&m.assignment)
                .map(|a| a.partitions_of(topic))
                .unwrap_or_default(),
            protocol: "classic".into(),
            member_id: m.member_id,
            instance_id: m.instance_id,
            client_id: m.client_id,
            client_host: m.client_host.trim_start_matches('/').to_string(),
            member_epoch: None,
        })
        .collect();
    Some(Described {
        protocol: "classic".into(),
        state: g.state,
        members: by_host(members),
    })
}

fn sorted(parts: impl Iterator<Item = i32>) -> Vec<i32> {
    let mut v: Vec<i32> = parts.collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn by_host(mut members: Vec<GroupMember>) -> Vec<GroupMember> {
    members.sort_by(|a, b| {
        (&a.client_host, &a.client_id, &a.member_id).cmp(&(
            &b.client_host,
            &b.client_id,
            &b.member_id,
        ))
    });
    members
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
    t.push_str(&supervisor_text(out.supervisor.as_ref(), &out.unreadable));
    match &out.members {
        Some(members) => {
            let _ = writeln!(
                t,
                "{} members on all hosts ({} group, {}):",
                members.len(),
                out.group_protocol.as_deref().unwrap_or("?"),
                out.group_state.as_deref().unwrap_or("?")
            );
            // client ids carry the host id (kswarm-SLOT.wN.HOST): as wide as the longest
            let w = members
                .iter()
                .map(|m| m.client_id.len())
                .max()
                .unwrap_or(0)
                .max(16);
            let _ = writeln!(
                t,
                "  {:<18} {:<w$} {:<9} {:<6} {:<24} partitions",
                "host", "client id", "protocol", "epoch", "member id"
            );
            for m in members {
                let _ = writeln!(
                    t,
                    "  {:<18} {:<w$} {:<9} {:<6} {:<24} {:?}",
                    m.client_host,
                    m.client_id,
                    m.protocol,
                    m.member_epoch
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "-".into()),
                    m.member_id,
                    m.partitions
                );
            }
        }
        None if out.partitions.iter().all(|r| r.committed.is_none()) => {
            // Nothing described and nothing committed: no such group (of any kind) yet.
            let _ = writeln!(
                t,
                "no group '{}' on the broker yet (no members, no committed offsets, not a share group): \
                 check --group, or start it with `kswarm run -g {} -t {}`",
                out.group, out.group, out.topic
            );
        }
        None => {
            let _ = writeln!(t, "the broker describes no members of this group");
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

/// This host's supervisor of the group and its slots, or why none is shown.
fn supervisor_text(supervisor: Option<&SupervisorState>, unreadable: &[String]) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    let _ = match supervisor {
        Some(s) => writeln!(
            t,
            "supervisor pid {} on this host: {} workers",
            s.pid,
            s.workers.len()
        ),
        None if !unreadable.is_empty() => writeln!(
            t,
            "no kswarm supervisor found on this host: {} is not readable by this user (run status as the service's user or root)",
            unreadable.join(", ")
        ),
        None => writeln!(t, "no kswarm supervisor for this group on this host"),
    };
    if let Some(sup) = supervisor {
        t.push_str(&slot_lines(sup, crate::metrics::unix_now()));
    }
    t
}

/// Per slot of this host's supervisor: its worker, its restarts, and the
/// last restart's reason and age.
fn slot_lines(sup: &SupervisorState, now_unix_secs: u64) -> String {
    let mut t = String::new();
    for w in &sup.workers {
        let last = match &w.last_restart {
            Some(r) => format!(
                ", last restart: {} {}s ago",
                r.reason,
                r.age_secs(now_unix_secs)
            ),
            None => String::new(),
        };
        t.push_str(&format!(
            "  slot {} pid {}: {} records, {} restarts{last}\n",
            w.slot, w.pid, w.records, w.restarts
        ));
    }
    t
}

/// A connection to `group`'s coordinator, as `client_id`.
async fn connect_coordinator(
    connect: &ConnectConfig,
    client_id: &str,
    group: &str,
) -> Result<crate::wire::BrokerConn, crate::group::GroupError> {
    crate::group::connect_coordinator(&crate::group::LinkSettings {
        brokers: connect.brokers.clone(),
        client_id: client_id.to_string(),
        group: group.to_string(),
        kind: crate::group::CoordinatorKind::Group,
        connect_timeout: connect.connect_timeout,
        window: connect.connect_timeout,
    })
    .await
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
                last_restart: None,
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

    #[test]
    fn slot_lines_show_the_last_restart_reason_and_age() {
        let mut w = WorkerState {
            slot: 1,
            pid: 4242,
            member_id: None,
            generation: None,
            partitions: vec![],
            records: 10,
            restarts: 3,
            last_restart: Some(crate::metrics::LastRestart {
                reason: crate::metrics::RestartReason::Memory,
                at_unix_secs: 1000,
            }),
        };
        let mut sup = SupervisorState {
            pid: 1,
            group: "g".into(),
            topic: "t".into(),
            workers: vec![w.clone()],
            members: vec![],
        };
        assert_eq!(
            slot_lines(&sup, 1042),
            "  slot 1 pid 4242: 10 records, 3 restarts, last restart: memory 42s ago\n"
        );
        w.last_restart = None;
        sup.workers = vec![w];
        assert_eq!(
            slot_lines(&sup, 1042),
            "  slot 1 pid 4242: 10 records, 3 restarts\n"
        );
    }
}
