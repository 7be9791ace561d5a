//! The classic consumer-group assignors, `range` and `roundrobin`, computed
//! by the group leader (pure: plain types in, plain types out).
//!
//! They order members and partitions the way the Java client and librdkafka
//! do, so a mixed group gets the same answer whichever member leads:
//! - members sort by group instance id when they have one (static
//!   membership), else by member id;
//! - `range`: per topic, the subscribed members in that order get contiguous
//!   runs of partitions, the first `n % m` members one extra;
//! - `roundrobin`: all topic-partitions sorted by (topic, partition) are dealt
//!   in turn to the members in that order, skipping members not subscribed to
//!   the topic.

use std::collections::BTreeMap;

use crate::config::Assignor;

/// One member as the leader sees it in the JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSubscription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub topics: Vec<String>,
}

impl MemberSubscription {
    fn sort_key(&self) -> (&str, &str) {
        (
            self.instance_id.as_deref().unwrap_or(&self.member_id),
            &self.member_id,
        )
    }
}

/// member id -> topic -> sorted partitions. Every member of the input has an
/// entry, possibly empty.
pub type Assignment = BTreeMap<String, BTreeMap<String, Vec<i32>>>;

/// Run `assignor` over `members`; `partitions` maps each topic to its
/// partition count (topics missing from it, or with 0 partitions, are skipped).
pub fn assign(
    assignor: Assignor,
    members: &[MemberSubscription],
    partitions: &BTreeMap<String, i32>,
) -> Assignment {
    match assignor {
        Assignor::Range => range(members, partitions),
        Assignor::RoundRobin => roundrobin(members, partitions),
    }
}

fn sorted(members: &[MemberSubscription]) -> Vec<&MemberSubscription> {
    let mut v: Vec<&MemberSubscription> = members.iter().collect();
    v.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    v
}

fn empty(members: &[MemberSubscription]) -> Assignment {
    members
        .iter()
        .map(|m| (m.member_id.clone(), BTreeMap::new()))
        .collect()
}

pub fn range(members: &[MemberSubscription], partitions: &BTreeMap<String, i32>) -> Assignment {
    let mut out = empty(members);
    let order = sorted(members);
    for (topic, &count) in partitions {
        let subs: Vec<&&MemberSubscription> = order
            .iter()
            .filter(|m| m.topics.iter().any(|t| t == topic))
            .collect();
        if subs.is_empty() || count <= 0 {
            continue;
        }
        let n = count as usize;
        let per = n / subs.len();
        let extra = n % subs.len();
        for (i, m) in subs.iter().enumerate() {
            let start = i * per + i.min(extra);
            let len = per + usize::from(i < extra);
            if len == 0 {
                continue;
            }
            let parts = (start..start + len).map(|p| p as i32).collect();
            out.get_mut(&m.member_id)
                .unwrap()
                .insert(topic.clone(), parts);
        }
    }
    out
}

