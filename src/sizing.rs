//! Usable cores (CPU affinity capped by a cgroup CPU quota) and the partition
//! plan. The parsers take file contents so tests feed them fake cgroup files;
//! [`usable_cores`] is the thin reader over the real ones. [`plan`] is pure.

use std::path::{Path, PathBuf};

use crate::config::{PartitionsSpec, WorkersSpec};

/// How many cores this process may use, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cores {
    /// CPUs in the affinity mask (None: could not be read).
    pub affinity: Option<u32>,
    /// Cores allowed by a cgroup CPU quota (None: no quota).
    pub quota: Option<u32>,
    /// min(affinity, quota), at least 1.
    pub usable: u32,
}

impl Cores {
    pub fn new(affinity: Option<u32>, quota: Option<u32>) -> Self {
        let fallback = || {
            std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1)
        };
        let base = affinity.unwrap_or_else(fallback);
        let usable = quota.map_or(base, |q| base.min(q)).max(1);
        Self {
            affinity,
            quota,
            usable,
        }
    }

    /// e.g. "CPU affinity 8, cgroup quota 2".
    pub fn explain(&self) -> String {
        let aff = self
            .affinity
            .map_or("CPU affinity unknown".to_string(), |a| {
                format!("CPU affinity {a}")
            });
        let quota = self.quota.map_or("no cgroup CPU quota".to_string(), |q| {
            format!("cgroup CPU quota {q}")
        });
        format!("{aff}, {quota}")
    }
}

/// Read the affinity mask and the cgroup quota of this process.
pub fn usable_cores() -> Cores {
    let proc_cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mounts = parse_mountinfo(&mountinfo);
    let quota = cgroup_cpu_limit(&mounts, &proc_cgroup, |p| std::fs::read_to_string(p).ok());
    Cores::new(affinity_count(), quota)
}

/// CPUs in this process's affinity mask (what `taskset` sets).
pub fn affinity_count() -> Option<u32> {
    use nix::sched::{sched_getaffinity, CpuSet};
    use nix::unistd::Pid;
    let set = sched_getaffinity(Pid::from_raw(0)).ok()?;
    let n = (0..CpuSet::count())
        .filter(|&i| set.is_set(i).unwrap_or(false))
        .count() as u32;
    (n > 0).then_some(n)
}

/// cgroup v2 `cpu.max`: "QUOTA PERIOD" or "max PERIOD". Returns the whole
/// cores the quota allows (rounded up), None for "max" or an unreadable file.
pub fn parse_cpu_max(contents: &str) -> Option<u32> {
    let mut it = contents.split_whitespace();
    let quota = it.next()?;
    if quota == "max" {
        return None;
    }
    let period = it.next().unwrap_or("100000");
    quota_to_cores(quota.parse().ok()?, period.parse().ok()?)
}

/// cgroup v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us`; -1 means no quota.
pub fn parse_cfs_quota(quota: &str, period: &str) -> Option<u32> {
    quota_to_cores(quota.trim().parse().ok()?, period.trim().parse().ok()?)
}

fn quota_to_cores(quota: i64, period: i64) -> Option<u32> {
    if quota <= 0 || period <= 0 {
        return None;
    }
    let cores = (quota + period - 1) / period;
    Some(cores.clamp(1, u32::MAX as i64) as u32)
}

/// This process's cgroup paths from `/proc/self/cgroup`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcCgroup {
    /// The unified (v2) hierarchy's path: the "0::" line.
    pub v2: Option<String>,
    /// The v1 hierarchy holding the `cpu` controller.
    pub v1_cpu: Option<String>,
}

pub fn parse_proc_cgroup(contents: &str) -> ProcCgroup {
    let mut out = ProcCgroup::default();
    for line in contents.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            out.v2 = Some(path.to_string());
        } else if controllers.split(',').any(|c| c == "cpu") {
            out.v1_cpu = Some(path.to_string());
        }
    }
    out
}

/// Where the cgroup hierarchies are mounted (from `/proc/self/mountinfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupMounts {
    /// (root of the mount inside the hierarchy, mount point) of cgroup2.
    pub v2: Option<(String, PathBuf)>,
    /// Same for the v1 hierarchy with the `cpu` controller.
    pub v1_cpu: Option<(String, PathBuf)>,
}

