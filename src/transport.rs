//! The process's way to the brokers, set once at start from the checked
//! [`Security`] settings: plain TCP or TLS (rustls), and the SASL
//! credentials each new connection authenticates with. Both kswarm's own
//! kafka-protocol connections (`wire::BrokerConn`) and rskafka's client
//! (`crate::connect`) take it from here, so the two never differ.
//!
//! It is process-wide on purpose: one kswarm process talks to one cluster
//! with one identity, and every connection is opened deep inside group or
//! admin code that should not have to carry certificates around.

use std::io;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::error::UsageError;
use crate::security::{Sasl, Security, Tls, TokenSource};

/// A byte stream to a broker: TCP, or TLS over TCP.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// How this process reaches its brokers.
#[derive(Debug, Default)]
pub struct Transport {
    pub security: Security,
    /// Built from `security.tls` (files read once, at start).
    pub tls: Option<Arc<ClientConfig>>,
}

static TRANSPORT: OnceLock<Arc<Transport>> = OnceLock::new();

/// Read the certificate files and set this process's transport. An
/// unreadable or malformed file is a usage error naming the file and its
/// setting. Calling it again with the same settings is harmless; the first
/// call wins.
pub fn install(security: &Security) -> Result<Arc<Transport>, UsageError> {
    if let Some(t) = TRANSPORT.get() {
        return Ok(t.clone());
    }
    let tls = match &security.tls {
        Some(t) => Some(client_config(t)?),
        None => None,
    };
    if security.tls.as_ref().is_some_and(|t| !t.verify_hostname) {
        tracing::warn!(
            "ssl.endpoint.identification.algorithm=none: broker certificates are checked against the CA \
             but not against the broker's name; anyone with a certificate from that CA can pose as a broker"
        );
    }
    let t = Arc::new(Transport {
        security: security.clone(),
        tls,
    });
    Ok(TRANSPORT.get_or_init(|| t).clone())
}

/// The installed transport (plain TCP if none was installed).
pub fn current() -> Arc<Transport> {
    TRANSPORT
        .get()
        .cloned()
        .unwrap_or_else(|| Arc::new(Transport::default()))
}

impl Transport {
    pub fn sasl(&self) -> Option<&Sasl> {
        self.security.sasl.as_ref()
    }

    /// TCP to `addr`, then the TLS handshake if the protocol wants one.
    pub async fn open(&self, addr: &str) -> Result<Box<dyn Stream>, OpenError> {
        let tcp = TcpStream::connect(addr).await.map_err(OpenError::Io)?;
        let _ = tcp.set_nodelay(true);
        let Some(config) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        let name = server_name(addr).map_err(|e| OpenError::Tls(e.to_string()))?;
        let tls = tokio_rustls::TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await
            .map_err(
                |e| match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                    // the broker's certificate or its TLS: trying again cannot help
                    Some(_) => OpenError::Tls(explain_tls(addr, &e)),
                    None => OpenError::Io(io::Error::new(e.kind(), explain_tls(addr, &e))),
                },
            )?;
        // The suite sets the client's and the broker's crypto cost per byte
        // (docs/security.md, "TLS cost").
        tracing::debug!(addr, suite = ?tls.get_ref().1.negotiated_cipher_suite(), "TLS up");
        Ok(Box::new(tls))
    }
}

/// Why a connection could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// TCP (or the TLS handshake broke off): may pass.
    Io(io::Error),
    /// The TLS handshake failed on its merits (certificate, protocol): will not pass.
    Tls(String),
}

/// The host part of HOST:PORT (IPv6 in brackets), as TLS names it.
fn server_name(addr: &str) -> io::Result<ServerName<'static>> {
    let host = addr
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(addr)
        .trim_start_matches('[')
        .trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("'{host}' is not a host name TLS can check a certificate against"),
        )
    })
}

