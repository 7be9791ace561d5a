//! Raw command-line flags (clap). Nothing here is validated beyond its shape:
//! `config.rs` turns these into checked settings and names the flag at fault.

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "kswarm",
    version,
    about = "Turn any handler program into a parallel, crash-tolerant Kafka consumer group on one host",
    propagate_version = true
)]
pub struct Cli {
    /// Log filter for kswarm's own logs on stderr: error, warn, info, debug, trace or off,
    /// or RUST_LOG-style directives such as kswarm=debug,info.
    #[arg(long, global = true, env = "KSWARM_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// kswarm's logs as text lines for people, or one JSON object per line (each
    /// important moment with an `event` field) for log pipelines: text or json.
    #[arg(long, global = true, env = "KSWARM_LOG_FORMAT", default_value = "text")]
    pub log_format: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Size the topic, fork one worker per core into the consumer group, restart crashed workers.
    Run(RunArgs),
    /// Print cores, workers, partitions now -> target and the action; changes nothing without --apply.
    Plan(PlanArgs),
    /// Group members, who owns which partition, committed offsets and lag.
    Status(StatusArgs),
    /// Lines on stdin become records on the topic.
    Produce(ProduceArgs),
    /// Print the shell completion script for bash, zsh or fish (see docs/install.md).
    Completions(CompletionsArgs),
    /// Print the man page (roff) on stdout, e.g. `kswarm man > kswarm.1`.
    Man,
    /// One consumer-group member (started by `run`; hidden).
    #[command(hide = true)]
    Worker(WorkerArgs),
    /// Runs one handler (`sh -c CMD`) and kills every process it leaves (started by workers; hidden).
    #[command(hide = true)]
    Guard(GuardArgs),
    /// One worker started by `run`, its settings as JSON on fd 4 (hidden).
    #[command(hide = true)]
    Spawned(SpawnedArgs),
}

#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    pub shell: Shell,
}

/// The shells `kswarm completions` writes for (Linux only, like kswarm).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Clone, Args)]
pub struct SpawnedArgs {
    /// The worker's slot (for `ps`; its settings say it too).
    #[arg(long)]
    pub slot: u32,
}

#[derive(Debug, Clone, Args)]
pub struct GuardArgs {
    /// The handler command, for `sh -c`.
    pub command: String,
}

/// How to reach the cluster; shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Bootstrap brokers, HOST:PORT[,HOST:PORT..] (or bootstrap.servers in -F FILE).
    #[arg(short = 'b', long, env = "KSWARM_BROKERS")]
    pub brokers: Option<String>,

    /// A librdkafka/kcat properties file (key=value lines, # comments): the
    /// security settings (security.protocol, sasl.*, ssl.*) and any -X key.
    /// -X flags override it. Keep secrets here, not in -X: ps shows flags.
    #[arg(
        short = 'F',
        long = "config",
        value_name = "FILE",
        env = "KSWARM_CONFIG"
    )]
    pub config: Option<std::path::PathBuf>,

    /// Kafka settings by librdkafka's names, key=value (repeatable, or
    /// comma-separated), e.g. -X security.protocol=SASL_SSL or
    /// -X fetch.max.bytes=1048576; they override -F FILE.
    #[arg(
        short = 'X',
        value_name = "KEY=VALUE",
        env = "KSWARM_X",
        value_delimiter = ','
    )]
    pub extra: Vec<String>,

    /// Give up reaching the brokers after this long (e.g. 10s, 500ms).
    #[arg(long, env = "KSWARM_CONNECT_TIMEOUT", default_value = "10s")]
    pub connect_timeout: String,
}

/// Topic sizing flags; shared by `run`, `plan` and `worker`.
#[derive(Debug, Clone, Args)]
pub struct SizingArgs {
    /// Worker processes: `auto` (usable cores) or a number.
    #[arg(
        short = 'w',
        long,
        env = "KSWARM_WORKERS",
        default_value = "auto",
        allow_negative_numbers = true
    )]
    pub workers: String,

    /// Partitions: `auto` (match workers), a number, or `keep` (never touch the topic).
    #[arg(
        short = 'p',
        long,
        env = "KSWARM_PARTITIONS",
        default_value = "auto",
        allow_negative_numbers = true
    )]
    pub partitions: String,

    /// Replication factor for a topic kswarm creates.
    #[arg(long, env = "KSWARM_REPLICATION_FACTOR", default_value = "1")]
    pub replication_factor: String,

    /// This host's name in the group (default: the host name). Each host's
    /// workers tell the others how many they are under it, so that `-p auto`
    /// sizes the topic for every host's workers together.
    #[arg(long, env = "KSWARM_HOST_ID")]
    pub host_id: Option<String>,
}

