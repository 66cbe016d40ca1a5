//! The voicemail UA under attack: after a valid INVITE, any SIP from the
//! proxy or a stranger and any RTP from the call's media address or
//! elsewhere, on a moving clock. Nothing panics; SIP goes only to the
//! proxy and parses; a stranger draws nothing; recordings and calls stay
//! within their limits; every call ends when its timers run out (the
//! checks: `p2psip::sip::fuzzing::voicemail_ua`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    p2psip::sip::fuzzing::voicemail_ua(data);
});
