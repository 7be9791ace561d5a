//! One framed TCP connection to one broker: size-prefixed frames, correlation
//! ids, request/response headers by version, and the broker's ApiVersions
//! (asked once on connect) to choose the version of every later request.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages as m;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::transport::Stream;

use super::{WireError, WireResult};

/// Frames larger than this are a protocol error, not an allocation.
const MAX_FRAME: usize = 256 * 1024 * 1024;
/// The ApiVersions version we try first; v0 is the fallback.
const API_VERSIONS_FIRST: i16 = 3;

/// A request we can send. kafka-protocol's own `Request` trait needs its
/// "broker" feature (it also wants request decoding); we only build with
/// "client", so this is the client-side half: encode the request, decode the answer.
pub trait WireRequest: Encodable + Message {
    const KEY: ApiKey;
    type Response: Decodable;
}

macro_rules! wire_requests {
    ($($req:ident => $resp:ident: $key:ident),* $(,)?) => {
        $(impl WireRequest for m::$req {
            const KEY: ApiKey = ApiKey::$key;
            type Response = m::$resp;
        })*
    };
}

wire_requests! {
    ApiVersionsRequest => ApiVersionsResponse: ApiVersions,
    MetadataRequest => MetadataResponse: Metadata,
    FindCoordinatorRequest => FindCoordinatorResponse: FindCoordinator,
    JoinGroupRequest => JoinGroupResponse: JoinGroup,
    SyncGroupRequest => SyncGroupResponse: SyncGroup,
    HeartbeatRequest => HeartbeatResponse: Heartbeat,
    LeaveGroupRequest => LeaveGroupResponse: LeaveGroup,
    OffsetCommitRequest => OffsetCommitResponse: OffsetCommit,
    OffsetFetchRequest => OffsetFetchResponse: OffsetFetch,
    ListOffsetsRequest => ListOffsetsResponse: ListOffsets,
    FetchRequest => FetchResponse: Fetch,
    DescribeGroupsRequest => DescribeGroupsResponse: DescribeGroups,
    ListGroupsRequest => ListGroupsResponse: ListGroups,
    CreateTopicsRequest => CreateTopicsResponse: CreateTopics,
    CreatePartitionsRequest => CreatePartitionsResponse: CreatePartitions,
    ConsumerGroupHeartbeatRequest => ConsumerGroupHeartbeatResponse: ConsumerGroupHeartbeat,
    ConsumerGroupDescribeRequest => ConsumerGroupDescribeResponse: ConsumerGroupDescribe,
    ShareGroupHeartbeatRequest => ShareGroupHeartbeatResponse: ShareGroupHeartbeat,
    ShareFetchRequest => ShareFetchResponse: ShareFetch,
    ShareAcknowledgeRequest => ShareAcknowledgeResponse: ShareAcknowledge,
    ShareGroupDescribeRequest => ShareGroupDescribeResponse: ShareGroupDescribe,
    DescribeShareGroupOffsetsRequest => DescribeShareGroupOffsetsResponse: DescribeShareGroupOffsets,
    IncrementalAlterConfigsRequest => IncrementalAlterConfigsResponse: IncrementalAlterConfigs,
    DescribeConfigsRequest => DescribeConfigsResponse: DescribeConfigs,
    SaslHandshakeRequest => SaslHandshakeResponse: SaslHandshake,
    SaslAuthenticateRequest => SaslAuthenticateResponse: SaslAuthenticate,
    InitProducerIdRequest => InitProducerIdResponse: InitProducerId,
    AddPartitionsToTxnRequest => AddPartitionsToTxnResponse: AddPartitionsToTxn,
    AddOffsetsToTxnRequest => AddOffsetsToTxnResponse: AddOffsetsToTxn,
    TxnOffsetCommitRequest => TxnOffsetCommitResponse: TxnOffsetCommit,
    EndTxnRequest => EndTxnResponse: EndTxn,
    ProduceRequest => ProduceResponse: Produce,
}

