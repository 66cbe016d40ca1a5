//! The test-only fixtures under `certs/test/`: certificates made by
//! p2psip from fixed seeds and by OpenSSL, verified as a peer would.

use p2psip::identity::{
    pem_certificates, CertError, IdKind, SecretKey, TrustAnchors, VerifyPolicy,
};

fn der(name: &str) -> Vec<u8> {
    let path = format!("{}/certs/test/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    pem_certificates(&text).expect("PEM").remove(0)
}

fn anchors() -> TrustAnchors {
    let path = format!("{}/certs/test/TEST-ONLY-ca.pem", env!("CARGO_MANIFEST_DIR"));
    let mut a = TrustAnchors::default();
    a.add_pem(&std::fs::read(path).unwrap()).unwrap();
    a
}

/// A time inside every fixture's validity.
const NOW: i64 = 1_800_000_000;

#[test]
fn enrolled_fixtures_verify_under_the_test_anchor() {
    let policy = VerifyPolicy::enrolled(anchors(), 0);
    let node = SecretKey::from_seed(&[0x01; 32]).public();
    assert_eq!(
        policy.verify_node(&der("TEST-ONLY-node-enrolled.pem"), NOW),
        Ok(node.node_id())
    );
    let user = policy
        .verify(&der("TEST-ONLY-user-alice.pem"), NOW)
        .unwrap();
    assert_eq!(user.kind, IdKind::User);
    assert_eq!(
        user.user_id(),
        Some(SecretKey::from_seed(&[0x02; 32]).public().user_id())
    );
    assert_eq!(user.sip_names, ["sip:alice@example.org"]);
    // Self-signed and foreign certificates are not enrolled.
    assert_eq!(
        policy.verify(&der("TEST-ONLY-node-selfsigned.pem"), NOW),
        Err(CertError::UnknownIssuer)
    );
    // OpenSSL marks its self-signed certificates CA:TRUE, which no leaf
    // of an enrolled overlay may be.
    assert_eq!(
        policy.verify(&der("TEST-ONLY-openssl-ed25519.pem"), NOW),
        Err(CertError::IsCa)
    );
}

#[test]
fn self_certifying_mode_accepts_other_tools_ed25519_only() {
    let open = VerifyPolicy::self_certifying(0);
    assert!(open
        .verify_node(&der("TEST-ONLY-openssl-ed25519.pem"), NOW)
        .is_ok());
    assert!(open
        .verify_node(&der("TEST-ONLY-node-selfsigned.pem"), NOW)
        .is_ok());
    assert_eq!(
        open.verify(&der("TEST-ONLY-openssl-p256.pem"), NOW),
        Err(CertError::NotEd25519Key)
    );
    // An issued certificate is not self-signed.
    assert!(matches!(
        open.verify(&der("TEST-ONLY-node-enrolled.pem"), NOW),
        Err(CertError::BadSignature(_))
    ));
}
