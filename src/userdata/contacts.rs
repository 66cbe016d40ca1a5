//! The address book: names a user gives to the AORs it calls (petnames:
//! the self-certifying AOR stays the identity; the name is the user's
//! own and means something to nobody else).

use super::{decode_pairs, encode_pairs};
use crate::limits::{MAX_AOR_LEN, MAX_CONTACTS, MAX_CONTACT_NAME_LEN};
use crate::overlay::record::private::MAX_PRIVATE_PLAINTEXT;
use crate::sip::registrar::aor_of;
use crate::sip::SipUri;
use crate::wire::WireError;

/// Why an address book refused a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContactError {
    /// Not a contact name.
    #[error(
        "contact name {0:?}: use 1 to {MAX_CONTACT_NAME_LEN} letters, digits, '.', '-' or '_'"
    )]
    BadName(String),
    /// Not a SIP AOR.
    #[error("{0:?}: not a SIP address-of-record (sip:USER@DOMAIN)")]
    BadAor(String),
    /// The name is taken (names are case-insensitive).
    #[error("a contact named {0:?} exists already (remove it first)")]
    Exists(String),
    /// No contact has the name.
    #[error("no contact named {0:?}")]
    NotFound(String),
    /// The book holds as many contacts as it may.
    #[error("the address book is full ({MAX_CONTACTS} contacts)")]
    Full,
    /// The book would not fit in its sealed record.
    #[error("the address book would take {len} bytes; at most {MAX_PRIVATE_PLAINTEXT} fit in its record")]
    TooLarge {
        /// Its encoded length.
        len: usize,
    },
}

/// One contact: the user's name for an AOR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// The name as the user wrote it (compared case-insensitively).
    pub name: String,
    /// The normalised AOR it names.
    pub aor: String,
}

/// Whether `name` may name a contact: 1 to [`MAX_CONTACT_NAME_LEN`]
/// ASCII letters, digits, `.`, `-` and `_` (what a phone dials as a SIP
/// user part without escaping).
pub fn check_contact_name(name: &str) -> Result<(), ContactError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_CONTACT_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ContactError::BadName(
            name.chars().take(MAX_CONTACT_NAME_LEN + 8).collect(),
        ))
    }
}

/// The normalised AOR of `text`, a SIP URI with a user part.
pub(super) fn normalise_aor(text: &str) -> Result<String, ContactError> {
    let bad = || ContactError::BadAor(text.chars().take(MAX_AOR_LEN + 8).collect());
    if text.len() > MAX_AOR_LEN {
        return Err(bad());
    }
    let uri = SipUri::parse(text.trim()).map_err(|_| bad())?;
    aor_of(&uri).ok_or_else(bad)
}

/// A user's address book: contacts sorted by their lowercased name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressBook {
    /// Sorted by `name.to_ascii_lowercase()`, unique.
    contacts: Vec<Contact>,
}

impl AddressBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// The contacts, sorted by name.
    pub fn contacts(&self) -> &[Contact] {
        &self.contacts
    }

    /// How many contacts the book holds.
    pub fn len(&self) -> usize {
        self.contacts.len()
    }

    /// Whether the book is empty.
    pub fn is_empty(&self) -> bool {
        self.contacts.is_empty()
    }

    fn position(&self, name: &str) -> Result<usize, usize> {
        let folded = name.to_ascii_lowercase();
        self.contacts
            .binary_search_by(|c| c.name.to_ascii_lowercase().cmp(&folded))
    }

    /// The AOR named `name` (case-insensitive).
    pub fn resolve(&self, name: &str) -> Option<&str> {
        let i = self.position(name).ok()?;
        self.contacts.get(i).map(|c| c.aor.as_str())
    }

    /// The user's name for `aor`, if the book has one (the first, by
    /// name, when several name it).
    pub fn name_of(&self, aor: &str) -> Option<&str> {
        self.contacts
            .iter()
            .find(|c| c.aor.eq_ignore_ascii_case(aor))
            .map(|c| c.name.as_str())
    }

    /// Adds `name` for `aor`; the name must be new and the book must
    /// still fit its record.
    pub fn add(&mut self, name: &str, aor: &str) -> Result<(), ContactError> {
        check_contact_name(name)?;
        let aor = normalise_aor(aor)?;
        let at = match self.position(name) {
            Ok(_) => return Err(ContactError::Exists(name.to_owned())),
            Err(at) => at,
        };
        if self.contacts.len() >= MAX_CONTACTS {
            return Err(ContactError::Full);
        }
        self.contacts.insert(
            at,
            Contact {
                name: name.to_owned(),
                aor,
            },
        );
        let len = self.encode().len();
        if len > MAX_PRIVATE_PLAINTEXT {
            self.contacts.remove(at);
            return Err(ContactError::TooLarge { len });
        }
        Ok(())
    }

    /// Removes the contact `name` (case-insensitive); returns it.
    pub fn remove(&mut self, name: &str) -> Result<Contact, ContactError> {
        let i = self
            .position(name)
            .map_err(|_| ContactError::NotFound(name.to_owned()))?;
        Ok(self.contacts.remove(i))
    }

    /// The plaintext: `[1, [[name, aor], ...]]`, sorted by lowercased
    /// name.
    pub fn encode(&self) -> Vec<u8> {
        encode_pairs(
            self.contacts
                .iter()
                .map(|c| (c.name.as_str(), c.aor.as_str())),
        )
    }

    /// Decodes the plaintext strictly: every name and AOR valid and
    /// normalised, names unique and in order, at most [`MAX_CONTACTS`].
    pub fn decode(input: &[u8]) -> Result<Self, WireError> {
        let pairs = decode_pairs(
            input,
            "contacts",
            MAX_CONTACTS,
            MAX_CONTACT_NAME_LEN,
            MAX_AOR_LEN,
        )?;
        let mut contacts = Vec::with_capacity(pairs.len());
        for (name, aor) in pairs {
            let valid = check_contact_name(&name).is_ok()
                && normalise_aor(&aor).ok().as_deref() == Some(aor.as_str());
            if !valid {
                return Err(WireError::FieldOutOfRange("contacts"));
            }
            contacts.push(Contact { name, aor });
        }
        Ok(Self { contacts })
    }
}
