//! No handler: records go to kswarm's own stdout, one line each, acknowledged
//! once written.
//!
//! # Whole lines from many processes
//! Every worker inherits the same stdout (usually a pipe). The kernel makes a
//! single `write` to a pipe atomic only up to PIPE_BUF (4 KiB); longer writes
//! from two processes can interleave. So each worker takes an exclusive
//! `flock` around every write of its buffer of whole lines.
//!
//! `flock` locks belong to an *open file description*, and all workers share
//! one (fd 1 was inherited through fork/exec), so locking fd 1 itself would
//! exclude nobody. Each worker therefore opens `/proc/self/fd/1` once: for a
//! pipe, FIFO, tty or regular file this yields a new open file description of
//! the same inode, whose flock excludes the other workers' ones (checked on
//! Linux pipes). Sockets (systemd's journal stream) cannot be reopened that
//! way; then the lock is a file in the temp dir named after stdout's device
//! and inode. If neither works, lines are written unlocked (still whole up to
//! 4 KiB) and a warning says so.
//!
//! Writes are blocking, on a thread of their own, so a slow reader of our
//! stdout never stalls the worker's runtime (heartbeats). Records arrive
//! already formatted, a chunk at a time (see [`Chunk`]), so the thread only
//! writes and counts. A closed stdout
//! (EPIPE, e.g. `kswarm run ... | head`) ends the handler with
//! `OutputClosed`. Rust ignores SIGPIPE in its binaries, so EPIPE is an error
//! value here, not a signal.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use tokio::sync::mpsc;

use super::{Chunk, Inner};

/// Bytes of chunks written under one hold of the lock at most.
const WRITE_CHUNK: usize = 256 * 1024;
/// The writer thread only writes; it needs little stack.
const STACK: usize = 64 * 1024;

pub(super) fn start(
    records: mpsc::UnboundedReceiver<Chunk>,
    events: mpsc::UnboundedSender<Inner>,
) -> anyhow::Result<()> {
    let lock = open_lock();
    std::thread::Builder::new()
        .name("kswarm-stdout".into())
        .stack_size(STACK)
        .spawn(move || run(records, events, lock))
        .map_err(|e| anyhow::anyhow!("cannot start the stdout writer thread: {e}"))?;
    Ok(())
}

fn run(
    mut records: mpsc::UnboundedReceiver<Chunk>,
    events: mpsc::UnboundedSender<Inner>,
    mut lock: Option<File>,
) {
    let mut ready: Vec<Chunk> = Vec::new();
    while let Some(first) = records.blocking_recv() {
        // Whatever else is ready goes out under the same hold of the lock.
        let mut bytes = first.bytes.len();
        ready.push(first);
        while bytes < WRITE_CHUNK {
            match records.try_recv() {
                Ok(c) => {
                    bytes += c.bytes.len();
                    ready.push(c);
                }
                Err(_) => break,
            }
        }
        let n = ready.iter().map(Chunk::len).sum();
        let written = write_locked(&mut lock, &ready);
        ready.clear();
        match written {
            Ok(()) => {
                if events.send(Inner::Acked(n)).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                let _ = events.send(Inner::OutputClosed);
                return;
            }
            Err(e) => {
                let _ = events.send(Inner::Failed(format!(
                    "writing records to stdout failed: {e}; check where kswarm's stdout goes \
                     (disk full? closed terminal?)"
                )));
                return;
            }
        }
    }
    let _ = events.send(Inner::Drained);
}

/// Writes every chunk to fd 1 while holding the lock (if any).
fn write_locked(lock: &mut Option<File>, chunks: &[Chunk]) -> io::Result<()> {
    let write_all = || chunks.iter().try_for_each(|c| write_all_fd1(&c.bytes));
    let Some(file) = lock.take() else {
        return write_all();
    };
    match Flock::lock(file, FlockArg::LockExclusive) {
        Ok(guard) => {
            let res = write_all();
            match guard.unlock() {
                Ok(file) => *lock = Some(file),
                Err((guard, _)) => drop(guard), // dropping also unlocks
            }
            res
        }
        Err((file, e)) => {
            tracing::warn!("stdout lock failed ({e}); writing without it from now on");
            drop(file);
            write_all()
        }
    }
}

/// `write(1, ..)` until everything is written; EINTR retried, EAGAIN (someone
/// made our stdout non-blocking) waited out with poll.
fn write_all_fd1(mut buf: &[u8]) -> io::Result<()> {
    let out = io::stdout();
    let fd = out.as_fd();
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLOUT)];
                let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A file whose flock stands for "I am writing to stdout" (see module docs).
fn open_lock() -> Option<File> {
    let reopened = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open("/proc/self/fd/1");
    let err = match reopened {
        Ok(f) => return Some(f),
        Err(e) => e,
    };
    // A pipe without reader also says ENXIO; the first write will then say
    // EPIPE, so the lock file below is only a harmless fallback for it.
    let meta = match std::fs::metadata("/proc/self/fd/1") {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!("stdout is not usable ({e}); records written there may fail");
            return None;
        }
    };
    let path =
        std::env::temp_dir().join(format!("kswarm-stdout-{}-{}.lock", meta.dev(), meta.ino()));
    match OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!(
                "cannot lock stdout (reopen: {err}; lock file {}: {e}); lines over 4 KiB from \
                 different workers may interleave",
                path.display()
            );
            None
        }
    }
}
