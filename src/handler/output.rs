//! `--output-topic`: what an `--exec` handler's stdout lines mean when its
//! results go to a topic. Pure parsing; the worker produces the results in
//! the transaction that commits their input (`worker::output`).
//!
//! The records arrive in order, and each line speaks of the first record
//! not finished yet:
//! - a plain line (anything but the directives below) is one result, and
//!   the record is finished: a one-to-one filter (`jq -c .`, `sed -u`,
//!   `awk`) works as it is;
//! - `@out VALUE`: one result (the rest of the line; no key); the record is
//!   not finished yet, more results may follow;
//! - `@json {"value": .., "key": .., "headers": {..}}`: one result with a
//!   key and headers (a string is taken as is, other JSON values as their
//!   compact text; null is no key or no value); not finished yet either;
//! - `@done`: the record is finished (zero results, or the ones given);
//! - with `--verdicts`: `@retry` and `@reject REASON` finish the record
//!   with that verdict (its results so far are dropped; a rejected record
//!   goes to the dead-letter topic in the same transaction).
//!
//! A result whose text itself begins with one of these directives is
//! written with `@out`.

use bytes::Bytes;

use super::verdict::shown;
use super::Verdict;
use crate::record::OutRecord;

/// One stdout line of an `--output-topic` handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutLine {
    /// A result of the current record; more may follow.
    Result(OutRecord),
    /// A plain line: the current record's result, and it is finished.
    Last(OutRecord),
    /// The current record is finished with this verdict.
    Done(Verdict),
}

/// The directives, for messages.
pub const DIRECTIVES: &str =
    "'@out VALUE', '@json {..}', '@done' (with --verdicts also '@retry' and '@reject REASON')";

/// One line (without its newline). Err: why it cannot be taken.
pub fn parse(line: &[u8], verdicts: bool) -> Result<OutLine, String> {
    let Some(rest) = line.strip_prefix(b"@") else {
        return Ok(OutLine::Last(value_only(line)));
    };
    let (word, arg) = match memchr::memchr(b' ', rest) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b""[..]),
    };
    match word {
        b"out" => Ok(OutLine::Result(value_only(arg))),
        b"json" => json_result(arg).map(OutLine::Result),
        b"done" if arg.is_empty() => Ok(OutLine::Done(Verdict::Ok)),
        b"retry" | b"reject" if !verdicts => Err(format!(
            "it printed {}, a verdict, but kswarm runs without --verdicts; add --verdicts, or \
             print '@done' to finish a record",
            shown(line)
        )),
        b"retry" if arg.is_empty() => Ok(OutLine::Done(Verdict::Retry)),
        b"reject" => Ok(OutLine::Done(Verdict::Reject(
            String::from_utf8_lossy(arg).trim().to_string(),
        ))),
        // Any other line that begins with @ is a plain result.
        _ => Ok(OutLine::Last(value_only(line))),
    }
}

fn value_only(v: &[u8]) -> OutRecord {
    OutRecord {
        key: None,
        value: Some(Bytes::copy_from_slice(v)),
        headers: Vec::new(),
    }
}

fn json_result(arg: &[u8]) -> Result<OutRecord, String> {
    let bad = |why: &str| {
        format!(
            "it printed '@json {}', {why}; write @json {{\"value\": \"..\", \"key\": \"..\", \
             \"headers\": {{\"name\": \"..\"}}}} (key and headers may be left out)",
            String::from_utf8_lossy(&arg[..arg.len().min(80)])
        )
    };
    let v: serde_json::Value =
        serde_json::from_slice(arg).map_err(|e| bad(&format!("which is not JSON ({e})")))?;
    let serde_json::Value::Object(map) = v else {
        return Err(bad("which is not a JSON object"));
    };
    let mut out = OutRecord {
        key: None,
        value: None,
        headers: Vec::new(),
    };
    for (name, field) in map {
        match name.as_str() {
            "value" => out.value = text_of(&field),
            "key" => out.key = text_of(&field),
            "headers" => {
                let serde_json::Value::Object(h) = field else {
                    return Err(bad("whose \"headers\" is not an object"));
                };
                out.headers = h.into_iter().map(|(k, v)| (k, text_of(&v))).collect();
            }
            other => {
                return Err(bad(&format!(
                    "with a field \"{other}\" kswarm does not know"
                )))
            }
        }
    }
    Ok(out)
}

