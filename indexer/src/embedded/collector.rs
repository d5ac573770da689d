//! Collects the best `depth` matches in the search order, dropping those outside the distance
//! filter as it goes, so pages are always full and `more` is exact without re-querying.
//!
//! Order: score descending (all zero without words), then `starts_at` ascending, then event id
//! ascending.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::Arc;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::ColumnValues;
use tantivy::{DocAddress, DocId, Score, SegmentOrdinal, SegmentReader};

use super::schema::{EVENT_KEY, LAT, LON, STARTS_AT};
use crate::plan::{Circle, Plan};

/// One match and the values it is ordered by.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ranked {
    pub score: Score,
    pub starts_at_ms: i64,
    pub event_key: u64,
    pub address: DocAddress,
}

impl Ord for Ranked {
    /// `Less` ranks first.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then(self.starts_at_ms.cmp(&other.starts_at_ms))
            .then(self.event_key.cmp(&other.event_key))
            .then(self.address.cmp(&other.address))
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked {}

pub(crate) struct RankCollector {
    depth: usize,
    scored: bool,
    near: Option<Circle>,
}

impl RankCollector {
    pub fn new(plan: &Plan) -> RankCollector {
        RankCollector { depth: plan.depth(), scored: plan.scored(), near: plan.near }
    }
}

type Column<T> = Arc<dyn ColumnValues<T>>;

pub(crate) struct RankSegment {
    segment: SegmentOrdinal,
    depth: usize,
    starts_at: Column<i64>,
    event_key: Column<u64>,
    near: Option<(Circle, Column<f64>, Column<f64>)>,
    /// The best matches so far, worst on top.
    best: BinaryHeap<Ranked>,
}

impl Collector for RankCollector {
    type Fruit = Vec<Ranked>;
    type Child = RankSegment;

    fn for_segment(&self, segment: SegmentOrdinal, reader: &SegmentReader) -> tantivy::Result<RankSegment> {
        let fast = reader.fast_fields();
        let near = match self.near {
            Some(circle) => {
                Some((circle, fast.column_first_or_default::<f64>(LAT)?, fast.column_first_or_default::<f64>(LON)?))
            }
            None => None,
        };
        Ok(RankSegment {
            segment,
            depth: self.depth,
            starts_at: fast.column_first_or_default::<i64>(STARTS_AT)?,
            event_key: fast.column_first_or_default::<u64>(EVENT_KEY)?,
            near,
            best: BinaryHeap::with_capacity(self.depth.min(1024)),
        })
    }

    fn requires_scoring(&self) -> bool {
        self.scored
    }

    fn merge_fruits(&self, fruits: Vec<Vec<Ranked>>) -> tantivy::Result<Vec<Ranked>> {
        let mut all: Vec<Ranked> = fruits.into_iter().flatten().collect();
        all.sort_unstable();
        all.truncate(self.depth);
        Ok(all)
    }
}

impl SegmentCollector for RankSegment {
    type Fruit = Vec<Ranked>;

    fn collect(&mut self, doc: DocId, score: Score) {
        let starts_at_ms = self.starts_at.get_val(doc);
        let full = self.best.len() >= self.depth;
        if full {
            // Most matches of a broad query lose to the current worst on score or date alone:
            // decide those before reading anything else.
            if let Some(worst) = self.best.peek() {
                let cheap = worst.score.total_cmp(&score).then(starts_at_ms.cmp(&worst.starts_at_ms));
                if cheap == Ordering::Greater {
                    return;
                }
            }
        }
        if let Some((circle, lat, lon)) = &self.near {
            if !circle.contains(lat.get_val(doc), lon.get_val(doc)) {
                return;
            }
        }
        let hit = Ranked {
            score,
            starts_at_ms,
            event_key: self.event_key.get_val(doc),
            address: DocAddress::new(self.segment, doc),
        };
        if !full {
            self.best.push(hit);
        } else if let Some(mut worst) = self.best.peek_mut() {
            if hit < *worst {
                *worst = hit;
            }
        }
    }

    fn harvest(self) -> Vec<Ranked> {
        self.best.into_vec()
    }
}
