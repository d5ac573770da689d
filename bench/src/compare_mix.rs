//! The browse and mixed workloads against Boxoffice and the peer baselines, one store after
//! another on the same machine, and one table with the ratios (Boxoffice's peak reads/s divided
//! by each store's). Each store's open loop is offered a share of *its own* peak, so latency is
//! compared at the same relative load, not at the same rate.

use std::sync::Arc;

use crate::browse::BoxofficeBrowse;
use crate::catalogue::MIXED_SEARCH_SHARE;
use crate::compare::ratio;
use crate::error::TargetError;
use crate::etcd::EtcdStore;
use crate::mix::BrowseBenchConfig;
use crate::mix::{run_mix, BrowseStore, MixFigures};
use crate::postgres::PostgresStore;
use crate::report::print_table;
use crate::target::{stop, Target};

/// Browse (b): reads are event details and seat maps only.
pub async fn compare_browse(
    boxoffice: Target,
    postgres_url: Option<&str>,
    etcd_urls: &[String],
    cfg: &BrowseBenchConfig,
) -> Result<MixComparison, TargetError> {
    let cfg = BrowseBenchConfig { search_share: 0.0, ..cfg.clone() };
    compare(boxoffice, postgres_url, etcd_urls, cfg).await
}

/// Mixed with search (c): [`MIXED_SEARCH_SHARE`] of the reads are searches. `boxoffice` must
/// answer `GET /v1/search` (`boxoffice dev`, or a cluster started with an indexer); etcd's row
/// says "not supported".
pub async fn compare_mixed(
    boxoffice: Target,
    postgres_url: Option<&str>,
    etcd_urls: &[String],
    cfg: &BrowseBenchConfig,
) -> Result<MixComparison, TargetError> {
    let cfg = BrowseBenchConfig { search_share: MIXED_SEARCH_SHARE, ..cfg.clone() };
    compare(boxoffice, postgres_url, etcd_urls, cfg).await
}

/// Runs Boxoffice, stops its servers (so that they do not share the cores with the baselines),
/// then runs each baseline given.
async fn compare(
    boxoffice: Target,
    postgres_url: Option<&str>,
    etcd_urls: &[String],
    cfg: BrowseBenchConfig,
) -> Result<MixComparison, TargetError> {
    let searching = cfg.search_share > 0.0;
    let boxoffice = Arc::new(boxoffice);
    let store = Arc::new(BoxofficeBrowse::new(boxoffice.clone(), cfg.load_concurrency, searching).await?);
    let mut rows = vec![run_row("Boxoffice", store, &cfg).await?];
    stop(boxoffice)?;
    if let Some(url) = postgres_url {
        let store = Arc::new(PostgresStore::connect(url, cfg.clients).await?);
        rows.push(run_row("PostgreSQL", store, &cfg).await?);
    }
    if !etcd_urls.is_empty() {
        let store = Arc::new(EtcdStore::new(etcd_urls)?);
        rows.push(run_row("etcd", store, &cfg).await?);
    }
    Ok(MixComparison { cfg, rows })
}

/// The store is dropped on return.
async fn run_row<S: BrowseStore>(name: &str, store: Arc<S>, cfg: &BrowseBenchConfig) -> Result<Row, TargetError> {
    let name = name.to_owned();
    if cfg.search_share > 0.0 && !store.searches() {
        let why = "no query language".to_owned();
        return Ok(Row { name, store: store.describe(), result: RowResult::NotSupported(why) });
    }
    let figures = run_mix(store, cfg).await?;
    Ok(Row { name, store: figures.store.clone(), result: RowResult::Ran(Box::new(figures)) })
}

struct Row {
    name: String,
    store: String,
    result: RowResult,
}

enum RowResult {
    Ran(Box<MixFigures>),
    /// The workload needs what the store does not have; the reason.
    NotSupported(String),
}

pub struct MixComparison {
    cfg: BrowseBenchConfig,
    rows: Vec<Row>,
}

impl MixComparison {
    fn searching(&self) -> bool {
        self.cfg.search_share > 0.0
    }

