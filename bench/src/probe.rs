//! The server's own counters, read from the `/metrics` page of every process that holds a
//! replica: `boxoffice dev`'s one page, or each node's page of a cluster (a cluster's api shows
//! only its own metrics). Scenarios read them before and after a run, or every second during one,
//! to say what the server did meanwhile: snapshots built, log entries written.

use std::collections::BTreeSet;

use crate::error::TargetError;
use crate::target::{Metrics, Target};

/// Snapshots a node built: one count per snapshot, and the time copying the state machine took.
const SNAPSHOT_COPY: &str = "boxoffice_snapshot_copy_seconds";
/// Proposals per log entry, recorded by each group's batcher on its leader.
const ENTRY_PROPOSALS: &str = "boxoffice_entry_proposals";
/// A gauge per group and node; its labels name the groups.
const GROUP_GAUGE: &str = "boxoffice_raft_is_leader";

/// Where the pages are.
#[derive(Clone)]
pub struct NodeProbe {
    http: reqwest::Client,
    urls: Vec<String>,
}

impl NodeProbe {
    /// The pages of the processes behind `target`: each node of a cluster the bench started, or
    /// the target's own page (`boxoffice dev`, or a server somebody else started).
    pub fn of(target: &Target) -> NodeProbe {
        let urls = match target.cluster() {
            Some(cluster) => cluster.node_addrs().into_iter().map(|(_, addr)| format!("http://{addr}")).collect(),
            None => vec![target.url.clone()],
        };
        NodeProbe { http: target.http.clone(), urls }
    }

    /// Every page, read now.
    pub async fn read(&self) -> Result<NodePages, TargetError> {
        let mut pages = Vec::with_capacity(self.urls.len());
        for url in &self.urls {
            let resp = self.http.get(format!("{url}/metrics")).send().await?;
            if resp.status() != 200 {
                return Err(TargetError::Answer(resp.status().as_u16(), format!("{url}/metrics")));
            }
            pages.push(Metrics(resp.text().await?));
        }
        Ok(NodePages(pages))
    }
}

/// One reading of every page.
pub struct NodePages(Vec<Metrics>);

impl NodePages {
    /// The sum over every node of metric `name` (see [`Metrics::sum`]).
    pub fn sum(&self, name: &str, label: Option<&str>) -> f64 {
        self.0.iter().map(|page| page.sum(name, label)).sum()
    }

    /// Snapshots built by all the nodes together, so far.
    pub fn snapshots(&self) -> u64 {
        self.sum(&format!("{SNAPSHOT_COPY}_count"), None) as u64
    }

    /// The event shards the nodes host (`shard-0` …), from the per-group gauges.
    pub fn shard_count(&self) -> u32 {
        let groups: BTreeSet<&str> = self
            .0
            .iter()
            .flat_map(|page| page.0.lines())
            .filter(|l| l.starts_with(GROUP_GAUGE))
            .filter_map(|l| l.split("group=\"").nth(1)?.split('"').next())
            .filter(|g| g.starts_with("shard-"))
            .collect();
        groups.len() as u32
    }

    /// `(le, count)` of every bucket of histogram `name`, summed over the nodes, by bound.
    fn buckets(&self, name: &str) -> Vec<(f64, f64)> {
        let prefix = format!("{name}_bucket{{");
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        for line in self.0.iter().flat_map(|page| page.0.lines()).filter(|l| l.starts_with(&prefix)) {
            let le = line.split("le=\"").nth(1).and_then(|rest| rest.split('"').next());
            let le = match le {
                Some("+Inf") => f64::INFINITY,
                Some(le) => match le.parse() {
                    Ok(le) => le,
                    Err(_) => continue,
                },
                None => continue,
            };
            let Some(count) = line.rsplit(' ').next().and_then(|c| c.parse::<f64>().ok()) else { continue };
            match buckets.iter_mut().find(|(bound, _)| *bound == le) {
                Some((_, sum)) => *sum += count,
                None => buckets.push((le, count)),
            }
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        buckets
    }
}

/// What the nodes did between two readings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Housekeeping {
    /// Snapshots built, all nodes together.
    pub snapshots: u64,
    /// The smallest histogram bound that every snapshot copy of the span stayed within, in
    /// seconds: the copy's max as closely as the buckets tell it. `None` without snapshots.
    pub copy_max_within_s: Option<f64>,
    /// Log entries the leaders' batchers proposed (client commands and the leaders' duties).
    pub entries: u64,
    /// Commands those entries carried.
    pub commands: u64,
}

