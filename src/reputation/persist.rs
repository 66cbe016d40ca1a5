//! The persisted reputation table: canonical CBOR under the crate's strict
//! profile ([`crate::wire::cbor`]), read back strictly and within bounds.
//!
//! The schema is in the [module docs](super#persistence).
//!
//! Decoding checks the input length before anything else and the peer
//! count against [`REPUTATION_MAX_PEERS`] before reading a single peer;
//! nothing is allocated from a length field.

use super::entry::{Counts, Entry};
use super::{Policy, Reputation};
use crate::identity::NodeId;
use crate::limits::{
    REPUTATION_MAX_BAN_STRIKES, REPUTATION_MAX_ENCODED_LEN, REPUTATION_MAX_PEERS,
    REPUTATION_MISBEHAVIOUR_CAP, REPUTATION_RELIABILITY_FLOOR, REPUTATION_SCORE_MAX,
};
use crate::wire::cbor::{encoder, require_canonical, Reader};
use crate::wire::WireError;
use std::collections::BTreeMap;

/// The format version written, and the only one read.
const VERSION: u64 = 1;
const TABLE_ARITY: u64 = 2;
const PEER_ARITY: u64 = 17;

/// Scores are persisted in thousandths of a point.
const MILLI: f64 = 1000.0;

/// Why a persisted reputation table was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input is longer than any table this node writes.
    #[error("reputation table of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The input's length.
        len: usize,
        /// [`REPUTATION_MAX_ENCODED_LEN`].
        max: usize,
    },
    /// A format version this implementation does not read.
    #[error("unsupported reputation table version {0}")]
    UnsupportedVersion(u64),
    /// An array with the wrong number of fields.
    #[error("{what} has {found} fields, expected {expected}")]
    WrongArity {
        /// Which array.
        what: &'static str,
        /// The fields it must have.
        expected: u64,
        /// The fields present.
        found: u64,
    },
    /// More peers than a table may hold.
    #[error("{count} peers exceed the maximum of {max}")]
    TooManyPeers {
        /// The announced count.
        count: u64,
        /// [`REPUTATION_MAX_PEERS`].
        max: usize,
    },
    /// Peers out of strictly increasing id order (or repeated).
    #[error("peers out of order or repeated")]
    Unordered,
    /// A field outside its range, or fields that contradict each other.
    #[error("field {0} out of range")]
    FieldOutOfRange(&'static str),
    /// Not CBOR of the expected shape: truncated, malformed, indefinite,
    /// non-canonical, or followed by trailing bytes.
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// Thousandths of `value` (finite and non-negative by construction).
fn to_milli(value: f64) -> u64 {
    // The float-to-int cast saturates; values are bounded far below.
    (value * MILLI).round() as u64
}

/// A milli-point field, checked against `max` points.
fn milli_field(r: &mut Reader<'_>, max: f64, field: &'static str) -> Result<f64, DecodeError> {
    let v = r.u64()?;
    if v > to_milli(max) {
        return Err(DecodeError::FieldOutOfRange(field));
    }
    // Exact: v is at most a few hundred thousand.
    Ok(v as f64 / MILLI)
}

fn u32_field(r: &mut Reader<'_>, field: &'static str) -> Result<u32, DecodeError> {
    u32::try_from(r.u64()?).map_err(|_| DecodeError::FieldOutOfRange(field))
}

impl Reputation {
    /// The table in its persisted form (schema in the [module
    /// docs](crate::reputation#persistence)): canonical CBOR, peers in id
    /// order, times in unix milliseconds, scores as of each peer's last
    /// update. Deterministic: the same table gives the same bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = encoder();
        // The peer count is bounded by the policy's cap, far below u64.
        let count = self.peers.len() as u64;
        let _ = e
            .array(TABLE_ARITY)
            .and_then(|e| e.u64(VERSION)?.array(count));
        for (id, p) in &self.peers {
            let (credit, debit) = if p.reliability >= 0.0 {
                (p.reliability, 0.0)
            } else {
                (0.0, -p.reliability)
            };
            let c = &p.counts;
            let _ = e.array(PEER_ARITY).and_then(|e| {
                e.bytes(id.as_bytes())?
                    .u64(p.first_seen_ms)?
                    .u64(p.last_seen_ms)?
                    .u64(p.updated_ms)?
                    .u64(to_milli(credit))?
                    .u64(to_milli(debit))?
                    .u64(to_milli(p.load))?
                    .u32(c.answered)?
                    .u32(c.verified)?
                    .u32(c.unverifiable)?
                    .u32(c.unresponsive)?
                    .u32(c.misbehaviour)?
                    .u32(c.violations)?
                    .u32(c.rate_violations)?
                    .u8(p.strikes)?
                    .u64(p.last_strike_ms)?
                    .u64(p.banned_until_ms)
            });
        }
        e.into_writer()
    }

    /// Loads a table written by [`Reputation::encode`], at `now_ms` (unix
    /// ms), with the default [`Policy`]: bans that ended by `now_ms` are
    /// dropped (their strikes stay, so escalation survives a restart) and
    /// bans are cut to [`crate::limits::REPUTATION_BAN_MAX`] from `now_ms`
    /// (see [`Reputation::expire`]). Strict: see
    /// [`Reputation::decode_verbatim`].
    pub fn decode(input: &[u8], now_ms: u64) -> Result<Self, DecodeError> {
        let mut table = Self::decode_verbatim(input)?;
        table.expire(now_ms);
        Ok(table)
    }

    /// Decodes exactly the persisted state, expired bans included, so that
    /// `decode_verbatim(x)?.encode() == x` for every accepted `x`. Refuses
    /// input longer than [`REPUTATION_MAX_ENCODED_LEN`], more than
    /// [`REPUTATION_MAX_PEERS`] peers, another version, wrong arities,
    /// peers out of id order, out-of-range or contradictory fields,
    /// truncated, non-canonical or trailing bytes. Never panics.
    pub fn decode_verbatim(input: &[u8]) -> Result<Self, DecodeError> {
        if input.len() > REPUTATION_MAX_ENCODED_LEN {
            return Err(DecodeError::TooLarge {
                len: input.len(),
                max: REPUTATION_MAX_ENCODED_LEN,
            });
        }
        let mut r = Reader::new(input);
        let arity = r.array()?;
        let version = r.u64()?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        if arity != TABLE_ARITY {
            return Err(DecodeError::WrongArity {
                what: "table",
                expected: TABLE_ARITY,
                found: arity,
            });
        }
        let count = r.array()?;
        if count > REPUTATION_MAX_PEERS as u64 {
            return Err(DecodeError::TooManyPeers {
                count,
                max: REPUTATION_MAX_PEERS,
            });
        }
        let mut peers = BTreeMap::new();
        let mut previous: Option<NodeId> = None;
        for _ in 0..count {
            let (id, entry) = decode_peer(&mut r)?;
            if previous.is_some_and(|p| p >= id) {
                return Err(DecodeError::Unordered);
            }
            previous = Some(id);
            peers.insert(id, entry);
        }
        r.finish()?;
        let table = Self {
            peers,
            policy: Policy::default(),
        };
        require_canonical(input, &table.encode())?;
        Ok(table)
    }
}

