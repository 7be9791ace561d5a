//! TEMPORARY stand-in for `kswarm worker` on the `supervisor` branch only,
//! until the real worker (src/worker.rs, on `main`) is wired: it speaks the
//! report contract without Kafka so the supervisor can be exercised. Dropped
//! when `main` is merged.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::WorkerArgs;
use crate::report::Report;

pub fn cmd(args: WorkerArgs) -> anyhow::Result<()> {
    if let Ok(want) = std::env::var("KSWARM_SUPERVISOR_PID") {
        if nix::unistd::getppid().as_raw().to_string() != want {
            anyhow::bail!("supervisor gone");
        }
    }
    let mut out = match args.report_fd {
        Some(fd) => Some(
            std::fs::OpenOptions::new()
                .write(true)
                .open(format!("/dev/fd/{fd}"))?,
        ),
        None => None,
    };
    let mut send = |r: Report| {
        if let Some(o) = &mut out {
            let _ = o.write_all(r.to_line().as_bytes());
        }
    };
    let term = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, term.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, term.clone())?;
    send(Report::Started {
        pid: std::process::id(),
    });
    if let Some(cmd) = &args.consume.exec {
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .spawn()?;
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_millis(300) {
            if let Some(st) = child.try_wait()? {
                if !st.success() {
                    eprintln!("stub worker {}: handler failed: {st}", args.slot);
                    send(Report::Fatal {
                        message: format!("handler exited: {st}"),
                    });
                    std::process::exit(1);
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    send(Report::Joined {
        member_id: format!("stub-{}-{}", args.slot, std::process::id()),
        generation: 1,
        partitions: vec![args.slot as i32],
    });
    loop {
        for _ in 0..5 {
            if term.load(Ordering::Relaxed) {
                send(Report::Stopping {
                    reason: "signal".into(),
                });
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        send(Report::Alive { records: 0 });
    }
}
