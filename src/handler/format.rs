//! How a record becomes one line for a handler or for stdout (pure).
//!
//! `json`: one object per line, fields in this order:
//! `{"topic":..,"partition":..,"offset":..,"timestamp":..,"key":..,"value":..,"headers":[..]}`.
//! - `timestamp` is milliseconds since the Unix epoch.
//! - `key` / `value` are JSON strings, or `null` when the record has none.
//! - Bytes that are not valid UTF-8 are written as standard base64 (with padding)
//!   and marked by a sibling field right after them: `"key_encoding":"base64"`,
//!   `"value_encoding":"base64"`. No marker means the string is the bytes as UTF-8.
//! - `headers` is a list (Kafka allows a key more than once, an object could not
//!   keep both): `[{"key":"k","value":"v"}, ..]`, with `"value_encoding":"base64"`
//!   inside an entry whose value is not UTF-8, and `"value":null` for a null
//!   header value. Header keys are always UTF-8.
//! - `delivery_count` (share groups only, `--group-protocol share`): how many
//!   times the record has gone to a handler, 1 the first time: the broker's
//!   delivery count plus the worker's own re-deliveries after a `retry`. It
//!   comes last, after `headers`, and is absent under the other protocols.
//!
//! `value`: the raw value bytes and a newline; a null value is an empty line.
//! Nothing is escaped, so a value that itself holds a newline looks like several
//! lines. kswarm's stdout writes it as is; `--exec` refuses it (see
//! [`value_breaks_line`]) because its handler acknowledges one line per record;
//! `--exec-batch` writes it as is (exit status acknowledges, no line counting).

use base64::Engine as _;

use crate::config::Format;
use crate::record::Record;

/// Appends the record's line (newline included) to `out`. `topic` is the
/// topic the record came from (json only).
pub fn encode(format: Format, topic: &str, record: &Record, out: &mut Vec<u8>) {
    match format {
        Format::Json => encode_json(topic, record, out),
        Format::Value => encode_value(record, out),
    }
}

/// `--format value`: raw value bytes + `\n`.
pub fn encode_value(record: &Record, out: &mut Vec<u8>) {
    if let Some(v) = &record.value {
        out.extend_from_slice(v);
    }
    out.push(b'\n');
}

/// True when `--format value` would turn this record into more than one line.
pub fn value_breaks_line(record: &Record) -> bool {
    record
        .value
        .as_deref()
        .is_some_and(|v| memchr::memchr(b'\n', v).is_some())
}

/// `--format json`: one JSON object + `\n` (see the module docs for the shape).
pub fn encode_json(topic: &str, record: &Record, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"topic\":");
    json_str(topic, out);
    out.extend_from_slice(b",\"partition\":");
    int(record.partition.into(), out);
    out.extend_from_slice(b",\"offset\":");
    int(record.offset, out);
    out.extend_from_slice(b",\"timestamp\":");
    int(record.timestamp_ms, out);
    out.push(b',');
    bytes_field("key", record.key.as_deref(), out);
    out.push(b',');
    bytes_field("value", record.value.as_deref(), out);
    out.extend_from_slice(b",\"headers\":[");
    for (i, (k, v)) in record.headers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"key\":");
        json_str(k, out);
        out.push(b',');
        bytes_field("value", v.as_deref(), out);
        out.push(b'}');
    }
    out.push(b']');
    if let Some(n) = record.delivery_count {
        out.extend_from_slice(b",\"delivery_count\":");
        int(n.into(), out);
    }
    out.extend_from_slice(b"}\n");
}

fn int(n: i64, out: &mut Vec<u8>) {
    use std::io::Write as _;
    write!(out, "{n}").expect("writing to a Vec cannot fail");
}

/// `"name":<string|null>` plus `,"name_encoding":"base64"` for non-UTF-8 bytes.
fn bytes_field(name: &str, bytes: Option<&[u8]>, out: &mut Vec<u8>) {
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    match bytes {
        None => out.extend_from_slice(b"null"),
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => json_str(s, out),
            Err(_) => {
                out.push(b'"');
                let start = out.len();
                let engine = &base64::engine::general_purpose::STANDARD;
                out.resize(start + base64::encoded_len(b.len(), true).unwrap_or(0), 0);
                let n = engine
                    .encode_slice(b, &mut out[start..])
                    .expect("buffer sized by encoded_len");
                out.truncate(start + n);
                out.extend_from_slice(b"\",\"");
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b"_encoding\":\"base64\"");
            }
        },
    }
}

