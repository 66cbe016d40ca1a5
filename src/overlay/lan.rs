//! LAN discovery (`node run --discover lan`): what a node announces on
//! its link with mDNS/DNS-SD (RFC 6762, RFC 6763) and which of the
//! announcements it hears it dials, when, and how often.
//!
//! Sans-IO: the I/O shell (`net::lan`) feeds what mDNS heard into
//! [`LanCandidates`] and dials what [`LanCandidates::due`] returns. An
//! announcement is only ever *an address to try*: the QUIC handshake
//! proves the id, the overlay's admission rules decide whether the peer
//! enters the routing table, and a failed dial puts no strike on the
//! claimed id in the reputation table (anybody on the link can claim any
//! id at any address). What an announcement can still cost this node is
//! bounded here: few candidates, few addresses each, few dials a round,
//! a back-off per candidate, ids that must meet the overlay's puzzle, and
//! addresses only in the ranges a LAN uses.

use crate::identity::NodeId;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

/// The DNS-SD service type nodes announce and browse for.
pub const SERVICE_TYPE: &str = "_p2psip._udp.local.";
/// The announcement format's version (TXT key `v`).
pub const TXT_VERSION: &str = "1";
/// Candidates kept at most (one per announced id).
pub const MAX_CANDIDATES: usize = 64;
/// Addresses kept per candidate.
pub const MAX_ADDRS_PER_CANDIDATE: usize = 4;
/// Dials started at most per second, however often
/// [`LanCandidates::due`] is asked and however many ids are announced.
pub const MAX_DIALS_PER_ROUND: usize = 4;
/// The length of a round of [`MAX_DIALS_PER_ROUND`] dials.
pub const ROUND_MS: u64 = 1_000;
/// How long after a dial that worked a candidate is looked at again
/// (if it has left the routing table meanwhile, it is dialed again).
pub const RECHECK_MS: u64 = 60_000;
/// The first back-off after a failed dial; doubled per failure.
pub const RETRY_BASE_MS: u64 = 2_000;
/// The longest back-off.
pub const RETRY_MAX_MS: u64 = 300_000;
/// How long a node with nobody to join through (no bootstrap node, no
/// saved routing table) listens on the LAN before it starts a new
/// overlay: long enough for mDNS's probe and first announcements
/// (about 1 s), so that nodes started together form one overlay.
pub const LISTEN_BEFORE_STARTING_MS: u64 = 3_000;
/// A candidate not heard of for this long is forgotten.
pub const CANDIDATE_TTL_MS: u64 = 30 * 60_000;

/// What a node announces: the TXT properties of its DNS-SD service.
/// `v` is the format, `id` the node's full id (instance names are too
/// short for 64 hex digits), `overlay` its overlay's name.
pub fn txt_properties(id: &NodeId, overlay: &str) -> Vec<(&'static str, String)> {
    vec![
        ("v", TXT_VERSION.to_owned()),
        ("id", id.to_string()),
        ("overlay", overlay.to_owned()),
    ]
}

/// The DNS-SD instance name a node announces under (unique enough on a
/// link; the id itself is in the TXT record).
pub fn instance_name(id: &NodeId) -> String {
    let hex = id.to_string();
    format!("p2psip-{}", hex.get(..16).unwrap_or(&hex))
}

/// Why an announcement heard was not taken as a candidate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LanRefusal {
    /// A TXT key this format needs is missing (or has no value).
    #[error("announcement lacks TXT key {0:?}")]
    Missing(&'static str),
    /// The `v` key names a format this node does not speak (shown
    /// cut to 16 characters, escaped).
    #[error("announcement format v={0:?} unknown (this node speaks v={TXT_VERSION})")]
    Version(String),
    /// The `id` key is not 64 hex digits.
    #[error("announced id is not 64 hex digits")]
    BadId,
    /// The node announced another overlay (shown cut to 64 characters,
    /// escaped).
    #[error("announced overlay {0:?} is not this node's")]
    OtherOverlay(String),
    /// The node heard itself.
    #[error("announcement of this node itself")]
    Own,
    /// The id fails the overlay's puzzle: peers would refuse it anyway.
    #[error("announced id has {have} leading zero bits; the overlay needs {need}")]
    Puzzle {
        /// The id's leading zero bits.
        have: u32,
        /// The overlay's difficulty.
        need: u8,
    },
    /// None of the addresses announced is one this node would dial.
    #[error("no usable address announced (LAN ranges only)")]
    NoAddress,
    /// The table is full of candidates that were reached.
    #[error("candidate table full")]
    Full,
}

