//! Relay descriptors (kind 3): a media relay's signed offer (its overlay
//! addresses, its X25519 onion keys, its capacity and what it serves),
//! stored in the overlay under well-known *relay directory keys* so that
//! any node can find relays; only the relay node itself can write its
//! descriptor. `docs/protocol.md` §7.8 is the normative description.
//!
//! # Where descriptors live, and why there
//!
//! An overlay has [`RELAY_DIRECTORY_KEYS`] directory keys,
//! [`relay_directory_key`]`(overlay, i) = SHA-256("p2psip-relays-v1" ‖
//! overlay name ‖ i)` (`i` one byte). A client reads them all. A relay
//! publishes its descriptor under exactly [`RELAY_KEYS_PER_RELAY`] of
//! them, the ones its node id derives ([`relay_directory_indices`]), and
//! the access rule refuses a descriptor under any other directory key:
//!
//! - the holders of one key (the nodes closest to it) can hide what is
//!   stored there, but each relay is also stored under another key, held
//!   by other nodes: hiding a relay takes the holders of both its keys;
//! - an attacker who holds one key cannot pile all of its own relays
//!   there to be the only relays a client reading that key sees: its
//!   relays land on keys as honest ones do, by their ids. Grinding ids
//!   for a chosen pair of keys costs only a factor of about 28 (the
//!   pairs of 8 keys) on top of the id puzzle, so this raises the cost of
//!   targeting a key rather than preventing it; the real defence is that
//!   a client reads every key, from more than one holder, and weighs
//!   relays by its own reputation table ([`crate::relay::path`]).
//!
//! # What one answer carries
//!
//! A FindValue answer carries at most
//! [`MAX_RECORDS_PER_ANSWER`](crate::limits::MAX_RECORDS_PER_ANSWER)
//! (4) records of a key. With `R` relays an overlay's directory key holds
//! about `R × 2 / 8 = R / 4` descriptors, so beyond 16 relays one answer
//! shows a client only part of a key. A client therefore asks every
//! directory key, and repeats over time and holders to gather more.
//! Which 4 a holder returns is the holder's choice; an honest node
//! returns a fresh random sample each time
//! ([`RecordStore::answer`](crate::overlay::store::RecordStore::answer)),
//! so that no relay can grind its owner key into every answer.
//!
//! # Value
//!
//! ```text
//! relay_descriptor = [1, node_id: bstr(32), node_cert: bstr / null, offer / null]
//! offer   = [addresses: [+ address], onion: onion_key, previous: onion_key / null,
//!            capacity: uint, flags: uint, turn: address / null]
//! onion_key = [key: bstr(32), expires: uint]
//! address = [ip: bstr(4) / bstr(16), port: uint]
//! ```
//!
//! `offer` null is a withdrawn descriptor: what a relay publishes, with a
//! higher `seq`, to leave the directory before its record expires (the
//! store keeps no-rollback tombstones, so an older descriptor cannot be
//! replayed over it).

use super::{Record, RecordError, RecordKind, RecordPolicy};
use crate::identity::{CertError, IdKind, NodeId, PublicKey, SecretKey};
use crate::limits::{
    MAX_RECORD_VALUE_LEN, MAX_RELAY_ADDRESSES, MAX_RELAY_CAPACITY, RELAY_DESCRIPTOR_MAX_LIFETIME,
    RELAY_DIRECTORY_KEYS, RELAY_KEYS_PER_RELAY, RELAY_ONION_KEY_MAX_LIFETIME,
};
use crate::overlay::key::Key;
use crate::wire::cbor::{encoder, require_canonical, Reader};
use crate::wire::WireError;
use sha2::{Digest, Sha256};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Domain of the relay directory keys.
pub const RELAY_DIRECTORY_DOMAIN: &[u8] = b"p2psip-relays-v1";
/// Domain of the hash a relay's directory indices are drawn from.
pub const RELAY_INDEX_DOMAIN: &[u8] = b"p2psip-relay-index-v1";
/// The descriptor schema's version (its first field).
pub const RELAY_DESCRIPTOR_VERSION: u64 = 1;

