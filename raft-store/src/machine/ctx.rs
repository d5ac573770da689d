//! The context every command is applied in. A leaf module: the machine and each group's state
//! import it, and it imports nothing of theirs.

/// Where and when a command is applied: its log index and its effective time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ctx {
    pub index: u64,
    pub now_ms: i64,
}
