//! How kswarm authenticates to the cluster and protects its connections,
//! in librdkafka's words: `security.protocol`, `sasl.*` and `ssl.*`. This
//! module only checks the settings (pure, no I/O); `crate::tls` reads the
//! files and `crate::wire::sasl` speaks the handshake.
//!
//! Secrets ([`Secret`]) print as `<redacted>` in `Debug` and `Display`; they
//! serialize whole only for the worker's settings pipe.

use std::path::PathBuf;

use crate::error::UsageError;
use crate::settings::Settings;

/// A password, key password or token: never printed.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for the handshake that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Protocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl Protocol {
    /// `security.protocol` among `s` (PLAINTEXT when unset).
    pub fn from_settings(s: &Settings) -> Result<Self, UsageError> {
        Ok(
            match s
                .get("security.protocol")
                .map(str::to_ascii_uppercase)
                .as_deref()
            {
                None | Some("PLAINTEXT") => Protocol::Plaintext,
                Some("SSL") => Protocol::Ssl,
                Some("SASL_PLAINTEXT") => Protocol::SaslPlaintext,
                Some("SASL_SSL") => Protocol::SaslSsl,
                Some(other) => {
                    return usage(format!(
                        "{}: '{other}' is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
                        s.name("security.protocol")
                    ))
                }
            },
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::Plaintext => "PLAINTEXT",
            Protocol::Ssl => "SSL",
            Protocol::SaslPlaintext => "SASL_PLAINTEXT",
            Protocol::SaslSsl => "SASL_SSL",
        }
    }
    pub fn tls(self) -> bool {
        matches!(self, Protocol::Ssl | Protocol::SaslSsl)
    }
    pub fn sasl(self) -> bool {
        matches!(self, Protocol::SaslPlaintext | Protocol::SaslSsl)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
    OauthBearer,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
            Mechanism::OauthBearer => "OAUTHBEARER",
        }
    }
}

