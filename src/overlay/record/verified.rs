//! The checked record a node keeps: one copy of its encoding and the few
//! fixed fields every store decision needs; the value is parsed from the
//! encoding only when asked for.
//!
//! A record store holds many of these (a node holds up to
//! [`crate::limits::DEFAULT_STORE_MAX_BYTES`] of records), so a stored
//! record costs its encoding plus a small fixed part, not the encoding,
//! a decoded [`Record`] (a second copy of the value) and the parsed value
//! (a third) as it once did. Parsing again on demand is cheap next to what
//! asks for it (an admin lookup, a SIP lookup), and cannot fail: the
//! encoding is the one [`Record::verify`] checked.

use super::{
    MailboxChunk, MailboxValue, OwnerValue, Profile, Record, RecordError, RecordKind, Registration,
    RelayDescriptor,
};
use crate::identity::{UserId, USER_ID_DOMAIN};
use crate::limits::MAX_RECORD_VALUE_LEN;
use crate::overlay::key::Key;
use crate::wire::WireError;
use sha2::{Digest, Sha256};

/// Length of the encoded signature field that ends every record
/// encoding: the byte-string head `58 40` and 64 bytes.
const SIGNATURE_FIELD_LEN: usize = 2 + 64;

/// Where the owner's key lies in a canonical record encoding: after the
/// array head, version and kind (one byte each: both are below 24), the
/// key field (`58 20` and 32 bytes) and the owner's byte-string head.
const OWNER_AT: usize = 3 + 2 + 32 + 2;

/// The positions of a value in an encoding are kept in 16 bits: a record
/// (its value at most [`MAX_RECORD_VALUE_LEN`], its other fields about
/// 160 bytes) is far shorter than 64 KiB.
const _: () = assert!(MAX_RECORD_VALUE_LEN + 1024 <= u16::MAX as usize);

/// The parsed value of a verified record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordContent {
    /// A SIP registration.
    Registration(Registration),
    /// An owner value.
    OwnerValue(OwnerValue),
    /// A relay descriptor.
    RelayDescriptor(RelayDescriptor),
    /// A user's profile.
    Profile(Profile),
    /// A private record's sealed box (only its owner opens it).
    Private(Vec<u8>),
    /// A mailbox's deposit or its owner's state.
    Mailbox(MailboxValue),
    /// A chunk of a message.
    MailboxChunk(MailboxChunk),
}

/// A record whose signature and rules were checked by [`Record::verify`],
/// the only constructor. It keeps the exact encoded bytes, which are what
/// was signed (decoding is canonical), so they can be persisted and
/// forwarded unchanged, and the fixed fields a store decides with (kind,
/// key, sequence number, expiry). The owner's key and the value are slices
/// of the encoding; the value's parsed form
/// ([`VerifiedRecord::registration`], [`VerifiedRecord::owner_value`]) is
/// decoded from it on each call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRecord {
    encoded: Box<[u8]>,
    key: Key,
    seq: u64,
    expires: u64,
    /// Where the value starts in `encoded`.
    value_start: u16,
    /// The value's length.
    value_len: u16,
    kind: RecordKind,
}

impl VerifiedRecord {
    /// Keeps `encoded`, the canonical encoding of `record`, which has
    /// passed every check. Fails only if `encoded` is not that encoding
    /// (the owner or the value is not where the canonical form puts it).
    pub(super) fn new(record: &Record, encoded: Vec<u8>) -> Result<Self, RecordError> {
        if encoded.get(OWNER_AT..OWNER_AT + 32) != Some(record.owner.as_slice()) {
            return Err(WireError::NonCanonical.into());
        }
        let value_len = record.value.len();
        let value_start = encoded
            .len()
            .checked_sub(SIGNATURE_FIELD_LEN)
            .and_then(|end| end.checked_sub(value_len))
            .ok_or(WireError::NonCanonical)?;
        let value = value_start
            .checked_add(value_len)
            .and_then(|end| encoded.get(value_start..end));
        if value != Some(record.value.as_slice()) {
            return Err(WireError::NonCanonical.into());
        }
        let narrow = |n: usize| u16::try_from(n).map_err(|_| WireError::NonCanonical);
        Ok(Self {
            value_start: narrow(value_start)?,
            value_len: narrow(value_len)?,
            encoded: encoded.into_boxed_slice(),
            key: record.key,
            seq: record.seq,
            expires: record.expires,
            kind: record.kind,
        })
    }

    /// The record, decoded again from the encoding (which cannot fail for
    /// a verified record).
    pub fn record(&self) -> Result<Record, RecordError> {
        Record::decode(&self.encoded)
    }

