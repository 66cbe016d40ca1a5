//! Private records (kind 5): a user's own data (address book, settings),
//! sealed to the user, under a key nobody else can tie to the user.
//!
//! A private record is not signed by the user's identity key, which would
//! name the user to every node that stores it. Each *slot* (`"contacts"`,
//! `"settings"`) has its own Ed25519 *slot key*, derived from the user's
//! identity key and the slot's name:
//!
//! ```text
//! slot seed = HKDF-SHA256(salt = "p2psip-private-v1",
//!                         ikm  = the identity key's RFC 8032 seed,
//!                         info = user_id ‖ slot name)       (32 bytes)
//! record key = SHA-256("p2psip-private-v1" ‖ slot public key)
//! value      = bstr: HPKE box sealed to the user's encryption key,
//!              info "p2psip-private-v1", aad = record key
//! ```
//!
//! A storing node sees a key, a slot public key, a sequence number, an
//! expiry and the box's size: it cannot tell whose it is nor read it, and
//! the rule (the key is the one the record's owner derives) keeps anyone
//! but the slot key's holder from writing it. Only the user (and a node
//! the user gave its keys, to serve its phones) can derive the slot key
//! and open the box.

use super::{Record, RecordError, RecordKind};
use crate::identity::sealing::{self, EncryptionPublicKey, EncryptionSecretKey, SealError};
use crate::identity::{PublicKey, SecretKey};
use crate::limits::MAX_RECORD_VALUE_LEN;
use crate::overlay::key::Key;
use crate::wire::cbor::{encoder, require_canonical, Reader};
use crate::wire::WireError;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Domain separation of private records: the HKDF salt of slot keys, the
/// prefix of their record keys and the HPKE `info` of their boxes.
pub const PRIVATE_DOMAIN: &[u8] = b"p2psip-private-v1";

/// Longest slot name, in bytes.
pub const MAX_SLOT_NAME_LEN: usize = 32;

/// Longest plaintext a private record can hold: what fits in a record
/// value once sealed and wrapped in its byte-string head (3 bytes).
pub const MAX_PRIVATE_PLAINTEXT: usize = MAX_RECORD_VALUE_LEN - sealing::SEAL_OVERHEAD - 3;

/// The slot key of the slot `name` of the user whose identity key is
/// `user`.
pub fn slot_key(user: &SecretKey, name: &str) -> SecretKey {
    let seed = Zeroizing::new(user.dalek().to_bytes());
    let mut info = user.public().user_id().as_bytes().to_vec();
    info.extend_from_slice(name.as_bytes());
    let hk = hkdf::Hkdf::<Sha256>::new(Some(PRIVATE_DOMAIN), &seed[..]);
    let mut okm = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's limit of 8160: this cannot fail.
    let _ = hk.expand(&info, &mut okm[..]);
    SecretKey::from_seed(&okm)
}

/// The record key of a private record whose slot public key is `slot`.
pub fn private_key(slot: &PublicKey) -> Key {
    let mut h = Sha256::new();
    h.update(PRIVATE_DOMAIN);
    h.update(slot.as_bytes());
    Key(h.finalize().into())
}

/// One slot of a user: the key that signs its record and where the
/// record lives.
pub struct PrivateSlot {
    slot: SecretKey,
    key: Key,
}

impl PrivateSlot {
    /// The slot `name` (1 to [`MAX_SLOT_NAME_LEN`] bytes) of `user`.
    pub fn new(user: &SecretKey, name: &str) -> Result<Self, RecordError> {
        if name.is_empty() || name.len() > MAX_SLOT_NAME_LEN {
            return Err(RecordError::MalformedValue(WireError::FieldOutOfRange(
                "private.slot",
            )));
        }
        let slot = slot_key(user, name);
        let key = private_key(&slot.public());
        Ok(Self { slot, key })
    }

    /// The overlay key the slot's record is stored under.
    pub fn key(&self) -> Key {
        self.key
    }

    /// The slot's public key: the owner of its record.
    pub fn owner(&self) -> PublicKey {
        self.slot.public()
    }

    /// Seals `plaintext` to `to` and signs it as the slot's record.
    pub fn seal(
        &self,
        to: &EncryptionPublicKey,
        plaintext: &[u8],
        seq: u64,
        expires: u64,
    ) -> Result<Record, RecordError> {
        if plaintext.len() > MAX_PRIVATE_PLAINTEXT {
            return Err(RecordError::ValueTooLarge {
                len: plaintext.len() + sealing::SEAL_OVERHEAD,
            });
        }
        let sealed = sealing::seal(to, PRIVATE_DOMAIN, &self.key.0, plaintext)
            .map_err(|_| RecordError::MalformedValue(WireError::FieldOutOfRange("private.box")))?;
        let mut e = encoder();
        let _ = e.bytes(&sealed);
        Ok(Record::sign(
            &self.slot,
            RecordKind::Private,
            self.key,
            seq,
            expires,
            e.into_writer(),
        ))
    }

    /// The slot's record `previous` signed again with a later expiry and
    /// a higher sequence number, its sealed value unchanged: how a node
    /// serving the user keeps the record alive without opening it.
    pub fn renew(&self, previous: &Record, seq: u64, expires: u64) -> Record {
        Record::sign(
            &self.slot,
            RecordKind::Private,
            self.key,
            seq,
            expires,
            previous.value.clone(),
        )
    }

    /// Opens the value of the slot's record with the user's encryption
    /// key. A record of another slot, or one sealed to someone else, does
    /// not open.
    pub fn open(
        &self,
        with: &EncryptionSecretKey,
        record_key: &Key,
        value: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        if record_key != &self.key {
            return Err(SealError::DoesNotOpen);
        }
        let sealed = sealed_box(value).map_err(|_| SealError::DoesNotOpen)?;
        with.open(PRIVATE_DOMAIN, &self.key.0, sealed)
    }
}

/// The sealed box a private record's value holds.
pub fn sealed_box(value: &[u8]) -> Result<&[u8], WireError> {
    let mut r = Reader::new(value);
    let sealed = r.bytes()?;
    r.finish()?;
    if sealed.len() < sealing::SEAL_OVERHEAD {
        return Err(WireError::FieldOutOfRange("private.box"));
    }
    let mut e = encoder();
    let _ = e.bytes(sealed);
    require_canonical(value, &e.into_writer())?;
    Ok(sealed)
}

/// The rule of kind 5: the value is one sealed box and the key is the one
/// the record's owner (a slot key) derives.
pub(super) fn check(record: &Record, owner: &PublicKey) -> Result<(), RecordError> {
    sealed_box(&record.value).map_err(RecordError::MalformedValue)?;
    if record.key != private_key(owner) {
        return Err(RecordError::WrongKey);
    }
    Ok(())
}