/// An announcement's content, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    /// The id it claims (the handshake will prove it or not).
    pub id: NodeId,
}

/// Parses and checks an announcement's TXT properties (key, value; the
/// first of a repeated key counts, RFC 6763 §6.4) against this node's
/// overlay.
pub fn parse_txt<'a>(
    properties: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    own: &NodeId,
    overlay: &str,
    difficulty: u8,
) -> Result<Announced, LanRefusal> {
    let (mut version, mut id, mut name) = (None, None, None);
    for (key, value) in properties {
        let slot = match key.to_ascii_lowercase().as_str() {
            "v" => &mut version,
            "id" => &mut id,
            "overlay" => &mut name,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(value.unwrap_or_default());
        }
    }
    let text = |v: Option<&[u8]>, key: &'static str| {
        v.filter(|v| !v.is_empty())
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .ok_or(LanRefusal::Missing(key))
    };
    let version = text(version, "v")?;
    if version != TXT_VERSION {
        return Err(LanRefusal::Version(version.chars().take(16).collect()));
    }
    let name = text(name, "overlay")?;
    if name != overlay {
        return Err(LanRefusal::OtherOverlay(name.chars().take(64).collect()));
    }
    let id: NodeId = text(id, "id")?.parse().map_err(|_| LanRefusal::BadId)?;
    if &id == own {
        return Err(LanRefusal::Own);
    }
    let have = id.puzzle_bits();
    if have < u32::from(difficulty) {
        return Err(LanRefusal::Puzzle {
            have,
            need: difficulty,
        });
    }
    Ok(Announced { id })
}

/// Whether this node would dial `ip` because a LAN announcement named it:
/// the address family this node listens on, and only the ranges a LAN
/// uses (RFC 1918, shared 100.64/10, IPv4 link-local, IPv6 unique-local),
/// or loopback when this node itself listens on loopback (one host). Never
/// unspecified, multicast, broadcast or a public address: an announcement
/// must not turn this node into a packet cannon aimed elsewhere. IPv6
/// link-local is left out: it needs a scope this table does not keep.
pub fn dialable(ip: IpAddr, local: IpAddr) -> bool {
    if ip.is_loopback() || local.is_loopback() {
        return ip.is_loopback() && local.is_loopback() && ip.is_ipv4() == local.is_ipv4();
    }
    match (ip, local) {
        (IpAddr::V4(v4), IpAddr::V4(_)) => {
            let [a, b, ..] = v4.octets();
            v4.is_private() || v4.is_link_local() || (a == 100 && (64..128).contains(&b))
        }
        (IpAddr::V6(v6), IpAddr::V6(_)) => (v6.segments()[0] & 0xfe00) == 0xfc00,
        _ => false,
    }
}

/// A candidate: an id announced on the link and where it said it is.
#[derive(Debug, Clone)]
struct Candidate {
    /// The DNS-SD full name it was heard under (for removals).
    fullname: String,
    addrs: Vec<SocketAddr>,
    heard_ms: u64,
    /// Not dialed before this time.
    next_ms: u64,
    /// Dials that failed in a row.
    failures: u32,
    /// Whether a dial ever reached it (its id proven).
    reached: bool,
    /// Whether a dial is under way (one at a time per candidate).
    dialing: bool,
}

/// One dial [`LanCandidates::due`] asks for: the id and its addresses,
/// to try in order until one proves the id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dial {
    /// The id announced.
    pub id: NodeId,
    /// Its usable addresses (at least one).
    pub addrs: Vec<SocketAddr>,
}

/// The candidates a node heard on its link, bounded, with their dial
/// schedule.
#[derive(Debug)]
pub struct LanCandidates {
    own: NodeId,
    overlay: String,
    difficulty: u8,
    local: IpAddr,
    entries: BTreeMap<NodeId, Candidate>,
    /// When the current round of dials began, and how many it started.
    round: (u64, usize),
}

impl LanCandidates {
    /// An empty table for node `own` of `overlay` (puzzle `difficulty`),
    /// which listens on `local` (its address family and whether it is
    /// loopback decide which addresses it dials).
    pub fn new(own: NodeId, overlay: &str, difficulty: u8, local: IpAddr) -> Self {
        Self {
            own,
            overlay: overlay.to_owned(),
            difficulty,
            local,
            entries: BTreeMap::new(),
            round: (0, 0),
        }
    }

