//! SASL authentication of a fresh [`BrokerConn`] (KIP-43, KIP-152):
//! SaslHandshake v1 names the mechanism, then SaslAuthenticate carries the
//! mechanism's messages, which rsasl (the crate rskafka uses too) computes:
//! PLAIN, SCRAM-SHA-256/512 (salted proofs and the server's signature
//! checked), OAUTHBEARER (the token fetched just before).

use bytes::Bytes;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use rsasl::callback::{Context, Request, SessionCallback, SessionData};
use rsasl::config::SASLConfig;
use rsasl::prelude::{Mechname, SASLClient, SessionError};
use rsasl::property::{OAuthBearerKV, OAuthBearerToken};

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

/// Who we are, for messages: "user alice (SCRAM-SHA-512)" or "OAUTHBEARER".
pub fn identity(sasl: &Sasl) -> String {
    if sasl.mechanism == Mechanism::OauthBearer {
        "the OAUTHBEARER token".to_string()
    } else {
        format!("user {} ({})", sasl.username, sasl.mechanism.name())
    }
}

fn config(sasl: &Sasl, token: Option<String>) -> Result<std::sync::Arc<SASLConfig>, String> {
    match sasl.mechanism {
        Mechanism::OauthBearer => SASLConfig::builder()
            .with_default_mechanisms()
            .with_callback(Bearer(token.unwrap_or_default()))
            .map_err(|e| e.to_string()),
        _ => SASLConfig::with_credentials(
            None,
            sasl.username.clone(),
            sasl.password.expose().to_string(),
        )
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