/// A JSON string as its text, null as nothing, anything else as its
/// compact JSON text.
fn text_of(v: &serde_json::Value) -> Option<Bytes> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(Bytes::from(s.clone())),
        other => Some(Bytes::from(other.to_string())),
    }
}

/// Cuts a byte stream into lines across reads and parses each whole line.
#[derive(Debug, Default)]
pub struct Lines {
    partial: Vec<u8>,
    pub verdicts: bool,
}

impl Lines {
    /// The lines `bytes` completes. Err: the first line that cannot be
    /// taken (the lines before it are lost with the handler).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<OutLine>, String> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while let Some(i) = memchr::memchr(b'\n', rest) {
            let line = &rest[..i];
            rest = &rest[i + 1..];
            let parsed = if self.partial.is_empty() {
                parse(line, self.verdicts)
            } else {
                self.partial.extend_from_slice(line);
                let whole = std::mem::take(&mut self.partial);
                parse(&whole, self.verdicts)
            }?;
            out.push(parsed);
        }
        self.partial.extend_from_slice(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(line: &OutLine) -> Option<&[u8]> {
        match line {
            OutLine::Result(r) | OutLine::Last(r) => r.value.as_deref(),
            OutLine::Done(_) => None,
        }
    }

    #[test]
    fn a_plain_line_is_one_result_that_finishes_its_record() {
        let l = parse(br#"{"a":1}"#, false).unwrap();
        assert!(matches!(l, OutLine::Last(_)));
        assert_eq!(value(&l), Some(&br#"{"a":1}"#[..]));
        // An empty line is an empty result.
        assert_eq!(value(&parse(b"", false).unwrap()), Some(&b""[..]));
        // Unknown words after @ are data too.
        let at = parse(b"@alice wrote", false).unwrap();
        assert!(matches!(at, OutLine::Last(_)));
        assert_eq!(value(&at), Some(&b"@alice wrote"[..]));
    }

    #[test]
    fn directives_give_results_and_finish_records() {
        let r = parse(b"@out hello world", false).unwrap();
        assert!(matches!(r, OutLine::Result(_)));
        assert_eq!(value(&r), Some(&b"hello world"[..]));
        assert_eq!(
            value(&parse(b"@out @done", false).unwrap()),
            Some(&b"@done"[..])
        );
        assert_eq!(parse(b"@done", false).unwrap(), OutLine::Done(Verdict::Ok));
        let j = parse(
            br#"@json {"key":"k1","value":{"n":2},"headers":{"h":"v","z":null}}"#,
            false,
        )
        .unwrap();
        let OutLine::Result(r) = j else {
            panic!("{j:?}")
        };
        assert_eq!(r.key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(r.value.as_deref(), Some(&br#"{"n":2}"#[..]));
        assert_eq!(
            r.headers,
            vec![
                ("h".to_string(), Some(Bytes::from_static(b"v"))),
                ("z".to_string(), None)
            ]
        );
    }

    #[test]
    fn verdicts_need_the_flag() {
        let e = parse(b"@retry", false).unwrap_err();
        assert!(e.contains("--verdicts"), "{e}");
        assert_eq!(
            parse(b"@retry", true).unwrap(),
            OutLine::Done(Verdict::Retry)
        );
        assert_eq!(
            parse(b"@reject bad input", true).unwrap(),
            OutLine::Done(Verdict::Reject("bad input".into()))
        );
    }

    #[test]
    fn bad_json_is_named() {
        let e = parse(b"@json {nope", false).unwrap_err();
        assert!(e.contains("not JSON") && e.contains("@json"), "{e}");
        let e = parse(br#"@json {"valu":"x"}"#, false).unwrap_err();
        assert!(e.contains("\"valu\""), "{e}");
        let e = parse(b"@json [1]", false).unwrap_err();
        assert!(e.contains("not a JSON object"), "{e}");
    }

    #[test]
    fn lines_split_over_reads_are_parsed_once_whole() {
        let mut l = Lines::default();
        assert!(l.feed(b"@out a").unwrap().is_empty());
        let got = l.feed(b"bc\n@done\nx").unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(value(&got[0]), Some(&b"abc"[..]));
        assert_eq!(got[1], OutLine::Done(Verdict::Ok));
        let got = l.feed(b"y\n").unwrap();
        assert_eq!(value(&got[0]), Some(&b"xy"[..]));
    }
}
