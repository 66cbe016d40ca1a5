//! SIP over TCP, read incrementally: any bytes, cut into reads of any
//! sizes, give the frames and errors that parsing the whole buffer gives,
//! and no byte is scanned twice (the checks:
//! `p2psip::sip::fuzzing::sip_stream`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    p2psip::sip::fuzzing::sip_stream(data);
});
