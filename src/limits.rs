//! Every numeric bound of the node, in one place.
//!
//! Each constant is a default: a deployment can tighten most of them through
//! configuration ([`crate::net::Limits`]), but nothing that parses network
//! bytes ever works without a bound.

use std::time::Duration;

/// Largest frame body (the CBOR message after the 4-byte length prefix)
/// that is accepted or sent: 64 KiB.
pub const MAX_FRAME_LEN: usize = 64 * 1024;

/// Length of the frame header: a big-endian `u32` giving the body length.
pub const FRAME_HEADER_LEN: usize = 4;

/// Longest reason string in an `Error` message, in bytes.
pub const MAX_ERROR_REASON_LEN: usize = 256;

/// Default admission puzzle for a public overlay: leading zero bits of
/// `SHA-256(NodeId)`. About 2^20 key generations per identity: roughly
/// seconds on a laptop for an honest node, and a real cost per Sybil
/// identity (see `docs/benchmarks.md` for the measured rate).
pub const DEFAULT_ID_DIFFICULTY: u8 = 20;

/// Highest difficulty the tools accept. 2^40 key generations is weeks of
/// CPU; anything above is a typo, not a policy.
pub const MAX_ID_DIFFICULTY: u8 = 40;

/// Default maximum of simultaneous connections (inbound, including those
/// still in their handshake).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Default maximum of simultaneous inbound connections from one IPv4
/// address (/32) or one IPv6 /64.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 8;

/// Default maximum of simultaneous inbound connections from one IPv4 /24
/// or IPv6 /48: a network of many addresses must not take the node's
/// connections for itself.
pub const DEFAULT_MAX_CONNECTIONS_PER_NET: usize = 32;

/// Default maximum of simultaneous inbound connections from one IPv4 /16
/// or IPv6 /32 (an eighth of [`DEFAULT_MAX_CONNECTIONS`]).
pub const DEFAULT_MAX_CONNECTIONS_PER_WIDE_NET: usize = 128;

/// Default maximum of bidirectional streams (requests) a peer may have open
/// on one connection at once.
pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: u32 = 16;

/// Default idle timeout of a connection.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Time a connecting peer has to complete its handshake. Without it a
/// handshake kept alive by retransmitted Initial packets (which a spoofing
/// sender can produce blind) would hold a connection slot indefinitely.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Receive window of one stream: one whole frame and its header, so that
/// a peer can never make the node buffer more than a frame per stream.
pub const STREAM_RECEIVE_WINDOW: u32 = (FRAME_HEADER_LEN + MAX_FRAME_LEN) as u32;

/// Receive window of a whole connection, over all its streams: four
/// frames. Bounds what one connection can make the node buffer.
pub const CONNECTION_RECEIVE_WINDOW: u32 = 4 * STREAM_RECEIVE_WINDOW;

/// Bytes of kernel receive (and send) buffer asked for an endpoint's UDP
/// socket. Every peer's packets arrive on this one socket: with the
/// kernel's usual default (about 208 KiB) a burst from a few dozen peers
/// overflows it while the node is busy, and each dropped datagram costs a
/// QUIC loss-recovery round trip (in the Store-rate benchmark 27,708
/// datagrams were dropped in one run, and requests stalled up to their
/// 3 s deadline). The kernel caps the size at `net.core.rmem_max` /
/// `wmem_max`; the node logs what it got.
pub const UDP_SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// Longest idle timeout the node accepts (QUIC encodes it in milliseconds
/// as a varint; this is far below that bound).
pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Time a peer has to deliver a whole request on a stream, and a client to
/// receive the answer. Bounds slow-loris streams.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a node's self-signed TLS certificate is valid. It is rebuilt at
/// every start and rotated by the running node well before it expires.
pub const SELF_SIGNED_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);

/// How far in the past a freshly built certificate's `notBefore` is set, to
/// tolerate peers whose clocks run behind.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(3600);

/// Longest device binding accepted, in days.
pub const MAX_BINDING_DAYS: u32 = 3650;

/// Largest PEM file (key, certificate, binding) read from disk.
pub const MAX_PEM_FILE_LEN: u64 = 64 * 1024;

/// Largest number of trust anchors loaded.
pub const MAX_TRUST_ANCHORS: usize = 64;

// ---------------------------------------------------------------------------
// Overlay records and their storage (`overlay::record`, `overlay::store`).
// The record bounds are part of the protocol (docs/protocol.md, "Records"):
// every node must refuse the same records, so they are not configurable.
// The store bounds are the defaults of `overlay::store::StoreLimits`.

/// Largest record value (the `value` byte string of a record), in bytes.
/// With the fixed fields and the signature a record stays far below one
/// frame ([`MAX_FRAME_LEN`]).
pub const MAX_RECORD_VALUE_LEN: usize = 16 * 1024;

/// Longest lifetime a record may claim: a record whose `expires` lies more
/// than this after the verifier's `now` is refused. It bounds how long a
/// record (and its anti-rollback tombstone) can hold storage without its
/// owner publishing again.
pub const MAX_RECORD_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// Longest SIP address-of-record in a registration, in bytes.
pub const MAX_AOR_LEN: usize = 256;

