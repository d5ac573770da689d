//! Latency percentiles and the printed report.

use std::time::Duration;

/// Latency samples in microseconds.
#[derive(Default, Clone)]
pub struct Latencies {
    samples_us: Vec<u64>,
}

impl Latencies {
    pub fn record(&mut self, d: Duration) {
        self.samples_us.push(d.as_micros() as u64);
    }

    pub fn merge(&mut self, other: Latencies) {
        self.samples_us.extend(other.samples_us);
    }

    pub fn len(&self) -> usize {
        self.samples_us.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples_us.is_empty()
    }

    /// The `q`-quantile (0..=1) in milliseconds, nearest rank.
    pub fn quantile_ms(&mut self, q: f64) -> f64 {
        if self.samples_us.is_empty() {
            return 0.0;
        }
        self.samples_us.sort_unstable();
        let rank = ((q * self.samples_us.len() as f64).ceil() as usize).clamp(1, self.samples_us.len());
        self.samples_us[rank - 1] as f64 / 1_000.0
    }
}

/// One scenario's figures.
pub struct Report {
    pub scenario: String,
    pub lines: Vec<(String, String)>,
}

impl Report {
    pub fn new(scenario: &str) -> Report {
        Report { scenario: scenario.into(), lines: Vec::new() }
    }

    pub fn line(&mut self, name: &str, value: impl std::fmt::Display) {
        self.lines.push((name.into(), value.to_string()));
    }

    pub fn latencies(&mut self, name: &str, l: &mut Latencies) {
        let value = format!(
            "p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms ({} samples)",
            l.quantile_ms(0.5),
            l.quantile_ms(0.99),
            l.quantile_ms(0.999),
            l.len()
        );
        self.line(name, value);
    }

    pub fn print(&self) {
        println!("== {} ==", self.scenario);
        let width = self.lines.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        for (name, value) in &self.lines {
            println!("  {name:<width$}  {value}");
        }
    }
}

/// Prints `lines` as a table: each column as wide as its widest cell, two spaces between.
pub fn print_table(lines: &[Vec<String>]) {
    for line in table(lines) {
        println!("  {line}");
    }
}

fn table(lines: &[Vec<String>]) -> Vec<String> {
    let columns = lines.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| lines.iter().filter_map(|l| l.get(c)).map(|cell| cell.chars().count()).max().unwrap_or(0))
        .collect();
    lines
        .iter()
        .map(|line| {
            let cells: Vec<String> = line.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}", w = *w)).collect();
            cells.join("  ").trim_end().to_owned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_are_as_wide_as_their_widest_cell() {
        let lines = vec![
            vec!["store".to_owned(), "reads/s".to_owned()],
            vec!["PostgreSQL".to_owned(), "7".to_owned()],
            vec!["etcd".to_owned()],
        ];
        assert_eq!(table(&lines), vec!["store       reads/s", "PostgreSQL  7", "etcd"]);
    }
}
