//! librdkafka-named settings: `-F/--config FILE` (the properties format
//! librdkafka, kcat and Java read: `key=value`, `#` or `!` comments) and
//! `-X KEY=VALUE` flags, merged so that the flags win. The merged map is
//! read by [`crate::security`] (security.protocol, sasl.*, ssl.*) and by
//! the consumer settings (fetch.*, group.*); a key no one reads is warned
//! about once.
//!
//! Values of secret keys never leave this module in `Debug` output.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::UsageError;

/// Keys whose values are secrets: redacted in `Debug`, and warned about when
/// given with `-X` (where `ps` shows them).
pub const SECRET_KEYS: &[&str] = &[
    "sasl.password",
    "ssl.key.password",
    "sasl.oauthbearer.token",
];

/// Keys kswarm reads (anything else is warned about once).
pub const KNOWN_KEYS: &[&str] = &[
    // the brokers, when -b is not given
    "bootstrap.servers",
    "metadata.broker.list",
    // consumer (config::ConsumeConfig)
    "fetch.max.bytes",
    "max.partition.fetch.bytes",
    "fetch.wait.max.ms",
    "fetch.max.wait.ms",
    "group.protocol",
    "group.remote.assignor",
    // --output-topic (config::OutputConfig)
    "output.topic",
    "transaction.timeout.ms",
    // security (crate::security)
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.key.password",
    "ssl.endpoint.identification.algorithm",
    "enable.sasl.oauthbearer.unsecure.jwt",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.token.file",
    "sasl.oauthbearer.token.command",
];

/// Keys that make sense in a kcat or librdkafka file but that kswarm sets
/// itself or takes from its own flags: accepted without a warning.
const QUIET_KEYS: &[&str] = &[
    "client.id",
    "group.id",
    "auto.offset.reset",
    "enable.auto.commit",
];

/// Where a value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Origin {
    File { path: PathBuf, line: usize },
    Flag,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::Flag => f.write_str("-X"),
        }
    }
}

/// The merged settings: key -> (value, where it came from).
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    values: BTreeMap<String, (String, Origin)>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut m = f.debug_map();
        for (k, (v, _)) in &self.values {
            if is_secret(k) {
                m.entry(k, &"<redacted>");
            } else {
                m.entry(k, v);
            }
        }
        m.finish()
    }
}

pub fn is_secret(key: &str) -> bool {
    SECRET_KEYS.contains(&key)
}

