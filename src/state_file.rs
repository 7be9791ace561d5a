//! The supervisor's view of its workers, kept in a small JSON file per group
//! and topic so that `kswarm status` on the same host can show who owns
//! what, and so that the next `kswarm run` can take back the group members a
//! killed one left behind (see [`read_previous`]).
//!
//! # Where, and why it is safe
//! The state directory is private: `KSWARM_STATE_DIR`, else `/run/kswarm`
//! for root, else `$XDG_RUNTIME_DIR/kswarm`, else `~/.local/state/kswarm`,
//! created with mode 0700. A directory that other users can write to is
//! refused, unless it has the sticky bit (like /tmp), where nobody can
//! replace another user's files. Files are written through a fresh temp file
//! (O_EXCL, mode 0600) renamed into place, and read with O_NOFOLLOW; a state
//! file is trusted only if this user owns it and nobody else can write it,
//! since its member ids decide which group members a new run takes over.
//!
//! # One supervisor per group and topic on a host
//! `kswarm run` holds an exclusive `flock` on `kswarm-GROUP.TOPIC.lock` for
//! its whole life. A second run for the same group and topic on the same
//! host is refused (exit 2) instead of both taking over the same members and
//! consuming everything twice; more workers are what `-w` and TTIN are for.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::config::UsageError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerState {
    pub slot: u32,
    pub pid: u32,
    pub member_id: Option<String>,
    pub generation: Option<i32>,
    pub partitions: Vec<i32>,
    pub records: u64,
    pub restarts: u32,
    /// The slot's last restart: why and when (absent before the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_restart: Option<crate::metrics::LastRestart>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisorState {
    pub pid: u32,
    pub group: String,
    pub topic: String,
    pub workers: Vec<WorkerState>,
    /// The group member id of every slot that had one, running or not: what
    /// the next `kswarm run` for this group joins under (see `read_previous`).
    #[serde(default)]
    pub members: Vec<SlotMember>,
}

impl SupervisorState {
    /// Every group member id this state names: its workers' and its slots'.
    pub fn member_ids(&self) -> std::collections::BTreeSet<String> {
        self.workers
            .iter()
            .filter_map(|w| w.member_id.clone())
            .chain(self.members.iter().map(|m| m.member_id.clone()))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotMember {
    pub slot: u32,
    pub member_id: String,
}

const ENV: &str = "KSWARM_STATE_DIR";

fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// The default state directory of this user (before `KSWARM_STATE_DIR`).
pub fn default_dir(
    euid: u32,
    xdg_runtime: Option<PathBuf>,
    home: Option<PathBuf>,
) -> Option<PathBuf> {
    if euid == 0 {
        return Some(PathBuf::from("/run/kswarm"));
    }
    if let Some(x) = xdg_runtime.filter(|p| p.is_absolute()) {
        return Some(x.join("kswarm"));
    }
    home.filter(|p| p.is_absolute())
        .map(|h| h.join(".local/state/kswarm"))
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The state directory of `kswarm run`, created (mode 0700) if missing, and
/// checked: a directory others can write to is refused (exit 2).
pub fn dir_for_run() -> Result<PathBuf, UsageError> {
    let (dir, named) = match env_path(ENV) {
        Some(d) => (d, format!("{ENV}={{}}")),
        None => {
            let d = default_dir(euid(), env_path("XDG_RUNTIME_DIR"), env_path("HOME")).ok_or_else(
                || {
                    UsageError(format!(
                        "no state directory: HOME is not set; set {ENV} to a private directory"
                    ))
                },
            )?;
            (d, "the state directory {}".to_string())
        }
    };
    let name = named.replace("{}", &dir.display().to_string());
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| {
                UsageError(format!(
                    "cannot create {name}: {e}; create it (mode 0700) or set {ENV} to a directory of yours"
                ))
            })?;
    }
    check_dir(&dir, euid()).map_err(|why| {
        UsageError(format!(
            "{name}: {why}; use a directory only you can write to (mode 0700), e.g. unset {ENV} for the default"
        ))
    })?;
    Ok(dir)
}

/// Whether `dir` is safe to keep state in for user `uid`.
fn check_dir(dir: &Path, uid: u32) -> Result<(), String> {
    let md = std::fs::metadata(dir).map_err(|e| format!("cannot read it ({e})"))?;
    if !md.is_dir() {
        return Err("not a directory".into());
    }
    dir_verdict(md.uid(), md.mode(), uid)
}

/// The rule of [`check_dir`] on plain numbers (owner, mode, our uid).
fn dir_verdict(owner: u32, mode: u32, uid: u32) -> Result<(), String> {
    let sticky = mode & 0o1000 != 0;
    let others_write = mode & 0o022 != 0;
    if others_write && !sticky {
        return Err(format!(
            "other users can write to it (mode {:o}) and it has no sticky bit, so they could plant or replace state files",
            mode & 0o7777
        ));
    }
    if owner != uid && !others_write {
        return Err(format!(
            "it belongs to uid {owner}, not to this user (uid {uid})"
        ));
    }
    Ok(())
}

/// Whether a state file with this owner and mode may be trusted by `uid`.
fn file_trusted(owner: u32, mode: u32, uid: u32, or_root: bool) -> bool {
    (owner == uid || (or_root && owner == 0)) && mode & 0o022 == 0
}

/// `GROUP.TOPIC` in a file name: bytes outside `[A-Za-z0-9_-]` as `%XX`, so
/// that no two (group, topic) pairs share a name.
fn key(group: &str, topic: &str) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    format!("{}.{}", enc(group), enc(topic))
}

