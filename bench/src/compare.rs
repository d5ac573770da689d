//! `boxoffice bench compare`: the flash sale against Boxoffice and the peer baselines, one after
//! another on the same machine, and one table with the ratios.

use std::sync::Arc;

use crate::etcd::EtcdStore;
use crate::flash_sale::BoxofficeStore;
use crate::postgres::PostgresStore;
use crate::sale::{run_sale, FlashSaleConfig, SaleFigures, SaleStore};
use crate::target::{Target, TargetError};

#[derive(Clone, Debug, Default)]
pub struct CompareConfig {
    pub sale: FlashSaleConfig,
    /// Skipped when absent.
    pub postgres_url: Option<String>,
    /// Skipped when empty.
    pub etcd_urls: Vec<String>,
}

/// Runs the sale against `boxoffice` (stopped before the baselines run, so that they do not
/// share the cores with it), then against each baseline given.
pub async fn run(boxoffice: Target, cfg: CompareConfig) -> Result<Comparison, TargetError> {
    let mut rows = Vec::new();
    let store = Arc::new(BoxofficeStore::new(Arc::new(boxoffice)));
    rows.push(labelled("Boxoffice", store, &cfg.sale).await?);
    if let Some(url) = &cfg.postgres_url {
        let store = Arc::new(PostgresStore::connect(url, cfg.sale.buyers).await?);
        rows.push(labelled("PostgreSQL", store, &cfg.sale).await?);
    }
    if !cfg.etcd_urls.is_empty() {
        let store = Arc::new(EtcdStore::new(&cfg.etcd_urls)?);
        rows.push(labelled("etcd", store, &cfg.sale).await?);
    }
    Ok(Comparison { sale: cfg.sale, rows })
}

/// The store is dropped (and what it started stopped) when this returns.
async fn labelled<S: SaleStore>(name: &str, store: Arc<S>, cfg: &FlashSaleConfig) -> Result<Row, TargetError> {
    let figures = run_sale(store, cfg).await?;
    Ok(Row { name: name.to_owned(), figures })
}

struct Row {
    name: String,
    figures: SaleFigures,
}

pub struct Comparison {
    sale: FlashSaleConfig,
    rows: Vec<Row>,
}

impl Comparison {
    /// The table's lines: a header, then one line per store; Boxoffice comes first and the
    /// last column is Boxoffice's durable holds/s divided by the row's.
    pub fn lines(&mut self) -> Vec<Vec<String>> {
        let reference = self.rows.first().map_or(0.0, |r| r.figures.holds_per_s);
        let mut lines =
            vec![["store", "durable holds/s", "hold p50", "p99", "p999", "errors", "I1", "Boxoffice ÷ this"]
                .map(str::to_owned)
                .to_vec()];
        for row in &mut self.rows {
            let f = &mut row.figures;
            lines.push(vec![
                format!("{} ({})", row.name, f.store),
                format!("{:.0}", f.holds_per_s),
                format!("{:.1} ms", f.hold_latency.quantile_ms(0.5)),
                format!("{:.1} ms", f.hold_latency.quantile_ms(0.99)),
                format!("{:.1} ms", f.hold_latency.quantile_ms(0.999)),
                f.errors.to_string(),
                if f.i1_ok() { "ok".to_owned() } else { "VIOLATED".to_owned() },
                ratio(reference, f.holds_per_s),
            ]);
        }
        lines
    }

    pub fn print(&mut self) {
        println!(
            "== flash sale, compared ({} seats, {} buyers, {} s, checkout ratio {}) ==",
            self.sale.seats,
            self.sale.buyers,
            self.sale.duration.as_secs(),
            self.sale.checkout_ratio
        );
        let lines = self.lines();
        let columns = lines.first().map_or(0, Vec::len);
        let widths: Vec<usize> =
            (0..columns).map(|c| lines.iter().map(|l| l[c].chars().count()).max().unwrap_or(0)).collect();
        for line in &lines {
            let cells: Vec<String> = line.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}", w = *w)).collect();
            println!("  {}", cells.join("  ").trim_end());
        }
        for row in &self.rows {
            let f = &row.figures;
            let sale = if f.ninety_reached {
                format!("90% sold in {:.2} s", f.sale_s)
            } else {
                format!("90% NOT sold in the run: holds/s over {:.2} s", f.sale_s)
            };
            println!(
                "  {}: {sale}; {} holds, {} conflicts, {} checkouts; {} of {} seats taken",
                row.name, f.holds, f.conflicts, f.checkouts, f.taken, f.seats
            );
        }
    }
}

/// `a / b` as "2.3×", or "–" when `b` is zero.
pub fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "–".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_divide_boxoffice_by_the_baseline() {
        assert_eq!(ratio(700.0, 350.0), "2.00×");
        assert_eq!(ratio(700.0, 0.0), "–");
    }
}