const DESCRIPTOR_ARITY: u64 = 4;
const OFFER_ARITY: u64 = 6;
const FLAG_RELAYS_CIRCUITS: u64 = 1;
const FLAG_SERVES_TURN: u64 = 2;
const KNOWN_FLAGS: u64 = FLAG_RELAYS_CIRCUITS | FLAG_SERVES_TURN;

const _: () = assert!(RELAY_KEYS_PER_RELAY <= RELAY_DIRECTORY_KEYS as usize);
const _: () = assert!(RELAY_KEYS_PER_RELAY >= 1);

/// Directory key `i` of `overlay`: `SHA-256("p2psip-relays-v1" ‖ overlay
/// ‖ i)`, `i` one byte. Keys exist for `i < RELAY_DIRECTORY_KEYS`; the
/// function hashes any `i`.
pub fn relay_directory_key(overlay: &str, i: u8) -> Key {
    let mut h = Sha256::new();
    h.update(RELAY_DIRECTORY_DOMAIN);
    h.update(overlay.as_bytes());
    h.update([i]);
    Key(h.finalize().into())
}

/// Every directory key of `overlay`, in index order: what a client looks
/// up (each with FindValue of kind 3) to learn the relays.
pub fn relay_directory_keys(overlay: &str) -> Vec<Key> {
    (0..RELAY_DIRECTORY_KEYS)
        .map(|i| relay_directory_key(overlay, i))
        .collect()
}

/// The index of `key` among `overlay`'s directory keys, if it is one.
pub fn relay_directory_index(overlay: &str, key: &Key) -> Option<u8> {
    (0..RELAY_DIRECTORY_KEYS).find(|&i| relay_directory_key(overlay, i) == *key)
}

/// The [`RELAY_KEYS_PER_RELAY`] distinct directory indices relay
/// `node_id` publishes under. With `h = SHA-256("p2psip-relay-index-v1" ‖
/// node_id)` and the list `[0, 1, …, RELAY_DIRECTORY_KEYS − 1]`, for `j`
/// from 0: swap item `j` with item `j + h[j] mod (RELAY_DIRECTORY_KEYS −
/// j)`; the first [`RELAY_KEYS_PER_RELAY`] items are the indices, in that
/// order (a partial Fisher–Yates shuffle keyed by the id).
pub fn relay_directory_indices(node_id: &NodeId) -> [u8; RELAY_KEYS_PER_RELAY] {
    let h: [u8; 32] = Sha256::new()
        .chain_update(RELAY_INDEX_DOMAIN)
        .chain_update(node_id.as_bytes())
        .finalize()
        .into();
    let mut all: Vec<u8> = (0..RELAY_DIRECTORY_KEYS).collect();
    let n = all.len();
    for (j, byte) in h.iter().enumerate().take(RELAY_KEYS_PER_RELAY) {
        let pick = j + usize::from(*byte) % (n - j);
        all.swap(j, pick);
    }
    let mut out = [0u8; RELAY_KEYS_PER_RELAY];
    for (o, i) in out.iter_mut().zip(all) {
        *o = i;
    }
    out
}

/// The directory keys relay `node_id` publishes under in `overlay`.
pub fn relay_publication_keys(overlay: &str, node_id: &NodeId) -> [Key; RELAY_KEYS_PER_RELAY] {
    relay_directory_indices(node_id).map(|i| relay_directory_key(overlay, i))
}

