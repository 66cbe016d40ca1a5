//! Signed records: what the overlay stores, who may write what, and how a
//! record is checked before anyone stores, serves or believes it.
//!
//! A record is signed by its owner (an Ed25519 user key; a relay node's
//! key for a relay descriptor) and carries a
//! kind, the overlay key it is stored under, a sequence number and an
//! expiry. Each kind has an access rule tying the key to the owner, so that
//! nobody can write into another user's keys. `docs/protocol.md` ("Records")
//! is the normative description:
//!
//! ```text
//! record = [1, kind: uint, key: bstr(32), owner: bstr(32), seq: uint,
//!           expires: uint, value: bstr, signature: bstr(64)]
//! signed = "p2psip-record-v1" || CBOR([1, kind, key, owner, seq, expires, value])
//! ```
//!
//! | kind | name              | key                                          | value            |
//! |------|-------------------|----------------------------------------------|------------------|
//! | 1    | `SipRegistration` | `aor_key(aor)`                               | [`Registration`] |
//! | 2    | `OwnerValue`      | `SHA-256("p2psip-value-v1" ‖ UserId ‖ name)` | [`OwnerValue`]   |
//! | 3    | `RelayDescriptor` | one of the relay's two [`relay_directory_key`]s | [`RelayDescriptor`] |
//! | 4    | `Profile`         | `SHA-256("p2psip-profile-v1" ‖ UserId)`      | [`Profile`]      |
//! | 5    | `Private`         | `SHA-256("p2psip-private-v1" ‖ slot key)`    | a sealed box ([`private`]) |
//! | 6    | `Mailbox`         | `SHA-256("p2psip-mailbox-v1" ‖ UserId)`      | [`MailboxValue`] |
//! | 7    | `MailboxChunk`    | `SHA-256("p2psip-mailbox-chunk-v1" ‖ owner ‖ index)` | [`MailboxChunk`] |
//!
//! [`Record::decode`] is strict (the profile of [`crate::wire::cbor`]);
//! only [`Record::verify`] builds a [`VerifiedRecord`], which is what the
//! [`super::store::RecordStore`] accepts.
//!
//! One idea per file: this one holds the record itself (encoding, signing,
//! the checks every kind shares); `error` the refusals; `policy` how one
//! overlay checks records; `owner_value`, `registration` and
//! `relay_descriptor` the kinds' values and rules; `verified` the checked record a store keeps (its
//! encoding and fixed fields, the value parsed only when asked for).

mod error;
pub mod mailbox;
mod owner_value;
mod policy;
pub mod private;
mod profile;
mod registration;
mod relay_descriptor;
mod verified;

#[cfg(test)]
mod tests;

pub use error::{NotOwnerReason, RecordError, RegistrationError};
pub use mailbox::{
    chunk_key, mailbox_key, MailboxChunk, MailboxItem, MailboxRefusal, MailboxValue,
};
pub use owner_value::{owner_value_key, OwnerValue, OWNER_VALUE_KEY_DOMAIN};
pub use policy::RecordPolicy;
pub use private::{PrivateSlot, PRIVATE_DOMAIN};
pub use profile::{check_display_name, profile_key, Profile, PROFILE_KEY_DOMAIN};
pub use registration::{
    next_registration, self_certifying_aor, DeviceChange, Registration, RegistrationEntry,
    UpdateError,
};
pub use relay_descriptor::{
    relay_directory_index, relay_directory_indices, relay_directory_key, relay_directory_keys,
    relay_publication_keys, sign_relay_descriptors, withdraw_relay_descriptors, OnionKeyInfo,
    RelayDescriptor, RelayDescriptorError, RelayOffer, RELAY_DESCRIPTOR_VERSION,
    RELAY_DIRECTORY_DOMAIN, RELAY_INDEX_DOMAIN,
};
pub use verified::{RecordContent, VerifiedRecord};

use super::key::Key;
use crate::identity::{PublicKey, SecretKey};
use crate::limits::{MAX_RECORD_LIFETIME, MAX_RECORD_VALUE_LEN};
use crate::wire::cbor::{encoder, require_canonical, Reader};
use crate::wire::WireError;

/// Domain-separation prefix of the record signature.
pub const RECORD_DOMAIN: &[u8] = b"p2psip-record-v1";
const VERSION: u64 = 1;
const RECORD_ARITY: u64 = 8;

