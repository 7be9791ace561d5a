//! `kswarm status` of a share group (KIP-932): its members and their
//! partitions (ShareGroupDescribe), and per partition the backlog from the
//! share-partition start offset to the high watermark
//! (DescribeShareGroupOffsets): share groups commit no offsets, so the
//! classic view would count the whole topic as lag. The same figures feed
//! `--metrics-addr` of a share run ([`spawn_backlog_poller`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

use crate::config::ConnectConfig;
use crate::metrics::ShareBacklog;
use crate::state_file::SupervisorState;
use crate::wire::share_admin::{self, ShareGroup};
use crate::wire::BrokerConn;

/// One member of the share group, on any host.
#[derive(Debug, Serialize)]
pub(super) struct ShareMemberOut {
    member_id: String,
    client_id: String,
    /// The member's address as the broker sees it.
    client_host: String,
    member_epoch: i32,
    /// Its partitions of --topic (in a share group several members may
    /// share one partition).
    partitions: Vec<i32>,
}

#[derive(Debug, Serialize)]
pub(super) struct SharePartitionRow {
    #[serde(flatten)]
    figures: ShareBacklog,
    /// Members assigned the partition now.
    members: usize,
}

/// `status --json` of a share group; `version` as for the other groups.
#[derive(Debug, Serialize)]
pub(super) struct ShareStatusOut {
    version: u32,
    /// Always "share": what tells this layout from the other groups'.
    protocol: &'static str,
    group: String,
    topic: String,
    group_state: String,
    group_epoch: i32,
    assignment_epoch: i32,
    members: Vec<ShareMemberOut>,
    partitions: Vec<SharePartitionRow>,
    /// The sum of the partitions' backlogs (those with a start offset).
    total_backlog: i64,
    supervisor: Option<SupervisorState>,
    security: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    unreadable: Vec<String>,
}

/// The group as ShareGroupDescribe tells it, if it is a share group. None
/// when the broker has no share groups, or the group does not exist or is
/// of another type (GROUP_ID_NOT_FOUND, as the Java admin client reads it):
/// the caller describes it as a classic or consumer group then.
pub(super) async fn describe_if_share(coord: &mut BrokerConn, group: &str) -> Option<ShareGroup> {
    if !share_admin::offers_share_group_describe(coord) {
        return None;
    }
    match share_admin::share_group_describe(coord, group).await {
        Ok(g) if g.error == 0 => Some(g),
        Ok(g) => {
            tracing::debug!(
                "ShareGroupDescribe: {} {}",
                crate::wire::group_msgs::code_name(g.error),
                g.error_message.unwrap_or_default()
            );
            None
        }
        Err(e) => {
            tracing::debug!("ShareGroupDescribe: {e}");
            None
        }
    }
}

