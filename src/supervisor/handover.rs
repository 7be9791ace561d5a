//! Member hand-over, decided from plain data: when a worker ends without
//! leaving the group, what becomes of its member.
//!
//! - A member in good standing (it was a member, and it did not end cleanly)
//!   is taken over by the slot's next worker: same member id, same
//!   generation, no rebalance (the classic protocol ties a member to its id
//!   and generation, not to a connection). So is the member of a worker
//!   stopped for a hand-over (rolling restart) or killed as hung.
//! - Any other member (the worker died mid-join or mid-rebalance) is joined
//!   under its id by the next worker: a coordinator that still counts it in
//!   the rebalance gets it back at once, and tansu, which keeps a departed
//!   leader, gets its leader back.
//! - A dead member that nobody takes over and that no worker rejoins soon is
//!   evicted (LeaveGroup on its behalf), so that the group need not wait for
//!   its session to expire. At a shutdown that removes all members together,
//!   nobody is evicted one by one.

use std::time::Duration;

use super::slot::{Exit, Inherit, SlotState, StopReason};

/// A worker that died mid-join is evicted (LeaveGroup on its behalf) when its
/// replacement starts this late or later; a sooner replacement rejoins under
/// its member id instead, which completes the rebalance just as fast.
pub const EVICT_IF_RESTART_AFTER: Duration = Duration::from_secs(1);

/// What the slot's next worker inherits when the worker in `state` ended with
/// `exit`; `member_id`: the slot's member id.
pub fn inherit_after_exit(
    state: &SlotState,
    exit: Exit,
    shutting_down: bool,
    member_id: Option<&str>,
) -> Option<Inherit> {
    if shutting_down {
        return None;
    }
    let takeover = match state {
        SlotState::Member(_, member) if !exit.success() => Some(Inherit::TakeOver(member.clone())),
        SlotState::Stopping {
            reason: StopReason::Hung | StopReason::Rolling,
            inherit: Some(h @ Inherit::TakeOver(_)),
            ..
        } => Some(h.clone()),
        _ => None,
    };
    takeover.or_else(|| member_id.map(|id| Inherit::Rejoin(id.to_string())))
}

/// Whether the dead worker's member must be evicted now: it ended without
/// leaving (`exit` not clean), nobody takes it over, no worker rejoins under
/// its id within [`EVICT_IF_RESTART_AFTER`] (`restart_in`: when the slot's
/// next worker starts, if it does), and it will not leave with all the others.
pub fn evict_after_exit(
    exit: Exit,
    taken_over: bool,
    restart_in: Option<Duration>,
    leaves_with_the_rest: bool,
) -> bool {
    let rejoined_soon = restart_in.is_some_and(|d| d < EVICT_IF_RESTART_AFTER);
    !exit.success() && !taken_over && !rejoined_soon && !leaves_with_the_rest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::slot::{Membership, Slot};
    use std::time::Instant;

    fn member() -> Membership {
        Membership {
            member_id: "m-1".into(),
            generation: 4,
            partitions: vec![1],
        }
    }

    fn states() -> (SlotState, SlotState, SlotState) {
        let t0 = Instant::now();
        let mut joining = Slot::new(t0);
        joining.started(10, t0);
        let mut member_slot = joining.clone();
        member_slot.joined(member());
        let mut hung = member_slot.clone();
        hung.stop(StopReason::Hung, t0, true);
        (joining.state, member_slot.state, hung.state)
    }

    #[test]
    fn a_member_in_good_standing_is_taken_over() {
        let (_, member_state, hung) = states();
        let take = Some(Inherit::TakeOver(member()));
        assert_eq!(
            inherit_after_exit(&member_state, Exit::Signal(9), false, Some("m-1")),
            take
        );
        assert_eq!(
            inherit_after_exit(&hung, Exit::Signal(9), false, Some("m-1")),
            take
        );
        // It left the group itself: rejoin under its id, no take-over.
        assert_eq!(
            inherit_after_exit(&member_state, Exit::Code(0), false, Some("m-1")),
            Some(Inherit::Rejoin("m-1".into()))
        );
    }

    #[test]
    fn a_member_that_died_mid_join_is_rejoined_and_nothing_is_kept_at_shutdown() {
        let (joining, member_state, _) = states();
        assert_eq!(
            inherit_after_exit(&joining, Exit::Code(1), false, Some("m-0")),
            Some(Inherit::Rejoin("m-0".into()))
        );
        assert_eq!(
            inherit_after_exit(&joining, Exit::Code(1), false, None),
            None
        );
        assert_eq!(
            inherit_after_exit(&member_state, Exit::Signal(9), true, Some("m-1")),
            None
        );
    }

    #[test]
    fn only_a_dead_member_nobody_takes_or_rejoins_soon_is_evicted() {
        let crash = Exit::Signal(9);
        let late = Some(Duration::from_secs(3));
        assert!(evict_after_exit(crash, false, late, false));
        assert!(
            evict_after_exit(crash, false, None, false),
            "no restart at all"
        );
        assert!(!evict_after_exit(crash, true, late, false), "taken over");
        assert!(
            !evict_after_exit(crash, false, Some(Duration::from_millis(40)), false),
            "rejoined soon"
        );
        assert!(
            !evict_after_exit(crash, false, late, true),
            "leaves with the rest"
        );
        assert!(
            !evict_after_exit(Exit::Code(0), false, late, false),
            "it left itself"
        );
    }
}
