//! Dialogs (RFC 3261 §12), sans-IO: who the two sides of each call are,
//! and so who may send what inside it.
//!
//! A dialog is its Call-ID, the caller's tag, the callee's tag and, for
//! each side, the party that authenticated it: a phone of this node (the
//! account it proved by digest, and the transport source its SIP comes
//! from) or a node of the overlay (proved by its QUIC connection). The
//! proxy ([`super::proxy`]) opens a dialog only for a dialog-creating
//! INVITE it authorized, adds the callee's side from a response that
//! came back through a transaction it forwarded, and asks
//! [`Dialogs::authorize`] about every request that claims to be inside
//! a dialog. A To tag is not a dialog: a request whose tags name no
//! dialog held here, or that comes from anyone but the party holding
//! the side it claims, is refused (481) and changes nothing.
//!
//! The table is bounded ([`SIP_MAX_DIALOGS`], per account
//! [`SIP_MAX_DIALOGS_PER_ACCOUNT`], per source
//! [`SIP_MAX_DIALOGS_PER_SOURCE`]) and reads no clock: an early dialog
//! lapses after [`SIP_DIALOG_EARLY_TIMEOUT`], a confirmed one after
//! [`SIP_DIALOG_MAX_AGE`], an ended one lingers [`SIP_DIALOG_LINGER`] so
//! that retransmissions and the answers to its BYE still match.

use super::transaction::Transport;
use crate::identity::NodeId;
use crate::limits::{
    SIP_DIALOG_EARLY_TIMEOUT, SIP_DIALOG_LINGER, SIP_DIALOG_MAX_AGE, SIP_MAX_BINDINGS_PER_AOR,
    SIP_MAX_DIALOGS, SIP_MAX_DIALOGS_PER_ACCOUNT, SIP_MAX_DIALOGS_PER_SOURCE,
};
use crate::netaddr::IpPrefix;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::Instant;
use thiserror::Error;

/// Tags of the callee's side one dialog keeps, at most (one per fork
/// that answered with a tag).
const MAX_CALLEE_TAGS: usize = 8;

/// One side of a dialog: who authenticated it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Party {
    /// A phone of this node: the AOR of the account it proved (or is
    /// bound to), and where its SIP comes from.
    Phone {
        /// The account's AOR.
        aor: String,
        /// The address its SIP comes from (over UDP its port counts too;
        /// over TCP a phone may reconnect from another port).
        source: SocketAddr,
        /// UDP or TCP.
        transport: Transport,
    },
    /// A node of the overlay, by its authenticated id (or the pseudonym
    /// of the other end of an anonymous session).
    Node(NodeId),
}

impl Party {
    /// Whether a message from `peer` over `transport` comes from this
    /// party.
    ///
    /// A phone is known by the host its SIP comes from, over UDP or TCP
    /// alike: RFC 3261 §18.1.1 moves a large request to TCP, a NAT may
    /// give a phone another port mid-call, and a phone may re-register
    /// from another port, and none of these may leave a call that cannot
    /// be hung up. (Another host behind the same NAT address who learned
    /// a dialog's Call-ID and both tags could send in it: see SECURITY.md.)
    pub fn sent(&self, peer: SocketAddr, transport: Transport) -> bool {
        match (self, transport) {
            (Party::Node(node), Transport::Overlay(from)) => *node == from,
            (Party::Phone { source, .. }, Transport::Udp | Transport::Tcp) => {
                source.ip().to_canonical() == peer.ip().to_canonical()
            }
            _ => false,
        }
    }

    /// Whether two parties are the same: the same node, or phones of the
    /// same account on the same host.
    pub fn same(&self, other: &Party) -> bool {
        match (self, other) {
            (Party::Node(a), Party::Node(b)) => a == b,
            (
                Party::Phone {
                    aor: a, source: x, ..
                },
                Party::Phone {
                    aor: b, source: y, ..
                },
            ) => a == b && x.ip().to_canonical() == y.ip().to_canonical(),
            _ => false,
        }
    }

    /// Whether two (peer, transport) pairs are the same sender: the same
    /// node; or the same transport and IP address (a phone's port may
    /// differ between a request and its answers, or between TCP
    /// connections).
    pub fn same_peer(a: (SocketAddr, Transport), b: (SocketAddr, Transport)) -> bool {
        match (a.1, b.1) {
            (Transport::Overlay(x), Transport::Overlay(y)) => x == y,
            (Transport::Udp, Transport::Udp) | (Transport::Tcp, Transport::Tcp) => {
                a.0.ip().to_canonical() == b.0.ip().to_canonical()
            }
            _ => false,
        }
    }

