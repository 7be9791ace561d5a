//! Reaching the brokers: an rskafka client within --connect-timeout (the
//! whole of it), and, when no broker answers in time, a message that says
//! what each address did, in kswarm's words rather than rskafka's.

use std::time::Duration;

use anyhow::anyhow;
use rskafka::client::{Client, ClientBuilder, Credentials, OauthBearerCredentials, SaslConfig};
use rskafka::BackoffConfig;
use tokio::time::Instant;

use crate::config::ConnectConfig;

/// How long the look at each address waits for a TCP connection, once the
/// connect has failed (the addresses are looked at together).
const PROBE: Duration = Duration::from_millis(500);
/// How long an address that takes connections has to answer ApiVersions
/// then: a broker answers at once, an HTTP or TLS port never does.
const LOOK: Duration = Duration::from_secs(1);

/// Before a command's first connection: warn (once) about settings kswarm
/// does not use, and set the transport every connection of this process
/// uses (reading the certificate files: a bad one exits 2 naming it).
pub fn prepare(cfg: &ConnectConfig) -> anyhow::Result<()> {
    cfg.warn_about_settings();
    crate::transport::install(&cfg.security)?;
    Ok(())
}

/// rskafka's retry policy, bounded so that no call retries forever.
pub fn backoff(deadline: Duration) -> BackoffConfig {
    BackoffConfig {
        init_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_secs(1),
        base: 2.0,
        deadline: Some(deadline),
    }
}

/// Build an rskafka client, trying for the whole --connect-timeout, then
/// giving up with a message that names the brokers, the flag and the way out.
pub async fn connect(cfg: &ConnectConfig) -> anyhow::Result<Client> {
    connect_as(cfg, "kswarm").await
}

/// [`connect`] under another client id (quotas and broker logs tell it apart).
pub async fn connect_as(cfg: &ConnectConfig, client_id: &str) -> anyhow::Result<Client> {
    let deadline = Instant::now() + cfg.connect_timeout;
    let transport = crate::transport::current();
    if transport.security.protocol != crate::security::Protocol::Plaintext {
        preflight(cfg, deadline).await?;
    }
    let pause = crate::backoff::Doubling::new(Duration::from_millis(100), Duration::from_secs(1));
    let mut attempt = 0;
    // rskafka's own retries end early: its deadline adds up the pauses it
    // plans, not the time spent, and stops before the one that would cross
    // it (6.8 s of a 10 s --connect-timeout). So build again until ours.
    loop {
        let mut builder = ClientBuilder::new(cfg.brokers.clone())
            .client_id(client_id)
            .backoff_config(backoff(cfg.connect_timeout.mul_f64(0.8)));
        if let Some(tls) = &transport.tls {
            builder = builder.tls_config(tls.clone());
        }
        if let Some(sasl) = transport.sasl() {
            builder = builder.sasl_config(rskafka_sasl(sasl, cfg.connect_timeout));
        }
        match tokio::time::timeout_at(deadline, builder.build()).await {
            Ok(Ok(c)) => return Ok(c),
            Ok(Err(e)) => tracing::debug!(error = %e, "no broker answered yet; trying again"),
            Err(_) => break,
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        tokio::time::sleep(pause.delay(attempt).min(deadline - now)).await;
        attempt += 1;
    }
    Err(why_unreachable(cfg).await)
}

/// The SASL settings in rskafka's terms (its handshake uses rsasl, as ours does).
fn rskafka_sasl(sasl: &crate::security::Sasl, timeout: Duration) -> SaslConfig {
    use crate::security::Mechanism;
    let creds = || Credentials::new(sasl.username.clone(), sasl.password.expose().to_string());
    match sasl.mechanism {
        Mechanism::Plain => SaslConfig::Plain(creds()),
        Mechanism::ScramSha256 => SaslConfig::ScramSha256(creds()),
        Mechanism::ScramSha512 => SaslConfig::ScramSha512(creds()),
        Mechanism::OauthBearer => {
            let source = sasl.token.clone();
            SaslConfig::Oauthbearer(OauthBearerCredentials {
                // fetched again for each new connection (see TokenSource)
                callback: std::sync::Arc::new(move || {
                    let source = source.clone();
                    Box::pin(async move {
                        let source = source.ok_or("no OAUTHBEARER token source")?;
                        crate::transport::oauth_token(&source, timeout)
                            .await
                            .map_err(|e| e.to_string().into())
                    })
                }),
                authz_id: None,
                bearer_kvs: Vec::new(),
            })
        }
    }
}

/// On a secured cluster, open one connection of our own first: a refused
/// password or an untrusted certificate ends the command at once with its
/// reason (rskafka would retry it until --connect-timeout, and then say
/// less). Unreachable brokers are left to the connect loop.
async fn preflight(cfg: &ConnectConfig, deadline: Instant) -> anyhow::Result<()> {
    use crate::wire::WireError;
    for addr in &cfg.brokers {
        let left = deadline.saturating_duration_since(Instant::now());
        match crate::wire::BrokerConn::connect(addr, "kswarm", left.min(Duration::from_secs(5)))
            .await
        {
            Ok(_) => return Ok(()),
            Err(e @ (WireError::Auth { .. } | WireError::Tls { .. })) => {
                return Err(anyhow!("{e}"))
            }
            Err(e) => tracing::debug!(error = %e, "preflight: {addr} not usable yet"),
        }
    }
    Ok(())
}

/// What one address did when looked at after a failed connect.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Refused,
    Silent,
    Failed(String),
    /// It takes connections and answers as Kafka now: too late.
    AnswersNow,
}

