//! Tests of records: encoding, signatures, the kinds' rules, bounds.

use super::*;
use crate::binding::{Binding, BindingError};
use crate::identity::{
    aor_key, build_ca_certificate, issue_certificate, CertError, IdKind, NodeId, PublicKey,
    SecretKey, TrustAnchor, TrustAnchors, VerifyPolicy,
};
use crate::limits::{
    MAX_AOR_LEN, MAX_CONTACTS_PER_ENTRY, MAX_CONTACT_LEN, MAX_DISPLAY_NAME_LEN,
    MAX_OWNER_VALUE_NAME_LEN, MAX_RECORD_LIFETIME, MAX_RECORD_VALUE_LEN, MAX_REGISTRATION_ENTRIES,
};
use crate::wire::cbor::encoder;
use crate::wire::WireError;
use sha2::{Digest, Sha256};

const NOW: u64 = 1_750_000_000;
const HOUR: u64 = 3600;
const OVERLAY: &str = "p2psip";

fn key(seed: u8) -> SecretKey {
    SecretKey::from_seed(&[seed; 32])
}

fn node(seed: u8) -> NodeId {
    key(seed).public().node_id()
}

fn open() -> RecordPolicy {
    RecordPolicy::self_certifying(OVERLAY)
}

/// A self-certifying registration of `user` with entries for the nodes
/// of the given seeds, each bound from NOW - HOUR to NOW + 10 HOUR.
fn registration(user: &SecretKey, nodes: &[u8]) -> Registration {
    let mut reg = Registration::self_certifying(&user.public().user_id(), OVERLAY).unwrap();
    for &n in nodes {
        let binding = Binding::sign(user, node(n), NOW - HOUR, NOW + 10 * HOUR);
        reg.upsert(RegistrationEntry::new(
            binding,
            vec![format!("sip:dev{n}@192.0.2.{n}:5060")],
            NOW + HOUR,
        ))
        .unwrap();
    }
    reg
}

fn value_record(owner: &SecretKey, name: &str, data: &[u8], seq: u64) -> Record {
    OwnerValue::new(name, data.to_vec())
        .unwrap()
        .sign(owner, seq, NOW + HOUR)
}

fn rfc8032_key1() -> SecretKey {
    let mut seed = [0u8; 32];
    hex::decode_to_slice(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        &mut seed,
    )
    .unwrap();
    SecretKey::from_seed(&seed)
}

#[test]
fn owner_value_round_trips_and_verifies() {
    let alice = key(1);
    let record = value_record(&alice, "config", b"{\"ring\":3}", 7);
    let bytes = record.encode();
    let decoded = Record::decode(&bytes).unwrap();
    assert_eq!(decoded, record);
    let v = decoded.verify(&open(), NOW).unwrap();
    assert_eq!(v.encoded(), &bytes[..]);
    assert_eq!(v.kind(), RecordKind::OwnerValue);
    assert_eq!(v.seq(), 7);
    assert_eq!(v.expires(), NOW + HOUR);
    assert_eq!(v.owner(), alice.public().as_bytes());
    assert_eq!(v.owner_id(), alice.public().user_id());
    assert_eq!(
        *v.key(),
        owner_value_key(&alice.public().user_id(), "config")
    );
    let value = v.owner_value().unwrap();
    assert_eq!(value.name(), "config");
    assert_eq!(value.data(), b"{\"ring\":3}");
    assert!(v.registration().is_none());
    assert_eq!(OwnerValue::decode(v.value()).unwrap(), value);
}

#[test]
fn owner_value_key_is_the_documented_hash() {
    let id = key(1).public().user_id();
    let mut h = Sha256::new();
    h.update(b"p2psip-value-v1");
    h.update(id.as_bytes());
    h.update(b"address-book");
    let expected: [u8; 32] = h.finalize().into();
    assert_eq!(owner_value_key(&id, "address-book"), Key(expected));
    // Another user, same name: another key.
    assert_ne!(
        owner_value_key(&key(2).public().user_id(), "address-book"),
        Key(expected)
    );
}