pub fn parse_mountinfo(contents: &str) -> CgroupMounts {
    let mut out = CgroupMounts::default();
    for line in contents.lines() {
        // id parent maj:min root mountpoint options [optional..] - fstype source superoptions
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 5 || r.is_empty() {
            continue;
        }
        let root = unescape_mount(l[3]);
        let point = PathBuf::from(unescape_mount(l[4]));
        match r[0] {
            "cgroup2" if out.v2.is_none() => out.v2 = Some((root, point)),
            "cgroup" if out.v1_cpu.is_none() => {
                let opts = r.get(2).copied().unwrap_or("");
                if opts.split(',').any(|o| o == "cpu") {
                    out.v1_cpu = Some((root, point));
                }
            }
            _ => {}
        }
    }
    out
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c));
        if b[i] == b'\\' && octal {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The directory of cgroup `path` under a mount of the hierarchy whose root is `root`.
fn cgroup_dir(mount: &(String, PathBuf), path: &str) -> PathBuf {
    let (root, point) = mount;
    let rel = if root != "/" {
        path.strip_prefix(root.as_str()).unwrap_or(path)
    } else {
        path
    };
    point.join(rel.trim_start_matches('/'))
}

/// The smallest CPU quota (in whole cores) on the way from this process's
/// cgroup up to the mount point, over v2 `cpu.max` and v1 CFS files.
/// `read` returns a file's contents (None: missing).
pub fn cgroup_cpu_limit(
    mounts: &CgroupMounts,
    proc_cgroup: &str,
    read: impl Fn(&Path) -> Option<String>,
) -> Option<u32> {
    let paths = parse_proc_cgroup(proc_cgroup);
    let mut limit: Option<u32> = None;
    let mut take = |c: Option<u32>| {
        if let Some(c) = c {
            limit = Some(limit.map_or(c, |l| l.min(c)));
        }
    };
    if let (Some(mount), Some(path)) = (&mounts.v2, &paths.v2) {
        for dir in up_to(&cgroup_dir(mount, path), &mount.1) {
            take(read(&dir.join("cpu.max")).and_then(|s| parse_cpu_max(&s)));
        }
    }
    if let (Some(mount), Some(path)) = (&mounts.v1_cpu, &paths.v1_cpu) {
        for dir in up_to(&cgroup_dir(mount, path), &mount.1) {
            let q = read(&dir.join("cpu.cfs_quota_us"));
            let p = read(&dir.join("cpu.cfs_period_us"));
            if let (Some(q), Some(p)) = (q, p) {
                take(parse_cfs_quota(&q, &p));
            }
        }
    }
    limit
}

/// `dir` and its parents up to and including `top` (just `dir` if it is not under `top`).
fn up_to(dir: &Path, top: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    if !dir.starts_with(top) {
        return out;
    }
    let mut cur = dir;
    while cur != top {
        match cur.parent() {
            Some(p) => {
                out.push(p.to_path_buf());
                cur = p;
            }
            None => break,
        }
    }
    out
}

/// "1 partition", "3 partitions".
pub fn n_partitions(n: u32) -> String {
    if n == 1 {
        "1 partition".to_string()
    } else {
        format!("{n} partitions")
    }
}

/// What sizing will do to the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The topic is missing: create it with `target` partitions.
    Create,
    /// The topic has fewer partitions than `target`: add partitions.
    Grow,
    /// The topic already has `target` partitions.
    Nothing,
    /// The topic has more partitions than wanted; Kafka cannot remove them.
    CannotShrink,
    /// `-p keep`: leave the topic as it is.
    Keep,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Grow => "grow",
            Action::Nothing => "nothing",
            Action::CannotShrink => "cannot-shrink",
            Action::Keep => "keep",
        }
    }
}

/// The sizing decision for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub cores: u32,
    pub workers: u32,
    /// Workers of the group on other hosts (and foreign members), which
    /// `-p auto` sizes for too (see `group_size`).
    pub others: u32,
    /// Partitions now (None: the topic is missing).
    pub current: Option<u32>,
    /// Partitions wanted (None only for `-p keep` on a missing topic).
    pub target: Option<u32>,
    pub action: Action,
    pub notes: Vec<String>,
}

impl Plan {
    /// Partitions the topic has once the plan is carried out (None: missing).
    pub fn final_partitions(&self) -> Option<u32> {
        match self.action {
            Action::Create | Action::Grow => self.target,
            Action::Nothing | Action::CannotShrink | Action::Keep => self.current,
        }
    }

