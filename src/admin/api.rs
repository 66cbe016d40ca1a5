//! The admin protocol's messages, typed: the [`Request`] the CLI writes and
//! the node parses, one result struct per operation that the node writes
//! and the CLI reads, and the [`Answer`] envelope around a result.
//!
//! The table of which result answers which request, and the rules for
//! reading them, are in the parent module's documentation.

use crate::identity::{NodeId, UserId};
use crate::reputation::Standing;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;

/// One admin request, tagged by `op`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The node's identity, overlay and counters.
    Status {},
    /// The routing table.
    Routes {},
    /// The reputation table: every tracked peer with its score and
    /// evidence counts.
    Reputation {},
    /// The registration of an address-of-record, found in the overlay.
    Lookup {
        /// The SIP AOR, e.g. `sip:alice@example.org`.
        aor: String,
    },
    /// A lookup traced request by request (`p2psip trace`).
    Trace {
        /// A SIP AOR (its registration is looked up) or a key, 64 hex
        /// digits (the closest nodes to it are looked up).
        target: String,
    },
    /// An owner-only value, found in the overlay.
    Get {
        /// The owner's user id (64 hex digits).
        owner: String,
        /// The value's name.
        name: String,
    },
    /// The newest record of a kind under a key that verifies, found in
    /// the overlay (the user's own data: `p2psip contacts`, `settings`).
    GetRecord {
        /// The overlay key, 64 hex digits.
        key: String,
        /// The record kind's number (docs/protocol.md, "Records").
        kind: u64,
    },
    /// Every owner's newest record of a kind under a key that verifies,
    /// found in the overlay (a mailbox: `p2psip voicemail`).
    GetRecords {
        /// The overlay key, 64 hex digits.
        key: String,
        /// The record kind's number (docs/protocol.md, "Records").
        kind: u64,
    },
    /// Publish a record signed by its owner (hex of its encoding) on the
    /// nodes responsible for its key.
    Publish {
        /// The record's canonical encoding, hex.
        record: String,
    },
    /// The SIP listener: the phones bound to each AOR and the
    /// registrar's counters.
    SipUsers {},
    /// Removes phones bound to an AOR at this node (`p2psip sip
    /// unbind`): the one with `contact`, or every one; the node withdraws
    /// the AOR from the overlay when no phone of it is left.
    SipUnbind {
        /// The AOR, e.g. `sip:alice@p2psip` (normalised by the node).
        aor: String,
        /// The Contact URI of the phone to remove, as `sip_users` lists
        /// it; absent or `null`: every phone of the AOR.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        contact: Option<String>,
    },
    /// Reads the configuration again and applies what can change while
    /// the node runs (as SIGHUP does).
    Reload {},
    /// The node's circuits: those it relays (what it knows of each) and
    /// its own; with `directory`, the relays the overlay's directory
    /// names (a lookup of every directory key).
    Circuits {
        /// Read the relay directory too.
        #[serde(default)]
        directory: bool,
    },
    /// Sends RTP-sized packets (160-byte payload, 50 a second) through
    /// circuits to the node where `aor` is registered, which echoes
    /// them, and measures what comes back (`p2psip media-test`).
    MediaTest {
        /// The AOR (its registration must publish a rendezvous handle).
        aor: String,
        /// Relays of this node's circuit, the rendezvous included.
        #[serde(default = "default_media_test_hops")]
        hops: usize,
        /// How long to send, seconds.
        #[serde(default = "default_media_test_seconds")]
        seconds: u64,
    },
}

fn default_media_test_hops() -> usize {
    crate::limits::RELAY_DEFAULT_HOPS
}

fn default_media_test_seconds() -> u64 {
    MEDIA_TEST_DEFAULT_SECONDS
}

/// `media-test`'s default duration, seconds.
pub const MEDIA_TEST_DEFAULT_SECONDS: u64 = 5;
/// `media-test`'s longest duration, seconds (the admin client waits 60).
pub const MEDIA_TEST_MAX_SECONDS: u64 = 30;

