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
}

/// `$KSWARM_STATE_DIR/kswarm-<group>.json` (default: the temp dir).
pub fn state_path(group: &str) -> PathBuf {
    let dir = std::env::var_os("KSWARM_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
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

pub fn remove_state(group: &str, pid: u32) {
    let path = state_path(group);
    if read_state_file(&path).is_some_and(|s| s.pid == pid) {
        let _ = std::fs::remove_file(path);
    }
}

fn read_state_file(path: &std::path::Path) -> Option<SupervisorState> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The state a supervisor of `group` and `topic` on this host left behind
/// when it died without cleaning up (SIGKILL, crash), if any: its workers'
/// member ids let the next `kswarm run` take their places back.
pub fn read_orphaned(group: &str, topic: &str) -> Option<SupervisorState> {
    let s = read_state_file(&state_path(group))?;
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

    #[test]
    fn path_is_sanitized() {
        let p = state_path("a/b c");
        assert!(p.to_string_lossy().ends_with("kswarm-a_b_c.json"));
    }
}