/// Why a relay descriptor was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RelayDescriptorError {
    /// The value is not the descriptor schema (profile of
    /// [`crate::wire::cbor`], canonical).
    #[error("malformed relay descriptor: {0}")]
    Malformed(WireError),
    /// A descriptor version this implementation does not know.
    #[error("unsupported relay descriptor version {0}")]
    UnsupportedVersion(u64),
    /// No address, or more than [`MAX_RELAY_ADDRESSES`].
    #[error("{count} addresses; a relay descriptor has 1 to {MAX_RELAY_ADDRESSES}")]
    AddressCount {
        /// The addresses present (or declared).
        count: u64,
    },
    /// An address that cannot be dialled (unspecified, multicast, port
    /// 0), an IPv4 address in IPv6 form, or one listed twice.
    #[error("unusable or repeated address {0}")]
    BadAddress(SocketAddr),
    /// A capacity above [`MAX_RELAY_CAPACITY`].
    #[error("capacity {0} exceeds the maximum of {MAX_RELAY_CAPACITY}")]
    CapacityTooLarge(u64),
    /// Flag bits this version does not define.
    #[error("unknown relay flags {0:#x}")]
    UnknownFlags(u64),
    /// A TURN address without the `serves_turn` flag, or the flag
    /// without an address.
    #[error("the TURN address and the serves_turn flag disagree")]
    TurnMismatch,
    /// An onion key that is a low-order point (its handshakes would
    /// give a known secret).
    #[error("an onion key is a low-order point")]
    LowOrderOnionKey,
    /// The previous onion key equals the current one or outlives it.
    #[error("the previous onion key is the current one or outlives it")]
    BadPreviousOnionKey,
    /// The record's owner key does not derive the descriptor's node id.
    #[error("the owner key does not derive node id {0}")]
    NotTheRelaysKey(NodeId),
    /// The node id does not solve the overlay's id puzzle.
    #[error("node id has {actual} puzzle bits, the overlay requires {required}")]
    PuzzleNotSolved {
        /// The overlay's difficulty.
        required: u8,
        /// The id's leading zero bits.
        actual: u32,
    },
    /// The record is stored under a directory key that is not one of the
    /// relay's own ([`relay_directory_indices`]).
    #[error("directory key {index} is not one of the relay's own {own:?}")]
    NotRelaysDirectoryKey {
        /// The directory index the record names.
        index: u8,
        /// The relay's own indices.
        own: [u8; RELAY_KEYS_PER_RELAY],
    },
    /// Self-certifying overlay: a node certificate is present.
    #[error("a relay descriptor in a self-certifying overlay carries no node certificate")]
    CertificateNotAllowed,
    /// Enrolled overlay: no node certificate.
    #[error("a relay descriptor in an enrolled overlay needs the relay's node certificate")]
    CertificateRequired,
    /// Enrolled overlay: the certificate is not a node certificate for
    /// the owner's key.
    #[error("the certificate is not a node certificate for the owner's key")]
    CertificateMismatch,
    /// Enrolled overlay: the certificate does not verify now.
    #[error("node certificate refused: {0}")]
    Certificate(CertError),
    /// Enrolled overlay: the record expires after the certificate.
    #[error("the descriptor expires at {expires}, after its node certificate ({not_after})")]
    OutlivesCertificate {
        /// The record's expiry.
        expires: u64,
        /// The certificate's.
        not_after: i64,
    },
    /// The current onion key has expired.
    #[error("the onion key expired at {expires}, now is {now}")]
    OnionKeyExpired {
        /// The key's expiry.
        expires: u64,
        /// The time of the check.
        now: u64,
    },
    /// The record outlives its current onion key.
    #[error("the record expires at {record_expires}, after its onion key ({onion_expires})")]
    OutlivesOnionKey {
        /// The record's expiry.
        record_expires: u64,
        /// The onion key's.
        onion_expires: u64,
    },
    /// The onion key claims a lifetime beyond
    /// [`RELAY_ONION_KEY_MAX_LIFETIME`].
    #[error("onion key expires at {expires}, too far after now ({now})")]
    OnionKeyLifetimeTooLong {
        /// The key's expiry.
        expires: u64,
        /// The time of the check.
        now: u64,
    },
    /// The record claims a lifetime beyond
    /// [`RELAY_DESCRIPTOR_MAX_LIFETIME`].
    #[error("descriptor expires at {expires}, too far after now ({now})")]
    LifetimeTooLong {
        /// The record's expiry.
        expires: u64,
        /// The time of the check.
        now: u64,
    },
}

