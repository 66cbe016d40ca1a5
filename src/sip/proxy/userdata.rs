//! The user's own data in the call path: the caller's address book turns
//! a name a phone dialled into an AOR; the callee's settings decide
//! whether a call rings (blocked callers, do-not-disturb), goes elsewhere
//! (`forward_always`), and which name the callee's phone shows for the
//! caller (the callee's own name for it).
//!
//! The data lives sealed in the overlay; the driver reads and opens it
//! ([`super::Action::ReadUserData`]) and hands it back
//! ([`super::Proxy::user_data`]). A request that needs data not at hand
//! waits (at most [`SIP_MAX_PARKED`] requests, each at most
//! [`USER_DATA_WAIT`]); what was read is kept [`USER_DATA_TTL`], so a
//! user's first call by name costs one read and later ones none.

use super::super::dialog::Party;
use super::super::message::Request;
use super::super::transaction::{Transport, TxId};
use crate::limits::SIP_MAX_ACCOUNTS;
use crate::userdata::{AddressBook, Settings};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long data read from the overlay is used before it is read again:
/// a change a user makes reaches the node serving its phones within this.
pub const USER_DATA_TTL: Duration = Duration::from_secs(30);

/// How long a request waits for the data it needs before it goes on
/// without (as if the user had none).
pub const USER_DATA_WAIT: Duration = Duration::from_secs(10);

/// Most requests waiting for user data at once; more go on without.
pub const SIP_MAX_PARKED: usize = 1024;

/// A user's address book and settings, as the driver read them (empty
/// when the user has none, or they could not be read).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserData {
    /// The address book.
    pub book: AddressBook,
    /// The settings.
    pub settings: Settings,
}

/// A request waiting for user data.
pub(super) struct Parked {
    pub id: TxId,
    pub peer: SocketAddr,
    pub transport: Transport,
    pub origin: Party,
    pub request: Request,
    pub unix_ms: u64,
    pub since: Instant,
    /// The accounts whose data it waits for.
    pub needs: Vec<String>,
}

/// What was read, what is being read, and who waits.
#[derive(Default)]
pub(super) struct UserDataCache {
    entries: HashMap<String, (Instant, Arc<UserData>)>,
    reading: HashSet<String>,
    pub parked: Vec<Parked>,
}

impl UserDataCache {
    /// The data of `account`, if read less than [`USER_DATA_TTL`] ago.
    pub fn get(&self, now: Instant, account: &str) -> Option<Arc<UserData>> {
        self.entries
            .get(account)
            .filter(|(at, _)| now.saturating_duration_since(*at) < USER_DATA_TTL)
            .map(|(_, data)| data.clone())
    }

    /// The data of `account` last read, however long ago: what a request
    /// whose read did not come back in time goes on with (the last known
    /// settings rather than none).
    pub fn last_known(&self, account: &str) -> Option<Arc<UserData>> {
        self.entries.get(account).map(|(_, data)| data.clone())
    }

    /// Keeps what the driver read. Only accounts served here are read, so
    /// the cache holds at most one entry per account.
    pub fn insert(&mut self, now: Instant, account: &str, data: UserData) {
        self.reading.remove(account);
        if self.entries.len() >= SIP_MAX_ACCOUNTS && !self.entries.contains_key(account) {
            self.entries
                .retain(|_, (at, _)| now.saturating_duration_since(*at) < USER_DATA_TTL);
            if self.entries.len() >= SIP_MAX_ACCOUNTS {
                self.entries.clear();
            }
        }
        self.entries
            .insert(account.to_owned(), (now, Arc::new(data)));
    }

    /// Of `accounts`, those whose data is not at hand.
    pub fn missing(&self, now: Instant, accounts: &[String]) -> Vec<String> {
        accounts
            .iter()
            .filter(|a| self.get(now, a).is_none())
            .cloned()
            .collect()
    }

    /// Marks `account` as being read; false if it already was.
    pub fn start_reading(&mut self, account: &str) -> bool {
        self.reading.insert(account.to_owned())
    }

    /// Forgets what was read of `account` (it changed).
    pub fn forget(&mut self, account: &str) {
        self.entries.remove(account);
    }

    /// The parked requests that can go on at `now`, each with whether it
    /// gave up waiting: their data is at hand, or they waited
    /// [`USER_DATA_WAIT`] (then they go on with the data last known, or
    /// none; nothing is cached for them, so the next request reads
    /// again).
    pub fn ready(&mut self, now: Instant) -> Vec<(Parked, bool)> {
        let mut ready = Vec::new();
        let mut waiting = Vec::new();
        for p in std::mem::take(&mut self.parked) {
            let timed_out = now.saturating_duration_since(p.since) >= USER_DATA_WAIT;
            if self.missing(now, &p.needs).is_empty() {
                ready.push((p, false));
            } else if timed_out {
                for account in &p.needs {
                    self.reading.remove(account);
                }
                ready.push((p, true));
            } else {
                waiting.push(p);
            }
        }
        self.parked = waiting;
        ready
    }

