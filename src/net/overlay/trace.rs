//! A lookup's path, request by request, for `p2psip trace`
//! (docs/operations.md, "Path trace"): whom this node asked, who had named
//! that node to it, on which disjoint path, how long the answer took and
//! what it was. Only what the lookup itself saw: no remote node is asked
//! to reveal anything more than a lookup asks.

use super::Query;
use crate::identity::NodeId;
use crate::net::NetError;
use crate::overlay::peers::Failure;
use crate::overlay::routing::Contact;
use crate::wire::Message;
use std::collections::HashMap;
use std::time::Duration;

/// One request of a traced lookup.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceHop {
    /// The node asked.
    pub to: Contact,
    /// The node whose answer named it first; `None` when it came from this
    /// node's own routing table (a seed of the lookup).
    pub via: Option<NodeId>,
    /// The disjoint path it was asked on.
    pub path: Option<usize>,
    /// From the request to its answer (or its failure).
    pub rtt: Duration,
    /// What it answered.
    pub answer: HopAnswer,
}

/// What a node asked in a lookup answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HopAnswer {
    /// Contacts closer to the key (FindNode, or FindValue without a record).
    Contacts {
        /// How many.
        contacts: usize,
    },
    /// Records under the key (verified afterwards by the lookup).
    Value {
        /// How many records.
        records: usize,
        /// And how many contacts.
        contacts: usize,
    },
    /// No usable answer.
    Failed(Failure),
    /// Still unanswered when the lookup ended (it had what it needed).
    Unanswered,
}

/// The hop for `to`'s `result`, `rtt` after the request.
pub(super) fn hop(
    query: &Query,
    referrers: &HashMap<NodeId, NodeId>,
    to: Contact,
    result: &Result<Message, NetError>,
    rtt: Duration,
) -> TraceHop {
    let answer = match result {
        Ok(Message::Nodes { contacts }) => HopAnswer::Contacts {
            contacts: contacts.len(),
        },
        Ok(Message::Value { records, contacts }) if records.is_empty() => HopAnswer::Contacts {
            contacts: contacts.len(),
        },
        Ok(Message::Value { records, contacts }) => HopAnswer::Value {
            records: records.len(),
            contacts: contacts.len(),
        },
        Ok(_) => HopAnswer::Failed(Failure::NotInOverlay),
        Err(e) => HopAnswer::Failed(super::failure_of(e)),
    };
    TraceHop {
        to,
        via: referrers.get(&to.id).copied(),
        path: query.path_of(&to.id),
        rtt,
        answer,
    }
}

/// Notes `from` as the referrer of each contact its answer names that
/// nobody named before.
pub(super) fn learn_referrers(
    referrers: &mut HashMap<NodeId, NodeId>,
    from: Contact,
    result: &Result<Message, NetError>,
) {
    let contacts = match result {
        Ok(Message::Nodes { contacts } | Message::Value { contacts, .. }) => contacts,
        _ => return,
    };
    for c in contacts {
        if c.id != from.id {
            referrers.entry(c.id).or_insert(from.id);
        }
    }
}
