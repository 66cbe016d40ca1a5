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
        // The CA of certs/test/: its issued fixtures (in the seed corpus)
        // reach the enrolled-mode checks.
        let (der, _) =
            build_ca_certificate(&key, "p2psip TEST-ONLY CA", 0, 4_000_000_000).expect("CA");
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
    // The PEM path an operator's files take.
    let _ = TrustAnchors::default().add_pem(data);
});
