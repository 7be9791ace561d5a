//! `--verdicts` and what follows from a verdict: `--dead-letter-topic`,
//! `--max-record-retries`, and `--retry-delays` (a retried record is copied
//! to the retry topic of its next delay instead of waiting in memory).

use std::time::Duration;

use super::parse::{parse_count, parse_positive_duration, usage, validate_topic};
use super::{cli, Checked, HandlerSpec, UsageError};

/// `--verdicts` and what follows from a verdict.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VerdictConfig {
    /// `--dead-letter-topic`.
    pub dead_letter_topic: Option<String>,
    /// `--max-record-retries`; with `--retry-delays`, the number of delays.
    pub max_retries: u32,
    /// `--retry-delays`, in order (empty: retries wait in the worker's memory).
    pub retry_delays: Vec<RetryDelay>,
}

/// One step of `--retry-delays`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RetryDelay {
    pub delay: Duration,
    /// The delay as it appears in the retry topic's name: `1s`, `1500ms`, `5m`, `2h`.
    pub label: String,
}

impl RetryDelay {
    fn new(delay: Duration) -> Self {
        let ms = delay.as_millis();
        let label = match ms {
            _ if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
            _ if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
            _ if ms % 1000 == 0 => format!("{}s", ms / 1000),
            _ => format!("{ms}ms"),
        };
        RetryDelay { delay, label }
    }

    /// The retry topic of this delay for records of `source`: `logs-retry-30s`.
    pub fn topic(&self, source: &str) -> String {
        retry_topic(source, &self.label)
    }
}

/// The name scheme of retry topics.
pub fn retry_topic(source: &str, label: &str) -> String {
    format!("{source}-retry-{label}")
}

impl VerdictConfig {
    /// The retry topics of `source`, in the order of the delays.
    pub fn retry_topics(&self, source: &str) -> Vec<String> {
        self.retry_delays.iter().map(|d| d.topic(source)).collect()
    }
}

pub const DEFAULT_MAX_RECORD_RETRIES: u32 = 3;
/// More delays than this is a misunderstanding (each one is a topic).
const MAX_RETRY_DELAYS: usize = 20;

/// `--verdicts`, `--dead-letter-topic`, `--max-record-retries`,
/// `--retry-delays`: the others only with the first, which needs `--exec`;
/// never dead-letter or retry into the topic being read.
pub(super) fn verdict_config(
    a: &cli::ConsumeArgs,
    handler: &HandlerSpec,
    topic: Option<&str>,
) -> Checked<Option<VerdictConfig>> {
    if !a.verdicts {
        for (given, flag) in [
            (a.dead_letter_topic.is_some(), "--dead-letter-topic"),
            (a.max_record_retries.is_some(), "--max-record-retries"),
            (a.retry_delays.is_some(), "--retry-delays"),
        ] {
            if given {
                return usage(format!(
                    "{flag} needs --verdicts: only a handler that says `retry` or `reject REASON` \
                     for a record has records to retry or dead-letter; add --verdicts and have \
                     the --exec handler print one verdict line per record"
                ));
            }
        }
        return Ok(None);
    }
    if !matches!(handler, HandlerSpec::Exec(_)) {
        return usage(
            "--verdicts needs an --exec handler (its ack lines carry the verdicts); \
             --exec-batch acknowledges whole batches and stdout has no handler to ask",
        );
    }
    let dead_letter_topic = match &a.dead_letter_topic {
        None => None,
        Some(t) => {
            let t = validate_topic(t)
                .map_err(|e| UsageError(format!("--dead-letter-topic: {}", e.0)))?;
            if Some(t.as_str()) == topic {
                return usage(format!(
                    "--dead-letter-topic '{t}' is the topic being read (-t): dead-lettered \
                     records would come back to the handler; name another topic"
                ));
            }
            Some(t)
        }
    };
    let retry_delays = match &a.retry_delays {
        None => Vec::new(),
        Some(raw) => {
            if a.max_record_retries.is_some() {
                return usage(
                    "--max-record-retries and --retry-delays both set how often a record is \
                     retried: with --retry-delays a record is retried once per delay; leave \
                     --max-record-retries out",
                );
            }
            retry_delays(raw, topic, dead_letter_topic.as_deref())?
        }
    };
    let max_retries = match &a.max_record_retries {
        None if !retry_delays.is_empty() => retry_delays.len() as u32,
        None => DEFAULT_MAX_RECORD_RETRIES,
        Some(raw) => parse_count("--max-record-retries", raw, 0, 1_000_000)? as u32,
    };
    Ok(Some(VerdictConfig {
        dead_letter_topic,
        max_retries,
        retry_delays,
    }))
}