fn decode_peer(r: &mut Reader<'_>) -> Result<(NodeId, Entry), DecodeError> {
    let arity = r.array()?;
    if arity != PEER_ARITY {
        return Err(DecodeError::WrongArity {
            what: "peer",
            expected: PEER_ARITY,
            found: arity,
        });
    }
    let id = NodeId::from_bytes(r.bytes_exact("peer.id")?);
    let first_seen_ms = r.u64()?;
    let last_seen_ms = r.u64()?;
    let updated_ms = r.u64()?;
    let credit = milli_field(r, REPUTATION_SCORE_MAX, "peer.credit")?;
    let debit = milli_field(r, -REPUTATION_RELIABILITY_FLOOR, "peer.debit")?;
    let load = milli_field(r, REPUTATION_MISBEHAVIOUR_CAP, "peer.load")?;
    let counts = Counts {
        answered: u32_field(r, "peer.answered")?,
        verified: u32_field(r, "peer.verified")?,
        unverifiable: u32_field(r, "peer.unverifiable")?,
        unresponsive: u32_field(r, "peer.unresponsive")?,
        misbehaviour: u32_field(r, "peer.misbehaviour")?,
        violations: u32_field(r, "peer.violations")?,
        rate_violations: u32_field(r, "peer.rate_violations")?,
    };
    let strikes = u8::try_from(r.u64()?)
        .ok()
        .filter(|s| *s <= REPUTATION_MAX_BAN_STRIKES)
        .ok_or(DecodeError::FieldOutOfRange("peer.strikes"))?;
    let last_strike_ms = r.u64()?;
    let banned_until_ms = r.u64()?;
    // Invariants the table keeps; a file that breaks them was not written
    // by it.
    if credit > 0.0 && debit > 0.0 {
        return Err(DecodeError::FieldOutOfRange("peer.debit"));
    }
    if last_seen_ms < first_seen_ms {
        return Err(DecodeError::FieldOutOfRange("peer.last_seen_ms"));
    }
    if banned_until_ms != 0 && strikes == 0 {
        return Err(DecodeError::FieldOutOfRange("peer.strikes"));
    }
    let entry = Entry {
        first_seen_ms,
        last_seen_ms,
        updated_ms,
        reliability: credit - debit,
        load,
        counts,
        strikes,
        last_strike_ms,
        banned_until_ms,
    };
    Ok((id, entry))
}