impl RelayDescriptorError {
    /// Whether the refusal holds whatever the verifier's clock and trust
    /// anchors (see [`RecordError::is_provable_misbehaviour`]).
    pub fn is_provable_misbehaviour(&self) -> bool {
        !matches!(
            self,
            RelayDescriptorError::UnsupportedVersion(_)
                | RelayDescriptorError::Certificate(_)
                | RelayDescriptorError::OutlivesCertificate { .. }
                | RelayDescriptorError::OnionKeyExpired { .. }
                | RelayDescriptorError::OnionKeyLifetimeTooLong { .. }
                | RelayDescriptorError::LifetimeTooLong { .. }
        )
    }
}

impl From<RelayDescriptorError> for RecordError {
    fn from(e: RelayDescriptorError) -> Self {
        RecordError::BadRelayDescriptor(e)
    }
}

/// An X25519 onion key as a descriptor advertises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnionKeyInfo {
    /// The public key (`B` of the handshake).
    pub key: [u8; 32],
    /// End of its use, unix seconds: a client starts no handshake with it
    /// from then on.
    pub expires: u64,
}

impl OnionKeyInfo {
    /// Whether a client may start a handshake with it at `now`.
    pub fn is_live(&self, now: u64) -> bool {
        now < self.expires
    }
}

/// What a relay offers: the non-withdrawn part of a descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayOffer {
    /// Its overlay QUIC addresses, preferred first (1 to
    /// [`MAX_RELAY_ADDRESSES`], distinct).
    pub addresses: Vec<SocketAddr>,
    /// The current onion key.
    pub onion_key: OnionKeyInfo,
    /// The previous onion key, still accepted until its expiry (rotation
    /// overlap), if any.
    pub previous_onion_key: Option<OnionKeyInfo>,
    /// Circuits it offers to carry at once (self-declared; at most
    /// [`MAX_RELAY_CAPACITY`]).
    pub capacity: u32,
    /// Whether it relays circuits (flag bit 0).
    pub relays_circuits: bool,
    /// Its TURN (RFC 8656) address, if it serves TURN (flag bit 1).
    pub turn: Option<SocketAddr>,
}

impl RelayOffer {
    /// The onion keys usable at `now`, current first.
    pub fn live_onion_keys(&self, now: u64) -> impl Iterator<Item = &OnionKeyInfo> {
        std::iter::once(&self.onion_key)
            .chain(self.previous_onion_key.as_ref())
            .filter(move |k| k.is_live(now))
    }

    /// Every check of the offer that does not need the clock or the
    /// record: bounds, flags, addresses, onion keys.
    fn check_static(&self) -> Result<(), RelayDescriptorError> {
        let count = self.addresses.len();
        if count == 0 || count > MAX_RELAY_ADDRESSES {
            return Err(RelayDescriptorError::AddressCount {
                count: count as u64,
            });
        }
        for (i, a) in self.addresses.iter().enumerate() {
            check_address(a)?;
            if self.addresses.iter().take(i).any(|b| b == a) {
                return Err(RelayDescriptorError::BadAddress(*a));
            }
        }
        if let Some(t) = &self.turn {
            check_address(t)?;
        }
        if self.capacity > MAX_RELAY_CAPACITY {
            return Err(RelayDescriptorError::CapacityTooLarge(u64::from(
                self.capacity,
            )));
        }
        if !is_contributory(&self.onion_key.key) {
            return Err(RelayDescriptorError::LowOrderOnionKey);
        }
        if let Some(p) = &self.previous_onion_key {
            if !is_contributory(&p.key) {
                return Err(RelayDescriptorError::LowOrderOnionKey);
            }
            if p.key == self.onion_key.key || p.expires > self.onion_key.expires {
                return Err(RelayDescriptorError::BadPreviousOnionKey);
            }
        }
        Ok(())
    }

    fn flags(&self) -> u64 {
        let mut f = 0;
        if self.relays_circuits {
            f |= FLAG_RELAYS_CIRCUITS;
        }
        if self.turn.is_some() {
            f |= FLAG_SERVES_TURN;
        }
        f
    }
}

