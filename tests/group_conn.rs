//! BrokerConn against the real broker: ApiVersions on connect, version choice,
//! a request/response round trip, and a clear error for a dead address.
mod support;

use std::time::Duration;

use kswarm::wire::{ApiKey, BrokerConn, WireError};

#[tokio::test(flavor = "current_thread")]
async fn connects_and_negotiates() {
    let brokers = support::brokers();
    let addr = brokers.split(',').next().unwrap();
    let conn = BrokerConn::connect(addr, "kswarm-test", Duration::from_secs(10))
        .await
        .expect("connect");
    let (lo, hi) = conn
        .broker_versions(ApiKey::JoinGroup)
        .expect("JoinGroup offered");
    assert!(lo <= hi);
    let v = conn.version_for(ApiKey::JoinGroup, 0, 9).unwrap();
    assert!(v >= lo && v <= hi.min(9));
    assert_eq!(conn.version_for(ApiKey::JoinGroup, hi + 1, hi + 5), None);
}

#[tokio::test(flavor = "current_thread")]
async fn unreachable_broker_is_a_transport_error() {
    // A port nothing listens on (bound then dropped).
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    let err = BrokerConn::connect(&addr, "kswarm-test", Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(err.is_transport(), "{err}");
    assert!(err.to_string().contains(&addr), "{err}");
    assert!(matches!(
        err,
        WireError::Io { .. } | WireError::Timeout { .. }
    ));
}

#[tokio::test(flavor = "current_thread")]
async fn member_gives_up_on_dead_brokers_naming_them() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    let s = kswarm::group::GroupSettings {
        brokers: vec![addr.clone()],
        connect_timeout: Duration::from_secs(1),
        client_id: "t".into(),
        group: "g".into(),
        topic: "t".into(),
        session_timeout: Duration::from_secs(6),
        session_timeout_auto: false,
        rebalance_timeout: Duration::from_secs(3),
        heartbeat_interval: Duration::from_millis(300),
        assignors: vec![kswarm::config::Assignor::Range],
        instance_id: None,
        protocol: kswarm::config::GroupProtocol::Classic,
        remote_assignor: None,
    };
    let t = std::time::Instant::now();
    let err = kswarm::group::Member::connect(s).await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let msg = err.to_string();
    assert!(msg.contains(&addr) && msg.contains("--brokers"), "{msg}");
    assert!(
        matches!(err, kswarm::group::GroupError::Other(_)),
        "{err:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn join_on_a_missing_topic_names_it() {
    let topic = support::unique("gc-missing");
    let s = kswarm::group::GroupSettings {
        brokers: support::brokers().split(',').map(str::to_string).collect(),
        connect_timeout: Duration::from_secs(2),
        client_id: "t".into(),
        group: support::unique("g"),
        topic: topic.clone(),
        session_timeout: Duration::from_secs(6),
        session_timeout_auto: false,
        rebalance_timeout: Duration::from_secs(2),
        heartbeat_interval: Duration::from_millis(300),
        assignors: vec![kswarm::config::Assignor::Range],
        instance_id: None,
        protocol: kswarm::config::GroupProtocol::Classic,
        remote_assignor: None,
    };
    let mut m = kswarm::group::Member::connect(s).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(30), m.join())
        .await
        .expect("join gives up in time")
        .unwrap_err();
    let msg = err.to_string();
    eprintln!("{msg}");
    assert!(msg.contains("--topic") && msg.contains(&topic), "{msg}");
}
