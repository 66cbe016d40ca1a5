//! Message decoding: never panics; `encode(decode(x)) == x` whenever decode succeeds.
#![no_main]
use libfuzzer_sys::fuzz_target;
use p2psip::wire::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::decode(data) {
        assert_eq!(message.encode(), data);
    }
});
