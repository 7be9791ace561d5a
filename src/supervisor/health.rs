//! Whether a slot is healthy now, and why not (the JSON body of `/healthz`
//! and `/readyz`). Pure: from the slot's state alone.

use super::slot::{Slot, SlotState, StopReason};

/// Why the slot is not healthy now; None when it is (a group member whose
/// brokers answer, or a slot not in use).
pub fn unhealthy(s: &Slot) -> Option<String> {
    let restart = s
        .last_restart
        .map(|(r, _)| format!(" (last restart: {r})"))
        .unwrap_or_default();
    match &s.state {
        SlotState::Waiting { .. } if s.restarts > 0 => {
            Some(format!("waiting to restart its worker{restart}"))
        }
        SlotState::Waiting { .. } => Some("waiting to start its worker".into()),
        SlotState::Joining(w) | SlotState::Member(w, _) if w.outage.is_some() => {
            let error = w.outage.as_ref().map(|o| o.error.as_str()).unwrap_or("");
            Some(format!("cannot reach the brokers: {error}"))
        }
        SlotState::Joining(w) if w.replacing.is_some() => Some(format!(
            "replacing its handler ({})",
            w.replacing
                .as_ref()
                .map(|r| r.reason().label())
                .unwrap_or("")
        )),
        SlotState::Joining(_) => Some(format!("joining the group{restart}")),
        SlotState::Member(w, _) => w
            .replacing
            .as_ref()
            .map(|r| format!("replacing its handler ({}): {r}", r.reason())),
        SlotState::Stopping { reason, .. } => Some(match reason {
            StopReason::Hung => "hung: its worker is being killed".to_string(),
            StopReason::Rolling => "stopping for a rolling restart".to_string(),
            StopReason::Shrink => "stopping (fewer workers wanted)".to_string(),
            StopReason::Shutdown => "stopping".to_string(),
        }),
        SlotState::Retired => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::metrics::RestartReason;

    #[test]
    fn a_slot_waiting_after_a_restart_names_the_reason() {
        let now = Instant::now();
        let mut s = Slot::new(now);
        assert_eq!(
            unhealthy(&s).as_deref(),
            Some("waiting to start its worker")
        );
        s.restarts = 1;
        s.last_restart = Some((RestartReason::Memory, now));
        assert_eq!(
            unhealthy(&s).as_deref(),
            Some("waiting to restart its worker (last restart: memory)")
        );
        s.retire();
        assert_eq!(unhealthy(&s), None);
    }
}
