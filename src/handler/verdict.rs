//! `--verdicts`: each ack line of an `--exec` handler says what became of
//! its record: `ok` (done), `retry` (deliver it again later) or
//! `reject REASON` (poison: never deliver it again). Pure parsing; what a
//! verdict leads to is the worker's business (`worker::verdicts`).

/// What the handler said about one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Retry,
    /// With the handler's reason (may be empty).
    Reject(String),
}

/// The words a verdict line may start with, for messages.
pub const VERDICT_FORMS: &str = "'ok', 'retry' or 'reject REASON'";

/// One ack line (without its newline) -> its verdict. Err: the line as
/// shown in a message (cut to 80 bytes).
pub fn parse(line: &[u8]) -> Result<Verdict, String> {
    let text = String::from_utf8_lossy(line);
    let t = text.trim();
    let (word, rest) = match t.find(char::is_whitespace) {
        Some(i) => (&t[..i], t[i..].trim()),
        None => (t, ""),
    };
    match word {
        "ok" if rest.is_empty() => Ok(Verdict::Ok),
        "retry" if rest.is_empty() => Ok(Verdict::Retry),
        "reject" => Ok(Verdict::Reject(rest.to_string())),
        _ => Err(shown(line)),
    }
}

/// A line for a message: at most 80 bytes, lossy UTF-8, quoted.
pub(super) fn shown(line: &[u8]) -> String {
    let cut = &line[..line.len().min(80)];
    let more = if line.len() > 80 { "..." } else { "" };
    format!("{:?}{more}", String::from_utf8_lossy(cut))
}

/// Cuts a byte stream into lines across reads: a line split over two reads
/// is parsed once whole.
#[derive(Debug, Default)]
pub struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// The verdicts of the lines `bytes` completes. Err: the first line that
    /// is not a verdict (the verdicts before it are lost with the handler).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Verdict>, String> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while let Some(i) = memchr::memchr(b'\n', rest) {
            let line = &rest[..i];
            rest = &rest[i + 1..];
            let v = if self.partial.is_empty() {
                parse(line)
            } else {
                self.partial.extend_from_slice(line);
                let whole = std::mem::take(&mut self.partial);
                parse(&whole)
            }?;
            out.push(v);
        }
        // A runaway line without newline is not a verdict: no need to keep
        // more of it than a message shows.
        if self.partial.len() < 64 * 1024 {
            self.partial.extend_from_slice(rest);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_verdicts() {
        assert_eq!(parse(b"ok"), Ok(Verdict::Ok));
        assert_eq!(parse(b"ok\r"), Ok(Verdict::Ok));
        assert_eq!(parse(b"  retry "), Ok(Verdict::Retry));
        assert_eq!(
            parse(b"reject bad json: line 3"),
            Ok(Verdict::Reject("bad json: line 3".into()))
        );
        assert_eq!(parse(b"reject"), Ok(Verdict::Reject(String::new())));
        assert_eq!(
            parse(b"reject\tno  tabs "),
            Ok(Verdict::Reject("no  tabs".into()))
        );
    }

    #[test]
    fn anything_else_is_refused_and_shown() {
        for bad in [
            &b""[..],
            b"OK",
            b"done",
            b"ok thanks",
            b"retry later",
            b"rejected x",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse(b"done").unwrap_err(), "\"done\"");
        let long = vec![b'x'; 200];
        let m = parse(&long).unwrap_err();
        assert!(m.ends_with("...") && m.len() < 90, "{m}");
    }

    #[test]
    fn lines_split_across_reads() {
        let mut l = Lines::default();
        assert_eq!(l.feed(b"ok\nre").unwrap(), vec![Verdict::Ok]);
        assert_eq!(l.feed(b"tr").unwrap(), vec![]);
        assert_eq!(
            l.feed(b"y\nreject x\nok\n").unwrap(),
            vec![Verdict::Retry, Verdict::Reject("x".into()), Verdict::Ok]
        );
        assert!(l.feed(b"ok\nnope\nok\n").is_err());
    }
}