/// The answer to `media-test`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaTestResult {
    /// Packets sent.
    pub sent: u64,
    /// Echoes received.
    pub received: u64,
    /// `1 - received / sent`, 0 to 1.
    pub loss: f64,
    /// Round-trip latency, median, milliseconds.
    pub latency_ms_p50: f64,
    /// Round-trip latency, 99th percentile, milliseconds.
    pub latency_ms_p99: f64,
    /// Interarrival jitter of the echoes (RFC 3550 §6.4.1), milliseconds.
    pub jitter_ms: f64,
    /// Relays between the two nodes: both circuits, the rendezvous
    /// counted once.
    pub hops: usize,
}

impl Request {
    /// Parses one request line: a JSON object with a known `op` and exactly
    /// that operation's fields.
    pub fn parse(line: &[u8]) -> Result<Self, String> {
        let value: serde_json::Value =
            serde_json::from_slice(line).map_err(|e| format!("not JSON: {e}"))?;
        if !value.is_object() {
            return Err("a request is a JSON object".into());
        }
        Self::deserialize(value).map_err(|e| e.to_string())
    }
}

/// One answer line: `{"ok": true, "result": {...}}` or
/// `{"ok": false, "error": "..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer<R> {
    /// Whether the request was carried out.
    pub ok: bool,
    /// The operation's result, when `ok`.
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub result: Option<R>,
    /// Why not, when not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

// `#[serde(default)]` on `Option<R>` would ask for `R: Default`.
fn none<R>() -> Option<R> {
    None
}

impl<R> Answer<R> {
    /// A successful answer carrying `result`.
    pub fn success(result: R) -> Self {
        Self {
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    /// A refusal, with the reason shown to the user.
    pub fn failure(error: String) -> Self {
        Self {
            ok: false,
            result: None,
            error: Some(error),
        }
    }
}

/// How the overlay admits identities (`mode` in [`StatusResult`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OverlayMode {
    /// Any identity that solves the puzzle, with a self-signed certificate.
    SelfCertifying,
    /// Only identities with a certificate from an overlay CA.
    Enrolled,
}

impl OverlayMode {
    /// The mode as the admin interface spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            OverlayMode::SelfCertifying => "self-certifying",
            OverlayMode::Enrolled => "enrolled",
        }
    }
}

impl fmt::Display for OverlayMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer to `status`: the node's identity, overlay and counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResult {
    /// The node's id.
    #[serde(with = "as_text")]
    pub id: NodeId,
    /// The address the node listens on (empty if unknown).
    pub listen: String,
    /// The overlay's name.
    pub overlay: String,
    /// How the overlay admits identities.
    pub mode: OverlayMode,
    /// The overlay's admission puzzle, in leading zero bits.
    pub id_difficulty: u8,
    /// Distinct authenticated peers with an open connection, either way.
    pub peers: usize,
    /// Contacts in the routing table.
    pub table_size: usize,
    /// Records the node holds for the overlay.
    pub records: usize,
    /// Seconds since the node started.
    pub uptime_secs: u64,
    /// Whether the node is part of its overlay: it started a new one, or
    /// a join ended with contacts (docs/operations.md, "Readiness").
    #[serde(default)]
    pub ready: bool,
    /// When it became ready, unix seconds (`null` before).
    #[serde(default)]
    pub joined_at: Option<u64>,
}

/// The answer to `circuits`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitsResult {
    /// Whether this node relays circuits (`node run --relay`).
    pub relay: bool,
    /// The circuits through this relay: what it knows of each (its
    /// neighbours on the circuit, nothing more).
    pub relayed: Vec<RelayedCircuit>,
    /// How many circuits this node built for itself are open.
    pub own: usize,
    /// Cells relayed on.
    pub cells_relayed: u64,
    /// Cells and link messages refused (undecodable, of no circuit,
    /// failing their layer, over a limit).
    pub refused: u64,
    /// Datagrams that could not be sent.
    pub unsent: u64,
    /// Echo requests answered as a last hop.
    pub echoes: u64,
    /// The relays the directory names (with `--directory`; else `null`).
    pub directory: Option<Vec<DirectoryRelay>>,
}