pub struct BrokerConn {
    addr: String,
    client_id: String,
    stream: BufReader<Box<dyn Stream>>,
    next_correlation: i32,
    /// api key -> (min, max) the broker supports.
    versions: HashMap<i16, (i16, i16)>,
    /// Finalized cluster features (ApiVersions v3+): name -> level.
    features: HashMap<String, i16>,
    /// A request was cancelled mid-flight: the stream is out of step.
    broken: bool,
}

impl std::fmt::Debug for BrokerConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerConn")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl BrokerConn {
    /// Connect (TCP, TLS if the transport wants it, ApiVersions, SASL if it
    /// wants it) within `timeout`.
    pub async fn connect(addr: &str, client_id: &str, timeout: Duration) -> WireResult<Self> {
        match tokio::time::timeout(timeout, Self::connect_inner(addr, client_id)).await {
            Ok(r) => r,
            Err(_) => Err(WireError::Timeout {
                addr: addr.to_string(),
                after: timeout,
            }),
        }
    }

    async fn connect_inner(addr: &str, client_id: &str) -> WireResult<Self> {
        let mut conn = Self::open(addr, client_id).await?;
        let first = conn.api_versions(API_VERSIONS_FIRST).await;
        let resp = match first {
            Ok(r) if r.error_code == 0 => r,
            Err(e @ WireError::NotKafka { .. }) => return Err(e),
            // Too new for this broker (it answers in v0 or hangs up): start over with v0.
            Ok(_) | Err(WireError::Io { .. }) | Err(WireError::Protocol { .. }) => {
                conn = Self::open(addr, client_id).await?;
                let r = conn.api_versions(0).await?;
                if r.error_code != 0 {
                    return Err(conn.protocol(format!(
                        "ApiVersions v0 failed with error code {}",
                        r.error_code
                    )));
                }
                r
            }
            Err(e) => return Err(e),
        };
        conn.versions = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        conn.features = resp
            .finalized_features
            .iter()
            .map(|f| (f.name.to_string(), f.max_version_level))
            .collect();
        let transport = crate::transport::current();
        if let Some(sasl) = transport.sasl() {
            let token = match &sasl.token {
                Some(source) => Some(
                    crate::transport::oauth_token(source, std::time::Duration::from_secs(30))
                        .await
                        .map_err(|e| WireError::Auth {
                            addr: addr.to_string(),
                            msg: format!("{e:#}"),
                        })?,
                ),
                None => None,
            };
            super::sasl::authenticate(&mut conn, sasl, token).await?;
        }
        Ok(conn)
    }

    /// What listens at `addr`, for an error message when a broker cannot be
    /// used: None if it answers like a Kafka broker (or nothing listens:
    /// the usual "cannot reach" says enough); otherwise why not.
    pub async fn explain_silence(addr: &str, timeout: Duration) -> Option<String> {
        let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr)).await;
        if !matches!(tcp, Ok(Ok(_))) {
            return None;
        }
        match Self::connect(addr, "kswarm", timeout).await {
            // It answers ApiVersions (allowed before authentication); a SASL
            // listener then hangs up on the first other request.
            Ok(mut conn) => {
                let v = conn.negotiate::<m::MetadataRequest>(1, 12).ok()?;
                let req = m::MetadataRequest::default().with_topics(Some(vec![]));
                match conn.send_timeout(req, v, timeout).await {
                    Err(WireError::Io { .. }) if crate::transport::current().sasl().is_none() => Some(format!(
                        "{addr} answers ApiVersions but hangs up on the next request: it is probably a SASL \
                         listener; set security.protocol=SASL_SSL (or SASL_PLAINTEXT) and sasl.mechanism, \
                         sasl.username, sasl.password (in the -F/--config file)"
                    )),
                    _ => None,
                }
            }
            Err(
                e @ (WireError::NotKafka { .. } | WireError::Tls { .. } | WireError::Auth { .. }),
            ) => Some(e.to_string()),
            Err(WireError::Io { source, .. }) if crate::transport::current().tls.is_some() => {
                Some(source.to_string())
            }
            Err(_) => Some(format!(
                "{addr} accepts connections but gives no Kafka answer (ApiVersions) within {timeout:?}; \
                 check -b/--brokers: that port may belong to another service (an HTTP server, say), \
                 or a TLS listener that wants -X security.protocol=SSL"
            )),
        }
    }

    async fn open(addr: &str, client_id: &str) -> WireResult<Self> {
        let stream = crate::transport::current()
            .open(addr)
            .await
            .map_err(|e| match e {
                crate::transport::OpenError::Io(source) => WireError::Io {
                    addr: addr.to_string(),
                    what: "connect",
                    source,
                },
                crate::transport::OpenError::Tls(msg) => WireError::Tls {
                    addr: addr.to_string(),
                    msg,
                },
            })?;
        Ok(Self {
            addr: addr.to_string(),
            client_id: client_id.to_string(),
            stream: BufReader::new(stream),
            next_correlation: 1,
            versions: HashMap::new(),
            features: HashMap::new(),
            broken: false,
        })
    }

    async fn api_versions(&mut self, version: i16) -> WireResult<ApiVersionsResponse> {
        let mut req = ApiVersionsRequest::default();
        if version >= 3 {
            req = req
                .with_client_software_name(StrBytes::from_static_str("kswarm"))
                .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        }
        self.send(req, version).await
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the connection is still usable (no request was abandoned mid-way).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// The broker's (min, max) for `key`, if it supports it at all.
    /// The level of a finalized cluster feature (None: not finalized, or a
    /// broker too old to say).
    pub fn feature(&self, name: &str) -> Option<i16> {
        self.features.get(name).copied()
    }

    pub fn broker_versions(&self, key: ApiKey) -> Option<(i16, i16)> {
        self.versions.get(&(key as i16)).copied()
    }

    /// The highest version both we (`ours_min..=ours_max`) and the broker support.
    pub fn version_for(&self, key: ApiKey, ours_min: i16, ours_max: i16) -> Option<i16> {
        pick_version(self.broker_versions(key), ours_min, ours_max)
    }

    /// Like [`version_for`](Self::version_for), with our range capped by what
    /// kafka-protocol can encode for `R`; an error naming the API if none fits.
    pub fn negotiate<R: WireRequest>(&self, ours_min: i16, ours_max: i16) -> WireResult<i16> {
        let key = R::KEY;
        let lo = ours_min.max(R::VERSIONS.min);
        let hi = ours_max.min(R::VERSIONS.max);
        self.version_for(key, lo, hi)
            .ok_or_else(|| WireError::Unsupported {
                addr: self.addr.clone(),
                api: key,
                ours_min: lo,
                ours_max: hi,
                theirs: match self.broker_versions(key) {
                    Some((a, b)) => format!(" (it has {a}..={b})"),
                    None => " (it does not offer it at all)".to_string(),
                },
            })
    }

    /// Send one request at `version` and wait for its response. Not cancel-safe
    /// for the connection: if the future is dropped mid-way the connection is
    /// marked broken and every later call fails fast (reconnect).
    pub async fn send<R: WireRequest>(&mut self, req: R, version: i16) -> WireResult<R::Response> {
        let key = R::KEY;

        if self.broken {
            return Err(self.io("request", std::io::ErrorKind::BrokenPipe.into()));
        }
        let correlation_id = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_string(self.client_id.clone())));
        let frame = encode_frame(&header, key.request_header_version(version), &req, version)
            .map_err(|e| self.protocol(format!("cannot encode {key:?} v{version}: {e}")))?;

        self.broken = true;
        self.stream
            .get_mut()
            .write_all(&frame)
            .await
            .map_err(|e| self.io("write", e))?;
        let len = self
            .stream
            .read_i32()
            .await
            .map_err(|e| self.io("read", e))?;
        if len < 0 || len as usize > MAX_FRAME {
            let (what, hint) = super::describe_foreign(len.to_be_bytes());
            return Err(WireError::NotKafka {
                addr: self.addr.clone(),
                what,
                hint,
            });
        }
        // Read into spare capacity: fetch answers are up to fetch.max.bytes,
        // and zero-filling them first costs as much as a copy.
        let len = len as usize;
        let mut body = BytesMut::with_capacity(len);
        let read = {
            let mut frame = (&mut self.stream).take(len as u64);
            let mut r = Ok(());
            while body.len() < len {
                match frame.read_buf(&mut body).await {
                    Ok(0) => {
                        r = Err(std::io::ErrorKind::UnexpectedEof.into());
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        r = Err(e);
                        break;
                    }
                }
            }
            r
        };
        read.map_err(|e| self.io("read", e))?;
        self.broken = false;

        let mut buf = body.freeze();
        let rh = ResponseHeader::decode(&mut buf, key.response_header_version(version))
            .map_err(|e| self.protocol(format!("bad {key:?} response header: {e}")))?;
        if rh.correlation_id != correlation_id {
            self.broken = true;
            return Err(self.protocol(format!(
                "correlation id {} in answer to {correlation_id}",
                rh.correlation_id
            )));
        }
        R::Response::decode(&mut buf, version)
            .map_err(|e| self.protocol(format!("cannot decode {key:?} v{version} response: {e}")))
    }

    /// [`send`](Self::send) with a deadline; on timeout the connection is broken.
    pub async fn send_timeout<R: WireRequest>(
        &mut self,
        req: R,
        version: i16,
        timeout: Duration,
    ) -> WireResult<R::Response> {
        match tokio::time::timeout(timeout, self.send(req, version)).await {
            Ok(r) => r,
            Err(_) => Err(WireError::Io {
                addr: self.addr.clone(),
                what: "request",
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {timeout:?}"),
                ),
            }),
        }
    }

    fn io(&self, what: &'static str, source: std::io::Error) -> WireError {
        // A TLS alert after the handshake (TLS 1.3 refuses a missing client
        // certificate only then): no retry will change it.
        if source
            .get_ref()
            .is_some_and(|i| i.downcast_ref::<rustls::Error>().is_some())
        {
            return WireError::Tls {
                addr: self.addr.clone(),
                msg: crate::transport::explain_tls(&self.addr, &source),
            };
        }
        WireError::Io {
            addr: self.addr.clone(),
            what,
            source,
        }
    }

    fn protocol(&self, msg: String) -> WireError {
        WireError::Protocol {
            addr: self.addr.clone(),
            msg,
        }
    }
}

