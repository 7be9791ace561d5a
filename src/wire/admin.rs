//! Topic administration that rskafka does not offer: CreatePartitions (Kafka
//! API 37), after checking the broker's ApiVersions for it.

use std::time::Duration;

use kafka_protocol::messages::{self as m, ApiKey, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::group_msgs::code_name;
use super::{BrokerConn, WireError};

/// What a CreatePartitions attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrowOutcome {
    /// The broker accepted the new partition count.
    Done,
    /// The broker does not offer CreatePartitions at all (e.g. tansu).
    Unsupported { broker: String },
    /// INVALID_PARTITIONS: the count is not more than the topic has now
    /// (often a concurrent grow got there first); the broker's message.
    Invalid(String),
}

/// INVALID_PARTITIONS.
const INVALID_PARTITIONS: i16 = 37;

/// Connect to the first bootstrap broker that answers.
async fn bootstrap(brokers: &[String], timeout: Duration) -> anyhow::Result<BrokerConn> {
    let mut errors = Vec::new();
    for addr in brokers {
        match BrokerConn::connect(addr, "kswarm", timeout).await {
            Ok(c) => return Ok(c),
            Err(e) => errors.push(e.to_string()),
        }
    }
    anyhow::bail!(
        "cannot reach the brokers at {} within {timeout:?} (--connect-timeout): {}; check -b/--brokers and that the cluster is up",
        brokers.join(","),
        errors.join("; ")
    )
}

/// Whether the broker answering first among `brokers` offers CreatePartitions.
pub async fn supports_create_partitions(
    brokers: &[String],
    timeout: Duration,
) -> anyhow::Result<bool> {
    let conn = bootstrap(brokers, timeout).await?;
    Ok(conn.broker_versions(ApiKey::CreatePartitions).is_some())
}

/// The controller's address per Metadata, if it is another broker than `conn`'s.
async fn controller_addr(conn: &mut BrokerConn, timeout: Duration) -> Option<String> {
    let v = conn.negotiate::<m::MetadataRequest>(1, 12).ok()?;
    let req = m::MetadataRequest::default().with_topics(Some(vec![]));
    let r = conn.send_timeout(req, v, timeout).await.ok()?;
    let b = r.brokers.iter().find(|b| b.node_id == r.controller_id)?;
    let addr = if b.host.contains(':') {
        format!("[{}]:{}", b.host, b.port)
    } else {
        format!("{}:{}", b.host, b.port)
    };
    (addr != conn.addr()).then_some(addr)
}

/// Grow `topic` to `count` partitions. Checks ApiVersions first; sends the
/// request to the controller when Metadata names another broker.
pub async fn create_partitions(
    brokers: &[String],
    topic: &str,
    count: u32,
    timeout: Duration,
) -> anyhow::Result<GrowOutcome> {
    let mut conn = bootstrap(brokers, timeout).await?;
    if conn.broker_versions(ApiKey::CreatePartitions).is_none() {
        return Ok(GrowOutcome::Unsupported {
            broker: conn.addr().to_string(),
        });
    }
    if let Some(addr) = controller_addr(&mut conn, timeout).await {
        if let Ok(c) = BrokerConn::connect(&addr, "kswarm", timeout).await {
            if c.broker_versions(ApiKey::CreatePartitions).is_some() {
                conn = c;
            }
        }
    }
    let v = match conn.negotiate::<m::CreatePartitionsRequest>(0, 3) {
        Ok(v) => v,
        Err(WireError::Unsupported { addr, .. }) => {
            return Ok(GrowOutcome::Unsupported { broker: addr })
        }
        Err(e) => return Err(e.into()),
    };
    let timeout_ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    let req = m::CreatePartitionsRequest::default()
        .with_topics(vec![
            m::create_partitions_request::CreatePartitionsTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_count(count as i32)
                .with_assignments(None),
        ])
        .with_timeout_ms(timeout_ms)
        .with_validate_only(false);
    // The broker may wait up to timeout_ms itself before answering.
    let r = conn.send_timeout(req, v, timeout * 2).await?;
    let Some(res) = r.results.into_iter().next() else {
        anyhow::bail!(
            "CreatePartitions for '{topic}': broker {} answered with no result",
            conn.addr()
        );
    };
    let msg = res.error_message.map(|m| m.to_string()).unwrap_or_default();
    match res.error_code {
        0 => Ok(GrowOutcome::Done),
        INVALID_PARTITIONS => Ok(GrowOutcome::Invalid(format!(
            "{}{}",
            code_name(res.error_code),
            if msg.is_empty() {
                String::new()
            } else {
                format!(": {msg}")
            }
        ))),
        code => anyhow::bail!(
            "growing topic '{topic}' to {count} partitions failed on {}: {}{}",
            conn.addr(),
            code_name(code),
            if msg.is_empty() {
                String::new()
            } else {
                format!(": {msg}")
            }
        ),
    }
}

#[cfg(test)]
mod tests {
    //! A tiny fake broker that speaks just enough (ApiVersions v0, Metadata
    //! v1, CreatePartitions v0, encoded by hand) to drive `create_partitions`.
    use super::*;
    use bytes::{Buf, BufMut, BytesMut};
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    #[derive(Clone)]
    struct Fake {
        offers_create_partitions: bool,
        answer: i16,
        /// (topic, count) of every CreatePartitions received.
        seen: Arc<Mutex<Vec<(String, i32)>>>,
    }