/// Each partition's start offset (the broker's -1 when the group has not
/// begun there); empty when the group does not exist (yet).
async fn start_offsets(
    coord: &mut BrokerConn,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> anyhow::Result<BTreeMap<i32, i64>> {
    if !share_admin::supports_share_describe(coord) {
        return Err(crate::error::ExitWith(
            1,
            format!(
                "--group {group} is a share group, but the broker at {} does not describe share-group offsets ({}); \
                 upgrade the brokers to Apache Kafka 4.1 or newer, or read the group with Kafka's \
                 kafka-share-groups.sh --describe --group {group}",
                coord.addr(),
                share_admin::describe_support(coord)
            ),
        )
        .into());
    }
    let got = share_admin::describe_share_group_offsets(coord, group, topic, partitions)
        .await
        .with_context(|| format!("reading the start offsets of share group --group {group}"))?;
    match got.error {
        0 => {}
        crate::wire::codes::GROUP_ID_NOT_FOUND => return Ok(BTreeMap::new()),
        code => anyhow::bail!(
            "reading the start offsets of share group --group {group} failed: {}{}",
            crate::wire::group_msgs::code_name(code),
            got.error_message
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ),
    }
    Ok(got
        .partitions
        .iter()
        .map(|p| {
            if p.error != 0 {
                tracing::debug!(partition = p.partition, error = p.error, "no start offset");
            }
            (p.partition, if p.error == 0 { p.start_offset } else { -1 })
        })
        .collect())
}

/// Per partition of `ends`: its figures (pure).
pub(super) fn backlogs(
    ends: &BTreeMap<i32, i64>,
    starts: &BTreeMap<i32, i64>,
) -> Vec<ShareBacklog> {
    ends.iter()
        .map(|(&p, &end)| ShareBacklog::new(p, starts.get(&p).copied().unwrap_or(-1), end))
        .collect()
}

/// The status of share group `g` (described already) on `topic`.
pub(super) async fn collect(
    admin: &crate::admin::Admin,
    connect: &ConnectConfig,
    coord: &mut BrokerConn,
    g: ShareGroup,
    (group, topic): (&str, &str),
    partitions: &[i32],
) -> anyhow::Result<ShareStatusOut> {
    let starts = start_offsets(coord, group, topic, partitions).await?;
    let ends = super::end_offsets(admin, connect, topic, partitions).await?;
    let supervisor = crate::state_file::read_state(group, topic);
    let unreadable = super::unreadable_if(supervisor.is_none());
    Ok(assemble(
        g,
        (group, topic),
        &backlogs(&ends, &starts),
        supervisor,
        connect.security.describe(),
        unreadable,
    ))
}

/// The output from its parts (pure).
fn assemble(
    g: ShareGroup,
    (group, topic): (&str, &str),
    figures: &[ShareBacklog],
    supervisor: Option<SupervisorState>,
    security: String,
    unreadable: Vec<String>,
) -> ShareStatusOut {
    let mut members: Vec<ShareMemberOut> = g
        .members
        .into_iter()
        .map(|m| ShareMemberOut {
            partitions: super::sorted(
                m.assignment
                    .iter()
                    .filter(|(t, _)| t == topic)
                    .flat_map(|(_, p)| p.iter().copied()),
            ),
            member_id: m.member_id,
            client_id: m.client_id,
            client_host: m.client_host.trim_start_matches('/').to_string(),
            member_epoch: m.member_epoch,
        })
        .collect();
    members.sort_by(|a, b| {
        (&a.client_host, &a.client_id, &a.member_id).cmp(&(
            &b.client_host,
            &b.client_id,
            &b.member_id,
        ))
    });
    let partitions: Vec<SharePartitionRow> = figures
        .iter()
        .map(|f| SharePartitionRow {
            figures: *f,
            members: members
                .iter()
                .filter(|m| m.partitions.contains(&f.partition))
                .count(),
        })
        .collect();
    ShareStatusOut {
        version: super::JSON_VERSION,
        protocol: "share",
        group: group.to_string(),
        topic: topic.to_string(),
        group_state: g.state,
        group_epoch: g.group_epoch,
        assignment_epoch: g.assignment_epoch,
        total_backlog: figures.iter().filter_map(|f| f.backlog).sum(),
        members,
        partitions,
        supervisor,
        security,
        unreadable,
    }
}

/// The human view of a share group's status.
pub(super) fn table_text(out: &ShareStatusOut) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "group {}  topic {}  share group  total backlog {}",
        out.group, out.topic, out.total_backlog
    );
    t.push_str(&super::supervisor_text(
        out.supervisor.as_ref(),
        &out.unreadable,
    ));
    let _ = writeln!(
        t,
        "{} members on all hosts (share group, {}, epoch {}):",
        out.members.len(),
        out.group_state,
        out.group_epoch
    );
    if !out.members.is_empty() {
        let w = out
            .members
            .iter()
            .map(|m| m.client_id.len())
            .max()
            .unwrap_or(0)
            .max(16);
        let _ = writeln!(
            t,
            "  {:<18} {:<w$} {:<6} {:<24} partitions",
            "host", "client id", "epoch", "member id"
        );
        for m in &out.members {
            let _ = writeln!(
                t,
                "  {:<18} {:<w$} {:<6} {:<24} {:?}",
                m.client_host, m.client_id, m.member_epoch, m.member_id, m.partitions
            );
        }
    }
    let _ = writeln!(
        t,
        "{:>9}  {:>12}  {:>14}  {:>10}  members",
        "partition", "start offset", "high watermark", "backlog"
    );
    let dash = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    for r in &out.partitions {
        let f = &r.figures;
        let _ = writeln!(
            t,
            "{:>9}  {:>12}  {:>14}  {:>10}  {}",
            f.partition,
            dash(f.start_offset),
            f.high_watermark,
            dash(f.backlog),
            r.members
        );
    }
    t
}

