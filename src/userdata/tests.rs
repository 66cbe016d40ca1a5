//! Tests of the address book, the settings and vCard.

use super::vcard;
use super::*;
use crate::limits::{MAX_CONTACTS, MAX_CONTACT_NAME_LEN};
use crate::wire::WireError;

const BOB: &str = "sip:8f0e1b2a3c4d5e6f8f0e1b2a3c4d5e6f8f0e1b2a3c4d5e6f8f0e1b2a3c4d5e6f@p2psip";

#[test]
fn names_are_short_plain_and_case_insensitive() {
    let mut book = AddressBook::new();
    book.add("Bob", BOB).unwrap();
    assert_eq!(book.resolve("bob"), Some(BOB));
    assert_eq!(book.resolve("BOB"), Some(BOB));
    assert_eq!(book.name_of(BOB), Some("Bob"));
    assert_eq!(
        book.add("bOB", "sip:carol@p2psip"),
        Err(ContactError::Exists("bOB".into()))
    );
    for bad in [
        "",
        "bob smith",
        "bob@home",
        "bob\r\n",
        "zoë",
        &"x".repeat(MAX_CONTACT_NAME_LEN + 1),
    ] {
        assert!(
            matches!(book.add(bad, BOB), Err(ContactError::BadName(_))),
            "{bad:?}"
        );
    }
    assert!(book.add(&"x".repeat(MAX_CONTACT_NAME_LEN), BOB).is_ok());
    assert!(matches!(
        book.add("carol", "carol@p2psip"),
        Err(ContactError::BadAor(_))
    ));
    assert!(matches!(
        book.add("carol", "sip:p2psip"),
        Err(ContactError::BadAor(_))
    ));
    assert_eq!(book.remove("BoB").unwrap().aor, BOB);
    assert_eq!(
        book.remove("bob"),
        Err(ContactError::NotFound("bob".into()))
    );
}

#[test]
fn an_aor_is_kept_normalised() {
    let mut book = AddressBook::new();
    book.add("carol", "sip:carol@EXAMPLE.org;transport=udp")
        .unwrap();
    assert_eq!(book.resolve("carol"), Some("sip:carol@example.org"));
}

#[test]
fn the_book_round_trips_and_decoding_is_strict() {
    let mut book = AddressBook::new();
    book.add("bob", BOB).unwrap();
    book.add("Alice", "sip:alice@p2psip").unwrap();
    book.add("carol.w", "sip:carol@example.org").unwrap();
    let names: Vec<&str> = book.contacts().iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["Alice", "bob", "carol.w"]);
    let bytes = book.encode();
    assert_eq!(AddressBook::decode(&bytes).unwrap(), book);
    // Out of order, duplicate (by case), a bad name, a non-normalised
    // AOR, another version, trailing bytes: all refused.
    let pairs = |list: &[(&str, &str)]| encode_pairs(list.iter().copied());
    for bad in [
        pairs(&[("bob", BOB), ("alice", "sip:alice@p2psip")]),
        pairs(&[("bob", BOB), ("BOB", BOB)]),
        pairs(&[("bob smith", BOB)]),
        pairs(&[("bob", "sip:bob@P2PSIP")]),
        {
            let mut b = bytes.clone();
            b.push(0);
            b
        },
        {
            let mut b = bytes.clone();
            b[1] = 2;
            b
        },
    ] {
        assert!(AddressBook::decode(&bad).is_err(), "{bad:02x?}");
    }
    assert!(AddressBook::decode(&[]).is_err());
}

#[test]
fn the_book_is_bounded_by_count_and_by_its_record() {
    let mut book = AddressBook::new();
    let mut full = None;
    for i in 0..MAX_CONTACTS + 1 {
        if let Err(e) = book.add(&format!("c{i}"), BOB) {
            full = Some(e);
            break;
        }
    }
    // Self-certifying AORs fill the record before the count is reached.
    assert!(
        matches!(full, Some(ContactError::TooLarge { .. })),
        "{full:?}"
    );
    assert!(book.len() > 100, "{} contacts fit", book.len());
    let len = book.len();
    assert!(book.encode().len() <= crate::overlay::record::private::MAX_PRIVATE_PLAINTEXT);
    // Nothing was lost by the refused add.
    assert_eq!(AddressBook::decode(&book.encode()).unwrap().len(), len);
    // Short AORs reach the count instead.
    let mut short = AddressBook::new();
    for i in 0..MAX_CONTACTS {
        short.add(&format!("c{i}"), &format!("sip:u{i}@x")).unwrap();
    }
    assert_eq!(short.add("one-more", "sip:z@x"), Err(ContactError::Full));
    // A declared count above the bound is refused before anything is read.
    let mut e = crate::wire::cbor::encoder();
    e.array(2).unwrap().u64(1).unwrap().array(1 << 40).unwrap();
    assert_eq!(
        AddressBook::decode(&e.into_writer()),
        Err(WireError::FieldOutOfRange("contacts"))
    );
}