/// Most entries (bound devices) in one SIP registration.
pub const MAX_REGISTRATION_ENTRIES: usize = 16;

/// Most contacts in one registration entry.
pub const MAX_CONTACTS_PER_ENTRY: usize = 8;

/// Longest contact (a SIP URI as text) in a registration entry, in bytes.
pub const MAX_CONTACT_LEN: usize = 256;

/// Longest name of an owner value (the name its key is derived from), in
/// bytes. Names are at least one byte long.
pub const MAX_OWNER_VALUE_NAME_LEN: usize = 128;

/// Longest display name a user claims in its profile, in bytes.
pub const MAX_DISPLAY_NAME_LEN: usize = 64;

/// Most contacts in a user's address book (and the book must fit one
/// private record: about 150 contacts with self-certifying AORs).
pub const MAX_CONTACTS: usize = 256;

/// Longest contact name, in bytes.
pub const MAX_CONTACT_NAME_LEN: usize = 64;

/// Longest value of one setting, in bytes.
pub const MAX_SETTING_VALUE_LEN: usize = 4096;

/// Most AORs and names in the `blocked` setting.
pub const MAX_BLOCKED: usize = 32;

/// Largest vCard file `contacts import` reads, in bytes.
pub const MAX_VCARD_FILE_LEN: usize = 1024 * 1024;

// Voice mail (`overlay::record::mailbox`, kinds 6 and 7; docs/protocol.md
// §7.10): part of the protocol, every holder refuses the same records.

/// Most messages a user's mailbox holds (across every depositor, those the
/// owner deleted and those expired not counted).
pub const MAX_MAILBOX_ITEMS: usize = 50;

/// Most bytes of sealed audio a user's mailbox holds (the sum of its
/// items' declared lengths).
pub const MAX_MAILBOX_BYTES: u64 = 20 * 1024 * 1024;

/// Most messages one depositor (one signing node) leaves in one mailbox
/// within an hour (by the items' times).
pub const MAX_MAILBOX_ITEMS_PER_SENDER_HOUR: usize = 5;

/// Most depositors with live messages in one mailbox: with the owner's
/// state record they are what one answer carries
/// ([`MAX_RECORDS_PER_ANSWER`]), so a listing always sees them all.
pub const MAX_MAILBOX_DEPOSITORS: usize = MAX_RECORDS_PER_ANSWER - 1;

/// How long a message lives after its time: the records carrying it are
/// never renewed.
pub const MAILBOX_ITEM_LIFETIME: Duration = MAX_RECORD_LIFETIME;

/// How far in the future an item's time may lie (clock skew), seconds.
pub const MAILBOX_CLOCK_SKEW_SECS: u64 = 300;

/// Most chunks of one message.
pub const MAX_MAILBOX_CHUNKS: usize = 64;

/// Largest data of one chunk, in bytes: what fits a record value with
/// the chunk's index and byte-string heads.
pub const MAX_MAILBOX_CHUNK_DATA: usize = MAX_RECORD_VALUE_LEN - 16;

/// Largest sealed envelope of a message (who called, when, how long, the
/// codec), in bytes.
pub const MAX_MAILBOX_ENVELOPE_LEN: usize = 512;

/// Most message ids in each list (deleted, heard) of the owner's
/// mailbox state.
pub const MAX_MAILBOX_STATE_IDS: usize = 128;

/// Longest caller AOR a message's envelope holds, in bytes: with it,
/// [`MAX_MAILBOX_ITEMS`] entries always fit one deposit record (a longer
/// From is cut and the message marked unverified).
pub const MAX_VOICEMAIL_FROM_LEN: usize = 128;

/// Longest audio a node records for one message.
pub const MAX_VOICEMAIL_DURATION: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Relay descriptors (`overlay::record`, kind 3; docs/protocol.md §7.8):
// part of the protocol, like the other record bounds. Then the defaults of
// path choice and guards (`relay::path`), which are local policy.

/// Number of relay directory keys of an overlay:
/// `SHA-256("p2psip-relays-v1" ‖ overlay name ‖ i)` for `i` in
/// `0..RELAY_DIRECTORY_KEYS`. A client reads all of them.
pub const RELAY_DIRECTORY_KEYS: u8 = 8;

/// Directory keys each relay publishes under, exactly: the ones its node
/// id derives (`relay_directory_indices`). Spreads relays over the keys so
/// that no key's holders see or hide them all.
pub const RELAY_KEYS_PER_RELAY: usize = 2;

/// Most overlay addresses (QUIC, `ip:port`) in one relay descriptor.
pub const MAX_RELAY_ADDRESSES: usize = 4;

/// Largest capacity (circuits offered) a relay descriptor may state. Path
/// choice weighs the claim only up to [`RELAY_PATH_CAPACITY_UNIT`]: it is
/// self-declared.
pub const MAX_RELAY_CAPACITY: u32 = 1_000_000;

/// Longest lifetime of a relay descriptor record (`expires − now`):
/// shorter than other records, so that a relay that went away leaves the
/// directory within a day.
pub const RELAY_DESCRIPTOR_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Longest lifetime of an onion key a descriptor advertises
/// (`onion expires − now`).
pub const RELAY_ONION_KEY_MAX_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// Age at which a relay replaces its current onion key
/// (`relay::OnionKeys::rotate`).
pub const RELAY_ONION_KEY_ROTATION: Duration = Duration::from_secs(2 * 24 * 3600);

