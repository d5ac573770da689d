//! The node's wall clock. The leader reads it to stamp commands; apply never does.

/// Milliseconds since the Unix epoch. Under madsim the simulation intercepts the system clock.
pub fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}