pub fn roundrobin(
    members: &[MemberSubscription],
    partitions: &BTreeMap<String, i32>,
) -> Assignment {
    let mut out = empty(members);
    let order = sorted(members);
    if order.is_empty() {
        return out;
    }
    let mut next = 0usize;
    for (topic, &count) in partitions {
        if !order.iter().any(|m| m.topics.iter().any(|t| t == topic)) {
            continue;
        }
        for p in 0..count.max(0) {
            // Deal to the next member (circularly) subscribed to this topic.
            while !order[next % order.len()].topics.iter().any(|t| t == topic) {
                next += 1;
            }
            let m = order[next % order.len()];
            next += 1;
            out.get_mut(&m.member_id)
                .unwrap()
                .entry(topic.clone())
                .or_default()
                .push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn member(id: &str, topics: &[&str]) -> MemberSubscription {
        MemberSubscription {
            member_id: id.to_string(),
            instance_id: None,
            topics: topics.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn counts(list: &[(&str, i32)]) -> BTreeMap<String, i32> {
        list.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn of(a: &Assignment, m: &str, t: &str) -> Vec<i32> {
        a[m].get(t).cloned().unwrap_or_default()
    }

    #[test]
    fn range_three_members_seven_partitions() {
        // librdkafka / Java: 7 / 3 = 2 each, the first member one extra.
        let ms = [
            member("c", &["t"]),
            member("a", &["t"]),
            member("b", &["t"]),
        ];
        let a = range(&ms, &counts(&[("t", 7)]));
        assert_eq!(of(&a, "a", "t"), vec![0, 1, 2]);
        assert_eq!(of(&a, "b", "t"), vec![3, 4]);
        assert_eq!(of(&a, "c", "t"), vec![5, 6]);
    }

    #[test]
    fn range_is_per_topic() {
        // Java's RangeAssignor javadoc: C0,C1 on t0,t1 with 3 partitions each.
        let ms = [member("C0", &["t0", "t1"]), member("C1", &["t0", "t1"])];
        let a = range(&ms, &counts(&[("t0", 3), ("t1", 3)]));
        assert_eq!(of(&a, "C0", "t0"), vec![0, 1]);
        assert_eq!(of(&a, "C0", "t1"), vec![0, 1]);
        assert_eq!(of(&a, "C1", "t0"), vec![2]);
        assert_eq!(of(&a, "C1", "t1"), vec![2]);
    }

    #[test]
    fn roundrobin_across_topics() {
        // Java's RoundRobinAssignor javadoc: C0: [t0p0, t0p2, t1p1], C1: [t0p1, t1p0, t1p2].
        let ms = [member("C1", &["t0", "t1"]), member("C0", &["t0", "t1"])];
        let a = roundrobin(&ms, &counts(&[("t0", 3), ("t1", 3)]));
        assert_eq!(of(&a, "C0", "t0"), vec![0, 2]);
        assert_eq!(of(&a, "C0", "t1"), vec![1]);
        assert_eq!(of(&a, "C1", "t0"), vec![1]);
        assert_eq!(of(&a, "C1", "t1"), vec![0, 2]);
    }

    #[test]
    fn roundrobin_skips_unsubscribed() {
        // Java javadoc, unequal subscriptions: C0 [t0], C1 [t0,t1], C2 [t0,t1,t2];
        // t0 1 partition, t1 2, t2 3 -> C0 [t0p0], C1 [t1p0], C2 [t1p1, t2p0, t2p1, t2p2].
        let ms = [
            member("C0", &["t0"]),
            member("C1", &["t0", "t1"]),
            member("C2", &["t0", "t1", "t2"]),
        ];
        let a = roundrobin(&ms, &counts(&[("t0", 1), ("t1", 2), ("t2", 3)]));
        assert_eq!(of(&a, "C0", "t0"), vec![0]);
        assert_eq!(of(&a, "C1", "t1"), vec![0]);
        assert!(of(&a, "C1", "t0").is_empty());
        assert_eq!(of(&a, "C2", "t1"), vec![1]);
        assert_eq!(of(&a, "C2", "t2"), vec![0, 1, 2]);
    }

    #[test]
    fn static_members_sort_by_instance_id() {
        let mut x = member("zzz", &["t"]);
        x.instance_id = Some("g-0".into());
        let mut y = member("aaa", &["t"]);
        y.instance_id = Some("g-1".into());
        let a = range(&[y, x], &counts(&[("t", 4)]));
        assert_eq!(of(&a, "zzz", "t"), vec![0, 1]);
        assert_eq!(of(&a, "aaa", "t"), vec![2, 3]);
    }

    #[test]
    fn more_members_than_partitions_and_empty_cases() {
        let ms = [
            member("a", &["t"]),
            member("b", &["t"]),
            member("c", &["t"]),
        ];
        let a = range(&ms, &counts(&[("t", 2)]));
        assert_eq!((of(&a, "a", "t"), of(&a, "b", "t")), (vec![0], vec![1]));
        assert!(a["c"].is_empty());
        let r = roundrobin(&ms, &counts(&[("t", 0)]));
        assert!(r.values().all(|m| m.is_empty()));
        assert!(roundrobin(&[], &counts(&[("t", 3)])).is_empty());
        // A topic nobody subscribes to is left alone.
        let r = roundrobin(&ms, &counts(&[("other", 3)]));
        assert!(r.values().all(|m| m.is_empty()));
    }

    proptest! {
        #[test]
        fn every_partition_once_and_balanced(
            n_members in 1usize..12,
            n_parts in 0i32..64,
            rr in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let ms: Vec<MemberSubscription> = (0..n_members)
                .map(|i| member(&format!("m-{}", (seed.wrapping_mul(i as u64 + 7)) % 1000 + i as u64 * 1000), &["t"]))
                .collect();
            let alg = if rr { Assignor::RoundRobin } else { Assignor::Range };
            let a = assign(alg, &ms, &counts(&[("t", n_parts)]));
            prop_assert_eq!(a.len(), n_members);
            let mut all: Vec<i32> = a.values().flat_map(|t| t.get("t").cloned().unwrap_or_default()).collect();
            all.sort();
            prop_assert_eq!(all, (0..n_parts).collect::<Vec<_>>());
            let sizes: Vec<usize> = a.values().map(|t| t.get("t").map_or(0, Vec::len)).collect();
            prop_assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
            for t in a.values() {
                if let Some(p) = t.get("t") {
                    prop_assert!(p.windows(2).all(|w| w[0] < w[1]));
                }
            }
        }

        #[test]
        fn roundrobin_balances_across_topics(
            n_members in 1usize..8,
            topics in proptest::collection::vec(0i32..10, 1..4),
        ) {
            let names: Vec<String> = (0..topics.len()).map(|i| format!("t{i}")).collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let ms: Vec<MemberSubscription> = (0..n_members).map(|i| member(&format!("m{i}"), &refs)).collect();
            let pc: BTreeMap<String, i32> = names.iter().cloned().zip(topics.iter().copied()).collect();
            let a = roundrobin(&ms, &pc);
            let sizes: Vec<usize> = a.values().map(|t| t.values().map(Vec::len).sum()).collect();
            prop_assert_eq!(sizes.iter().sum::<usize>(), topics.iter().sum::<i32>() as usize);
            prop_assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
        }
    }
}