/// One circuit through this relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayedCircuit {
    /// The neighbour it comes from.
    #[serde(with = "as_text")]
    pub prev: NodeId,
    /// The neighbour it goes on to, if any.
    #[serde(with = "as_text::option")]
    pub next: Option<NodeId>,
    /// At a rendezvous: `waiting` (established, no caller) or `spliced`;
    /// `null` for a plain circuit.
    pub rendezvous: Option<String>,
}

/// One relay of the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryRelay {
    /// Its node id.
    #[serde(with = "as_text")]
    pub node_id: NodeId,
    /// Its overlay addresses.
    pub addresses: Vec<SocketAddr>,
    /// The capacity it offers.
    pub capacity: u32,
    /// When its current onion key expires, unix seconds.
    pub onion_key_expires: u64,
    /// Its TURN address, if it serves TURN.
    pub turn: Option<SocketAddr>,
}

/// The answer to `routes`: the routing table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutesResult {
    /// The overlay's name.
    pub overlay: String,
    /// Contacts in the routing table.
    pub table_size: usize,
    /// The contacts, by bucket.
    pub routes: Vec<Route>,
}

/// One contact of the routing table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// The bucket's index: the length of the prefix the contact's id
    /// shares with the node's.
    pub bucket: usize,
    /// The contact's id.
    #[serde(with = "as_text")]
    pub node_id: NodeId,
    /// Its address.
    pub addr: SocketAddr,
}

/// The answer to `reputation`: every tracked peer, in id order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReputationResult {
    /// The peers.
    pub peers: Vec<PeerEntry>,
}

/// What the node observed of one peer (field meanings: docs/admin.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerEntry {
    /// The peer.
    #[serde(with = "as_text")]
    pub node_id: NodeId,
    /// Its decaying soft score, -100 to 100, two decimals.
    pub score: f64,
    /// Its standing.
    pub standing: PeerStanding,
    /// Requests it answered.
    pub answered: u32,
    /// Answers that verified.
    pub verified: u32,
    /// Answers refused for a reason that proves nothing.
    pub unverifiable: u32,
    /// Requests it left unanswered.
    pub unresponsive: u32,
    /// Provably wrong answers.
    pub misbehaviour: u32,
    /// Protocol violations.
    pub violations: u32,
    /// Requests refused for its rate.
    pub rate_violations: u32,
    /// Bans still counting towards escalation.
    pub bans: u8,
    /// When it was first tracked, unix seconds.
    pub first_seen: u64,
    /// When it was last heard from, unix seconds.
    pub last_seen: u64,
    /// When its ban ends, unix seconds; `null` when not banned.
    pub banned_until: Option<u64>,
}

/// A peer's standing, as the admin interface spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerStanding {
    /// Under an active ban.
    Banned,
    /// Score at or below the suspect threshold.
    Suspect,
    /// Unknown, or between the thresholds.
    Neutral,
    /// Score at or above the good threshold.
    Good,
}

impl From<Standing> for PeerStanding {
    fn from(s: Standing) -> Self {
        match s {
            Standing::Banned => PeerStanding::Banned,
            Standing::Suspect => PeerStanding::Suspect,
            Standing::Neutral => PeerStanding::Neutral,
            Standing::Good => PeerStanding::Good,
        }
    }
}

impl PeerStanding {
    /// The standing as the admin interface spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            PeerStanding::Banned => "banned",
            PeerStanding::Suspect => "suspect",
            PeerStanding::Neutral => "neutral",
            PeerStanding::Good => "good",
        }
    }
}

impl fmt::Display for PeerStanding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer to `trace`: every request of one lookup, in the order the
/// answers came, and why it ended (docs/operations.md, "Path trace").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceResult {
    /// What was asked for, as given.
    pub target: String,
    /// The key looked up, 64 hex digits.
    pub key: String,
    /// `registration` (an AOR's record) or `closest` (the nodes nearest a
    /// key).
    pub lookup: String,
    /// The requests, in the order their answers (or failures) came.
    pub hops: Vec<TraceHopEntry>,
    /// Requests the lookup sent (the hops' count).
    pub requests: u32,
    /// Records the nodes answered with.
    pub records: usize,
    /// The closest nodes that answered, closest first.
    pub closest: Vec<String>,
    /// Why the lookup ended, for people.
    pub ended: String,
}

