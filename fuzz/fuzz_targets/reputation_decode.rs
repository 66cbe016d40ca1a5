//! Persisted reputation tables: decoding never panics; whatever
//! `decode_verbatim` accepts re-encodes to exactly the input; loading at
//! any time (which drops and cuts bans) gives a table that loads again
//! unchanged.
#![no_main]
use libfuzzer_sys::fuzz_target;
use p2psip::reputation::Reputation;

/// A time within the seed corpus's bans (unix ms).
const NOW: u64 = 1_750_000_000_000;

fuzz_target!(|data: &[u8]| {
    if let Ok(table) = Reputation::decode_verbatim(data) {
        assert_eq!(table.encode(), data);
    }
    for now in [0, NOW, u64::MAX] {
        if let Ok(table) = Reputation::decode(data, now) {
            let bytes = table.encode();
            let again = Reputation::decode(&bytes, now).expect("a loaded table reloads");
            assert_eq!(again.encode(), bytes);
        }
    }
});
