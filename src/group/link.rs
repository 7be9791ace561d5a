//! The coordinator link: the one path of every request a member (or a
//! heartbeat task, or an eviction) sends to its group's coordinator.
//!
//! It owns finding the coordinator (bootstrap brokers -> FindCoordinator ->
//! a connection, the last known address first), sending with a deadline,
//! dropping the connection when a request fails or times out (a request
//! abandoned mid-way leaves the stream out of step), and the pacing of
//! retries ([`Pacer`]). Error codes inside an answer are the caller's to
//! classify ([`super::errors`]).

use std::fmt::Display;
use std::time::{Duration, Instant};

use super::errors::{classify, Class};
use super::requests::Request;
use super::types::GroupError;
use crate::wire::group_msgs::{self, code_name};
use crate::wire::{BrokerConn, WireError};

/// How one try of a multi-step operation ended.
#[derive(Debug)]
pub(crate) enum Step {
    /// Go again at once (new member id, rebalance under way).
    Again,
    /// Go again after a pause; the problem, for the final error.
    Pause(String),
    Fail(GroupError),
}

impl From<GroupError> for Step {
    fn from(e: GroupError) -> Self {
        Step::Fail(e)
    }
}

/// Where the coordinator is and how to reach it.
#[derive(Debug, Clone)]
pub(crate) struct LinkSettings {
    pub brokers: Vec<String>,
    pub client_id: String,
    /// The group's name, or the transactional id (see `kind`).
    pub group: String,
    pub kind: CoordinatorKind,
    /// Per connection attempt.
    pub connect_timeout: Duration,
    /// How long finding the coordinator may keep failing before it is an error.
    pub window: Duration,
}

/// Which coordinator a link leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CoordinatorKind {
    /// The group coordinator of `group`.
    Group,
    /// The transaction coordinator of the transactional id in `group`.
    Transaction,
}

impl CoordinatorKind {
    fn key_type(self) -> i8 {
        match self {
            CoordinatorKind::Group => 0,
            CoordinatorKind::Transaction => 1,
        }
    }
}

/// A (lazily made) connection to a group's coordinator.
#[derive(Debug)]
pub(crate) struct CoordinatorLink {
    s: LinkSettings,
    conn: Option<BrokerConn>,
    /// The coordinator's address, tried first on a reconnect.
    known: Option<String>,
}

impl CoordinatorLink {
    /// A link that connects at its first request.
    pub(crate) fn new(s: LinkSettings) -> Self {
        Self {
            s,
            conn: None,
            known: None,
        }
    }

    /// A link that tries `addr` first (a heartbeat task starting on the
    /// coordinator its member joined through).
    pub(crate) fn starting_at(s: LinkSettings, addr: Option<String>) -> Self {
        Self {
            known: addr,
            ..Self::new(s)
        }
    }

    /// A link connected now (errors name the brokers).
    pub(crate) async fn connected(s: LinkSettings) -> Result<Self, GroupError> {
        let mut link = Self::new(s);
        link.conn().await?;
        Ok(link)
    }

    /// The coordinator's address, once known.
    pub(crate) fn addr(&self) -> Option<String> {
        self.conn
            .as_ref()
            .map(|c| c.addr().to_string())
            .or_else(|| self.known.clone())
    }

    /// The connection, (re)made if needed: the known address first, then
    /// through FindCoordinator, retrying within the link's window.
    pub(crate) async fn conn(&mut self) -> Result<&mut BrokerConn, GroupError> {
        if self.conn.as_ref().is_none_or(BrokerConn::is_broken) {
            self.conn = None;
            let c = match self.reconnect_known().await {
                Some(c) => c,
                None => connect_coordinator(&self.s).await?,
            };
            self.known = Some(c.addr().to_string());
            self.conn = Some(c);
        }
        Ok(self.conn.as_mut().expect("just connected"))
    }

    async fn reconnect_known(&mut self) -> Option<BrokerConn> {
        let addr = self.known.take()?;
        BrokerConn::connect(&addr, &self.s.client_id, self.s.connect_timeout)
            .await
            .ok()
    }

    /// Drop the connection; the next request reconnects.
    pub(crate) fn drop_conn(&mut self) {
        self.conn = None;
    }

    /// The coordinator moved: forget it, and find it again at the next request.
    pub(crate) fn forget(&mut self) {
        self.conn = None;
        self.known = None;
    }