/// One request of a traced lookup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceHopEntry {
    /// The node asked.
    #[serde(with = "as_text")]
    pub node_id: NodeId,
    /// Its address.
    pub addr: String,
    /// The node whose answer named it first; `null`: this node's own
    /// routing table.
    pub via: Option<String>,
    /// The disjoint path it was asked on (from 0).
    pub path: Option<usize>,
    /// Request to answer (for `unanswered`: to the lookup's end),
    /// milliseconds.
    pub rtt_ms: f64,
    /// `contacts`, `value`, `failed`, or `unanswered` (still out when the
    /// lookup ended).
    pub answer: String,
    /// Contacts it named.
    pub contacts: usize,
    /// Records it sent.
    pub records: usize,
    /// Why it failed: `timeout` (silence), `unreachable`, `overloaded`,
    /// `local`, `not_in_overlay`, `violation`, `banned`, `unrecognised`,
    /// `declined`.
    pub error: Option<String>,
    /// Its standing in this node's reputation table.
    pub standing: PeerStanding,
}

/// The answer to `lookup`: the newest registration of an AOR that
/// verifies, with its entries live now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupResult {
    /// The AOR.
    pub aor: String,
    /// The user who owns it.
    #[serde(with = "as_text")]
    pub owner: UserId,
    /// The record's sequence number.
    pub seq: u64,
    /// The record's expiry, unix seconds.
    pub expires: u64,
    /// The live entries.
    pub entries: Vec<LookupEntry>,
    /// The record's encoding.
    #[serde(with = "hex_bytes")]
    pub record: Vec<u8>,
}

/// One live entry of a registration: a node the AOR is reached through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupEntry {
    /// The node.
    #[serde(with = "as_text")]
    pub node_id: NodeId,
    /// SIP contact URIs at that node.
    pub contacts: Vec<String>,
    /// The entry's expiry, unix seconds.
    pub expires: u64,
}

/// The answer to `get`: the newest version of an owner-only value that
/// verifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetResult {
    /// The owner.
    #[serde(with = "as_text")]
    pub owner: UserId,
    /// The value's name.
    pub name: String,
    /// The value as text (invalid UTF-8 replaced).
    pub value: String,
    /// The value's bytes.
    #[serde(with = "hex_bytes")]
    pub value_hex: Vec<u8>,
    /// The record's sequence number.
    pub seq: u64,
    /// The record's expiry, unix seconds.
    pub expires: u64,
    /// The record's encoding.
    #[serde(with = "hex_bytes")]
    pub record: Vec<u8>,
}

/// The answer to `get_record`: the newest record that verifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetRecordResult {
    /// The overlay key.
    #[serde(with = "hex_bytes")]
    pub key: Vec<u8>,
    /// The kind's number.
    pub kind: u64,
    /// The owner's public key (the key that signed it).
    #[serde(with = "hex_bytes")]
    pub owner: Vec<u8>,
    /// The record's sequence number.
    pub seq: u64,
    /// The record's expiry, unix seconds.
    pub expires: u64,
    /// The record's encoding.
    #[serde(with = "hex_bytes")]
    pub record: Vec<u8>,
}

/// The answer to `get_records`: every owner's newest record that
/// verifies, in owner order (none is an empty list, not an error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetRecordsResult {
    /// The overlay key.
    #[serde(with = "hex_bytes")]
    pub key: Vec<u8>,
    /// The kind's number.
    pub kind: u64,
    /// The records, one per owner.
    pub records: Vec<GetRecordResult>,
}

/// The answer to `publish`: where the record went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishResult {
    /// The record's overlay key.
    #[serde(with = "hex_bytes")]
    pub key: Vec<u8>,
    /// The record's kind number (docs/protocol.md §7).
    pub kind: u64,
    /// The record's sequence number.
    pub seq: u64,
    /// The record's expiry, unix seconds.
    pub expires: u64,
    /// Nodes that acknowledged a durable store.
    pub acks: usize,
    /// The overlay's replication factor: the most `acks` can be.
    pub replication: usize,
}

