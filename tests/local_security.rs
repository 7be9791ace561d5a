//! The state directory against another local user (issue: a state file in a
//! shared temp dir let any local user overwrite files as kswarm's user and
//! choose its group member ids). The attacker is `nobody`, through setpriv;
//! kswarm runs as this (root) user in a shared sticky directory like /tmp,
//! with fs.protected_symlinks off as in many containers. Needs root.
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{create_topic, run_state, wait_members, Run};

const NOBODY: &str = "65534";

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the second-user tests need root (to act as `nobody` with setpriv): run the suite as root, as CI does"
    );
}

/// Run a shell command as `nobody`.
fn as_nobody(script: &str) {
    let out = Command::new("setpriv")
        .args([
            "--reuid",
            NOBODY,
            "--regid",
            NOBODY,
            "--clear-groups",
            "sh",
            "-c",
            script,
        ])
        .output()
        .expect("setpriv");
    assert!(
        out.status.success(),
        "as nobody: {script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A world-writable sticky directory (like /tmp) and a victim file in a
/// private one.
fn shared_dir_and_victim(root: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let shared = root.join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let victim = root.join("victim.conf");
    std::fs::write(&victim, "precious\n").unwrap();
    (shared, victim)
}

#[test]
fn symlinks_planted_by_another_user_write_nothing_through() {
    require_root();
    let b = support::brokers();
    let (topic, group) = (support::unique("ls-link"), support::unique("g-link"));
    create_topic(&b, &topic, 1);
    let dir = tempfile::tempdir().unwrap();
    let (shared, victim) = shared_dir_and_victim(dir.path());
    let state = kswarm::state_file::state_path(&shared, &group, &topic);
    // The state file's name, and the temp names of the build before (the
    // state file's name plus a pid), for the next few hundred pids.
    let next = std::process::id();
    let mut script = format!("ln -s {} {}", victim.display(), state.display());
    let legacy = shared.join(format!("kswarm-{group}.json"));
    script.push_str(&format!(
        "; ln -s {} {}",
        victim.display(),
        legacy.display()
    ));
    for pid in next..next + 400 {
        script.push_str(&format!(
            "; ln -s {} {}.{pid}",
            victim.display(),
            legacy.display()
        ));
    }
    as_nobody(&script);
    let mut run = Run::new(&topic, &group)
        .exec("cat >/dev/null")
        .state(&shared)
        .spawn();
    wait_members(&shared, &group, &topic, 1, Duration::from_secs(60));
    assert_eq!(support::stop(&mut run), Some(0), "{}", run.stderr_text());
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "precious\n",
        "written through a symlink"
    );

    // A symlink for the lock file: kswarm refuses it, naming it, and
    // writes nothing through it either.
    let (topic2, group2) = (support::unique("ls-lock"), support::unique("g-lock"));
    create_topic(&b, &topic2, 1);
    let lock = shared.join(
        kswarm::state_file::state_path(&shared, &group2, &topic2)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace(".json", ".lock"),
    );
    as_nobody(&format!("ln -s {} {}", victim.display(), lock.display()));
    let mut run = Run::new(&topic2, &group2)
        .exec("cat >/dev/null")
        .state(&shared)
        .spawn();
    let st = run.wait(Duration::from_secs(30));
    assert_eq!(st.code(), Some(2), "{}", run.stderr_text());
    assert!(
        run.stderr_text().contains(&lock.display().to_string()),
        "{}",
        run.stderr_text()
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
}

#[test]
fn a_state_file_planted_by_another_user_is_ignored() {
    require_root();
    let b = support::brokers();
    let (topic, group) = (support::unique("ls-plant"), support::unique("g-plant"));
    create_topic(&b, &topic, 1);
    let dir = tempfile::tempdir().unwrap();
    let (shared, _) = shared_dir_and_victim(dir.path());
    let planted = format!(
        r#"{{"pid":999999,"group":"{group}","topic":"{topic}","workers":[],"members":[{{"slot":0,"member_id":"attacker-chosen-id-0"}}]}}"#
    );
    let state = kswarm::state_file::state_path(&shared, &group, &topic);
    let legacy = shared.join(format!("kswarm-{group}.json"));
    as_nobody(&format!(
        "printf '%s' '{planted}' > {}; printf '%s' '{planted}' > {}",
        state.display(),
        legacy.display()
    ));
    let mut run = Run::new(&topic, &group)
        .exec("cat >/dev/null")
        .state(&shared)
        .spawn();
    wait_members(&shared, &group, &topic, 1, Duration::from_secs(60));
    let s = run_state(&shared, &group, &topic).expect("its own state");
    let member = s.workers[0].member_id.clone().unwrap_or_default();
    assert!(
        !member.starts_with("attacker"),
        "joined under a planted id: {member}"
    );
    assert!(
        run.stderr_text().contains(&state.display().to_string()),
        "the warning names the planted file: {}",
        run.stderr_text()
    );
    assert_eq!(support::stop(&mut run), Some(0));
}

/// A state directory others can write to, without the sticky bit, is refused.
#[test]
fn a_state_directory_others_can_write_to_is_refused() {
    let b = support::brokers();
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut p = Run::new("t", "g").brokers(&b).bare().state(&open).spawn();
    let st = p.wait(Duration::from_secs(30));
    let err = p.stderr_text();
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(
        err.contains("KSWARM_STATE_DIR") && err.contains("sticky"),
        "{err}"
    );
}

/// `kswarm status` as `nobody`, no flags but the group's: (exit code, stdout, stderr).
fn status_as_nobody(group: &str, topic: &str) -> (Option<i32>, String, String) {
    let out = Command::new("setpriv")
        .args(["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups"])
        .arg(support::kswarm_bin())
        .args([
            "status",
            "-b",
            &support::brokers(),
            "-g",
            group,
            "-t",
            topic,
            "--json",
        ])
        .env_clear()
        .env("HOME", "/nonexistent")
        .env("PATH", "/usr/bin:/bin")
        .output()
        .expect("setpriv");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The shipped unit runs kswarm as root with its state in /run/kswarm (mode
/// 0755); an operator's `kswarm status`, as another user and with no flags
/// but the group's, finds it there. With the directory closed (0700) status
/// says which directory it could not read.
#[test]
fn an_operator_finds_a_root_service_in_run_kswarm() {
    require_root();
    let b = support::brokers();
    let run_dir = Path::new("/run/kswarm");
    /// Puts /run/kswarm's mode back however the test ends.
    struct Restore(Option<u32>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(mode) = self.0 {
                let _ =
                    std::fs::set_permissions("/run/kswarm", std::fs::Permissions::from_mode(mode));
            }
        }
    }
    let _restore = Restore(
        std::fs::metadata(run_dir)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777)
            .or(Some(0o700)),
    );
    std::fs::create_dir_all(run_dir).unwrap();
    std::fs::set_permissions(run_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (topic, group) = (support::unique("svc"), support::unique("g-svc"));
    create_topic(&b, &topic, 2);
    let mut run = Run::new(&topic, &group).workers(2).state(run_dir).spawn();
    wait_members(run_dir, &group, &topic, 2, Duration::from_secs(60));

    let (code, out, err) = status_as_nobody(&group, &topic);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["supervisor"]["pid"], run.pid(), "{v}");
    assert_eq!(v["supervisor"]["workers"].as_array().unwrap().len(), 2);

    std::fs::set_permissions(run_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (code, out, err) = status_as_nobody(&group, &topic);
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["supervisor"].is_null(), "{v}");
    assert_eq!(v["unreadable"][0], "/run/kswarm", "{v}");

    assert_eq!(support::stop(&mut run), Some(0));
    let state = kswarm::state_file::state_path(run_dir, &group, &topic);
    let _ = std::fs::remove_file(state.with_extension("lock"));
    let _ = std::fs::remove_file(state);
}
