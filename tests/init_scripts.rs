//! The init scripts: the SysV script started, queried, reloaded and stopped
//! for real against the test broker (with temporary pid and log files), and
//! the systemd unit checked by `systemd-analyze verify` and by its keys.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::{alive, output_text};

struct SysV {
    dir: tempfile::TempDir,
    defaults: PathBuf,
}

impl SysV {
    fn new(settings: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let defaults = dir.path().join("default-kswarm");
        let mut text = String::from("# test settings\n");
        for (k, v) in settings {
            text.push_str(&format!("{k}='{v}'\n"));
        }
        std::fs::write(&defaults, text).unwrap();
        SysV { dir, defaults }
    }

    fn pidfile(&self) -> PathBuf {
        self.dir.path().join("run/kswarm.pid")
    }

    fn logfile(&self) -> PathBuf {
        self.dir.path().join("log/kswarm.log")
    }

    fn cmd(&self, action: &str) -> Output {
        Command::new("sh")
            .arg(support::repo_root().join("scripts/kswarm.init"))
            .arg(action)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KSWARM_DEFAULTS", &self.defaults)
            .env("KSWARM_BIN", support::kswarm_bin())
            .env("KSWARM_PIDFILE", self.pidfile())
            .env("KSWARM_LOGFILE", self.logfile())
            .env("KSWARM_STOP_TIMEOUT", "20")
            .env("KSWARM_STATE_DIR", self.dir.path())
            .output()
            .expect("run kswarm.init")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.logfile()).unwrap_or_default()
    }

    fn wait_log(&self, text: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "no {text:?} in the log within {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn pid(&self) -> i32 {
        std::fs::read_to_string(self.pidfile())
            .expect("pid file")
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for SysV {
    fn drop(&mut self) {
        if let Ok(p) = std::fs::read_to_string(self.pidfile()) {
            if let Ok(pid) = p.trim().parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// Distinct worker pids the supervisor logged as joined (rejoins count once).
fn worker_pids(log: &str) -> Vec<i32> {
    let mut pids: Vec<i32> = log
        .lines()
        .filter(|l| l.contains(" joined generation"))
        .filter_map(|l| {
            let rest = &l[l.find(" pid ")? + 5..];
            rest.split_whitespace().next()?.parse().ok()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

#[test]
fn sysv_script_starts_reports_reloads_and_stops_kswarm() {
    let brokers = support::brokers();
    let topic = support::unique("init-t");
    let group = support::unique("init-g");
    let s = SysV::new(&[
        ("KSWARM_BROKERS", &brokers),
        ("KSWARM_TOPIC", &topic),
        ("KSWARM_GROUP", &group),
        ("KSWARM_WORKERS", "2"),
        ("KSWARM_SHUTDOWN_TIMEOUT", "5s"),
    ]);

    let st = s.cmd("status");
    assert_eq!(
        st.status.code(),
        Some(3),
        "not running yet: {}",
        output_text(&st)
    );

    let start = s.cmd("start");
    assert_eq!(start.status.code(), Some(0), "{}", output_text(&start));
    let pid = s.pid();
    assert!(alive(pid));
    s.wait_log("all 2 workers joined", Duration::from_secs(30));

    let again = s.cmd("start");
    assert_eq!(again.status.code(), Some(0), "{}", output_text(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("already running"));
    assert_eq!(s.pid(), pid, "a second start starts nothing");

    let st = s.cmd("status");
    assert_eq!(st.status.code(), Some(0), "{}", output_text(&st));
    assert!(String::from_utf8_lossy(&st.stdout).contains(&format!("pid {pid}")));

    let reload = s.cmd("reload");
    assert_eq!(reload.status.code(), Some(0), "{}", output_text(&reload));
    s.wait_log("rolling restart done", Duration::from_secs(60));
    let workers = worker_pids(&s.log());
    assert_eq!(
        workers.len(),
        4,
        "2 workers, then 2 replacements:\n{}",
        s.log()
    );

    let stop = s.cmd("stop");
    assert_eq!(stop.status.code(), Some(0), "{}", output_text(&stop));
    assert!(!alive(pid), "supervisor gone after stop");
    let left: Vec<i32> = workers.iter().copied().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "workers left: {left:?}");
    assert!(!s.pidfile().exists());
    assert!(
        s.log().contains("all workers stopped cleanly"),
        "{}",
        s.log()
    );

    let st = s.cmd("status");
    assert_eq!(st.status.code(), Some(3), "{}", output_text(&st));
    let stop = s.cmd("stop");
    assert_eq!(
        stop.status.code(),
        Some(0),
        "stopping a stopped service is fine: {}",
        output_text(&stop)
    );
}

#[test]
fn sysv_start_fails_loudly_on_bad_settings() {
    let s = SysV::new(&[
        ("KSWARM_BROKERS", &support::brokers()),
        ("KSWARM_TOPIC", "bad topic name"),
        ("KSWARM_GROUP", "g"),
    ]);
    let start = s.cmd("start");
    assert_ne!(start.status.code(), Some(0), "{}", output_text(&start));
    let err = String::from_utf8_lossy(&start.stderr);
    assert!(
        err.contains("--topic"),
        "the log tail names the flag: {}",
        output_text(&start)
    );
    assert!(!s.pidfile().exists());
    assert_eq!(s.cmd("status").status.code(), Some(3));
}

fn unit_text() -> String {
    std::fs::read_to_string(support::repo_root().join("scripts/kswarm.service")).unwrap()
}

/// `key=value` of one section of the unit (comments skipped).
fn unit_keys(text: &str, section: &str) -> Vec<(String, String)> {
    let mut current = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            current = line.trim_matches(|c| c == '[' || c == ']').to_string();
            continue;
        }
        if current == section {
            let (k, v) = line.split_once('=').expect("key=value");
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    out
}

#[test]
fn systemd_unit_has_the_keys_kswarm_relies_on() {
    let text = unit_text();
    let svc = unit_keys(&text, "Service");
    let get = |k: &str| {
        svc.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("[Service] {k}= missing"))
    };
    assert_eq!(get("Type"), "notify");
    assert_eq!(get("NotifyAccess"), "main");
    assert_eq!(get("KillMode"), "mixed");
    assert_eq!(get("Restart"), "on-failure");
    assert_eq!(get("EnvironmentFile"), "-/etc/default/kswarm");
    assert_eq!(get("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert!(get("ExecStart").ends_with("kswarm run"));
    let stop: u64 = get("TimeoutStopSec").parse().unwrap();
    assert!(
        stop > 10 + 2,
        "above the default --shutdown-timeout plus margin"
    );
    assert!(unit_keys(&text, "Install")
        .iter()
        .any(|(k, _)| k == "WantedBy"));
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists())
        .expect("systemd-analyze not found: install systemd (apt-get install systemd) to verify the unit");
    let dir = tempfile::tempdir().unwrap();
    // verify checks that ExecStart's binary exists: point it at ours.
    let unit = unit_text().replace(
        "/usr/local/bin/kswarm",
        support::kswarm_bin().to_str().unwrap(),
    );
    let path = dir.path().join("kswarm.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("kswarm.service"),
        "warnings about the unit: {err}"
    );
}