/// What a record holds; each kind has its own value schema and access rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RecordKind {
    /// 1: a SIP registration (RFC 7904): an address-of-record mapped to the
    /// nodes (devices) its user has bound, with their contacts. Only the
    /// user who owns the AOR can write it.
    SipRegistration,
    /// 2: a named value only its owner can write, under a key derived from
    /// the owner's id and the name (the base of configuration, address book
    /// and voicemail records).
    OwnerValue,
    /// 3: a media relay's signed descriptor (addresses, onion keys,
    /// capacity), written by the relay node itself under its own relay
    /// directory keys.
    RelayDescriptor,
    /// 4: a user's profile: its encryption key and the display name it
    /// claims, under a key derived from its id. Only the user writes it.
    Profile,
    /// 5: a user's private data (address book, settings), sealed to the
    /// user and signed by a slot key derived from the user's key, under a
    /// key derived from the slot key: a storing node cannot tell whose it
    /// is or read it.
    Private,
    /// 6: a user's mailbox: a depositor's messages for the user (sealed
    /// to the user), or the user's own state of it (deleted, heard),
    /// under a key derived from the user's id. Many depositors share the
    /// key, each in its own slot.
    Mailbox,
    /// 7: a chunk of a message's sealed audio, signed by the message's
    /// own key, under a key derived from that key and the chunk's index.
    MailboxChunk,
}

impl RecordKind {
    /// The kind's number on the wire.
    pub const fn to_u64(self) -> u64 {
        match self {
            RecordKind::SipRegistration => 1,
            RecordKind::OwnerValue => 2,
            RecordKind::RelayDescriptor => 3,
            RecordKind::Profile => 4,
            RecordKind::Private => 5,
            RecordKind::Mailbox => 6,
            RecordKind::MailboxChunk => 7,
        }
    }

    /// The kind of a number on the wire; `None` for unknown kinds.
    pub const fn from_u64(n: u64) -> Option<Self> {
        match n {
            1 => Some(RecordKind::SipRegistration),
            2 => Some(RecordKind::OwnerValue),
            3 => Some(RecordKind::RelayDescriptor),
            4 => Some(RecordKind::Profile),
            5 => Some(RecordKind::Private),
            6 => Some(RecordKind::Mailbox),
            7 => Some(RecordKind::MailboxChunk),
            _ => None,
        }
    }
}
/// A decoded record whose signature and rules have not been checked yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// What the record holds.
    pub kind: RecordKind,
    /// Where the record is stored in the overlay.
    pub key: Key,
    /// The owner's Ed25519 public key, which signs the record.
    pub owner: [u8; 32],
    /// Sequence number: a higher one replaces a lower one in the same slot.
    pub seq: u64,
    /// End of validity, unix seconds (valid while `now < expires`).
    pub expires: u64,
    /// The kind's value, canonical CBOR.
    pub value: Vec<u8>,
    /// Ed25519 signature by `owner` over the signed bytes.
    pub signature: [u8; 64],
}

fn signed_bytes(
    kind: RecordKind,
    key: &Key,
    owner: &[u8; 32],
    seq: u64,
    expires: u64,
    value: &[u8],
) -> Vec<u8> {
    let mut e = encoder();
    let _ = e.array(RECORD_ARITY - 1).and_then(|e| {
        e.u64(VERSION)?
            .u64(kind.to_u64())?
            .bytes(&key.0)?
            .bytes(owner)?
            .u64(seq)?
            .u64(expires)?
            .bytes(value)
    });
    let mut out = RECORD_DOMAIN.to_vec();
    out.extend_from_slice(&e.into_writer());
    out
}

impl Record {
    /// `owner` signs a record. Nothing about the value is checked here:
    /// [`Record::verify`] does that (a node should verify its own record
    /// before publishing it). [`Registration::sign`] and
    /// [`OwnerValue::sign`] build values that pass.
    pub fn sign(
        owner: &SecretKey,
        kind: RecordKind,
        key: Key,
        seq: u64,
        expires: u64,
        value: Vec<u8>,
    ) -> Self {
        let owner_key = *owner.public().as_bytes();
        let signature = owner.sign(&signed_bytes(kind, &key, &owner_key, seq, expires, &value));
        Self {
            kind,
            key,
            owner: owner_key,
            seq,
            expires,
            value,
            signature,
        }
    }

