//! Who may ask a node what. Every connection to a node's port is mutual TLS, and the peer's
//! certificate names its role (`pki::Role`); each request is judged here against that role
//! before the node acts on it. The table follows what each kind of process actually sends (the
//! call sites of `NodeRequest`), and nothing more:
//!
//! - a **node** sends Raft messages, group operations (init, open, campaign, members, drop),
//!   joins, routing, and proposes layout commands (the initial layout, placements);
//! - an **api** proposes its users' commands (catalogue writes, holds, checkouts, the payment
//!   results of its own payment path, cancels, waiting-room commands), reads, follows change
//!   feeds and asks for routing, and never changes the layout or a group's membership;
//! - an **indexer** reads, follows change feeds and asks for routing;
//! - an **operator** (the `boxoffice` command line) creates the cluster, changes the layout (adds
//!   and drains nodes), rebuilds copies (`cluster repair`: members, drop), backs up, restores, and
//!   asks for status and routing.
//!
//! A request outside the table is answered `WireError::Forbidden`, counted in
//! `boxoffice_rpc_forbidden_total{kind,role}`, logged, and changes nothing.

use pki::Role;
use raft_store::Command;

use crate::wire::{NodeRequest, RequestKind, WireError};

/// Which roles may propose a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CommandClass {
    /// The cluster's layout (the meta group's membership and placements): nodes and operators.
    Layout,
    /// What a group's leader proposes to itself (expiry, archiving, admission): nodes.
    LeaderDuty,
    /// What users ask for through an api: catalogue writes, bookings, payments, the waiting room.
    Client,
    /// A command kept only so that old logs decode: nobody proposes it any more.
    Retired,
}

/// Every command has a class: a new command fails to compile here until it is given one.
fn command_class(command: &Command) -> CommandClass {
    match command {
        Command::InitLayout { .. }
        | Command::AddNode { .. }
        | Command::DrainNode { .. }
        | Command::SetPlacement { .. }
        | Command::ForgetNode { .. } => CommandClass::Layout,
        Command::Expire | Command::Archive { .. } | Command::AdvanceQueue { .. } => CommandClass::LeaderDuty,
        Command::CreateVenue(_)
        | Command::CreateEvent(_)
        | Command::UpdateEvent { .. }
        | Command::Hold { .. }
        | Command::ReleaseHold { .. }
        | Command::Checkout { .. }
        | Command::PaymentResult { .. }
        | Command::CancelOrder { .. }
        | Command::LeaseQueueBlock { .. }
        | Command::JoinQueue { .. }
        | Command::CheckIn { .. }
        | Command::TransferTicket { .. }
        | Command::SetPricing { .. }
        | Command::RegisterWebhook { .. }
        | Command::DeleteWebhook { .. } => CommandClass::Client,
        // Proposed, it would be a hold that skips the held-seat cap.
        Command::HoldUncapped { .. } => CommandClass::Retired,
    }
}

/// Whether `role` may send requests of `kind` at all. A proposal is judged by its command too
/// ([`may_propose`]).
pub fn may_send(role: Role, kind: RequestKind) -> bool {
    use RequestKind as K;
    use Role::{Api, Indexer, Node, Operator};
    match kind {
        K::RaftAppend | K::RaftVote | K::RaftSnapshot => role == Node,
        K::Propose => matches!(role, Node | Api | Operator),
        K::Read | K::Changes => matches!(role, Api | Indexer),
        K::Routing => matches!(role, Node | Api | Indexer | Operator),
        K::Status | K::Info | K::InitCluster | K::BackupOpen | K::BackupNext | K::RestoreChunk | K::TransferLeader => {
            role == Operator
        }
        K::Join | K::EnsureMembers | K::DropGroup => matches!(role, Node | Operator),
        K::InitGroup | K::OpenGroup | K::Campaign => role == Node,
    }
}

/// Whether `role` may propose `command`.
pub fn may_propose(role: Role, command: &Command) -> bool {
    match command_class(command) {
        CommandClass::Layout => matches!(role, Role::Node | Role::Operator),
        CommandClass::LeaderDuty => role == Role::Node,
        CommandClass::Client => role == Role::Api,
        CommandClass::Retired => false,
    }
}

