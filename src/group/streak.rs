//! No error answered for ever stays a warning (pure: the caller gives the
//! time). A share worker retries what its brokers answer with an error
//! (ShareFetch, ShareAcknowledge, ShareGroupHeartbeat), as it must for the
//! passing ones (a coordinator loading, a leader moving). But a broker that
//! answers one request with nothing but errors for a whole session timeout
//! (Kafka 4.1 refusing a member id it cannot parse: UNKNOWN_SERVER_ERROR on
//! every ShareFetch) will not get better by itself: the worker ends with a
//! message naming the request and the broker, so that the supervisor's
//! restart budget and the operator see it.
//!
//! Only answers count: a broker that cannot be reached is an outage, which
//! the connection's own retry handles.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

/// Kafka's default `group.share.session.timeout.ms`: how long errors may be
/// answered in a row under `--session-timeout auto` (the share group's
/// session is the broker's; kswarm's auto value is for the other protocols).
pub const SHARE_SESSION_TIMEOUT: Duration = Duration::from_secs(45);

/// How long a share member puts up with error answers in a row: the
/// session timeout given, or the broker's default one under `auto`.
pub fn share_error_limit(session_timeout: Duration, auto: bool) -> Duration {
    if auto {
        SHARE_SESSION_TIMEOUT
    } else {
        session_timeout
    }
}

/// The requests of a share member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShareRequest {
    Fetch,
    Acknowledge,
    Heartbeat,
}

impl fmt::Display for ShareRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ShareRequest::Fetch => "ShareFetch",
            ShareRequest::Acknowledge => "ShareAcknowledge",
            ShareRequest::Heartbeat => "ShareGroupHeartbeat",
        })
    }
}

/// One request's answers from one broker, lately.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Streak {
    /// The last answer was a good one (or none came yet).
    #[default]
    Clear,
    /// Errors only, since `since`: `count` of them, the last one `last`.
    Failing {
        since: Instant,
        count: u32,
        last: String,
    },
}

impl Streak {
    /// One more error answer at `now`. Some(how long, how many) once the
    /// errors have lasted `limit`.
    fn failed(&mut self, error: &str, now: Instant, limit: Duration) -> Option<(Duration, u32)> {
        match self {
            Streak::Clear => {
                *self = Streak::Failing {
                    since: now,
                    count: 1,
                    last: error.to_string(),
                };
                None
            }
            Streak::Failing { since, count, last } => {
                *count += 1;
                error.clone_into(last);
                let lasted = now.saturating_duration_since(*since);
                (lasted >= limit).then_some((lasted, *count))
            }
        }
    }
}

/// The streaks of every (request, broker) a share member sends to.
#[derive(Debug)]
pub struct ErrorStreaks {
    limit: Duration,
    streaks: HashMap<(ShareRequest, String), Streak>,
}

impl ErrorStreaks {
    pub fn new(limit: Duration) -> Self {
        Self {
            limit,
            streaks: HashMap::new(),
        }
    }

    /// A good answer to `req` from `broker` (for a ShareFetch: one without
    /// errors, or one that brought records): its streak ends.
    pub fn answered(&mut self, req: ShareRequest, broker: &str) {
        self.streaks.remove(&(req, broker.to_string()));
    }

    /// An error answer (`error`: its code and the broker's message) to `req`
    /// from `broker` at `now`. Some(why the member must end) once `req` has
    /// had nothing but error answers from `broker` for the whole limit.
    pub fn failed(
        &mut self,
        req: ShareRequest,
        broker: &str,
        error: &str,
        now: Instant,
    ) -> Option<String> {
        let streak = self.streaks.entry((req, broker.to_string())).or_default();
        let (lasted, count) = streak.failed(error, now, self.limit)?;
        Some(format!(
            "{req} to {broker} answered nothing but errors for {} s ({count} answers in a row, the last: {error}); \
             no record came from it all that time, and retrying has not helped: the broker's log names the cause \
             (ending the worker, so that it is restarted within --max-restarts)",
            lasted.as_secs()
        ))
    }

    /// The streak of `req` to `broker`.
    #[cfg(test)]
    pub fn streak(&self, req: ShareRequest, broker: &str) -> Streak {
        self.streaks
            .get(&(req, broker.to_string()))
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: &str = "127.0.0.1:9092";
    const ERR: &str = "UnknownServerError (-1)";

    #[test]
    fn errors_for_a_whole_limit_end_the_member_naming_request_and_broker() {
        let t0 = Instant::now();
        let mut s = ErrorStreaks::new(Duration::from_secs(10));
        assert_eq!(s.failed(ShareRequest::Fetch, B, ERR, t0), None);
        let at = |secs| t0 + Duration::from_secs(secs);
        assert_eq!(s.failed(ShareRequest::Fetch, B, ERR, at(5)), None);
        assert_eq!(s.failed(ShareRequest::Fetch, B, ERR, at(9)), None);
        let why = s
            .failed(ShareRequest::Fetch, B, ERR, at(10))
            .expect("10 s of errors end it");
        assert!(why.starts_with("ShareFetch to 127.0.0.1:9092 "), "{why}");
        assert!(
            why.contains("for 10 s") && why.contains("4 answers"),
            "{why}"
        );
        assert!(why.contains(ERR), "{why}");
    }

    #[test]
    fn a_good_answer_ends_the_streak() {
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        let mut s = ErrorStreaks::new(Duration::from_secs(10));
        s.failed(ShareRequest::Fetch, B, ERR, t0);
        s.answered(ShareRequest::Fetch, B);
        assert_eq!(s.streak(ShareRequest::Fetch, B), Streak::Clear);
        // A new streak starts at its own first error.
        assert_eq!(s.failed(ShareRequest::Fetch, B, ERR, at(8)), None);
        assert_eq!(s.failed(ShareRequest::Fetch, B, ERR, at(17)), None);
        assert!(s.failed(ShareRequest::Fetch, B, ERR, at(18)).is_some());
    }

    #[test]
    fn requests_and_brokers_have_streaks_of_their_own() {
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        let mut s = ErrorStreaks::new(Duration::from_secs(10));
        s.failed(ShareRequest::Fetch, B, ERR, t0);
        // Another request to the same broker, the same request to another
        // broker, and a good answer to another request: none ends it.
        s.answered(ShareRequest::Heartbeat, B);
        s.answered(ShareRequest::Fetch, "other:9092");
        assert_eq!(s.failed(ShareRequest::Acknowledge, B, ERR, at(10)), None);
        assert_eq!(
            s.failed(ShareRequest::Fetch, "other:9092", ERR, at(10)),
            None
        );
        let why = s.failed(
            ShareRequest::Fetch,
            B,
            "CoordinatorLoadInProgress (14)",
            at(11),
        );
        let why = why.expect("the first streak lasted 11 s");
        assert!(
            why.contains("the last: CoordinatorLoadInProgress (14)"),
            "{why}"
        );
        let Streak::Failing { count, .. } = s.streak(ShareRequest::Acknowledge, B) else {
            panic!("ShareAcknowledge failed once")
        };
        assert_eq!(count, 1);
    }

    #[test]
    fn the_limit_is_the_session_timeout_or_the_brokers_default() {
        let given = Duration::from_secs(8);
        assert_eq!(share_error_limit(given, false), given);
        assert_eq!(share_error_limit(given, true), SHARE_SESSION_TIMEOUT);
        assert_eq!(ShareRequest::Heartbeat.to_string(), "ShareGroupHeartbeat");
        assert_eq!(ShareRequest::Acknowledge.to_string(), "ShareAcknowledge");
    }
}