    /// One line for a person: what the plan does.
    pub fn describe_action(&self, topic: &str) -> String {
        let cur = self.current.unwrap_or(0);
        let tgt = self.target.unwrap_or(0);
        match self.action {
            Action::Create => format!(
                "create topic '{topic}' with {}",
                crate::sizing::n_partitions(tgt)
            ),
            Action::Grow => format!(
                "grow topic '{topic}' from {cur} to {}",
                crate::sizing::n_partitions(tgt)
            ),
            Action::Nothing => format!(
                "nothing to do: topic '{topic}' has {}",
                crate::sizing::n_partitions(cur)
            ),
            Action::CannotShrink => {
                format!(
                    "cannot shrink: topic '{topic}' keeps its {} (wanted {tgt})",
                    crate::sizing::n_partitions(cur)
                )
            }
            Action::Keep if self.current.is_none() => {
                format!("keep (-p keep): topic '{topic}' is missing and will not be created")
            }
            Action::Keep => format!(
                "keep (-p keep): topic '{topic}' stays at {}",
                crate::sizing::n_partitions(cur)
            ),
        }
    }
}

/// Decide workers and partitions. Pure: `cores` is the usable core count,
/// `current` the topic's partition count now (None: missing).
#[cfg(test)]
pub fn plan(
    cores: u32,
    workers: WorkersSpec,
    partitions: PartitionsSpec,
    current: Option<u32>,
) -> Plan {
    plan_for_group(cores, workers, partitions, current, 0)
}

/// [`plan`] for a group whose other hosts run `others` workers: `-p auto`
/// wants one partition per worker of the whole group.
pub fn plan_for_group(
    cores: u32,
    workers: WorkersSpec,
    partitions: PartitionsSpec,
    current: Option<u32>,
    others: u32,
) -> Plan {
    let cores = cores.max(1);
    let workers = match workers {
        WorkersSpec::Auto => cores,
        WorkersSpec::Fixed(n) => n.max(1),
    };
    let mut notes = Vec::new();
    if workers > cores {
        notes.push(format!(
            "{workers} workers on {cores} usable cores: workers will share cores"
        ));
    }
    let target = match partitions {
        PartitionsSpec::Auto => Some(
            workers
                .saturating_add(others)
                .min(crate::config::MAX_PARTITIONS as u32),
        ),
        PartitionsSpec::Fixed(n) => Some(n.max(1)),
        PartitionsSpec::Keep => current,
    };
    let action = match (partitions, current, target) {
        (PartitionsSpec::Keep, _, _) => Action::Keep,
        (_, None, _) => Action::Create,
        (_, Some(c), Some(t)) if c < t => Action::Grow,
        (_, Some(c), Some(t)) if c > t => Action::CannotShrink,
        _ => Action::Nothing,
    };
    if action == Action::CannotShrink {
        notes.push(format!(
            "the topic has {} partitions, more than the {} wanted; Kafka cannot remove partitions, so it keeps them",
            current.unwrap_or(0),
            target.unwrap_or(0)
        ));
    }
    if partitions == PartitionsSpec::Keep && current.is_none() {
        notes.push(
            "-p keep never creates a topic: create it, or use -p auto / -p N to let kswarm create it"
                .to_string(),
        );
    }
    let draft = Plan {
        cores,
        workers,
        others,
        current,
        target,
        action,
        notes,
    };
    let mut notes = draft.notes.clone();
    if let Some(parts) = draft.final_partitions() {
        notes.extend(share_note(parts, workers + others));
        if others > 0 {
            notes.push(format!(
                "the group has {others} more worker(s) on other hosts, so {} in all",
                workers + others
            ));
        }
    }
    Plan { notes, ..draft }
}

/// [`plan_for_group`] for a share group (`--group-protocol share`, KIP-932):
/// its members share partitions record by record, so the partition count
/// need not match the workers. `-p auto` creates a missing topic with one
/// partition per worker as usual, but never grows an existing one;
/// `-p N` and `-p keep` are as for any group. The notes about idle workers
/// make way for one about sharing.
pub fn for_share_group(plan: Plan, partitions: PartitionsSpec) -> Plan {
    let mut plan = plan;
    if partitions == PartitionsSpec::Auto && plan.current.is_some() {
        plan.target = plan.current;
        plan.action = Action::Nothing;
    }
    plan.notes.retain(|n| {
        !n.starts_with("fewer partitions")
            && !n.starts_with("more partitions")
            && !n.starts_with("the topic has")
    });
    if let Some(parts) = plan.final_partitions() {
        plan.notes.push(format!(
            "share group: the {} workers share the topic's {} record by record; the partition count need not match the workers{}",
            plan.workers + plan.others,
            n_partitions(parts),
            if partitions == PartitionsSpec::Auto && plan.current.is_some() {
                " (-p auto does not grow the topic for a share group)"
            } else {
                ""
            }
        ));
    }
    plan
}

