//! Finding the group coordinator (bootstrap brokers -> FindCoordinator ->
//! a connection to the coordinator), the pacing of retries, and [`evict`].

use std::fmt::Display;
use std::time::{Duration, Instant};

use super::errors::{classify, Class};
use super::GroupError;
use crate::wire::group_msgs::{self, code_name};
use crate::wire::{BrokerConn, WireError};

/// Retries with exponential pauses (50 ms doubling to 1 s) inside a window;
/// past the window the last problem becomes [`GroupError::Other`].
#[derive(Debug)]
pub(crate) struct Pacer {
    started: Instant,
    window: Duration,
    attempt: u32,
}

impl Pacer {
    const PAUSE: crate::backoff::Doubling =
        crate::backoff::Doubling::new(Duration::from_millis(50), Duration::from_secs(1));

    pub(crate) fn new(window: Duration) -> Self {
        Self {
            started: Instant::now(),
            window,
            attempt: 0,
        }
    }

    /// What to do after one try of a multi-step request ended in `step`:
    /// go again at once, pause first, or give up.
    pub(crate) async fn step(
        &mut self,
        what: &str,
        step: super::member::Step,
    ) -> Result<(), GroupError> {
        match step {
            super::member::Step::Again => Ok(()),
            super::member::Step::Pause(problem) => self.pause(what, problem).await,
            super::member::Step::Fail(e) => Err(e),
        }
    }

    /// Sleep before the next try, or give up with `what` and the last problem.
    pub(crate) async fn pause(&mut self, what: &str, last: impl Display) -> Result<(), GroupError> {
        if self.started.elapsed() >= self.window {
            return Err(GroupError::Other(anyhow::anyhow!(
                "{what}: still failing after {:?}: {last}",
                self.window
            )));
        }
        let pause = Self::PAUSE.delay(self.attempt);
        self.attempt += 1;
        tracing::debug!("{what}: {last}; retrying in {pause:?}");
        tokio::time::sleep(pause).await;
        Ok(())
    }
}

/// A wire error that retrying cannot fix becomes Fatal; the rest are retried.
pub(crate) fn fatal_or_retry(e: WireError, hint: &str) -> Result<WireError, GroupError> {
    match e {
        WireError::Unsupported { .. } => Err(GroupError::Fatal(format!("{e}; {hint}"))),
        // refused credentials, an untrusted certificate: the same settings fail again
        WireError::Auth { .. } | WireError::Tls { .. } => Err(GroupError::Fatal(e.to_string())),
        other => Ok(other),
    }
}

