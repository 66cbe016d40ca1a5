//! The checked record a node keeps: the record, its encoding, its owner's
//! user id and its parsed value.

use super::{OwnerValue, Record, RecordError, RecordKind, Registration};
use crate::identity::{PublicKey, UserId};
use crate::overlay::key::Key;

/// The parsed value of a verified record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordContent {
    /// A SIP registration.
    Registration(Registration),
    /// An owner value.
    OwnerValue(OwnerValue),
}

/// A record whose signature and rules were checked by [`Record::verify`],
/// the only constructor. It keeps the exact encoded bytes, which are what
/// was signed (decoding is canonical), so they can be persisted and
/// forwarded unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRecord {
    record: Record,
    encoded: Vec<u8>,
    owner_id: UserId,
    content: RecordContent,
}

impl VerifiedRecord {
    /// Keeps `record`, which has passed every check, with its canonical
    /// encoding `encoded` and its parsed value.
    pub(super) fn new(record: &Record, encoded: Vec<u8>) -> Result<Self, RecordError> {
        let owner_id = PublicKey::from_bytes(&record.owner)
            .map_err(|_| RecordError::InvalidOwnerKey)?
            .user_id();
        let content = match record.kind {
            RecordKind::OwnerValue => RecordContent::OwnerValue(
                OwnerValue::decode(&record.value).map_err(RecordError::MalformedValue)?,
            ),
            RecordKind::SipRegistration => {
                RecordContent::Registration(Registration::decode(&record.value)?)
            }
        };
        Ok(Self {
            record: record.clone(),
            encoded,
            owner_id,
            content,
        })
    }

    /// The record.
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// The canonical encoding (exactly the bytes received, for a decoded
    /// record).
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    /// The kind.
    pub fn kind(&self) -> RecordKind {
        self.record.kind
    }

    /// The overlay key.
    pub fn key(&self) -> &Key {
        &self.record.key
    }

    /// The owner's public key.
    pub fn owner(&self) -> &[u8; 32] {
        &self.record.owner
    }

    /// The owner's user id.
    pub fn owner_id(&self) -> &UserId {
        &self.owner_id
    }

    /// The sequence number.
    pub fn seq(&self) -> u64 {
        self.record.seq
    }

    /// The expiry, unix seconds.
    pub fn expires(&self) -> u64 {
        self.record.expires
    }

    /// The raw value.
    pub fn value(&self) -> &[u8] {
        &self.record.value
    }

    /// The parsed value.
    pub fn content(&self) -> &RecordContent {
        &self.content
    }

    /// The registration, for a `SipRegistration` record.
    pub fn registration(&self) -> Option<&Registration> {
        match &self.content {
            RecordContent::Registration(r) => Some(r),
            RecordContent::OwnerValue(_) => None,
        }
    }

    /// The owner value, for an `OwnerValue` record.
    pub fn owner_value(&self) -> Option<&OwnerValue> {
        match &self.content {
            RecordContent::OwnerValue(v) => Some(v),
            RecordContent::Registration(_) => None,
        }
    }

    /// Whether the record has expired at `now`.
    pub fn is_expired(&self, now: u64) -> bool {
        now >= self.record.expires
    }
}