impl Housekeeping {
    pub fn between(before: &NodePages, after: &NodePages) -> Housekeeping {
        let delta = |name: &str| (after.sum(name, None) - before.sum(name, None)).max(0.0) as u64;
        let snapshots = delta(&format!("{SNAPSHOT_COPY}_count"));
        let buckets_before = before.buckets(SNAPSHOT_COPY);
        let copy_max_within_s = (snapshots > 0)
            .then(|| {
                after.buckets(SNAPSHOT_COPY).into_iter().find_map(|(le, count)| {
                    let earlier = buckets_before.iter().find(|(b, _)| *b == le).map_or(0.0, |(_, c)| *c);
                    (count - earlier >= snapshots as f64).then_some(le)
                })
            })
            .flatten();
        Housekeeping {
            snapshots,
            copy_max_within_s,
            entries: delta(&format!("{ENTRY_PROPOSALS}_count")),
            commands: delta(&format!("{ENTRY_PROPOSALS}_sum")),
        }
    }

    /// "3 built, each copy ≤ 100 µs", for reports.
    pub fn snapshots_line(&self) -> String {
        match self.copy_max_within_s {
            Some(le) if le.is_finite() => {
                format!("{} built, every copy of the state ≤ {}", self.snapshots, seconds_label(le))
            }
            Some(_) => format!("{} built, a copy took over the largest bucket", self.snapshots),
            None => format!("{} built", self.snapshots),
        }
    }

    /// "41,200 entries, 12.3 commands each", for reports.
    pub fn entries_line(&self) -> String {
        let per_entry = self.commands as f64 / (self.entries as f64).max(1.0);
        format!("{} entries, {per_entry:.1} commands each on average", self.entries)
    }
}

/// A histogram bound in the unit that reads best: "250 µs", "7.5 ms", "2.5 s".
fn seconds_label(s: f64) -> String {
    if s < 1e-3 {
        format!("{:.0} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{} ms", (s * 1e6).round() / 1e3)
    } else {
        format!("{s} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(lines: &[&str]) -> Metrics {
        Metrics(lines.join("\n"))
    }

    #[test]
    fn snapshots_and_their_copy_bound_are_read_across_nodes() {
        let before = NodePages(vec![
            page(&[
                "boxoffice_snapshot_copy_seconds_bucket{le=\"0.0001\"} 1",
                "boxoffice_snapshot_copy_seconds_bucket{le=\"0.00025\"} 1",
                "boxoffice_snapshot_copy_seconds_bucket{le=\"+Inf\"} 1",
                "boxoffice_snapshot_copy_seconds_count 1",
                "boxoffice_entry_proposals_sum 100",
                "boxoffice_entry_proposals_count 10",
                "boxoffice_raft_is_leader{group=\"meta\"} 1",
                "boxoffice_raft_is_leader{group=\"shard-0\"} 1",
            ]),
            page(&["boxoffice_raft_is_leader{group=\"shard-1\"} 0"]),
        ]);
        let after = NodePages(vec![
            page(&[
                "boxoffice_snapshot_copy_seconds_bucket{le=\"0.0001\"} 2",
                "boxoffice_snapshot_copy_seconds_bucket{le=\"0.00025\"} 3",
                "boxoffice_snapshot_copy_seconds_bucket{le=\"+Inf\"} 3",
                "boxoffice_snapshot_copy_seconds_count 3",
                "boxoffice_entry_proposals_sum 400",
                "boxoffice_entry_proposals_count 40",
            ]),
            page(&[
                "boxoffice_snapshot_copy_seconds_bucket{le=\"0.0001\"} 1",
                "boxoffice_snapshot_copy_seconds_bucket{le=\"0.00025\"} 1",
                "boxoffice_snapshot_copy_seconds_bucket{le=\"+Inf\"} 1",
                "boxoffice_snapshot_copy_seconds_count 1",
            ]),
        ]);
        assert_eq!(before.shard_count(), 2);
        let h = Housekeeping::between(&before, &after);
        assert_eq!(h, Housekeeping { snapshots: 3, copy_max_within_s: Some(0.00025), entries: 30, commands: 300 });
        assert_eq!(h.snapshots_line(), "3 built, every copy of the state ≤ 250 µs");
        assert_eq!(h.entries_line(), "30 entries, 10.0 commands each on average");
        let none = Housekeeping::between(&after, &after);
        assert_eq!((none.snapshots, none.copy_max_within_s), (0, None));
    }
}
