//! A user's own data in the overlay: the address book whose names the
//! user's phones dial ([`AddressBook`]) and the settings that follow the
//! user from node to node ([`Settings`]).
//!
//! Each lives in one private record ([`crate::overlay::record::private`]):
//! sealed to the user's encryption key, signed by a slot key derived from
//! the user's identity key, under a key nobody else can tie to the user.
//! The plaintext of both is the same strict CBOR shape, a version and a
//! list of text pairs sorted by their first element:
//!
//! ```text
//! plaintext = [1, [[tstr, tstr], ...]]
//! ```
//!
//! `docs/protocol.md` ("User data") is the normative description.

mod contacts;
pub mod fuzzing;
mod settings;
pub mod vcard;
pub mod voicemail;

#[cfg(test)]
mod tests;

pub use contacts::{check_contact_name, AddressBook, Contact, ContactError};
pub use settings::{Settings, SettingsError, SETTING_KEYS};

use crate::identity::sealing::{EncryptionPublicKey, EncryptionSecretKey};
use crate::limits::MAX_RECORD_LIFETIME;
use crate::overlay::record::{PrivateSlot, Record, RecordKind};
use crate::wire::cbor::{encoder, require_canonical, Reader};
use crate::wire::WireError;

/// The private slot of the address book.
pub const CONTACTS_SLOT: &str = "contacts";
/// The private slot of the settings.
pub const SETTINGS_SLOT: &str = "settings";

const PLAINTEXT_VERSION: u64 = 1;

/// Encodes `[1, [[a, b], ...]]`; the pairs must be sorted and unique by
/// their first element (the callers keep them so).
fn encode_pairs<'a>(pairs: impl ExactSizeIterator<Item = (&'a str, &'a str)>) -> Vec<u8> {
    let mut e = encoder();
    let _ = e.array(2).and_then(|e| {
        e.u64(PLAINTEXT_VERSION)?.array(pairs.len() as u64)?;
        for (a, b) in pairs {
            e.array(2)?.str(a)?.str(b)?;
        }
        Ok(())
    });
    e.into_writer()
}

/// Decodes `[1, [[a, b], ...]]`: at most `max_pairs` pairs, each string
/// within its bound, first elements strictly increasing in ASCII
/// case-insensitive order (so unique regardless of case), canonical.
fn decode_pairs(
    input: &[u8],
    what: &'static str,
    max_pairs: usize,
    max_first: usize,
    max_second: usize,
) -> Result<Vec<(String, String)>, WireError> {
    let mut r = Reader::new(input);
    if r.array()? != 2 {
        return Err(WireError::FieldOutOfRange(what));
    }
    let version = r.u64()?;
    if version != PLAINTEXT_VERSION {
        return Err(WireError::FieldOutOfRange(what));
    }
    let n = r.array()?;
    if n > max_pairs as u64 {
        return Err(WireError::FieldOutOfRange(what));
    }
    let mut pairs: Vec<(String, String)> = Vec::with_capacity(n as usize);
    for _ in 0..n {
        if r.array()? != 2 {
            return Err(WireError::FieldOutOfRange(what));
        }
        let a = r.str(what, max_first)?;
        let b = r.str(what, max_second)?;
        if pairs
            .last()
            .is_some_and(|(prev, _)| prev.to_ascii_lowercase() >= a.to_ascii_lowercase())
        {
            return Err(WireError::FieldOutOfRange(what));
        }
        pairs.push((a.to_owned(), b.to_owned()));
    }
    r.finish()?;
    require_canonical(
        input,
        &encode_pairs(pairs.iter().map(|(a, b)| (a.as_str(), b.as_str()))),
    )?;
    Ok(pairs)
}

/// Why a user's private record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SlotError {
    /// The record is not the slot's: another key, kind or signer.
    #[error("the record found is not this user's {0} record")]
    NotTheSlots(&'static str),
    /// The record does not open with the user's encryption key.
    #[error(
        "the {0} record in the overlay does not open with this encryption key \
         (was USER_DIR/encryption.key replaced?); it is left as it is"
    )]
    DoesNotOpen(&'static str),
    /// It opened, but the plaintext is not the slot's schema.
    #[error("the {0} record opened but holds no valid {0}: {1}")]
    Malformed(&'static str, WireError),
}

/// The plaintext of `record`, which must be the record of `slot` (named
/// `name`), opened with `with`. The record's signature is checked here
/// (the private kind's rule needs no overlay policy).
pub fn open_slot(
    slot: &PrivateSlot,
    name: &'static str,
    with: &EncryptionSecretKey,
    record: &Record,
    now: u64,
) -> Result<Vec<u8>, SlotError> {
    let policy = crate::overlay::record::RecordPolicy::self_certifying("");
    let ours = record.kind == RecordKind::Private
        && record.key == slot.key()
        && &record.owner == slot.owner().as_bytes()
        && record.verify(&policy, now).is_ok();
    if !ours {
        return Err(SlotError::NotTheSlots(name));
    }
    slot.open(with, &record.key, &record.value)
        .map_err(|_| SlotError::DoesNotOpen(name))
}

/// The record that replaces a slot's record of sequence number
/// `previous` (none: the first): `plaintext` sealed to `to`, its sequence
/// number above the previous one and growing with the clock (a writer
/// that could not see the previous record still supersedes it), its
/// expiry the longest a record may have (never earlier than a previous
/// one's, as the store's tombstones require).
pub fn seal_slot(
    slot: &PrivateSlot,
    to: &EncryptionPublicKey,
    plaintext: &[u8],
    previous: Option<u64>,
    now_secs: u64,
    now_micros: u64,
) -> Result<Record, crate::overlay::record::RecordError> {
    let seq = previous.map_or(now_micros, |p| p.saturating_add(1).max(now_micros));
    slot.seal(
        to,
        plaintext,
        seq,
        now_secs.saturating_add(MAX_RECORD_LIFETIME.as_secs()),
    )
}