/// A JSON string literal: quotes, `\" \\ \n \r \t \b \f`, other controls as `\u00XX`.
/// Everything else (all non-ASCII UTF-8 included) is copied as is.
fn json_str(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn rec(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[(&str, &[u8])]) -> Record {
        Record {
            partition: 3,
            offset: 42,
            timestamp_ms: 1_700_000_000_123,
            key: key.map(Bytes::copy_from_slice),
            value: value.map(Bytes::copy_from_slice),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), Some(Bytes::copy_from_slice(v))))
                .collect(),
            delivery_count: None,
            lane: crate::record::Lane::Main,
        }
    }

    fn json_of(r: &Record) -> Value {
        let mut out = Vec::new();
        encode(Format::Json, "logs.app-1", r, &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(
            out.iter().filter(|&&b| b == b'\n').count(),
            1,
            "exactly one line"
        );
        serde_json::from_slice(&out).expect("valid JSON")
    }

    #[test]
    fn json_text_record() {
        let r = rec(
            Some(b"user-7"),
            Some(b"{\"a\":1}\nnext \"q\" \\ \t\x01"),
            &[("trace", b"abc")],
        );
        assert_eq!(
            json_of(&r),
            json!({
                "topic": "logs.app-1", "partition": 3, "offset": 42, "timestamp": 1_700_000_000_123i64,
                "key": "user-7", "value": "{\"a\":1}\nnext \"q\" \\ \t\u{1}",
                "headers": [{"key": "trace", "value": "abc"}]
            })
        );
    }

    #[test]
    fn json_delivery_count_only_for_share_groups_and_last() {
        let mut r = rec(Some(b"k"), Some(b"v"), &[("h", b"x")]);
        assert!(json_of(&r).get("delivery_count").is_none());
        r.delivery_count = Some(5);
        let v = json_of(&r);
        assert_eq!(v["delivery_count"], json!(5));
        assert_eq!(v["headers"], json!([{"key": "h", "value": "x"}]));
        let mut line = Vec::new();
        encode(Format::Json, "t", &r, &mut line);
        assert!(
            line.ends_with(b"}],\"delivery_count\":5}\n"),
            "{}",
            String::from_utf8_lossy(&line)
        );
        // --format value has no fields: the raw value still.
        let mut raw = Vec::new();
        encode(Format::Value, "t", &r, &mut raw);
        assert_eq!(raw, b"v\n");
    }

    #[test]
    fn json_nulls_and_empty() {
        let v = json_of(&rec(None, None, &[]));
        assert_eq!(v["key"], Value::Null);
        assert_eq!(v["value"], Value::Null);
        assert_eq!(v["headers"], json!([]));
        assert!(v.get("value_encoding").is_none());
        let v = json_of(&rec(Some(b""), Some(b""), &[]));
        assert_eq!(v["key"], json!(""));
        assert_eq!(v["value"], json!(""));
    }

    #[test]
    fn json_non_utf8_is_base64_with_marker() {
        let r = rec(
            Some(&[0xff, 0x00]),
            Some(&[0xc3, 0x28, 0x0a]),
            &[("bin", &[0x80]), ("txt", b"ok")],
        );
        let v = json_of(&r);
        assert_eq!(v["key"], json!("/wA="));
        assert_eq!(v["key_encoding"], json!("base64"));
        assert_eq!(v["value"], json!("wygK"));
        assert_eq!(v["value_encoding"], json!("base64"));
        assert_eq!(
            v["headers"],
            json!([{"key": "bin", "value": "gA==", "value_encoding": "base64"}, {"key": "txt", "value": "ok"}])
        );
        // UTF-8 text keeps its characters, no marker.
        let v = json_of(&rec(None, Some("héllo ✓".as_bytes()), &[]));
        assert_eq!(v["value"], json!("héllo ✓"));
        assert!(v.get("value_encoding").is_none());
    }

    #[test]
    fn json_repeated_header_keys_kept() {
        let v = json_of(&rec(None, Some(b"x"), &[("a", b"1"), ("a", b"2")]));
        assert_eq!(
            v["headers"],
            json!([{"key": "a", "value": "1"}, {"key": "a", "value": "2"}])
        );
    }

    #[test]
    fn json_null_header_value() {
        let mut r = rec(None, Some(b"x"), &[]);
        r.headers.push(("trace".into(), None));
        assert_eq!(
            json_of(&r)["headers"],
            json!([{"key": "trace", "value": null}])
        );
    }

    #[test]
    fn value_format_is_raw_plus_newline() {
        let mut out = Vec::new();
        encode(
            Format::Value,
            "t",
            &rec(None, Some(&[0xff, b'a']), &[]),
            &mut out,
        );
        encode(Format::Value, "t", &rec(None, None, &[]), &mut out);
        assert_eq!(out, b"\xffa\n\n");
        assert!(value_breaks_line(&rec(None, Some(b"a\nb"), &[])));
        assert!(!value_breaks_line(&rec(None, Some(b"a b"), &[])));
        assert!(!value_breaks_line(&rec(None, None, &[])));
    }

    proptest! {
        #[test]
        fn json_round_trips_any_bytes(
            key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
            text in ".{0,40}",
            offset in any::<i64>(),
        ) {
            let mut r = rec(key.as_deref(), value.as_deref(), &[]);
            r.offset = offset;
            r.headers.push((text.clone(), Some(Bytes::from(text.clone()))));
            let v = json_of(&r);
            prop_assert_eq!(v["offset"].as_i64(), Some(offset));
            prop_assert_eq!(&v["headers"][0]["key"], &json!(text));
            for (name, orig) in [("key", &key), ("value", &value)] {
                let decoded = match (&v[name], v.get(format!("{name}_encoding"))) {
                    (Value::Null, None) => None,
                    (Value::String(s), None) => Some(s.as_bytes().to_vec()),
                    (Value::String(s), Some(m)) => {
                        prop_assert_eq!(m, &json!("base64"));
                        Some(base64::engine::general_purpose::STANDARD.decode(s).unwrap())
                    }
                    other => panic!("unexpected {other:?}"),
                };
                prop_assert_eq!(&decoded, orig);
            }
        }
    }
}
