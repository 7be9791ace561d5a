//! A share group's figures for `--metrics-addr` (and `status`): per
//! partition, the start offset, the high watermark and the backlog between.

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use serde::Serialize;

use super::{family, gauge, Exposition, Labels};

/// One partition of a share group (KIP-932), as the broker tells it: share
/// groups commit no offsets, so the backlog is the records from the
/// share-partition start offset (the first record the group has not
/// finished) to the high watermark. `status` shows it; `--metrics-addr`
/// serves it for a share run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ShareBacklog {
    pub partition: i32,
    /// None when the group has not begun on the partition (the broker's -1).
    pub start_offset: Option<i64>,
    pub high_watermark: i64,
    /// High watermark minus start offset (never negative); None with no start.
    pub backlog: Option<i64>,
}

impl ShareBacklog {
    /// From the broker's start offset (-1: none yet) and the high watermark.
    pub fn new(partition: i32, start_offset: i64, high_watermark: i64) -> Self {
        let start_offset = (start_offset >= 0).then_some(start_offset);
        Self {
            partition,
            start_offset,
            high_watermark,
            backlog: start_offset.map(|s| (high_watermark - s).max(0)),
        }
    }
}

impl Exposition {
    /// A share group's figures per partition (of the group, not of a slot).
    pub(super) fn share_families(&self, enc: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
        let labels = |p: &ShareBacklog| -> Labels {
            vec![
                ("group", self.0.group.clone()),
                ("topic", self.0.topic.clone()),
                ("partition", p.partition.to_string()),
            ]
        };
        let per = |f: fn(&ShareBacklog) -> Option<i64>| -> Vec<(Labels, i64)> {
            let s = &self.0.share;
            s.iter().filter_map(|p| Some((labels(p), f(p)?))).collect()
        };
        family(
            enc,
            "share_start_offset",
            "Share group: the share-partition start offset (the first record the group has not finished)",
            MetricType::Gauge,
            per(|p| p.start_offset),
            gauge,
        )?;
        family(
            enc,
            "share_high_watermark",
            "Share group: the end of the partition's log when the backlog was read",
            MetricType::Gauge,
            per(|p| Some(p.high_watermark)),
            gauge,
        )?;
        family(
            enc,
            "share_backlog",
            "Share group: records from the start offset to the high watermark (not yet finished by the group)",
            MetricType::Gauge,
            per(|p| p.backlog),
            gauge,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::render;

    #[test]
    fn share_backlog_is_the_high_watermark_minus_the_start_offset() {
        let b = ShareBacklog::new(1, 40, 100);
        assert_eq!((b.start_offset, b.backlog), (Some(40), Some(60)));
        // The broker's -1: the group has not begun there; no figure, not the whole log.
        let none = ShareBacklog::new(2, -1, 100);
        assert_eq!((none.start_offset, none.backlog), (None, None));
        // A high watermark read before the start moved past it: not negative.
        assert_eq!(ShareBacklog::new(0, 12, 10).backlog, Some(0));
        let mut v = crate::metrics::tests::view();
        v.share = vec![b, none];
        let text = render(&v);
        for line in [
            r#"kswarm_share_start_offset{group="g",topic="t",partition="1"} 40"#,
            r#"kswarm_share_high_watermark{group="g",topic="t",partition="2"} 100"#,
            r#"kswarm_share_backlog{group="g",topic="t",partition="1"} 60"#,
        ] {
            assert!(text.contains(line), "missing {line}:\n{text}");
        }
        assert!(!text.contains(r#"kswarm_share_backlog{group="g",topic="t",partition="2"}"#));
    }
}