/// Look at every address (together, so that silent ones cost [`PROBE`]
/// once). A port that answers but not as Kafka (HTTP, TLS) is named as such:
/// "no answer" from it would be a riddle.
async fn why_unreachable(cfg: &ConnectConfig) -> anyhow::Error {
    let mut probes = tokio::task::JoinSet::new();
    for (i, addr) in cfg.brokers.iter().cloned().enumerate() {
        probes.spawn(async move {
            let tcp = tokio::time::timeout(PROBE, tokio::net::TcpStream::connect(&addr)).await;
            let seen = match tcp {
                Err(_) => Ok(Seen::Silent),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    Ok(Seen::Refused)
                }
                Ok(Err(e)) => Ok(Seen::Failed(e.to_string())),
                Ok(Ok(_)) => match crate::wire::BrokerConn::explain_silence(&addr, LOOK).await {
                    Some(why) => Err(why),
                    None => Ok(Seen::AnswersNow),
                },
            };
            (i, addr, seen)
        });
    }
    let mut seen = Vec::new();
    while let Some(Ok((i, addr, s))) = probes.join_next().await {
        match s {
            Err(why) => return anyhow!("{why}"),
            Ok(s) => seen.push((i, addr, s)),
        }
    }
    seen.sort_by_key(|(i, ..)| *i);
    let seen: Vec<(String, Seen)> = seen.into_iter().map(|(_, a, s)| (a, s)).collect();
    anyhow!("{}", unreachable_message(&seen, cfg.connect_timeout))
}

fn unreachable_message(seen: &[(String, Seen)], timeout: Duration) -> String {
    let what: Vec<String> = seen
        .iter()
        .map(|(addr, s)| match s {
            Seen::Refused => format!("{addr} refused the connection (nothing listens there)"),
            Seen::Silent => format!("{addr} did not answer"),
            Seen::Failed(e) => format!("{addr}: {e}"),
            Seen::AnswersNow => format!("{addr} answers now, but did not in time"),
        })
        .collect();
    format!(
        "cannot reach the brokers within {timeout:?} (--connect-timeout): {}; \
         check -b/--brokers and that the cluster is up, or give it longer with --connect-timeout",
        what.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_each_broker_the_flag_and_the_way_out() {
        let m = unreachable_message(
            &[
                ("127.0.0.1:1".into(), Seen::Refused),
                ("10.9.9.9:9092".into(), Seen::Silent),
                (
                    "nosuch:9092".into(),
                    Seen::Failed("failed to lookup address information".into()),
                ),
            ],
            Duration::from_secs(10),
        );
        assert_eq!(
            m,
            "cannot reach the brokers within 10s (--connect-timeout): \
             127.0.0.1:1 refused the connection (nothing listens there), \
             10.9.9.9:9092 did not answer, nosuch:9092: failed to lookup address information; \
             check -b/--brokers and that the cluster is up, or give it longer with --connect-timeout"
        );
    }
}
