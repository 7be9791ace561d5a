//! `kswarm plan`: show (and with --apply carry out) the topic sizing, and
//! [`prepare_for_run`], the same sizing for the supervisor of `kswarm run`.

use std::time::Duration;

use anyhow::Context;
use serde_json::json;

use crate::admin::{Admin, Applied};
use crate::cli::PlanArgs;
use crate::config::{
    validate_topic, Checked, ConnectConfig, PartitionsSpec, RunConfig, SizingConfig, WorkersSpec,
};
use crate::sizing::{self, Action, Cores, Plan};

/// Validated `kswarm plan` settings.
#[derive(Debug, Clone)]
pub struct PlanConfig {
    pub connect: ConnectConfig,
    pub topic: String,
    /// `-g`: show and size for the group's other hosts too.
    pub group: Option<String>,
    pub sizing: SizingConfig,
    pub apply: bool,
    pub json: bool,
    /// `--group-protocol share`: the workers share partitions (see
    /// [`sizing::for_share_group`]).
    pub share: bool,
}

impl PlanConfig {
    pub fn from_args(a: &PlanArgs) -> Checked<Self> {
        let group = a
            .group
            .as_deref()
            .map(crate::config::validate_group)
            .transpose()?;
        Ok(Self {
            group,
            connect: ConnectConfig::from_args(&a.connect)?,
            topic: validate_topic(&a.topic)?,
            sizing: SizingConfig::from_args(&a.sizing)?,
            apply: a.apply,
            json: a.json,
            share: crate::config::group_protocol(a.group_protocol.as_deref(), None)?
                == crate::config::GroupProtocol::Share,
        })
    }
}

/// What `kswarm run` needs after sizing: how many workers to start and how
/// many partitions the topic has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreparedTopic {
    pub workers: u32,
    pub partitions: u32,
}

/// Size the topic for `kswarm run`: read the usable cores and the topic,
/// create or grow it as the plan says, log one line. Builds its own tokio
/// runtime and drops it before returning (the caller then forks).
pub fn prepare_for_run(cfg: &RunConfig) -> anyhow::Result<PreparedTopic> {
    prepare_for_run_in(cfg, None)
}

/// [`prepare_for_run`] for a run whose state directory is `state_dir`: its
/// state file names the members a killed run before this one left in the
/// group, which are this host's (see `group_size::OwnMembers`).
pub fn prepare_for_run_in(
    cfg: &RunConfig,
    state_dir: Option<&std::path::Path>,
) -> anyhow::Result<PreparedTopic> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let own = state_dir
        .map(|d| crate::state_file::own_member_ids(d, &cfg.consume.group, &cfg.topic))
        .unwrap_or_default();
    let result = rt.block_on(prepare(cfg, own));
    rt.shutdown_timeout(Duration::from_millis(200));
    result
}

/// The group-wide view for `-p auto` (empty otherwise: no other sizing
/// looks at the group).
async fn view_for_sizing(
    connect: &crate::config::ConnectConfig,
    sizing: &crate::config::SizingConfig,
    group: Option<&str>,
    topic: &str,
    own_member_ids: std::collections::BTreeSet<String>,
) -> crate::group_size::GroupView {
    match (sizing.partitions, group) {
        (crate::config::PartitionsSpec::Auto, Some(g)) => {
            let own = crate::group_size::OwnMembers {
                host: sizing.host_id.clone(),
                member_ids: own_member_ids,
            };
            crate::status::group_view(connect, g, topic, &own).await
        }
        _ => Default::default(),
    }
}

