//! kswarm's own logs on stderr, filtered by --log-level or RUST_LOG: lines for
//! people (`--log-format text`), or one JSON object per line for log
//! pipelines and tests (`--log-format json`). Important moments carry an
//! `event` field (`worker_joined`, `restart_scheduled`, ...) with their data
//! as fields, so that nobody has to parse the wording of a message.

use tracing_subscriber::EnvFilter;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    pub fn parse(raw: &str) -> Result<Self, crate::config::UsageError> {
        match raw {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(crate::config::UsageError(format!(
                "--log-format: '{other}' is not text or json"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }

    /// The format this process logs in (set by [`init`]).
    pub fn current() -> Self {
        *CURRENT.get().unwrap_or(&LogFormat::Text)
    }
}

static CURRENT: std::sync::OnceLock<LogFormat> = std::sync::OnceLock::new();

/// The levels `--log-level` takes on its own.
const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

/// The log filter for `--log-level`. A bare level is kswarm's own (other
/// crates stay at warn, rskafka at error: its retries are kswarm's to
/// report); RUST_LOG-style directives (`kswarm=debug,info`) are taken as
/// written. Anything else is refused, so that a typo does not quietly log at
/// some other level.
pub fn filter_for(raw: &str) -> Result<String, crate::config::UsageError> {
    let is_level = |s: &str| LEVELS.iter().any(|l| l.eq_ignore_ascii_case(s.trim()));
    let t = raw.trim();
    if is_level(t) {
        return Ok(format!(
            "kswarm={},rskafka=error,warn",
            t.to_ascii_lowercase()
        ));
    }
    // A bare word is a valid directive to EnvFilter (a target at trace), so
    // `loud` would pass its parser: each directive must end in a level.
    let directives = !t.is_empty()
        && t.split(',').all(|d| {
            is_level(d)
                || d.rsplit_once('=')
                    .is_some_and(|(target, level)| !target.trim().is_empty() && is_level(level))
        });
    if directives && EnvFilter::try_new(t).is_ok() {
        return Ok(t.to_string());
    }
    Err(crate::config::UsageError(format!(
        "--log-level/KSWARM_LOG_LEVEL: '{raw}' is not a log level; use one of {}, \
         or RUST_LOG-style directives such as kswarm=debug,info",
        LEVELS.join(", ")
    )))
}

/// Install the logger; a bad `--log-level` is a usage error (exit 2).
pub fn init(level: &str, format: LogFormat) -> Result<(), crate::config::UsageError> {
    let own = filter_for(level)?;
    let _ = CURRENT.set(format);
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(own));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        // For people: the message and the fields of a line, but not the
        // `event` name (it is for machines, and says what the message says).
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .fmt_fields(TextFields)
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    Ok(())
}

/// Fields of a text log line: the message, then `name=value` for each other
/// field, except on lines with an `event` (their message already says all
/// their fields say; the fields are for machines, in JSON).
struct TextFields;

impl<'w> tracing_subscriber::fmt::FormatFields<'w> for TextFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: tracing_subscriber::fmt::format::Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        #[derive(Default)]
        struct Collect {
            message: String,
            rest: String,
            event: bool,
        }
        impl tracing::field::Visit for Collect {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                use std::fmt::Write as _;
                match field.name() {
                    "message" => {
                        let _ = write!(self.message, "{value:?}");
                    }
                    "event" => self.event = true,
                    name => {
                        let _ = write!(self.rest, " {name}={value:?}");
                    }
                }
            }
        }
        let mut c = Collect::default();
        fields.record(&mut c);
        writer.write_str(&c.message)?;
        if !c.event {
            writer.write_str(&c.rest)?;
        }
        Ok(())
    }
}

/// A handler's stderr line as kswarm logs it, `[worker N] line`. In JSON
/// mode the line goes out as a log event of its own instead (`handler_stderr`,
/// with the line as its message), and None is returned.
pub fn handler_line(slot: u32, line: &[u8]) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches(['\n', '\r']);
    match LogFormat::current() {
        LogFormat::Text => Some(format!("[worker {slot}] {text}\n").into_bytes()),
        LogFormat::Json => {
            tracing::info!(event = "handler_stderr", slot, "{text}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_name_the_flag() {
        assert_eq!(LogFormat::parse("json").unwrap(), LogFormat::Json);
        assert!(LogFormat::parse("xml")
            .unwrap_err()
            .0
            .contains("--log-format"));
    }

    #[test]
    fn log_levels_and_directives() {
        assert_eq!(
            filter_for("debug").unwrap(),
            "kswarm=debug,rskafka=error,warn"
        );
        assert_eq!(
            filter_for(" WARN ").unwrap(),
            "kswarm=warn,rskafka=error,warn"
        );
        assert_eq!(
            filter_for("kswarm=debug,info").unwrap(),
            "kswarm=debug,info"
        );
        assert_eq!(
            filter_for("kswarm::worker=trace").unwrap(),
            "kswarm::worker=trace"
        );
        for bad in ["loud", "", "kswarm", "kswarm=loud", "info,", "=debug"] {
            let e = filter_for(bad).unwrap_err().0;
            assert!(
                e.contains("--log-level") && e.contains("KSWARM_LOG_LEVEL"),
                "{bad:?}: {e}"
            );
            assert!(e.contains("error, warn, info, debug, trace, off"), "{e}");
        }
    }

    #[test]
    fn handler_lines_in_text() {
        assert_eq!(
            handler_line(3, b"hello\n").as_deref(),
            Some(&b"[worker 3] hello\n"[..])
        );
    }
}