/// Consumer flags; shared by `run` and `worker`.
#[derive(Debug, Clone, Args)]
pub struct ConsumeArgs {
    /// Consumer group id.
    #[arg(short = 'g', long, env = "KSWARM_GROUP")]
    pub group: String,

    /// Handler: a long-running command (sh -c) that reads records on stdin and acknowledges each with one line on stdout.
    #[arg(long, env = "KSWARM_EXEC", conflicts_with = "exec_batch")]
    pub exec: Option<String>,

    /// Batch handler: one run (sh -c) per batch, records on stdin, exit status 0 acknowledges the batch.
    #[arg(long, env = "KSWARM_EXEC_BATCH")]
    pub exec_batch: Option<String>,

    /// Records per --exec-batch run at most.
    #[arg(long, env = "KSWARM_BATCH_SIZE", default_value = "500")]
    pub batch_size: String,

    /// Longest wait to fill an --exec-batch batch.
    #[arg(long, env = "KSWARM_BATCH_WAIT", default_value = "200ms")]
    pub batch_wait: String,

    /// Retries of a failed --exec-batch run before the worker gives up (and is restarted).
    #[arg(long, env = "KSWARM_BATCH_RETRIES", default_value = "3")]
    pub batch_retries: String,

    /// --exec only: each ack line is a verdict on its record: `ok` (done),
    /// `retry` (deliver it again later) or `reject REASON` (poison). Without
    /// it any line means done.
    #[arg(long, env = "KSWARM_VERDICTS")]
    pub verdicts: bool,

    /// With --verdicts: rejected records, and records retried more than
    /// --max-record-retries times, are produced to this topic (headers name
    /// the original topic, partition, offset, the reason and the attempts)
    /// before their offsets are committed. Without it such a record stops the worker.
    #[arg(long, env = "KSWARM_DEAD_LETTER_TOPIC")]
    pub dead_letter_topic: Option<String>,

    /// With --verdicts: how many times one record may be retried; the next
    /// `retry` dead-letters it (or stops the worker). [default: 3]
    #[arg(long, env = "KSWARM_MAX_RECORD_RETRIES")]
    pub max_record_retries: Option<String>,

    /// With --verdicts: a record answered `retry` is copied to the retry
    /// topic of its next delay (TOPIC-retry-1s, TOPIC-retry-30s, ...) and is
    /// handled again once the delay has passed, without holding back its
    /// partition; after the last delay, `retry` dead-letters it (or stops the
    /// worker). Share groups hold the record for the delay instead. Example: 1s,30s,5m
    #[arg(long, env = "KSWARM_RETRY_DELAYS", value_name = "DELAYS")]
    pub retry_delays: Option<String>,

    /// Exactly-once pipelines: the --exec handler's stdout lines are results,
    /// produced to this topic in one Kafka transaction with the offsets of
    /// the records they came from (a plain line is one result and finishes
    /// its record; `@out V`, `@json {..}` and `@done` give zero or several).
    /// Also -X output.topic=T; -X transaction.timeout.ms sets the timeout.
    #[arg(long, env = "KSWARM_OUTPUT_TOPIC")]
    pub output_topic: Option<String>,

    /// Record format for the handler or stdout: json or value.
    #[arg(long, env = "KSWARM_FORMAT", default_value = "json")]
    pub format: String,

    /// Where a group with no committed offset starts: earliest or latest.
    #[arg(long, env = "KSWARM_FROM", default_value = "earliest")]
    pub from: String,

    /// Consumer-group session timeout; `auto` = 4s, raised step by step (6s, 10s, 30s, 45s) if the broker refuses it (Kafka's usual minimum is 6s). Share groups: how long a worker bears error answers in a row before it ends (`auto` = 45s, the broker's default session).
    #[arg(long, env = "KSWARM_SESSION_TIMEOUT", default_value = "auto")]
    pub session_timeout: String,

