//! The dialog layer under attack: a node with a call up between two of
//! its phones takes messages from the phones, a stranger's address and
//! two nodes. Nothing a stranger sends reaches a phone, opens or closes a
//! media port, or draws back more than one small answer; nothing the
//! node sends goes to a third address (the checks:
//! `p2psip::sip::fuzzing::sip_dialog`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    p2psip::sip::fuzzing::sip_dialog(data);
});