/// How long an onion key stays usable after it was replaced: longer than
/// [`RELAY_DESCRIPTOR_MAX_LIFETIME`], so that a client holding the last
/// descriptor with the old key can still build a circuit with it. An
/// onion key therefore lives `ROTATION + OVERLAP` (4 days), within
/// [`RELAY_ONION_KEY_MAX_LIFETIME`].
pub const RELAY_ONION_KEY_OVERLAP: Duration = Duration::from_secs(2 * 24 * 3600);

/// Default hops of a circuit (`relay::path::PathParams`): the guard, a
/// middle relay and a last relay, as in Tor.
pub const RELAY_DEFAULT_HOPS: usize = 3;

/// Most hops path choice builds a circuit of: as many as a cell has
/// layers for (`relay::onion::MAX_LAYERS`; a compile-time check there).
pub const RELAY_MAX_HOPS: usize = 6;

/// Default one-way latency budget of a circuit's relay chain: ITU-T
/// G.114's 150 ms, beyond which most users notice the delay of a call.
pub const RELAY_DEFAULT_LATENCY_BUDGET: Duration = Duration::from_millis(150);

/// One-way delay assumed for a hop whose round-trip time is unknown.
pub const RELAY_DEFAULT_HOP_DELAY: Duration = Duration::from_millis(30);

/// Capacity (circuits) at which a relay's claimed capacity stops adding
/// weight in path choice: the weight factor is `1 + min(c, UNIT) / UNIT`,
/// so a claim can at most double a relay's chance.
pub const RELAY_PATH_CAPACITY_UNIT: u32 = 64;

/// Guards (entry relays) a node keeps.
pub const RELAY_GUARDS: usize = 2;

/// Shortest time a guard is kept; each guard's lifetime is drawn
/// uniformly in `RELAY_GUARD_ROTATION_MIN..=RELAY_GUARD_ROTATION_MAX`, as
/// Tor does, so that guards chosen together do not all change together.
pub const RELAY_GUARD_ROTATION_MIN: Duration = Duration::from_secs(30 * 24 * 3600);

/// Longest time a guard is kept.
pub const RELAY_GUARD_ROTATION_MAX: Duration = Duration::from_secs(60 * 24 * 3600);

/// Consecutive failures (no successful circuit in between) after which a
/// guard may be replaced, provided it has also been failing for
/// [`RELAY_GUARD_DOWN_TIME`].
pub const RELAY_GUARD_MAX_FAILURES: u32 = 8;

/// How long a guard must have been failing, without a success, before
/// it is replaced: an attacker on the path who drops traffic for a while
/// does not make a node give up its guard.
pub const RELAY_GUARD_DOWN_TIME: Duration = Duration::from_secs(6 * 3600);

/// Default most slots (live records and anti-rollback tombstones) one owner
/// may hold in a node's record store.
pub const DEFAULT_STORE_MAX_SLOTS_PER_OWNER: usize = 128;

/// Default most bytes a node's record store accounts for: the encoded
/// records it holds plus [`STORE_SLOT_OVERHEAD`] per slot, which is what
/// it keeps resident (`docs/benchmarks.md`, "Record store memory").
pub const DEFAULT_STORE_MAX_BYTES: usize = 64 * 1024 * 1024;

/// Bytes a record store charges for every slot on top of its record's
/// encoding: what a slot is measured to keep resident beyond the encoding
/// itself (its entry in the slot map with the record's fixed fields, its
/// share of the map's nodes, its owner's entry in the per-owner count,
/// the allocator's rounding of the encoding), so that the store's byte
/// bound bounds its memory, and tombstones and tiny records are not free.
///
/// How it was set: `cargo bench --bench store` fills a store with 100,000
/// records of 256 bytes in a child process and divides its growth in
/// `VmRSS` by the records held; with every record of its own owner (the
/// worst case: one per-owner entry per slot) a slot cost 331 bytes beyond
/// its encoding (266 with 64 records per owner), on x86_64 Linux with
/// glibc's allocator. Rounded up to 352. Measure again when the store's
/// layout, the record's fixed fields or the platform change.
pub const STORE_SLOT_OVERHEAD: usize = 352;

/// Record writes (Stores and expiry deletes) queued for the committer
/// ([`crate::net::commit`]) at most, and the most one group commit takes:
/// a Store arriving at a full queue waits for room (back-pressure), so at
/// most twice this many record encodings (up to about 16.5 KiB each, some
/// 8 MiB at worst) are held between verification and the disk. A batch of
/// that many maximum-size records also fits redb's write buffer (half of
/// [`RECORD_DB_CACHE_SIZE`]).
pub const MAX_PENDING_RECORD_WRITES: usize = 256;