/// Size prefix + header + body.
fn encode_frame<R: Encodable + Message>(
    header: &RequestHeader,
    header_version: i16,
    req: &R,
    version: i16,
) -> anyhow::Result<Bytes> {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header.encode(&mut buf, header_version)?;
    req.encode(&mut buf, version)?;
    let len = (buf.len() - 4) as i32;
    (&mut buf[..4]).put_i32(len);
    Ok(buf.freeze())
}

/// The highest version in both ranges, if they overlap.
pub fn pick_version(theirs: Option<(i16, i16)>, ours_min: i16, ours_max: i16) -> Option<i16> {
    let (theirs_min, theirs_max) = theirs?;
    let v = ours_max.min(theirs_max);
    (v >= ours_min.max(theirs_min)).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;
    use kafka_protocol::messages::HeartbeatRequest;

    #[test]
    fn version_choice() {
        assert_eq!(pick_version(Some((0, 9)), 0, 5), Some(5));
        assert_eq!(pick_version(Some((0, 3)), 0, 5), Some(3));
        assert_eq!(pick_version(Some((0, 3)), 5, 9), None);
        assert_eq!(pick_version(Some((4, 9)), 0, 3), None);
        assert_eq!(pick_version(None, 0, 3), None);
    }

    #[test]
    fn frame_has_size_prefix_and_header() {
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Heartbeat as i16)
            .with_request_api_version(0)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("c")));
        let req = HeartbeatRequest::default();
        let mut f = encode_frame(&header, 1, &req, 0).unwrap();
        let len = f.get_i32() as usize;
        assert_eq!(len, f.len());
        assert_eq!(f.get_i16(), ApiKey::Heartbeat as i16);
        assert_eq!(f.get_i16(), 0);
        assert_eq!(f.get_i32(), 7);
    }
}