    /// The canonical encoding (exactly the bytes received, for a decoded
    /// record).
    pub fn encoded(&self) -> &[u8] {
        &self.encoded
    }

    /// The kind.
    pub fn kind(&self) -> RecordKind {
        self.kind
    }

    /// The overlay key.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The owner's public key (a slice of the encoding).
    pub fn owner(&self) -> &[u8; 32] {
        const NONE: &[u8; 32] = &[0; 32];
        // Checked in `new`; never the fallback.
        self.encoded
            .get(OWNER_AT..OWNER_AT + 32)
            .and_then(|owner| <&[u8; 32]>::try_from(owner).ok())
            .unwrap_or(NONE)
    }

    /// The owner's user id (`SHA-256("p2psip-user-id-v1" ‖ owner)`,
    /// computed on each call).
    pub fn owner_id(&self) -> UserId {
        let mut h = Sha256::new();
        h.update(USER_ID_DOMAIN);
        h.update(self.owner());
        UserId::from_bytes(h.finalize().into())
    }

    /// The sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The expiry, unix seconds.
    pub fn expires(&self) -> u64 {
        self.expires
    }

    /// The raw value: a slice of the encoding.
    pub fn value(&self) -> &[u8] {
        let start = self.value_start as usize;
        let end = start.saturating_add(self.value_len as usize);
        // Checked in `new`; never empty by accident.
        self.encoded.get(start..end).unwrap_or_default()
    }

    /// The parsed value, decoded from the encoding (`None` only if it no
    /// longer decodes, which a verified record's value always does).
    pub fn content(&self) -> Option<RecordContent> {
        match self.kind {
            RecordKind::SipRegistration => self.registration().map(RecordContent::Registration),
            RecordKind::OwnerValue => self.owner_value().map(RecordContent::OwnerValue),
            RecordKind::RelayDescriptor => {
                self.relay_descriptor().map(RecordContent::RelayDescriptor)
            }
            RecordKind::Profile => self.profile().map(RecordContent::Profile),
            RecordKind::Private => super::private::sealed_box(self.value())
                .ok()
                .map(|b| RecordContent::Private(b.to_vec())),
            RecordKind::Mailbox => MailboxValue::decode(self.value())
                .ok()
                .map(RecordContent::Mailbox),
            RecordKind::MailboxChunk => MailboxChunk::decode(self.value())
                .ok()
                .map(RecordContent::MailboxChunk),
        }
    }

    /// The registration, for a `SipRegistration` record, decoded from the
    /// encoding.
    pub fn registration(&self) -> Option<Registration> {
        match self.kind {
            RecordKind::SipRegistration => Registration::decode(self.value()).ok(),
            _ => None,
        }
    }

    /// The owner value, for an `OwnerValue` record, decoded from the
    /// encoding.
    pub fn owner_value(&self) -> Option<OwnerValue> {
        match self.kind {
            RecordKind::OwnerValue => OwnerValue::decode(self.value()).ok(),
            _ => None,
        }
    }

    /// The relay descriptor, for a `RelayDescriptor` record, decoded from
    /// the encoding.
    pub fn relay_descriptor(&self) -> Option<RelayDescriptor> {
        match self.kind {
            RecordKind::RelayDescriptor => RelayDescriptor::decode(self.value()).ok(),
            _ => None,
        }
    }

    /// The profile, for a `Profile` record, decoded from the encoding.
    pub fn profile(&self) -> Option<Profile> {
        match self.kind {
            RecordKind::Profile => Profile::decode(self.value()).ok(),
            _ => None,
        }
    }