pub fn state_path(dir: &Path, group: &str, topic: &str) -> PathBuf {
    dir.join(format!("kswarm-{}.json", key(group, topic)))
}

fn lock_path(dir: &Path, group: &str, topic: &str) -> PathBuf {
    dir.join(format!("kswarm-{}.lock", key(group, topic)))
}

/// The exclusive right to run `group` and `topic` on this host, held until
/// dropped (or the process ends).
#[derive(Debug)]
pub struct RunLock {
    _lock: Flock<File>,
}

/// Take the run lock of `group` and `topic`. Refused (exit 2) when another
/// live `kswarm run` holds it, naming its pid.
pub fn lock(dir: &Path, group: &str, topic: &str) -> Result<RunLock, UsageError> {
    let path = lock_path(dir, group, topic);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|e| UsageError(format!("cannot open the lock file {}: {e}", path.display())))?;
    let md = file
        .metadata()
        .map_err(|e| UsageError(format!("cannot read the lock file {}: {e}", path.display())))?;
    if md.uid() != euid() {
        return Err(UsageError(format!(
            "the lock file {} belongs to uid {}, not to this user; remove it, or set {ENV} to a private directory",
            path.display(),
            md.uid()
        )));
    }
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(RunLock { _lock: l }),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
            let who = read_trusted(&state_path(dir, group, topic), false)
                .map(|s| format!(" (pid {})", s.pid))
                .unwrap_or_default();
            Err(UsageError(format!(
                "another kswarm run{who} already consumes --topic {topic} as --group {group} on this host; \
                 two would take over the same group members and consume everything twice. Stop it first, \
                 or change its number of workers (-w, or TTIN/TTOU to it)"
            )))
        }
        Err((_, e)) => Err(UsageError(format!(
            "cannot lock {}: {e}; set {ENV} to a local directory",
            path.display()
        ))),
    }
}

/// A state file, if it may be trusted (see the module docs); a file that
/// may not is ignored with a warning naming it.
fn read_trusted(path: &Path, or_root: bool) -> Option<SupervisorState> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let md = file.metadata().ok()?;
    if !md.is_file() || !file_trusted(md.uid(), md.mode(), euid(), or_root) {
        tracing::warn!(
            "ignoring the state file {}: it is not this user's own, or others can write to it (owner uid {}, mode {:o})",
            path.display(),
            md.uid(),
            md.mode() & 0o7777
        );
        return None;
    }
    let mut text = Vec::new();
    file.read_to_end(&mut text).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Write atomically: a new temp file (O_EXCL) in the same directory,