/// A share group's figures now: what `--metrics-addr` serves for a share run.
async fn share_backlog(
    connect: &ConnectConfig,
    group: &str,
    topic: &str,
) -> anyhow::Result<Vec<ShareBacklog>> {
    let admin = crate::admin::Admin::connect(connect).await?;
    let Some(count) = admin.partition_count(topic).await? else {
        anyhow::bail!("topic '{topic}' does not exist (--topic)");
    };
    let partitions: Vec<i32> = (0..count as i32).collect();
    let mut coord = super::connect_coordinator(connect, "kswarm-metrics", group).await?;
    let starts = start_offsets(&mut coord, group, topic, &partitions).await?;
    if starts.is_empty() {
        return Ok(Vec::new()); // no such group yet: no figures
    }
    let ends = super::end_offsets(&admin, connect, topic, &partitions).await?;
    Ok(backlogs(&ends, &starts))
}

/// How often a share run's supervisor reads the backlog for its metrics.
const POLL_EVERY: Duration = Duration::from_secs(5);

/// A thread that reads the share group's backlog every [`POLL_EVERY`] into
/// `into` (emptied when a read fails: no stale figures are served).
pub fn spawn_backlog_poller(
    connect: ConnectConfig,
    group: String,
    topic: String,
    into: Arc<Mutex<Vec<ShareBacklog>>>,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("share-backlog".into())
        .spawn(move || loop {
            let read = rt.block_on(async {
                let deadline = connect.connect_timeout * 3;
                tokio::time::timeout(deadline, share_backlog(&connect, &group, &topic)).await
            });
            let figures = match read {
                Ok(Ok(f)) => f,
                Ok(Err(e)) => {
                    tracing::debug!("share-group backlog for the metrics: {e:#}");
                    Vec::new()
                }
                Err(_) => {
                    tracing::debug!("share-group backlog for the metrics: no answer in time");
                    Vec::new()
                }
            };
            if let Ok(mut v) = into.lock() {
                *v = figures;
            }
            std::thread::sleep(POLL_EVERY);
        })
        .context("cannot start the share-backlog thread")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::share_admin::ShareMember;

    fn group() -> ShareGroup {
        let member = |id: &str, host: &str, parts: Vec<i32>| ShareMember {
            member_id: id.into(),
            member_epoch: 4,
            client_id: format!("kswarm-{id}"),
            client_host: format!("/{host}"),
            assignment: vec![("t".into(), parts), ("other".into(), vec![9])],
        };
        ShareGroup {
            error: 0,
            error_message: None,
            state: "Stable".into(),
            group_epoch: 4,
            assignment_epoch: 4,
            members: vec![
                member("b", "10.0.0.2", vec![1, 0]),
                member("a", "10.0.0.1", vec![0]),
            ],
        }
    }

    #[test]
    fn backlog_per_partition_from_start_offsets_not_the_whole_log() {
        let ends = BTreeMap::from([(0, 100), (1, 50), (2, 7)]);
        // 2: the group has not begun there (no start offset at all).
        let starts = BTreeMap::from([(0, 60), (1, -1)]);
        let f = backlogs(&ends, &starts);
        let got: Vec<(Option<i64>, Option<i64>)> =
            f.iter().map(|b| (b.start_offset, b.backlog)).collect();
        assert_eq!(got, vec![(Some(60), Some(40)), (None, None), (None, None)]);
        let out = assemble(group(), ("g", "t"), &f, None, "PLAINTEXT".into(), vec![]);
        assert_eq!(out.total_backlog, 40, "not 157, the whole log");
    }

    #[test]
    fn json_and_table_show_members_and_backlog() {
        let f = backlogs(
            &BTreeMap::from([(0, 100), (1, 50)]),
            &BTreeMap::from([(0, 60), (1, 50)]),
        );
        let out = assemble(group(), ("g", "t"), &f, None, "PLAINTEXT".into(), vec![]);
        let j = serde_json::to_value(&out).unwrap();
        assert_eq!(j["protocol"], "share");
        assert_eq!(j["total_backlog"], 40);
        assert_eq!(j["members"][0]["client_host"], "10.0.0.1", "sorted by host");
        assert_eq!(j["members"][1]["partitions"], serde_json::json!([0, 1]));
        assert_eq!(
            j["partitions"][0],
            serde_json::json!({"partition": 0, "start_offset": 60, "high_watermark": 100, "backlog": 40, "members": 2})
        );
        let text = table_text(&out);
        assert!(
            text.starts_with("group g  topic t  share group  total backlog 40\n"),
            "{text}"
        );
        assert!(
            text.contains("2 members on all hosts (share group, Stable, epoch 4):"),
            "{text}"
        );
        assert!(
            text.contains("        0            60             100          40  2\n"),
            "{text}"
        );
    }
}