    /// "browse" or "mixed with search".
    pub fn workload(&self) -> &'static str {
        if self.searching() {
            "mixed with search"
        } else {
            "browse"
        }
    }

    /// Each store's figures, by its row's name, for stores that ran the workload.
    pub fn figures(&self, name: &str) -> Option<&MixFigures> {
        self.rows.iter().find(|r| r.name == name).and_then(|r| match &r.result {
            RowResult::Ran(f) => Some(&**f),
            RowResult::NotSupported(_) => None,
        })
    }

    /// The table's lines: a header, then one line per store; Boxoffice comes first and the last
    /// column is Boxoffice's peak reads/s divided by the row's.
    pub fn lines(&mut self) -> Vec<Vec<String>> {
        let searching = self.searching();
        let reference = self.rows.first().and_then(|r| match &r.result {
            RowResult::Ran(f) => Some(f.peak_reads_per_s),
            RowResult::NotSupported(_) => None,
        });
        let mut header = vec!["store", "peak reads/s", "writes/s"];
        if searching {
            header.push("searches/s");
        }
        header.extend(["read p50", "p99", "p999", "write p50", "p99", "p999"]);
        if searching {
            header.extend(["search p50", "p99"]);
        }
        header.extend(["not started", "errors", "I1", "Boxoffice ÷ this (reads/s)"]);
        let columns = header.len();
        let mut lines = vec![header.into_iter().map(str::to_owned).collect::<Vec<_>>()];
        for row in &mut self.rows {
            let mut line = vec![format!("{} ({})", row.name, row.store)];
            match &mut row.result {
                RowResult::NotSupported(_) => {
                    line.push("not supported".to_owned());
                    line.resize(columns, "–".to_owned());
                }
                RowResult::Ran(f) => {
                    line.push(format!("{:.0}", f.peak_reads_per_s));
                    line.push(format!("{:.0}", f.peak_writes_per_s));
                    if searching {
                        line.push(format!("{:.0}", f.peak_searches_per_s));
                    }
                    line.extend(quantiles(&mut f.paced.reads, &[0.5, 0.99, 0.999]));
                    line.extend(quantiles(&mut f.paced.writes, &[0.5, 0.99, 0.999]));
                    if searching {
                        line.extend(quantiles(&mut f.paced.searches, &[0.5, 0.99]));
                    }
                    line.push(f.paced.not_started.to_string());
                    line.push(f.errors().to_string());
                    line.push(if f.i1.ok() { "ok".to_owned() } else { "VIOLATED".to_owned() });
                    line.push(reference.map_or("–".to_owned(), |r| ratio(r, f.peak_reads_per_s)));
                }
            }
            lines.push(line);
        }
        lines
    }

    pub fn print(&mut self) {
        let cfg = &self.cfg;
        let searches = if self.searching() {
            format!(", {:.0}% of reads are searches", cfg.search_share * 100.0)
        } else {
            String::new()
        };
        println!(
            "== {}, compared ({} events, {} clients, {} reads per write{searches}, {} s per run; latency at {:.0}% of each store's own peak) ==",
            self.workload(),
            cfg.events,
            cfg.clients,
            cfg.reads_per_write,
            cfg.duration.as_secs(),
            cfg.latency_load_of_peak * 100.0
        );
        print_table(&self.lines());
        for row in &mut self.rows {
            match &mut row.result {
                RowResult::Ran(f) => println!("  {}: {}", row.name, notes(f)),
                RowResult::NotSupported(why) => println!("  {}: not supported: {why}", row.name),
            }
        }
    }
}