async fn prepare(
    cfg: &RunConfig,
    own_member_ids: std::collections::BTreeSet<String>,
) -> anyhow::Result<PreparedTopic> {
    let cores = sizing::usable_cores();
    let admin = Admin::connect(&cfg.connect).await?;
    let current = admin.partition_count(&cfg.topic).await?;
    let view = view_for_sizing(
        &cfg.connect,
        &cfg.sizing,
        Some(&cfg.consume.group),
        &cfg.topic,
        own_member_ids,
    )
    .await;
    let mut plan = sizing::plan_for_group(
        cores.usable,
        cfg.sizing.workers,
        cfg.sizing.partitions,
        current,
        view.others(&cfg.sizing.host_id),
    );
    if cfg.consume.group_protocol == crate::config::GroupProtocol::Share {
        plan = sizing::for_share_group(plan, cfg.sizing.partitions);
    }
    if plan.action == Action::Keep && current.is_none() {
        anyhow::bail!(
            "topic '{}' does not exist and -p keep forbids creating it; create it, or use -p auto or -p N so kswarm creates it",
            cfg.topic
        );
    }
    let applied = admin
        .apply(&cfg.topic, &plan, cfg.sizing.replication_factor)
        .await?;
    let what = match (&applied, plan.action) {
        (Applied::Unchanged(_), Action::CannotShrink | Action::Keep) => {
            plan.describe_action(&cfg.topic)
        }
        _ => applied.describe(&cfg.topic),
    };
    let mut line = format!(
        "{what}; {} workers, {} usable cores ({})",
        plan.workers,
        cores.usable,
        cores.explain()
    );
    for n in &plan.notes {
        line.push_str("; ");
        line.push_str(n);
    }
    tracing::info!("{line}");
    if let Some(dlq) = cfg
        .consume
        .verdicts
        .as_ref()
        .and_then(|v| v.dead_letter_topic.as_deref())
    {
        ensure_dead_letter_topic(&admin, dlq, cfg.sizing.replication_factor).await?;
    }
    if cfg.consume.group_protocol != crate::config::GroupProtocol::Share {
        if let Some(v) = &cfg.consume.verdicts {
            for topic in v.retry_topics(&cfg.topic) {
                ensure_retry_topic(&admin, &topic, applied.partitions(), cfg).await?;
            }
        }
    }
    if let Some(out) = &cfg.consume.output {
        check_output_topic(&admin, cfg, &out.topic).await?;
    }
    Ok(PreparedTopic {
        workers: plan.workers,
        partitions: applied.partitions(),
    })
}

/// `--dead-letter-topic`: create it (one partition) when it is missing, so
/// that the first rejected record finds it; a cluster that refuses says so
/// now, naming the flag, not at the first poison record.
async fn ensure_dead_letter_topic(admin: &Admin, topic: &str, rf: i16) -> anyhow::Result<()> {
    if let Some(n) = admin.partition_count(topic).await? {
        tracing::info!(
            "dead-letter topic '{topic}' has {}",
            sizing::n_partitions(n)
        );
        return Ok(());
    }
    let applied = admin.create_topic(topic, 1, rf).await.map_err(|e| {
        crate::error::UsageError(format!(
            "--dead-letter-topic '{topic}' does not exist and creating it failed: {e:#}; \
             create it yourself (kafka-topics.sh --create --topic {topic}) or name another"
        ))
    })?;
    tracing::info!("--dead-letter-topic: {}", applied.describe(topic));
    Ok(())
}

/// `--retry-delays`: create each retry topic with as many partitions as the
/// topic, or grow it to that. A retry copy goes to its original's
/// partition number modulo the retry topic's partitions, and the member
/// that owns a topic partition reads the retry partition of that number: a
/// retry topic with fewer partitions (a broker that cannot grow it) still
/// loses nothing, its records just go to fewer workers.
async fn ensure_retry_topic(
    admin: &Admin,
    topic: &str,
    partitions: u32,
    cfg: &RunConfig,
) -> anyhow::Result<()> {
    let rf = cfg.sizing.replication_factor;
    let applied = match admin.partition_count(topic).await? {
        Some(n) if n >= partitions => Applied::Unchanged(n),
        Some(n) => match admin.grow_topic(topic, n, partitions).await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(
                    "--retry-delays: retry topic '{topic}' has {} and could not be grown to \
                     {partitions} ({e:#}); its records go to the workers of its first {n} \
                     partition number(s)",
                    sizing::n_partitions(n)
                );
                return Ok(());
            }
        },
        None => admin
            .create_topic(topic, partitions, rf)
            .await
            .map_err(|e| {
                crate::error::UsageError(format!(
                    "--retry-delays: retry topic '{topic}' does not exist and creating it \
                     failed: {e:#}; create it yourself (kafka-topics.sh --create --topic \
                     {topic} --partitions {partitions}) or leave --retry-delays out"
                ))
            })?,
    };
    tracing::info!("--retry-delays: {}", applied.describe(topic));
    Ok(())
}