#[test]
fn registration_round_trips_and_verifies() {
    let alice = key(1);
    let reg = registration(&alice, &[20, 21, 22]);
    let record = reg.sign(&alice, 1, NOW + 2 * HOUR).unwrap();
    let bytes = record.encode();
    let decoded = Record::decode(&bytes).unwrap();
    assert_eq!(decoded, record);
    let v = decoded.verify(&open(), NOW).unwrap();
    let got = v.registration().unwrap();
    assert_eq!(got, reg);
    assert_eq!(
        got.aor(),
        format!("sip:{}@p2psip", alice.public().user_id())
    );
    assert_eq!(*v.key(), Key(aor_key(got.aor())));
    assert_eq!(got.live_entries(NOW).count(), 3);
    assert_eq!(got.live_entries(NOW + HOUR).count(), 0);
    // Entries are sorted by node id, whatever the insertion order.
    let ids: Vec<NodeId> = got.entries().iter().map(|e| e.node_id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    assert_eq!(Registration::decode(&reg.encode()).unwrap(), reg);
    // An empty registration (an unregistration) is valid too.
    let empty = Registration::self_certifying(&alice.public().user_id(), OVERLAY).unwrap();
    let v = empty
        .sign(&alice, 2, NOW + HOUR)
        .unwrap()
        .verify(&open(), NOW)
        .unwrap();
    assert!(v.registration().unwrap().entries().is_empty());
}

#[test]
fn registration_builder_replaces_removes_and_bounds() {
    let alice = key(1);
    let mut reg = registration(&alice, &[20, 21]);
    let binding = Binding::sign(&alice, node(20), NOW, NOW + HOUR);
    reg.upsert(RegistrationEntry::new(binding, vec![], NOW + 60))
        .unwrap();
    assert_eq!(reg.entries().len(), 2);
    let e = reg
        .entries()
        .iter()
        .find(|e| e.node_id == node(20))
        .unwrap();
    assert_eq!(e.expires, NOW + 60);
    assert!(reg.remove(&node(21)).is_some());
    assert!(reg.remove(&node(21)).is_none());
    reg.prune(NOW + 60);
    assert!(reg.entries().is_empty());

    let too_many = vec!["sip:x@y".to_string(); MAX_CONTACTS_PER_ENTRY + 1];
    let binding = Binding::sign(&alice, node(20), NOW, NOW + HOUR);
    assert_eq!(
        reg.upsert(RegistrationEntry::new(binding.clone(), too_many, NOW + 1)),
        Err(RegistrationError::TooManyContacts {
            count: MAX_CONTACTS_PER_ENTRY as u64 + 1
        })
    );
    let long = vec!["x".repeat(MAX_CONTACT_LEN + 1)];
    assert_eq!(
        reg.upsert(RegistrationEntry::new(binding, long, NOW + 1)),
        Err(RegistrationError::ContactTooLong)
    );
    let mut full = Registration::new("sip:a@b", None).unwrap();
    for n in 0..MAX_REGISTRATION_ENTRIES as u8 {
        let b = Binding::sign(&alice, node(100 + n), NOW, NOW + HOUR);
        full.upsert(RegistrationEntry::new(b, vec![], NOW + 1))
            .unwrap();
    }
    let b = Binding::sign(&alice, node(99), NOW, NOW + HOUR);
    assert!(matches!(
        full.upsert(RegistrationEntry::new(b, vec![], NOW + 1)),
        Err(RegistrationError::TooManyEntries { .. })
    ));
    assert_eq!(
        Registration::new(&"a".repeat(MAX_AOR_LEN + 1), None),
        Err(RegistrationError::AorTooLong {
            len: MAX_AOR_LEN + 1
        })
    );
}

/// The byte-exact examples of docs/protocol.md ("Records"): the owner is
/// RFC 8032 test key 1; Ed25519 is deterministic.
#[test]
fn documented_examples_are_byte_exact() {
    let owner = rfc8032_key1();
    // Owner value "greeting" = "hello".
    let record = OwnerValue::new("greeting", b"hello".to_vec())
        .unwrap()
        .sign(&owner, 1, 1_750_003_600);
    let expected = "88 01 02 \
         5820 543213d47a17044ac0be86a68b5741c37bfd3615bed2b315f41852ba9bfa5dc4 \
         5820 d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a \
         01 1a 684eef90 \
         50 82 68 6772656574696e67 45 68656c6c6f \
         5840 58e58d5da7f6c2fe660777a14072c7aa11a3ce1bff358ff8920ecbf6db1977d8\
         e9d1eb47c19bc275b388b0c7c108a6e9d389df870f4f06b2c7460f8d8f58280c";
    let expected: String = expected.split_whitespace().collect();
    assert_eq!(hex::encode(record.encode()), expected);
    let v = Record::decode(&record.encode())
        .unwrap()
        .verify(&open(), NOW)
        .unwrap();
    assert_eq!(v.owner_value().unwrap().data(), b"hello");

    // Registration of the owner's self-certifying AOR in overlay
    // "p2psip" through the node of test key 2, with the binding of the
    // protocol's binding example.
    let node2: NodeId = "74e69e973f2c642e02d22152438dc61fcbdf04dc38ab125a6e091d17f69e8276"
        .parse()
        .unwrap();
    let binding = Binding::sign(&owner, node2, 1_700_000_000, 1_800_000_000);
    let mut reg = Registration::self_certifying(&owner.public().user_id(), OVERLAY).unwrap();
    reg.upsert(RegistrationEntry::new(
        binding,
        vec!["sip:alice@192.0.2.1:5060".into()],
        1_750_003_600,
    ))
    .unwrap();
    let record = reg.sign(&owner, 1, 1_750_003_600).unwrap();
    assert_eq!(
        hex::encode(record.key.0),
        "35c68d22f3a41ffe9cee296e804a0ae00479b703f22f03ab865f2e0761407432"
    );
    let expected = "88 01 01 \
         5820 35c68d22f3a41ffe9cee296e804a0ae00479b703f22f03ab865f2e0761407432 \
         5820 d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a \
         01 1a 684eef90 \
         590127 83 \
           784b 7369703a3137613736343339643964316466363634636163633834613965326564\
                386230366238333837353739386165366464323761383465343530366566326430\
                313440703270736970 \
           f6 \
           81 84 5820 74e69e973f2c642e02d22152438dc61fcbdf04dc38ab125a6e091d17f69e8276 \
                 81 78 18 7369703a616c696365403139322e302e322e313a35303630 \
                 1a 684eef90 \
                 5892 86015820d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f7\
                      07511a582074e69e973f2c642e02d22152438dc61fcbdf04dc38ab125a6e091d17\
                      f69e82761a6553f1001a6b49d20058405d88ec0a6d9d62ec5cebd7cf32545f27e4\
                      7f12974b98d7f589ba3e21bb3e15e269cddc93d7526ddea81fbb40895c44d9996b\
                      72ac5df75999541fca05d4c89c06 \
         5840 48ffc3274295f241e281796e426fad203b194f13a472db535ba12b44712e0a92\
         910d3d232f93b30efccb79208ca2c38e475e809b7ac49cbbe7d338a6ae1f0303";
    let expected: String = expected.split_whitespace().collect();
    assert_eq!(hex::encode(record.encode()), expected);
    let v = Record::decode(&record.encode())
        .unwrap()
        .verify(&open(), NOW)
        .unwrap();
    assert_eq!(v.registration().unwrap().live_entries(NOW).count(), 1);
}

#[test]
fn every_field_change_breaks_the_signature() {
    let alice = key(1);
    let reg = registration(&alice, &[20]);
    for record in [
        reg.sign(&alice, 5, NOW + HOUR).unwrap(),
        value_record(&alice, "n", b"d", 5),
    ] {
        assert!(record.verify(&open(), NOW).is_ok());
        let mut changes: Vec<Record> = Vec::new();
        let mut r = record.clone();
        r.kind = match r.kind {
            RecordKind::OwnerValue => RecordKind::SipRegistration,
            _ => RecordKind::OwnerValue,
        };
        changes.push(r);
        let mut r = record.clone();
        r.key.0[0] ^= 1;
        changes.push(r);
        let mut r = record.clone();
        r.owner = *key(2).public().as_bytes();
        changes.push(r);
        let mut r = record.clone();
        r.seq += 1;
        changes.push(r);
        let mut r = record.clone();
        r.expires -= 1;
        changes.push(r);
        let mut r = record.clone();
        if let Some(last) = r.value.last_mut() {
            *last ^= 1;
        }
        changes.push(r);
        let mut r = record.clone();
        r.value.push(0);
        changes.push(r);
        for i in [0, 31, 32, 63] {
            let mut r = record.clone();
            r.signature[i] ^= 1;
            changes.push(r);
        }
        for changed in changes {
            assert_eq!(
                changed.verify(&open(), NOW),
                Err(RecordError::BadSignature),
                "{changed:?}"
            );
        }
    }
    // An owner that is not a valid key.
    let mut r = value_record(&alice, "n", b"d", 5);
    r.owner = [0; 32];
    r.owner[0] = 1; // the identity point: small order
    assert_eq!(r.verify(&open(), NOW), Err(RecordError::InvalidOwnerKey));
}

#[test]
fn only_the_owner_can_write_its_aor() {
    let alice = key(1);
    let mallory = key(2);
    // Mallory registers Alice's AOR, under its key, with her own
    // binding of her own node, signed with her own key.
    let mut reg = Registration::self_certifying(&alice.public().user_id(), OVERLAY).unwrap();
    let binding = Binding::sign(&mallory, node(66), NOW - HOUR, NOW + HOUR);
    reg.upsert(RegistrationEntry::new(
        binding,
        vec!["sip:mallory@203.0.113.6".into()],
        NOW + HOUR,
    ))
    .unwrap();
    let forged = reg.sign(&mallory, 99, NOW + HOUR).unwrap();
    let err = forged.verify(&open(), NOW).unwrap_err();
    assert_eq!(
        err,
        RecordError::NotOwner(NotOwnerReason::AorNotSelfCertifying)
    );
    assert!(err.is_provable_misbehaviour());
    // Nor may she put her registration under Alice's AOR key.
    let mine = Registration::self_certifying(&mallory.public().user_id(), OVERLAY).unwrap();
    let r = Record::sign(
        &mallory,
        RecordKind::SipRegistration,
        reg.key(),
        1,
        NOW + HOUR,
        mine.encode(),
    );
    assert_eq!(r.verify(&open(), NOW), Err(RecordError::WrongKey));
    // An AOR of another overlay is not hers either.
    let elsewhere = Registration::self_certifying(&mallory.public().user_id(), "other")
        .unwrap()
        .sign(&mallory, 1, NOW + HOUR)
        .unwrap();
    assert_eq!(
        elsewhere.verify(&open(), NOW),
        Err(RecordError::NotOwner(NotOwnerReason::AorNotSelfCertifying))
    );
    // A self-certifying registration carries no certificate.
    let with_cert = Registration::new(
        &self_certifying_aor(&mallory.public().user_id(), OVERLAY),
        Some(vec![1, 2, 3]),
    )
    .unwrap()
    .sign(&mallory, 1, NOW + HOUR)
    .unwrap();
    assert_eq!(
        with_cert.verify(&open(), NOW),
        Err(RecordError::NotOwner(NotOwnerReason::CertificateNotAllowed))
    );
    // Mallory cannot write into Alice's owner values: the key is
    // derived from the writer's id.
    let value = OwnerValue::new("config", b"evil".to_vec()).unwrap();
    let r = Record::sign(
        &mallory,
        RecordKind::OwnerValue,
        value.key(&alice.public().user_id()),
        1,
        NOW + HOUR,
        value.encode(),
    );
    assert_eq!(r.verify(&open(), NOW), Err(RecordError::WrongKey));
}

struct Enrolled {
    policy: RecordPolicy,
    ca_key: SecretKey,
    ca_der: Vec<u8>,
}

fn enrolled() -> Enrolled {
    let ca_key = key(50);
    let now = NOW as i64;
    let (ca_der, _) =
        build_ca_certificate(&ca_key, "Example Overlay", now - 86_400, now + 365 * 86_400).unwrap();
    let mut anchors = TrustAnchors::default();
    anchors
        .push(TrustAnchor::from_der(&ca_der).unwrap())
        .unwrap();
    Enrolled {
        policy: RecordPolicy::enrolled("example.org", VerifyPolicy::enrolled(anchors, 0)),
        ca_key,
        ca_der,
    }
}

fn user_cert(o: &Enrolled, user: &PublicKey, aor: &str) -> Vec<u8> {
    let now = NOW as i64;
    issue_certificate(
        &o.ca_key,
        &o.ca_der,
        user,
        IdKind::User,
        Some(aor),
        now - 86_400,
        now + 30 * 86_400,
    )
    .unwrap()
    .0
}

fn enrolled_registration(user: &SecretKey, aor: &str, cert: Option<Vec<u8>>) -> Record {
    let mut reg = Registration::new(aor, cert).unwrap();
    let binding = Binding::sign(user, node(20), NOW - HOUR, NOW + 10 * HOUR);
    reg.upsert(RegistrationEntry::new(
        binding,
        vec!["sip:alice@192.0.2.1".into()],
        NOW + HOUR,
    ))
    .unwrap();
    reg.sign(user, 1, NOW + HOUR).unwrap()
}

#[test]
fn enrolled_overlay_accepts_a_certified_registration() {
    let o = enrolled();
    let alice = key(1);
    let aor = "sip:alice@example.org";
    let cert = user_cert(&o, &alice.public(), aor);
    let record = enrolled_registration(&alice, aor, Some(cert.clone()));
    let v = Record::decode(&record.encode())
        .unwrap()
        .verify(&o.policy, NOW)
        .unwrap();
    let reg = v.registration().unwrap();
    assert_eq!(reg.aor(), aor);
    assert_eq!(reg.user_cert(), Some(&cert[..]));
    assert_eq!(
        hex::encode(v.key().0),
        "1e001952c8710b51872091a679909b9e805695ee2e8d30b5b7043557ee078745"
    );
    // The self-certifying AOR is not accepted in an enrolled overlay
    // without a certificate listing it.
    let selfcert = Registration::self_certifying(&alice.public().user_id(), "example.org")
        .unwrap()
        .sign(&alice, 1, NOW + HOUR)
        .unwrap();
    assert_eq!(
        selfcert.verify(&o.policy, NOW),
        Err(RecordError::NotOwner(NotOwnerReason::CertificateRequired))
    );
}

#[test]
fn enrolled_overlay_refuses_a_certificate_for_another_aor_or_key() {
    let o = enrolled();
    let alice = key(1);
    let mallory = key(2);
    let aor = "sip:alice@example.org";
    // Mallory's genuine certificate names another AOR.
    let mallory_cert = user_cert(&o, &mallory.public(), "sip:mallory@example.org");
    let r = enrolled_registration(&mallory, aor, Some(mallory_cert));
    let err = r.verify(&o.policy, NOW).unwrap_err();
    assert_eq!(
        err,
        RecordError::NotOwner(NotOwnerReason::AorNotInCertificate)
    );
    assert!(err.is_provable_misbehaviour());
    // Mallory presents Alice's certificate: it is for another key.
    let alice_cert = user_cert(&o, &alice.public(), aor);
    let r = enrolled_registration(&mallory, aor, Some(alice_cert.clone()));
    assert_eq!(
        r.verify(&o.policy, NOW),
        Err(RecordError::NotOwner(
            NotOwnerReason::CertificateKeyMismatch
        ))
    );
    // A certificate from another CA.
    let other = {
        let ca_key = key(51);
        let now = NOW as i64;
        let (ca_der, _) =
            build_ca_certificate(&ca_key, "Rogue", now - 86_400, now + 86_400).unwrap();
        Enrolled {
            policy: open(),
            ca_key,
            ca_der,
        }
    };
    let rogue = user_cert(&other, &alice.public(), aor);
    let err = enrolled_registration(&alice, aor, Some(rogue))
        .verify(&o.policy, NOW)
        .unwrap_err();
    assert_eq!(
        err,
        RecordError::BadRegistration(RegistrationError::Certificate(CertError::UnknownIssuer))
    );
    assert!(!err.is_provable_misbehaviour());
    // A node certificate is no user certificate.
    let now = NOW as i64;
    let (node_cert, _) = issue_certificate(
        &o.ca_key,
        &o.ca_der,
        &alice.public(),
        IdKind::Node,
        None,
        now - 86_400,
        now + 86_400,
    )
    .unwrap();
    assert_eq!(
        enrolled_registration(&alice, aor, Some(node_cert)).verify(&o.policy, NOW),
        Err(RecordError::NotOwner(NotOwnerReason::NotAUserCertificate))
    );
    // No certificate at all.
    assert_eq!(
        enrolled_registration(&alice, aor, None).verify(&o.policy, NOW),
        Err(RecordError::NotOwner(NotOwnerReason::CertificateRequired))
    );
    // A registration may not outlive the certificate that backs it.
    let short = issue_certificate(
        &o.ca_key,
        &o.ca_der,
        &alice.public(),
        IdKind::User,
        Some(aor),
        now - 86_400,
        now + 60,
    )
    .unwrap()
    .0;
    let err = enrolled_registration(&alice, aor, Some(short))
        .verify(&o.policy, NOW)
        .unwrap_err();
    assert!(matches!(
        err,
        RecordError::BadRegistration(RegistrationError::OutlivesCertificate { .. })
    ));
    // Alice's own certificate works (the control).
    assert!(enrolled_registration(&alice, aor, Some(alice_cert))
        .verify(&o.policy, NOW)
        .is_ok());
}

/// Signs a registration whose entries are given as is (bypassing the
/// builder's sorting and bounds).
fn raw_registration(owner: &SecretKey, entries: Vec<RegistrationEntry>, expires: u64) -> Record {
    let reg = Registration {
        aor: self_certifying_aor(&owner.public().user_id(), OVERLAY),
        user_cert: None,
        entries,
    };
    Record::sign(
        owner,
        RecordKind::SipRegistration,
        reg.key(),
        1,
        expires,
        reg.encode(),
    )
}

fn entry(user: &SecretKey, n: u8, expires: u64, bound_until: u64) -> RegistrationEntry {
    RegistrationEntry::new(
        Binding::sign(user, node(n), NOW - HOUR, bound_until),
        vec![],
        expires,
    )
}

#[test]
fn registration_entries_must_be_the_owners_and_within_their_bounds() {
    let alice = key(1);
    let mallory = key(2);
    let bad = |entries, expires| {
        raw_registration(&alice, entries, expires)
            .verify(&open(), NOW)
            .unwrap_err()
    };
    let id = node(20);
    let ok = entry(&alice, 20, NOW + HOUR, NOW + 2 * HOUR);
    // Control.
    assert!(raw_registration(&alice, vec![ok.clone()], NOW + HOUR)
        .verify(&open(), NOW)
        .is_ok());
    // Entry outliving the record.
    assert_eq!(
        bad(vec![ok.clone()], NOW + HOUR - 1),
        RegistrationError::EntryOutlivesRecord { node_id: id }.into()
    );
    // Entry outliving its binding.
    assert_eq!(
        bad(
            vec![entry(&alice, 20, NOW + HOUR, NOW + HOUR - 1)],
            NOW + HOUR
        ),
        RegistrationError::EntryOutlivesBinding { node_id: id }.into()
    );
    // Binding by another user.
    assert_eq!(
        bad(
            vec![entry(&mallory, 20, NOW + HOUR, NOW + HOUR)],
            NOW + HOUR
        ),
        RegistrationError::BindingNotOwners { node_id: id }.into()
    );
    // Binding for another node.
    let mut other = ok.clone();
    other.node_id = node(21);
    assert_eq!(
        bad(vec![other], NOW + HOUR),
        RegistrationError::BindingForAnotherNode { node_id: node(21) }.into()
    );
    // A binding whose signature is broken: provable.
    let mut broken = ok.clone();
    broken.binding.signature[0] ^= 1;
    let err = bad(vec![broken], NOW + HOUR);
    assert_eq!(
        err,
        RegistrationError::BadBinding {
            node_id: id,
            error: BindingError::BadSignature
        }
        .into()
    );
    assert!(err.is_provable_misbehaviour());
    // A binding not valid yet: refused, but not provable (clocks).
    let future = RegistrationEntry::new(
        Binding::sign(&alice, id, NOW + 10, NOW + HOUR),
        vec![],
        NOW + HOUR,
    );
    let err = bad(vec![future], NOW + HOUR);
    assert!(matches!(
        err,
        RecordError::BadRegistration(RegistrationError::BadBinding {
            error: BindingError::NotYetValid { .. },
            ..
        })
    ));
    assert!(!err.is_provable_misbehaviour());
    // Duplicate and unsorted entries.
    let (a, b) = (
        entry(&alice, 20, NOW + 1, NOW + 1),
        entry(&alice, 21, NOW + 1, NOW + 1),
    );
    let (lo, hi) = if a.node_id < b.node_id {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(
        bad(vec![lo.clone(), lo.clone()], NOW + HOUR),
        RegistrationError::EntriesNotSorted.into()
    );
    assert_eq!(
        bad(vec![hi.clone(), lo.clone()], NOW + HOUR),
        RegistrationError::EntriesNotSorted.into()
    );
    assert!(raw_registration(&alice, vec![lo, hi], NOW + HOUR)
        .verify(&open(), NOW)
        .is_ok());
}

#[test]
fn a_lapsed_entry_does_not_invalidate_its_registration() {
    let alice = key(1);
    // Entry 20 lapses at NOW + 60 with its binding; entry 21 lives on.
    let mut reg = Registration::self_certifying(&alice.public().user_id(), OVERLAY).unwrap();
    reg.upsert(entry(&alice, 20, NOW + 60, NOW + 60)).unwrap();
    reg.upsert(entry(&alice, 21, NOW + HOUR, NOW + HOUR))
        .unwrap();
    let record = reg.sign(&alice, 1, NOW + HOUR).unwrap();
    let later = NOW + 120;
    let v = record.verify(&open(), later).unwrap();
    let live: Vec<NodeId> = v
        .registration()
        .unwrap()
        .live_entries(later)
        .map(|e| e.node_id)
        .collect();
    assert_eq!(live, vec![node(21)]);
    // A lapsed entry's binding must still have been valid while the
    // entry was live.
    let mut reg = Registration::self_certifying(&alice.public().user_id(), OVERLAY).unwrap();
    let late = Binding::sign(&alice, node(20), NOW + 100, NOW + HOUR);
    reg.upsert(RegistrationEntry::new(late, vec![], NOW + 60))
        .unwrap();
    let record = reg.sign(&alice, 1, NOW + HOUR).unwrap();
    assert!(matches!(
        record.verify(&open(), later),
        Err(RecordError::BadRegistration(
            RegistrationError::BadBinding { .. }
        ))
    ));
}

#[test]
fn expiry_and_lifetime_are_enforced_and_not_provable() {
    let alice = key(1);
    let r = value_record(&alice, "n", b"d", 1);
    let err = r.verify(&open(), NOW + HOUR).unwrap_err();
    assert_eq!(
        err,
        RecordError::Expired {
            expires: NOW + HOUR,
            now: NOW + HOUR
        }
    );
    assert!(!err.is_provable_misbehaviour());
    assert!(r.verify(&open(), NOW + HOUR - 1).is_ok());
    let max = MAX_RECORD_LIFETIME.as_secs();
    let far = OwnerValue::new("n", vec![])
        .unwrap()
        .sign(&alice, 1, NOW + max);
    assert!(far.verify(&open(), NOW).is_ok());
    let too_far = OwnerValue::new("n", vec![])
        .unwrap()
        .sign(&alice, 1, NOW + max + 1);
    let err = too_far.verify(&open(), NOW).unwrap_err();
    assert!(matches!(err, RecordError::LifetimeTooLong { .. }));
    assert!(!err.is_provable_misbehaviour());
    // An expired forgery is reported as a forgery.
    let mut forged = r.clone();
    forged.signature[5] ^= 1;
    assert_eq!(
        forged.verify(&open(), NOW + 2 * HOUR),
        Err(RecordError::BadSignature)
    );
}

#[test]
fn value_bounds_are_enforced() {
    let alice = key(1);
    // Name length.
    assert!(OwnerValue::new("", vec![]).is_err());
    assert!(OwnerValue::new(&"n".repeat(MAX_OWNER_VALUE_NAME_LEN), vec![]).is_ok());
    assert!(OwnerValue::new(&"n".repeat(MAX_OWNER_VALUE_NAME_LEN + 1), vec![]).is_err());
    // The largest value that fits, and one byte more.
    let overhead = OwnerValue::new("n", vec![0; 1000]).unwrap().encode().len() - 1000;
    let fits = MAX_RECORD_VALUE_LEN - overhead;
    let v = OwnerValue::new("n", vec![7; fits]).unwrap();
    let r = v.sign(&alice, 1, NOW + HOUR);
    assert_eq!(r.value.len(), MAX_RECORD_VALUE_LEN);
    assert!(Record::decode(&r.encode())
        .unwrap()
        .verify(&open(), NOW)
        .is_ok());
    assert!(matches!(
        OwnerValue::new("n", vec![7; fits + 1]),
        Err(RecordError::ValueTooLarge { .. })
    ));
    // A signed oversized record is refused by decode and by verify.
    let mut big = OwnerValue::new("n", vec![]).unwrap();
    big.data = vec![7; fits + 1];
    let r = big.sign(&alice, 1, NOW + HOUR);
    let err = r.verify(&open(), NOW).unwrap_err();
    assert_eq!(
        err,
        RecordError::ValueTooLarge {
            len: MAX_RECORD_VALUE_LEN + 1
        }
    );
    assert!(err.is_provable_misbehaviour());
    assert_eq!(Record::decode(&r.encode()), Err(err));
    // Owner values: empty and over-long names, wrong arity, non-canonical.
    for bad in [
        &[0x82, 0x60, 0x40][..],         // ["", h'']
        &[0x81, 0x61, 0x6e],             // ["n"]
        &[0x83, 0x61, 0x6e, 0x40, 0x40], // ["n", h'', h'']
        &[0x82, 0x78, 0x01, 0x6e, 0x40], // name length not in shortest form
        &[0x82, 0x61, 0x6e, 0x40, 0x00], // trailing byte
    ] {
        assert!(OwnerValue::decode(bad).is_err(), "{bad:02x?}");
    }
    let mut long_name = vec![0x82, 0x78, 129];
    long_name.extend(std::iter::repeat_n(b'n', 129));
    long_name.push(0x40);
    assert_eq!(
        OwnerValue::decode(&long_name),
        Err(WireError::FieldOutOfRange("owner_value.name"))
    );
    // A record whose owner value is malformed.
    let r = Record::sign(
        &alice,
        RecordKind::OwnerValue,
        owner_value_key(&alice.public().user_id(), ""),
        1,
        NOW + HOUR,
        vec![0x82, 0x60, 0x40],
    );
    let err = r.verify(&open(), NOW).unwrap_err();
    assert!(matches!(err, RecordError::MalformedValue(_)));
    assert!(err.is_provable_misbehaviour());
}

#[test]
fn registration_decoding_enforces_its_bounds() {
    let alice = key(1);
    let mut reg = registration(&alice, &[20]);
    // Too many contacts, written directly past the builder.
    if let Some(e) = reg.entries.first_mut() {
        e.contacts = vec!["c".into(); MAX_CONTACTS_PER_ENTRY + 1];
    }
    assert_eq!(
        Registration::decode(&reg.encode()),
        Err(RegistrationError::TooManyContacts {
            count: MAX_CONTACTS_PER_ENTRY as u64 + 1
        })
    );
    if let Some(e) = reg.entries.first_mut() {
        e.contacts = vec!["c".repeat(MAX_CONTACT_LEN + 1)];
    }
    assert_eq!(
        Registration::decode(&reg.encode()),
        Err(RegistrationError::ContactTooLong)
    );
    reg.aor = "a".repeat(MAX_AOR_LEN + 1);
    assert_eq!(
        Registration::decode(&reg.encode()),
        Err(RegistrationError::AorTooLong {
            len: MAX_AOR_LEN + 1
        })
    );
    // Too many entries: refused from the declared count, before any
    // entry is read.
    let mut bytes = vec![0x83, 0x61, 0x61, 0xf6, 0x98, 17];
    assert_eq!(
        Registration::decode(&bytes),
        Err(RegistrationError::TooManyEntries { count: 17 })
    );
    bytes.truncate(4);
    bytes.extend([0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    assert!(matches!(
        Registration::decode(&bytes),
        Err(RegistrationError::TooManyEntries { .. })
    ));
    // A garbage binding inside an entry.
    let mut reg = registration(&alice, &[20]);
    let good = reg.encode();
    assert!(Registration::decode(&good).is_ok());
    if let Some(e) = reg.entries.first_mut() {
        e.binding.signature = [0; 64];
    }
    assert!(Registration::decode(&reg.encode()).is_ok()); // only verify checks it
                                                          // Certificate: null or bytes, nothing else.
    let base = [0x83, 0x61, 0x61];
    for (cert, ok) in [
        (&[0xf6][..], true),        // null
        (&[0x41, 0x00][..], true),  // h'00'
        (&[0xf7][..], false),       // undefined
        (&[0x60][..], false),       // ""
        (&[0x5f, 0xff][..], false), // indefinite bytes
    ] {
        let mut v = base.to_vec();
        v.extend_from_slice(cert);
        v.push(0x80);
        assert_eq!(Registration::decode(&v).is_ok(), ok, "{v:02x?}");
    }
}

#[test]
fn decoding_garbage_is_refused_without_panic() {
    let alice = key(1);
    let good = registration(&alice, &[20, 21])
        .sign(&alice, 3, NOW + HOUR)
        .unwrap()
        .encode();
    // Every truncation.
    for len in 0..good.len() {
        assert!(Record::decode(&good[..len]).is_err(), "prefix {len}");
    }
    // Trailing bytes.
    let mut long = good.clone();
    long.push(0);
    assert_eq!(
        Record::decode(&long),
        Err(RecordError::Wire(WireError::TrailingBytes))
    );
    // Every single-bit flip in a sample of positions is refused by
    // decode or by verify (never accepted, never a panic).
    for i in 0..good.len() {
        for bit in [0x01, 0x80] {
            let mut bad = good.clone();
            bad[i] ^= bit;
            if let Ok(r) = Record::decode(&bad) {
                assert!(r.verify(&open(), NOW).is_err(), "byte {i} bit {bit:#x}");
            }
        }
    }
    let sig = [0u8; 64];
    let mut e = encoder();
    let _ = e.array(8).and_then(|e| {
        e.u64(1)?
            .u64(2)?
            .bytes(&[0; 32])?
            .bytes(&[0; 32])?
            .u64(1)?
            .u64(2)?
            .bytes(&[])?
            .bytes(&sig)
    });
    let minimal = e.into_writer();
    assert!(Record::decode(&minimal).is_ok());
    // Garbage, huge declared lengths, indefinite items, wrong version,
    // kind and arity, non-canonical integers.
    let mut huge_value = minimal[..minimal.len() - 67].to_vec(); // up to the value
    huge_value.extend([0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    let mut noncanonical = minimal.clone();
    noncanonical[71] = 0x18; // seq 1 as a 1-byte integer: 18 01
    noncanonical.insert(72, 0x01);
    let cases: Vec<(Vec<u8>, RecordError)> = vec![
        (vec![], WireError::Truncated.into()),
        (vec![0xff; 10], WireError::Malformed(String::new()).into()),
        (
            vec![0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            WireError::WrongArity {
                message_type: 1,
                expected: 8,
                found: u64::MAX,
            }
            .into(),
        ),
        (vec![0x9f, 0x01, 0xff], WireError::Indefinite.into()),
        (vec![0x88, 0x02], RecordError::UnsupportedVersion(2)),
        (vec![0x88, 0x01, 0x09], RecordError::UnknownKind(9)),
        (
            vec![0x87, 0x01, 0x02],
            WireError::WrongArity {
                message_type: 1,
                expected: 8,
                found: 7,
            }
            .into(),
        ),
        (huge_value, WireError::Truncated.into()),
        (noncanonical, WireError::NonCanonical.into()),
    ];
    for (input, expected) in cases {
        let got = Record::decode(&input);
        match (&got, &expected) {
            (
                Err(RecordError::Wire(WireError::Malformed(_))),
                RecordError::Wire(WireError::Malformed(_)),
            ) => {}
            _ => assert_eq!(got, Err(expected), "{input:02x?}"),
        }
    }
    assert!(!RecordError::UnknownKind(9).is_provable_misbehaviour());
    assert!(RecordError::Wire(WireError::NonCanonical).is_provable_misbehaviour());
}

#[test]
fn kinds_have_their_numbers() {
    assert_eq!(RecordKind::SipRegistration.to_u64(), 1);
    assert_eq!(RecordKind::OwnerValue.to_u64(), 2);
    assert_eq!(RecordKind::RelayDescriptor.to_u64(), 3);
    assert_eq!(RecordKind::Profile.to_u64(), 4);
    assert_eq!(RecordKind::Private.to_u64(), 5);
    assert_eq!(RecordKind::Mailbox.to_u64(), 6);
    assert_eq!(RecordKind::MailboxChunk.to_u64(), 7);
    for n in 1..=7 {
        assert_eq!(RecordKind::from_u64(n).map(RecordKind::to_u64), Some(n));
    }
    assert_eq!(RecordKind::from_u64(0), None);
    assert_eq!(RecordKind::from_u64(8), None);
}

mod next {
    use super::*;

    fn aor(user: &SecretKey) -> String {
        self_certifying_aor(&user.public().user_id(), OVERLAY)
    }

    fn bind(expires: u64) -> DeviceChange {
        DeviceChange::Bind {
            contacts: Vec::new(),
            expires,
        }
    }

    #[test]
    fn keeps_the_other_devices_and_replaces_its_own() {
        let user = key(1);
        let previous = registration(&user, &[2, 3])
            .sign(&user, 7, NOW + HOUR)
            .unwrap();
        let (record, reg) = next_registration(
            Some(&previous),
            &aor(&user),
            None,
            &user,
            node(3),
            bind(NOW + 2 * HOUR),
            NOW,
            5,
        )
        .unwrap();
        assert_eq!(
            record.seq, 8,
            "above the previous even if the clock is behind"
        );
        assert_eq!(record.expires, NOW + 2 * HOUR);
        let nodes: Vec<NodeId> = reg.entries().iter().map(|e| e.node_id).collect();
        let mut want = vec![node(2), node(3)];
        want.sort();
        assert_eq!(nodes, want);
        let own = reg.entries().iter().find(|e| e.node_id == node(3)).unwrap();
        assert!(own.contacts.is_empty(), "its entry was replaced");
        record.verify(&open(), NOW).unwrap();
    }

    #[test]
    fn unbinding_the_last_device_supersedes_until_the_old_record_ends() {
        let user = key(1);
        let previous = registration(&user, &[2])
            .sign(&user, 7, NOW + HOUR)
            .unwrap();
        let (record, reg) = next_registration(
            Some(&previous),
            &aor(&user),
            None,
            &user,
            node(2),
            DeviceChange::Unbind,
            NOW,
            NOW * 1_000_000,
        )
        .unwrap();
        assert!(reg.entries().is_empty());
        assert_eq!(record.seq, NOW * 1_000_000, "the clock when it is ahead");
        assert_eq!(record.expires, NOW + HOUR);
        record.verify(&open(), NOW).unwrap();
    }

    #[test]
    fn drops_entries_another_key_bound_and_refuses_another_owner() {
        let user = key(1);
        let other = key(9);
        // An entry the owner signed for a binding by another user is not
        // carried over (it could not verify).
        let mut reg = registration(&user, &[2]);
        reg.upsert(RegistrationEntry::new(
            Binding::sign(&other, node(4), NOW - HOUR, NOW + HOUR),
            Vec::new(),
            NOW + HOUR,
        ))
        .unwrap();
        let previous = reg.sign(&user, 1, NOW + HOUR).unwrap();
        let (_, next) = next_registration(
            Some(&previous),
            &aor(&user),
            None,
            &user,
            node(3),
            bind(NOW + HOUR),
            NOW,
            2,
        )
        .unwrap();
        let nodes: Vec<NodeId> = next.entries().iter().map(|e| e.node_id).collect();
        assert!(!nodes.contains(&node(4)));
        assert_eq!(nodes.len(), 2);

        let theirs = registration(&other, &[2])
            .sign(&other, 1, NOW + HOUR)
            .unwrap();
        let err = next_registration(
            Some(&theirs),
            &aor(&user),
            None,
            &user,
            node(3),
            bind(NOW + HOUR),
            NOW,
            2,
        )
        .unwrap_err();
        assert_eq!(
            err,
            UpdateError::OtherOwner(other.public().user_id().to_string())
        );
    }
}

// Kinds 4 and 5: profiles and private records.

use crate::identity::sealing::{EncryptionSecretKey, SealError};
use crate::overlay::store::{RecordStore, StoreError};

#[test]
fn a_profile_verifies_under_its_owners_key_only() {
    let alice = key(1);
    let enc = EncryptionSecretKey::from_bytes([9; 32]);
    let profile = Profile::new(enc.public(), "Alice A.").unwrap();
    let record = profile.sign(&alice, 1, NOW + HOUR);
    assert_eq!(record.key, profile_key(&alice.public().user_id()));
    let verified = record.verify(&open(), NOW).unwrap();
    assert_eq!(verified.profile().unwrap(), profile);
    assert_eq!(Record::decode(&record.encode()).unwrap(), record);
    // Mallory cannot publish a profile under alice's key.
    let forged = Record::sign(
        &key(2),
        RecordKind::Profile,
        record.key,
        2,
        NOW + HOUR,
        profile.encode(),
    );
    assert_eq!(forged.verify(&open(), NOW), Err(RecordError::WrongKey));
}

#[test]
fn a_profile_display_name_is_bounded_and_quotable() {
    let enc = EncryptionSecretKey::from_bytes([9; 32]).public();
    assert!(Profile::new(enc, "").is_ok());
    assert!(Profile::new(enc, &"x".repeat(MAX_DISPLAY_NAME_LEN)).is_ok());
    for bad in [
        "x".repeat(MAX_DISPLAY_NAME_LEN + 1),
        "a\r\nVia: evil".to_owned(),
        "say \"hi\"".to_owned(),
        "back\\slash".to_owned(),
    ] {
        assert!(Profile::new(enc, &bad).is_err(), "{bad:?}");
    }
    // The same refusal when it arrives encoded.
    let mut e = encoder();
    e.array(2)
        .unwrap()
        .bytes(enc.as_bytes())
        .unwrap()
        .str("a\nb")
        .unwrap();
    assert_eq!(
        Profile::decode(&e.into_writer()),
        Err(WireError::FieldOutOfRange("profile.display_name"))
    );
}

#[test]
fn private_slots_are_unlinkable_to_their_user_and_to_each_other() {
    let alice = key(1);
    let contacts = PrivateSlot::new(&alice, "contacts").unwrap();
    let settings = PrivateSlot::new(&alice, "settings").unwrap();
    let bobs = PrivateSlot::new(&key(2), "contacts").unwrap();
    let keys = [contacts.key(), settings.key(), bobs.key()];
    assert_ne!(keys[0], keys[1]);
    assert_ne!(keys[0], keys[2]);
    assert_ne!(contacts.owner(), alice.public());
    assert_ne!(contacts.owner(), settings.owner());
    // Deterministic: the user finds its slot again from its key alone.
    assert_eq!(
        PrivateSlot::new(&alice, "contacts").unwrap().key(),
        contacts.key()
    );
    assert!(PrivateSlot::new(&alice, "").is_err());
    assert!(PrivateSlot::new(&alice, &"s".repeat(33)).is_err());
}

#[test]
fn a_private_record_opens_for_its_owner_in_its_slot_only() {
    let alice = key(1);
    let enc = EncryptionSecretKey::from_bytes([9; 32]);
    let slot = PrivateSlot::new(&alice, "contacts").unwrap();
    let record = slot
        .seal(&enc.public(), b"MARKER bob=sip:...", 7, NOW + HOUR)
        .unwrap();
    let verified = record.verify(&open(), NOW).unwrap();
    // The storing node sees no plaintext and not alice's key.
    let encoded = verified.encoded();
    assert!(!encoded.windows(6).any(|w| w == b"MARKER"));
    assert!(!encoded
        .windows(32)
        .any(|w| w == alice.public().as_bytes().as_slice()));
    assert_eq!(
        slot.open(&enc, verified.key(), verified.value()).unwrap(),
        b"MARKER bob=sip:..."
    );
    // Another key, another slot: it does not open.
    let other = EncryptionSecretKey::from_bytes([8; 32]);
    assert_eq!(
        slot.open(&other, verified.key(), verified.value()),
        Err(SealError::DoesNotOpen)
    );
    let settings = PrivateSlot::new(&alice, "settings").unwrap();
    assert_eq!(
        settings.open(&enc, verified.key(), verified.value()),
        Err(SealError::DoesNotOpen)
    );
}

#[test]
fn nobody_but_the_slot_key_writes_a_private_record() {
    let alice = key(1);
    let enc = EncryptionSecretKey::from_bytes([9; 32]);
    let slot = PrivateSlot::new(&alice, "contacts").unwrap();
    let genuine = slot.seal(&enc.public(), b"book", 7, NOW + HOUR).unwrap();
    let mut store = RecordStore::new(Default::default());
    store
        .put(genuine.verify(&open(), NOW).unwrap(), NOW)
        .unwrap();
    // Mallory signs a record for alice's key with her own key: the rule
    // refuses it before any store sees it.
    let forged = Record::sign(
        &key(3),
        RecordKind::Private,
        slot.key(),
        8,
        NOW + HOUR,
        genuine.value.clone(),
    );
    assert_eq!(forged.verify(&open(), NOW), Err(RecordError::WrongKey));
    // Alice's slot record replayed with an older sequence number: refused.
    let old = slot.seal(&enc.public(), b"old", 6, NOW + HOUR).unwrap();
    assert!(matches!(
        store.put(old.verify(&open(), NOW).unwrap(), NOW),
        Err(StoreError::Rollback { .. })
    ));
    // A value that is not one sealed box is refused.
    let mut e = encoder();
    e.bytes(&[0u8; 10]).unwrap();
    let short = Record::sign(
        &slot_key_of(&alice, "contacts"),
        RecordKind::Private,
        slot.key(),
        9,
        NOW + HOUR,
        e.into_writer(),
    );
    assert!(matches!(
        short.verify(&open(), NOW),
        Err(RecordError::MalformedValue(_))
    ));
}

fn slot_key_of(user: &SecretKey, name: &str) -> SecretKey {
    private::slot_key(user, name)
}

#[test]
fn a_private_record_holds_at_most_what_a_record_value_holds() {
    let alice = key(1);
    let enc = EncryptionSecretKey::from_bytes([9; 32]);
    let slot = PrivateSlot::new(&alice, "contacts").unwrap();
    let full = vec![b'x'; private::MAX_PRIVATE_PLAINTEXT];
    let record = slot.seal(&enc.public(), &full, 1, NOW + HOUR).unwrap();
    assert!(record.value.len() <= MAX_RECORD_VALUE_LEN);
    assert!(record.verify(&open(), NOW).is_ok());
    let over = vec![b'x'; private::MAX_PRIVATE_PLAINTEXT + 1];
    assert!(matches!(
        slot.seal(&enc.public(), &over, 1, NOW + HOUR),
        Err(RecordError::ValueTooLarge { .. })
    ));
}

/// The slot derivation of docs/protocol.md §7.9, pinned: test key 1 (RFC
/// 8032 test 1's seed) and its "contacts" slot.
#[test]
fn the_slot_of_the_protocol_example() {
    let user = rfc8032_key1();
    let slot = PrivateSlot::new(&user, "contacts").unwrap();
    assert_eq!(
        hex::encode(slot.owner().as_bytes()),
        "93e9f7cc4650190aee69f40f29c4ff46670b1e7e56450196738db9891622ff04"
    );
    assert_eq!(
        hex::encode(slot.key().0),
        "edd821df541a7e71d7b125b7e64d3750b79bfd8f7b83b40c32a06a3c702fde1e"
    );
    assert_eq!(
        hex::encode(profile_key(&user.public().user_id()).0),
        "c07db53563cecfc3181045a6b8abc4522cd14e2db40c876e0bef0be6bc80636d"
    );
}

#[test]
fn a_renewed_private_record_keeps_its_box_and_supersedes_the_old() {
    let alice = key(1);
    let enc = EncryptionSecretKey::from_bytes([9; 32]);
    let slot = PrivateSlot::new(&alice, "settings").unwrap();
    let old = slot.seal(&enc.public(), b"dnd=on", 1, NOW + HOUR).unwrap();
    let renewed = slot.renew(&old, 2, NOW + 20 * 24 * HOUR);
    let verified = renewed.verify(&open(), NOW).unwrap();
    assert_eq!(renewed.value, old.value);
    assert_eq!(
        slot.open(&enc, verified.key(), verified.value()).unwrap(),
        b"dnd=on"
    );
    let mut store = RecordStore::new(Default::default());
    store.put(old.verify(&open(), NOW).unwrap(), NOW).unwrap();
    assert!(store.put(verified, NOW).is_ok());
}

#[test]
fn a_private_box_is_bound_to_its_record_key() {
    // Below the slot check: HPKE itself refuses the box under another
    // record key (its aad).
    let alice = key(1);
    let enc = EncryptionSecretKey::from_bytes([9; 32]);
    let contacts = PrivateSlot::new(&alice, "contacts").unwrap();
    let settings = PrivateSlot::new(&alice, "settings").unwrap();
    let record = contacts
        .seal(&enc.public(), b"book", 1, NOW + HOUR)
        .unwrap();
    let sealed = private::sealed_box(&record.value).unwrap();
    assert_eq!(
        enc.open(PRIVATE_DOMAIN, &contacts.key().0, sealed).unwrap(),
        b"book"
    );
    assert_eq!(
        enc.open(PRIVATE_DOMAIN, &settings.key().0, sealed),
        Err(SealError::DoesNotOpen)
    );
    assert_eq!(
        enc.open(b"p2psip-other-v1", &contacts.key().0, sealed),
        Err(SealError::DoesNotOpen)
    );
}