/// The answer to `sip_users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipUsersResult {
    /// Where the SIP listener listens (UDP and TCP); `None` without
    /// `--sip-listen`.
    pub listen: Option<String>,
    /// The AORs with phones bound at this node, sorted.
    pub bindings: Vec<SipBinding>,
    /// REGISTERs accepted.
    pub registers_accepted: u64,
    /// Credentials refused (of REGISTERs and of calls).
    pub auth_failures: u64,
    /// REGISTERs and calls refused because their source failed too often.
    pub locked_out: u64,
    /// Calls (and other requests from phones outside a dialog) whose
    /// Proxy-Authorization was good.
    #[serde(default)]
    pub calls_authorized: u64,
    /// REGISTERs dropped by the per-source rate limit.
    pub rate_limited: u64,
}

/// The answer to `reload`: what a reload applied and what waits for a
/// restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadResult {
    /// The configuration file read again (`None`: the node runs from
    /// flags only, so nothing can differ but `RUST_LOG`-free defaults).
    pub config: Option<String>,
    /// The settings whose new values are in force now, by their
    /// configuration key (e.g. `log_level`, `max_connections`).
    pub applied: Vec<String>,
    /// The settings that differ from the running ones but take a restart
    /// (e.g. `listen`, `dir`); the node keeps running with the old ones.
    pub restart_needed: Vec<String>,
}

/// The phones bound to one AOR at this node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipBinding {
    /// The address-of-record.
    pub aor: String,
    /// The phones' Contact URIs, sorted.
    pub contacts: Vec<String>,
    /// The same phones with where and how they registered, sorted by
    /// contact (empty from a node older than this field).
    #[serde(default)]
    pub phones: Vec<SipPhone>,
}

/// One phone bound at this node: its binding as the registrar keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipPhone {
    /// Its Contact URI.
    pub contact: String,
    /// Where its last REGISTER came from (address and port as the node
    /// saw them).
    pub source: String,
    /// Over which transport: `udp` or `tcp`.
    pub transport: String,
    /// Seconds until the binding lapses unless the phone registers again
    /// (rounded up).
    pub expires_in: u64,
}

/// The answer to `sip_unbind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipUnbindResult {
    /// The AOR, normalised.
    pub aor: String,
    /// How many phones were removed (at least 1).
    pub removed: usize,
    /// The phones removed, as they were bound.
    pub bindings: Vec<SipPhone>,
    /// Phones of the AOR still bound here; at 0 the node withdraws the
    /// AOR's entry from the overlay.
    pub remaining: usize,
}

/// `message` as JSON text. It goes through a [`serde_json::Value`], whose
/// objects keep their keys sorted: the text is byte for byte what the node
/// and the CLI wrote before these messages were typed. (JSON leaves key
/// order open; a script that compares lines sees no change either.)
pub(crate) fn json_text(message: &impl Serialize) -> Result<String, serde_json::Error> {
    Ok(serde_json::to_value(message)?.to_string())
}

/// `message` as one line of the admin protocol, newline included.
pub(crate) fn json_line(message: &impl Serialize) -> Result<String, serde_json::Error> {
    let mut line = json_text(message)?;
    line.push('\n');
    Ok(line)
}

/// Ids in their canonical text form (64 lower-case hex digits).
mod as_text {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};
    use std::fmt::Display;
    use std::str::FromStr;

    pub fn serialize<T: Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let text = String::deserialize(d)?;
        text.parse().map_err(D::Error::custom)
    }

    /// The same for an optional value (`null` when absent).
    pub mod option {
        use super::*;

        pub fn serialize<T: Display, S: Serializer>(
            value: &Option<T>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match value {
                Some(v) => s.collect_str(v),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
        where
            T: FromStr,
            T::Err: Display,
            D: Deserializer<'de>,
        {
            Option::<String>::deserialize(d)?
                .map(|text| text.parse().map_err(D::Error::custom))
                .transpose()
        }
    }
}

/// Bytes as lower-case hex text.
mod hex_bytes {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(text).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests;
