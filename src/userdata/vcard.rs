//! vCard (RFC 6350) import and export of an address book, and export in
//! baresip's `contacts` format.
//!
//! A contact is a card with a SIP address: an `IMPP` (or `TEL`, `URL`)
//! property whose value is a `sip:` URI. Its name is the card's
//! `NICKNAME`, else its `FN`. Cards without a SIP address are skipped
//! (a phone's whole address book may be imported); a card with one whose
//! name or address is unusable makes the whole import fail with every
//! such card named, so that nothing is half imported.

use super::contacts::{check_contact_name, normalise_aor};
use super::AddressBook;
use crate::limits::MAX_VCARD_FILE_LEN;

/// What an import found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    /// `(name, AOR)` of each card with a SIP address, in file order.
    pub contacts: Vec<(String, String)>,
    /// Cards without a SIP address.
    pub skipped: usize,
}

/// The card being read.
#[derive(Default)]
struct Card {
    /// The line of its BEGIN.
    start: usize,
    /// Its FN.
    full: Option<String>,
    /// Its first NICKNAME.
    nick: Option<String>,
    /// Its SIP address.
    sip: Option<String>,
}

/// Unfolds content lines (RFC 6350 §3.2): a line break followed by a
/// space or tab continues the line.
fn unfold(text: &str) -> Vec<(usize, String)> {
    let mut lines: Vec<(usize, String)> = Vec::new();
    for (n, raw) in text.split('\n').enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(rest) = raw.strip_prefix([' ', '\t']) {
            if let Some((_, last)) = lines.last_mut() {
                last.push_str(rest);
                continue;
            }
        }
        lines.push((n + 1, raw.to_owned()));
    }
    lines
}

/// The text value of an escaped vCard value (RFC 6350 §3.4).
fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n' | 'N') => out.push('\n'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' | ',' | ';' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Parses vCards: every card's name and SIP address, or every problem
/// found, each naming its line.
pub fn parse(text: &str) -> Result<Imported, Vec<String>> {
    if text.len() > MAX_VCARD_FILE_LEN {
        return Err(vec![format!(
            "the file is {} bytes; at most {MAX_VCARD_FILE_LEN} are read",
            text.len()
        )]);
    }
    let mut found = Imported::default();
    let mut errors = Vec::new();
    let mut card: Option<Card> = None;
    for (line_no, line) in unfold(text) {
        if line.trim().is_empty() {
            continue;
        }
        let Some((head, value)) = line.split_once(':') else {
            errors.push(format!("line {line_no}: not a vCard property (no ':')"));
            continue;
        };
        let mut params = head.split(';');
        let name = params.next().unwrap_or_default();
        // A group prefix ("item1.IMPP") names no different property.
        let name = name.rsplit('.').next().unwrap_or(name).to_ascii_uppercase();
        match name.as_str() {
            "BEGIN" if value.trim().eq_ignore_ascii_case("VCARD") => {
                if card.is_some() {
                    errors.push(format!("line {line_no}: BEGIN:VCARD inside a card"));
                }
                card = Some(Card {
                    start: line_no,
                    ..Card::default()
                });
            }
            "END" if value.trim().eq_ignore_ascii_case("VCARD") => {
                let Some(Card {
                    start,
                    full,
                    nick,
                    sip,
                }) = card.take()
                else {
                    errors.push(format!("line {line_no}: END:VCARD without BEGIN"));
                    continue;
                };
                let Some(sip) = sip else {
                    found.skipped += 1;
                    continue;
                };
                let Some(contact_name) = nick.or(full) else {
                    errors.push(format!(
                        "card at line {start}: a SIP address but no NICKNAME or FN"
                    ));
                    continue;
                };
                if let Err(e) = check_contact_name(&contact_name) {
                    errors.push(format!(
                        "card at line {start}: {e} (give it a NICKNAME that is one)"
                    ));
                    continue;
                }
                match normalise_aor(&sip) {
                    Ok(aor) => found.contacts.push((contact_name, aor)),
                    Err(e) => errors.push(format!("card at line {start}: {e}")),
                }
            }
            _ => {
                let Some(Card {
                    full, nick, sip, ..
                }) = card.as_mut()
                else {
                    errors.push(format!(
                        "line {line_no}: {name} outside BEGIN:VCARD/END:VCARD"
                    ));
                    continue;
                };
                let value = unescape(value.trim());
                match name.as_str() {
                    "FN" if full.is_none() => *full = Some(value),
                    // The first of a list of nicknames.
                    "NICKNAME" if nick.is_none() => {
                        *nick = value.split(',').next().map(|s| s.trim().to_owned())
                    }
                    "IMPP" | "TEL" | "URL"
                        if sip.is_none() && value.to_ascii_lowercase().starts_with("sip:") =>
                    {
                        *sip = Some(value)
                    }
                    _ => {}
                }
            }
        }
    }
    if let Some(Card { start, .. }) = card {
        errors.push(format!("card at line {start}: no END:VCARD"));
    }
    if errors.is_empty() {
        Ok(found)
    } else {
        Err(errors)
    }
}

/// The book as vCard 4.0: one card per contact, `FN` and `NICKNAME` its
/// name, `IMPP` its AOR.
pub fn export(book: &AddressBook) -> String {
    let mut out = String::new();
    for c in book.contacts() {
        out.push_str("BEGIN:VCARD\r\nVERSION:4.0\r\n");
        out.push_str(&format!("FN:{}\r\n", escape(&c.name)));
        out.push_str(&format!("NICKNAME:{}\r\n", escape(&c.name)));
        out.push_str(&format!("IMPP:{}\r\n", c.aor));
        out.push_str("END:VCARD\r\n");
    }
    out
}

/// The book in baresip's `contacts` file format: `"name" <aor>` a line.
pub fn export_baresip(book: &AddressBook) -> String {
    book.contacts()
        .iter()
        .map(|c| format!("\"{}\" <{}>\n", c.name, c.aor))
        .collect()
}