/// A TLS handshake failure in words that name the setting to change.
pub fn explain_tls(addr: &str, e: &io::Error) -> String {
    let inner = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<rustls::Error>())
        .cloned();
    use rustls::CertificateError as C;
    match inner {
        Some(rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature)) => format!(
            "broker {addr}: its TLS certificate is not signed by a CA we trust; \
             set ssl.ca.location to the CA file that signed the brokers' certificates"
        ),
        Some(rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. })) => {
            format!(
                "broker {addr}: its TLS certificate does not name this host; reach the broker by a name \
                 its certificate has (-b, advertised.listeners), or set \
                 ssl.endpoint.identification.algorithm=none to skip the name check (unsafe)"
            )
        }
        Some(rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. })) => {
            format!("broker {addr}: its TLS certificate has expired")
        }
        Some(rustls::Error::InvalidMessage(_)) => format!(
            "broker {addr} does not speak TLS (it answered the handshake with something else); \
             it may be a PLAINTEXT or SASL_PLAINTEXT listener: check security.protocol"
        ),
        Some(rustls::Error::AlertReceived(alert)) => format!(
            "broker {addr} refused the TLS handshake ({alert:?}); if it wants a client certificate, \
             set ssl.certificate.location and ssl.key.location"
        ),
        Some(other) => format!("broker {addr}: TLS handshake failed: {other}"),
        None if e.kind() == io::ErrorKind::UnexpectedEof
            || e.kind() == io::ErrorKind::ConnectionReset =>
        {
            format!(
                "broker {addr} hung up during the TLS handshake; it may be a PLAINTEXT or SASL_PLAINTEXT \
                 listener: check security.protocol"
            )
        }
        None => format!("broker {addr}: TLS handshake failed: {e}"),
    }
}

fn read_pem_certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, UsageError> {
    let bad = |why: String| {
        UsageError(format!(
            "{key}: cannot use {}: {why}; give a readable PEM file of certificates",
            path.display()
        ))
    };
    std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("it holds no CERTIFICATE block".into()));
    }
    Ok(certs)
}

/// The client key: plain PEM (PKCS#8, PKCS#1 or SEC1), or encrypted PKCS#8
/// opened with `ssl.key.password`.
fn read_key(
    path: &Path,
    password: Option<&crate::security::Secret>,
) -> Result<PrivateKeyDer<'static>, UsageError> {
    let bad = |why: String| {
        UsageError(format!(
            "ssl.key.location: cannot use {}: {why}",
            path.display()
        ))
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        let Some(password) = password else {
            return Err(bad(
                "the key is encrypted; set ssl.key.password (in the -F/--config file)".into(),
            ));
        };
        let start = text
            .find("-----BEGIN ENCRYPTED PRIVATE KEY-----")
            .unwrap_or(0);
        let (_, doc) = pkcs8::Document::from_pem(&text[start..])
            .map_err(|e| bad(format!("not a PEM encrypted private key ({e})")))?;
        let info = pkcs8::EncryptedPrivateKeyInfo::try_from(doc.as_bytes())
            .map_err(|e| bad(format!("not a PKCS#8 encrypted private key ({e})")))?;
        let plain = info.decrypt(password.expose()).map_err(|_| {
            bad(
                "cannot decrypt it: ssl.key.password is wrong (or the cipher is unsupported)"
                    .into(),
            )
        })?;
        return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            plain.as_bytes().to_vec(),
        )));
    }
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(bad(
            "it is an old-style encrypted OpenSSL key; convert it with \
             `openssl pkcs8 -topk8 -v2 aes-256-cbc -in KEY -out KEY.p8`"
                .into(),
        ));
    }
    PrivateKeyDer::from_pem_slice(text.as_bytes())
        .map_err(|e| bad(format!("no PEM private key in it ({e})")))
}