/// Where an OAUTHBEARER token comes from. It is fetched again for every
/// authentication (every new connection), so a token file that an agent
/// rewrites before expiry, or a command that prints a fresh one, is
/// always current.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TokenSource {
    /// `sasl.oauthbearer.token.file`: the file holds the token (whitespace trimmed).
    File(PathBuf),
    /// `sasl.oauthbearer.token.command`: `sh -c` prints the token on stdout.
    Command(String),
    /// librdkafka's `enable.sasl.oauthbearer.unsecure.jwt=true` with
    /// `sasl.oauthbearer.config=principal=NAME [lifeSeconds=N]`: an unsigned
    /// JWT for test clusters (Kafka's unsecured validator).
    Unsecured {
        principal: String,
        life_seconds: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sasl {
    pub mechanism: Mechanism,
    /// PLAIN and SCRAM.
    pub username: String,
    pub password: Secret,
    /// OAUTHBEARER.
    pub token: Option<TokenSource>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Tls {
    /// `ssl.ca.location`; None: the system's trust store.
    pub ca: Option<PathBuf>,
    /// `ssl.certificate.location` + `ssl.key.location` (mTLS).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub key_password: Option<Secret>,
    /// `ssl.endpoint.identification.algorithm` is `https` (the default), not `none`.
    pub verify_hostname: bool,
}

/// Everything a connection needs to know to be opened.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Security {
    pub protocol: Protocol,
    pub sasl: Option<Sasl>,
    pub tls: Option<Tls>,
}

fn usage<T>(msg: impl Into<String>) -> Result<T, UsageError> {
    Err(UsageError(msg.into()))
}

impl Security {
    /// Check the security settings among `s`.
    pub fn from_settings(s: &Settings) -> Result<Self, UsageError> {
        let protocol = Protocol::from_settings(s)?;
        let tls = protocol.tls().then(|| Self::tls(s)).transpose()?;
        if !protocol.tls() {
            for key in [
                "ssl.ca.location",
                "ssl.certificate.location",
                "ssl.key.location",
            ] {
                if s.get(key).is_some() {
                    return usage(format!(
                        "{} is set but security.protocol is {}; set -X security.protocol=SSL (or SASL_SSL) to use TLS",
                        s.name(key),
                        protocol.name()
                    ));
                }
            }
        }
        let sasl = if protocol.sasl() {
            Some(Self::sasl(s)?)
        } else {
            if s.get("sasl.mechanism")
                .or(s.get("sasl.mechanisms"))
                .is_some()
                || s.get("sasl.username").is_some()
            {
                return usage(format!(
                    "SASL settings are given but security.protocol is {}; set -X security.protocol=SASL_SSL (or SASL_PLAINTEXT)",
                    protocol.name()
                ));
            }
            None
        };
        Ok(Security {
            protocol,
            sasl,
            tls,
        })
    }

    fn tls(s: &Settings) -> Result<Tls, UsageError> {
        let path = |k: &str| s.get(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let verify_hostname = match s
            .get("ssl.endpoint.identification.algorithm")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("https") => true,
            Some("none") => false,
            Some(other) => {
                return usage(format!(
                    "{}: '{other}' is not https or none",
                    s.name("ssl.endpoint.identification.algorithm")
                ))
            }
        };
        let (cert, key) = (path("ssl.certificate.location"), path("ssl.key.location"));
        match (&cert, &key) {
            (Some(_), None) => {
                return usage(
                    "ssl.certificate.location is set without ssl.key.location; a client certificate needs its key",
                )
            }
            (None, Some(_)) => {
                return usage(
                    "ssl.key.location is set without ssl.certificate.location; give the client certificate too",
                )
            }
            _ => {}
        }
        Ok(Tls {
            ca: path("ssl.ca.location"),
            cert,
            key,
            key_password: s.get("ssl.key.password").map(Secret::new),
            verify_hostname,
        })
    }

    fn sasl(s: &Settings) -> Result<Sasl, UsageError> {
        let (key, raw) = match (s.get("sasl.mechanism"), s.get("sasl.mechanisms")) {
            (Some(m), _) => ("sasl.mechanism", m),
            (None, Some(m)) => ("sasl.mechanisms", m),
            // librdkafka's default
            (None, None) => ("sasl.mechanism", "GSSAPI"),
        };
        let mechanism = match raw.trim().to_ascii_uppercase().as_str() {
            "PLAIN" => Mechanism::Plain,
            "SCRAM-SHA-256" => Mechanism::ScramSha256,
            "SCRAM-SHA-512" => Mechanism::ScramSha512,
            "OAUTHBEARER" => Mechanism::OauthBearer,
            other => {
                return usage(format!(
                    "{}: '{other}' is not supported; use PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER (GSSAPI/Kerberos is not)",
                    s.name(key)
                ))
            }
        };
        if mechanism == Mechanism::OauthBearer {
            return Ok(Sasl {
                mechanism,
                username: String::new(),
                password: Secret::new(""),
                token: Some(Self::token(s)?),
            });
        }
        let Some(username) = s.get("sasl.username").filter(|u| !u.is_empty()) else {
            return usage(format!(
                "SASL {} needs sasl.username and sasl.password; put them in the -F/--config file",
                mechanism.name()
            ));
        };
        let Some(password) = s.get("sasl.password") else {
            return usage(format!(
                "SASL {} for user {username} needs sasl.password; put it in the -F/--config file (not -X: ps shows flags)",
                mechanism.name()
            ));
        };
        Ok(Sasl {
            mechanism,
            username: username.to_string(),
            password: Secret::new(password),
            token: None,
        })
    }

    fn token(s: &Settings) -> Result<TokenSource, UsageError> {
        let file = s
            .get("sasl.oauthbearer.token.file")
            .filter(|v| !v.is_empty());
        let command = s
            .get("sasl.oauthbearer.token.command")
            .filter(|v| !v.trim().is_empty());
        let unsecured = s
            .get("enable.sasl.oauthbearer.unsecure.jwt")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        match (file, command, unsecured) {
            (Some(f), None, false) => Ok(TokenSource::File(PathBuf::from(f))),
            (None, Some(c), false) => Ok(TokenSource::Command(c.to_string())),
            (None, None, true) => {
                let cfg = s.get("sasl.oauthbearer.config").unwrap_or("");
                let mut principal = None;
                let mut life_seconds = 3600;
                for part in cfg.split_whitespace() {
                    match part.split_once('=') {
                        Some(("principal", p)) if !p.is_empty() => principal = Some(p.to_string()),
                        Some(("lifeSeconds", n)) => {
                            life_seconds = n.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                                UsageError(format!(
                                    "{}: lifeSeconds={n} is not a positive number",
                                    s.name("sasl.oauthbearer.config")
                                ))
                            })?
                        }
                        // scope=, extension_*: not needed by Kafka's unsecured validator
                        _ => {}
                    }
                }
                let Some(principal) = principal else {
                    return usage(
                        "enable.sasl.oauthbearer.unsecure.jwt=true needs sasl.oauthbearer.config=principal=NAME",
                    );
                };
                Ok(TokenSource::Unsecured {
                    principal,
                    life_seconds,
                })
            }
            (None, None, false) => usage(
                "SASL OAUTHBEARER needs a token: sasl.oauthbearer.token.file=PATH (re-read for every connection), \
                 sasl.oauthbearer.token.command=CMD (prints it), or, on a test cluster, \
                 enable.sasl.oauthbearer.unsecure.jwt=true with sasl.oauthbearer.config=principal=NAME",
            ),
            _ => usage(
                "OAUTHBEARER: give only one of sasl.oauthbearer.token.file, sasl.oauthbearer.token.command \
                 and enable.sasl.oauthbearer.unsecure.jwt",
            ),
        }
    }

    /// A one-line summary without secrets, for `plan` and the logs.
    pub fn describe(&self) -> String {
        let mut out = self.protocol.name().to_string();
        if let Some(s) = &self.sasl {
            out.push(' ');
            out.push_str(s.mechanism.name());
            if !s.username.is_empty() {
                out.push_str(&format!(" user {}", s.username));
            }
        }
        if let Some(t) = &self.tls {
            if let Some(ca) = &t.ca {
                out.push_str(&format!(" ca {}", ca.display()));
            }
            if t.cert.is_some() {
                out.push_str(" client-cert");
            }
            if !t.verify_hostname {
                out.push_str(" no-hostname-check");
            }
        }
        out
    }
}