/// Whether `key` is not a low-order point: a fixed scalar's exchange with
/// it is contributory (what the handshake itself requires).
fn is_contributory(key: &[u8; 32]) -> bool {
    let probe = x25519_dalek::StaticSecret::from([0x5a; 32]);
    probe
        .diffie_hellman(&x25519_dalek::PublicKey::from(*key))
        .was_contributory()
}

fn check_address(a: &SocketAddr) -> Result<(), RelayDescriptorError> {
    let ip = a.ip();
    let mapped = matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some());
    if ip.is_unspecified() || ip.is_multicast() || a.port() == 0 || mapped {
        return Err(RelayDescriptorError::BadAddress(*a));
    }
    if let IpAddr::V4(v4) = ip {
        if v4.is_broadcast() {
            return Err(RelayDescriptorError::BadAddress(*a));
        }
    }
    Ok(())
}

/// The value of a `RelayDescriptor` record (see the module docs for the
/// schema): the relay's node id, its node certificate in an enrolled
/// overlay, and its offer, or none if withdrawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayDescriptor {
    node_id: NodeId,
    node_cert: Option<Vec<u8>>,
    offer: Option<RelayOffer>,
}

impl RelayDescriptor {
    /// The descriptor of relay `node_id` offering `offer`, with its node
    /// certificate (DER) in an enrolled overlay. Checks the offer's
    /// bounds (not the clock, the owner or the key: [`Record::verify`]
    /// does).
    pub fn new(
        node_id: NodeId,
        node_cert: Option<Vec<u8>>,
        offer: RelayOffer,
    ) -> Result<Self, RelayDescriptorError> {
        offer.check_static()?;
        Ok(Self {
            node_id,
            node_cert,
            offer: Some(offer),
        })
    }

    /// The withdrawn descriptor of relay `node_id`: published with a
    /// higher `seq` to leave the directory.
    pub fn withdrawn(node_id: NodeId, node_cert: Option<Vec<u8>>) -> Self {
        Self {
            node_id,
            node_cert,
            offer: None,
        }
    }

    /// The relay's node id.
    pub fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    /// The relay's node certificate (DER), in an enrolled overlay.
    pub fn node_cert(&self) -> Option<&[u8]> {
        self.node_cert.as_deref()
    }

    /// What the relay offers; `None` if withdrawn.
    pub fn offer(&self) -> Option<&RelayOffer> {
        self.offer.as_ref()
    }

    /// Whether this is a withdrawn descriptor.
    pub fn is_withdrawn(&self) -> bool {
        self.offer.is_none()
    }