    /// Where this party is reached: a phone's address and transport, a
    /// node's id (its address is the driver's to resolve).
    pub fn peer(&self) -> (SocketAddr, Transport) {
        match self {
            Party::Phone {
                source, transport, ..
            } => (*source, *transport),
            Party::Node(node) => (super::proxy::UNRESOLVED, Transport::Overlay(*node)),
        }
    }

    /// Its media leg.
    pub fn leg(&self) -> super::media::Leg {
        match self {
            Party::Phone { source, .. } => super::media::Leg::Phone(*source),
            Party::Node(node) => super::media::Leg::Node(*node),
        }
    }

    /// The account a phone proved; `None` for a node.
    pub fn account(&self) -> Option<&str> {
        match self {
            Party::Phone { aor, .. } => Some(aor),
            Party::Node(_) => None,
        }
    }

    /// The key its dialogs are counted under as a source.
    fn source_key(&self) -> SourceKey {
        match self {
            Party::Phone { source, .. } => SourceKey::Ip(IpPrefix::host(source.ip())),
            Party::Node(node) => SourceKey::Node(*node),
        }
    }
}

impl std::fmt::Display for Party {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Party::Phone { aor, source, .. } => write!(f, "{aor} at {source}"),
            Party::Node(node) => write!(f, "node {}", node.fmt_short()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SourceKey {
    Ip(IpPrefix),
    Node(NodeId),
}

/// Which side of a dialog a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The side that sent the dialog-creating INVITE.
    Caller,
    /// The side that answered it.
    Callee,
}

/// Where a dialog stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    /// The INVITE is out; no 2xx yet.
    Early,
    /// A 2xx came: the call is up.
    Confirmed,
    /// A BYE, or the INVITE failed: kept a moment for retransmissions;
    /// its media is closed.
    Ended,
}

/// A request inside a dialog, as [`Dialogs::authorize`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InDialog {
    /// The side the request came from.
    pub side: Side,
    /// The party that sent it.
    pub from: Party,
    /// The parties it may go to: the other side (the caller, or the
    /// callee fork the request's tag names).
    pub to: Vec<Party>,
    /// Where the dialog stands.
    pub state: DialogState,
}

/// Why a dialog could not be opened, or a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DialogError {
    /// The tags name no dialog held here (answer 481).
    #[error("no such dialog here")]
    NoDialog,
    /// The dialog exists, but the request does not come from the party
    /// holding the side its tags claim (answer 481, as if none existed:
    /// a stranger learns nothing).
    #[error("not a party of that dialog")]
    NotAParty,
    /// [`SIP_MAX_DIALOGS`] held (answer 503).
    #[error("too many calls at this node (at most {SIP_MAX_DIALOGS})")]
    Full,
    /// The account has [`SIP_MAX_DIALOGS_PER_ACCOUNT`] dialogs (486).
    #[error("too many calls for {0} (at most {SIP_MAX_DIALOGS_PER_ACCOUNT})")]
    AccountBusy(String),
    /// The source has [`SIP_MAX_DIALOGS_PER_SOURCE`] dialogs (503).
    #[error("too many calls from one source (at most {SIP_MAX_DIALOGS_PER_SOURCE})")]
    SourceBusy,
    /// A dialog with this Call-ID and caller tag exists already.
    #[error("a dialog with this Call-ID and From tag exists already")]
    Exists,
}

