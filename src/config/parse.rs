//! The primitive values of the command line: durations, counts, sizes,
//! worker and partition specs, names and broker lists, each checked into a
//! [`UsageError`] that names the flag.

use std::time::Duration;

use super::{Checked, UsageError};

pub(crate) fn usage<T>(msg: impl Into<String>) -> Checked<T> {
    Err(UsageError(msg.into()))
}

/// `10s`, `500ms`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(flag: &str, raw: &str) -> Checked<Duration> {
    let s = raw.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, "s"),
    };
    let value: f64 = match num.parse() {
        Ok(v) if num.chars().next().is_some_and(|c| c.is_ascii_digit()) => v,
        _ => {
            return usage(format!(
                "{flag}: '{raw}' is not a duration; write it like 500ms, 10s, 2m or 1h"
            ))
        }
    };
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" | "sec" | "secs" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        _ => {
            return usage(format!(
                "{flag}: unknown unit '{unit}' in '{raw}'; use ms, s, m or h"
            ))
        }
    };
    if !secs.is_finite() || secs > 7.0 * 24.0 * 3600.0 {
        return usage(format!("{flag}: '{raw}' is too long; at most 7 days"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A duration that must be above zero.
pub fn parse_positive_duration(flag: &str, raw: &str) -> Checked<Duration> {
    let d = parse_duration(flag, raw)?;
    if d.is_zero() {
        return usage(format!("{flag}: must be more than zero, got '{raw}'"));
    }
    Ok(d)
}

/// A whole number of at least `min`.
pub fn parse_count(flag: &str, raw: &str, min: u64, max: u64) -> Checked<u64> {
    match raw.trim().parse::<i128>() {
        Ok(n) if n >= min as i128 && n <= max as i128 => Ok(n as u64),
        Ok(n) => usage(format!(
            "{flag}: {n} is out of range; give a whole number from {min} to {max}"
        )),
        Err(_) => usage(format!(
            "{flag}: '{raw}' is not a whole number; give one from {min} to {max}"
        )),
    }
}

/// A byte size: `4096`, `512KiB`, `1MiB`, `2GiB` (K, KB, M, MB, G, GB mean
/// the same binary multiples), between `min` and `max` bytes.
pub fn parse_size(flag: &str, raw: &str, min: u64, max: u64) -> Checked<u64> {
    let s = raw.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = (&s[..split], s[split..].trim());
    let unit_size: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => {
            return usage(format!(
                "{flag}: unknown unit '{unit}' in '{raw}'; write a size like 4096, 512KiB or 1MiB"
            ))
        }
    };
    let Ok(n) = num.parse::<u64>() else {
        return usage(format!(
            "{flag}: '{raw}' is not a size; write it like 4096, 512KiB or 1MiB"
        ));
    };
    match n.checked_mul(unit_size) {
        Some(b) if (min..=max).contains(&b) => Ok(b),
        _ => usage(format!(
            "{flag}: '{raw}' is out of range; give {min} bytes to {} MiB",
            max >> 20
        )),
    }
}

/// Largest worker count we accept: forks beyond this are a typo, not a plan.
pub const MAX_WORKERS: u64 = 1024;
/// Largest partition count we will create or grow to.
pub const MAX_PARTITIONS: u64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkersSpec {
    Auto,
    Fixed(u32),
}

impl WorkersSpec {
    pub fn parse(raw: &str) -> Checked<Self> {
        if raw.trim().eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        parse_count("--workers", raw, 1, MAX_WORKERS)
            .map(|n| Self::Fixed(n as u32))
            .map_err(|e| UsageError(format!("{e} (or 'auto' for one per usable core)")))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionsSpec {
    /// Match the worker count.
    Auto,
    Fixed(u32),
    /// Never touch the topic.
    Keep,
}

impl PartitionsSpec {
    pub fn parse(raw: &str) -> Checked<Self> {
        let t = raw.trim();
        if t.eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        if t.eq_ignore_ascii_case("keep") {
            return Ok(Self::Keep);
        }
        parse_count("--partitions", raw, 1, MAX_PARTITIONS)
            .map(|n| Self::Fixed(n as u32))
            .map_err(|e| UsageError(format!("{e} (or 'auto' or 'keep')")))
    }
}

/// Kafka's rule for topic names: 1-249 of [a-zA-Z0-9._-], not "." or "..".
pub fn validate_topic(raw: &str) -> Checked<String> {
    let ok_chars = raw
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if raw.is_empty() || raw.len() > 249 || !ok_chars || raw == "." || raw == ".." {
        return usage(format!(
            "--topic: '{raw}' is not a valid Kafka topic name; use 1-249 characters of a-z A-Z 0-9 . _ -"
        ));
    }
    Ok(raw.to_string())
}

/// Group ids may be almost anything, but not empty, and we keep them printable.
pub fn validate_group(raw: &str) -> Checked<String> {
    if raw.is_empty() || raw.len() > 255 || raw.chars().any(|c| c.is_control()) {
        return usage(format!(
            "--group: '{}' is not a usable group id; give 1-255 printable characters",
            raw.escape_debug()
        ));
    }
    Ok(raw.to_string())
}

/// `host:port[,host:port..]`, each with a port.
pub fn parse_brokers(raw: &str) -> Checked<Vec<String>> {
    parse_brokers_named("--brokers", raw)
}

pub(super) fn parse_brokers_named(flag: &str, raw: &str) -> Checked<Vec<String>> {
    let mut out = Vec::new();
    for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let ok = part.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !ok {
            return usage(format!(
                "{flag}: '{part}' is not HOST:PORT (e.g. 127.0.0.1:9092)"
            ));
        }
        out.push(part.to_string());
    }
    if out.is_empty() {
        return usage(
            "--brokers: no broker given; pass -b HOST:PORT, set KSWARM_BROKERS, or put bootstrap.servers in the -F/--config file",
        );
    }
    Ok(out)
}
