//! `--output-topic` (or `-X output.topic`): the handler's results go to a
//! topic, committed with their input offsets in one transaction. It holds
//! only where a record's results and its acknowledgement come from one
//! `--exec` handler's lines, in a partitioned group.

use std::time::Duration;

use super::parse::{parse_positive_duration, usage, validate_topic};
use super::{Checked, GroupProtocol, HandlerSpec, UsageError};
use crate::settings::Settings;

/// A transaction left open by a worker that was cut off (or stopped)
/// holds back every read_committed reader of its output partitions until
/// the coordinator aborts it at this timeout: 20 s (Kafka Streams uses 10 s
/// for exactly-once, the Java producer 60 s). A worker's transactions last
/// a commit interval.
pub const DEFAULT_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutputConfig {
    pub topic: String,
    /// `-X transaction.timeout.ms`: the coordinator aborts a transaction
    /// left open this long (a worker stopped or cut off).
    pub transaction_timeout: Duration,
}

/// The output settings, or None without `--output-topic`. `topic`: the
/// topic being read.
pub fn output_config(
    flag: Option<&str>,
    settings: &Settings,
    handler: &HandlerSpec,
    protocol: GroupProtocol,
    topic: &str,
) -> Checked<Option<OutputConfig>> {
    let Some(raw) = flag.or(settings.get("output.topic")) else {
        if settings.get("transaction.timeout.ms").is_some() {
            return usage(
                "-X transaction.timeout.ms needs --output-topic: only the output transactions have a timeout",
            );
        }
        return Ok(None);
    };
    let out = validate_topic(raw).map_err(|e| UsageError(format!("--output-topic: {}", e.0)))?;
    if out == topic {
        return usage(format!(
            "--output-topic '{out}' is the topic being read (-t): every result would come back to \
             the handler; name another topic"
        ));
    }
    match handler {
        HandlerSpec::Exec(_) => {}
        HandlerSpec::Batch { .. } => return usage(
            "--output-topic needs --exec: an --exec-batch run acknowledges a whole batch by its \
             exit status, so kswarm cannot tell which results belong to which record, and a \
             batch that fails half-way has written results that would be written again; use \
             --exec with one result line per record (see docs/pipelines.md)",
        ),
        HandlerSpec::Stdout => {
            return usage(
                "--output-topic needs an --exec handler whose stdout lines are the results (e.g. \
             --exec 'jq -c --unbuffered .'); without a handler there is nothing to write",
            )
        }
    }
    if protocol == GroupProtocol::Share {
        return usage(
            "--output-topic does not apply to --group-protocol share: a share group has no \
             committed offsets to put in the transaction (records are acknowledged one by one), \
             so the results cannot be exactly once; use --group-protocol classic or consumer",
        );
    }
    let transaction_timeout = match settings.get("transaction.timeout.ms") {
        None => DEFAULT_TRANSACTION_TIMEOUT,
        Some(ms) => parse_positive_duration("-X transaction.timeout.ms", &format!("{ms}ms"))?,
    };
    Ok(Some(OutputConfig {
        topic: out,
        transaction_timeout,
    }))
}
