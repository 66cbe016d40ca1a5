//! STUN and TURN datagrams: decoding, the integrity check and a TURN
//! server holding an allocation (permission, channel) fed the input as
//! it is, signed with a valid user's key, from a stranger and from a
//! peer never panic; what the server sends decodes; every allocation
//! expires (p2psip::turn::fuzzing).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    p2psip::turn::fuzzing::fuzz_datagram(data);
});
