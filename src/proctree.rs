//! Process trees from `/proc`: who descends from whom, and SIGKILL for a
//! whole subtree. Used by the handler guard (`kswarm guard`, which kills what
//! a handler leaves behind) and by the supervisor (which kills processes that
//! a dead worker's handler left and that the kernel re-parented to it).
//!
//! The tree walk is pure ([`descendants`] over a table of (pid, ppid) pairs);
//! reading `/proc` and signalling are the thin shell around it.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid as NixPid;

pub type Pid = i32;

/// One live (not zombie) process: its pid and its parent's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    pub pid: Pid,
    pub ppid: Pid,
}

/// Make this process a child subreaper (PR_SET_CHILD_SUBREAPER): orphans of
/// its descendants are re-parented to it instead of to init.
pub fn become_subreaper() -> nix::Result<()> {
    // SAFETY: prctl with integer arguments only; no memory is passed.
    #[allow(unsafe_code)]
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
    nix::errno::Errno::result(r).map(drop)
}

/// Every descendant of `root` in `table` (children before grandchildren).
pub fn descendants(table: &[Proc], root: Pid) -> Vec<Pid> {
    let mut children: HashMap<Pid, Vec<Pid>> = HashMap::new();
    for p in table {
        if p.pid != p.ppid {
            children.entry(p.ppid).or_default().push(p.pid);
        }
    }
    let mut out = Vec::new();
    let mut queue = VecDeque::from([root]);
    while let Some(q) = queue.pop_front() {
        for &c in children.get(&q).map(Vec::as_slice).unwrap_or_default() {
            if c != root && !out.contains(&c) {
                out.push(c);
                queue.push_back(c);
            }
        }
    }
    out
}

/// The part of a `/proc/PID/stat` line we need: (ppid, state).
/// `pid (comm) state ppid ...`, where comm may hold spaces and parentheses.
pub fn parse_stat(stat: &str) -> Option<(Pid, char)> {
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

/// Every live process now (zombies left out: they are gone but for their
/// exit status, and their children were re-parented already).
pub fn snapshot() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<Pid>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (ppid, state) = parse_stat(&stat)?;
            (state != 'Z' && state != 'X').then_some(Proc { pid, ppid })
        })
        .collect()
}

/// The processes (pid, command name) that have the pipe `inode` open, other
/// than this one: who could still write to a handler's stdout, say.
pub fn pipe_holders(inode: u64) -> Vec<(Pid, String)> {
    let me = std::process::id() as Pid;
    let want = format!("pipe:[{inode}]");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for pid in dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<Pid>().ok())
        .filter(|&p| p != me)
    {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let holds = fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == want.as_str()));
        if holds {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            out.push((pid, comm.trim().to_string()));
        }
    }
    out
}

/// The live children of `parent` now.
pub fn children(parent: Pid) -> Vec<Pid> {
    snapshot()
        .into_iter()
        .filter(|p| p.ppid == parent)
        .map(|p| p.pid)
        .collect()
}

/// SIGKILL `roots` and everything descending from them, and go on until none
/// of them is left: a process may fork between a scan and the kill, so scan
/// again after each round (SIGKILLed processes cannot fork any more).
/// `reap` is called after each round: a caller that is the parent of some
/// of them must collect their exit statuses, or they stay as zombies (which
/// the scan skips anyway). Returns how many processes were signalled.
pub fn kill_trees(roots: &[Pid], reap: impl FnMut()) -> usize {
    kill_below(roots, true, reap)
}

/// [`kill_trees`] of everything below `root`, but not `root` itself (the
/// caller, say).
pub fn kill_descendants(root: Pid, reap: impl FnMut()) -> usize {
    kill_below(&[root], false, reap)
}

fn kill_below(roots: &[Pid], with_roots: bool, mut reap: impl FnMut()) -> usize {
    let mut killed = 0;
    let mut first = with_roots;
    for _ in 0..50 {
        let table = snapshot();
        let live = |p: Pid| table.iter().any(|q| q.pid == p);
        let mut victims: Vec<Pid> = Vec::new();
        for &r in roots {
            if first && live(r) {
                victims.push(r);
            }
            victims.extend(descendants(&table, r));
        }
        first = false;
        if victims.is_empty() {
            break;
        }
        for &v in &victims {
            if kill(NixPid::from_raw(v), Signal::SIGKILL).is_ok() {
                killed += 1;
            }
        }
        reap();
        std::thread::sleep(Duration::from_millis(5));
        reap();
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(pairs: &[(Pid, Pid)]) -> Vec<Proc> {
        pairs
            .iter()
            .map(|&(pid, ppid)| Proc { pid, ppid })
            .collect()
    }

    #[test]
    fn descendants_are_the_whole_subtree_and_nothing_else() {
        // 1 -> 10 -> {11 -> 13, 12}; 1 -> 20 (not ours); 0 -> 1
        let table = t(&[(1, 0), (10, 1), (11, 10), (12, 10), (13, 11), (20, 1)]);
        assert_eq!(descendants(&table, 10), vec![11, 12, 13]);
        assert_eq!(descendants(&table, 13), Vec::<Pid>::new());
        assert_eq!(descendants(&table, 99), Vec::<Pid>::new());
        let mut all = descendants(&table, 1);
        all.sort();
        assert_eq!(all, vec![10, 11, 12, 13, 20]);
    }

    #[test]
    fn stat_lines_with_odd_command_names() {
        assert_eq!(parse_stat("42 (sh) S 7 42 42 0 -1 4194304"), Some((7, 'S')));
        assert_eq!(parse_stat("42 (a ) (b) Z 9 42 42 0 -1"), Some((9, 'Z')));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_in_the_snapshot_under_its_parent() {
        let me = std::process::id() as Pid;
        let parent = nix::unistd::getppid().as_raw();
        let table = snapshot();
        assert!(table.contains(&Proc {
            pid: me,
            ppid: parent
        }));
        assert!(descendants(&table, parent).contains(&me));
    }
}