impl Settings {
    /// Read `file` (if any), then apply the `-X` flags over it.
    pub fn load(file: Option<&Path>, flags: &[String]) -> Result<Self, UsageError> {
        let mut s = Settings::default();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                UsageError(format!(
                    "-F/--config: cannot read {}: {e}; give a readable properties file (key=value lines)",
                    path.display()
                ))
            })?;
            for (line, key, value) in parse_properties(&text).map_err(|(line, msg)| {
                UsageError(format!("-F/--config: {}:{line}: {msg}", path.display()))
            })? {
                s.values.insert(
                    key,
                    (
                        value,
                        Origin::File {
                            path: path.to_path_buf(),
                            line,
                        },
                    ),
                );
            }
        }
        for kv in flags {
            let Some((k, v)) = kv.split_once('=').filter(|(k, _)| !k.trim().is_empty()) else {
                let shown = if kv.contains("password") {
                    "<redacted>"
                } else {
                    kv
                };
                return Err(UsageError(format!("-X: '{shown}' is not KEY=VALUE")));
            };
            s.values
                .insert(k.trim().to_string(), (v.trim().to_string(), Origin::Flag));
        }
        Ok(s)
    }

    /// Settings from `key=value` pairs alone (tests, callers without a file).
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        let mut s = Settings::default();
        for (k, v) in pairs {
            s.values
                .insert(k.to_string(), (v.to_string(), Origin::Flag));
        }
        s
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(|(v, _)| v.as_str())
    }

    /// How to name `key` in a message: `-X key` or `FILE:LINE key`.
    pub fn name(&self, key: &str) -> String {
        match self.values.get(key) {
            Some((_, Origin::File { path, line })) => {
                format!("{key} ({}:{line})", path.display())
            }
            _ => format!("-X {key}"),
        }
    }

    /// Keys kswarm does not read, in order.
    pub fn unknown_keys(&self) -> Vec<String> {
        self.values
            .keys()
            .filter(|k| !KNOWN_KEYS.contains(&k.as_str()) && !QUIET_KEYS.contains(&k.as_str()))
            .cloned()
            .collect()
    }

    /// Secret keys given as `-X` flags (visible to `ps` in our own argv).
    pub fn secrets_on_command_line(&self) -> Vec<String> {
        self.values
            .iter()
            .filter(|(k, (_, o))| is_secret(k) && *o == Origin::Flag)
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// One `key=value` line of a properties file: (line number, key, value).
pub type Property = (usize, String, String);
/// A line that is not `key=value`: (line number, why).
pub type BadLine = (usize, String);

/// The properties format librdkafka's and kcat's `-F` read (and Java's, for
/// the cases that matter): one `key=value` per line, whitespace around the
/// key and value trimmed, blank lines and lines starting with `#` or `!`
/// ignored. Returns (line number, key, value); an error names the line.
pub fn parse_properties(text: &str) -> Result<Vec<Property>, BadLine> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err((
                n,
                format!(
                    "'{}' is not key=value",
                    if line.contains("password") {
                        "<redacted>"
                    } else {
                        line
                    }
                ),
            ));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err((n, "the key before '=' is empty".into()));
        }
        out.push((n, k.to_string(), v.trim().to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kcat_file_parses() {
        let text = "# kcat config\nbootstrap.servers=b1:9093,b2:9093\n\n! java comment\n\
                    security.protocol = SASL_SSL\nsasl.mechanisms=SCRAM-SHA-512\nsasl.password=p=w#1\n";
        let got = parse_properties(text).unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(
            got[0],
            (2, "bootstrap.servers".into(), "b1:9093,b2:9093".into())
        );
        assert_eq!(got[1].2, "SASL_SSL");
        // only the first '=' splits; '#' inside a value is part of it
        assert_eq!(got[3], (7, "sasl.password".into(), "p=w#1".into()));
    }

    #[test]
    fn bad_lines_name_their_number_and_hide_passwords() {
        assert_eq!(parse_properties("a=1\nnonsense\n").unwrap_err().0, 2);
        let e = parse_properties("sasl.password hunter2\n").unwrap_err();
        assert!(!e.1.contains("hunter2"), "{}", e.1);
        assert!(parse_properties("=x\n").is_err());
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k.properties");
        std::fs::write(&f, "fetch.max.bytes=1000\nsasl.username=alice\n").unwrap();
        let s = Settings::load(Some(&f), &["fetch.max.bytes=2000".into()]).unwrap();
        assert_eq!(s.get("fetch.max.bytes"), Some("2000"));
        assert_eq!(s.name("fetch.max.bytes"), "-X fetch.max.bytes");
        assert_eq!(
            s.name("sasl.username"),
            format!("sasl.username ({}:2)", f.display())
        );
    }

    #[test]
    fn an_unreadable_file_names_the_flag_and_the_path() {
        let e = Settings::load(Some(Path::new("/nonexistent/k.properties")), &[]).unwrap_err();
        assert!(
            e.0.contains("-F/--config") && e.0.contains("/nonexistent/k.properties"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_and_secrets_on_the_command_line() {
        let s = Settings::load(
            None,
            &[
                "sasl.password=hunter2".into(),
                "client.id=x".into(),
                "socket.keepalive.enable=true".into(),
            ],
        )
        .unwrap();
        assert_eq!(
            s.unknown_keys(),
            vec!["socket.keepalive.enable".to_string()]
        );
        assert_eq!(
            s.secrets_on_command_line(),
            vec!["sasl.password".to_string()]
        );
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("<redacted>"),
            "{shown}"
        );
        assert!(Settings::load(None, &["sasl.password".into()]).is_err());
    }
}
