//! What a new user hits first, tried as one would: a broker that is not
//! there, a typo in --log-level, a bad value set in the environment rather
//! than typed, a flag without its KSWARM_* fallback, and the demo. Each gets
//! a clear message (or works); only the demo needs the broker under test.
mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A loopback port nobody listens on.
fn dead_port() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// `kswarm ARGS` with extra environment, stdin empty: (exit code, stderr).
fn kswarm_env(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = support::kswarm()
        .args(args)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("start kswarm");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("kswarm {args:?} {env:?} -> {:?}\n{err}", out.status);
    (out.status.code(), err)
}

#[test]
fn connect_timeout_is_honoured_whole_with_a_clean_message() {
    let addr = dead_port();
    for sub in [
        &["plan", "-t", "t"][..],
        &["produce", "-t", "t"],
        &["status", "-t", "t", "-g", "g"],
        &["run", "-t", "t", "-g", "g"],
    ] {
        let mut args = sub.to_vec();
        args.extend(["-b", &addr, "--connect-timeout", "3s"]);
        let t0 = Instant::now();
        let (code, err) = kswarm_env(&args, &[]);
        let took = t0.elapsed();
        assert_eq!(code, Some(1), "{sub:?}: {err}");
        // About the time given, not less (rskafka alone gave up at 2/3 of it).
        assert!(
            took >= Duration::from_secs(3) && took < Duration::from_secs(5),
            "{sub:?} took {took:?} for --connect-timeout 3s"
        );
        let last = support::last_error(&err);
        for want in [
            addr.as_str(),
            "--connect-timeout",
            "refused",
            "-b/--brokers",
        ] {
            assert!(last.contains(want), "{sub:?} names {want}: {last}");
        }
        for internal in ["Retry exceeded", "Source:", "os error"] {
            assert!(!last.contains(internal), "{sub:?} leaks {internal}: {last}");
        }
    }
}

#[test]
fn a_bad_log_level_exits_2_naming_the_flag_the_variable_and_the_levels() {
    let b = dead_port();
    for (args, env) in [
        (
            &["--log-level", "loud", "plan", "-b", &b, "-t", "t"][..],
            &[][..],
        ),
        (
            &["plan", "-b", &b, "-t", "t"],
            &[("KSWARM_LOG_LEVEL", "loud")],
        ),
        (
            &["plan", "-b", &b, "-t", "t", "--log-level", "kswarm=loud"],
            &[],
        ),
    ] {
        let (code, err) = kswarm_env(args, env);
        assert_eq!(code, Some(2), "{args:?} {env:?}: {err}");
        for want in [
            "--log-level",
            "KSWARM_LOG_LEVEL",
            "error, warn, info, debug, trace, off",
        ] {
            assert!(err.contains(want), "names {want}: {err}");
        }
    }
}

#[test]
fn log_directives_still_work() {
    // kswarm's own debug lines appear, and the run goes on to its real
    // failure (the broker is not there: exit 1), not a usage error.
    let (code, err) = kswarm_env(
        &[
            "--log-level",
            "kswarm=debug,info",
            "--log-format",
            "json",
            "plan",
            "-b",
            &dead_port(),
            "-t",
            "t",
            "--connect-timeout",
            "1s",
        ],
        &[],
    );
    assert_eq!(code, Some(1), "{err}");
    let debug = err
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .any(|v| v["level"] == "DEBUG");
    assert!(debug, "a DEBUG line from kswarm=debug: {err}");
}

