//! Record decoding and verification: never panics; `encode(decode(x)) == x`
//! whenever decode succeeds, for records and for the kinds' values; a record
//! that verifies keeps exactly the bytes received.
#![no_main]
use libfuzzer_sys::fuzz_target;
use p2psip::overlay::record::{
    private, MailboxChunk, MailboxValue, OwnerValue, Profile, Record, RecordPolicy, Registration,
};
use p2psip::userdata::voicemail::Envelope;

/// The time at which the seed corpus's valid records verify.
const NOW: u64 = 1_750_000_000;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = Record::decode(data) {
        assert_eq!(record.encode(), data);
        let policy = RecordPolicy::self_certifying("p2psip");
        if let Ok(verified) = record.verify(&policy, NOW) {
            assert_eq!(verified.encoded(), data);
        }
    }
    // Signatures keep the fuzzer out of the value parsers behind verify;
    // reach them directly.
    if let Ok(registration) = Registration::decode(data) {
        assert_eq!(registration.encode(), data);
    }
    if let Ok(value) = OwnerValue::decode(data) {
        assert_eq!(value.encode(), data);
    }
    if let Ok(profile) = Profile::decode(data) {
        assert_eq!(profile.encode(), data);
    }
    if let Ok(sealed) = private::sealed_box(data) {
        assert!(sealed.len() < data.len());
    }
    if let Ok(value) = MailboxValue::decode(data) {
        assert_eq!(value.encode(), data);
    }
    if let Ok(chunk) = MailboxChunk::decode(data) {
        assert_eq!(chunk.encode(), data);
    }
    if let Ok(envelope) = Envelope::decode(data) {
        assert_eq!(envelope.encode(), data);
    }
});