/// Bytes of page cache redb may keep for the record database (redb's own
/// default is 1 GiB). Reads are rare (only a restart reads every record;
/// lookups are answered from memory), so a small cache costs nothing;
/// writes need half of it as a write buffer for one group commit
/// ([`MAX_PENDING_RECORD_WRITES`] records of at most about 16.5 KiB). The
/// resident memory a node with a data directory adds over one without is
/// about this much (`docs/benchmarks.md`).
pub const RECORD_DB_CACHE_SIZE: usize = 16 * 1024 * 1024;

/// Most contacts in one Nodes or Value answer.
pub const MAX_CONTACTS_PER_ANSWER: usize = 32;

/// Most records in one Value answer.
pub const MAX_RECORDS_PER_ANSWER: usize = 4;

/// Longest overlay name, in bytes.
pub const MAX_OVERLAY_NAME_LEN: usize = 64;

// ---------------------------------------------------------------------------
// Overlay maintenance (`net::maintenance`): defaults of
// `net::maintenance::Maintenance` and bounds on the work it does.

/// Most routing-table contacts saved to a node's data directory, and
/// reloaded from it at start (longest-known first when the table holds
/// more).
pub const MAX_SAVED_CONTACTS: usize = 512;

/// Default interval between two rounds of republishing the records a node
/// holds to the `replication` closest nodes it knows (Kademlia republish).
pub const DEFAULT_REPUBLISH_INTERVAL: Duration = Duration::from_secs(3600);

/// Default jitter of every maintenance interval: each wait is drawn
/// uniformly within this much of its nominal length, so that nodes started
/// together do not republish in lockstep.
pub const DEFAULT_MAINTENANCE_JITTER: Duration = Duration::from_secs(360);

/// Default age after which a bucket none of whose contacts has been heard
/// from is refreshed (a lookup of a random key in its range).
pub const DEFAULT_BUCKET_REFRESH_INTERVAL: Duration = Duration::from_secs(3600);

/// Default interval between sweeps that drop expired records (from memory
/// and from disk).
pub const DEFAULT_EXPIRE_INTERVAL: Duration = Duration::from_secs(60);

/// Default interval between saves of the routing table to the data
/// directory (it is saved at shutdown too).
pub const DEFAULT_CONTACTS_SAVE_INTERVAL: Duration = Duration::from_secs(300);

/// Default pace of maintenance requests (republish, hand-over, repair),
/// all peers together, per second. Kept below
/// [`MAX_REQUESTS_PER_PEER_PER_SEC`] so that maintenance never trips a
/// peer's rate limit even when all of it goes to one peer.
pub const DEFAULT_MAINTENANCE_REQUESTS_PER_SEC: u32 = 50;

/// Most records one republish round handles; the next round continues
/// where this one stopped.
pub const MAX_REPUBLISH_RECORDS_PER_ROUND: usize = 4096;

/// Most records considered per churn event: handed over to one newcomer,
/// or re-pushed after one eviction. The rest waits for the next republish.
pub const MAX_HANDOVER_RECORDS: usize = 64;

/// Churn events (admissions, evictions) queued for the maintenance task;
/// beyond it the oldest is dropped (republish covers what it would have
/// done).
pub const MAX_PENDING_CHURN_EVENTS: usize = 256;

/// Attempts a join makes at most (the first included) while its own-id
/// lookup gets no answer at all (its bootstrap requests lost, or the
/// bootstrap nodes not up yet): without a retry such a node knows only
/// its bootstrap nodes, nobody knows it, and it stays so until its first
/// bucket refresh ([`DEFAULT_BUCKET_REFRESH_INTERVAL`]). Five attempts
/// wait 1 + 2 + 4 + 8 = 15 s in all ([`JOIN_RETRY_BACKOFF`]).
pub const JOIN_MAX_ATTEMPTS: u32 = 5;

/// Wait before the first join retry; it doubles with each retry, up to
/// [`JOIN_RETRY_MAX_BACKOFF`].
pub const JOIN_RETRY_BACKOFF: Duration = Duration::from_secs(1);

/// Longest wait between two join attempts.
pub const JOIN_RETRY_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A join is done when its own-id lookup got answers from at least this
/// many nodes: one is enough to refresh the buckets beyond it
/// (`overlay::placement::join_refresh_buckets`); a node that found its
/// neighbourhood this way but not all of it fills the rest at its bucket
/// refreshes. (The first nodes of a new overlay find no more than their
/// bootstrap node, so a higher bound would make them retry for nothing.)
pub const JOIN_MIN_ANSWERS: usize = 1;

/// Hand-over and repair tasks running at once.
pub const MAX_CONCURRENT_HANDOVERS: usize = 4;

/// Most stale buckets refreshed in one refresh round.
pub const MAX_BUCKET_REFRESHES_PER_ROUND: usize = 16;

/// A node refuses a Store (`NotResponsible`) when it knows at least this
/// many times `replication` nodes closer to the key than itself.
pub const RESPONSIBILITY_SLACK_FACTOR: usize = 2;

// ---------------------------------------------------------------------------
// Per-peer request rate limits (`overlay::rate`, defaults of `RateLimit`).

/// Sustained requests per second one authenticated peer (node id) may make
/// of a node.
pub const MAX_REQUESTS_PER_PEER_PER_SEC: u32 = 100;