    /// How many candidates are kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// An announcement heard under DNS-SD name `fullname`, with its TXT
    /// `properties` and `addrs`: kept as a candidate (due at once if new
    /// or if its addresses changed), or refused with the reason.
    pub fn on_heard<'a>(
        &mut self,
        now_ms: u64,
        fullname: &str,
        properties: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
        addrs: impl IntoIterator<Item = SocketAddr>,
    ) -> Result<NodeId, LanRefusal> {
        let Announced { id } = parse_txt(properties, &self.own, &self.overlay, self.difficulty)?;
        let mut usable: Vec<SocketAddr> = Vec::new();
        for a in addrs {
            if a.port() != 0 && dialable(a.ip(), self.local) && !usable.contains(&a) {
                usable.push(a);
            }
        }
        // The same order whatever order the set came in.
        usable.sort();
        usable.truncate(MAX_ADDRS_PER_CANDIDATE);
        if usable.is_empty() {
            return Err(LanRefusal::NoAddress);
        }
        self.expire(now_ms);
        if let Some(c) = self.entries.get_mut(&id) {
            c.heard_ms = now_ms;
            if c.addrs != usable {
                c.addrs = usable;
                c.next_ms = now_ms;
                c.failures = 0;
            }
            return Ok(id);
        }
        if self.entries.len() >= MAX_CANDIDATES && !self.evict_one() {
            return Err(LanRefusal::Full);
        }
        self.entries.insert(
            id,
            Candidate {
                fullname: fullname.chars().take(255).collect(),
                addrs: usable,
                heard_ms: now_ms,
                next_ms: now_ms,
                failures: 0,
                reached: false,
                dialing: false,
            },
        );
        Ok(id)
    }

    /// Makes room for a new candidate: the one never reached that failed
    /// most, else was heard longest ago. Candidates that proved their id
    /// are not evicted by newcomers (a flood of fresh ids cannot push out
    /// the nodes that are really there).
    fn evict_one(&mut self) -> bool {
        let victim = self
            .entries
            .iter()
            .filter(|(_, c)| !c.reached)
            .max_by_key(|(_, c)| (c.failures, u64::MAX - c.heard_ms))
            .map(|(id, _)| *id);
        victim.is_some_and(|id| self.entries.remove(&id).is_some())
    }

    /// DNS-SD said the service `fullname` left.
    pub fn on_removed(&mut self, fullname: &str) {
        self.entries.retain(|_, c| c.fullname != fullname);
    }

    fn expire(&mut self, now_ms: u64) {
        self.entries
            .retain(|_, c| now_ms.saturating_sub(c.heard_ms) < CANDIDATE_TTL_MS);
    }

    /// The candidates to dial now (at most [`MAX_DIALS_PER_ROUND`] a
    /// [`ROUND_MS`], over all calls): due,
    /// not being dialed, and not already in the routing table (`known`).
    /// Each is dialed once at a time: the caller reports every dial it
    /// was given with [`LanCandidates::on_dialed`].
    pub fn due(&mut self, now_ms: u64, known: impl Fn(&NodeId) -> bool) -> Vec<Dial> {
        self.expire(now_ms);
        if now_ms.saturating_sub(self.round.0) >= ROUND_MS {
            self.round = (now_ms, 0);
        }
        let mut dials = Vec::new();
        for (id, c) in self.entries.iter_mut() {
            if self.round.1 >= MAX_DIALS_PER_ROUND {
                break;
            }
            if c.dialing || c.next_ms > now_ms {
                continue;
            }
            if known(id) {
                c.next_ms = now_ms.saturating_add(RECHECK_MS);
                continue;
            }
            c.dialing = true;
            self.round.1 += 1;
            dials.push(Dial {
                id: *id,
                addrs: c.addrs.clone(),
            });
        }
        dials
    }

    /// The dial of `id` reached it (its id proven) or not; either way it
    /// may be dialed again (after [`RECHECK_MS`], or its back-off).
    pub fn on_dialed(&mut self, now_ms: u64, id: &NodeId, reached: bool) {
        let Some(c) = self.entries.get_mut(id) else {
            return;
        };
        c.dialing = false;
        if reached {
            c.reached = true;
            c.failures = 0;
            c.next_ms = now_ms.saturating_add(RECHECK_MS);
        } else {
            c.failures = c.failures.saturating_add(1);
            c.next_ms = now_ms.saturating_add(backoff(c.failures));
        }
    }
}

/// The wait after `failures` failed dials in a row.
fn backoff(failures: u32) -> u64 {
    RETRY_BASE_MS
        .saturating_mul(1u64 << failures.min(20))
        .min(RETRY_MAX_MS)
}

#[cfg(test)]
mod tests;
