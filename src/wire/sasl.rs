//! SASL authentication of a fresh [`BrokerConn`] (KIP-43, KIP-152):
//! SaslHandshake v1 names the mechanism, then SaslAuthenticate carries the
//! mechanism's messages, which rsasl (the crate rskafka uses too) computes:
//! PLAIN, SCRAM-SHA-256/512 (salted proofs and the server's signature
//! checked), OAUTHBEARER (the token fetched just before).
//!
//! SCRAM's costly step, the salted password (PBKDF2 over Kafka's default
//! 4,096 rounds), is computed once per process and salt: RFC 5802 (section
//! 5.1) lets a client reuse it while the broker sends the same salt and
//! iteration count, so a worker's later connections (coordinator, leaders,
//! reconnects) skip it.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use rsasl::callback::{Context, Request, SessionCallback, SessionData};
use rsasl::config::SASLConfig;
use rsasl::mechanisms::scram::properties::{Iterations, Salt, SaltedPassword};
use rsasl::prelude::{Mechname, SASLClient, SessionError};
use rsasl::property::{AuthId, OAuthBearerKV, OAuthBearerToken, Password};

use super::{BrokerConn, WireError, WireResult};
use crate::security::{Mechanism, Sasl};

/// Gives rsasl the OAUTHBEARER token (and no extensions).
struct Bearer(String);

impl SessionCallback for Bearer {
    fn callback(
        &self,
        _session: &SessionData,
        _context: &Context<'_>,
        request: &mut Request<'_>,
    ) -> Result<(), SessionError> {
        request
            .satisfy::<OAuthBearerKV>(&[])?
            .satisfy::<OAuthBearerToken>(&self.0)?;
        Ok(())
    }
}

/// Gives rsasl the username and password, and for SCRAM the salted
/// password from [`SALTED`] (computed there on first use), so rsasl skips
/// its own PBKDF2.
struct Credentials {
    mechanism: Mechanism,
    username: String,
    password: String,
}

impl SessionCallback for Credentials {
    fn callback(
        &self,
        _session: &SessionData,
        context: &Context<'_>,
        request: &mut Request<'_>,
    ) -> Result<(), SessionError> {
        if request.is::<SaltedPassword>() {
            if let (Some(salt), Some(&iterations)) =
                (context.get_ref::<Salt>(), context.get_ref::<Iterations>())
            {
                let key = SaltKey {
                    mechanism: self.mechanism,
                    username: self.username.clone(),
                    password: self.password.clone(),
                    salt: salt.to_vec(),
                    iterations,
                };
                if let Some(salted) = salted_password(&key) {
                    request.satisfy::<SaltedPassword>(&salted)?;
                }
            }
        }
        request
            .satisfy::<AuthId>(&self.username)?
            .satisfy::<Password>(self.password.as_bytes())?;
        Ok(())
    }
}

/// What a salted password depends on: the same key gives the same bytes.
#[derive(Clone, PartialEq, Eq)]
struct SaltKey {
    mechanism: Mechanism,
    username: String,
    password: String,
    salt: Vec<u8>,
    iterations: u32,
}

/// Salted passwords this process computed, newest last; a handful at most
/// (one credential per process, a new salt only when the broker's
/// credential is changed).
static SALTED: Mutex<Vec<(SaltKey, Arc<[u8]>)>> = Mutex::new(Vec::new());
const SALTED_KEPT: usize = 4;

/// The salted password for `key` (SCRAM's Hi(): PBKDF2-HMAC of the
/// password, as rsasl computes it), from the cache or computed and kept.
/// None for a mechanism without one.
fn salted_password(key: &SaltKey) -> Option<Arc<[u8]>> {
    let mut cache = SALTED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, salted)) = cache.iter().find(|(k, _)| k == key) {
        return Some(salted.clone());
    }
    let salted: Arc<[u8]> = pbkdf2(key)?.into();
    if cache.len() >= SALTED_KEPT {
        cache.remove(0);
    }
    cache.push((key.clone(), salted.clone()));
    Some(salted)
}

fn pbkdf2(key: &SaltKey) -> Option<Vec<u8>> {
    let (password, salt, rounds) = (key.password.as_bytes(), &key.salt[..], key.iterations);
    Some(match key.mechanism {
        Mechanism::ScramSha256 => {
            pbkdf2::pbkdf2_hmac_array::<sha2::Sha256, 32>(password, salt, rounds).to_vec()
        }
        Mechanism::ScramSha512 => {
            pbkdf2::pbkdf2_hmac_array::<sha2::Sha512, 64>(password, salt, rounds).to_vec()
        }
        Mechanism::Plain | Mechanism::OauthBearer => return None,
    })
}

/// Who we are, for messages: "user alice (SCRAM-SHA-512)" or "OAUTHBEARER".
pub fn identity(sasl: &Sasl) -> String {
    if sasl.mechanism == Mechanism::OauthBearer {
        "the OAUTHBEARER token".to_string()
    } else {
        format!("user {} ({})", sasl.username, sasl.mechanism.name())
    }
}