/// Requests one peer may make in a burst above the sustained rate.
pub const PEER_REQUEST_BURST: u32 = 200;

/// One source address (IPv4 /32, IPv6 /64) may make this many times a
/// peer's rate and burst, over all the node ids it presents: fresh ids
/// must not buy fresh budgets.
pub const RATE_LIMIT_PER_IP_FACTOR: u32 = 4;

/// Most peers and addresses tracked by the rate limiter; beyond it, idle
/// (refilled) entries and then the least recently used are dropped.
pub const MAX_RATE_LIMITED_KEYS: usize = 4096;

/// Refused requests in a row after which a connection is closed (QUIC
/// application code 2).
pub const MAX_REFUSED_REQUESTS_IN_A_ROW: u32 = 256;

// ---------------------------------------------------------------------------
// Reputation (`reputation`): score bounds and evidence weights (in points),
// decay half-lives, bans, and the bound on the evidence table. Defaults of
// `reputation::Policy` where noted. All times there are unix milliseconds.

/// How often a node saves its reputation table to its data directory when
/// it changed (it is saved at shutdown too): a ban outlives a crash after
/// at most this long.
pub const REPUTATION_SAVE_INTERVAL: Duration = Duration::from_secs(30);

/// Most peers the reputation table tracks (default of
/// `reputation::Policy::max_peers`, and the most a persisted table may
/// hold). Beyond it the least informative entry is forgotten first.
pub const REPUTATION_MAX_PEERS: usize = 4096;

/// Largest persisted reputation table accepted, in bytes. A full table
/// ([`REPUTATION_MAX_PEERS`] entries of at most 128 bytes) stays below it.
pub const REPUTATION_MAX_ENCODED_LEN: usize = 1024 * 1024;

/// Highest score a peer can have.
pub const REPUTATION_SCORE_MAX: f64 = 100.0;

/// Lowest score a peer can have. Unknown peers score 0.
pub const REPUTATION_SCORE_MIN: f64 = -100.0;

/// Lowest value of the reliability part of a score: unreliability alone
/// (timeouts) never ranks a peer below one that provably misbehaved.
pub const REPUTATION_RELIABILITY_FLOOR: f64 = -50.0;

/// Highest misbehaviour load a peer can accumulate: bounds how long
/// provable misbehaviour is remembered (about three half-lives to fall
/// below the ban threshold again).
pub const REPUTATION_MISBEHAVIOUR_CAP: f64 = 200.0;

/// Half-life of the reliability part of a score (answers and timeouts):
/// unreliability is transient (churn, congestion), so it is forgiven fast.
pub const REPUTATION_RELIABILITY_HALF_LIFE: Duration = Duration::from_secs(3600);

/// Half-life of the misbehaviour load (provably wrong answers, protocol
/// and rate violations): forgiven slowly.
pub const REPUTATION_MISBEHAVIOUR_HALF_LIFE: Duration = Duration::from_secs(24 * 3600);

/// Reliability credit of an answered request whose content was not
/// checked (a Pong).
pub const REPUTATION_ANSWERED_CREDIT: f64 = 1.0;

/// Reliability credit of an answer whose content verified (records with
/// good signatures, contacts that are valid and closer).
pub const REPUTATION_VERIFIED_CREDIT: f64 = 2.0;

/// Reliability cost of an unanswered request. As much as a verified
/// answer earns: a peer that answers half of the time is neutral.
pub const REPUTATION_UNRESPONSIVE_COST: f64 = 2.0;

/// Misbehaviour load of one provably wrong answer or protocol violation:
/// 25 timeouts' worth.
pub const REPUTATION_MISBEHAVIOUR_COST: f64 = 50.0;

/// Misbehaviour load of one refused over-rate request.
pub const REPUTATION_RATE_VIOLATION_COST: f64 = 5.0;

/// Misbehaviour load at which a peer is banned: two provably wrong answers
/// less than about 7 hours apart (the first has not decayed below 40), or
/// eighteen refused over-rate requests in a short time.
pub const REPUTATION_BAN_THRESHOLD: f64 = 90.0;

/// Score from which a peer is in good standing.
pub const REPUTATION_GOOD_SCORE: f64 = 10.0;

/// Score at or below which a peer is suspect: it can be replaced in the
/// routing table and holds no replicas.
pub const REPUTATION_SUSPECT_SCORE: f64 = -10.0;

/// Length of a first ban (default of `reputation::Policy::ban_base`);
/// each further ban within [`REPUTATION_STRIKE_MEMORY`] doubles it.
pub const REPUTATION_BAN_BASE: Duration = Duration::from_secs(10 * 60);

/// Longest ban (default of `reputation::Policy::ban_max`, and the most a
/// persisted ban may still run after a restart).
pub const REPUTATION_BAN_MAX: Duration = Duration::from_secs(24 * 3600);

/// Most bans counted towards escalation (the count saturates).
pub const REPUTATION_MAX_BAN_STRIKES: u8 = 8;

/// Time after the last ban began from which a new ban starts again at
/// [`REPUTATION_BAN_BASE`].
pub const REPUTATION_STRIKE_MEMORY: Duration = Duration::from_secs(7 * 24 * 3600);

