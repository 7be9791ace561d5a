//! Secured clusters, on Apache Kafka's SSL, mTLS and SASL listeners that
//! scripts/kafka.sh opens beside the plaintext one (certificates made by
//! openssl at broker start, SCRAM users created when the storage is
//! formatted; see KSWARM_TEST_SECURITY): every mechanism connects, a whole
//! run over SASL_SSL delivers everything and shows its password nowhere,
//! and bad settings fail at once with a message naming the setting.

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use support::*;

/// The secured listeners of the test broker (written by scripts/kafka.sh).
struct Listeners(serde_json::Value);

impl Listeners {
    fn load() -> Self {
        let path = std::env::var("KSWARM_TEST_SECURITY").expect(
            "KSWARM_TEST_SECURITY is not set: run the tests with scripts/test.sh, whose Kafka broker \
             opens TLS and SASL listeners and describes them in build/kafka-PORT/security.json",
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        Listeners(serde_json::from_str(&text).expect("security.json"))
    }
    fn get(&self, key: &str) -> String {
        self.0[key]
            .as_str()
            .unwrap_or_else(|| panic!("security.json has no {key}"))
            .to_string()
    }
}

/// A properties file in a fresh temp dir, mode 0600 as a user would keep it.
fn config_file(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(
        &p,
        format!("# written by tests/security.rs\n{}\n", lines.join("\n")),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

fn scram_file(l: &Listeners, dir: &Path, mechanism: &str) -> PathBuf {
    config_file(
        dir,
        &format!("{mechanism}.properties"),
        &[
            "security.protocol=SASL_SSL".into(),
            format!("sasl.mechanisms={mechanism}"),
            format!("sasl.username={}", l.get("user")),
            format!("sasl.password={}", l.get("password")),
            format!("ssl.ca.location={}", l.get("ca")),
        ],
    )
}

fn plan(brokers: &str, topic: &str, extra: &[&str]) -> Output {
    let mut args = vec!["plan", "-b", brokers, "-t", topic, "-w", "2", "--json"];
    args.extend_from_slice(extra);
    kswarm().args(&args).output().expect("run kswarm plan")
}

/// An unsigned JWT for Kafka's unsecured OAUTHBEARER validator.
fn unsecured_jwt(sub: &str) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = format!(r#"{{"sub":"{sub}","iat":{now},"exp":{}}}"#, now + 3600);
    format!(
        "{}.{}.",
        b64.encode(br#"{"alg":"none"}"#),
        b64.encode(claims)
    )
}

#[test]
fn every_mechanism_and_client_certificates_connect() {
    let l = Listeners::load();
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("sec-mech");
    let token = dir.path().join("token");
    std::fs::write(&token, unsecured_jwt(&l.get("oauthbearer_sub"))).unwrap();
    let ca = format!("ssl.ca.location={}", l.get("ca"));
    let cases: Vec<(&str, String, Vec<String>)> = vec![
        (
            "SSL",
            l.get("ssl"),
            vec!["security.protocol=SSL".into(), ca.clone()],
        ),
        (
            "mTLS with an encrypted key",
            l.get("mtls"),
            vec![
                "security.protocol=SSL".into(),
                ca.clone(),
                format!("ssl.certificate.location={}", l.get("client_cert")),
                format!("ssl.key.location={}", l.get("client_key_encrypted")),
                format!("ssl.key.password={}", l.get("client_key_password")),
            ],
        ),
        (
            "mTLS with a plain key",
            l.get("mtls"),
            vec![
                "security.protocol=SSL".into(),
                ca.clone(),
                format!("ssl.certificate.location={}", l.get("client_cert")),
                format!("ssl.key.location={}", l.get("client_key")),
            ],
        ),
        (
            "SASL_PLAINTEXT PLAIN",
            l.get("sasl_plaintext"),
            vec![
                "security.protocol=SASL_PLAINTEXT".into(),
                "sasl.mechanism=PLAIN".into(),
                format!("sasl.username={}", l.get("user")),
                format!("sasl.password={}", l.get("password")),
            ],
        ),
        (
            "OAUTHBEARER token file",
            l.get("sasl_ssl"),
            vec![
                "security.protocol=SASL_SSL".into(),
                ca.clone(),
                "sasl.mechanism=OAUTHBEARER".into(),
                format!("sasl.oauthbearer.token.file={}", token.display()),
            ],
        ),
        (
            "OAUTHBEARER token command",
            l.get("sasl_ssl"),
            vec![
                "security.protocol=SASL_SSL".into(),
                ca.clone(),
                "sasl.mechanism=OAUTHBEARER".into(),
                format!("sasl.oauthbearer.token.command=cat {}", token.display()),
            ],
        ),
        (
            "OAUTHBEARER unsecured JWT (librdkafka's settings)",
            l.get("sasl_ssl"),
            vec![
                "security.protocol=SASL_SSL".into(),
                ca.clone(),
                "sasl.mechanism=OAUTHBEARER".into(),
                "enable.sasl.oauthbearer.unsecure.jwt=true".into(),
                format!(
                    "sasl.oauthbearer.config=principal={}",
                    l.get("oauthbearer_sub")
                ),
            ],
        ),
    ];
    let mut all = cases;
    for mech in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let f = scram_file(&l, dir.path(), mech);
        all.push((
            mech,
            l.get("sasl_ssl"),
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .filter(|x| !x.starts_with('#'))
                .map(String::from)
                .collect(),
        ));
    }
    for (i, (name, brokers, lines)) in all.iter().enumerate() {
        let f = config_file(dir.path(), &format!("case{i}.properties"), lines);
        // the first case creates the topic (CreateTopics goes through it too)
        let mut extra = vec!["-F", f.to_str().unwrap()];
        if i == 0 {
            extra.push("--apply");
            let o = plan(brokers, &topic, &extra);
            assert!(o.status.success(), "{name}: {}", output_text(&o));
            extra.pop();
        }
        let o = plan(brokers, &topic, &extra);
        assert!(o.status.success(), "{name}: {}", output_text(&o));
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("plan --json");
        assert_eq!(j["current"], 2, "{name}: {}", output_text(&o));
        eprintln!("{name}: connected ({})", j["security"]);
    }
}

/// A whole run over SASL_SSL with SCRAM-SHA-512 from a -F file: produce,
/// two workers, a handler; everything handled and committed; the password
/// in no argv, no worker's or handler's environment, no log line at debug
/// level, no state file, and neither plan --json nor status --json.
#[test]
fn a_run_over_sasl_ssl_delivers_everything_and_shows_its_password_nowhere() {
    let l = Listeners::load();
    let secret = l.get("password");
    let dir = tempfile::tempdir().unwrap();
    let cfg = scram_file(&l, dir.path(), "SCRAM-SHA-512");
    let cfg_s = cfg.to_str().unwrap();
    let b = l.get("sasl_ssl");
    let topic = unique("sec-run");
    let group = unique("sec-run-g");
    let n = 4000;

    let o = kswarm()
        .args([
            "plan", "-b", &b, "-F", cfg_s, "-t", &topic, "-w", "2", "--apply",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    let out = kswarm_with_stdin(
        &[
            "produce",
            "-b",
            &b,
            "-F",
            cfg_s,
            "-t",
            &topic,
            "--batch-size",
            "100",
        ],
        &numbered("rec", n),
    );
    assert!(out.status.success(), "{}", output_text(&out));

    let seen_file = dir.path().join("seen");
    let env_dump = dir.path().join("handler-env");
    // the handler writes its environment once, then appends and acknowledges
    let handler = format!(
        "env >> {}; {}",
        env_dump.display(),
        appending_handler(&seen_file)
    );
    let mut run = Run::new(&topic, &group)
        .global(["--log-level", "debug"])
        .brokers(&b)
        .flag("-F", cfg_s)
        .workers(2)
        .no_partitions()
        .format("json")
        .exec(&handler)
        .spawn();
    wait_for(Duration::from_secs(60), "all records handled", || {
        (read_seen(&seen_file).len() >= n).then_some(())
    });

    // every process of the run: the supervisor, its workers, their handlers
    let mut pids = vec![run.pid()];
    pids.extend(descendants(run.pid()));
    assert!(
        pids.len() >= 5,
        "supervisor, 2 workers and their handlers: {pids:?}"
    );
    for pid in &pids {
        let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&argv).contains(&secret),
            "pid {pid}'s argv holds the password"
        );
        let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&env).contains(&secret),
            "pid {pid}'s environment holds the password"
        );
    }
    let handler_env = std::fs::read_to_string(&env_dump).unwrap();
    assert!(!handler_env.contains(&secret) && !handler_env.contains("KSWARM_CONFIG"));

    let status = kswarm()
        .args([
            "status", "-b", &b, "-F", cfg_s, "-g", &group, "-t", &topic, "--json",
        ])
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", output_text(&status));
    let plan_json = plan(&b, &topic, &["-F", cfg_s]);
    assert!(plan_json.status.success(), "{}", output_text(&plan_json));
    for (what, o) in [("status --json", &status), ("plan --json", &plan_json)] {
        assert!(
            !output_text(o).contains(&secret),
            "{what} shows the password"
        );
    }
    let pj: serde_json::Value = serde_json::from_slice(&plan_json.stdout).unwrap();
    assert_eq!(
        pj["security"],
        "SASL_SSL SCRAM-SHA-512 user alice ca ".to_string() + &l.get("ca")
    );

    run.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        run.wait(Duration::from_secs(30)).success(),
        "{}",
        run.stderr_text()
    );
    let log = run.stderr_text();
    assert!(log.contains("DEBUG"), "the run logged at debug level");
    assert!(!log.contains(&secret), "the log shows the password");
    for e in std::fs::read_dir(state_dir()).unwrap().flatten() {
        let s = std::fs::read_to_string(e.path()).unwrap_or_default();
        assert!(
            !s.contains(&secret),
            "state file {} holds the password",
            e.path().display()
        );
    }