#[test]
fn a_bad_value_from_the_environment_names_the_variable() {
    let b = dead_port();
    let plan = ["plan", "-b", b.as_str(), "-t", "t"];
    let run = ["run", "-b", b.as_str(), "-t", "t", "-g", "g"];
    let produce = ["produce", "-b", b.as_str(), "-t", "t"];
    for (args, var, value, flag) in [
        (&plan[..], "KSWARM_WORKERS", "abc", "--workers"),
        (&plan, "KSWARM_CONNECT_TIMEOUT", "0s", "--connect-timeout"),
        (&plan, "KSWARM_LOG_FORMAT", "xml", "--log-format"),
        (
            &run,
            "KSWARM_MAX_IN_FLIGHT_BYTES",
            "lots",
            "--max-in-flight-bytes",
        ),
        (&run, "KSWARM_X", "fetch.max.bytes=lots", "-X"),
        (&produce, "KSWARM_LINGER", "soon", "--linger"),
        (&produce, "KSWARM_PRODUCE_BATCH_SIZE", "0", "--batch-size"),
    ] {
        let (code, err) = kswarm_env(args, &[(var, value)]);
        assert_eq!(code, Some(2), "{var}={value}: {err}");
        let last = support::last_error(&err);
        assert!(
            last.contains(&format!("{flag} (from {var})")),
            "{var}={value} names {flag} and {var}: {last}"
        );
    }
    // The same value typed on the command line names the flag alone.
    let (code, err) = kswarm_env(&["plan", "-b", &b, "-t", "t", "-w", "abc"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--workers") && !err.contains("KSWARM_WORKERS"),
        "{err}"
    );
}

/// The flags of `kswarm SUB --help` that show no `[env: KSWARM_..]`.
fn flags_without_env(sub: &str) -> Vec<String> {
    let out = support::kswarm().args([sub, "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    // A flag's entry: its line (two to six spaces, then `-`), then its text.
    let mut entries: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let indent = line.len() - line.trim_start().len();
        if (2..=6).contains(&indent) && line.trim_start().starts_with('-') {
            let names = line.trim().split(" <").next().unwrap().to_string();
            entries.push((names, String::new()));
        } else if let Some((_, text)) = entries.last_mut() {
            text.push_str(line);
        }
    }
    entries
        .into_iter()
        .filter(|(_, text)| !text.contains("[env: KSWARM_"))
        .map(|(names, _)| names)
        .collect()
}

#[test]
fn every_flag_has_its_kswarm_variable_but_the_listed_exceptions() {
    // The list of exceptions (docs/flags.md).
    let exceptions = ["-h, --help", "-V, --version", "--apply"];
    for sub in ["run", "plan", "status", "produce"] {
        let missing: Vec<String> = flags_without_env(sub)
            .into_iter()
            .filter(|f| !exceptions.contains(&f.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "kswarm {sub}: flags without a KSWARM_* variable: {missing:?}"
        );
    }
}

/// scripts/demo.sh against the broker under test, with this build of kswarm
/// and TMPDIR in `tmp`: (exit code, its last line).
fn demo(tmp: &Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out: Output = Command::new(support::repo_root().join("scripts/demo.sh"))
        .env("KSWARM_DEMO_BROKERS", support::brokers())
        .env("KSWARM_BIN", support::kswarm_bin())
        .env("KSWARM_DEMO_LINES", "2000")
        .env("TMPDIR", tmp)
        .env_remove("KSWARM_STATE_DIR")
        .envs(env.iter().copied())
        .output()
        .expect("run scripts/demo.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "demo {env:?} -> {:?}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or("").to_string();
    (out.status.code(), last)
}

#[test]
fn the_demo_ends_with_its_verdict_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, last) = demo(tmp.path(), &[]);
    assert_eq!(code, Some(0), "{last}");
    assert_eq!(last, "PASS: all 2000 records handled");
    // A demo that cannot wait for its records says FAIL, with what is missing.
    let (code, last) = demo(tmp.path(), &[("KSWARM_DEMO_WAIT", "0")]);
    assert_ne!(code, Some(0), "{last}");
    assert!(
        last.starts_with("FAIL: ") && last.contains("of 2000 records not handled"),
        "{last}"
    );
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "the demo left {left:?} in its TMPDIR");
}