/// A connection to the first bootstrap broker that answers.
async fn bootstrap(
    brokers: &[String],
    client_id: &str,
    timeout: Duration,
) -> Result<BrokerConn, WireError> {
    let mut last = None;
    for b in brokers {
        match BrokerConn::connect(b, client_id, timeout).await {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(WireError::Protocol {
        addr: String::new(),
        msg: "no broker given".into(),
    }))
}

/// A connection to `group`'s coordinator; retries (broker down, coordinator
/// not yet available) for up to `window`.
pub(crate) async fn connect_coordinator(
    brokers: &[String],
    client_id: &str,
    connect_timeout: Duration,
    window: Duration,
    group: &str,
) -> Result<BrokerConn, GroupError> {
    let what = format!(
        "finding the coordinator of --group {group} through --brokers {} (check the addresses and that the broker runs)",
        brokers.join(",")
    );
    let mut pacer = Pacer::new(window);
    loop {
        let problem: String =
            match try_coordinator(brokers, client_id, connect_timeout, group).await {
                Ok(c) => return Ok(c),
                Err(Attempt::Fatal(e)) => return Err(e),
                Err(Attempt::Again(p)) => p,
            };
        pacer.pause(&what, problem).await?;
    }
}

enum Attempt {
    Fatal(GroupError),
    Again(String),
}

async fn try_coordinator(
    brokers: &[String],
    client_id: &str,
    connect_timeout: Duration,
    group: &str,
) -> Result<BrokerConn, Attempt> {
    let mut boot = bootstrap(brokers, client_id, connect_timeout)
        .await
        .map_err(|e| match fatal_or_retry(e, "") {
            Err(f) => Attempt::Fatal(f),
            Ok(e) => Attempt::Again(e.to_string()),
        })?;
    let ans = match group_msgs::find_coordinator(&mut boot, group).await {
        Ok(a) => a,
        Err(e) => {
            return Err(
                match fatal_or_retry(e, "the broker cannot host consumer groups") {
                    Err(f) => Attempt::Fatal(f),
                    Ok(e) => Attempt::Again(e.to_string()),
                },
            )
        }
    };
    match classify(ans.error, "FindCoordinator") {
        Class::Ok => {}
        Class::Fatal(m) => return Err(Attempt::Fatal(GroupError::Fatal(m))),
        _ => {
            return Err(Attempt::Again(format!(
                "FindCoordinator: {}",
                code_name(ans.error)
            )))
        }
    }
    let addr = ans.addr();
    if addr == boot.addr() {
        return Ok(boot);
    }
    BrokerConn::connect(&addr, client_id, connect_timeout)
        .await
        .map_err(|e| match fatal_or_retry(e, "") {
            Err(f) => Attempt::Fatal(f),
            Ok(e) => Attempt::Again(format!("coordinator {addr}: {e}")),
        })
}

/// Make the coordinator drop members now instead of after their session
/// timeout (the supervisor's fast failover for crashed workers): LeaveGroup
/// on their behalf, by member id, and by group instance id for static members.
/// Members the coordinator no longer knows count as gone.
pub async fn evict(
    brokers: &[String],
    connect_timeout: Duration,
    group: &str,
    member_ids: &[String],
    instance_ids: &[String],
) -> Result<(), GroupError> {
    let mut members: Vec<(String, Option<String>)> =
        member_ids.iter().map(|m| (m.clone(), None)).collect();
    members.extend(
        instance_ids
            .iter()
            .map(|i| (String::new(), Some(i.clone()))),
    );
    if members.is_empty() {
        return Ok(());
    }
    let what = format!("evicting members of --group {group}");
    let mut pacer = Pacer::new(connect_timeout);
    loop {
        let mut conn = connect_coordinator(
            brokers,
            "kswarm-supervisor",
            connect_timeout,
            connect_timeout,
            group,
        )
        .await?;
        let timeout = connect_timeout.max(Duration::from_secs(10));
        let ans = match tokio::time::timeout(
            timeout,
            group_msgs::leave_group(&mut conn, group, &members),
        )
        .await
        {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => {
                let e = fatal_or_retry(
                    e,
                    "evicting static members needs LeaveGroup v3+ (Kafka 2.4)",
                )?;
                pacer.pause(&what, e).await?;
                continue;
            }
            Err(_) => {
                pacer.pause(&what, "LeaveGroup timed out").await?;
                continue;
            }
        };
        // UNKNOWN_MEMBER_ID per member: already gone, which is what we want.
        let codes = std::iter::once(ans.error).chain(ans.members.iter().map(|m| m.2));
        let mut again = None;
        for code in codes.filter(|&c| {
            c != crate::wire::codes::NONE && c != crate::wire::codes::UNKNOWN_MEMBER_ID
        }) {
            match classify(code, "LeaveGroup") {
                Class::Fatal(m) => return Err(GroupError::Fatal(m)),
                Class::CoordinatorMoved | Class::Retry => again = Some(code_name(code)),
                // Rejoin/ResetMember/MemberIdRequired: nothing left to evict.
                _ => {}
            }
        }
        match again {
            None => return Ok(()),
            Some(p) => pacer.pause(&what, p).await?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn pacer_gives_up_after_its_window() {
        let mut p = Pacer::new(Duration::from_millis(300));
        let mut tries = 0;
        let err = loop {
            match p.pause("finding x", "boom").await {
                Ok(()) => tries += 1,
                Err(e) => break e,
            }
        };
        // Pauses of 50, 100, 200 ms: the window is spent after the third.
        assert_eq!(tries, 3);
        let msg = err.to_string();
        assert!(msg.contains("finding x") && msg.contains("boom"), "{msg}");
        assert!(matches!(err, GroupError::Other(_)));
    }
}