    let seen = read_seen(&seen_file);
    let t = tally(&seen);
    assert!(missing(&t.values, "rec", n).is_empty(), "records lost");
    // the commits, read over the plaintext listener of the same broker
    let commits = committed(&l.get("plaintext"), &topic, &group, 2);
    let total: i64 = commits.values().map(|c| c.unwrap_or(0)).sum();
    assert_eq!(total, n as i64, "committed offsets {commits:?}");
}

/// Bad settings end the command at once (no retry loop, no worker started),
/// exit 1 for a refusal by the cluster and 2 for a bad local setting, and
/// name the setting to fix.
#[test]
fn bad_security_settings_fail_fast_and_name_the_setting() {
    let l = Listeners::load();
    let dir = tempfile::tempdir().unwrap();
    let ca = format!("ssl.ca.location={}", l.get("ca"));
    let bad_pw = config_file(
        dir.path(),
        "bad.properties",
        &[
            "security.protocol=SASL_SSL".into(),
            "sasl.mechanism=SCRAM-SHA-512".into(),
            format!("sasl.username={}", l.get("user")),
            "sasl.password=not-the-password".into(),
            ca.clone(),
        ],
    );
    let topic = unique("sec-bad");
    create_topic(&l.get("plaintext"), &topic, 2);

    // a wrong password: run exits 1 at once, before any worker starts
    let t0 = Instant::now();
    let o = Run::new(&topic, &unique("sec-bad-g"))
        .brokers(&l.get("sasl_ssl"))
        .flag("-F", bad_pw.to_str().unwrap())
        .workers(2)
        .no_partitions()
        .exec("cat")
        .output();
    let took = t0.elapsed();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{}", output_text(&o));
    assert!(
        err.contains("authentication failed for user alice (SCRAM-SHA-512)"),
        "{err}"
    );
    assert!(!err.contains("not-the-password"), "{err}");
    assert!(!err.contains("started"), "no worker may start: {err}");
    assert!(took < Duration::from_secs(5), "took {took:?}");

    // (name, brokers, -X settings, exit code, message part, within)
    type Case = (
        &'static str,
        String,
        Vec<String>,
        i32,
        &'static str,
        Duration,
    );
    let cases: Vec<Case> = vec![
        (
            "untrusted certificate",
            l.get("ssl"),
            vec![
                "security.protocol=SSL".into(),
                format!("ssl.ca.location={}", l.get("other_ca")),
            ],
            1,
            "ssl.ca.location",
            Duration::from_secs(5),
        ),
        (
            "a certificate for another name",
            l.get("ssl_wrong_name"),
            vec!["security.protocol=SSL".into(), ca.clone()],
            1,
            "ssl.endpoint.identification.algorithm",
            Duration::from_secs(5),
        ),
        (
            "a plaintext client on a TLS listener",
            l.get("ssl"),
            vec![],
            1,
            "security.protocol",
            Duration::from_secs(6),
        ),
        (
            "a TLS client on a plaintext listener",
            l.get("plaintext"),
            vec!["security.protocol=SSL".into(), ca.clone()],
            1,
            "security.protocol",
            Duration::from_secs(6),
        ),
        (
            "a plaintext client on a SASL listener",
            l.get("sasl_plaintext"),
            vec![],
            1,
            "security.protocol=SASL_SSL",
            Duration::from_secs(6),
        ),
        (
            "no client certificate for an mTLS listener",
            l.get("mtls"),
            vec!["security.protocol=SSL".into(), ca.clone()],
            1,
            "ssl.certificate.location",
            Duration::from_secs(5),
        ),
        (
            "an unreadable CA file",
            l.get("ssl"),
            vec![
                "security.protocol=SSL".into(),
                "ssl.ca.location=/nonexistent/ca.pem".into(),
            ],
            2,
            "ssl.ca.location: cannot use /nonexistent/ca.pem",
            Duration::from_secs(2),
        ),
        (
            "an unreadable key file",
            l.get("mtls"),
            vec![
                "security.protocol=SSL".into(),
                ca.clone(),
                format!("ssl.certificate.location={}", l.get("client_cert")),
                "ssl.key.location=/nonexistent/client.key".into(),
            ],
            2,
            "ssl.key.location: cannot use /nonexistent/client.key",
            Duration::from_secs(2),
        ),
        (
            "an encrypted key without its password",
            l.get("mtls"),
            vec![
                "security.protocol=SSL".into(),
                ca.clone(),
                format!("ssl.certificate.location={}", l.get("client_cert")),
                format!("ssl.key.location={}", l.get("client_key_encrypted")),
            ],
            2,
            "ssl.key.password",
            Duration::from_secs(2),
        ),
        (
            "an unknown mechanism",
            l.get("sasl_ssl"),
            vec![
                "security.protocol=SASL_SSL".into(),
                "sasl.mechanism=GSSAPI".into(),
            ],
            2,
            "sasl.mechanism",
            Duration::from_secs(2),
        ),
    ];
    for (name, brokers, xs, code, part, within) in cases {
        let mut args = vec![
            "plan",
            "-b",
            &brokers,
            "-t",
            &topic,
            "--connect-timeout",
            "4s",
        ];
        for x in &xs {
            args.push("-X");
            args.push(x);
        }
        let t0 = Instant::now();
        let o = kswarm().args(&args).output().unwrap();
        let took = t0.elapsed();
        assert_eq!(o.status.code(), Some(code), "{name}: {}", output_text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(part),
            "{name}: the message should name {part:?}: {}",
            output_text(&o)
        );
        assert!(took < within, "{name}: took {took:?}");
        eprintln!("{name}: exit {code} in {took:?}");
    }

    // hostname verification can be turned off, with a warning
    let o = plan(
        &l.get("ssl_wrong_name"),
        &topic,
        &[
            "-X",
            "security.protocol=SSL",
            "-X",
            &ca,
            "-X",
            "ssl.endpoint.identification.algorithm=none",
        ],
    );
    assert!(o.status.success(), "{}", output_text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not against the broker's name"));
}

/// The file's settings are librdkafka's, so a kcat user's file works as it
/// is: bootstrap.servers stands in for -b, client.id and group.id are taken
/// quietly, an unknown key is warned about once, and -X overrides the file.
#[test]
fn a_kcat_config_file_works_as_it_is() {
    let l = Listeners::load();
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("sec-kcat");
    create_topic(&l.get("plaintext"), &topic, 2);
    let f = config_file(
        dir.path(),
        "kcat.conf",
        &[
            format!("bootstrap.servers={}", l.get("sasl_ssl")),
            "security.protocol=SASL_SSL".into(),
            "sasl.mechanisms=SCRAM-SHA-256".into(),
            format!("sasl.username={}", l.get("user")),
            "sasl.password=wrong-on-purpose".into(),
            format!("ssl.ca.location={}", l.get("ca")),
            "client.id=my-kcat".into(),
            "socket.keepalive.enable=true".into(),
        ],
    );
    let f = f.to_str().unwrap();
    // the file's password is wrong; -X fixes it (flags win)
    let pw = format!("sasl.password={}", l.get("password"));
    let o = kswarm()
        .args([
            "plan", "-F", f, "-X", &pw, "-t", &topic, "-w", "2", "--json",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", output_text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.matches("socket.keepalive.enable").count(),
        1,
        "one warning for the unknown key: {err}"
    );
    assert!(!err.contains("client.id"), "{err}");
    assert!(
        err.contains("-X sasl.password is on the command line"),
        "{err}"
    );
    // KSWARM_CONFIG is -F
    let o = kswarm()
        .env("KSWARM_CONFIG", f)
        .args(["plan", "-t", &topic, "-w", "2"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", output_text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("authentication failed for user alice (SCRAM-SHA-256)"),
        "{}",
        output_text(&o)
    );
    // a line that is not key=value names the file and line
    let bad = config_file(dir.path(), "bad.conf", &["security.protocol SSL".into()]);
    let o = kswarm()
        .args([
            "plan",
            "-b",
            &l.get("ssl"),
            "-F",
            bad.to_str().unwrap(),
            "-t",
            &topic,
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", output_text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("{}:2", bad.display())),
        "{}",
        output_text(&o)
    );
}

/// librdkafka (confluent-kafka) and kswarm in one group over SASL_SSL with
/// SCRAM-SHA-512: kswarm alone, then the peer joins and they share, then
/// the peer leaves and kswarm takes everything back. Nothing lost, nothing
/// handled twice, the commits at the ends.
#[test]
fn a_librdkafka_peer_shares_the_group_over_sasl_ssl() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let l = Listeners::load();
    let dir = tempfile::tempdir().unwrap();
    let cfg = scram_file(&l, dir.path(), "SCRAM-SHA-512");
    let cfg_s = cfg.to_str().unwrap();
    let b = l.get("sasl_ssl");
    let topic = unique("sec-peer");
    let group = unique("sec-peer-g");
    create_topic(&l.get("plaintext"), &topic, 4);
    let produce = |prefix: &str, n: usize| {
        let o = kswarm_with_stdin(
            &[
                "produce",
                "-b",
                &b,
                "-F",
                cfg_s,
                "-t",
                &topic,
                "--batch-size",
                "50",
            ],
            &numbered(prefix, n),
        );
        assert!(o.status.success(), "{}", output_text(&o));
    };
    let (na, nb, nc) = (400, 2000, 400);
    produce("a", na);

    let kfile = dir.path().join("kswarm-seen");
    let mut run = Run::new(&topic, &group)
        .brokers(&b)
        .flag("-F", cfg_s)
        .workers(2)
        .no_partitions()
        .args(["--session-timeout", "6s"])
        .format("json")
        .exec(&appending_handler(&kfile))
        .spawn();
    wait_for(
        Duration::from_secs(60),
        "kswarm alone handles batch a",
        || (read_seen(&kfile).len() >= na).then_some(()),
    );

    // the peer reads its librdkafka settings from a file (CK_MEMBER_CONFIG)
    let pfile = dir.path().join("peer-seen");
    let mut peer = Command::new(python())
        .arg(repo_root().join("tests/peers/ck_member.py"))
        .args(["consume-to-file", &b, &topic, &group, "range"])
        .arg(&pfile)
        .env("CK_MEMBER_CONFIG", &cfg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start ck_member.py");
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        let out = peer.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        })
    };
    let peer_owns = || -> Vec<i64> {
        let lines = lines.lock().unwrap();
        lines
            .iter()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|v| v["assigned"].as_array().cloned())
            .map(|a| a.iter().filter_map(|p| p.as_i64()).collect())
            .unwrap_or_default()
    };
    wait_for(Duration::from_secs(60), "the peer owns partitions", || {
        let owned = peer_owns();
        (!owned.is_empty() && owned.len() < 4).then_some(())
    });
    produce("b", nb);
    let everything = |n_a: usize, n_b: usize, n_c: usize| {
        let mut all = read_seen(&kfile);
        all.extend(read_seen(&pfile));
        let t = tally(&all);
        missing(&t.values, "a", n_a).is_empty()
            && missing(&t.values, "b", n_b).is_empty()
            && missing(&t.values, "c", n_c).is_empty()
    };
    wait_for(
        Duration::from_secs(90),
        "batch b handled by both sides",
        || everything(na, nb, 0).then_some(()),
    );
    let peer_b = read_seen(&pfile)
        .iter()
        .filter(|s| s.value.starts_with('b'))
        .count();
    let kswarm_b = read_seen(&kfile)
        .iter()
        .filter(|s| s.value.starts_with('b'))
        .count();
    assert!(
        peer_b > 0 && kswarm_b > 0,
        "shared: peer {peer_b}, kswarm {kswarm_b}"
    );
    eprintln!(
        "batch b: the peer handled {peer_b}, kswarm {kswarm_b}; the peer owned {:?}",
        peer_owns()
    );

    // the peer leaves (its stdin closes); kswarm takes everything back
    drop(peer.stdin.take());
    assert!(peer.wait().unwrap().success(), "the peer closed cleanly");
    reader.join().unwrap();
    produce("c", nc);
    wait_for(Duration::from_secs(60), "kswarm handles batch c", || {
        everything(na, nb, nc).then_some(())
    });
    run.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        run.wait(Duration::from_secs(30)).success(),
        "{}",
        run.stderr_text()
    );

    let mut all = read_seen(&kfile);
    all.extend(read_seen(&pfile));
    let t = tally(&all);
    assert_eq!(
        t.duplicates, 0,
        "records handled twice across the two clients"
    );
    assert_eq!(t.distinct, na + nb + nc);
    let commits = committed(&l.get("plaintext"), &topic, &group, 4);
    let total: i64 = commits.values().map(|c| c.unwrap_or(0)).sum();
    assert_eq!(
        total,
        (na + nb + nc) as i64,
        "committed offsets {commits:?}; kswarm's log:\n{}",
        run.stderr_text()
    );
}
