//! Group-wide sizing: how many workers the whole group has, over every host
//! that runs kswarm for it, so that `-p auto` sizes the topic for all of them
//! and not for this host alone.
//!
//! Each worker says how many workers its host runs in its Kafka client id,
//! `kswarm-SLOT.wN.HOST`. The broker reports every member's client id in
//! both DescribeGroups (classic) and ConsumerGroupDescribe (KIP-848), so the
//! count reaches every supervisor whatever the group protocol, without a
//! topic of our own, and it ends with the member: a host that dies drops out
//! when its members' sessions end. It also shows in `kafka-consumer-groups
//! --describe --members` and in `kswarm status`. (A classic member's
//! subscription user data could carry it too, but KIP-848 members have none,
//! and a compacted topic would outlive its hosts.)
//!
//! Pure: the client id format, and the sum.

use std::collections::{BTreeMap, BTreeSet};

/// The client id of a worker in `slot` on `host`, whose host runs `workers`.
pub fn client_id(slot: u32, workers: u32, host: &str) -> String {
    format!("kswarm-{slot}.w{workers}.{}", sanitize_host(host))
}

/// The transactional id of worker `slot` on `host` (`--output-topic`):
/// stable across the slot's restarts, so that a replacement fences its
/// predecessor, and distinct per group, topic, host and slot.
pub fn transactional_id(group: &str, topic: &str, host: &str, slot: u32) -> String {
    format!("kswarm-{group}-{topic}-{}-{slot}", sanitize_host(host))
}

/// Host ids go into client ids, which Kafka's quotas and metrics keep as
/// names: letters, digits, `.`, `_` and `-` only; anything else becomes `_`.
pub fn sanitize_host(host: &str) -> String {
    let s: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "unknown".into()
    } else {
        s
    }
}

/// What a kswarm client id says: (slot, workers on its host, host).
pub fn parse_client_id(id: &str) -> Option<(u32, u32, String)> {
    let rest = id.strip_prefix("kswarm-")?;
    let (slot, rest) = rest.split_once('.')?;
    let (workers, host) = rest.split_once('.')?;
    let workers = workers.strip_prefix('w')?.parse().ok()?;
    if host.is_empty() {
        return None;
    }
    Some((slot.parse().ok()?, workers, host.to_string()))
}

/// One host of the group, as its members describe it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostView {
    pub host: String,
    /// The most workers any of its members says the host runs (a host that
    /// just grew with TTIN has members of both counts for a moment).
    pub workers: u32,
    /// Its members in the group now.
    pub members: u32,
}

/// The group as its members' client ids describe it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GroupView {
    pub hosts: Vec<HostView>,
    /// Members that are not kswarm workers (librdkafka, Java, ..): each is
    /// one consumer and gets one partition's worth.
    pub other_members: u32,
}

/// The members known to be this host's by their member ids, whatever their
/// client ids say: those this host's state file names (this run's workers,
/// or a killed run's that are still in the group). A broker that reports
/// client ids kswarm cannot parse (tansu) would otherwise make them foreign
/// members, and a run started after a SIGKILL would size for twice its
/// workers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnMembers {
    /// This host's id (`--host-id` or the host name).
    pub host: String,
    pub member_ids: BTreeSet<String>,
}

impl GroupView {
    /// From the client ids of the group's members.
    #[cfg(test)]
    pub fn from_client_ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> Self {
        Self::from_members(ids.into_iter().map(|c| ("", c)), &OwnMembers::default())
    }