    /// Consumer-group rebalance timeout (how long the broker waits for members to rejoin).
    #[arg(long, env = "KSWARM_REBALANCE_TIMEOUT", default_value = "10s")]
    pub rebalance_timeout: String,

    /// Heartbeat interval.
    #[arg(long, env = "KSWARM_HEARTBEAT_INTERVAL", default_value = "250ms")]
    pub heartbeat_interval: String,

    /// Offset commit interval.
    #[arg(long, env = "KSWARM_COMMIT_INTERVAL", default_value = "1s")]
    pub commit_interval: String,

    /// The consumer group protocol: classic (JoinGroup/SyncGroup, every broker)
    /// or consumer (KIP-848: the broker assigns, incrementally; Kafka 4.0+).
    /// Also -X group.protocol=. [default: classic]
    #[arg(long, env = "KSWARM_GROUP_PROTOCOL")]
    pub group_protocol: Option<String>,

    /// Partition assignors, by preference. Classic protocol: range, roundrobin
    /// [default: range,roundrobin]. Consumer protocol: the broker's assignor,
    /// uniform or range (also -X group.remote.assignor=) [default: the broker's].
    #[arg(long, env = "KSWARM_ASSIGNOR")]
    pub assignor: Option<String>,

    /// Use static membership (group.instance.id = PREFIX-SLOT).
    #[arg(long, env = "KSWARM_STATIC_MEMBERSHIP")]
    pub static_membership: bool,

    /// Prefix of group.instance.id under --static-membership (default: the group id).
    #[arg(long, env = "KSWARM_INSTANCE_PREFIX")]
    pub instance_prefix: Option<String>,

    /// Records fetched but not yet acknowledged, per worker, at most.
    #[arg(long, env = "KSWARM_MAX_IN_FLIGHT", default_value = "10000")]
    pub max_in_flight: String,

    /// Bytes of records (as formatted for the handler) handed over but not yet
    /// acknowledged, per worker, at most: 1MiB, 512KiB, 4096...
    #[arg(long, env = "KSWARM_MAX_IN_FLIGHT_BYTES", default_value = "1MiB")]
    pub max_in_flight_bytes: String,

    /// The in-flight window follows the handler's measured rate: about what it
    /// acknowledges in this time (within --max-in-flight and --max-in-flight-bytes),
    /// so that a stop or a rebalance drains it in about this time.
    #[arg(long, env = "KSWARM_MAX_IN_FLIGHT_TIME", default_value = "1s")]
    pub max_in_flight_time: String,

    /// Time allowed for a graceful stop (drain, commit, leave) before SIGKILL.
    #[arg(long, env = "KSWARM_SHUTDOWN_TIMEOUT", default_value = "10s")]
    pub shutdown_timeout: String,

    /// A worker whose handler holds records and acknowledges none for this long
    /// ends (and is restarted); one that sends no liveness report for this long is killed.
    #[arg(long, env = "KSWARM_HANG_TIMEOUT", default_value = "30s")]
    pub hang_timeout: String,

    /// Replace a handler whose whole process tree uses more memory than this
    /// (PSS, sampled every second): 150M, 2GiB. What it acknowledged is
    /// committed, the rest delivered again to its replacement.
    #[arg(long, env = "KSWARM_HANDLER_MEMORY_MAX", value_name = "SIZE")]
    pub handler_memory_max: Option<String>,

    /// Replace a handler that holds one record longer than this and deliver the
    /// record again; the second time the same record times out it is a poison
    /// record (the dead-letter topic with reason `timeout` under --verdicts).
    #[arg(long, env = "KSWARM_RECORD_TIMEOUT", value_name = "DURATION")]
    pub record_timeout: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Topic to consume.
    #[arg(short = 't', long, env = "KSWARM_TOPIC")]
    pub topic: String,

    #[command(flatten)]
    pub sizing: SizingArgs,

    #[command(flatten)]
    pub consume: ConsumeArgs,

    /// Crash-loop budget: at most N restarts within WINDOW, then exit 1 (e.g. 10/60s).
    #[arg(long, env = "KSWARM_MAX_RESTARTS", default_value = "10/60s")]
    pub max_restarts: String,