    /// When the oldest parked request stops waiting.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.parked.iter().map(|p| p.since + USER_DATA_WAIT).min()
    }
}

/// What the callee's settings make of a call to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CalleeDecision {
    /// Ring the callee's phones.
    Ring,
    /// Refuse with this code and reason.
    Refuse(u16, &'static str),
    /// Send the call to this AOR instead.
    Forward(String),
}

/// The AOR a setting names: an AOR as it is, a name through the book.
fn target_aor<'a>(data: &'a UserData, target: &'a str) -> Option<&'a str> {
    if target.contains(':') {
        Some(target)
    } else {
        data.book.resolve(target)
    }
}

/// Decides a new call to the user whose data is `data`, from `caller`
/// (the verified caller AOR, if any): blocked callers are declined (603),
/// do-not-disturb answers busy (486), `forward_always` sends it on.
pub(super) fn decide_for_callee(data: &UserData, caller: Option<&str>) -> CalleeDecision {
    let settings = &data.settings;
    if let Some(caller) = caller {
        let blocked = settings
            .blocked()
            .filter_map(|b| target_aor(data, b))
            .any(|aor| aor.eq_ignore_ascii_case(caller));
        if blocked {
            return CalleeDecision::Refuse(603, "the callee declines calls from this caller");
        }
    }
    if settings.do_not_disturb() {
        return CalleeDecision::Refuse(486, "the callee does not want to be disturbed");
    }
    if let Some(to) = settings.forward_always().and_then(|t| target_aor(data, t)) {
        return CalleeDecision::Forward(to.to_owned());
    }
    CalleeDecision::Ring
}

#[cfg(test)]
mod tests {
    use super::*;

    const MALLORY: &str = "sip:mallory@p2psip";
    const CAROL: &str = "sip:carol@p2psip";

    fn data(settings: &[(&str, &str)], book: &[(&str, &str)]) -> UserData {
        let mut d = UserData::default();
        for (k, v) in settings {
            d.settings.set(k, v).unwrap();
        }
        for (n, a) in book {
            d.book.add(n, a).unwrap();
        }
        d
    }

    #[test]
    fn blocked_callers_are_declined_by_aor_or_by_name() {
        let by_name = data(&[("blocked", "mal")], &[("mal", MALLORY)]);
        let by_aor = data(&[("blocked", MALLORY)], &[]);
        for d in [&by_name, &by_aor] {
            assert!(matches!(
                decide_for_callee(d, Some(MALLORY)),
                CalleeDecision::Refuse(603, _)
            ));
            assert_eq!(decide_for_callee(d, Some(CAROL)), CalleeDecision::Ring);
            // An unverified caller is not matched against the list.
            assert_eq!(decide_for_callee(d, None), CalleeDecision::Ring);
        }
        // A name the book does not hold blocks nobody.
        let dangling = data(&[("blocked", "ghost")], &[]);
        assert_eq!(
            decide_for_callee(&dangling, Some(MALLORY)),
            CalleeDecision::Ring
        );
    }

    #[test]
    fn do_not_disturb_answers_busy_and_blocking_comes_first() {
        let d = data(&[("do_not_disturb", "on"), ("blocked", MALLORY)], &[]);
        assert!(matches!(
            decide_for_callee(&d, Some(CAROL)),
            CalleeDecision::Refuse(486, _)
        ));
        assert!(matches!(
            decide_for_callee(&d, Some(MALLORY)),
            CalleeDecision::Refuse(603, _)
        ));
    }

    #[test]
    fn forward_always_names_an_aor_or_a_contact() {
        let by_name = data(&[("forward_always", "carol")], &[("carol", CAROL)]);
        assert_eq!(
            decide_for_callee(&by_name, None),
            CalleeDecision::Forward(CAROL.into())
        );
        let by_aor = data(&[("forward_always", CAROL)], &[]);
        assert_eq!(
            decide_for_callee(&by_aor, None),
            CalleeDecision::Forward(CAROL.into())
        );
        // A name no longer in the book: the call rings here.
        let stale = data(&[("forward_always", "carol")], &[]);
        assert_eq!(decide_for_callee(&stale, None), CalleeDecision::Ring);
    }

    #[test]
    fn the_cache_is_fresh_for_its_ttl_and_keeps_the_last_known_data() {
        let t0 = Instant::now();
        let mut cache = UserDataCache::default();
        assert!(cache.start_reading("a"));
        assert!(!cache.start_reading("a"), "one read at a time");
        cache.insert(t0, "a", UserData::default());
        assert!(cache
            .get(t0 + USER_DATA_TTL - Duration::from_millis(1), "a")
            .is_some());
        assert!(cache.get(t0 + USER_DATA_TTL, "a").is_none());
        assert_eq!(cache.missing(t0, &["a".into(), "b".into()]), ["b"]);
        // Stale data stays the last known.
        assert!(cache.last_known("a").is_some());
        cache.forget("a");
        assert!(cache.get(t0, "a").is_none());
        assert!(cache.last_known("a").is_none());
    }
}
