//! The meta group's state: catalog data that spans shards (venues). Cluster membership and shard
//! placement join it when the cluster grows past one node.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Ctx;
use crate::command::{Answer, Command, Outcome, Query, Refusal};
use crate::ids::VenueId;
use crate::model::Venue;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetaState {
    venues: BTreeMap<VenueId, Venue>,
}

impl MetaState {
    pub(crate) fn apply(&mut self, _ctx: Ctx, command: &Command) -> Outcome {
        match command {
            Command::CreateVenue(venue) => self.create_venue(venue),
            Command::Expire => Outcome::Done,
            _ => Outcome::Refused(Refusal::WrongGroup),
        }
    }

    fn create_venue(&mut self, venue: &Venue) -> Outcome {
        if let Err(detail) = venue.validate() {
            return Outcome::Refused(Refusal::Invalid { detail });
        }
        if self.venues.contains_key(&venue.venue_id) {
            return Outcome::Refused(Refusal::Conflict { detail: format!("venue {} exists", venue.venue_id) });
        }
        self.venues.insert(venue.venue_id.clone(), venue.clone());
        Outcome::Venue(venue.clone())
    }

    pub(crate) fn query(&self, query: &Query) -> Answer {
        match query {
            Query::Venue(id) => Answer::Venue(self.venues.get(id).cloned()),
            _ => Answer::WrongGroup,
        }
    }
}