impl DialogError {
    /// The status code to answer with.
    pub fn code(&self) -> u16 {
        match self {
            DialogError::NoDialog | DialogError::NotAParty | DialogError::Exists => 481,
            DialogError::AccountBusy(_) => 486,
            DialogError::Full | DialogError::SourceBusy => 503,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    call_id: String,
    caller_tag: String,
}

#[derive(Debug)]
struct Dialog {
    caller: Party,
    /// The callee's side: each fork's tag and party.
    callees: Vec<(String, Party)>,
    /// The callee party, by the node or phone the INVITE went to, until
    /// its answer names a tag (the parties a response may come from).
    invited: Vec<Party>,
    state: DialogState,
    /// When it lapses (early or confirmed), or goes (ended).
    deadline: Instant,
}

impl Dialog {
    /// The accounts and sources this dialog is counted under (each once).
    ///
    /// Only the caller's: counting a callee's account too would let
    /// anyone who may ring it (any node of the overlay) make it busy for
    /// its own calls. Calls to an account are bounded by their sources'
    /// budgets and the node's.
    fn counted(&self) -> (Vec<String>, Vec<SourceKey>) {
        let accounts = self
            .caller
            .account()
            .map(str::to_owned)
            .into_iter()
            .collect();
        (accounts, vec![self.caller.source_key()])
    }
}

/// The dialogs a node holds (see the module docs).
#[derive(Debug, Default)]
pub struct Dialogs {
    dialogs: HashMap<Key, Dialog>,
    /// Dialogs by Call-ID (a Call-ID may carry several caller tags).
    by_call: HashMap<String, Vec<String>>,
    per_account: HashMap<String, usize>,
    per_source: HashMap<SourceKey, usize>,
    /// Deadlines, earliest first. An entry whose dialog is gone or has
    /// another deadline now is stale and skipped when it comes up; the
    /// heap is rebuilt when stale entries outnumber the dialogs.
    deadlines: BinaryHeap<Reverse<(Instant, Key)>>,
}

impl Dialogs {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Dialogs held now (ended ones lingering included).
    pub fn len(&self) -> usize {
        self.dialogs.len()
    }

    /// Whether no dialog is held.
    pub fn is_empty(&self) -> bool {
        self.dialogs.is_empty()
    }

    /// Dialogs an account holds now (ended ones do not count).
    pub fn of_account(&self, aor: &str) -> usize {
        self.per_account.get(aor).copied().unwrap_or(0)
    }

    /// Opens the dialog of an authorized dialog-creating INVITE
    /// (Call-ID, the From tag) from `caller`, going to `callees` (the
    /// phones or nodes it is forwarded to; their accounts count too).
    pub fn open(
        &mut self,
        now: Instant,
        call_id: &str,
        caller_tag: &str,
        caller: Party,
        callees: Vec<Party>,
    ) -> Result<(), DialogError> {
        let key = Key {
            call_id: call_id.to_owned(),
            caller_tag: caller_tag.to_owned(),
        };
        // The same caller trying again with the same Call-ID and tag
        // after its INVITE failed (RFC 3261 §8.1.3.4, RFC 4028's 422):
        // the ended dialog gives way.
        let retry = self
            .dialogs
            .get(&key)
            .is_some_and(|d| d.state == DialogState::Ended && d.caller.same(&caller));
        if retry {
            self.remove(&key);
        }
        if self.dialogs.contains_key(&key) {
            return Err(DialogError::Exists);
        }
        // A call's media is found by its Call-ID: a second dialog with a
        // Call-ID that another caller's dialog holds would join that
        // call's media. Call-IDs are unique per caller (RFC 3261 §8.1.1.4).
        let taken = self.by_call.get(call_id).is_some_and(|tags| {
            tags.iter().any(|tag| {
                self.dialogs
                    .get(&Key {
                        call_id: call_id.to_owned(),
                        caller_tag: tag.clone(),
                    })
                    .is_some_and(|d| !d.caller.same(&caller))
            })
        });
        if taken {
            return Err(DialogError::Exists);
        }
        if self.dialogs.len() >= SIP_MAX_DIALOGS {
            return Err(DialogError::Full);
        }
        let dialog = Dialog {
            caller,
            callees: Vec::new(),
            invited: callees,
            state: DialogState::Early,
            deadline: now + SIP_DIALOG_EARLY_TIMEOUT,
        };
        let (accounts, sources) = dialog.counted();
        for account in &accounts {
            if self.of_account(account) >= SIP_MAX_DIALOGS_PER_ACCOUNT {
                return Err(DialogError::AccountBusy(account.clone()));
            }
        }
        for source in &sources {
            if self.per_source.get(source).copied().unwrap_or(0) >= SIP_MAX_DIALOGS_PER_SOURCE {
                return Err(DialogError::SourceBusy);
            }
        }
        for account in accounts {
            *self.per_account.entry(account).or_default() += 1;
        }
        for source in sources {
            *self.per_source.entry(source).or_default() += 1;
        }
        self.by_call
            .entry(key.call_id.clone())
            .or_default()
            .push(key.caller_tag.clone());
        self.schedule(dialog.deadline, &key);
        self.dialogs.insert(key, dialog);
        Ok(())
    }

    /// Adds `party` to the parties the INVITE of the early dialog
    /// (`call_id`, `caller_tag`) went to: a branch the proxy adds after
    /// the call started (voice mail). At most one party more than the
    /// dialog was opened with. Returns whether it was added.
    pub fn invite(&mut self, call_id: &str, caller_tag: &str, party: Party) -> bool {
        let key = Key {
            call_id: call_id.to_owned(),
            caller_tag: caller_tag.to_owned(),
        };
        let Some(dialog) = self.dialogs.get_mut(&key) else {
            return false;
        };
        if dialog.state != DialogState::Early || dialog.invited.len() > SIP_MAX_BINDINGS_PER_AOR {
            return false;
        }
        if !dialog.invited.contains(&party) {
            dialog.invited.push(party);
        }
        true
    }

    /// Adds the callee `party` that answered the INVITE of dialog
    /// (`call_id`, `caller_tag`) with `callee_tag` (a response that came
    /// back through a transaction the proxy forwarded to that party);
    /// a 2xx (`confirmed`) confirms the dialog. Returns whether the
    /// party is (now) on the callee's side.
    pub fn answered(
        &mut self,
        now: Instant,
        call_id: &str,
        caller_tag: &str,
        callee_tag: &str,
        party: &Party,
        confirmed: bool,
    ) -> bool {
        let key = Key {
            call_id: call_id.to_owned(),
            caller_tag: caller_tag.to_owned(),
        };
        let Some(dialog) = self.dialogs.get_mut(&key) else {
            return false;
        };
        if dialog.state == DialogState::Ended {
            return false;
        }
        let known = dialog
            .callees
            .iter()
            .any(|(t, p)| t == callee_tag && p == party);
        if !known {
            if !dialog.invited.contains(party) || dialog.callees.len() >= MAX_CALLEE_TAGS {
                return false;
            }
            dialog.callees.push((callee_tag.to_owned(), party.clone()));
        }
        if confirmed && dialog.state == DialogState::Early {
            dialog.state = DialogState::Confirmed;
            dialog.deadline = now + SIP_DIALOG_MAX_AGE;
            let deadline = dialog.deadline;
            self.schedule(deadline, &key);
        }
        true
    }

    /// Whether a request with these tags, from `peer` over `transport`,
    /// belongs to a dialog held here and comes from the party holding
    /// the side it claims: that side and the parties it may go to.
    pub fn authorize(
        &self,
        call_id: &str,
        from_tag: &str,
        to_tag: &str,
        peer: SocketAddr,
        transport: Transport,
    ) -> Result<InDialog, DialogError> {
        // From the caller: From carries the caller's tag.
        let as_caller = self.dialogs.get(&Key {
            call_id: call_id.to_owned(),
            caller_tag: from_tag.to_owned(),
        });
        if let Some(dialog) = as_caller {
            let to: Vec<Party> = dialog
                .callees
                .iter()
                .filter(|(t, _)| t == to_tag)
                .map(|(_, p)| p.clone())
                .collect();
            if !to.is_empty() {
                if !dialog.caller.sent(peer, transport) {
                    return Err(DialogError::NotAParty);
                }
                return Ok(InDialog {
                    side: Side::Caller,
                    from: dialog.caller.clone(),
                    to,
                    state: dialog.state,
                });
            }
        }
        // From the callee: To carries the caller's tag.
        let as_callee = self.dialogs.get(&Key {
            call_id: call_id.to_owned(),
            caller_tag: to_tag.to_owned(),
        });
        if let Some(dialog) = as_callee {
            let Some((_, party)) = dialog.callees.iter().find(|(t, _)| t == from_tag) else {
                return Err(DialogError::NoDialog);
            };
            if !party.sent(peer, transport) {
                return Err(DialogError::NotAParty);
            }
            return Ok(InDialog {
                side: Side::Callee,
                from: party.clone(),
                to: vec![dialog.caller.clone()],
                state: dialog.state,
            });
        }
        Err(DialogError::NoDialog)
    }

    /// The caller of dialog (`call_id`, `caller_tag`), if held.
    pub fn caller(&self, call_id: &str, caller_tag: &str) -> Option<&Party> {
        self.dialogs
            .get(&Key {
                call_id: call_id.to_owned(),
                caller_tag: caller_tag.to_owned(),
            })
            .map(|d| &d.caller)
    }

    /// Where dialog (`call_id`, `caller_tag`) stands, if held.
    pub fn state(&self, call_id: &str, caller_tag: &str) -> Option<DialogState> {
        self.dialogs
            .get(&Key {
                call_id: call_id.to_owned(),
                caller_tag: caller_tag.to_owned(),
            })
            .map(|d| d.state)
    }

    /// Whether any dialog of `call_id` is up or being set up (not ended):
    /// the call's media stays open while one is.
    pub fn live(&self, call_id: &str) -> bool {
        self.by_call.get(call_id).is_some_and(|tags| {
            tags.iter().any(|tag| {
                self.dialogs
                    .get(&Key {
                        call_id: call_id.to_owned(),
                        caller_tag: tag.clone(),
                    })
                    .is_some_and(|d| d.state != DialogState::Ended)
            })
        })
    }

    /// Ends dialog (`call_id`, `caller_tag`) (a BYE from a party, or its
    /// INVITE failed): it lingers [`SIP_DIALOG_LINGER`] for
    /// retransmissions. Returns whether it was live.
    pub fn end(&mut self, now: Instant, call_id: &str, caller_tag: &str) -> bool {
        let key = Key {
            call_id: call_id.to_owned(),
            caller_tag: caller_tag.to_owned(),
        };
        let Some(dialog) = self.dialogs.get_mut(&key) else {
            return false;
        };
        if dialog.state == DialogState::Ended {
            return false;
        }
        dialog.state = DialogState::Ended;
        dialog.deadline = now + SIP_DIALOG_LINGER;
        let deadline = dialog.deadline;
        // An ended call no longer counts against its account and source
        // (it lingers only to match retransmissions).
        let (accounts, sources) = dialog.counted();
        self.release(accounts, sources);
        self.schedule(deadline, &key);
        true
    }

    /// Notes `key`'s new deadline.
    fn schedule(&mut self, at: Instant, key: &Key) {
        if self.deadlines.len() >= 4 * self.dialogs.len() + 1024 {
            // Mostly stale: rebuilt from the dialogs' own deadlines.
            self.deadlines = self
                .dialogs
                .iter()
                .map(|(k, d)| Reverse((d.deadline, k.clone())))
                .collect();
        }
        self.deadlines.push(Reverse((at, key.clone())));
    }

    fn release(&mut self, accounts: Vec<String>, sources: Vec<SourceKey>) {
        for account in accounts {
            if let Some(n) = self.per_account.get_mut(&account) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_account.remove(&account);
                }
            }
        }
        for source in sources {
            if let Some(n) = self.per_source.get_mut(&source) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_source.remove(&source);
                }
            }
        }
    }

    /// Drops dialog (`call_id`, `caller_tag`) at once: its INVITE never
    /// left this node (refused here), so nothing can come back for it to
    /// match, and it must not occupy the table while it lingers.
    pub fn discard(&mut self, call_id: &str, caller_tag: &str) {
        let key = Key {
            call_id: call_id.to_owned(),
            caller_tag: caller_tag.to_owned(),
        };
        self.remove(&key);
    }

    /// When [`Dialogs::handle_timeout`] has work next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // May be a stale entry's, earlier than any real one: the wake-up
        // it causes finds nothing due and drops it.
        self.deadlines.peek().map(|Reverse((at, _))| *at)
    }

    /// Drops the dialogs whose deadline passed; returns the Call-IDs of
    /// those that were still live (their media must close).
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<String> {
        let mut lapsed = Vec::new();
        while let Some(Reverse((at, _))) = self.deadlines.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, key))) = self.deadlines.pop() else {
                break;
            };
            let due = self.dialogs.get(&key).is_some_and(|d| d.deadline == at);
            if !due {
                continue; // stale
            }
            if let Some(dialog) = self.remove(&key) {
                if dialog.state != DialogState::Ended {
                    lapsed.push(key.call_id);
                }
            }
        }
        lapsed
    }

    fn remove(&mut self, key: &Key) -> Option<Dialog> {
        let dialog = self.dialogs.remove(key)?;
        if dialog.state != DialogState::Ended {
            // An ended one was released when it ended.
            let (accounts, sources) = dialog.counted();
            self.release(accounts, sources);
        }
        if let Some(tags) = self.by_call.get_mut(&key.call_id) {
            tags.retain(|t| *t != key.caller_tag);
            if tags.is_empty() {
                self.by_call.remove(&key.call_id);
            }
        }
        Some(dialog)
    }

    /// How long until the earliest deadline, from `now` (for tests).
    #[cfg(test)]
    fn next_in(&self, now: Instant) -> Option<std::time::Duration> {
        self.poll_timeout()
            .map(|t| t.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests;
