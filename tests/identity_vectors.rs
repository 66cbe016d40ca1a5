//! Identity spec v1 against the shared test vectors (RFC 8032 keys).
//!
//! `tests/data/identity-v1.json` is a copy of `shared/vectors/identity-v1.json`;
//! when the shared folder sits beside the repository the two must agree.

use p2psip::identity::{aor_key, IdKind, NodeId, SecretKey, UserId};

fn vectors() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/identity-v1.json"
    ))
    .expect("vector file is part of the repository");
    serde_json::from_str(&text).expect("vector file is JSON")
}

fn hex32(v: &serde_json::Value) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex::decode_to_slice(v.as_str().expect("hex string"), &mut out).expect("64 hex digits");
    out
}

#[test]
fn ids_match_the_spec_vectors() {
    let v = vectors();
    let keys = v["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 3);
    for k in keys {
        let secret = SecretKey::from_seed(&hex32(&k["rfc8032_secret_key"]));
        let public = secret.public();
        assert_eq!(public.as_bytes(), &hex32(&k["public_key"]));
        let node_id = public.node_id();
        assert_eq!(node_id, NodeId::from_bytes(hex32(&k["node_id"])));
        assert_eq!(node_id.to_string(), k["node_id"].as_str().unwrap());
        assert_eq!(public.user_id(), UserId::from_bytes(hex32(&k["user_id"])));
        assert_eq!(
            u64::from(node_id.puzzle_bits()),
            k["node_id_puzzle_bits"].as_u64().unwrap()
        );
        assert_eq!(IdKind::Node.derive(&public), *node_id.as_bytes());
        // Users and nodes never share an identifier.
        assert_ne!(node_id.as_bytes(), public.user_id().as_bytes());
    }
}

#[test]
fn aor_keys_match_the_spec_vectors() {
    let v = vectors();
    for a in v["aor_keys"].as_array().expect("aor_keys") {
        assert_eq!(aor_key(a["aor"].as_str().unwrap()), hex32(&a["key"]));
    }
}

#[test]
fn repository_copy_matches_the_shared_vectors_when_present() {
    let shared = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/vectors/identity-v1.json"
    );
    if let Ok(text) = std::fs::read_to_string(shared) {
        let shared: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(shared, vectors(), "tests/data copy is stale");
    }
}
