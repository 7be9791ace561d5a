//! Validated settings. Every raw flag is checked once, here, and a bad value
//! becomes a [`UsageError`] that names the flag and the way out (exit 2).

use std::time::Duration;

use crate::cli;
pub use crate::error::UsageError;
use crate::security::Security;
use crate::settings::Settings;

pub type Checked<T> = Result<T, UsageError>;

mod output;
mod parse;
mod verdicts;
pub use output::OutputConfig;
use parse::parse_brokers_named;
pub(crate) use parse::usage;
pub use parse::{
    parse_brokers, parse_count, parse_duration, parse_positive_duration, parse_size,
    validate_group, validate_topic, PartitionsSpec, WorkersSpec, MAX_PARTITIONS,
};
use verdicts::verdict_config;
pub use verdicts::{RetryDelay, VerdictConfig, DEFAULT_MAX_RECORD_RETRIES};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ConnectConfig {
    pub brokers: Vec<String>,
    pub connect_timeout: Duration,
    /// TLS and SASL (from the -F file and -X flags).
    pub security: Security,
    /// Every -F/-X setting, flags over the file (read again by the consumer
    /// settings; secrets redacted from Debug).
    pub settings: Settings,
}

impl ConnectConfig {
    pub fn from_args(a: &cli::ConnectArgs) -> Checked<Self> {
        let settings = Settings::load(a.config.as_deref(), &a.extra)?;
        let brokers = match (
            &a.brokers,
            settings.get("bootstrap.servers"),
            settings.get("metadata.broker.list"),
        ) {
            (Some(flag), _, _) => parse_brokers(flag)?,
            (None, Some(b), _) => parse_brokers_named(&settings.name("bootstrap.servers"), b)?,
            (None, None, Some(b)) => {
                parse_brokers_named(&settings.name("metadata.broker.list"), b)?
            }
            (None, None, None) => parse_brokers("")?,
        };
        Ok(Self {
            brokers,
            connect_timeout: parse_positive_duration("--connect-timeout", &a.connect_timeout)?,
            security: Security::from_settings(&settings)?,
            settings,
        })
    }

    /// Say once, in the process that read them, which settings kswarm does
    /// not use and which secrets `ps` can see.
    pub fn warn_about_settings(&self) {
        for key in self.settings.unknown_keys() {
            tracing::warn!(
                "{}: kswarm does not use this setting; it is ignored",
                self.settings.name(&key)
            );
        }
        for key in self.settings.secrets_on_command_line() {
            tracing::warn!(
                "-X {key} is on the command line, where ps and /proc show it to every user; \
                 put it in a -F/--config file readable only by kswarm's user"
            );
        }
    }
}

#[derive(Debug, Clone)]
pub struct SizingConfig {
    pub workers: WorkersSpec,
    pub partitions: PartitionsSpec,
    pub replication_factor: i16,
    /// `--host-id` (sanitized for a client id), else the host name.
    pub host_id: String,
}

