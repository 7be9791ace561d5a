//! What a member has under every protocol: its settings, its link to the
//! coordinator, and its member id (with the hook that hears of each new one).

use super::link::Step;
use super::link::{CoordinatorLink, LinkSettings};
use super::types::{Assigned, GroupError, GroupSettings};

/// Called with each member id the coordinator assigns (or we choose).
pub(crate) type MemberIdHook = Box<dyn FnMut(&str) + Send>;

/// A member id, and who is told when it changes.
#[derive(Default)]
pub(crate) struct MemberId {
    id: String,
    hook: Option<MemberIdHook>,
}

impl std::fmt::Debug for MemberId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.id)
    }
}

impl MemberId {
    pub(crate) fn get(&self) -> &str {
        &self.id
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.id.is_empty()
    }

    /// Take `id`; the hook hears of it if it is new and not empty.
    pub(crate) fn set(&mut self, id: &str) {
        if self.id == id {
            return;
        }
        self.id = id.to_string();
        if let Some(f) = self.hook.as_mut() {
            if !id.is_empty() {
                f(id);
            }
        }
    }

    /// Take `id` without telling anyone (it came from the caller).
    pub(crate) fn assume(&mut self, id: &str) {
        self.id = id.to_string();
    }

    pub(crate) fn clear(&mut self) {
        self.id.clear();
    }

    pub(crate) fn on_change(&mut self, f: MemberIdHook) {
        self.hook = Some(f);
    }
}

/// Settings, coordinator link and member id: what each protocol's member
/// works with.
#[derive(Debug)]
pub(crate) struct Common {
    pub s: GroupSettings,
    pub link: CoordinatorLink,
    pub id: MemberId,
}

impl Common {
    /// Bootstrap + FindCoordinator (retries until the connect timeout, then
    /// an error naming the brokers).
    pub(crate) async fn connect(s: GroupSettings) -> Result<Self, GroupError> {
        let link = CoordinatorLink::connected(link_settings(&s)).await?;
        Ok(Self {
            s,
            link,
            id: MemberId::default(),
        })
    }
}

/// How a member (and its heartbeat, with a shorter `window`) finds its coordinator.
pub(crate) fn link_settings(s: &GroupSettings) -> LinkSettings {
    LinkSettings {
        brokers: s.brokers.clone(),
        client_id: s.client_id.clone(),
        group: s.group.clone(),
        kind: crate::group::CoordinatorKind::Group,
        connect_timeout: s.connect_timeout,
        window: s.connect_timeout,
    }
}

/// What each partitioned protocol's member does in its own way. The face
/// ([`super::Member`]) hands every call to the protocol chosen at connect.
pub(crate) trait ProtocolMember {
    /// The generation (classic) or member epoch (consumer) of the last join.
    fn generation_id(&self) -> i32;
    /// What a commit is stamped with now.
    fn commit_generation(&self) -> i32;
    /// Join, retrying within the member's window; starts the heartbeat.
    async fn join(&mut self, c: &mut Common) -> Result<Assigned, GroupError>;
    /// Join at the next `join` under `member_id` (this slot's previous worker's).
    fn rejoin_as(&mut self, c: &mut Common, member_id: &str);
    /// Carry on as the member `c.id` at `generation_id`, owning `partitions`.
    fn resume(&mut self, c: &mut Common, generation_id: i32, partitions: &[i32]);
    /// Resolves when the group wants our partitions back. Cancel-safe.
    async fn rebalance_needed(&mut self) -> Result<(), GroupError>;
    /// The member epochs to come, where the protocol has them.
    fn epochs(&self) -> Option<tokio::sync::watch::Receiver<i32>>;
    /// One try at leaving the group.
    async fn leave_once(&mut self, c: &mut Common) -> Result<(), Step>;
    /// Out of the group: forget the generation (and what else the protocol drops).
    fn left(&mut self, c: &mut Common);
}