    /// The canonical CBOR encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = encoder();
        let _ = e.array(RECORD_ARITY).and_then(|e| {
            e.u64(VERSION)?
                .u64(self.kind.to_u64())?
                .bytes(&self.key.0)?
                .bytes(&self.owner)?
                .u64(self.seq)?
                .u64(self.expires)?
                .bytes(&self.value)?
                .bytes(&self.signature)
        });
        e.into_writer()
    }

    /// Decodes the canonical CBOR encoding. Strict: definite lengths,
    /// exact arity, known version and kind, value within
    /// [`MAX_RECORD_VALUE_LEN`], no trailing bytes, canonical form. The
    /// signature and the kind's rules are not checked: see
    /// [`Record::verify`].
    pub fn decode(input: &[u8]) -> Result<Self, RecordError> {
        let mut r = Reader::new(input);
        let arity = r.array()?;
        let version = r.u64()?;
        if version != VERSION {
            return Err(RecordError::UnsupportedVersion(version));
        }
        if arity != RECORD_ARITY {
            return Err(WireError::WrongArity {
                message_type: version,
                expected: RECORD_ARITY,
                found: arity,
            }
            .into());
        }
        let kind_number = r.u64()?;
        let kind =
            RecordKind::from_u64(kind_number).ok_or(RecordError::UnknownKind(kind_number))?;
        let key = Key(r.bytes_exact("record.key")?);
        let owner = r.bytes_exact("record.owner")?;
        let seq = r.u64()?;
        let expires = r.u64()?;
        // Borrowed from the input: the declared length was checked against
        // the bytes present; it is bounded before it is copied.
        let value = r.bytes()?;
        if value.len() > MAX_RECORD_VALUE_LEN {
            return Err(RecordError::ValueTooLarge { len: value.len() });
        }
        let signature = r.bytes_exact("record.signature")?;
        r.finish()?;
        let record = Self {
            kind,
            key,
            owner,
            seq,
            expires,
            value: value.to_vec(),
            signature,
        };
        require_canonical(input, &record.encode())?;
        Ok(record)
    }

    /// The bytes the owner signs.
    pub fn signed_bytes(&self) -> Vec<u8> {
        signed_bytes(
            self.kind,
            &self.key,
            &self.owner,
            self.seq,
            self.expires,
            &self.value,
        )
    }

    /// Checks everything at `now` (unix seconds), in this order: value
    /// size, owner key, signature (strict Ed25519), expiry and lifetime,
    /// then the kind's value schema, key derivation and access rule. The
    /// signature is checked before anything that depends on the clock, so
    /// that a forgery is always reported as one.
    pub fn verify(&self, policy: &RecordPolicy, now: u64) -> Result<VerifiedRecord, RecordError> {
        self.check(policy, now)?;
        VerifiedRecord::new(self, self.encode())
    }

    /// [`Record::verify`] without building the [`VerifiedRecord`].
    fn check(&self, policy: &RecordPolicy, now: u64) -> Result<(), RecordError> {
        if self.value.len() > MAX_RECORD_VALUE_LEN {
            return Err(RecordError::ValueTooLarge {
                len: self.value.len(),
            });
        }
        let owner = PublicKey::from_bytes(&self.owner).map_err(|_| RecordError::InvalidOwnerKey)?;
        if !owner.verify_strict(&self.signed_bytes(), &self.signature) {
            return Err(RecordError::BadSignature);
        }
        if now >= self.expires {
            return Err(RecordError::Expired {
                expires: self.expires,
                now,
            });
        }
        if self.expires - now > MAX_RECORD_LIFETIME.as_secs() {
            return Err(RecordError::LifetimeTooLong {
                expires: self.expires,
                now,
            });
        }
        match self.kind {
            RecordKind::OwnerValue => owner_value::check(self, &owner.user_id()),
            RecordKind::SipRegistration => registration::check(self, &owner, policy, now),
            RecordKind::RelayDescriptor => relay_descriptor::check(self, &owner, policy, now),
            RecordKind::Profile => profile::check(self, &owner.user_id()),
            RecordKind::Private => private::check(self, &owner),
            RecordKind::Mailbox => mailbox::check(self, &owner),
            RecordKind::MailboxChunk => mailbox::check_chunk(self, &owner),
        }
    }
}
