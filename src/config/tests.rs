//! Unit tests of the configuration checks.
use super::*;

#[test]
fn handler_limits_are_parsed_and_checked() {
    let exec = HandlerSpec::Exec("cat".into());
    assert_eq!(handler_memory_max(None, &exec).unwrap(), None);
    assert_eq!(
        handler_memory_max(Some("150M"), &exec).unwrap(),
        Some(150 << 20)
    );
    assert_eq!(
        handler_memory_max(Some("2GiB"), &exec).unwrap(),
        Some(2 << 30)
    );
    let e = handler_memory_max(Some("150Q"), &exec).unwrap_err();
    assert!(e.to_string().contains("--handler-memory-max"), "{e}");
    let e = handler_memory_max(Some("1K"), &exec).unwrap_err();
    assert!(e.to_string().contains("out of range"), "{e}");
    let e = handler_memory_max(Some("150M"), &HandlerSpec::Stdout).unwrap_err();
    assert!(e.to_string().contains("--exec"), "{e}");

    let hang = Duration::from_secs(30);
    assert_eq!(record_timeout(None, hang).unwrap(), None);
    assert_eq!(
        record_timeout(Some("2s"), hang).unwrap(),
        Some(Duration::from_secs(2))
    );
    let e = record_timeout(Some("30s"), hang).unwrap_err();
    assert!(e.to_string().contains("--hang-timeout"), "{e}");
    assert!(record_timeout(Some("0s"), hang).is_err());
}

#[test]
fn durations() {
    assert_eq!(
        parse_duration("x", "500ms").unwrap(),
        Duration::from_millis(500)
    );
    assert_eq!(parse_duration("x", "10s").unwrap(), Duration::from_secs(10));
    assert_eq!(parse_duration("x", "2m").unwrap(), Duration::from_secs(120));
    assert_eq!(parse_duration("x", "3").unwrap(), Duration::from_secs(3));
    assert_eq!(
        parse_duration("x", "1.5s").unwrap(),
        Duration::from_millis(1500)
    );
    assert!(parse_duration("--session-timeout", "ten")
        .unwrap_err()
        .0
        .contains("--session-timeout"));
    assert!(parse_duration("x", "5d").is_err());
    assert!(parse_duration("x", "-5s").is_err());
    assert!(parse_positive_duration("x", "0s").is_err());
}

#[test]
fn counts_and_specs() {
    assert_eq!(WorkersSpec::parse("auto").unwrap(), WorkersSpec::Auto);
    assert_eq!(WorkersSpec::parse("4").unwrap(), WorkersSpec::Fixed(4));
    let e = WorkersSpec::parse("0").unwrap_err();
    assert!(e.0.contains("--workers"), "{e}");
    assert!(WorkersSpec::parse("-3").is_err());
    assert!(WorkersSpec::parse("many").is_err());
    assert_eq!(PartitionsSpec::parse("keep").unwrap(), PartitionsSpec::Keep);
    assert_eq!(
        PartitionsSpec::parse("12").unwrap(),
        PartitionsSpec::Fixed(12)
    );
    assert!(PartitionsSpec::parse("0")
        .unwrap_err()
        .0
        .contains("--partitions"));
}

#[test]
fn names() {
    assert!(validate_topic("syslog.v1-a_b").is_ok());
    assert!(validate_topic("bad topic")
        .unwrap_err()
        .0
        .contains("--topic"));
    assert!(validate_topic("..").is_err());
    assert!(validate_topic(&"a".repeat(250)).is_err());
    assert!(validate_group("").unwrap_err().0.contains("--group"));
    assert!(validate_group("g\n").is_err());
}

#[test]
fn group_protocol_from_the_flag_or_x() {
    use GroupProtocol::*;
    assert_eq!(group_protocol(None, None).unwrap(), Classic);
    assert_eq!(group_protocol(Some("consumer"), None).unwrap(), Consumer);
    assert_eq!(group_protocol(None, Some("CONSUMER")).unwrap(), Consumer);
    assert_eq!(
        group_protocol(Some("classic"), Some("classic")).unwrap(),
        Classic
    );
    let e = group_protocol(Some("classic"), Some("consumer")).unwrap_err();
    assert!(
        e.0.contains("--group-protocol") && e.0.contains("-X group.protocol"),
        "{e}"
    );
    assert_eq!(group_protocol(Some("share"), None).unwrap(), Share);
    assert_eq!(group_protocol(None, Some("Share")).unwrap(), Share);
    let e = group_protocol(Some("shared"), None).unwrap_err();
    assert!(
        e.0.contains("--group-protocol: 'shared'") && e.0.contains("share"),
        "{e}"
    );
    assert!(group_protocol(None, Some("bogus"))
        .unwrap_err()
        .0
        .contains("-X group.protocol"));
}

