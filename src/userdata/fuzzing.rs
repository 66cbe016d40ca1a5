//! The harness of the `userdata_decode` fuzz target, shared with the
//! corpus replay in `tests/fuzz_corpus.rs`: what the target checks for
//! one input.

use super::{vcard, AddressBook, Settings};

/// What one input decoded as.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// It is an address book's plaintext.
    pub book: bool,
    /// It is a settings plaintext.
    pub settings: bool,
    /// Contacts a vCard import of it finds.
    pub cards: usize,
}

/// Decodes `data` as an address book, as settings and (when UTF-8) as
/// vCards. Panics if a decoded value does not re-encode to the input, or
/// if a vCard import yields a contact the book refuses.
pub fn userdata_decode(data: &[u8]) -> Decoded {
    let mut out = Decoded::default();
    if let Ok(book) = AddressBook::decode(data) {
        assert_eq!(book.encode(), data, "a book re-encodes to its input");
        out.book = true;
    }
    if let Ok(settings) = Settings::decode(data) {
        assert_eq!(settings.encode(), data, "settings re-encode to their input");
        out.settings = true;
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(found) = vcard::parse(text) {
            let mut book = AddressBook::new();
            for (name, aor) in &found.contacts {
                // Names may repeat across cards; nothing else may fail.
                match book.add(name, aor) {
                    Ok(()) | Err(super::ContactError::Exists(_)) => {}
                    Err(super::ContactError::TooLarge { .. } | super::ContactError::Full) => break,
                    Err(e) => panic!("an imported contact is refused: {e}"),
                }
            }
            out.cards = found.contacts.len();
        }
    }
    out
}
