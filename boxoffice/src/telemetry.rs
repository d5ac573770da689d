//! Logs (tracing) and metrics (Prometheus) for the binary.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// The metrics recorder could not be installed.
pub type MetricsError = metrics_exporter_prometheus::BuildError;
use seams::MetricsRender;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Installs the global tracing subscriber. `filter` uses `RUST_LOG` syntax.
pub fn init_tracing(format: LogFormat, filter: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Latency buckets in seconds, from 100 µs to 10 s.
const LATENCY_BUCKETS_S: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25,
    0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Proposals per log entry.
const PROPOSALS_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Installs the global metrics recorder and returns the function that renders `/metrics`.
pub fn install_metrics() -> Result<MetricsRender, MetricsError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS_S)?
        .set_buckets_for_metric(Matcher::Full("boxoffice_entry_proposals".into()), PROPOSALS_BUCKETS)?
        .install_recorder()?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    Ok(std::sync::Arc::new(move || handle.render()))
}

/// A render function that refreshes the node's gauges first, so a scrape never sees stale ones.
pub fn with_node_gauges(node: &std::sync::Arc<node::Node>, render: MetricsRender) -> MetricsRender {
    let node = std::sync::Arc::downgrade(node);
    std::sync::Arc::new(move || {
        if let Some(node) = node.upgrade() {
            node.record_telemetry();
        }
        render()
    })
}