#[test]
fn assignors_per_protocol() {
    use GroupProtocol::*;
    assert_eq!(
        assignors(Classic, None, None).unwrap(),
        (vec![Assignor::Range, Assignor::RoundRobin], None)
    );
    assert_eq!(
        assignors(Classic, Some("roundrobin, range,range"), None)
            .unwrap()
            .0,
        vec![Assignor::RoundRobin, Assignor::Range]
    );
    let e = assignors(Classic, Some("uniform"), None).unwrap_err();
    assert!(e.0.contains("--group-protocol consumer"), "{e}");
    assert!(assignors(Classic, None, Some("uniform")).is_err());
    assert_eq!(assignors(Consumer, None, None).unwrap().1, None);
    assert_eq!(assignors(Share, None, None).unwrap().1, None);
    assert!(assignors(Share, Some("range"), None)
        .unwrap_err()
        .0
        .contains("--assignor does not apply to --group-protocol share"));
    assert!(assignors(Share, None, Some("uniform"))
        .unwrap_err()
        .0
        .contains("-X group.remote.assignor"));
    assert_eq!(
        assignors(Consumer, Some("Uniform"), None)
            .unwrap()
            .1
            .as_deref(),
        Some("uniform")
    );
    assert_eq!(
        assignors(Consumer, None, Some("range"))
            .unwrap()
            .1
            .as_deref(),
        Some("range")
    );
    let e = assignors(Consumer, Some("roundrobin"), None).unwrap_err();
    assert!(e.0.contains("uniform or range"), "{e}");
    assert!(assignors(Consumer, Some("range,uniform"), None).is_err());
    assert!(assignors(Consumer, Some("range"), Some("uniform")).is_err());
}

#[test]
fn extra_settings_are_checked_once_here() {
    use clap::Parser;
    let parse = |x: &[&str]| {
        let mut argv = vec!["kswarm", "worker", "-b", "h:1", "-t", "t", "-g", "g"];
        argv.extend_from_slice(x);
        let cli::Command::Worker(w) = cli::Cli::parse_from(argv).command else {
            unreachable!()
        };
        let settings = Settings::load(None, &w.connect.extra)?;
        ConsumeConfig::from_args(&w.consume, &settings, "t")
    };
    let c = parse(&[]).unwrap();
    assert_eq!(
        (c.fetch_size, c.partition_fetch_max_bytes, c.fetch_wait_ms),
        (
            FetchSize::Adaptive {
                wire: DEFAULT_FETCH_MAX_BYTES,
                decoded: DEFAULT_FETCH_DECODED_BYTES
            },
            DEFAULT_PARTITION_FETCH_MAX_BYTES,
            100
        )
    );
    let c = parse(&[
        "-X",
        "fetch.max.bytes=65536",
        "-X",
        "foo.bar=1",
        "-X",
        "max.partition.fetch.bytes=4096",
    ])
    .unwrap();
    assert_eq!(c.fetch_size, FetchSize::Fixed(65536));
    assert_eq!(c.partition_fetch_max_bytes, 4096);
    let e = parse(&["-X", "fetch.max.bytes=abc"]).unwrap_err();
    assert!(e.0.contains("-X fetch.max.bytes"), "{e}");
    assert!(parse(&["-X", "fetch.wait.max.ms=0"]).is_err());
    assert!(parse(&["-X", "novalue"])
        .unwrap_err()
        .0
        .contains("KEY=VALUE"));
    // Over TLS the same defaults as over plaintext.
    for protocol in ["SSL", "sasl_ssl", "SASL_PLAINTEXT"] {
        let c = parse(&["-X", &format!("security.protocol={protocol}")]).unwrap();
        assert_eq!(
            (c.fetch_size.wire(), c.partition_fetch_max_bytes),
            (DEFAULT_FETCH_MAX_BYTES, DEFAULT_PARTITION_FETCH_MAX_BYTES),
            "{protocol}"
        );
    }
}

#[test]
fn brokers_and_budget() {
    assert_eq!(parse_brokers("a:1, b:2").unwrap(), vec!["a:1", "b:2"]);
    assert!(parse_brokers("localhost")
        .unwrap_err()
        .0
        .contains("--brokers"));
    assert!(parse_brokers("h:0").is_err());
    let b = RestartBudget::parse("5/30s").unwrap();
    assert_eq!((b.max, b.window), (5, Duration::from_secs(30)));
    assert!(RestartBudget::parse("5").is_err());
}

#[test]
fn sizes_with_units() {
    let p = |raw: &str| parse_size("--x", raw, 1, 1 << 30);
    assert_eq!(p("4096").unwrap(), 4096);
    assert_eq!(p("512KiB").unwrap(), 512 << 10);
    assert_eq!(p("1MiB").unwrap(), 1 << 20);
    assert_eq!(p(" 2m ").unwrap(), 2 << 20);
    assert_eq!(p("1G").unwrap(), 1 << 30);
    for bad in ["", "MiB", "1.5MiB", "-1", "3 parsecs"] {
        let e = p(bad).unwrap_err().0;
        assert!(e.starts_with("--x:"), "{bad}: {e}");
    }
    assert!(p("0").unwrap_err().0.contains("out of range"));
    assert!(p("2GiB").unwrap_err().0.contains("out of range"));
    assert!(p("99999999999999999999").is_err());
}