/// `1s,30s,5m`: each above zero, each with a retry topic of its own whose
/// name is a valid topic and is neither the topic read nor the dead-letter topic.
fn retry_delays(raw: &str, topic: Option<&str>, dlt: Option<&str>) -> Checked<Vec<RetryDelay>> {
    let mut out: Vec<RetryDelay> = Vec::new();
    for part in raw.split(',') {
        let part = part.trim();
        if part.is_empty() {
            return usage(format!(
                "--retry-delays: '{raw}' has an empty delay; write delays like 1s,30s,5m"
            ));
        }
        let d = RetryDelay::new(parse_positive_duration("--retry-delays", part)?);
        if out.iter().any(|o| o.label == d.label) {
            return usage(format!(
                "--retry-delays: {} is given twice; each delay has a retry topic of its own, \
                 so give each delay once",
                d.label
            ));
        }
        out.push(d);
    }
    if out.len() > MAX_RETRY_DELAYS {
        return usage(format!(
            "--retry-delays: {} delays; at most {MAX_RETRY_DELAYS} (each is a topic)",
            out.len()
        ));
    }
    if let Some(t) = topic {
        for d in &out {
            let name = d.topic(t);
            validate_topic(&name).map_err(|e| {
                UsageError(format!(
                    "--retry-delays: the retry topic of {} would be '{name}': {}; use a shorter -t",
                    d.label, e.0
                ))
            })?;
            if Some(name.as_str()) == dlt {
                return usage(format!(
                    "--dead-letter-topic '{name}' is the retry topic of --retry-delays {}; \
                     name another dead-letter topic",
                    d.label
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_the_delay_in_its_largest_whole_unit() {
        let l = |ms| RetryDelay::new(Duration::from_millis(ms)).label;
        assert_eq!(l(1000), "1s");
        assert_eq!(l(1500), "1500ms");
        assert_eq!(l(30_000), "30s");
        assert_eq!(l(300_000), "5m");
        assert_eq!(l(7_200_000), "2h");
        assert_eq!(l(90_000), "90s");
    }

    #[test]
    fn delays_become_topics_in_order() {
        let d = retry_delays("1s, 30s,5m", Some("logs"), None).unwrap();
        let topics: Vec<String> = d.iter().map(|d| d.topic("logs")).collect();
        assert_eq!(topics, ["logs-retry-1s", "logs-retry-30s", "logs-retry-5m"]);
        assert_eq!(d[1].delay, Duration::from_secs(30));
    }

    #[test]
    fn bad_delays_name_the_flag() {
        for (raw, want) in [
            ("1s,,5m", "empty delay"),
            ("1s,1000ms", "given twice"),
            ("0s", "more than zero"),
            ("soon", "not a duration"),
            ("9d", "unknown unit"),
        ] {
            let e = retry_delays(raw, Some("logs"), None).unwrap_err().0;
            assert!(
                e.contains("--retry-delays") && e.contains(want),
                "{raw}: {e}"
            );
        }
        let e = retry_delays("1s", Some("logs"), Some("logs-retry-1s"))
            .unwrap_err()
            .0;
        assert!(e.contains("--dead-letter-topic"), "{e}");
        let long = "t".repeat(245);
        let e = retry_delays("1s", Some(&long), None).unwrap_err().0;
        assert!(e.contains("shorter -t"), "{e}");
    }
}