    /// Whether the record has expired at `now`.
    pub fn is_expired(&self, now: u64) -> bool {
        now >= self.expires
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::Binding;
    use crate::identity::SecretKey;
    use crate::overlay::record::{RecordPolicy, RegistrationEntry};

    const NOW: u64 = 1_750_000_000;
    const HOUR: u64 = 3600;

    fn key(seed: u8) -> SecretKey {
        SecretKey::from_seed(&[seed; 32])
    }

    fn open() -> RecordPolicy {
        RecordPolicy::self_certifying("p2psip")
    }

    /// What `verify` used to keep, parsed eagerly at verification: the
    /// lazily parsed values must equal it.
    fn eager(record: &Record) -> (Record, Option<RecordContent>) {
        let content = match record.kind {
            RecordKind::SipRegistration => Registration::decode(&record.value)
                .ok()
                .map(RecordContent::Registration),
            RecordKind::OwnerValue => OwnerValue::decode(&record.value)
                .ok()
                .map(RecordContent::OwnerValue),
            RecordKind::RelayDescriptor => RelayDescriptor::decode(&record.value)
                .ok()
                .map(RecordContent::RelayDescriptor),
            RecordKind::Profile => Profile::decode(&record.value)
                .ok()
                .map(RecordContent::Profile),
            RecordKind::Private => super::super::private::sealed_box(&record.value)
                .ok()
                .map(|b| RecordContent::Private(b.to_vec())),
            RecordKind::Mailbox => MailboxValue::decode(&record.value)
                .ok()
                .map(RecordContent::Mailbox),
            RecordKind::MailboxChunk => MailboxChunk::decode(&record.value)
                .ok()
                .map(RecordContent::MailboxChunk),
        };
        (record.clone(), content)
    }

    #[test]
    fn lazily_parsed_values_equal_eagerly_parsed_ones() {
        let alice = key(1);
        let mut reg = Registration::self_certifying(&alice.public().user_id(), "p2psip").unwrap();
        for n in [20u8, 21, 22] {
            let node = key(n).public().node_id();
            let binding = Binding::sign(&alice, node, NOW - HOUR, NOW + 10 * HOUR);
            let contacts = vec![format!("sip:dev{n}@192.0.2.{n}:5060"); usize::from(n % 3) + 1];
            reg.upsert(RegistrationEntry::new(binding, contacts, NOW + HOUR))
                .unwrap();
        }
        let records = [
            reg.sign(&alice, 3, NOW + HOUR).unwrap(),
            OwnerValue::new("config", b"{\"ring\":3}".to_vec())
                .unwrap()
                .sign(&alice, 7, NOW + HOUR),
            // A value of every length class of its CBOR head (0, < 24,
            // < 256, < 65536 bytes), so that the value's position in the
            // encoding is found for each.
            OwnerValue::new("n", vec![])
                .unwrap()
                .sign(&alice, 1, NOW + HOUR),
            OwnerValue::new("n", vec![9; 300])
                .unwrap()
                .sign(&alice, 1, NOW + HOUR),
            OwnerValue::new("n", vec![9; 16_000])
                .unwrap()
                .sign(&alice, 1, NOW + HOUR),
        ];
        for record in records {
            let bytes = record.encode();
            let v = Record::decode(&bytes)
                .unwrap()
                .verify(&open(), NOW)
                .unwrap();
            let (decoded, content) = eager(&record);
            assert!(content.is_some());
            assert_eq!(v.content(), content);
            assert_eq!(v.record().unwrap(), decoded);
            assert_eq!(v.value(), &decoded.value[..]);
            assert_eq!(v.encoded(), &bytes[..]);
            assert_eq!(
                (v.kind(), v.key(), v.owner()),
                (decoded.kind, &decoded.key, &decoded.owner)
            );
            assert_eq!((v.seq(), v.expires()), (decoded.seq, decoded.expires));
            assert_eq!(v.owner_id(), alice.public().user_id());
            match content {
                Some(RecordContent::Registration(r)) => {
                    assert_eq!(v.registration(), Some(r.clone()));
                    assert_eq!(r, reg);
                    assert_eq!(v.owner_value(), None);
                }
                Some(RecordContent::OwnerValue(o)) => {
                    assert_eq!(v.owner_value(), Some(o));
                    assert_eq!(v.registration(), None);
                }
                _ => unreachable!(),
            }
        }
    }

    #[test]
    fn only_the_canonical_encoding_is_kept() {
        let alice = key(1);
        let record = OwnerValue::new("n", b"data".to_vec())
            .unwrap()
            .sign(&alice, 1, NOW + HOUR);
        let good = record.encode();
        assert!(VerifiedRecord::new(&record, good.clone()).is_ok());
        // Bytes that are not the record's encoding: the value is not where
        // the canonical form puts it.
        let mut shifted = good.clone();
        shifted.insert(10, 0);
        let mut other_owner = good.clone();
        other_owner[OWNER_AT + 31] ^= 1;
        for bad in [
            vec![],
            good[..good.len() - 1].to_vec(),
            shifted,
            other_owner,
        ] {
            assert_eq!(
                VerifiedRecord::new(&record, bad),
                Err(RecordError::Wire(WireError::NonCanonical))
            );
        }
    }

    #[test]
    fn a_stored_record_is_its_encoding_and_a_small_fixed_part() {
        // The fixed part a record store pays per record on top of the
        // encoding's heap block (see `STORE_SLOT_OVERHEAD`).
        assert!(std::mem::size_of::<VerifiedRecord>() <= 72);
        assert_eq!(
            std::mem::size_of::<Option<VerifiedRecord>>(),
            std::mem::size_of::<VerifiedRecord>()
        );
    }
}