/// A peer neither heard from nor banned for this long, whose score has
/// decayed to neutral, is the first to be forgotten when the table is full.
pub const REPUTATION_FORGET_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// Relationship age from which a peer in good standing is established
/// (eligible as a media relay).
pub const REPUTATION_ESTABLISHED_AGE: Duration = Duration::from_secs(3600);

/// Smallest rate allowance factor of a peer that is not banned (score
/// [`REPUTATION_SCORE_MIN`]).
pub const REPUTATION_RATE_FACTOR_MIN: f64 = 0.25;

/// Largest rate allowance factor (score [`REPUTATION_SCORE_MAX`]).
pub const REPUTATION_RATE_FACTOR_MAX: f64 = 2.0;

// ---- Graceful leave ----------------------------------------------------

/// How long a stopping node spends handing its records to the nodes that
/// will hold them ([`crate::net::overlay::OverlayService::leave`]).
pub const LEAVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Stores a leaving node has in flight at once.
pub const MAX_LEAVE_STORES_IN_FLIGHT: usize = 32;

/// How many times a value lookup that found nothing valid is widened to
/// fresh disjoint paths through the candidates never asked
/// ([`crate::overlay::lookup::Lookup::widen`]).
pub const LOOKUP_WIDEN_ROUNDS: u32 = 2;

// ---- Density detection and simulated spam ------------------------------
// (added for `overlay::density` and the simulator's `spam` adversary)

/// How many times denser than the estimated network size the ids found
/// near a key must be before they count as a targeted cluster
/// ([`crate::overlay::density`]): the `i`-th closest found id lies within
/// `i / (n · DENSITY_FACTOR)` of the key space. An attacker who stays
/// below it must spread its ids so thinly that honest nodes fall among
/// them.
pub const DENSITY_FACTOR: f64 = 16.0;

/// Fewest ids a dense cluster is made of: fewer close ids are ordinary
/// luck in a random network.
pub const DENSITY_MIN_CLUSTER: usize = 5;

/// Most ids [`crate::overlay::density`] looks at per call (the closest
/// ones): bounds its work whatever it is fed.
pub const DENSITY_MAX_SAMPLE: usize = 256;

/// How many times a lookup that found a dense cluster near its key is
/// repeated with the cluster set aside, each round setting aside what the
/// previous one found dense too.
pub const DENSITY_WIDEN_ROUNDS: u32 = 3;

// ---- The overlay core (`overlay::peers`, `overlay::query`) --------------

/// Holders that must have answered with a verified record before a value
/// lookup stops early ([`crate::overlay::peers::Defences::value_answers`]
/// of the node): replicas are spread over paths, so one holder may have an
/// older version, and the reader takes the highest.
pub const VALUE_ANSWERS_BEFORE_STOPPING: usize = 2;

/// Holders of a record a placement lookup remembers, at most
/// ([`crate::overlay::query::Found::holders`]).
pub const MAX_FOUND_HOLDERS: usize = 64;

/// Actions (disconnects, pings) the core queues for its driver, at most
/// ([`crate::overlay::peers::Peers::poll_action`]).
pub const MAX_PENDING_PEER_ACTIONS: usize = 256;

// ---- Requesting politely (`net::dialer`) ---------------------------------

/// How long one overlay request may take (waiting for a place, dialing
/// and answering included) before it counts as unanswered.
pub const OVERLAY_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Requests a node has in flight to one peer at most; more wait for a
/// place (below the peer's stream limit, [`DEFAULT_MAX_STREAMS_PER_CONNECTION`]).
pub const MAX_IN_FLIGHT_PER_PEER: usize = 8;

/// Requests a node has in flight in all at most; more wait for a place.
pub const MAX_REQUESTS_IN_FLIGHT: usize = 256;

/// Peers whose pacing and back-off state the dialer keeps at most (the
/// least recently used idle one is forgotten first).
pub const MAX_PACED_PEERS: usize = 4096;

/// First pause of requests to a peer that answered `RateLimited` or
/// `Busy`; doubled per refusal in a row up to [`DIAL_BACKOFF_MAX`].
pub const DIAL_BACKOFF_BASE: Duration = Duration::from_millis(250);

/// Longest pause after refusals.
pub const DIAL_BACKOFF_MAX: Duration = Duration::from_secs(8);

/// Addresses a dial-back found no listener at that a node remembers, at
/// most (so that a pure client's every request does not cost a dial).
pub const MAX_FAILED_LISTEN_CHECKS: usize = 1024;

/// How long a node does not dial an address back again after finding no
/// listener there.
pub const LISTEN_CHECK_RETRY: Duration = Duration::from_secs(600);

/// Dial-backs that confirm an inbound peer listens where it connected
/// from, run at once; a peer that finds no place is considered again at
/// its next request.
pub const MAX_CONCURRENT_LISTEN_CHECKS: usize = 8;

// --- SIP front-end -------------------------------------------------------

/// Largest SIP message (start line, headers and body) the node parses or
/// sends: 64 KiB, one UDP datagram at most.
pub const SIP_MAX_MESSAGE_LEN: usize = 64 * 1024;

/// Most header fields in one SIP message (after unfolding; each value of a
/// comma-separated list counts once per line it stands on).
pub const SIP_MAX_HEADERS: usize = 128;