/// renamed into place. It is readable by all (0644: pids, member ids and
/// partitions, no secret), so that an operator's `kswarm status` can read a
/// service's state where the directory lets them in (the shipped unit's
/// /run/kswarm is 0755); only its owner can write it, as ever. Failures only cost `status` detail and the take-over
/// of members after a kill, so they are logged, not fatal.
pub fn write_state(dir: &Path, state: &SupervisorState) {
    let path = state_path(dir, &state.group, &state.topic);
    let result = (|| -> std::io::Result<()> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".kswarm-state-")
            .tempfile_in(dir)?;
        serde_json::to_writer_pretty(&mut tmp, state)?;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(())
    })();
    if let Err(e) = result {
        tracing::debug!("cannot write the state file {}: {e}", path.display());
    }
}

/// The state the last supervisor of `group` and `topic` on this host left
/// behind, once it is gone (stopped, or killed before it could clean up):
/// its slots' member ids let the next `kswarm run` join under them. After a
/// kill those members are still in the group, and joining under their ids
/// takes their places back instead of waiting for their sessions to expire;
/// after a clean stop a coordinator that forgot them hands out new ids.
/// Call it holding the run lock: only one run can take them.
pub fn read_previous(dir: &Path, group: &str, topic: &str) -> Option<SupervisorState> {
    previous_in(read_trusted(&state_path(dir, group, topic), false)?, topic)
}

fn previous_in(s: SupervisorState, topic: &str) -> Option<SupervisorState> {
    let gone = matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(s.pid as i32), None),
        Err(nix::errno::Errno::ESRCH)
    );
    (gone && s.topic == topic && s.pid != std::process::id()).then_some(s)
}

/// The member ids that the state file of `group` and `topic` in `dir`
/// names, live supervisor or gone: this host's members, whatever the broker
/// says of their client ids (see `group_size::OwnMembers`). Ids of members
/// that have left match nothing in the group, so an old file does no harm.
pub fn own_member_ids(dir: &Path, group: &str, topic: &str) -> std::collections::BTreeSet<String> {
    read_trusted(&state_path(dir, group, topic), false)
        .filter(|s| s.group == group && s.topic == topic)
        .map(|s| s.member_ids())
        .unwrap_or_default()
}

/// [`own_member_ids`] from the first state file `kswarm status` would read
/// (for `kswarm plan`).
pub fn own_member_ids_for_status(group: &str, topic: &str) -> std::collections::BTreeSet<String> {
    dirs_for_status()
        .into_iter()
        .find_map(|dir| {
            read_trusted(&state_path(&dir, group, topic), true)
                .filter(|s| s.group == group && s.topic == topic)
        })
        .map(|s| s.member_ids())
        .unwrap_or_default()
}

/// Where `kswarm status` looks: `KSWARM_STATE_DIR` if set; else root's
/// directory, this user's runtime directory and this user's state directory.
pub fn dirs_for_status() -> Vec<PathBuf> {
    if let Some(d) = env_path(ENV) {
        return vec![d];
    }
    let mut out = vec![PathBuf::from("/run/kswarm")];
    if let Some(d) = default_dir(euid(), env_path("XDG_RUNTIME_DIR"), env_path("HOME")) {
        out.push(d);
    }
    if let Some(h) = env_path("HOME") {
        out.push(h.join(".local/state/kswarm"));
    }
    out.dedup();
    out
}

/// State directories `kswarm status` may not read (a service's, under
/// another user), to say why it shows no supervisor.
pub fn unreadable_dirs_for_status() -> Vec<PathBuf> {
    dirs_for_status()
        .into_iter()
        .filter(|d| {
            matches!(std::fs::read_dir(d), Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied)
        })
        .collect()
}

