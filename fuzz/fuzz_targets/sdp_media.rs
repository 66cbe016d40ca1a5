//! SDP from phones and nodes, and media datagrams from nodes: never a
//! panic; a description rewritten to the node keeps its streams and
//! loses every address of the phone; a datagram header round-trips
//! (the checks: `p2psip::sip::fuzzing::sdp_media`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    p2psip::sip::fuzzing::sdp_media(data);
});