    /// The canonical CBOR encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = encoder();
        let _ = self.write(&mut e);
        e.into_writer()
    }

    fn write(
        &self,
        e: &mut minicbor::Encoder<Vec<u8>>,
    ) -> Result<(), minicbor::encode::Error<std::convert::Infallible>> {
        e.array(DESCRIPTOR_ARITY)?
            .u64(RELAY_DESCRIPTOR_VERSION)?
            .bytes(self.node_id.as_bytes())?;
        match &self.node_cert {
            Some(der) => e.bytes(der)?,
            None => e.null()?,
        };
        let Some(offer) = &self.offer else {
            e.null()?;
            return Ok(());
        };
        e.array(OFFER_ARITY)?.array(offer.addresses.len() as u64)?;
        for a in &offer.addresses {
            write_address(e, a)?;
        }
        write_onion(e, &offer.onion_key)?;
        match &offer.previous_onion_key {
            Some(p) => write_onion(e, p)?,
            None => {
                e.null()?;
            }
        }
        e.u64(u64::from(offer.capacity))?.u64(offer.flags())?;
        match &offer.turn {
            Some(t) => write_address(e, t)?,
            None => {
                e.null()?;
            }
        }
        Ok(())
    }

    /// Decodes the canonical CBOR encoding and checks its structure and
    /// bounds (addresses, capacity, flags, onion keys not low-order, the
    /// previous key not outliving the current). The owner, key, times and
    /// certificate are checked by [`Record::verify`].
    pub fn decode(input: &[u8]) -> Result<Self, RelayDescriptorError> {
        let m = RelayDescriptorError::Malformed;
        let mut r = Reader::new(input);
        let arity = r.array().map_err(m)?;
        let version = r.u64().map_err(m)?;
        if version != RELAY_DESCRIPTOR_VERSION {
            return Err(RelayDescriptorError::UnsupportedVersion(version));
        }
        if arity != DESCRIPTOR_ARITY {
            return Err(m(wrong_arity(DESCRIPTOR_ARITY, arity)));
        }
        let node_id = NodeId::from_bytes(r.bytes_exact("relay.node_id").map_err(m)?);
        let node_cert = if r.null().map_err(m)? {
            None
        } else {
            Some(r.bytes().map_err(m)?.to_vec())
        };
        let offer = if r.null().map_err(m)? {
            None
        } else {
            Some(decode_offer(&mut r)?)
        };
        r.finish().map_err(m)?;
        if let Some(offer) = &offer {
            offer.check_static()?;
        }
        let desc = Self {
            node_id,
            node_cert,
            offer,
        };
        require_canonical(input, &desc.encode()).map_err(m)?;
        Ok(desc)
    }

    /// `owner` (the relay's node key) signs this descriptor as a
    /// `RelayDescriptor` record under directory key `key`. Fails if the
    /// encoding exceeds [`MAX_RECORD_VALUE_LEN`].
    pub fn sign(
        &self,
        owner: &SecretKey,
        key: Key,
        seq: u64,
        expires: u64,
    ) -> Result<Record, RecordError> {
        let value = self.encode();
        if value.len() > MAX_RECORD_VALUE_LEN {
            return Err(RecordError::ValueTooLarge { len: value.len() });
        }
        Ok(Record::sign(
            owner,
            RecordKind::RelayDescriptor,
            key,
            seq,
            expires,
            value,
        ))
    }
}

fn wrong_arity(expected: u64, found: u64) -> WireError {
    WireError::WrongArity {
        message_type: RecordKind::RelayDescriptor.to_u64(),
        expected,
        found,
    }
}

fn write_address(
    e: &mut minicbor::Encoder<Vec<u8>>,
    a: &SocketAddr,
) -> Result<(), minicbor::encode::Error<std::convert::Infallible>> {
    e.array(2)?;
    match a.ip() {
        IpAddr::V4(v4) => e.bytes(&v4.octets())?,
        IpAddr::V6(v6) => e.bytes(&v6.octets())?,
    };
    e.u16(a.port())?;
    Ok(())
}

fn write_onion(
    e: &mut minicbor::Encoder<Vec<u8>>,
    k: &OnionKeyInfo,
) -> Result<(), minicbor::encode::Error<std::convert::Infallible>> {
    e.array(2)?.bytes(&k.key)?.u64(k.expires)?;
    Ok(())
}

fn decode_address(r: &mut Reader<'_>) -> Result<SocketAddr, RelayDescriptorError> {
    let m = RelayDescriptorError::Malformed;
    let arity = r.array().map_err(m)?;
    if arity != 2 {
        return Err(m(wrong_arity(2, arity)));
    }
    let ip = r.bytes().map_err(m)?;
    let ip = if let Ok(o) = <[u8; 4]>::try_from(ip) {
        IpAddr::V4(Ipv4Addr::from(o))
    } else if let Ok(o) = <[u8; 16]>::try_from(ip) {
        IpAddr::V6(Ipv6Addr::from(o))
    } else {
        return Err(m(WireError::FieldOutOfRange("relay.address.ip")));
    };
    let port = r.u16("relay.address.port").map_err(m)?;
    Ok(SocketAddr::new(ip, port))
}

