//! The file descriptors a worker inherits from its supervisor: the contract
//! between `supervisor::spawn` (which places the pipes on these numbers) and
//! `worker` (which reads and writes them). Both import it; neither imports
//! the other for it.

/// The fd number on which a worker finds its report pipe.
pub const REPORT_FD: i32 = 3;
/// The fd number on which a worker reads its settings (JSON, to EOF).
pub const CONFIG_FD: i32 = 4;