/// Longest line (start line or one unfolded header field) in a SIP
/// message, in bytes.
pub const SIP_MAX_LINE_LEN: usize = 8 * 1024;

/// Longest SIP URI (the Request-URI, or one in a header), in bytes.
pub const SIP_MAX_URI_LEN: usize = 1024;

/// Most Via values in one SIP message: each proxy on the path adds one,
/// and a path longer than this is a loop or an attack.
pub const SIP_MAX_VIAS: usize = 16;

/// Most parameters on one SIP URI or one header value.
pub const SIP_MAX_PARAMS: usize = 32;

/// Parameters in one SIP `Authorization` value, at most.
pub const SIP_MAX_AUTH_PARAMS: usize = 16;

/// How long a digest nonce is good for; later it is stale and the phone
/// is challenged again.
pub const SIP_NONCE_LIFETIME: Duration = Duration::from_secs(300);

/// SIP transactions in progress at once, at most, in each direction
/// (server and client): a request that would open one more is answered
/// 503 statelessly. A finished transaction with a phone over UDP lingers
/// up to 64 × T1 (32 s) to absorb retransmissions (over the overlay, a
/// reliable hop between proxies, it ends at once), so a node whose
/// phones call over UDP takes about 1,000 calls a second sustained (an
/// INVITE and a BYE lingering each). A transaction keeps its request
/// and last response, about 1–2 KB: some 100 MB a layer when full.
pub const SIP_MAX_TRANSACTIONS: usize = 65_536;

/// Nonces whose last count a node remembers (to refuse replays), at most.
pub const SIP_MAX_TRACKED_NONCES: usize = 4096;

/// Local SIP accounts a node serves, at most (each a file in
/// `NODE/sip-users/`; files beyond are ignored, with a warning).
pub const SIP_MAX_ACCOUNTS: usize = 10_000;

/// Phones bound to one AOR at one node, at most; one more is refused 403.
pub const SIP_MAX_BINDINGS_PER_AOR: usize = 8;

/// Shortest registration a phone may ask for (RFC 3261 §10.3: one hour
/// recommended, and a registrar may refuse less with 423 and
/// Min-Expires), in seconds.
pub const SIP_MIN_EXPIRES: u64 = 60;

/// Registration lifetime when a REGISTER names none, in seconds.
pub const SIP_DEFAULT_EXPIRES: u64 = 3600;

/// Longest registration granted, in seconds; a phone asking for more
/// gets this (the 200 OK says so).
pub const SIP_MAX_EXPIRES: u64 = 3600;

/// Shortest life of the entry a node announces in the overlay for an
/// AOR with phones bound there, in seconds. The entry outlives short
/// bindings (a phone that re-registers every 60 s costs a publication
/// every few minutes, not every minute): the node withdraws it itself
/// when the last phone leaves, so the longer life matters only when the
/// node dies, and then calls to it fail (480) as before.
pub const SIP_ANNOUNCE_MIN_LIFE: u64 = 600;

/// REGISTERs one source address (IPv4, IPv6 /64) may send at once; a
/// flood beyond is dropped unanswered.
pub const SIP_REGISTER_BURST: u32 = 32;

/// One more REGISTER per this much time, per source address (20 a
/// second sustained: far above what phones behind one address send).
pub const SIP_REGISTER_REFILL: Duration = Duration::from_millis(50);

/// Failed authentications one auth user may make from one source
/// address at once; after that that account's requests from that
/// address are refused 403 until the bucket refills. Other accounts
/// behind the same address (one NAT) are not locked out by it.
pub const SIP_AUTH_FAILURE_BURST: u32 = 5;

/// One more failed authentication allowed per this much time, per
/// (source address, auth user) and per source address.
pub const SIP_AUTH_FAILURE_REFILL: Duration = Duration::from_secs(12);

/// Source addresses whose REGISTER rate and failures are tracked, at
/// most (each map; the idle, then the least recently used, are dropped).
pub const SIP_MAX_RATE_LIMITED_SOURCES: usize = 4096;

/// TCP connections from phones a SIP listener holds at once, at most; the
/// next is closed at once.
pub const SIP_MAX_TCP_CONNECTIONS: usize = 1024;

/// A phone's TCP connection with nothing received for this long is
/// closed (phones that keep one open send CRLF keep-alives, RFC 5626,
/// far more often).
pub const SIP_TCP_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(900);

/// TCP connections one IP address may hold with a SIP listener at once,
/// inbound and outbound together; the next from (or to) it is closed at
/// once. Phones behind one NAT share it: each phone keeps one.
pub const SIP_MAX_TCP_CONNECTIONS_PER_IP: usize = 16;