/// `--output-topic`: it must exist (kswarm does not create it: a typo must
/// not start a pipeline into a new topic), and the brokers' transactions
/// must hide aborted results from read_committed readers. A broker without
/// DescribeTransactions (KIP-664, every Apache Kafka since 3.0) is refused:
/// tansu is one, and it reports no aborted transactions to its readers.
async fn check_output_topic(admin: &Admin, cfg: &RunConfig, topic: &str) -> anyhow::Result<()> {
    let brokers = cfg.connect.brokers.join(",");
    if admin.partition_count(topic).await?.is_none() {
        return Err(crate::error::UsageError(format!(
            "--output-topic '{topic}' does not exist on {brokers}; create it first (e.g. kswarm \
             plan -b {brokers} -t {topic} -p N --apply); kswarm does not create it, so that a \
             misspelt name cannot start a pipeline into a new topic"
        ))
        .into());
    }
    let conn = crate::wire::BrokerConn::connect(
        &cfg.connect.brokers[0],
        "kswarm-supervisor",
        cfg.connect.connect_timeout,
    )
    .await;
    if let Ok(c) = conn {
        let txn = [
            crate::wire::ApiKey::InitProducerId,
            crate::wire::ApiKey::EndTxn,
            crate::wire::ApiKey::TxnOffsetCommit,
            crate::wire::ApiKey::DescribeTransactions,
        ];
        if let Some(missing) = txn.iter().find(|k| c.broker_versions(**k).is_none()) {
            return Err(crate::error::UsageError(format!(
                "--output-topic needs Kafka transactions that hide aborted results from \
                 read_committed readers, and the broker at {} lacks {missing:?} (tansu is such \
                 a broker: it reports no aborted transactions); run the pipeline on Apache Kafka \
                 3.0 or newer, or leave --output-topic out and produce from the handler (at \
                 least once)",
                c.addr()
            ))
            .into());
        }
    }
    tracing::info!("--output-topic '{topic}': results go there exactly once, in transactions");
    Ok(())
}

/// `kswarm plan`.
pub fn run(args: &PlanArgs) -> anyhow::Result<()> {
    let cfg = PlanConfig::from_args(args)?;
    crate::connect::prepare(&cfg.connect)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = rt.block_on(plan_command(&cfg));
    rt.shutdown_timeout(Duration::from_millis(200));
    result
}

