//! The one way the tests start `kswarm run`: a builder that writes the
//! argument list (`run -b BROKERS -t TOPIC -g GROUP -w 1 -p keep ..`) once.
//!
//! ```ignore
//! let mut run = Run::new(&topic, &group)
//!     .workers(2)
//!     .exec(&handler)
//!     .args(["--commit-interval", "100ms"])
//!     .state(dir.path())
//!     .spawn();
//! ```
//!
//! Defaults, those of most tests: the suite's brokers, one worker, `-p keep`,
//! the shared state directory ([`state_dir`]), no `RUST_LOG`. `bare()` drops
//! `-w` and `-p` for the tests that run kswarm without them.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{brokers, kswarm, state_dir, Proc};

/// Where `-b` comes from: the suite's broker (read when the command is
/// built: a test against a cluster of its own need not set it), or another.
#[derive(Clone, Debug)]
enum Bootstrap {
    Suite,
    Given(String),
}

/// How to start one `kswarm run`; see the module docs.
#[derive(Clone, Debug)]
pub struct Run {
    name: String,
    /// Flags before the subcommand (`--log-format json`).
    global: Vec<OsString>,
    brokers: Bootstrap,
    topic: String,
    group: String,
    workers: Option<String>,
    partitions: Option<String>,
    /// Everything after `-p`, in the order given.
    args: Vec<OsString>,
    state: PathBuf,
    /// Environment to set, in order.
    env: Vec<(OsString, OsString)>,
}

impl Run {
    /// `kswarm run -b BROKERS -t TOPIC -g GROUP -w 1 -p keep`.
    pub fn new(topic: &str, group: &str) -> Self {
        Self {
            name: "kswarm run".into(),
            global: Vec::new(),
            brokers: Bootstrap::Suite,
            topic: topic.into(),
            group: group.into(),
            workers: Some("1".into()),
            partitions: Some("keep".into()),
            args: Vec::new(),
            state: state_dir(),
            env: Vec::new(),
        }
    }

    /// Without `-w` and `-p` (kswarm's own defaults).
    pub fn bare(mut self) -> Self {
        self.workers = None;
        self.partitions = None;
        self
    }

    /// The name the process goes by in failure messages.
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }

    /// `-b BROKERS` other than the suite's.
    pub fn brokers(mut self, brokers: &str) -> Self {
        self.brokers = Bootstrap::Given(brokers.into());
        self
    }

    /// `-w N`.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n.to_string());
        self
    }

    /// `-p keep|auto|N`.
    pub fn partitions(mut self, p: &str) -> Self {
        self.partitions = Some(p.into());
        self
    }

    /// Without `-p`.
    pub fn no_partitions(mut self) -> Self {
        self.partitions = None;
        self
    }

    /// `--exec HANDLER`.
    pub fn exec(self, handler: &str) -> Self {
        self.args(["--exec", handler])
    }

    /// `--format json|value|..`.
    pub fn format(self, format: &str) -> Self {
        self.args(["--format", format])
    }

    /// `--group-protocol classic|consumer|share`.
    pub fn protocol(self, protocol: &str) -> Self {
        self.args(["--group-protocol", protocol])
    }

    /// One more flag or value, after those given so far.
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.args.push(a.as_ref().to_owned());
        self
    }

    /// A flag and its value (`--metrics-addr ADDR`), after those given so far.
    pub fn flag(self, flag: &str, value: impl AsRef<OsStr>) -> Self {
        self.arg(flag).arg(value)
    }

    /// More flags and values, after those given so far.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Flags before `run` (`--log-format json`).
    pub fn global<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.global
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// `KSWARM_STATE_DIR`: where the run keeps its state file (and where
    /// [`run_state`](super::run_state) looks).
    pub fn state(mut self, dir: &Path) -> Self {
        self.state = dir.to_path_buf();
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// The argument list, `run` and all (after the global flags).
    pub fn argv(&self) -> Vec<OsString> {
        let mut v: Vec<OsString> = self.global.clone();
        v.push("run".into());
        match &self.brokers {
            Bootstrap::Suite => v.extend(["-b".into(), brokers().into()]),
            Bootstrap::Given(b) => v.extend(["-b".into(), b.into()]),
        }
        v.extend([
            "-t".into(),
            self.topic.clone().into(),
            "-g".into(),
            self.group.clone().into(),
        ]);
        if let Some(w) = &self.workers {
            v.extend(["-w".into(), w.into()]);
        }
        if let Some(p) = &self.partitions {
            v.extend(["-p".into(), p.into()]);
        }
        v.extend(self.args.iter().cloned());
        v
    }

    /// The command, not started (stdio as `Command` leaves it).
    pub fn command(&self) -> Command {
        let mut cmd = kswarm();
        cmd.args(self.argv()).env("KSWARM_STATE_DIR", &self.state);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Start it under a kill-on-drop [`Proc`] (stdout lines and stderr kept).
    pub fn spawn(&self) -> Proc {
        Proc::spawn(&self.name, self.command(), None)
    }

    /// [`spawn`](Self::spawn) under another name (one of several runs of
    /// the same arguments).
    pub fn spawn_as(&self, name: &str) -> Proc {
        Proc::spawn(name, self.command(), None)
    }

    /// Run it to the end (`Command::output`: stdin empty); its output.
    pub fn output(&self) -> Output {
        self.command().output().expect("run kswarm")
    }
}
