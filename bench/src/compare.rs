//! `boxoffice-bench compare`: the flash sale against Boxoffice and the peer baselines, one after
//! another on the same machine, and one table with the ratios. Each store first runs the sale as
//! fast as its buyers can go (a closed loop: its peak), then again with hold commands offered at a
//! share of the pace it kept at each stage of that peak run (an open loop: its latency under a
//! load it can carry).

use std::sync::Arc;

use crate::error::TargetError;
use crate::etcd::EtcdStore;
use crate::flash_sale::BoxofficeStore;
use crate::postgres::PostgresStore;
use crate::report::print_table;
use crate::sale::{run_paced_sale, run_sale, FlashSaleConfig, PacedSaleFigures, SaleFigures, SalePace, SaleStore};
use crate::target::{stop, Target};

#[derive(Clone, Debug)]
pub struct CompareConfig {
    pub sale: FlashSaleConfig,
    /// Share of each store's own peak pace (hold commands per second at each stage of the sale,
    /// [`SalePace`]) offered in its latency run.
    pub latency_load_of_peak: f64,
    /// Skipped when absent.
    pub postgres_url: Option<String>,
    /// Skipped when empty.
    pub etcd_urls: Vec<String>,
}

impl Default for CompareConfig {
    fn default() -> Self {
        CompareConfig {
            sale: FlashSaleConfig::default(),
            latency_load_of_peak: 0.7,
            postgres_url: None,
            etcd_urls: Vec::new(),
        }
    }
}

/// Runs the sale against `boxoffice` (stopped before the baselines run, so that they do not
/// share the cores with it), then against each baseline given.
pub async fn run(boxoffice: Target, cfg: CompareConfig) -> Result<Comparison, TargetError> {
    let boxoffice = Arc::new(boxoffice);
    let mut rows = vec![labelled("Boxoffice", Arc::new(BoxofficeStore::new(boxoffice.clone())), &cfg).await?];
    stop(boxoffice)?;
    if let Some(url) = &cfg.postgres_url {
        let store = Arc::new(PostgresStore::connect(url, cfg.sale.buyers).await?);
        rows.push(labelled("PostgreSQL", store, &cfg).await?);
    }
    if !cfg.etcd_urls.is_empty() {
        let store = Arc::new(EtcdStore::new(&cfg.etcd_urls)?);
        rows.push(labelled("etcd", store, &cfg).await?);
    }
    Ok(Comparison { sale: cfg.sale, share: cfg.latency_load_of_peak, rows })
}

/// The peak run, then the latency run at a share of the peak's pace, each on an event of its
/// own. The store is dropped (and what it started stopped) when this returns.
async fn labelled<S: SaleStore>(name: &str, store: Arc<S>, cfg: &CompareConfig) -> Result<Row, TargetError> {
    let figures = run_sale(store.clone(), &cfg.sale).await?;
    let peak_commands_per_s = figures.commands_per_s_until(crate::sale::ninety_percent(cfg.sale.seats));
    let pace = SalePace::of(&figures);
    let share = cfg.latency_load_of_peak;
    let paced = run_paced_sale(store, &cfg.sale, |won| share * pace.at(won)).await?;
    Ok(Row { name: name.to_owned(), figures, peak_commands_per_s, pace, paced })
}

struct Row {
    name: String,
    figures: SaleFigures,
    /// Hold commands (successes and refusals) per second in the peak run, until 90% of the seats
    /// were taken.
    peak_commands_per_s: f64,
    /// The peak run's pace at each stage of the sale, which the latency run offers a share of.
    pace: SalePace,
    paced: PacedSaleFigures,
}

pub struct Comparison {
    sale: FlashSaleConfig,
    share: f64,
    rows: Vec<Row>,
}

impl Comparison {
    /// The stretch of the sale every store's rate is measured over: until 90% of the seats were
    /// won, or fewer if a store did not get that far in its run. A store that stopped early would
    /// otherwise be measured on the easy start only, when blind picks mostly succeed.
    pub fn compared_seats(&self) -> usize {
        let ninety = crate::sale::ninety_percent(self.sale.seats);
        self.rows.iter().map(|r| r.figures.seats_won()).fold(ninety, usize::min)
    }

    /// The table's lines: a header, then one line per store; Boxoffice comes first and the
    /// last column is Boxoffice's durable holds/s divided by the row's.
    pub fn lines(&mut self) -> Vec<Vec<String>> {
        let seats = self.compared_seats();
        let rate = |f: &SaleFigures| f.holds_per_s_until(seats).unwrap_or(0.0);
        let reference = self.rows.first().map_or(0.0, |r| rate(&r.figures));
        let mut lines =
            vec![["store", "durable holds/s", "hold p50", "p99", "p999", "errors", "I1", "Boxoffice ÷ this"]
                .map(str::to_owned)
                .to_vec()];
        for row in &mut self.rows {
            let rate = rate(&row.figures);
            let f = &mut row.figures;
            lines.push(vec![
                format!("{} ({})", row.name, f.store),
                format!("{rate:.0}"),
                format!("{:.1} ms", f.hold_latency.quantile_ms(0.5)),
                format!("{:.1} ms", f.hold_latency.quantile_ms(0.99)),
                format!("{:.1} ms", f.hold_latency.quantile_ms(0.999)),
                f.errors.to_string(),
                if f.i1_ok() { "ok".to_owned() } else { "VIOLATED".to_owned() },
                ratio(reference, rate),
            ]);
        }
        lines
    }

    /// The latency run's table: a header, then one line per store.
    pub fn latency_lines(&mut self) -> Vec<Vec<String>> {
        let mut lines = vec![[
            "store",
            "hold cmds/s offered (mean)",
            "answered p50",
            "p99",
            "p999",
            "held p99",
            "not started",
            "errors",
            "I1",
        ]
        .map(str::to_owned)
        .to_vec()];
        for row in &mut self.rows {
            let p = &mut row.paced;
            lines.push(vec![
                row.name.clone(),
                format!("{:.0} (peak run: {:.0})", p.offered_per_s, row.peak_commands_per_s),
                format!("{:.1} ms", p.answered.latencies.quantile_ms(0.5)),
                format!("{:.1} ms", p.answered.latencies.quantile_ms(0.99)),
                format!("{:.1} ms", p.answered.latencies.quantile_ms(0.999)),
                format!("{:.1} ms", p.held_latency.quantile_ms(0.99)),
                p.answered.skipped.to_string(),
                (p.answered.errors + p.checkout_errors).to_string(),
                if p.i1_ok() { "ok".to_owned() } else { "VIOLATED".to_owned() },
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
        let seats = self.compared_seats();
        println!(
            "  (durable holds/s: successful holds per second until {seats} seats ({:.0}%) were taken, the same stretch for every store)",
            100.0 * seats as f64 / f64::from(self.sale.seats.max(1))
        );
        print_table(&self.lines());
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
        println!(
            "== flash sale at {:.0}% of each store's peak (open loop, latency from when each hold was due) ==",
            self.share * 100.0
        );
        println!(
            "  (offered: {:.0}% of the hold commands per second the store answered in its peak run while the same tenth of the hall was sold)",
            self.share * 100.0
        );
        print_table(&self.latency_lines());
        for row in &self.rows {
            let p = &row.paced;
            let bands: Vec<String> = row.pace.bands().iter().map(|r| format!("{r:.0}")).collect();
            println!(
                "  {}: {} holds, {} checkouts; {} of {} seats taken; peak pace by tenth of the hall: {}",
                row.name,
                p.holds,
                p.checkouts,
                p.taken,
                self.sale.seats,
                bands.join(" / ")
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
