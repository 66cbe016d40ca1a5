//! Binding decoding and verification: never panics; an accepted binding
//! re-encodes to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use p2psip::binding::Binding;

fuzz_target!(|data: &[u8]| {
    if let Ok(binding) = Binding::decode(data) {
        assert_eq!(binding.encode(), data);
        let _ = binding.verify(1_800_000_000);
    }
    let _ = Binding::from_pem(data);
});