    /// From the group's members, (member id, client id) each: a member
    /// `own` names counts as this host's.
    pub fn from_members<'a>(
        members: impl IntoIterator<Item = (&'a str, &'a str)>,
        own: &OwnMembers,
    ) -> Self {
        let mut hosts: BTreeMap<String, HostView> = BTreeMap::new();
        let mut other_members = 0;
        for (member_id, client_id) in members {
            let parsed = parse_client_id(client_id);
            let parsed = if own.member_ids.contains(member_id) {
                let workers = parsed.map_or(0, |(_, w, _)| w);
                Some((0, workers, sanitize_host(&own.host)))
            } else {
                parsed
            };
            match parsed {
                Some((_, workers, host)) => {
                    let h = hosts.entry(host.clone()).or_insert(HostView {
                        host,
                        workers: 0,
                        members: 0,
                    });
                    h.workers = h.workers.max(workers);
                    h.members += 1;
                }
                None => other_members += 1,
            }
        }
        GroupView {
            hosts: hosts.into_values().collect(),
            other_members,
        }
    }

    /// Workers the group has without this host: every other host's count,
    /// and one per foreign member.
    pub fn others(&self, own_host: &str) -> u32 {
        let own = sanitize_host(own_host);
        self.hosts
            .iter()
            .filter(|h| h.host != own)
            .map(|h| h.workers)
            .sum::<u32>()
            + self.other_members
    }

    /// The whole group's workers when this host runs `own_workers`.
    #[cfg(test)]
    pub fn total(&self, own_host: &str, own_workers: u32) -> u32 {
        own_workers + self.others(own_host)
    }
}

/// This host's id: `--host-id`, else the host name.
pub fn default_host_id() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_round_trip() {
        let id = client_id(3, 8, "ingest-7.dc1.example.com");
        assert_eq!(id, "kswarm-3.w8.ingest-7.dc1.example.com");
        assert_eq!(
            parse_client_id(&id),
            Some((3, 8, "ingest-7.dc1.example.com".into()))
        );
        assert_eq!(client_id(0, 2, "a b/c"), "kswarm-0.w2.a_b_c");
        assert_eq!(parse_client_id("kswarm-0"), None);
        assert_eq!(parse_client_id("rdkafka"), None);
        assert_eq!(parse_client_id("kswarm-x.w2.h"), None);
        assert_eq!(parse_client_id("kswarm-1.2.h"), None);
    }

    #[test]
    fn three_hosts_of_2_4_and_8_workers_want_14() {
        let mut ids = Vec::new();
        for (host, n) in [("a", 2), ("b", 4), ("c", 8)] {
            for s in 0..n {
                ids.push(client_id(s, n, host));
            }
        }
        let v = GroupView::from_client_ids(ids.iter().map(String::as_str));
        assert_eq!(v.hosts.len(), 3);
        assert_eq!(v.total("c", 8), 14);
        // a host that starts sees the others, whatever it finds of itself
        assert_eq!(v.total("d", 2), 16);
        assert_eq!(v.others("a"), 12);
    }

    #[test]
    fn a_host_mid_growth_counts_its_largest_number_once() {
        let ids = ["kswarm-0.w2.a", "kswarm-1.w2.a", "kswarm-2.w3.a"];
        let v = GroupView::from_client_ids(ids);
        assert_eq!(
            v.hosts,
            vec![HostView {
                host: "a".into(),
                workers: 3,
                members: 3
            }]
        );
        assert_eq!(v.total("b", 1), 4);
    }

    #[test]
    fn members_this_host_recorded_count_as_this_host_whatever_their_client_ids() {
        // tansu's answer after a SIGKILL: the killed run's two members, with
        // client ids that say nothing, beside a real foreign consumer.
        let own = OwnMembers {
            host: "ingest 7".into(),
            member_ids: ["m-0".to_string(), "m-1".to_string()].into(),
        };
        let members = [("m-0", ""), ("m-1", "rskafka"), ("x-9", "rdkafka")];
        let v = GroupView::from_members(members, &own);
        assert_eq!(v.other_members, 1, "{v:?}");
        assert_eq!(v.others("ingest 7"), 1);
        assert_eq!(v.hosts[0].host, "ingest_7");
        assert_eq!(v.hosts[0].members, 2);
        // the same answer without the record: all three foreign
        let v = GroupView::from_members(members, &OwnMembers::default());
        assert_eq!(v.others("ingest 7"), 3);
        // a recorded member whose client id names a host still counts here
        let v = GroupView::from_members([("m-0", "kswarm-0.w4.elsewhere")], &own);
        assert_eq!((v.others("ingest 7"), v.hosts[0].workers), (0, 4));
    }

    #[test]
    fn foreign_members_count_one_each() {
        let v = GroupView::from_client_ids(["kswarm-0.w1.a", "rdkafka", "consumer-g-1"]);
        assert_eq!(v.other_members, 2);
        assert_eq!(v.total("a", 1), 3);
    }
}