/// An unsigned JWT (`alg: none`) for Kafka's unsecured OAUTHBEARER
/// validator, as librdkafka builds for `enable.sasl.oauthbearer.unsecure.jwt`.
pub fn unsecured_jwt(principal: &str, now_secs: u64, life_seconds: u64) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"none"}"#);
    let claims = serde_json::json!({
        "sub": principal,
        "iat": now_secs,
        "exp": now_secs + life_seconds,
    });
    let body = b64.encode(claims.to_string());
    format!("{header}.{body}.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sec(pairs: &[(&str, &str)]) -> Result<Security, UsageError> {
        Security::from_settings(&Settings::from_pairs(pairs))
    }

    #[test]
    fn plaintext_by_default() {
        assert_eq!(sec(&[]).unwrap(), Security::default());
    }

    #[test]
    fn scram_over_tls() {
        let s = sec(&[
            ("security.protocol", "sasl_ssl"),
            ("sasl.mechanisms", "SCRAM-SHA-512"),
            ("sasl.username", "alice"),
            ("sasl.password", "hunter2"),
            ("ssl.ca.location", "/etc/ca.pem"),
        ])
        .unwrap();
        assert_eq!(s.protocol, Protocol::SaslSsl);
        let sasl = s.sasl.as_ref().unwrap();
        assert_eq!(sasl.mechanism, Mechanism::ScramSha512);
        assert_eq!(sasl.password.expose(), "hunter2");
        let tls = s.tls.as_ref().unwrap();
        assert!(tls.verify_hostname);
        assert_eq!(tls.ca.as_deref(), Some(std::path::Path::new("/etc/ca.pem")));
        // no secret in Debug or the summary
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(
            s.describe(),
            "SASL_SSL SCRAM-SHA-512 user alice ca /etc/ca.pem"
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = sec(&[("security.protocol", "TLS")]).unwrap_err();
        assert!(
            e.0.contains("-X security.protocol") && e.0.contains("SASL_SSL"),
            "{e}"
        );
        let e = sec(&[("security.protocol", "SASL_SSL")]).unwrap_err();
        assert!(e.0.contains("GSSAPI"), "{e}");
        let e = sec(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "PLAIN"),
        ])
        .unwrap_err();
        assert!(e.0.contains("sasl.username"), "{e}");
        let e = sec(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", "u"),
        ])
        .unwrap_err();
        assert!(e.0.contains("sasl.password"), "{e}");
        let e = sec(&[("ssl.ca.location", "/ca.pem")]).unwrap_err();
        assert!(e.0.contains("security.protocol=SSL"), "{e}");
        let e = sec(&[("sasl.mechanism", "PLAIN")]).unwrap_err();
        assert!(e.0.contains("SASL_SSL"), "{e}");
        let e = sec(&[
            ("security.protocol", "SSL"),
            ("ssl.endpoint.identification.algorithm", "maybe"),
        ])
        .unwrap_err();
        assert!(e.0.contains("https or none"), "{e}");
        let e = sec(&[
            ("security.protocol", "SSL"),
            ("ssl.certificate.location", "/c"),
        ])
        .unwrap_err();
        assert!(e.0.contains("ssl.key.location"), "{e}");
    }

    #[test]
    fn hostname_check_can_be_turned_off() {
        let s = sec(&[
            ("security.protocol", "SSL"),
            ("ssl.endpoint.identification.algorithm", "none"),
        ])
        .unwrap();
        assert!(!s.tls.unwrap().verify_hostname);
    }

    #[test]
    fn oauthbearer_token_sources() {
        let base = [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "OAUTHBEARER"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            sec(&v)
        };
        assert!(with(&[]).unwrap_err().0.contains("token.file"));
        let s = with(&[("sasl.oauthbearer.token.file", "/run/token")]).unwrap();
        assert_eq!(
            s.sasl.unwrap().token,
            Some(TokenSource::File("/run/token".into()))
        );
        let s = with(&[
            ("enable.sasl.oauthbearer.unsecure.jwt", "true"),
            ("sasl.oauthbearer.config", "principal=admin lifeSeconds=60"),
        ])
        .unwrap();
        assert_eq!(
            s.sasl.unwrap().token,
            Some(TokenSource::Unsecured {
                principal: "admin".into(),
                life_seconds: 60
            })
        );
        assert!(with(&[("enable.sasl.oauthbearer.unsecure.jwt", "true")]).is_err());
        assert!(with(&[
            ("sasl.oauthbearer.token.file", "/a"),
            ("sasl.oauthbearer.token.command", "cat /a"),
        ])
        .is_err());
    }

    #[test]
    fn unsecured_jwts_carry_sub_and_exp() {
        use base64::Engine as _;
        let jwt = unsecured_jwt("admin", 1000, 60);
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[2], "");
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(parts[1])
                .unwrap(),
        )
        .unwrap();
        assert_eq!(claims["sub"], "admin");
        assert_eq!(claims["exp"], 1060);
    }
}