    /// Give up (exit 1) once the brokers have been out of reach this long; `none` waits for ever.
    #[arg(long, env = "KSWARM_BROKER_OUTAGE_LIMIT", default_value = "none")]
    pub broker_outage_limit: String,

    /// Serve Prometheus metrics at http://HOST:PORT/metrics, and /healthz and
    /// /readyz (off unless given).
    #[arg(long, env = "KSWARM_METRICS_ADDR", value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Topic to size.
    #[arg(short = 't', long, env = "KSWARM_TOPIC")]
    pub topic: String,

    #[command(flatten)]
    pub sizing: SizingArgs,

    /// Consumer group (accepted so `plan` takes the same flags as `run`; not used for sizing).
    #[arg(short = 'g', long, env = "KSWARM_GROUP")]
    pub group: Option<String>,

    /// The group protocol `run` uses (classic, consumer or share). With share
    /// (KIP-932) the workers share partitions: -p auto does not grow the topic.
    #[arg(long, env = "KSWARM_GROUP_PROTOCOL")]
    pub group_protocol: Option<String>,

    /// Carry out the plan: create or grow the topic.
    // No KSWARM_* fallback: a change to the topic is asked for on the command line.
    #[arg(long)]
    pub apply: bool,

    /// Print the plan as one JSON object.
    #[arg(long, env = "KSWARM_JSON")]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Consumer group id.
    #[arg(short = 'g', long, env = "KSWARM_GROUP")]
    pub group: String,

    /// Topic whose partitions to show.
    #[arg(short = 't', long, env = "KSWARM_TOPIC")]
    pub topic: String,

    /// Print JSON instead of a table.
    #[arg(long, env = "KSWARM_JSON")]
    pub json: bool,

    /// Redraw the status every --interval until interrupted (with --json: one
    /// JSON document per line, every --interval).
    #[arg(long, env = "KSWARM_STATUS_WATCH")]
    pub watch: bool,

    /// How often --watch redraws.
    #[arg(long, env = "KSWARM_STATUS_INTERVAL", default_value = "2s")]
    pub interval: String,
}

#[derive(Debug, Clone, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,

    /// Topic to write to (must exist; see `kswarm plan --apply`).
    #[arg(short = 't', long, env = "KSWARM_TOPIC")]
    pub topic: String,

    /// A fixed key for every record (records with one key go to one partition).
    #[arg(long, env = "KSWARM_KEY", conflicts_with = "key_separator")]
    pub key: Option<String>,

    /// Split each line at the first SEP into key and value.
    #[arg(long, env = "KSWARM_KEY_SEPARATOR", value_name = "SEP")]
    pub key_separator: Option<String>,

    /// Compression: none, gzip, lz4, snappy, zstd.
    #[arg(long, env = "KSWARM_COMPRESSION", default_value = "none")]
    pub compression: String,

    /// How long to wait to fill a batch.
    #[arg(long, env = "KSWARM_LINGER", default_value = "5ms")]
    pub linger: String,

    /// Records per produce request at most.
    // Not KSWARM_BATCH_SIZE: that one sizes `run`'s --exec-batch batches.
    #[arg(long, env = "KSWARM_PRODUCE_BATCH_SIZE", default_value = "1000")]
    pub batch_size: String,
}

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,

    #[arg(short = 't', long, env = "KSWARM_TOPIC")]
    pub topic: String,

    #[command(flatten)]
    pub consume: ConsumeArgs,

    /// The worker's slot number (0-based), stable across restarts.
    #[arg(long, default_value = "0")]
    pub slot: u32,

    /// File descriptor on which to write reports to the supervisor (none: no reports).
    #[arg(long)]
    pub report_fd: Option<i32>,

    /// Take over this member id of a dead worker (fast failover; set by the supervisor).
    #[arg(long, requires_all = ["resume_generation", "resume_partitions"])]
    pub resume_member_id: Option<String>,

    /// Join the group under this member id, the id of this slot's previous
    /// worker (set by the supervisor; a broker that no longer knows it hands out a new one).
    #[arg(long, conflicts_with = "resume_member_id")]
    pub rejoin_member_id: Option<String>,

    /// Generation of the member to take over.
    #[arg(long, allow_negative_numbers = true)]
    pub resume_generation: Option<i32>,

    /// Partitions of the member to take over, comma-separated (may be empty).
    #[arg(long)]
    pub resume_partitions: Option<String>,
}
