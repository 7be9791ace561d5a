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

pub fn init(level: &str, format: LogFormat) {
    let _ = CURRENT.set(format);
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_new(format!("kswarm={level},rskafka=error,warn")).ok())
        .unwrap_or_else(|| EnvFilter::new("kswarm=info,warn"));
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
    fn handler_lines_in_text() {
        assert_eq!(
            handler_line(3, b"hello\n").as_deref(),
            Some(&b"[worker 3] hello\n"[..])
        );
    }
}
