//! What sd_notify is told: READY=1 once every wanted worker has joined, and
//! a STATUS= line whenever the summary changes.

use tracing::info;

use super::{Action, Fleet, Notify};

/// What sd_notify has been told.
#[derive(Debug, Default)]
pub(super) struct Told {
    ready: bool,
    status: String,
}

impl Fleet {
    /// READY, the first time every wanted worker is a member.
    pub(super) fn check_ready(&mut self) -> Vec<Action> {
        if self.told.ready || self.is_shutting_down() {
            return Vec::new();
        }
        let all = self.slots[..self.target]
            .iter()
            .all(|s| s.membership().is_some());
        if !all {
            return Vec::new();
        }
        self.told.ready = true;
        info!(
            event = "all_joined",
            workers = self.target,
            "all {} workers joined",
            self.target
        );
        vec![Action::Notify(Notify::Ready)]
    }

    /// A STATUS= line when the summary changed.
    pub(super) fn status(&mut self) -> Vec<Action> {
        let joined = self
            .slots
            .iter()
            .filter(|s| s.membership().is_some())
            .count();
        let partitions: usize = self
            .slots
            .iter()
            .filter_map(|s| s.membership().map(|m| m.partitions.len()))
            .sum();
        let restarts: u64 = self.slots.iter().map(|s| s.restarts).sum();
        let line = format!(
            "{joined}/{} workers joined, {partitions} partitions owned, {restarts} restarts",
            self.target
        );
        if line == self.told.status {
            return Vec::new();
        }
        self.told.status = line.clone();
        vec![Action::Notify(Notify::Status(line))]
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::*;

    #[test]
    fn the_status_line_is_sent_when_it_changes_and_ready_once() {
        let t0 = Instant::now();
        let mut s = started(2, 10, t0);
        assert!(s.status().is_empty(), "unchanged since the last join");
        assert!(s.check_ready().is_empty(), "told already");
        s.exited(101, Exit::Code(1), t0);
        assert_eq!(
            s.told.status,
            "1/2 workers joined, 1 partitions owned, 1 restarts"
        );
    }
}