/// `Ok` if `role` may send `request`; the refusal to answer otherwise.
pub fn authorize(role: Role, request: &NodeRequest) -> Result<(), WireError> {
    let kind = request.kind();
    let forbidden = |what: String| WireError::Forbidden { role: role.to_string(), what };
    if !may_send(role, kind) {
        return Err(forbidden(kind.to_string()));
    }
    match request {
        NodeRequest::Propose { proposal, .. } if !may_propose(role, &proposal.command) => {
            Err(forbidden(format!("propose {}", proposal.command.name())))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use raft_store::{EventId, GroupId, Proposal};

    use super::*;

    /// The table, written out: kind → the roles that may send it. `may_send` must agree with
    /// every cell.
    fn expected() -> BTreeMap<RequestKind, &'static [Role]> {
        use RequestKind as K;
        use Role::{Api, Indexer, Node, Operator};
        BTreeMap::from([
            (K::RaftAppend, &[Node][..]),
            (K::RaftVote, &[Node][..]),
            (K::RaftSnapshot, &[Node][..]),
            (K::Propose, &[Node, Api, Operator][..]),
            (K::Read, &[Api, Indexer][..]),
            (K::Changes, &[Api, Indexer][..]),
            (K::Routing, &[Node, Api, Indexer, Operator][..]),
            (K::Status, &[Operator][..]),
            (K::Join, &[Node, Operator][..]),
            (K::InitCluster, &[Operator][..]),
            (K::InitGroup, &[Node][..]),
            (K::OpenGroup, &[Node][..]),
            (K::Campaign, &[Node][..]),
            (K::EnsureMembers, &[Node, Operator][..]),
            (K::DropGroup, &[Node, Operator][..]),
            (K::BackupOpen, &[Operator][..]),
            (K::BackupNext, &[Operator][..]),
            (K::RestoreChunk, &[Operator][..]),
            (K::TransferLeader, &[Operator][..]),
            (K::Info, &[Operator][..]),
        ])
    }

    #[test]
    fn every_kind_and_role_is_judged_as_the_table_says() {
        let table = expected();
        assert_eq!(table.len(), RequestKind::ALL.len(), "the table names every kind");
        for kind in RequestKind::ALL {
            for role in Role::ALL {
                let want = table[&kind].contains(&role);
                assert_eq!(may_send(role, kind), want, "{role} sending {kind}");
            }
        }
    }

    fn propose(command: Command) -> NodeRequest {
        NodeRequest::Propose { group: GroupId::META, proposal: Proposal::internal(command), quick_refusal: false }
    }

    #[test]
    fn only_operators_and_nodes_change_the_layout_and_only_apis_propose_users_commands() {
        let event = EventId::from_u64(7);
        let layout = [Command::AddNode { id: 4, addr: "10.0.0.4:7001".into() }, Command::DrainNode { id: 2 }];
        let duties = [Command::Expire, Command::AdvanceQueue { event_id: event.clone(), to: 10 }];
        let client = [Command::LeaseQueueBlock { event_id: event, size: 100, unused: None }];
        for (commands, allowed) in [
            (&layout[..], &[Role::Node, Role::Operator][..]),
            (&duties[..], &[Role::Node][..]),
            (&client[..], &[Role::Api][..]),
        ] {
            for command in commands {
                for role in Role::ALL {
                    let verdict = authorize(role, &propose(command.clone()));
                    assert_eq!(verdict.is_ok(), allowed.contains(&role), "{role} proposing {}", command.name());
                    if let Err(e) = verdict {
                        assert!(matches!(e, WireError::Forbidden { .. }), "{e:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_refusal_names_the_role_and_what_it_asked() {
        let refused = authorize(Role::Api, &NodeRequest::DropGroup { group: GroupId::shard(0) }).unwrap_err();
        assert_eq!(refused, WireError::Forbidden { role: "api".into(), what: "drop_group".into() });
        let refused = authorize(Role::Api, &propose(Command::DrainNode { id: 1 })).unwrap_err();
        assert_eq!(refused.to_string(), "forbidden: the api role may not send propose drain_node");
    }
}
