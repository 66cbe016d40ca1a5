//! The user's data as it comes back from the overlay (an address book's
//! or the settings' plaintext, once opened) and as a user's vCard file:
//! never panics; what decodes re-encodes to the input; what a vCard
//! import finds, the address book takes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    p2psip::userdata::fuzzing::userdata_decode(data);
});