fn config(sasl: &Sasl, token: Option<String>) -> Result<Arc<SASLConfig>, String> {
    match sasl.mechanism {
        Mechanism::OauthBearer => SASLConfig::builder()
            .with_default_mechanisms()
            .with_callback(Bearer(token.unwrap_or_default()))
            .map_err(|e| e.to_string()),
        _ => SASLConfig::builder()
            .with_default_mechanisms()
            .with_callback(Credentials {
                mechanism: sasl.mechanism,
                username: sasl.username.clone(),
                password: sasl.password.expose().to_string(),
            })
            .map_err(|e| e.to_string()),
    }
}

/// Authenticate `conn` (right after ApiVersions). A refusal is
/// [`WireError::Auth`], which no caller retries.
pub async fn authenticate(
    conn: &mut BrokerConn,
    sasl: &Sasl,
    token: Option<String>,
) -> WireResult<()> {
    let mechanism = sasl.mechanism.name();
    let auth_failed = |conn: &BrokerConn, why: String| WireError::Auth {
        addr: conn.addr().to_string(),
        msg: format!("authentication failed for {}{why}", identity(sasl)),
    };
    let hv = conn.negotiate::<SaslHandshakeRequest>(1, 1)?;
    let hs = conn
        .send(
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism)),
            hv,
        )
        .await?;
    if hs.error_code != 0 {
        let offered: Vec<&str> = hs.mechanisms.iter().map(|m| m.as_str()).collect();
        return Err(WireError::Auth {
            addr: conn.addr().to_string(),
            msg: format!(
                "the listener does not enable SASL {mechanism} (it offers {}); set sasl.mechanism to one of them, \
                 or check that -b names the SASL listener",
                if offered.is_empty() { "none".to_string() } else { offered.join(", ") }
            ),
        });
    }
    let cfg = config(sasl, token).map_err(|e| auth_failed(conn, format!(": {e}")))?;
    let name =
        Mechname::parse(mechanism.as_bytes()).map_err(|e| auth_failed(conn, format!(": {e}")))?;
    let mut session = SASLClient::new(cfg)
        .start_suggested(&[name])
        .map_err(|e| auth_failed(conn, format!(": {e}")))?;
    let av = conn.negotiate::<SaslAuthenticateRequest>(0, 2)?;
    let mut received: Option<Bytes> = None;
    loop {
        let mut out = Vec::new();
        let state = session
            .step(received.as_deref(), &mut out)
            .map_err(|e| auth_failed(conn, format!(": {e}")))?;
        if state.has_sent_message() {
            let resp = conn
                .send(
                    SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(out)),
                    av,
                )
                .await?;
            if resp.error_code != 0 {
                let said = resp
                    .error_message
                    .as_ref()
                    .map(|m| format!(": the broker says \"{}\"", m.as_str()))
                    .unwrap_or_default();
                return Err(auth_failed(conn, said));
            }
            received = Some(resp.auth_bytes);
        }
        if state.is_finished() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(mechanism: Mechanism, password: &str, salt: &[u8]) -> SaltKey {
        SaltKey {
            mechanism,
            username: "alice".into(),
            password: password.into(),
            salt: salt.to_vec(),
            iterations: 4096,
        }
    }

    /// The salted password is what rsasl would compute from the password itself.
    #[test]
    fn salted_password_matches_rsasl() {
        use rsasl::mechanisms::scram::tools::hash_password;
        let k = key(Mechanism::ScramSha512, "alice-secret", b"salt-one");
        let mut theirs = Default::default();
        hash_password::<sha2::Sha512>(b"alice-secret", 4096, b"salt-one", &mut theirs);
        assert_eq!(&pbkdf2(&k).unwrap()[..], theirs.as_slice());
        let k = key(Mechanism::ScramSha256, "alice-secret", b"salt-one");
        let mut theirs = Default::default();
        hash_password::<sha2::Sha256>(b"alice-secret", 4096, b"salt-one", &mut theirs);
        assert_eq!(&pbkdf2(&k).unwrap()[..], theirs.as_slice());
        assert!(pbkdf2(&key(Mechanism::Plain, "x", b"s")).is_none());
    }

    /// The same key is served from the cache; another password or salt is not.
    #[test]
    fn salted_password_is_computed_once_per_key() {
        let a = key(Mechanism::ScramSha256, "cache-test", b"salt-cache");
        let first = salted_password(&a).unwrap();
        let again = salted_password(&a).unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "a second lookup computed it again"
        );
        let other_password =
            salted_password(&key(Mechanism::ScramSha256, "cache-test-2", b"salt-cache")).unwrap();
        assert_ne!(first, other_password);
        let other_salt =
            salted_password(&key(Mechanism::ScramSha256, "cache-test", b"salt-other")).unwrap();
        assert_ne!(first, other_salt);
    }
}