    fn put_str(b: &mut BytesMut, s: &str) {
        b.put_i16(s.len() as i16);
        b.put_slice(s.as_bytes());
    }

    fn get_str(b: &mut &[u8]) -> String {
        let n = b.get_i16();
        if n < 0 {
            return String::new();
        }
        let s = String::from_utf8(b[..n as usize].to_vec()).unwrap();
        b.advance(n as usize);
        s
    }

    async fn serve(sock: TcpStream, fake: Fake, port: u16) {
        let mut sock = sock;
        loop {
            let Ok(len) = sock.read_i32().await else {
                return;
            };
            let mut frame = vec![0u8; len as usize];
            if sock.read_exact(&mut frame).await.is_err() {
                return;
            }
            let mut r: &[u8] = &frame;
            let (key, version, corr) = (r.get_i16(), r.get_i16(), r.get_i32());
            let _client = get_str(&mut r);
            let mut body = BytesMut::new();
            match (key, version) {
                // ApiVersions above v0: hang up, like an old broker; the client retries with v0.
                (18, v) if v > 0 => return,
                (18, _) => {
                    let mut keys = vec![(18i16, 0i16, 0i16), (3, 1, 1)];
                    if fake.offers_create_partitions {
                        keys.push((37, 0, 0));
                    }
                    body.put_i16(0);
                    body.put_i32(keys.len() as i32);
                    for (k, lo, hi) in keys {
                        body.put_i16(k);
                        body.put_i16(lo);
                        body.put_i16(hi);
                    }
                }
                (3, 1) => {
                    body.put_i32(1); // brokers
                    body.put_i32(1);
                    put_str(&mut body, "127.0.0.1");
                    body.put_i32(port as i32);
                    body.put_i16(-1); // rack
                    body.put_i32(1); // controller id
                    body.put_i32(0); // topics
                }
                (37, 0) => {
                    assert_eq!(r.get_i32(), 1, "one topic");
                    let name = get_str(&mut r);
                    let count = r.get_i32();
                    assert_eq!(r.get_i32(), -1, "no assignments");
                    let _timeout = r.get_i32();
                    assert_eq!(r.get_u8(), 0, "validate_only is false");
                    fake.seen.lock().unwrap().push((name.clone(), count));
                    body.put_i32(0); // throttle
                    body.put_i32(1);
                    put_str(&mut body, &name);
                    body.put_i16(fake.answer);
                    if fake.answer == 0 {
                        body.put_i16(-1);
                    } else {
                        put_str(&mut body, "as the fake broker says");
                    }
                }
                other => panic!("unexpected request {other:?}"),
            }
            let mut out = BytesMut::new();
            out.put_i32(4 + body.len() as i32);
            out.put_i32(corr);
            out.put_slice(&body);
            if sock.write_all(&out).await.is_err() {
                return;
            }
        }
    }

    async fn start(fake: Fake) -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((sock, _)) = l.accept().await {
                tokio::spawn(serve(sock, fake.clone(), port));
            }
        });
        format!("127.0.0.1:{port}")
    }

    fn fake(offers: bool, answer: i16) -> Fake {
        Fake {
            offers_create_partitions: offers,
            answer,
            seen: Arc::default(),
        }
    }

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn grows_when_the_broker_offers_create_partitions() {
        let f = fake(true, 0);
        let addr = start(f.clone()).await;
        assert!(supports_create_partitions(std::slice::from_ref(&addr), T)
            .await
            .unwrap());
        let out = create_partitions(&[addr], "logs", 6, T).await.unwrap();
        assert_eq!(out, GrowOutcome::Done);
        assert_eq!(*f.seen.lock().unwrap(), vec![("logs".to_string(), 6)]);
    }

    #[tokio::test]
    async fn a_broker_without_create_partitions_is_named() {
        let f = fake(false, 0);
        let addr = start(f.clone()).await;
        assert!(!supports_create_partitions(std::slice::from_ref(&addr), T)
            .await
            .unwrap());
        let out = create_partitions(std::slice::from_ref(&addr), "logs", 6, T)
            .await
            .unwrap();
        assert_eq!(out, GrowOutcome::Unsupported { broker: addr });
        assert!(f.seen.lock().unwrap().is_empty(), "nothing was sent");
    }

    #[tokio::test]
    async fn invalid_partitions_is_reported_for_a_re_read() {
        let addr = start(fake(true, INVALID_PARTITIONS)).await;
        match create_partitions(&[addr], "logs", 2, T).await.unwrap() {
            GrowOutcome::Invalid(msg) => {
                assert!(msg.contains("InvalidPartitions"), "{msg}");
                assert!(msg.contains("as the fake broker says"), "{msg}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn other_errors_fail_with_the_code_name() {
        let addr = start(fake(true, 29)).await;
        let e = create_partitions(&[addr], "logs", 2, T).await.unwrap_err();
        assert!(e.to_string().contains("TopicAuthorizationFailed"), "{e}");
    }

    #[tokio::test]
    async fn an_unreachable_broker_is_named() {
        let e = create_partitions(&["127.0.0.1:1".to_string()], "logs", 2, T)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
    }
}
