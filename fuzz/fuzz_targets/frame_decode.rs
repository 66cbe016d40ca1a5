//! Frame decoding: never panics; an accepted frame re-encodes to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use p2psip::wire::{decode_frame, encode_frame};

fuzz_target!(|data: &[u8]| {
    if let Ok((body, used)) = decode_frame(data) {
        let again = encode_frame(body).expect("an accepted body is encodable");
        assert_eq!(&data[..used], &again[..]);
    }
});