/// rustls's client settings from the checked TLS settings.
pub fn client_config(t: &Tls) -> Result<Arc<ClientConfig>, UsageError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    match &t.ca {
        Some(ca) => {
            for cert in read_pem_certs(ca, "ssl.ca.location")? {
                roots.add(cert).map_err(|e| {
                    UsageError(format!(
                        "ssl.ca.location: {} holds a certificate rustls cannot use: {e}",
                        ca.display()
                    ))
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(UsageError(
                    "security.protocol wants TLS but the system has no trusted CA certificates \
                     (install ca-certificates); or set ssl.ca.location to the CA file"
                        .into(),
                ));
            }
        }
    }
    let roots = Arc::new(roots);
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| UsageError(format!("TLS: {e}")))?;
    let builder = if t.verify_hostname {
        builder.with_root_certificates(roots)
    } else {
        let inner = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| UsageError(format!("ssl.ca.location: {e}")))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoHostnameCheck(inner)))
    };
    let config = match (&t.cert, &t.key) {
        (Some(cert), Some(key)) => {
            let chain = read_pem_certs(cert, "ssl.certificate.location")?;
            let key = read_key(key, t.key_password.as_ref())?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                UsageError(format!(
                    "ssl.certificate.location and ssl.key.location do not go together: {e}"
                ))
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// `ssl.endpoint.identification.algorithm=none`: the whole WebPKI check
/// (chain to a trusted CA, validity, signatures) except the host name.
#[derive(Debug)]
struct NoHostnameCheck(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for NoHostnameCheck {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::CertificateError as C;
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                C::NotValidForName | C::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The OAUTHBEARER token for a new connection, fetched now.
pub async fn oauth_token(source: &TokenSource, timeout: Duration) -> anyhow::Result<String> {
    let token = match source {
        TokenSource::File(path) => std::fs::read_to_string(path)
            .map_err(|e| {
                anyhow::anyhow!(
                    "sasl.oauthbearer.token.file: cannot read {}: {e}",
                    path.display()
                )
            })?
            .trim()
            .to_string(),
        TokenSource::Command(cmd) => {
            let out = tokio::time::timeout(
                timeout,
                tokio::process::Command::new("sh")
                    .args(["-c", cmd])
                    .stdin(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .output(),
            )
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "sasl.oauthbearer.token.command printed no token within {timeout:?}"
                )
            })?
            .map_err(|e| anyhow::anyhow!("sasl.oauthbearer.token.command: cannot run sh: {e}"))?;
            if !out.status.success() {
                anyhow::bail!(
                    "sasl.oauthbearer.token.command failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        }
        TokenSource::Unsecured {
            principal,
            life_seconds,
        } => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            crate::security::unsecured_jwt(principal, now, *life_seconds)
        }
    };
    if token.is_empty() {
        anyhow::bail!("the OAUTHBEARER token source gave an empty token");
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_from_addresses() {
        assert!(matches!(
            server_name("127.0.0.1:9093").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("broker-1.example.com:9093").unwrap(),
            ServerName::DnsName(_)
        ));
        assert!(matches!(
            server_name("[::1]:9093").unwrap(),
            ServerName::IpAddress(_)
        ));
    }

    #[test]
    fn missing_files_name_the_setting_and_the_path() {
        let t = Tls {
            ca: Some("/nonexistent/ca.pem".into()),
            cert: None,
            key: None,
            key_password: None,
            verify_hostname: true,
        };
        let e = client_config(&t).unwrap_err();
        assert!(
            e.0.contains("ssl.ca.location") && e.0.contains("/nonexistent/ca.pem"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = client_config(&Tls {
            ca: Some(empty),
            ..t.clone()
        })
        .unwrap_err();
        assert!(e.0.contains("no CERTIFICATE"), "{e}");
    }

    #[test]
    fn encrypted_keys_want_their_password() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.pem");
        std::fs::write(
            &key,
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .unwrap();
        let e = read_key(&key, None).unwrap_err();
        assert!(e.0.contains("ssl.key.password"), "{e}");
    }

    #[tokio::test]
    async fn tokens_from_a_file_and_a_command() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("token");
        std::fs::write(&f, "abc.def.ghi\n").unwrap();
        let t = oauth_token(&TokenSource::File(f.clone()), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(t, "abc.def.ghi");
        // re-read each time: a rewritten file gives the new token
        std::fs::write(&f, "new.token.x\n").unwrap();
        let t = oauth_token(&TokenSource::File(f), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(t, "new.token.x");
        let t = oauth_token(
            &TokenSource::Command("echo tok".into()),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(t, "tok");
        assert!(oauth_token(
            &TokenSource::Command("exit 3".into()),
            Duration::from_secs(5)
        )
        .await
        .is_err());
    }
}