    /// Send `req` with a deadline. No answer or a transport problem drops
    /// the connection and asks for a pause ([`Step::Pause`]); a problem that
    /// retrying cannot fix fails with `hint` ([`Step::Fail`]).
    pub(crate) async fn call<R: Request>(
        &mut self,
        req: R,
        timeout: Duration,
        hint: &str,
    ) -> Result<R::Answer, Step> {
        let conn = self.conn().await?;
        let answer = tokio::time::timeout(timeout, req.send(conn)).await;
        match answer {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(e)) => {
                self.drop_conn();
                match fatal_or_retry(e, hint) {
                    Ok(e) => Err(Step::Pause(format!("{}: {e}", R::NAME))),
                    Err(f) => Err(Step::Fail(f)),
                }
            }
            Err(_) => {
                self.drop_conn();
                Err(Step::Pause(format!(
                    "{}: no answer within {timeout:?}",
                    R::NAME
                )))
            }
        }
    }

    /// React to a class every request treats alike: a moved coordinator is
    /// found again; a transient problem is paused on; a fatal one fails.
    /// `None` for the classes the caller handles itself.
    pub(crate) fn common(&mut self, request: &str, code: i16, class: Class) -> Option<Step> {
        match class {
            Class::CoordinatorMoved => {
                self.forget();
                Some(Step::Pause(format!("{request}: {}", code_name(code))))
            }
            Class::Retry => Some(Step::Pause(format!("{request}: {}", code_name(code)))),
            Class::Fatal(m) => Some(Step::Fail(GroupError::Fatal(m))),
            Class::Ok | Class::Rejoin | Class::ResetMember | Class::MemberIdRequired => None,
        }
    }
}

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
    pub(crate) async fn step(&mut self, what: &str, step: Step) -> Result<(), GroupError> {
        match step {
            Step::Again => Ok(()),
            Step::Pause(problem) => self.pause(what, problem).await,
            Step::Fail(e) => Err(e),
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
async fn bootstrap(s: &LinkSettings) -> Result<BrokerConn, WireError> {
    let mut last = None;
    for b in &s.brokers {
        match BrokerConn::connect(b, &s.client_id, s.connect_timeout).await {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(WireError::Protocol {
        addr: String::new(),
        msg: "no broker given".into(),
    }))
}

/// A connection to the group's coordinator; retries (broker down,
/// coordinator not yet available) for up to the link's window.
pub(crate) async fn connect_coordinator(s: &LinkSettings) -> Result<BrokerConn, GroupError> {
    let of = match s.kind {
        CoordinatorKind::Group => format!("--group {}", s.group),
        CoordinatorKind::Transaction => format!("the transactional id {}", s.group),
    };
    let what = format!(
        "finding the coordinator of {of} through --brokers {} (check the addresses and that the broker runs)",
        s.brokers.join(",")
    );
    let mut pacer = Pacer::new(s.window);
    loop {
        let problem = match try_coordinator(s).await {
            Ok(c) => return Ok(c),
            Err(Step::Fail(e)) => return Err(e),
            Err(Step::Pause(p)) => p,
            Err(Step::Again) => continue,
        };
        pacer.pause(&what, problem).await?;
    }
}

async fn try_coordinator(s: &LinkSettings) -> Result<BrokerConn, Step> {
    let retry_or_fail = |e: WireError, hint: &str, context: &str| match fatal_or_retry(e, hint) {
        Err(f) => Step::Fail(f),
        Ok(e) => Step::Pause(format!("{context}{e}")),
    };
    let mut boot = bootstrap(s).await.map_err(|e| retry_or_fail(e, "", ""))?;
    let ans = group_msgs::find_coordinator_of(&mut boot, &s.group, s.kind.key_type())
        .await
        .map_err(|e| retry_or_fail(e, "the broker cannot host consumer groups", ""))?;
    match classify(ans.error, "FindCoordinator") {
        Class::Ok => {}
        Class::Fatal(m) => return Err(Step::Fail(GroupError::Fatal(m))),
        _ => {
            return Err(Step::Pause(format!(
                "FindCoordinator: {}",
                code_name(ans.error)
            )))
        }
    }
    let addr = ans.addr();
    if addr == boot.addr() {
        return Ok(boot);
    }
    BrokerConn::connect(&addr, &s.client_id, s.connect_timeout)
        .await
        .map_err(|e| retry_or_fail(e, "", &format!("coordinator {addr}: ")))
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