/// A new TCP connection (accepted, or opened to a phone) must bring a
/// first complete SIP message within this long, or it is closed;
/// keep-alives do not count. After the first message,
/// [`SIP_TCP_IDLE_TIMEOUT`] applies.
pub const SIP_TCP_FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Nodes a call is forked to at once, at most (a registration may list
/// more devices; the first are tried).
pub const SIP_MAX_FORK_NODES: usize = 4;

/// SIP messages from other nodes waiting for the SIP listener, at most;
/// beyond, a node's Sip request is answered Busy.
pub const SIP_OVERLAY_INBOX: usize = 1024;

/// Nodes the SIP listener keeps a send queue and an address for, at most.
pub const SIP_OVERLAY_PEERS: usize = 1024;

/// SIP messages (`Sip` requests) one peer may send a second, sustained:
/// their own budget, beside the overlay requests' (a call costs the two
/// nodes about six; this carries over 800 calls a second).
pub const SIP_OVERLAY_MESSAGES_PER_SEC: u32 = 5000;

/// SIP messages one peer may send at once.
pub const SIP_OVERLAY_BURST: u32 = 10_000;

/// Dialogs a node holds at once, at most: calls being set up or up, and
/// ended ones lingering [`SIP_DIALOG_LINGER`] (32 s) for
/// retransmissions, so about 2,000 calls a second sustained; a new call
/// beyond is refused 503. A dialog keeps its Call-ID, tags and parties,
/// a few hundred bytes: some 20 MB when full.
pub const SIP_MAX_DIALOGS: usize = 65_536;

/// Dialogs one account (an AOR served here) may hold at once, as caller
/// or callee, at most; one more is refused 486 (busy). Ended calls do
/// not count. A phone makes a few calls at once; this leaves room for a
/// shared account (an office's line, a benchmark's caller: 500 calls a
/// second of 100 ms hold about 60) while one account can take at most a
/// sixteenth of the node's media sessions ([`MEDIA_MAX_SESSIONS`]).
pub const SIP_MAX_DIALOGS_PER_ACCOUNT: usize = 256;

/// Dialogs one source may open at once, at most: a phone's IP address
/// (IPv4, IPv6 /64) or a node of the overlay (which carries every call
/// its phones make to this node). One more is refused 503. Ended calls
/// do not count; one source takes at most a quarter of the node's media
/// sessions.
pub const SIP_MAX_DIALOGS_PER_SOURCE: usize = 1024;

/// A dialog that no 2xx confirmed within this long is dropped: longer
/// than the caller's node can wait for its answer (Timer B, 32 s, to a
/// first provisional answer, then Timer C, 181 s).
pub const SIP_DIALOG_EARLY_TIMEOUT: Duration = Duration::from_secs(240);

/// A confirmed dialog is dropped after this long even with no BYE (a
/// phone that vanished mid-call frees its account's dialog budget).
pub const SIP_DIALOG_MAX_AGE: Duration = Duration::from_secs(12 * 3600);

/// A dialog that ended (BYE, a failed INVITE) is kept this long
/// (64 × T1) so that retransmissions and the answers to its BYE still
/// match; its media is closed at once.
pub const SIP_DIALOG_LINGER: Duration = Duration::from_secs(32);

/// Failed authentications one source address may make at once, of all
/// accounts together; after that every request from it that needs
/// authentication is refused 403 until the bucket refills
/// ([`SIP_AUTH_FAILURE_REFILL`]): guessing many accounts' passwords
/// from one address is no faster than a few.
pub const SIP_AUTH_FAILURE_BURST_PER_SOURCE: u32 = 20;

/// Media streams (`m=` lines) one call may anchor, at most.
pub const MEDIA_MAX_STREAMS: usize = 4;

/// Calls whose media a node anchors at once, at most; beyond, a new
/// call is refused (488) rather than passed on unanchored.
pub const MEDIA_MAX_SESSIONS: usize = 4096;

/// Parties to one call's media at a node, at most: the caller, the
/// forks of the callee (phones or nodes) and the node's voice mail.
pub const MEDIA_MAX_PARTIES: usize = 2 + SIP_MAX_BINDINGS_PER_AOR;

/// A call's media ports are released after this long without a packet
/// in either direction (RTP or RTCP), or a BYE, whichever comes first.
pub const MEDIA_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The UDP ports a node's media sockets take, RTP on an even port and
/// RTCP on the next.
pub const MEDIA_PORTS: std::ops::RangeInclusive<u16> = 20_000..=29_999;

// --- TURN at relay nodes (`turn::server`) ---------------------------------
// (The protocol's lifetimes and the allocation quotas are in `turn`.)

/// Error answers to unauthenticated TURN requests (401 challenges, and
/// 400 or 420 to requests without credentials) one source address (IPv4,
/// IPv6 /64) may draw at once; beyond, its requests are dropped
/// unanswered. A 401 is about 3.4 times its request: this bounds what a
/// spoofed source can reflect at its victim.
pub const TURN_CHALLENGE_BURST: u32 = 32;

/// One more unauthenticated error answer per this much time, per source
/// address (10 a second sustained, about 1 KB/s of 401s: far more than
/// the clients behind one address need, each of which draws one 401 when
/// it starts and one when its nonce goes stale). The TURN server's clock
/// ticks in seconds, so the bucket refills ten at a time.
pub const TURN_CHALLENGE_REFILL: Duration = Duration::from_millis(100);

/// Source addresses whose unauthenticated answers are counted, at most
/// (the idle, then the least recently used, are forgotten).
pub const TURN_MAX_CHALLENGED_SOURCES: usize = 4096;
