//! The worker process: how it starts (`kswarm worker`, or `kswarm spawned`
//! as a child of `kswarm run`, its settings on [`CONFIG_FD`]), what it sets
//! up before its runtime (close-on-exec pipes, allocator tunables, a check
//! that the supervisor still lives), then the runtime that runs the worker.
//!
//! Runs on a current-thread tokio runtime: one worker is meant to use one core,
//! and handler children must be spawned from a thread that lives as long as the
//! worker (PR_SET_PDEATHSIG fires when the spawning thread exits).

use anyhow::Context as _;

use crate::cli::WorkerArgs;
use crate::config::WorkerConfig;
use crate::error::ExitWith;
use crate::fds::CONFIG_FD;

/// `kswarm worker FLAGS`: a worker on its own (tests, debugging).
pub fn cmd(args: WorkerArgs) -> anyhow::Result<()> {
    let cfg = WorkerConfig::from_args(&args)?;
    crate::connect::prepare(&cfg.connect)?;
    start(cfg)
}

/// `kswarm spawned`: a worker of `kswarm run`, its settings as JSON on fd 4.
pub fn spawned() -> anyhow::Result<()> {
    use std::io::Read as _;
    let mut text = Vec::new();
    std::fs::File::open(format!("/dev/fd/{}", CONFIG_FD))
        .and_then(|mut f| f.read_to_end(&mut text))
        .context(
            "cannot read the worker's settings on fd 4 (kswarm spawned is started by kswarm run)",
        )?;
    let cfg: WorkerConfig =
        serde_json::from_slice(&text).context("the worker's settings on fd 4 are not readable")?;
    // The supervisor warned about the settings already.
    crate::transport::install(&cfg.connect.security)?;
    start(cfg)
}

fn start(cfg: WorkerConfig) -> anyhow::Result<()> {
    check_parent_alive()?;
    // The pipes to the supervisor are ours, not the handler's: a handler
    // that kept the report pipe open would hide our end from the supervisor.
    for fd in [cfg.report_fd, Some(CONFIG_FD)].into_iter().flatten() {
        let _ = nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
    }
    keep_freed_buffers();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the worker's runtime")?;
    rt.block_on(super::run(cfg))
}

/// A worker allocates and frees a buffer of a few hundred KiB per fetch.
/// glibc's defaults (mmap above 128 KiB, trim the heap top above 256 KiB,
/// both adjusted as it goes) return such buffers to the kernel and fault
/// fresh zeroed pages in for the next one: in `perf record` of `kswarm run
/// --exec` that was several percent of the worker's CPU in page faults and
/// page clearing, and fixed thresholds took the run's CPU per 1M records from
/// 0.39 to about 0.30 s at the same peak RSS. Freed buffers are kept and reused.
fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets two allocator tunables; it is called once,
    // before the runtime (and any other thread) starts.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
    }
}

/// The supervisor sets PR_SET_PDEATHSIG before exec; if it died before that,
/// we are already an orphan: stop now instead of consuming unsupervised.
fn check_parent_alive() -> anyhow::Result<()> {
    if let Ok(want) = std::env::var("KSWARM_SUPERVISOR_PID") {
        let parent = nix::unistd::getppid().as_raw().to_string();
        if parent != want {
            return Err(
                ExitWith(1, format!("supervisor (pid {want}) is gone; worker exits")).into(),
            );
        }
    }
    Ok(())
}
