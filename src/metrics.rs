//! What `--metrics-addr` serves, as plain data and pure functions: the
//! statistics a worker reports ([`WorkerStats`]: per partition records,
//! bytes, committed offset and high watermark; in-flight records and bytes;
//! a histogram of the handler's acknowledgement latency), the supervisor's
//! view of its slots ([`FleetView`]), and its Prometheus text exposition
//! ([`render`], through the prometheus-client crate) and readiness
//! ([`FleetView::ready`]). The HTTP side is `supervisor::metrics_server`.

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

mod share;
pub use share::ShareBacklog;

/// Upper bounds (seconds) of the acknowledgement latency buckets: from a
/// fast in-process handler (under a millisecond) to one near --hang-timeout.
pub const LATENCY_BOUNDS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

/// Handed-over-to-acknowledged times of records, bucketed as
/// [`LATENCY_BOUNDS`] (plus one bucket above the last bound).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyHistogram {
    /// Per bucket (not cumulative); `LATENCY_BOUNDS.len() + 1` of them.
    pub counts: Vec<u64>,
    pub sum_micros: u64,
    pub count: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            counts: vec![0; LATENCY_BOUNDS.len() + 1],
            sum_micros: 0,
            count: 0,
        }
    }
}

impl LatencyHistogram {
    /// `n` records that each took `d`.
    pub fn observe(&mut self, d: Duration, n: u64) {
        if n == 0 {
            return;
        }
        let secs = d.as_secs_f64();
        let i = LATENCY_BOUNDS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BOUNDS.len());
        self.counts[i] += n;
        self.count += n;
        self.sum_micros = self
            .sum_micros
            .saturating_add((d.as_micros() as u64).saturating_mul(n));
    }
}

/// One partition as its worker sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionStats {
    pub partition: i32,
    /// Records and bytes (as formatted for the handler) acknowledged by the
    /// handler since the worker started.
    pub records: u64,
    pub bytes: u64,
    /// The group's committed next offset, once known.
    pub committed: Option<i64>,
    /// The end of the partition's log at the last fetch.
    pub high_watermark: Option<i64>,
}

impl PartitionStats {
    /// Records not yet committed: the high watermark minus the commit.
    pub fn lag(&self) -> Option<i64> {
        Some((self.high_watermark? - self.committed?).max(0))
    }
}

/// What a worker reports about itself every second (`Report::Stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStats {
    /// The partitions it owns now, and those it handled records of before.
    pub partitions: Vec<PartitionStats>,
    pub in_flight_records: u64,
    pub in_flight_bytes: u64,
    pub ack_latency: LatencyHistogram,
    /// Times its partitions changed (a rebalance, an incremental move).
    pub rebalances: u64,
    /// `--verdicts`: records the handler asked to retry, rejected, and
    /// copies the broker acknowledged in the dead-letter topic.
    #[serde(default)]
    pub verdicts: VerdictCounts,
    /// `--handler-memory-max`: the handler's process tree (PSS, bytes) at
    /// the last sample.
    #[serde(default)]
    pub handler_memory_bytes: Option<u64>,
}

/// `--verdicts` counters of one worker, since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictCounts {
    pub retried: u64,
    pub rejected: u64,
    pub dead_lettered: u64,
}

/// Why the supervisor restarted a worker (the `reason` label of
/// `kswarm_restarts_total`). Declared in the order of their labels, so a
/// map keyed by them lists them as it did when the keys were the labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RestartReason {
    /// It ended while the brokers were out of reach (spends no budget).
    BrokerOutage,
    /// A non-zero exit (or an exit 0 that was not asked for): a crash.
    Exit,
    /// Its handler acknowledged nothing for --hang-timeout, or it sent no
    /// report for that long (killed for silence).
    Hung,
    /// Its handler's process tree went over --handler-memory-max: replaced
    /// the graceful way (spends no budget).
    Memory,
    /// Its handler held one record longer than --record-timeout: replaced,
    /// the record delivered again (spends no budget).
    RecordTimeout,
    /// Killed by a signal.
    Signal,
    /// The worker process could not be started.
    Spawn,
}