async fn plan_command(cfg: &PlanConfig) -> anyhow::Result<()> {
    let cores = sizing::usable_cores();
    let admin = Admin::connect(&cfg.connect).await?;
    let current = admin.partition_count(&cfg.topic).await?;
    // This host's members, live or left by a killed run (see `group_size::OwnMembers`).
    let own = cfg
        .group
        .as_deref()
        .map(|g| crate::state_file::own_member_ids_for_status(g, &cfg.topic))
        .unwrap_or_default();
    let view = view_for_sizing(
        &cfg.connect,
        &cfg.sizing,
        cfg.group.as_deref(),
        &cfg.topic,
        own,
    )
    .await;
    let mut plan = sizing::plan_for_group(
        cores.usable,
        cfg.sizing.workers,
        cfg.sizing.partitions,
        current,
        view.others(&cfg.sizing.host_id),
    );
    if cfg.share {
        plan = sizing::for_share_group(plan, cfg.sizing.partitions);
    }
    if plan.action == Action::Grow && !cfg.apply {
        if let Some(note) = admin.grow_support_note(&cfg.topic, &plan).await {
            plan.notes.push(note);
        }
    }
    let applied = if cfg.apply {
        Some(
            admin
                .apply(&cfg.topic, &plan, cfg.sizing.replication_factor)
                .await,
        )
    } else {
        None
    };
    // Print the plan even when applying it failed, then report the failure.
    let (applied, failure) = match applied {
        Some(Ok(a)) => (Some(a), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    let text = if cfg.json {
        serde_json::to_string(&plan_json(
            cfg,
            &cores,
            &plan,
            &view,
            applied.as_ref(),
            failure.is_some(),
        ))?
    } else {
        plan_text(cfg, &cores, &plan, &view, applied.as_ref())
    };
    crate::stdout::print_out(&text)?;
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn workers_origin(spec: WorkersSpec) -> &'static str {
    match spec {
        WorkersSpec::Auto => "auto: one per usable core",
        WorkersSpec::Fixed(_) => "-w",
    }
}

fn target_origin(spec: PartitionsSpec) -> &'static str {
    match spec {
        PartitionsSpec::Auto => "auto: one per worker",
        PartitionsSpec::Fixed(_) => "-p",
        PartitionsSpec::Keep => "-p keep: as the topic is",
    }
}

fn plan_text(
    cfg: &PlanConfig,
    cores: &Cores,
    plan: &Plan,
    view: &crate::group_size::GroupView,
    applied: Option<&Applied>,
) -> String {
    let mut out = String::new();
    let mut row = |k: &str, v: String| out.push_str(&format!("{k:<16}{v}\n"));
    row("topic", cfg.topic.clone());
    row("brokers", cfg.connect.brokers.join(","));
    row("security", cfg.connect.security.describe());
    row(
        "usable cores",
        format!("{} ({})", cores.usable, cores.explain()),
    );
    row(
        "workers",
        format!("{} ({})", plan.workers, workers_origin(cfg.sizing.workers)),
    );
    if cfg.group.is_some() {
        row("this host", cfg.sizing.host_id.clone());
        let mut hosts: Vec<String> = view
            .hosts
            .iter()
            .map(|h| {
                format!(
                    "{} ({} workers, {} in the group)",
                    h.host, h.workers, h.members
                )
            })
            .collect();
        if view.other_members > 0 {
            hosts.push(format!("{} other consumer(s)", view.other_members));
        }
        row(
            "group hosts",
            if hosts.is_empty() {
                "none yet".to_string()
            } else {
                hosts.join(", ")
            },
        );
    }
    row(
        "partitions now",
        plan.current
            .map_or("missing".to_string(), |c| c.to_string()),
    );
    row(
        "target",
        match plan.target {
            Some(t)
                if cfg.share
                    && cfg.sizing.partitions == PartitionsSpec::Auto
                    && plan.current.is_some() =>
            {
                format!("{t} (auto, share group: as the topic is)")
            }
            Some(t) => format!("{t} ({})", target_origin(cfg.sizing.partitions)),
            None => format!("none ({})", target_origin(cfg.sizing.partitions)),
        },
    );
    row("action", plan.describe_action(&cfg.topic));
    for n in &plan.notes {
        row("note", n.clone());
    }
    match applied {
        Some(a) => row("done", a.describe(&cfg.topic)),
        None if cfg.apply => {}
        None => match plan.action {
            Action::Create | Action::Grow => row(
                "dry run",
                "nothing changed; add --apply to carry it out".into(),
            ),
            _ => row("dry run", "nothing to change".into()),
        },
    }
    out.trim_end().to_string()
}

fn plan_json(
    cfg: &PlanConfig,
    cores: &Cores,
    plan: &Plan,
    view: &crate::group_size::GroupView,
    applied: Option<&Applied>,
    failed: bool,
) -> serde_json::Value {
    json!({
        "topic": cfg.topic,
        "brokers": cfg.connect.brokers,
        "security": cfg.connect.security.describe(),
        "cores": cores.usable,
        "cores_affinity": cores.affinity,
        "cores_quota": cores.quota,
        "workers": plan.workers,
        "host_id": cfg.sizing.host_id,
        "group": cfg.group,
        "group_hosts": view.hosts,
        "group_other_members": view.other_members,
        "group_workers": plan.workers + plan.others,
        "current": plan.current,
        "target": plan.target,
        "action": plan.action.name(),
        "description": plan.describe_action(&cfg.topic),
        "notes": plan.notes,
        "share_group": cfg.share,
        "applied": applied.is_some(),
        "failed": failed,
        "result": applied.map(|a| a.describe(&cfg.topic)),
        "partitions": applied.map(|a| a.partitions()).or(plan.final_partitions()),
    })
}
