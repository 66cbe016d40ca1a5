//! Certificate verification in both modes: never panics on any bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use p2psip::identity::{build_ca_certificate, SecretKey, TrustAnchor, TrustAnchors, VerifyPolicy};
use std::sync::OnceLock;

/// A fixed time inside the seed certificates' validity.
const NOW: i64 = 1_800_000_000;

fn enrolled() -> &'static VerifyPolicy {
    static POLICY: OnceLock<VerifyPolicy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let key = SecretKey::from_seed(&[0xca; 32]);
        let (der, _) = build_ca_certificate(&key, "fuzz CA", 0, 4_000_000_000).expect("CA");
        let mut anchors = TrustAnchors::default();
        anchors
            .push(TrustAnchor::from_der(&der).expect("anchor"))
            .expect("room");
        VerifyPolicy::enrolled(anchors, 0)
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = VerifyPolicy::self_certifying(0).verify(data, NOW);
    let _ = VerifyPolicy::self_certifying(8).verify_node(data, NOW);
    let _ = enrolled().verify(data, NOW);
    let _ = TrustAnchor::from_der(data);
});