/// How `parts` partitions spread over `workers` workers, when it is not one each.
fn share_note(parts: u32, workers: u32) -> Option<String> {
    use std::cmp::Ordering;
    match parts.cmp(&workers) {
        Ordering::Equal => None,
        Ordering::Greater => {
            let lo = parts / workers;
            let each = if parts % workers == 0 {
                format!("{lo}")
            } else {
                format!("{lo} or {}", lo + 1)
            };
            Some(format!(
                "more partitions ({parts}) than workers ({workers}): the partitions are shared out, {each} per worker"
            ))
        }
        Ordering::Less => Some(format!(
            "fewer partitions ({parts}) than workers ({workers}): {} workers will stay idle until partitions are added",
            workers - parts
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PartitionsSpec as P;

    #[test]
    fn share_groups_keep_the_topic_as_it_is_under_auto() {
        let p = for_share_group(plan(2, WorkersSpec::Fixed(8), P::Auto, Some(2)), P::Auto);
        assert_eq!(
            (p.action, p.target, p.final_partitions()),
            (Action::Nothing, Some(2), Some(2))
        );
        assert!(
            p.notes.iter().any(|n| n.contains("need not match")),
            "{:?}",
            p.notes
        );
        assert!(!p.notes.iter().any(|n| n.contains("idle")), "{:?}", p.notes);
        // A missing topic is still created with one partition per worker.
        let p = for_share_group(plan(2, WorkersSpec::Fixed(8), P::Auto, None), P::Auto);
        assert_eq!((p.action, p.target), (Action::Create, Some(8)));
        // -p N grows as for any group.
        let p = for_share_group(
            plan(2, WorkersSpec::Fixed(8), P::Fixed(4), Some(2)),
            P::Fixed(4),
        );
        assert_eq!((p.action, p.target), (Action::Grow, Some(4)));
    }
    use WorkersSpec as W;

    #[test]
    fn cpu_max() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("200000 100000\n"), Some(2));
        assert_eq!(parse_cpu_max("150000 100000"), Some(2));
        assert_eq!(parse_cpu_max("50000 100000"), Some(1));
        assert_eq!(parse_cpu_max("1000 100000"), Some(1));
        assert_eq!(parse_cpu_max(""), None);
        assert_eq!(parse_cpu_max("garbage"), None);
    }

    #[test]
    fn cfs_quota() {
        assert_eq!(parse_cfs_quota("-1\n", "100000\n"), None);
        assert_eq!(parse_cfs_quota("300000", "100000"), Some(3));
        assert_eq!(parse_cfs_quota("250000", "100000"), Some(3));
        assert_eq!(parse_cfs_quota("x", "100000"), None);
        assert_eq!(parse_cfs_quota("100000", "0"), None);
    }

    #[test]
    fn proc_cgroup_v1_v2_hybrid() {
        let v2 = parse_proc_cgroup("0::/user.slice/app.scope\n");
        assert_eq!(v2.v2.as_deref(), Some("/user.slice/app.scope"));
        assert_eq!(v2.v1_cpu, None);
        let hybrid = parse_proc_cgroup(
            "9:name=systemd:/\n4:memory:/x\n2:cpu,cpuacct:/docker/abc\n1:cpuset:/\n0::/\n",
        );
        assert_eq!(hybrid.v1_cpu.as_deref(), Some("/docker/abc"));
        assert_eq!(hybrid.v2.as_deref(), Some("/"));
        // "cpuacct" alone or "cpuset" is not "cpu".
        assert_eq!(
            parse_proc_cgroup("2:cpuacct:/a\n1:cpuset:/b\n").v1_cpu,
            None
        );
    }

    #[test]
    fn mountinfo() {
        let m = parse_mountinfo(
            "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
             32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct\n\
             34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n\
             41 31 0:38 /kube/pod1 /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n",
        );
        assert_eq!(
            m.v1_cpu,
            Some(("/".to_string(), PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")))
        );
        assert_eq!(
            m.v2,
            Some((
                "/kube/pod1".to_string(),
                PathBuf::from("/sys/fs/cgroup/unified")
            ))
        );
        let esc = parse_mountinfo("1 0 0:1 / /mnt/with\\040space rw - cgroup2 none rw\n");
        assert_eq!(esc.v2.unwrap().1, PathBuf::from("/mnt/with space"));
    }

    fn fake_fs<'a>(files: &'a [(&'a str, &'a str)]) -> impl Fn(&Path) -> Option<String> + 'a {
        move |p: &Path| {
            files
                .iter()
                .find(|(name, _)| Path::new(name) == p)
                .map(|(_, c)| c.to_string())
        }
    }

    #[test]
    fn limit_walks_up_and_takes_the_smallest() {
        let mounts = CgroupMounts {
            v2: Some(("/".into(), PathBuf::from("/cg"))),
            v1_cpu: None,
        };
        let files = [
            ("/cg/a/b/cpu.max", "max 100000"),
            ("/cg/a/cpu.max", "300000 100000"),
            ("/cg/cpu.max", "max 100000"),
        ];
        assert_eq!(
            cgroup_cpu_limit(&mounts, "0::/a/b\n", fake_fs(&files)),
            Some(3)
        );
        let files = [("/cg/a/b/cpu.max", "max 100000")];
        assert_eq!(
            cgroup_cpu_limit(&mounts, "0::/a/b\n", fake_fs(&files)),
            None
        );
        // A namespaced mount: the process path includes the mount root.
        let mounts = CgroupMounts {
            v2: Some(("/pod".into(), PathBuf::from("/cg"))),
            v1_cpu: None,
        };
        let files = [("/cg/c/cpu.max", "100000 100000")];
        assert_eq!(
            cgroup_cpu_limit(&mounts, "0::/pod/c\n", fake_fs(&files)),
            Some(1)
        );
    }

    #[test]
    fn limit_v1_and_hybrid() {
        let mounts = CgroupMounts {
            v2: Some(("/".into(), PathBuf::from("/u"))),
            v1_cpu: Some(("/".into(), PathBuf::from("/cpu"))),
        };
        let files = [
            ("/cpu/d/cpu.cfs_quota_us", "200000\n"),
            ("/cpu/d/cpu.cfs_period_us", "100000\n"),
            ("/cpu/cpu.cfs_quota_us", "-1\n"),
            ("/cpu/cpu.cfs_period_us", "100000\n"),
            ("/u/cpu.max", "max 100000"),
        ];
        let pc = "2:cpu,cpuacct:/d\n0::/\n";
        assert_eq!(cgroup_cpu_limit(&mounts, pc, fake_fs(&files)), Some(2));
        assert_eq!(cgroup_cpu_limit(&mounts, "", fake_fs(&files)), None);
    }

    #[test]
    fn limit_from_a_real_directory_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("sys/fs/cgroup");
        std::fs::create_dir_all(root.join("system.slice/svc.service")).unwrap();
        std::fs::write(root.join("cpu.max"), "max 100000\n").unwrap();
        std::fs::write(root.join("system.slice/cpu.max"), "400000 100000\n").unwrap();
        std::fs::write(
            root.join("system.slice/svc.service/cpu.max"),
            "150000 100000\n",
        )
        .unwrap();
        let mountinfo = format!(
            "30 1 0:26 / {} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n",
            root.display()
        );
        let mounts = parse_mountinfo(&mountinfo);
        let read = |p: &Path| std::fs::read_to_string(p).ok();
        assert_eq!(
            cgroup_cpu_limit(&mounts, "0::/system.slice/svc.service\n", read),
            Some(2)
        );
        assert_eq!(
            cgroup_cpu_limit(&mounts, "0::/system.slice\n", read),
            Some(4)
        );
        assert_eq!(cgroup_cpu_limit(&mounts, "0::/\n", read), None);
    }

    #[test]
    fn auto_sizes_for_every_host_of_the_group() {
        // this host: 2 workers; the others: 4 + 8
        let p = plan_for_group(2, W::Auto, P::Auto, Some(6), 12);
        assert_eq!((p.target, p.action), (Some(14), Action::Grow));
        assert!(p
            .notes
            .iter()
            .any(|n| n.contains("12 more worker(s) on other hosts")));
        // a fixed count ignores the others; a topic never shrinks
        assert_eq!(
            plan_for_group(2, W::Auto, P::Fixed(3), Some(3), 12).action,
            Action::Nothing
        );
        assert_eq!(
            plan_for_group(2, W::Auto, P::Auto, Some(20), 12).action,
            Action::CannotShrink
        );
    }

    #[test]
    fn cores_combine() {
        assert_eq!(Cores::new(Some(8), Some(2)).usable, 2);
        assert_eq!(Cores::new(Some(2), Some(8)).usable, 2);
        assert_eq!(Cores::new(Some(4), None).usable, 4);
        assert!(Cores::new(None, None).usable >= 1);
        assert!(Cores::new(Some(8), Some(2)).explain().contains("quota 2"));
    }

    #[test]
    fn this_process_has_at_least_one_core() {
        let c = usable_cores();
        assert!(c.usable >= 1);
        assert!(c.affinity.is_some());
    }

    #[test]
    fn plan_missing_topic_is_created_with_the_worker_count() {
        let p = plan(4, W::Auto, P::Auto, None);
        assert_eq!(
            (p.workers, p.target, p.action),
            (4, Some(4), Action::Create)
        );
        assert_eq!(p.final_partitions(), Some(4));
        assert!(p.notes.is_empty(), "{:?}", p.notes);
        let p = plan(4, W::Fixed(2), P::Fixed(6), None);
        assert_eq!(
            (p.workers, p.target, p.action),
            (2, Some(6), Action::Create)
        );
        assert!(
            p.notes.iter().any(|n| n.contains("shared out")),
            "{:?}",
            p.notes
        );
    }

    #[test]
    fn plan_grows_a_small_topic() {
        let p = plan(8, W::Auto, P::Auto, Some(3));
        assert_eq!((p.target, p.action), (Some(8), Action::Grow));
        assert_eq!(p.final_partitions(), Some(8));
    }

    #[test]
    fn plan_nothing_when_it_matches() {
        let p = plan(2, W::Auto, P::Auto, Some(2));
        assert_eq!(p.action, Action::Nothing);
        assert_eq!(p.final_partitions(), Some(2));
        assert!(p.notes.is_empty());
    }

    #[test]
    fn plan_never_shrinks_and_says_the_extra_partitions_are_shared() {
        let p = plan(4, W::Auto, P::Auto, Some(10));
        assert_eq!((p.target, p.action), (Some(4), Action::CannotShrink));
        assert_eq!(p.final_partitions(), Some(10));
        assert!(
            p.notes.iter().any(|n| n.contains("cannot remove")),
            "{:?}",
            p.notes
        );
        assert!(
            p.notes
                .iter()
                .any(|n| n.contains("shared out, 2 or 3 per worker")),
            "{:?}",
            p.notes
        );
        let p = plan(4, W::Fixed(4), P::Fixed(2), Some(8));
        assert_eq!(p.action, Action::CannotShrink);
        assert!(
            p.notes.iter().any(|n| n.contains("2 per worker")),
            "{:?}",
            p.notes
        );
    }

    #[test]
    fn plan_keep() {
        let p = plan(4, W::Auto, P::Keep, Some(12));
        assert_eq!((p.target, p.action), (Some(12), Action::Keep));
        assert_eq!(p.final_partitions(), Some(12));
        assert!(p.notes.iter().any(|n| n.contains("shared out")));
        let p = plan(4, W::Auto, P::Keep, Some(1));
        assert!(
            p.notes
                .iter()
                .any(|n| n.contains("3 workers will stay idle")),
            "{:?}",
            p.notes
        );
        let p = plan(4, W::Auto, P::Keep, None);
        assert_eq!((p.target, p.action), (None, Action::Keep));
        assert_eq!(p.final_partitions(), None);
        assert!(p.notes.iter().any(|n| n.contains("-p keep")));
    }

    #[test]
    fn plan_fixed_workers_beyond_cores() {
        let p = plan(1, W::Fixed(3), P::Auto, None);
        assert_eq!((p.workers, p.target), (3, Some(3)));
        assert!(
            p.notes.iter().any(|n| n.contains("share cores")),
            "{:?}",
            p.notes
        );
        assert_eq!(plan(0, W::Auto, P::Auto, None).workers, 1);
    }

    #[test]
    fn plan_fewer_partitions_than_workers_with_fixed_target() {
        let p = plan(8, W::Auto, P::Fixed(2), None);
        assert_eq!((p.target, p.action), (Some(2), Action::Create));
        assert!(p
            .notes
            .iter()
            .any(|n| n.contains("6 workers will stay idle")));
    }

    #[test]
    fn describe_names_the_numbers() {
        assert!(plan(4, W::Auto, P::Auto, Some(2))
            .describe_action("t")
            .contains("from 2 to 4"));
        assert!(plan(4, W::Auto, P::Auto, Some(9))
            .describe_action("t")
            .contains("keeps its 9"));
    }
}