/// The figures behind a row that the table has no room for.
fn notes(f: &mut MixFigures) -> String {
    let i1 = &f.i1;
    let mut notes = format!(
        "{} events loaded at {:.0}/s; closed loop read p50 {:.1} ms, p99 {:.1} ms; \
         open loop offered {:.0} reads/s and {:.0} writes/s; \
         I1: {} seats acknowledged held, {} taken in the store, {} events differ, {} seats held twice",
        f.events,
        f.load_per_s,
        f.peak.reads.quantile_ms(0.5),
        f.peak.reads.quantile_ms(0.99),
        f.offered_reads_per_s,
        f.offered_writes_per_s,
        i1.acknowledged,
        i1.taken,
        i1.events_mismatched,
        i1.held_twice
    );
    if !f.paced.cached_reads.is_empty() {
        let (cached, reads) = (f.paced.cached_reads.len(), f.paced.reads.len());
        notes.push_str(&format!(
            "; open loop: {cached} of {reads} reads answered from the read cache, p50 {:.1} ms, p99 {:.1} ms, p999 {:.1} ms",
            f.paced.cached_reads.quantile_ms(0.5),
            f.paced.cached_reads.quantile_ms(0.99),
            f.paced.cached_reads.quantile_ms(0.999)
        ));
    }
    if f.peak.empty_reads > 0 {
        notes.push_str(&format!("; {} reads answered without data", f.peak.empty_reads));
    }
    if !f.peak.searches.is_empty() {
        notes.push_str(&format!(
            "; closed loop search p50 {:.1} ms, p99 {:.1} ms; {} of {} searches found nothing",
            f.peak.searches.quantile_ms(0.5),
            f.peak.searches.quantile_ms(0.99),
            f.peak.empty_searches,
            f.peak.searches.len()
        ));
    }
    notes
}

fn quantiles(latencies: &mut crate::report::Latencies, qs: &[f64]) -> Vec<String> {
    qs.iter().map(|q| format!("{:.1} ms", latencies.quantile_ms(*q))).collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ledger::I1Check;
    use crate::mix::RunFigures;

    fn figures(reads: usize, searches: usize) -> MixFigures {
        let mut paced = RunFigures::default();
        for ms in 1..=reads as u64 {
            paced.reads.record(Duration::from_millis(ms));
            paced.writes.record(Duration::from_millis(2 * ms));
        }
        for _ in 0..searches {
            paced.searches.record(Duration::from_millis(3));
        }
        paced.not_started = 4;
        MixFigures {
            store: "s".into(),
            events: 10,
            load_per_s: 1.0,
            duration: Duration::from_secs(1),
            peak: RunFigures::default(),
            peak_reads_per_s: reads as f64,
            peak_writes_per_s: 1.0,
            peak_searches_per_s: searches as f64,
            offered_reads_per_s: 0.0,
            offered_writes_per_s: 0.0,
            paced,
            i1: I1Check::default(),
        }
    }

    fn row(name: &str, result: RowResult) -> Row {
        Row { name: name.into(), store: "x".into(), result }
    }

    #[test]
    fn browse_rows_divide_boxoffice_reads_by_each_stores() {
        let mut comparison = MixComparison {
            cfg: BrowseBenchConfig::default(),
            rows: vec![
                row("Boxoffice", RowResult::Ran(Box::new(figures(100, 0)))),
                row("PostgreSQL", RowResult::Ran(Box::new(figures(50, 0)))),
            ],
        };
        let lines = comparison.lines();
        assert_eq!(lines[0].len(), 13);
        assert_eq!(lines[0][1], "peak reads/s");
        assert_eq!(lines[1][0], "Boxoffice (x)");
        assert_eq!(lines[1][3], "50.0 ms", "read p50");
        assert_eq!(lines[1][9], "4", "not started");
        assert_eq!(lines[1][11], "ok");
        assert_eq!(lines[1][12], "1.00×");
        assert_eq!(lines[2][12], "2.00×");
        assert_eq!(comparison.workload(), "browse");
    }

    #[test]
    fn a_store_without_search_says_so_in_the_mixed_table() {
        let cfg = BrowseBenchConfig { search_share: 0.1, ..BrowseBenchConfig::default() };
        let mut comparison = MixComparison {
            cfg,
            rows: vec![
                row("Boxoffice", RowResult::Ran(Box::new(figures(10, 2)))),
                row("etcd", RowResult::NotSupported("no query language".into())),
            ],
        };
        let lines = comparison.lines();
        assert_eq!(lines[0].len(), 16);
        assert!(lines[0].contains(&"search p50".to_owned()));
        assert_eq!(lines[1][3], "2", "searches/s");
        assert_eq!(lines[1][10], "3.0 ms", "search p50");
        assert_eq!(lines[2][1], "not supported");
        assert_eq!(lines[2].len(), 16);
        assert!(comparison.figures("etcd").is_none());
        assert_eq!(comparison.workload(), "mixed with search");
    }
}