impl RestartReason {
    pub fn label(self) -> &'static str {
        match self {
            RestartReason::BrokerOutage => "broker_outage",
            RestartReason::Exit => "exit",
            RestartReason::Hung => "hung",
            RestartReason::Memory => "memory",
            RestartReason::RecordTimeout => "record_timeout",
            RestartReason::Signal => "signal",
            RestartReason::Spawn => "spawn",
        }
    }

    /// A replacement kswarm chose (a handler limit), not a crash: it does
    /// not spend the --max-restarts budget.
    pub fn is_replacement(self) -> bool {
        matches!(self, RestartReason::Memory | RestartReason::RecordTimeout)
    }
}

impl std::fmt::Display for RestartReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

impl Serialize for RestartReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.label())
    }
}

impl<'de> Deserialize<'de> for RestartReason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        RestartReason::ALL
            .into_iter()
            .find(|r| r.label() == text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown restart reason {text:?}")))
    }
}

impl RestartReason {
    pub const ALL: [RestartReason; 7] = [
        RestartReason::BrokerOutage,
        RestartReason::Exit,
        RestartReason::Hung,
        RestartReason::Memory,
        RestartReason::RecordTimeout,
        RestartReason::Signal,
        RestartReason::Spawn,
    ];
}

/// A slot's last restart: why, and when (seconds since the Unix epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRestart {
    pub reason: RestartReason,
    pub at_unix_secs: u64,
}

impl LastRestart {
    /// Seconds since the restart, at `now_unix_secs`.
    pub fn age_secs(&self, now_unix_secs: u64) -> u64 {
        now_unix_secs.saturating_sub(self.at_unix_secs)
    }
}

/// Seconds since the Unix epoch now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One slot, as the supervisor knows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SlotView {
    pub slot: u32,
    /// Its worker now, if one runs.
    pub pid: Option<i32>,
    /// Whether that worker is a member of the group now.
    pub joined: bool,
    /// Partitions it owns now.
    pub partitions: Vec<i32>,
    /// Restarts of the slot, by reason.
    pub restarts: BTreeMap<RestartReason, u64>,
    /// The latest statistics of its worker (None before the first report).
    pub stats: Option<WorkerStats>,
    /// Resident memory of its worker, bytes (read at scrape time).
    pub rss_bytes: Option<u64>,
    /// Its last restart, if any.
    pub last_restart: Option<LastRestart>,
    /// Why its worker is not healthy now (None: it is).
    pub unhealthy: Option<String>,
}

/// The supervisor's slots, for a scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetView {
    pub group: String,
    pub topic: String,
    /// Workers the supervisor wants now.
    pub target: usize,
    pub slots: Vec<SlotView>,
    pub rolling_restart: bool,
    pub shutting_down: bool,
    /// A share run's backlog per partition, as last read from the broker
    /// (empty for other groups, or before the first read).
    pub share: Vec<ShareBacklog>,
}

impl FleetView {
    /// Ready: every wanted worker runs and is a member, and no rolling
    /// restart or stop is under way.
    pub fn ready(&self) -> bool {
        let joined = self.slots.iter().filter(|s| s.joined).count();
        !self.rolling_restart && !self.shutting_down && self.target > 0 && joined >= self.target
    }
}

/// One slot that is not healthy, in the JSON body of `/healthz` and
/// `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotHealth {
    pub slot: u32,
    pub why: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_restart: Option<RestartAge>,
}

/// A last restart as `/healthz` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RestartAge {
    pub reason: RestartReason,
    pub age_secs: u64,
}

/// The JSON body of `/healthz` and `/readyz` (the status code stays the
/// contract; the body says which slots are not healthy, and why).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// "ok" (healthz), "ready" or "not ready" (readyz).
    pub status: String,
    /// Why not ready (readyz only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    pub unhealthy: Vec<SlotHealth>,
}

impl FleetView {
    /// Every slot that is not healthy now, with its last restart.
    pub fn unhealthy(&self, now_unix_secs: u64) -> Vec<SlotHealth> {
        self.slots
            .iter()
            .filter_map(|s| {
                Some(SlotHealth {
                    slot: s.slot,
                    why: s.unhealthy.clone()?,
                    last_restart: s.last_restart.map(|r| RestartAge {
                        reason: r.reason,
                        age_secs: r.age_secs(now_unix_secs),
                    }),
                })
            })
            .collect()
    }
}

/// The Prometheus text exposition of `view` (format 0.0.4, `# EOF` ended).
pub fn render(view: &FleetView) -> String {
    let mut registry = Registry::with_prefix("kswarm");
    registry.register_collector(Box::new(Exposition(view.clone())));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .expect("writing to a String cannot fail");
    out
}

