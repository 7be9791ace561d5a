//! `kswarm run`: the supervisor.
pub mod backoff;
pub mod slots;