/// The state of a live supervisor of `group` and `topic` on this host, if any.
pub fn read_state(group: &str, topic: &str) -> Option<SupervisorState> {
    dirs_for_status().into_iter().find_map(|dir| {
        let s = read_trusted(&state_path(&dir, group, topic), true)?;
        // EPERM: it lives, under another user (a service run as root).
        let alive = !matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(s.pid as i32), None),
            Err(nix::errno::Errno::ESRCH)
        );
        alive.then_some(s)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(pid: u32, topic: &str) -> SupervisorState {
        SupervisorState {
            pid,
            group: "g".into(),
            topic: topic.into(),
            workers: vec![],
            members: vec![SlotMember {
                slot: 1,
                member_id: "kswarm-1-abc".into(),
            }],
        }
    }

    #[test]
    fn only_a_gone_supervisor_of_the_same_topic_hands_its_members_on() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let prev = previous_in(state(dead, "t"), "t").expect("a dead supervisor's state");
        assert_eq!(prev.members[0].member_id, "kswarm-1-abc");
        assert!(previous_in(state(dead, "t"), "other").is_none(), "topic");
        assert!(
            previous_in(state(std::process::id(), "t"), "t").is_none(),
            "alive"
        );
        // an old file without the members list still reads
        let old = r#"{"pid":1,"group":"g","topic":"t","workers":[]}"#;
        let s: SupervisorState = serde_json::from_str(old).unwrap();
        assert!(s.members.is_empty());
    }

    #[test]
    fn names_are_encoded_without_collisions() {
        let p = state_path(Path::new("/x"), "a/b c", "t");
        assert!(
            p.to_string_lossy().ends_with("kswarm-a%2Fb%20c.t.json"),
            "{p:?}"
        );
        assert_ne!(key("a.b", "c"), key("a", "b.c"));
        assert_ne!(key("a%2E", "b"), key("a.", "b"));
    }

    #[test]
    fn default_directories() {
        let home = Some(PathBuf::from("/home/u"));
        assert_eq!(
            default_dir(0, None, home.clone()),
            Some("/run/kswarm".into())
        );
        assert_eq!(
            default_dir(1000, Some("/run/user/1000".into()), home.clone()),
            Some("/run/user/1000/kswarm".into())
        );
        assert_eq!(
            default_dir(1000, None, home),
            Some("/home/u/.local/state/kswarm".into())
        );
        assert_eq!(default_dir(1000, Some("rel".into()), None), None);
    }

    #[test]
    fn only_private_or_sticky_directories_and_own_files() {
        assert!(dir_verdict(1000, 0o40700, 1000).is_ok());
        assert!(dir_verdict(1000, 0o40755, 1000).is_ok());
        assert!(dir_verdict(1000, 0o40777, 1000)
            .unwrap_err()
            .contains("sticky"));
        assert!(dir_verdict(1000, 0o40775, 1000).is_err(), "group-writable");
        assert!(dir_verdict(0, 0o41777, 1000).is_ok(), "/tmp");
        assert!(dir_verdict(0, 0o40755, 1000).unwrap_err().contains("uid 0"));
        assert!(file_trusted(1000, 0o100600, 1000, false));
        assert!(!file_trusted(1001, 0o100600, 1000, false), "another user's");
        assert!(
            !file_trusted(1000, 0o100666, 1000, false),
            "writable by others"
        );
        assert!(file_trusted(0, 0o100644, 1000, true), "root's, for status");
        assert!(!file_trusted(0, 0o100644, 1000, false));
    }

    #[test]
    fn state_round_trips_through_a_private_file_and_the_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = state(std::process::id(), "t");
        s.group = "grp".into();
        write_state(dir.path(), &s);
        let path = state_path(dir.path(), "grp", "t");
        let md = std::fs::metadata(&path).unwrap();
        assert_eq!(
            md.mode() & 0o777,
            0o644,
            "readable by operators, written by us"
        );
        assert_eq!(read_trusted(&path, false), Some(s));
        let held = lock(dir.path(), "grp", "t").expect("first lock");
        let second = lock(dir.path(), "grp", "t").unwrap_err();
        assert!(second.0.contains("already consumes"), "{second}");
        assert!(
            second.0.contains(&format!("pid {}", std::process::id())),
            "{second}"
        );
        assert!(lock(dir.path(), "grp", "other-topic").is_ok());
        drop(held);
        assert!(lock(dir.path(), "grp", "t").is_ok(), "free again");
    }
}
