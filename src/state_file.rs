//! The supervisor's view of its workers, written to a small JSON file on every
//! change so that `kswarm status` on the same host can show who owns what.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerState {
    pub slot: u32,
    pub pid: u32,
    pub member_id: Option<String>,
    pub generation: Option<i32>,
    pub partitions: Vec<i32>,
    pub records: u64,
    pub restarts: u32,
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotMember {
    pub slot: u32,
    pub member_id: String,
}

/// `$KSWARM_STATE_DIR/kswarm-<group>.json` (default: the temp dir).
pub fn state_path(group: &str) -> PathBuf {
    let dir = std::env::var_os("KSWARM_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    state_path_in(&dir, group)
}

fn state_path_in(dir: &std::path::Path, group: &str) -> PathBuf {
    let safe: String = group
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("kswarm-{safe}.json"))
}

/// Write atomically (temp file + rename); failures only cost `status` detail.
pub fn write_state(state: &SupervisorState) {
    let path = state_path(&state.group);
    let tmp = path.with_extension(format!("json.{}", state.pid));
    if let Ok(text) = serde_json::to_vec_pretty(state) {
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }
}

fn read_state_file(path: &std::path::Path) -> Option<SupervisorState> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The state the last supervisor of `group` and `topic` on this host left
/// behind, once it is gone (stopped, or killed before it could clean up):
/// its slots' member ids let the next `kswarm run` join under them. After a
/// kill those members are still in the group, and joining under their ids
/// takes their places back instead of waiting for their sessions to expire;
/// after a clean stop a coordinator that forgot them hands out new ids.
pub fn read_previous(group: &str, topic: &str) -> Option<SupervisorState> {
    previous_in(read_state_file(&state_path(group))?, topic)
}

fn previous_in(s: SupervisorState, topic: &str) -> Option<SupervisorState> {
    let gone = matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(s.pid as i32), None),
        Err(nix::errno::Errno::ESRCH)
    );
    (gone && s.topic == topic && s.pid != std::process::id()).then_some(s)
}

/// The state of a live supervisor of `group` on this host, if any.
pub fn read_state(group: &str) -> Option<SupervisorState> {
    let s = read_state_file(&state_path(group))?;
    let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(s.pid as i32), None).is_ok();
    alive.then_some(s)
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
    fn path_is_sanitized() {
        let p = state_path_in(std::path::Path::new("/x"), "a/b c");
        assert!(p.to_string_lossy().ends_with("kswarm-a_b_c.json"));
    }
}