impl SizingConfig {
    pub fn from_args(a: &cli::SizingArgs) -> Checked<Self> {
        Ok(Self {
            workers: WorkersSpec::parse(&a.workers)?,
            partitions: PartitionsSpec::parse(&a.partitions)?,
            replication_factor: parse_count("--replication-factor", &a.replication_factor, 1, 32)?
                as i16,
            host_id: match a.host_id.as_deref().map(str::trim) {
                Some("") => return usage(
                    "--host-id: empty; give this host's name, or leave it out for the host name",
                ),
                Some(h) => crate::group_size::sanitize_host(h),
                None => crate::group_size::sanitize_host(&crate::group_size::default_host_id()),
            },
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Format {
    Json,
    Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StartFrom {
    Earliest,
    Latest,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum HandlerSpec {
    /// Records go to kswarm's stdout.
    Stdout,
    /// A long-running `sh -c CMD` that acknowledges each record with a line.
    Exec(String),
    /// One `sh -c CMD` run per batch; exit 0 acknowledges it.
    Batch {
        command: String,
        size: usize,
        wait: Duration,
        retries: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Assignor {
    Range,
    RoundRobin,
}

impl Assignor {
    /// The standard protocol name, shared with librdkafka and the Java client.
    pub fn protocol_name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
        }
    }

    pub fn from_protocol_name(name: &str) -> Option<Self> {
        match name {
            "range" => Some(Assignor::Range),
            "roundrobin" => Some(Assignor::RoundRobin),
            _ => None,
        }
    }
}

/// `--group-protocol`: how workers take part in the consumer group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum GroupProtocol {
    /// JoinGroup/SyncGroup with a client-side assignor (every broker).
    #[default]
    Classic,
    /// KIP-848's ConsumerGroupHeartbeat: the broker assigns, incrementally.
    Consumer,
    /// KIP-932 share groups: members share partitions; records are acquired
    /// and acknowledged one by one (ShareFetch / ShareAcknowledge).
    Share,
}

impl GroupProtocol {
    pub fn name(self) -> &'static str {
        match self {
            GroupProtocol::Classic => "classic",
            GroupProtocol::Consumer => "consumer",
            GroupProtocol::Share => "share",
        }
    }
}

/// The server-side assignors of the consumer protocol (Kafka's
/// `group.consumer.assignors`).
pub const REMOTE_ASSIGNORS: [&str; 2] = ["uniform", "range"];

/// `--session-timeout auto` starts here: short enough for a group to form in
/// about two seconds on brokers that wait half the session timeout (tansu),
/// and raised along [`SESSION_TIMEOUT_STEPS`] on brokers that refuse it.
pub const AUTO_SESSION_TIMEOUT: Duration = Duration::from_secs(4);
pub const SESSION_TIMEOUT_STEPS: [Duration; 4] = [
    Duration::from_secs(6),
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(45),
];

/// Settings of one consumer-group member (the worker) and its handler.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ConsumeConfig {
    pub group: String,
    pub handler: HandlerSpec,
    pub format: Format,
    pub from: StartFrom,
    pub session_timeout: Duration,
    /// `--session-timeout auto`: raise it when the broker refuses it.
    pub session_timeout_auto: bool,
    pub rebalance_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub commit_interval: Duration,
    pub group_protocol: GroupProtocol,
    /// Classic protocol: the assignors we offer, by preference.
    pub assignors: Vec<Assignor>,
    /// Consumer protocol: the broker's assignor to ask for (None: its default).
    pub remote_assignor: Option<String>,
    pub static_membership: bool,
    pub instance_prefix: String,
    pub max_in_flight: usize,
    /// `--max-in-flight-bytes`.
    pub max_in_flight_bytes: usize,
    /// `--max-in-flight-time`.
    pub max_in_flight_time: Duration,
    /// `--hang-timeout`.
    pub hang_timeout: Duration,
    /// `--handler-memory-max`, bytes.
    #[serde(default)]
    pub handler_memory_max: Option<u64>,
    /// `--record-timeout`.
    #[serde(default)]
    pub record_timeout: Option<Duration>,
    pub shutdown_timeout: Duration,
    /// What one fetch request (one per partition leader, covering all of
    /// the worker's partitions there) asks for: `-X fetch.max.bytes`, or
    /// sized from what answers decode to.
    pub fetch_size: FetchSize,
    /// `-X max.partition.fetch.bytes`: the most one partition's fetch asks for.
    pub partition_fetch_max_bytes: i32,
    /// `-X fetch.wait.max.ms`: long-poll wait of an empty fetch.
    pub fetch_wait_ms: i32,
    /// `--verdicts` (None: any ack line means done).
    pub verdicts: Option<VerdictConfig>,
    /// `--output-topic`: results and offsets in one transaction.
    pub output: Option<OutputConfig>,
}

/// How big fetch requests are (`-X fetch.max.bytes`, or kswarm's default);
/// the worker's side is `worker::fetch_budget`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FetchSize {
    /// `-X fetch.max.bytes`: every request asks for this many bytes in all,
    /// as Kafka's own clients do.
    Fixed(i32),
    /// The default: requests sized so that an answer decodes to about
    /// `decoded` bytes in memory, never more than `wire` bytes a request.
    Adaptive { wire: i32, decoded: i32 },
}

impl FetchSize {
    /// The most one request asks for on the wire (share fetches, which take
    /// their records by count, ask for this).
    pub fn wire(self) -> i32 {
        match self {
            FetchSize::Fixed(n) => n,
            FetchSize::Adaptive { wire, .. } => wire,
        }
    }
}

/// 2 MiB a fetch request at most (Kafka's default is 50 MiB): one request
/// covers every partition a worker reads from a broker, so a worker's memory
/// does not grow with its partitions. Measured against 512 KiB (docs/benchmarks.md,
/// "Fetch size"): fewer round trips, and the broker's CPU per record serving
/// kswarm falls (it pays per request, over TLS most: it cannot sendfile there).
pub const DEFAULT_FETCH_MAX_BYTES: i32 = 2 * 1024 * 1024;
/// What one fetch answer may decode to in memory by default: on a compressed
/// topic the request asks for less on the wire (worker::fetch_budget).
pub const DEFAULT_FETCH_DECODED_BYTES: i32 = 8 * 1024 * 1024;
/// 1 MiB a partition, librdkafka's and Java's max.partition.fetch.bytes.
pub const DEFAULT_PARTITION_FETCH_MAX_BYTES: i32 = 1024 * 1024;
pub const DEFAULT_FETCH_WAIT_MS: i32 = 100;

impl ConsumeConfig {
    /// The consumer flags, and the consumer keys among the -F/-X `settings`.
    /// `topic`: the topic being read (a dead-letter topic must differ).
    pub fn from_args(a: &cli::ConsumeArgs, settings: &Settings, topic: &str) -> Checked<Self> {
        let group = validate_group(&a.group)?;
        let handler = handler_spec(a)?;
        let verdicts = verdict_config(a, &handler, Some(topic))?;
        let (format, from) = format_and_start(a)?;
        let timing = SessionTiming::from_args(a)?;
        let fetch = FetchLimits::from_settings(settings)?;
        let x_protocol = settings.get("group.protocol");
        let x_remote_assignor = settings.get("group.remote.assignor");
        let group_protocol = group_protocol(a.group_protocol.as_deref(), x_protocol)?;
        let (assignors, remote_assignor) =
            assignors(group_protocol, a.assignor.as_deref(), x_remote_assignor)?;
        let output = output::output_config(
            a.output_topic.as_deref(),
            settings,
            &handler,
            group_protocol,
            topic,
        )?;
        if output.is_some()
            && verdicts
                .as_ref()
                .is_some_and(|v| !v.retry_delays.is_empty())
        {
            return usage(
                "--retry-delays does not go with --output-topic yet: a retry copy would have to \
                 join the output transaction; leave --retry-delays out (retries then wait in the \
                 worker's memory) or drop --output-topic",
            );
        }
        if group_protocol == GroupProtocol::Share && a.static_membership {
            return usage(
                "--static-membership does not apply to --group-protocol share: share groups have no group.instance.id (a restarted worker simply joins again); leave it out",
            );
        }
        let hang_timeout = parse_positive_duration("--hang-timeout", &a.hang_timeout)?;
        let handler_memory_max = handler_memory_max(a.handler_memory_max.as_deref(), &handler)?;
        let record_timeout = record_timeout(a.record_timeout.as_deref(), hang_timeout)?;
        Ok(Self {
            instance_prefix: a.instance_prefix.clone().unwrap_or_else(|| group.clone()),
            group,
            handler,
            format,
            from,
            session_timeout: timing.session_timeout,
            session_timeout_auto: timing.auto,
            rebalance_timeout: parse_positive_duration(
                "--rebalance-timeout",
                &a.rebalance_timeout,
            )?,
            heartbeat_interval: timing.heartbeat_interval,
            commit_interval: parse_positive_duration("--commit-interval", &a.commit_interval)?,
            group_protocol,
            assignors,
            remote_assignor,
            static_membership: a.static_membership,
            max_in_flight: parse_count("--max-in-flight", &a.max_in_flight, 1, 10_000_000)?
                as usize,
            max_in_flight_bytes: parse_size(
                "--max-in-flight-bytes",
                &a.max_in_flight_bytes,
                1,
                16 << 30,
            )? as usize,
            max_in_flight_time: parse_positive_duration(
                "--max-in-flight-time",
                &a.max_in_flight_time,
            )?,
            shutdown_timeout: parse_positive_duration("--shutdown-timeout", &a.shutdown_timeout)?,
            hang_timeout,
            handler_memory_max,
            record_timeout,
            fetch_size: fetch.fetch_size,
            partition_fetch_max_bytes: fetch.partition_fetch_max_bytes,
            fetch_wait_ms: fetch.fetch_wait_ms,
            verdicts,
            output,
        })
    }
}

/// `--handler-memory-max SIZE`: only for a handler that is a process.
fn handler_memory_max(raw: Option<&str>, handler: &HandlerSpec) -> Checked<Option<u64>> {
    let Some(raw) = raw else { return Ok(None) };
    if matches!(handler, HandlerSpec::Stdout) {
        return usage(
            "--handler-memory-max limits a handler process: give --exec CMD or --exec-batch CMD, or leave it out",
        );
    }
    // Below 1 MiB even `sh` alone is over the limit.
    parse_size("--handler-memory-max", raw, 1 << 20, 1 << 50).map(Some)
}

/// `--record-timeout D`: shorter than --hang-timeout, which would end the
/// handler first (as a crash) otherwise.
fn record_timeout(raw: Option<&str>, hang: Duration) -> Checked<Option<Duration>> {
    let Some(raw) = raw else { return Ok(None) };
    let d = parse_positive_duration("--record-timeout", raw)?;
    if d >= hang {
        return usage(format!(
            "--record-timeout {raw} must be shorter than --hang-timeout ({hang:?}), which \
             ends a handler that acknowledges nothing as a crash; raise --hang-timeout or \
             lower --record-timeout"
        ));
    }
    Ok(Some(d))
}

/// `--exec`, `--exec-batch` (with its batch flags), or neither: stdout.
fn handler_spec(a: &cli::ConsumeArgs) -> Checked<HandlerSpec> {
    Ok(match (&a.exec, &a.exec_batch) {
        (Some(_), Some(_)) => {
            return usage("--exec and --exec-batch cannot be used together; pick one")
        }
        (Some(cmd), None) if cmd.trim().is_empty() => {
            return usage("--exec: the command is empty; give a handler command")
        }
        (None, Some(cmd)) if cmd.trim().is_empty() => {
            return usage("--exec-batch: the command is empty; give a handler command")
        }
        (Some(cmd), None) => HandlerSpec::Exec(cmd.clone()),
        (None, Some(cmd)) => HandlerSpec::Batch {
            command: cmd.clone(),
            size: parse_count("--batch-size", &a.batch_size, 1, 1_000_000)? as usize,
            wait: parse_duration("--batch-wait", &a.batch_wait)?,
            retries: parse_count("--batch-retries", &a.batch_retries, 0, 1000)? as u32,
        },
        (None, None) => HandlerSpec::Stdout,
    })
}

/// `--format` and `--from`.
fn format_and_start(a: &cli::ConsumeArgs) -> Checked<(Format, StartFrom)> {
    let format = match a.format.as_str() {
        "json" => Format::Json,
        "value" => Format::Value,
        other => return usage(format!("--format: '{other}' is not json or value")),
    };
    let from = match a.from.as_str() {
        "earliest" => StartFrom::Earliest,
        "latest" => StartFrom::Latest,
        other => return usage(format!("--from: '{other}' is not earliest or latest")),
    };
    Ok((format, from))
}

/// `--session-timeout` (or `auto`) and `--heartbeat-interval`, which must be shorter.
struct SessionTiming {
    session_timeout: Duration,
    auto: bool,
    heartbeat_interval: Duration,
}

impl SessionTiming {
    fn from_args(a: &cli::ConsumeArgs) -> Checked<Self> {
        let auto = a.session_timeout.trim().eq_ignore_ascii_case("auto");
        let session_timeout = if auto {
            AUTO_SESSION_TIMEOUT
        } else {
            parse_positive_duration("--session-timeout", &a.session_timeout)?
        };
        let heartbeat_interval =
            parse_positive_duration("--heartbeat-interval", &a.heartbeat_interval)?;
        if heartbeat_interval >= session_timeout {
            return usage(format!(
                "--heartbeat-interval ({}) must be shorter than --session-timeout ({}); a third of it is usual",
                a.heartbeat_interval, a.session_timeout
            ));
        }
        Ok(Self {
            session_timeout,
            auto,
            heartbeat_interval,
        })
    }
}

/// The fetch sizes and wait among the -F/-X settings.
struct FetchLimits {
    fetch_size: FetchSize,
    partition_fetch_max_bytes: i32,
    fetch_wait_ms: i32,
}

impl FetchLimits {
    fn from_settings(settings: &Settings) -> Checked<Self> {
        let positive = |k: &str| -> Checked<Option<i32>> {
            settings
                .get(k)
                .map(|v| parse_count(&settings.name(k), v, 1, i32::MAX as u64).map(|n| n as i32))
                .transpose()
        };
        let mut limits = Self {
            fetch_size: FetchSize::Adaptive {
                wire: DEFAULT_FETCH_MAX_BYTES,
                decoded: DEFAULT_FETCH_DECODED_BYTES,
            },
            partition_fetch_max_bytes: DEFAULT_PARTITION_FETCH_MAX_BYTES,
            fetch_wait_ms: DEFAULT_FETCH_WAIT_MS,
        };
        if let Some(n) = positive("fetch.max.bytes")? {
            limits.fetch_size = FetchSize::Fixed(n);
        }
        if let Some(n) = positive("max.partition.fetch.bytes")? {
            limits.partition_fetch_max_bytes = n;
        }
        for k in ["fetch.wait.max.ms", "fetch.max.wait.ms"] {
            if let Some(n) = positive(k)? {
                limits.fetch_wait_ms = n;
            }
        }
        Ok(limits)
    }
}

/// `--group-protocol`, or else `-X group.protocol`; both must agree.
pub(crate) fn group_protocol(
    flag: Option<&str>,
    x: Option<&str>,
) -> Result<GroupProtocol, UsageError> {
    let parse = |what: &str, v: &str| {
        match v.trim().to_ascii_lowercase().as_str() {
        "classic" => Ok(GroupProtocol::Classic),
        "consumer" => Ok(GroupProtocol::Consumer),
        "share" => Ok(GroupProtocol::Share),
        other => usage(format!(
            "{what}: '{other}' is not a group protocol; use classic (any broker), consumer (Kafka 4.0+) or share (share groups, Kafka 4.2+)"
        )),
    }
    };
    let flag = flag.map(|v| parse("--group-protocol", v)).transpose()?;
    let x = x.map(|v| parse("-X group.protocol", v)).transpose()?;
    match (flag, x) {
        (Some(f), Some(x)) if f != x => usage(format!(
            "--group-protocol {} and -X group.protocol={} disagree; give one of them",
            f.name(),
            x.name()
        )),
        (f, x) => Ok(f.or(x).unwrap_or_default()),
    }
}

/// The classic protocol's assignors (`--assignor`, default range then
/// roundrobin), or the consumer protocol's server assignor (`--assignor` or
/// `-X group.remote.assignor`, default: the broker's).
fn assignors(
    protocol: GroupProtocol,
    flag: Option<&str>,
    x_remote: Option<&str>,
) -> Result<(Vec<Assignor>, Option<String>), UsageError> {
    let names = |v: &str| -> Vec<String> {
        v.split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect()
    };
    match protocol {
        GroupProtocol::Classic => {
            if x_remote.is_some() {
                return usage(
                    "-X group.remote.assignor is for --group-protocol consumer; the classic protocol uses --assignor range,roundrobin",
                );
            }
            let mut assignors = Vec::new();
            for name in names(flag.unwrap_or("range,roundrobin")) {
                match Assignor::from_protocol_name(&name) {
                    Some(x) if !assignors.contains(&x) => assignors.push(x),
                    Some(_) => {}
                    None => {
                        return usage(format!(
                            "--assignor: unknown assignor '{name}'; use range, roundrobin or both (range,roundrobin){}",
                            if REMOTE_ASSIGNORS.contains(&name.as_str()) {
                                " ('uniform' is the consumer protocol's: add --group-protocol consumer)"
                            } else {
                                ""
                            }
                        ))
                    }
                }
            }
            if assignors.is_empty() {
                return usage("--assignor: name at least one of range, roundrobin");
            }
            Ok((assignors, None))
        }
        GroupProtocol::Share => {
            if flag.is_some() {
                return usage(
                    "--assignor does not apply to --group-protocol share: the broker shares every partition out among the share group's members; leave --assignor out",
                );
            }
            if x_remote.is_some() {
                return usage(
                    "-X group.remote.assignor does not apply to --group-protocol share: the broker assigns share groups itself; leave it out",
                );
            }
            Ok((vec![Assignor::Range], None))
        }
        GroupProtocol::Consumer => {
            let pick = |what: &str, v: &str| -> Result<String, UsageError> {
                match names(v).as_slice() {
                    [one] if REMOTE_ASSIGNORS.contains(&one.as_str()) => Ok(one.clone()),
                    _ => usage(format!(
                        "{what}: '{v}' is not an assignor of --group-protocol consumer, where the broker assigns; use uniform or range (or leave it out for the broker's default)"
                    )),
                }
            };
            let flag = flag.map(|v| pick("--assignor", v)).transpose()?;
            let x = x_remote
                .map(|v| pick("-X group.remote.assignor", v))
                .transpose()?;
            match (flag, x) {
                (Some(f), Some(x)) if f != x => usage(format!(
                    "--assignor {f} and -X group.remote.assignor={x} disagree; give one of them"
                )),
                (f, x) => Ok((vec![Assignor::Range], f.or(x))),
            }
        }
    }
}

/// `--max-restarts N/WINDOW`: at most N restarts within WINDOW.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartBudget {
    pub max: u32,
    pub window: Duration,
}

impl RestartBudget {
    pub fn parse(raw: &str) -> Checked<Self> {
        let Some((n, w)) = raw.split_once('/') else {
            return usage(format!(
                "--max-restarts: '{raw}' is not N/WINDOW; e.g. 10/60s = at most 10 restarts a minute"
            ));
        };
        Ok(Self {
            max: parse_count("--max-restarts", n, 0, 100_000)? as u32,
            window: parse_positive_duration("--max-restarts", w)?,
        })
    }
}

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub connect: ConnectConfig,
    pub topic: String,
    pub sizing: SizingConfig,
    pub consume: ConsumeConfig,
    pub max_restarts: RestartBudget,
    /// `--broker-outage-limit`: None waits for the brokers for ever.
    pub broker_outage_limit: Option<Duration>,
    /// `--metrics-addr`: where to serve /metrics, /healthz and /readyz.
    pub metrics_addr: Option<String>,
}

