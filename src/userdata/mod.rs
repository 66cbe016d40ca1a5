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

#[cfg(test)]
mod tests;

pub use contacts::{check_contact_name, AddressBook, Contact, ContactError};
pub use settings::{Settings, SettingsError, SETTING_KEYS};

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
