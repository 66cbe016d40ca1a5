//! Benchmark: what sealing the user's own data costs, printed as one
//! Markdown table.
//!
//! 1. HPKE seal and open (X25519, HKDF-SHA256, ChaCha20-Poly1305) of a
//!    160-byte item (a voice-mail envelope's size) and of a full private
//!    record's plaintext (`MAX_PRIVATE_PLAINTEXT`, about 16 KiB).
//! 2. A whole address-book write as `contacts add` does it (derive the
//!    slot key, encode, seal, sign) and a whole read as the node serving
//!    the user does it (verify the record, open, decode), for a book of
//!    150 self-certifying contacts (about as many as fit).
//! 3. A 60 s voice message (480,000 bytes of G.711) made ready to store
//!    as the recording node does it (seal envelope and audio, cut into
//!    30 chunks each signed by a fresh key) and opened as
//!    `voicemail fetch` does it (verify 30 chunks, open).
//!
//! Nothing asserts a time. Run: `cargo bench --bench userdata` (release
//! build; figures in `docs/benchmarks.md`). `P2PSIP_BENCH_QUICK=1` runs
//! the same code with tiny counts (CI does, to keep it working).

use p2psip::identity::sealing::{seal, EncryptionSecretKey};
use p2psip::identity::SecretKey;
use p2psip::overlay::record::private::MAX_PRIVATE_PLAINTEXT;
use p2psip::overlay::record::PrivateSlot;
use p2psip::overlay::record::RecordPolicy;
use p2psip::userdata::voicemail::{compose, open_audio, Envelope, PCMU};
use p2psip::userdata::{open_slot, seal_slot, AddressBook, CONTACTS_SLOT};
use std::time::Instant;

// Shared by every benchmark; this one reads no memory or CPU figures.
#[allow(dead_code)]
mod common;
use common::{progress, quick, Table};

const NOW: u64 = 1_750_000_000;

/// Operations a second of `op`, run `n` times.
fn rate(n: u32, mut op: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        op();
    }
    f64::from(n) / start.elapsed().as_secs_f64()
}

fn main() {
    let n = if quick() { 10 } else { 5_000 };
    let mut table = Table::default();
    let key = EncryptionSecretKey::generate();
    let public = key.public();

    progress("HPKE seal and open");
    for (label, len) in [("160 B", 160), ("16 KiB", MAX_PRIVATE_PLAINTEXT)] {
        let plaintext = vec![0x5a; len];
        let sealed = seal(&public, b"bench", b"", &plaintext).expect("seals");
        let seals = rate(n, || {
            std::hint::black_box(seal(&public, b"bench", b"", &plaintext).expect("seals"));
        });
        let opens = rate(n, || {
            std::hint::black_box(key.open(b"bench", b"", &sealed).expect("opens"));
        });
        table.row(format!("HPKE seals/s, {label}"), format!("{seals:.0}"));
        table.row(format!("HPKE opens/s, {label}"), format!("{opens:.0}"));
    }

    progress("address book write and read");
    let user = SecretKey::generate();
    let mut book = AddressBook::new();
    for i in 0..150 {
        let aor = format!("sip:{}@p2psip", hex::encode([i as u8; 32]));
        book.add(&format!("contact{i}"), &aor).expect("fits");
    }
    let plaintext = book.encode();
    let writes = rate(n / 10 + 1, || {
        let slot = PrivateSlot::new(&user, CONTACTS_SLOT).expect("slot");
        let record = seal_slot(
            &slot,
            &public,
            &book.encode(),
            Some(1),
            NOW,
            NOW * 1_000_000,
        )
        .expect("seals");
        std::hint::black_box(record.encode());
    });
    let slot = PrivateSlot::new(&user, CONTACTS_SLOT).expect("slot");
    let record = seal_slot(&slot, &public, &plaintext, None, NOW, NOW * 1_000_000).expect("seals");
    let reads = rate(n / 10 + 1, || {
        let opened = open_slot(&slot, "address book", &key, &record, NOW + 1).expect("opens");
        std::hint::black_box(AddressBook::decode(&opened).expect("decodes"));
    });
    table.row(
        format!(
            "address book of 150 contacts ({} B): writes/s (slot key, seal, sign)",
            plaintext.len()
        ),
        format!("{writes:.0}"),
    );
    table.row(
        "address book of 150 contacts: reads/s (verify, open, decode)",
        format!("{reads:.0}"),
    );

    progress("a 60 s voice message");
    let audio: Vec<u8> = (0..480_000u32).map(|i| (i % 251) as u8).collect();
    let envelope = Envelope {
        from: format!("sip:{}@p2psip", hex::encode([7; 32])),
        verified: true,
        time: NOW,
        duration_ms: 60_000,
        codec: PCMU,
    };
    let m = if quick() { 2 } else { 50 };
    let composes = rate(m, || {
        std::hint::black_box(compose(&public, &envelope, &audio).expect("composes"));
    });
    let message = compose(&public, &envelope, &audio).expect("composes");
    let found: Vec<_> = message.chunks.iter().cloned().map(Some).collect();
    let policy = RecordPolicy::self_certifying("p2psip");
    let opens = rate(m, || {
        std::hint::black_box(
            open_audio(&key, &message.item, &found, &policy, NOW + 1).expect("opens"),
        );
    });
    table.row(
        format!(
            "60 s voice message: made ready to store/s (seal, {} chunks signed)",
            message.chunks.len()
        ),
        format!("{composes:.1}"),
    );
    table.row(
        "60 s voice message: opened/s (verify the chunks, open)",
        format!("{opens:.1}"),
    );
    table.print();
}
