//! Relay descriptors and guard state: never a panic; a descriptor value,
//! a record and a guard state that decode re-encode to the same bytes; a
//! record that verifies keeps exactly the bytes received and, if it is a
//! relay descriptor, yields its relay (unless withdrawn).
#![no_main]
use libfuzzer_sys::fuzz_target;
use p2psip::overlay::record::{Record, RecordKind, RecordPolicy, RelayDescriptor};
use p2psip::relay::path::{Guards, VerifiedRelay};

/// The time at which the seed corpus's valid records verify.
const NOW: u64 = 1_750_000_000;

fuzz_target!(|data: &[u8]| {
    if let Ok(desc) = RelayDescriptor::decode(data) {
        assert_eq!(desc.encode(), data);
    }
    if let Ok(guards) = Guards::decode(data) {
        assert_eq!(guards.encode(), data);
    }
    if let Ok(record) = Record::decode(data) {
        assert_eq!(record.encode(), data);
        let policy = RecordPolicy::self_certifying("p2psip");
        if let Ok(verified) = record.verify(&policy, NOW) {
            assert_eq!(verified.encoded(), data);
            if verified.kind() == RecordKind::RelayDescriptor {
                let desc = verified
                    .relay_descriptor()
                    .expect("a verified value decodes");
                assert_eq!(
                    VerifiedRelay::from_record(&verified).is_some(),
                    !desc.is_withdrawn()
                );
            }
        }
    }
});
