//! A group's "handing over" mark: while it is set, the replica here takes no proposal and
//! confirms no read as the group's leader, so its followers stop hearing from it and, once their
//! leader lease runs out, another replica can be elected (openraft 0.9 has no leadership
//! transfer). Shared by the group's batcher and read barrier. A leaf module.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use raft_store::GroupId;

use super::error::ProposeError;

#[derive(Clone, Debug, Default)]
pub(super) struct Handoff(Arc<AtomicBool>);

impl Handoff {
    pub(super) fn start(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub(super) fn end(&self) {
        self.0.store(false, Ordering::SeqCst);
    }

    /// "Not the leader, ask another replica" while the group is being handed over.
    pub(super) fn check(&self, group: GroupId) -> Result<(), ProposeError> {
        match self.0.load(Ordering::SeqCst) {
            true => Err(ProposeError::not_leader(group, None, None)),
            false => Ok(()),
        }
    }
}
