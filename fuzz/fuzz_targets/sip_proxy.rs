//! The SIP core on whatever parses: a request or a response, from a
//! phone or from a node of the overlay, reaching a proxy that serves
//! accounts, never panics, and whatever it sends is a message that
//! parses again (the checks: `p2psip::sip::fuzzing::sip_proxy`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    p2psip::sip::fuzzing::sip_proxy(data);
});