#[test]
fn settings_are_checked_and_normalised() {
    let mut s = Settings::new();
    s.set("do_not_disturb", "ON").unwrap();
    s.set("voicemail_after", "30").unwrap();
    s.set("forward_no_answer", "carol").unwrap();
    s.set("forward_busy", "sip:Carol@Example.org").unwrap();
    s.set("blocked", "mallory, sip:eve@p2psip,mallory").unwrap();
    s.set("display_name", "Alice A.").unwrap();
    assert!(s.do_not_disturb());
    assert_eq!(s.voicemail_after(), 30);
    assert_eq!(s.forward_no_answer(), Some("carol"));
    assert_eq!(s.forward_busy(), Some("sip:Carol@example.org"));
    assert_eq!(
        s.blocked().collect::<Vec<_>>(),
        ["mallory", "sip:eve@p2psip"]
    );
    assert!(s.voicemail(), "on unless set off");
    s.set("voicemail", "off").unwrap();
    assert!(!s.voicemail());
    s.set("do_not_disturb", "").unwrap();
    assert!(!s.do_not_disturb());
    assert_eq!(Settings::decode(&s.encode()).unwrap(), s);

    let err = s.set("colour", "blue").unwrap_err().to_string();
    assert!(err.contains("no setting \"colour\""), "{err}");
    assert!(err.contains("forward_always"), "{err}");
    for (key, value) in [
        ("do_not_disturb", "maybe"),
        ("voicemail_after", "1"),
        ("voicemail_after", "301"),
        ("voicemail_after", "-5"),
        ("forward_always", "carol smith"),
        ("forward_always", "sip:"),
        ("display_name", "a\"b"),
        ("display_name", &"x".repeat(65)),
    ] {
        let err = s.set(key, value).unwrap_err().to_string();
        assert!(err.starts_with(key), "{key}={value:?}: {err}");
    }
    let many: Vec<String> = (0..33).map(|i| format!("u{i}")).collect();
    assert!(s.set("blocked", &many.join(",")).is_err());
}

#[test]
fn settings_decoding_refuses_what_set_would() {
    let pairs = |list: &[(&str, &str)]| encode_pairs(list.iter().copied());
    for bad in [
        pairs(&[("colour", "blue")]),
        pairs(&[("do_not_disturb", "ON")]),
        pairs(&[("do_not_disturb", "")]),
        pairs(&[("voicemail", "on"), ("do_not_disturb", "on")]),
        pairs(&[("voicemail_after", "9999")]),
    ] {
        assert!(Settings::decode(&bad).is_err(), "{bad:02x?}");
    }
    assert!(Settings::decode(&pairs(&[("do_not_disturb", "on")])).is_ok());
}

const CARDS: &str = "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Bob Smith\r\nNICKNAME:bob,bobby\r\n\
item1.IMPP;PREF=1:sip:bob@Example.org\r\nEND:VCARD\r\n\
BEGIN:VCARD\nVERSION:3.0\nFN:carol\nTEL;TYPE=cell:+1 555 0100\nEND:VCARD\n\
BEGIN:VCARD\r\nVERSION:4.0\r\nFN:dave\r\nIMPP:sip:dave@exa\r\n mple.org\r\nEND:VCARD\r\n";

#[test]
fn vcards_import_names_and_sip_addresses() {
    let found = vcard::parse(CARDS).unwrap();
    assert_eq!(
        found.contacts,
        [
            ("bob".to_owned(), "sip:bob@example.org".to_owned()),
            // A folded line is one line.
            ("dave".to_owned(), "sip:dave@example.org".to_owned()),
        ]
    );
    assert_eq!(found.skipped, 1, "carol has no SIP address");
}

#[test]
fn a_bad_card_fails_the_import_naming_every_problem() {
    let text = "BEGIN:VCARD\nFN:Bob Smith\nIMPP:sip:bob@example.org\nEND:VCARD\n\
BEGIN:VCARD\nFN:eve\nIMPP:sip:\nEND:VCARD\nBEGIN:VCARD\nFN:x\n";
    let errors = vcard::parse(text).unwrap_err();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].contains("card at line 1") && errors[0].contains("NICKNAME"));
    assert!(errors[1].contains("card at line 5") && errors[1].contains("not a SIP"));
    assert!(errors[2].contains("no END:VCARD"));
    let big = "x".repeat(crate::limits::MAX_VCARD_FILE_LEN + 1);
    assert!(vcard::parse(&big).unwrap_err()[0].contains("at most"));
}

#[test]
fn export_imports_back_and_baresip_reads_one_contact_a_line() {
    let mut book = AddressBook::new();
    book.add("bob", BOB).unwrap();
    book.add("carol_w", "sip:carol@example.org").unwrap();
    let text = vcard::export(&book);
    assert!(text.contains("BEGIN:VCARD\r\nVERSION:4.0\r\nFN:bob\r\n"));
    let back = vcard::parse(&text).unwrap();
    let mut again = AddressBook::new();
    for (name, aor) in back.contacts {
        again.add(&name, &aor).unwrap();
    }
    assert_eq!(again, book);
    assert_eq!(
        vcard::export_baresip(&book),
        format!("\"bob\" <{BOB}>\n\"carol_w\" <sip:carol@example.org>\n")
    );
}
