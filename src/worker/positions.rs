//! The offsets of one assignment, pure: where each partition began, what the
//! handler acknowledged, what is committed; and what is carried from one
//! generation to the next.
//!
//! - A partition starts at its committed offset, or at `--from` when nothing
//!   is committed; but where this worker acknowledged records in an earlier
//!   generation that it could not commit then (the group moved on, the
//!   broker was away), it starts after them and commits them: every record
//!   below a carried offset was handled.
//! - A commit writes, per partition, the offset after the last acknowledged
//!   record, only where that moved.
//! - A handler whose acknowledgements cannot be trusted takes back the
//!   commits of the assignment: each partition goes back to where the
//!   assignment began.

use std::collections::BTreeMap;

/// One partition's positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Next offset to commit (one past the last acknowledged record).
    pub acked_next: i64,
    /// What the broker has committed for us (-1: nothing).
    pub committed: i64,
}

/// The partitions of one assignment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Positions {
    parts: BTreeMap<i32, Position>,
    /// Where each partition began in this assignment.
    assigned_at: BTreeMap<i32, i64>,
}

impl Positions {
    /// The positions of the `owned` partitions from what the broker has
    /// committed and what this worker carries; and the partitions that have
    /// neither, to start where `--from` says ([`Positions::start_at`]).
    pub fn plan(
        owned: &[i32],
        broker: &BTreeMap<i32, Option<i64>>,
        carried: &BTreeMap<i32, i64>,
    ) -> (Positions, Vec<i32>) {
        let mut out = Positions::default();
        let mut from = Vec::new();
        for &p in owned {
            let committed = broker.get(&p).copied().flatten().filter(|&o| o >= 0);
            match (committed, carried.get(&p).copied()) {
                // Handled by us, not yet committed: commit it, do not deliver it again.
                (c, Some(mine)) if c.is_none_or(|c| mine > c) => {
                    out.insert(p, mine, c.unwrap_or(-1));
                }
                (Some(c), _) => out.insert(p, c, c),
                (None, _) => from.push(p),
            }
        }
        (out, from)
    }

    /// Partition `p` starts at `offset` (from `--from`), nothing committed.
    pub fn start_at(&mut self, p: i32, offset: i64) {
        self.insert(p, offset, offset);
    }

    fn insert(&mut self, p: i32, start: i64, committed: i64) {
        self.parts.insert(
            p,
            Position {
                acked_next: start,
                committed,
            },
        );
        self.assigned_at.insert(p, start);
    }

    /// Where each partition's records are read from.
    pub fn starts(&self) -> impl Iterator<Item = (i32, i64)> + '_ {
        self.parts.iter().map(|(&p, pos)| (p, pos.acked_next))
    }

    /// (partition, committed next offset) of the partitions the broker has
    /// a commit for.
    pub fn committed_offsets(&self) -> impl Iterator<Item = (i32, i64)> + '_ {
        self.parts
            .iter()
            .filter(|(_, p)| p.committed >= 0)
            .map(|(&k, p)| (k, p.committed))
    }

    /// The handler acknowledged everything of `p` up to `offset`.
    pub fn acked(&mut self, p: i32, offset: i64) {
        if let Some(pos) = self.parts.get_mut(&p) {
            pos.acked_next = pos.acked_next.max(offset + 1);
        }
    }

    /// What a commit must write now: (partition, next offset) where it moved.
    pub fn due(&self) -> Vec<(i32, i64)> {
        self.parts
            .iter()
            .filter(|(_, pos)| pos.acked_next != pos.committed)
            .map(|(&p, pos)| (p, pos.acked_next))
            .collect()
    }

    /// Records acknowledged and not committed.
    pub fn uncommitted(&self) -> u64 {
        self.parts
            .values()
            .map(|p| (p.acked_next - p.committed.max(0)).max(0) as u64)
            .sum()
    }

    /// The broker took these commits.
    pub fn committed(&mut self, done: &[(i32, i64)]) {
        for &(p, o) in done {
            if let Some(pos) = self.parts.get_mut(&p) {
                pos.committed = o;
            }
        }
    }

    /// The commits that take this assignment back to where it began: for
    /// every partition whose committed offset moved since.
    pub fn take_back(&self) -> Vec<(i32, i64)> {
        self.parts
            .iter()
            .filter_map(|(&p, pos)| {
                let start = *self.assigned_at.get(&p)?;
                (pos.committed != start).then_some((p, start))
            })
            .collect()
    }

    /// At the end of the assignment: what stays uncommitted is carried to a
    /// later one (see the module docs); what is committed is no more.
    pub fn carry_into(&self, carried: &mut BTreeMap<i32, i64>) {
        for (&p, pos) in &self.parts {
            if pos.acked_next > pos.committed {
                carried.insert(p, pos.acked_next);
            } else {
                carried.remove(&p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map<V: Copy>(pairs: &[(i32, V)]) -> BTreeMap<i32, V> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn a_partition_starts_at_its_commit_or_where_we_carried_it_or_from_the_flag() {
        let broker = map(&[(0, Some(100)), (1, Some(100)), (2, None), (3, None)]);
        let carried = map(&[(1, 150), (3, 40), (0, 90)]);
        let (mut pos, from) = Positions::plan(&[0, 1, 2, 3], &broker, &carried);
        assert_eq!(
            from,
            vec![2],
            "only 2 has neither a commit nor a carried offset"
        );
        pos.start_at(2, 7);
        let starts: Vec<(i32, i64)> = pos.starts().collect();
        // 0: a carried offset below the commit is stale; 1 and 3: carried.
        assert_eq!(starts, vec![(0, 100), (1, 150), (2, 7), (3, 40)]);
        // The carried ones are due at the first commit.
        assert_eq!(pos.due(), vec![(1, 150), (3, 40)]);
        assert_eq!(pos.uncommitted(), 50 + 40);
    }

    #[test]
    fn commits_follow_the_acknowledgements() {
        let (mut pos, _) =
            Positions::plan(&[0, 1], &map(&[(0, Some(10)), (1, Some(20))]), &map(&[]));
        assert!(pos.due().is_empty());
        pos.acked(0, 14);
        pos.acked(0, 12); // an older ack changes nothing
        assert_eq!(pos.due(), vec![(0, 15)]);
        pos.committed(&pos.due());
        assert!(pos.due().is_empty());
        pos.acked(1, 29);
        let mut carried = map(&[(0, 3)]);
        pos.carry_into(&mut carried);
        assert_eq!(
            carried,
            map(&[(1, 30)]),
            "0 is committed: no longer carried"
        );
    }

    #[test]
    fn taking_back_returns_each_partition_to_where_the_assignment_began() {
        let broker = map(&[(0, Some(10)), (1, None)]);
        let (mut pos, from) = Positions::plan(&[0, 1, 2], &broker, &map(&[(1, 5)]));
        assert_eq!(from, vec![2]);
        pos.start_at(2, 0);
        pos.acked(0, 19);
        pos.acked(1, 8);
        pos.committed(&pos.due());
        // 1 began at its carried offset 5: handled before, by trusted acks.
        assert_eq!(pos.take_back(), vec![(0, 10), (1, 5)]);
        let untouched = Positions::plan(&[0], &map(&[(0, Some(3))]), &map(&[])).0;
        assert!(untouched.take_back().is_empty());
    }
}