fn decode_onion(r: &mut Reader<'_>) -> Result<OnionKeyInfo, RelayDescriptorError> {
    let m = RelayDescriptorError::Malformed;
    let arity = r.array().map_err(m)?;
    if arity != 2 {
        return Err(m(wrong_arity(2, arity)));
    }
    let key = r.bytes_exact("relay.onion_key").map_err(m)?;
    let expires = r.u64().map_err(m)?;
    Ok(OnionKeyInfo { key, expires })
}

fn decode_offer(r: &mut Reader<'_>) -> Result<RelayOffer, RelayDescriptorError> {
    let m = RelayDescriptorError::Malformed;
    let arity = r.array().map_err(m)?;
    if arity != OFFER_ARITY {
        return Err(m(wrong_arity(OFFER_ARITY, arity)));
    }
    let count = r.array().map_err(m)?;
    if count == 0 || count > MAX_RELAY_ADDRESSES as u64 {
        return Err(RelayDescriptorError::AddressCount { count });
    }
    let mut addresses = Vec::new();
    for _ in 0..count {
        addresses.push(decode_address(r)?);
    }
    let onion_key = decode_onion(r)?;
    let previous_onion_key = if r.null().map_err(m)? {
        None
    } else {
        Some(decode_onion(r)?)
    };
    let capacity = r.u64().map_err(m)?;
    let capacity = u32::try_from(capacity)
        .ok()
        .filter(|c| *c <= MAX_RELAY_CAPACITY)
        .ok_or(RelayDescriptorError::CapacityTooLarge(capacity))?;
    let flags = r.u64().map_err(m)?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(RelayDescriptorError::UnknownFlags(flags));
    }
    let turn = if r.null().map_err(m)? {
        None
    } else {
        Some(decode_address(r)?)
    };
    if turn.is_some() != (flags & FLAG_SERVES_TURN != 0) {
        return Err(RelayDescriptorError::TurnMismatch);
    }
    Ok(RelayOffer {
        addresses,
        onion_key,
        previous_onion_key,
        capacity,
        relays_circuits: flags & FLAG_RELAYS_CIRCUITS != 0,
        turn,
    })
}

/// The records a relay publishes at `now`: its descriptor offering
/// `offer`, signed by its node key `owner` with sequence number `seq`,
/// once under each of its directory keys ([`relay_publication_keys`]).
/// Each expires at `now +` [`RELAY_DESCRIPTOR_MAX_LIFETIME`], or when the
/// current onion key does if sooner (rotate the keys first,
/// `relay::OnionKeys::rotate`, so that expiries never go backwards: see
/// the store's "No rollback" rule). `node_cert` is the node's certificate
/// (DER) in an enrolled overlay, `None` in a self-certifying one. Each
/// record is verified before it is returned.
pub fn sign_relay_descriptors(
    owner: &SecretKey,
    policy: &RecordPolicy,
    node_cert: Option<Vec<u8>>,
    offer: RelayOffer,
    seq: u64,
    now: u64,
) -> Result<Vec<Record>, RecordError> {
    let expires = now
        .saturating_add(RELAY_DESCRIPTOR_MAX_LIFETIME.as_secs())
        .min(offer.onion_key.expires);
    let node_id = owner.public().node_id();
    let desc = RelayDescriptor::new(node_id, node_cert, offer)?;
    sign_under_own_keys(owner, policy, &desc, seq, expires, now)
}

/// The records that withdraw a relay's descriptor at `now`: a withdrawn
/// descriptor with sequence number `seq` (higher than any published)
/// under each of its directory keys, expiring at `now +`
/// [`RELAY_DESCRIPTOR_MAX_LIFETIME`] (no earlier than any descriptor it
/// replaces, as the store's "No rollback" rule asks).
pub fn withdraw_relay_descriptors(
    owner: &SecretKey,
    policy: &RecordPolicy,
    node_cert: Option<Vec<u8>>,
    seq: u64,
    now: u64,
) -> Result<Vec<Record>, RecordError> {
    let expires = now.saturating_add(RELAY_DESCRIPTOR_MAX_LIFETIME.as_secs());
    let desc = RelayDescriptor::withdrawn(owner.public().node_id(), node_cert);
    sign_under_own_keys(owner, policy, &desc, seq, expires, now)
}