#[derive(Debug)]
struct Exposition(FleetView);

type Labels = Vec<(&'static str, String)>;

impl Exposition {
    fn slot_labels(&self, s: &SlotView) -> Labels {
        vec![
            ("group", self.0.group.clone()),
            ("topic", self.0.topic.clone()),
            ("slot", s.slot.to_string()),
        ]
    }

    fn partition_labels(&self, s: &SlotView, p: i32) -> Labels {
        let mut l = self.slot_labels(s);
        l.push(("partition", p.to_string()));
        l
    }

    /// (labels, stats) of every partition a worker reports.
    fn partitions(&self) -> Vec<(Labels, &PartitionStats)> {
        let mut out = Vec::new();
        for s in &self.0.slots {
            for p in s.stats.iter().flat_map(|st| &st.partitions) {
                out.push((self.partition_labels(s, p.partition), p));
            }
        }
        out
    }
}

/// One metric family: its descriptor, then one sample per label set.
fn family<V>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: Vec<(Labels, V)>,
    mut write: impl FnMut(&mut prometheus_client::encoding::MetricEncoder<'_>, &V) -> std::fmt::Result,
) -> std::fmt::Result {
    let mut m = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in samples {
        let mut e = m.encode_family(&labels)?;
        write(&mut e, &v)?;
    }
    Ok(())
}

fn counter(e: &mut prometheus_client::encoding::MetricEncoder<'_>, v: &u64) -> std::fmt::Result {
    e.encode_counter::<NoLabelSet, _, u64>(v, None)
}

fn gauge(e: &mut prometheus_client::encoding::MetricEncoder<'_>, v: &i64) -> std::fmt::Result {
    e.encode_gauge(v)
}

impl Collector for Exposition {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> std::fmt::Result {
        self.partition_families(&mut enc)?;
        self.share_families(&mut enc)?;
        self.worker_families(&mut enc)?;
        self.fleet_families(&mut enc)
    }
}

impl Exposition {
    /// Per worker slot and partition: handled, committed, high watermark, lag.
    fn partition_families(&self, enc: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
        let parts = self.partitions();
        let per_part = |f: &dyn Fn(&PartitionStats) -> Option<i64>| -> Vec<(Labels, i64)> {
            parts
                .iter()
                .filter_map(|(l, p)| Some((l.clone(), f(p)?)))
                .collect()
        };
        family(
            enc,
            "records_handled",
            "Records the handler acknowledged, per worker slot and partition (since the worker started)",
            MetricType::Counter,
            parts.iter().map(|(l, p)| (l.clone(), p.records)).collect(),
            counter,
        )?;
        family(
            enc,
            "bytes_handled",
            "Bytes of records (as formatted for the handler) the handler acknowledged",
            MetricType::Counter,
            parts.iter().map(|(l, p)| (l.clone(), p.bytes)).collect(),
            counter,
        )?;
        family(
            enc,
            "committed_offset",
            "The group's committed next offset of the partition, as its worker last committed or read it",
            MetricType::Gauge,
            per_part(&|p| p.committed),
            gauge,
        )?;
        family(
            enc,
            "high_watermark",
            "The end of the partition's log at the worker's last fetch",
            MetricType::Gauge,
            per_part(&|p| p.high_watermark),
            gauge,
        )?;
        family(
            enc,
            "lag",
            "Records of the partition not yet committed (high watermark minus committed offset)",
            MetricType::Gauge,
            per_part(&PartitionStats::lag),
            gauge,
        )
    }

    /// Per worker slot, from its statistics: in flight, latency, rebalances, verdicts.
    fn worker_families(&self, enc: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
        let v = &self.0;
        let with_stats: Vec<(Labels, &WorkerStats)> = v
            .slots
            .iter()
            .filter_map(|s| Some((self.slot_labels(s), s.stats.as_ref()?)))
            .collect();
        family(
            enc,
            "in_flight_records",
            "Records handed to the handler and not yet acknowledged",
            MetricType::Gauge,
            with_stats
                .iter()
                .map(|(l, s)| (l.clone(), s.in_flight_records as i64))
                .collect(),
            gauge,
        )?;
        family(
            enc,
            "in_flight_bytes",
            "Bytes of records handed to the handler and not yet acknowledged",
            MetricType::Gauge,
            with_stats
                .iter()
                .map(|(l, s)| (l.clone(), s.in_flight_bytes as i64))
                .collect(),
            gauge,
        )?;
        family(
            enc,
            "ack_latency_seconds",
            "Time from handing a record to the handler to its acknowledgement",
            MetricType::Histogram,
            with_stats
                .iter()
                .map(|(l, s)| (l.clone(), &s.ack_latency))
                .collect(),
            |e, h| {
                let buckets: Vec<(f64, u64)> = LATENCY_BOUNDS
                    .iter()
                    .copied()
                    .chain([f64::MAX])
                    .zip(h.counts.iter().copied())
                    .collect();
                e.encode_histogram::<NoLabelSet>(h.sum_micros as f64 / 1e6, h.count, &buckets, None)
            },
        )?;
        family(
            enc,
            "rebalances",
            "Times a worker's partitions changed (rebalances, incremental moves), since the worker started",
            MetricType::Counter,
            with_stats
                .iter()
                .map(|(l, s)| (l.clone(), s.rebalances))
                .collect(),
            counter,
        )?;
        for (name, help, get) in [
            (
                "records_retried",
                "Records the handler answered `retry` (--verdicts), since the worker started",
                (|c: &VerdictCounts| c.retried) as fn(&VerdictCounts) -> u64,
            ),
            (
                "records_rejected",
                "Records the handler answered `reject` (--verdicts), since the worker started",
                |c| c.rejected,
            ),
            (
                "records_dead_lettered",
                "Dead-letter copies the broker acknowledged (--dead-letter-topic), since the worker started",
                |c| c.dead_lettered,
            ),
        ] {
            family(
                enc,
                name,
                help,
                MetricType::Counter,
                with_stats
                    .iter()
                    .map(|(l, s)| (l.clone(), get(&s.verdicts)))
                    .collect(),
                counter,
            )?;
        }
        Ok(())
    }

    /// Per slot from the supervisor (restarts, memory, joined), and the fleet's own.
    fn fleet_families(&self, enc: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
        let v = &self.0;
        let mut restarts = Vec::new();
        for s in &v.slots {
            for (reason, n) in &s.restarts {
                let mut l = self.slot_labels(s);
                l.push(("reason", reason.label().to_string()));
                restarts.push((l, *n));
            }
        }
        family(
            enc,
            "restarts",
            "Worker restarts, by reason (exit: a non-zero exit; signal: killed by a signal; hung: killed for silence; spawn: could not start; memory: handler over --handler-memory-max; record_timeout: a record held past --record-timeout; broker_outage: ended while the brokers were out of reach)",
            MetricType::Counter,
            restarts,
            counter,
        )?;
        family(
            enc,
            "worker_rss_bytes",
            "Resident memory of the worker process",
            MetricType::Gauge,
            v.slots
                .iter()
                .filter_map(|s| Some((self.slot_labels(s), s.rss_bytes? as i64)))
                .collect(),
            gauge,
        )?;
        family(
            enc,
            "handler_memory_bytes",
            "Memory of the handler's whole process tree (PSS, summed), at the worker's last sample (--handler-memory-max)",
            MetricType::Gauge,
            v.slots
                .iter()
                .filter_map(|s| {
                    let bytes = s.stats.as_ref()?.handler_memory_bytes?;
                    Some((self.slot_labels(s), bytes as i64))
                })
                .collect(),
            gauge,
        )?;
        family(
            enc,
            "worker_joined",
            "1 if the slot's worker is a member of the group now",
            MetricType::Gauge,
            v.slots
                .iter()
                .map(|s| (self.slot_labels(s), i64::from(s.joined)))
                .collect(),
            gauge,
        )?;
        let group = vec![("group", v.group.clone()), ("topic", v.topic.clone())];
        family(
            enc,
            "workers_wanted",
            "Workers the supervisor wants now",
            MetricType::Gauge,
            vec![(group.clone(), v.target as i64)],
            gauge,
        )?;
        family(
            enc,
            "ready",
            "1 when every wanted worker is a member and no rolling restart or stop is under way (/readyz)",
            MetricType::Gauge,
            vec![(group, i64::from(v.ready()))],
            gauge,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets() {
        let mut h = LatencyHistogram::default();
        h.observe(Duration::from_micros(300), 2);
        h.observe(Duration::from_millis(3), 1);
        h.observe(Duration::from_secs(60), 1);
        h.observe(Duration::from_secs(1), 0);
        assert_eq!(h.count, 4);
        assert_eq!(h.counts[0], 2);
        assert_eq!(h.counts[3], 1, "3 ms is in the 5 ms bucket");
        assert_eq!(*h.counts.last().unwrap(), 1, "above the last bound");
        assert_eq!(h.sum_micros, 600 + 3000 + 60_000_000);
    }

    pub(super) fn view() -> FleetView {
        let mut st = WorkerStats {
            partitions: vec![PartitionStats {
                partition: 3,
                records: 10,
                bytes: 400,
                committed: Some(8),
                high_watermark: Some(12),
            }],
            in_flight_records: 2,
            in_flight_bytes: 80,
            handler_memory_bytes: Some(5 << 20),
            ..WorkerStats::default()
        };
        st.ack_latency.observe(Duration::from_millis(2), 10);
        FleetView {
            group: "g".into(),
            topic: "t".into(),
            target: 1,
            slots: vec![SlotView {
                slot: 0,
                pid: Some(42),
                joined: true,
                partitions: vec![3],
                restarts: [(RestartReason::Signal, 2)].into(),
                stats: Some(st),
                rss_bytes: Some(1 << 20),
                last_restart: None,
                unhealthy: None,
            }],
            rolling_restart: false,
            shutting_down: false,
            share: vec![],
        }
    }

    #[test]
    fn restart_reasons_sort_as_their_labels() {
        use RestartReason::*;
        let all = RestartReason::ALL;
        assert!(all
            .iter()
            .all(|r| r.is_replacement() == matches!(r, Memory | RecordTimeout)));
        let mut by_label = all;
        by_label.sort_by_key(|r| r.label());
        assert_eq!(by_label, all);
    }

    #[test]
    fn health_names_each_unhealthy_slot_and_its_last_restart() {
        let mut v = view();
        assert!(v.unhealthy(100).is_empty());
        v.slots[0].unhealthy = Some("restarting".into());
        v.slots[0].last_restart = Some(LastRestart {
            reason: RestartReason::Memory,
            at_unix_secs: 90,
        });
        let h = Health {
            status: "ok".into(),
            why: None,
            unhealthy: v.unhealthy(100),
        };
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(
            json,
            r#"{"status":"ok","unhealthy":[{"slot":0,"why":"restarting","last_restart":{"reason":"memory","age_secs":10}}]}"#
        );
    }

    #[test]
    fn restart_reasons_travel_as_their_labels() {
        for r in RestartReason::ALL {
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.label()));
            assert_eq!(serde_json::from_str::<RestartReason>(&json).unwrap(), r);
            assert_eq!(r.to_string(), r.label());
        }
        assert_eq!(RestartReason::RecordTimeout.label(), "record_timeout");
        assert!(serde_json::from_str::<RestartReason>("\"nope\"").is_err());
    }

    #[test]
    fn exposition_has_every_family() {
        let text = render(&view());
        for line in [
            r#"kswarm_records_handled_total{group="g",topic="t",slot="0",partition="3"} 10"#,
            r#"kswarm_bytes_handled_total{group="g",topic="t",slot="0",partition="3"} 400"#,
            r#"kswarm_committed_offset{group="g",topic="t",slot="0",partition="3"} 8"#,
            r#"kswarm_lag{group="g",topic="t",slot="0",partition="3"} 4"#,
            r#"kswarm_in_flight_records{group="g",topic="t",slot="0"} 2"#,
            r#"kswarm_ack_latency_seconds_count{group="g",topic="t",slot="0"} 10"#,
            r#"kswarm_ack_latency_seconds_bucket{le="0.0025",group="g",topic="t",slot="0"} 10"#,
            r#"kswarm_restarts_total{group="g",topic="t",slot="0",reason="signal"} 2"#,
            r#"kswarm_worker_rss_bytes{group="g",topic="t",slot="0"} 1048576"#,
            r#"kswarm_handler_memory_bytes{group="g",topic="t",slot="0"} 5242880"#,
            r#"kswarm_ready{group="g",topic="t"} 1"#,
            "# EOF",
        ] {
            assert!(text.contains(line), "missing {line}:\n{text}");
        }
    }

    #[test]
    fn readiness() {
        let mut v = view();
        assert!(v.ready());
        v.rolling_restart = true;
        assert!(!v.ready());
        v.rolling_restart = false;
        v.slots[0].joined = false;
        assert!(!v.ready());
        v.slots[0].joined = true;
        v.target = 2;
        assert!(!v.ready(), "a wanted worker is missing");
    }
}