impl RunConfig {
    pub fn from_args(a: &cli::RunArgs) -> Checked<Self> {
        let limit = a.broker_outage_limit.trim();
        let broker_outage_limit = if limit.eq_ignore_ascii_case("none") {
            None
        } else {
            Some(parse_positive_duration("--broker-outage-limit", limit)?)
        };
        let connect = ConnectConfig::from_args(&a.connect)?;
        Ok(Self {
            broker_outage_limit,
            topic: validate_topic(&a.topic)?,
            sizing: SizingConfig::from_args(&a.sizing)?,
            consume: ConsumeConfig::from_args(&a.consume, &connect.settings, &a.topic)?,
            connect,
            max_restarts: RestartBudget::parse(&a.max_restarts)?,
            metrics_addr: match a.metrics_addr.as_deref().map(str::trim) {
                None => None,
                Some(addr) if addr.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()) => {
                    Some(addr.to_string())
                }
                Some(addr) => {
                    return usage(format!(
                        "--metrics-addr: '{addr}' is not HOST:PORT; e.g. 127.0.0.1:9187 (or 0.0.0.0:9187 for every interface)"
                    ))
                }
            },
        })
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct WorkerConfig {
    pub connect: ConnectConfig,
    pub topic: String,
    pub consume: ConsumeConfig,
    pub slot: u32,
    pub report_fd: Option<i32>,
    /// A dead worker's membership to take over (see `Member::resume`).
    pub resume: Option<Resume>,
    /// The member id of this slot's previous worker, to join under (see
    /// `Member::rejoin_as`).
    pub rejoin: Option<String>,
    /// This host's id and how many workers it runs: said to the group in the
    /// client id (see `group_size`).
    #[serde(default = "crate::group_size::default_host_id")]
    pub host_id: String,
    #[serde(default = "one")]
    pub host_workers: u32,
    /// `--record-timeout`: records that timed out twice, fleet-wide, which
    /// this worker must not give to its handler again (see
    /// `handler::limits`).
    #[serde(default)]
    pub expired: Vec<(i32, i64)>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resume {
    pub member_id: String,
    pub generation: i32,
    pub partitions: Vec<i32>,
}

fn parse_resume(a: &cli::WorkerArgs) -> Checked<Option<Resume>> {
    let (Some(member_id), Some(generation), Some(parts)) = (
        a.resume_member_id.as_ref(),
        a.resume_generation,
        a.resume_partitions.as_ref(),
    ) else {
        return Ok(None);
    };
    let mut partitions = Vec::new();
    for p in parts.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        partitions.push(parse_count("--resume-partitions", p, 0, i32::MAX as u64)? as i32);
    }
    Ok(Some(Resume {
        member_id: member_id.clone(),
        generation,
        partitions,
    }))
}

impl WorkerConfig {
    pub fn from_args(a: &cli::WorkerArgs) -> Checked<Self> {
        let connect = ConnectConfig::from_args(&a.connect)?;
        Ok(Self {
            topic: validate_topic(&a.topic)?,
            consume: ConsumeConfig::from_args(&a.consume, &connect.settings, &a.topic)?,
            connect,
            slot: a.slot,
            report_fd: a.report_fd,
            resume: parse_resume(a)?,
            rejoin: a.rejoin_member_id.clone().filter(|id| !id.is_empty()),
            host_id: crate::group_size::sanitize_host(&crate::group_size::default_host_id()),
            host_workers: 1,
            expired: Vec::new(),
        })
    }

    /// group.instance.id of this worker under --static-membership.
    pub fn instance_id(&self) -> Option<String> {
        self.consume
            .static_membership
            .then(|| format!("{}-{}", self.consume.instance_prefix, self.slot))
    }
}

#[cfg(test)]
mod tests;