fn sign_under_own_keys(
    owner: &SecretKey,
    policy: &RecordPolicy,
    desc: &RelayDescriptor,
    seq: u64,
    expires: u64,
    now: u64,
) -> Result<Vec<Record>, RecordError> {
    let mut out = Vec::with_capacity(RELAY_KEYS_PER_RELAY);
    for key in relay_publication_keys(&policy.overlay_name, desc.node_id()) {
        let record = desc.sign(owner, key, seq, expires)?;
        record.verify(policy, now)?;
        out.push(record);
    }
    Ok(out)
}

/// The rule of kind 3, for a record whose signature verified at `now`:
/// the value is a descriptor; the owner key derives its node id, which
/// solves the overlay's puzzle; the key is one of the relay's own
/// directory keys; the node certificate is absent (self-certifying) or a
/// valid node certificate of the owner (enrolled); the record lives at
/// most [`RELAY_DESCRIPTOR_MAX_LIFETIME`]; and for an offer, the current
/// onion key is live, outlives the record and lives at most
/// [`RELAY_ONION_KEY_MAX_LIFETIME`].
pub(super) fn check(
    record: &Record,
    owner: &PublicKey,
    policy: &RecordPolicy,
    now: u64,
) -> Result<(), RecordError> {
    let desc = RelayDescriptor::decode(&record.value)?;
    if owner.node_id() != desc.node_id {
        return Err(RelayDescriptorError::NotTheRelaysKey(desc.node_id).into());
    }
    if !desc.node_id.meets_difficulty(policy.node_difficulty) {
        return Err(RelayDescriptorError::PuzzleNotSolved {
            required: policy.node_difficulty,
            actual: desc.node_id.puzzle_bits(),
        }
        .into());
    }
    let index =
        relay_directory_index(&policy.overlay_name, &record.key).ok_or(RecordError::WrongKey)?;
    let own = relay_directory_indices(&desc.node_id);
    if !own.contains(&index) {
        return Err(RelayDescriptorError::NotRelaysDirectoryKey { index, own }.into());
    }
    match (&policy.enrolled, &desc.node_cert) {
        (None, None) => {}
        (None, Some(_)) => return Err(RelayDescriptorError::CertificateNotAllowed.into()),
        (Some(_), None) => return Err(RelayDescriptorError::CertificateRequired.into()),
        (Some(certificates), Some(der)) => {
            let cert = certificates
                .verify(der, i64::try_from(now).unwrap_or(i64::MAX))
                .map_err(RelayDescriptorError::Certificate)?;
            if cert.kind != IdKind::Node || cert.public_key != *owner {
                return Err(RelayDescriptorError::CertificateMismatch.into());
            }
            if i128::from(record.expires) > i128::from(cert.not_after) {
                return Err(RelayDescriptorError::OutlivesCertificate {
                    expires: record.expires,
                    not_after: cert.not_after,
                }
                .into());
            }
        }
    }
    if record.expires.saturating_sub(now) > RELAY_DESCRIPTOR_MAX_LIFETIME.as_secs() {
        return Err(RelayDescriptorError::LifetimeTooLong {
            expires: record.expires,
            now,
        }
        .into());
    }
    if let Some(offer) = &desc.offer {
        let onion = offer.onion_key;
        if now >= onion.expires {
            return Err(RelayDescriptorError::OnionKeyExpired {
                expires: onion.expires,
                now,
            }
            .into());
        }
        if record.expires > onion.expires {
            return Err(RelayDescriptorError::OutlivesOnionKey {
                record_expires: record.expires,
                onion_expires: onion.expires,
            }
            .into());
        }
        if onion.expires - now > RELAY_ONION_KEY_MAX_LIFETIME.as_secs() {
            return Err(RelayDescriptorError::OnionKeyLifetimeTooLong {
                expires: onion.expires,
                now,
            }
            .into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
