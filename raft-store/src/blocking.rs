//! Work that must not hold up a runtime worker: disk reads and writes of snapshot chunks, and
//! CPU-heavy encoding and decoding.

/// Runs `work` on a blocking thread. The simulation forbids threads and has no workers to hold
/// up: it runs the work in place. `None`: the work panicked.
#[cfg(not(madsim))]
pub(crate) async fn off_runtime<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> Option<R> {
    tokio::task::spawn_blocking(work).await.ok()
}

#[cfg(madsim)]
pub(crate) async fn off_runtime<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> Option<R> {
    Some(work())
}
