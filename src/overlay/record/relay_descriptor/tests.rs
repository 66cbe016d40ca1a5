//! Tests of relay descriptors: encoding, signing, directory keys, and
//! every refusal naming what was wrong.

use super::*;
use crate::overlay::record::VerifiedRecord;
use crate::overlay::store::{PutOutcome, RecordStore, StoreError, StoreLimits};

const NOW: u64 = 1_750_000_000;
const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;
const OVERLAY: &str = "p2psip";

fn key(seed: u8) -> SecretKey {
    SecretKey::from_seed(&[seed; 32])
}

fn open() -> RecordPolicy {
    RecordPolicy::self_certifying(OVERLAY)
}

fn onion(seed: u8, expires: u64) -> OnionKeyInfo {
    let secret = x25519_dalek::StaticSecret::from([seed; 32]);
    OnionKeyInfo {
        key: x25519_dalek::PublicKey::from(&secret).to_bytes(),
        expires,
    }
}

fn offer() -> RelayOffer {
    RelayOffer {
        addresses: vec![
            "192.0.2.7:4433".parse().unwrap(),
            "[2001:db8::7]:4433".parse().unwrap(),
        ],
        onion_key: onion(7, NOW + 3 * DAY),
        previous_onion_key: Some(onion(6, NOW + DAY)),
        capacity: 100,
        relays_circuits: true,
        turn: Some("192.0.2.7:3478".parse().unwrap()),
    }
}

/// `relay` signs `desc` under `key` with the usual seq and expiry,
/// bypassing the builders' own checks.
fn raw(relay: &SecretKey, desc: &RelayDescriptor, key: Key, expires: u64) -> Record {
    Record::sign(
        relay,
        RecordKind::RelayDescriptor,
        key,
        1,
        expires,
        desc.encode(),
    )
}

fn own_key(relay: &SecretKey) -> Key {
    relay_publication_keys(OVERLAY, &relay.public().node_id())[0]
}

fn desc_of(relay: &SecretKey, offer: RelayOffer) -> RelayDescriptor {
    RelayDescriptor {
        node_id: relay.public().node_id(),
        node_cert: None,
        offer: Some(offer),
    }
}

fn refusal(record: &Record) -> RecordError {
    record.verify(&open(), NOW).unwrap_err()
}

fn descriptor_refusal(record: &Record) -> RelayDescriptorError {
    match refusal(record) {
        RecordError::BadRelayDescriptor(e) => e,
        e => panic!("not a descriptor refusal: {e:?}"),
    }
}

#[test]
fn descriptors_round_trip_sign_and_verify_under_both_own_keys() {
    let relay = key(1);
    let records = sign_relay_descriptors(&relay, &open(), None, offer(), 5, NOW).unwrap();
    assert_eq!(records.len(), RELAY_KEYS_PER_RELAY);
    let keys = relay_publication_keys(OVERLAY, &relay.public().node_id());
    for (record, key) in records.iter().zip(keys) {
        assert_eq!(record.key, key);
        assert_eq!(record.kind, RecordKind::RelayDescriptor);
        assert_eq!(record.expires, NOW + DAY);
        let bytes = record.encode();
        let decoded = Record::decode(&bytes).unwrap();
        let v: VerifiedRecord = decoded.verify(&open(), NOW).unwrap();
        assert_eq!(v.encoded(), &bytes[..]);
        let desc = v.relay_descriptor().unwrap();
        assert_eq!(desc.node_id(), &relay.public().node_id());
        assert_eq!(desc.offer(), Some(&offer()));
        assert_eq!(
            v.content(),
            Some(RecordContent::RelayDescriptor(desc.clone()))
        );
        assert_eq!(v.registration(), None);
        assert_eq!(RelayDescriptor::decode(&desc.encode()).unwrap(), desc);
    }
    // Both onion keys are live now; after the previous one's expiry only
    // the current one is.
    let o = offer();
    assert_eq!(o.live_onion_keys(NOW).count(), 2);
    assert_eq!(o.live_onion_keys(NOW + DAY).count(), 1);
}

use crate::overlay::record::RecordContent;

#[test]
fn directory_keys_are_the_documented_hash_and_indices_spread() {
    let k = relay_directory_key("p2psip", 3);
    let expected: [u8; 32] = Sha256::digest(b"p2psip-relays-v1p2psip\x03").into();
    assert_eq!(k, Key(expected));
    let all = relay_directory_keys("p2psip");
    assert_eq!(all.len(), usize::from(RELAY_DIRECTORY_KEYS));
    for (i, k) in all.iter().enumerate() {
        assert_eq!(relay_directory_index("p2psip", k), Some(i as u8));
        assert_eq!(relay_directory_index("other", k), None);
    }
    // Indices: distinct, in range, spread evenly over the keys.
    let mut counts = [0u32; RELAY_DIRECTORY_KEYS as usize];
    for n in 0..4000u32 {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&n.to_be_bytes());
        let idx = relay_directory_indices(&NodeId::from_bytes(b));
        assert_ne!(idx[0], idx[1]);
        for i in idx {
            counts[usize::from(i)] += 1;
        }
    }
    // Each key expects 4000 * 2 / 8 = 1000.
    for c in counts {
        assert!((850..1150).contains(&c), "uneven spread {counts:?}");
    }
}

#[test]
fn a_descriptor_signed_by_another_key_than_its_node_id_is_refused() {
    let relay = key(1);
    let mallory = key(2);
    let desc = desc_of(&relay, offer());
    let rec = raw(&mallory, &desc, own_key(&relay), NOW + HOUR);
    let e = descriptor_refusal(&rec);
    assert_eq!(
        e,
        RelayDescriptorError::NotTheRelaysKey(relay.public().node_id())
    );
    assert!(e.is_provable_misbehaviour());
    assert!(e.to_string().contains("does not derive node id"));
}

#[test]
fn only_the_relays_own_directory_keys_are_accepted() {
    let relay = key(1);
    let id = relay.public().node_id();
    let own = relay_directory_indices(&id);
    let desc = desc_of(&relay, offer());
    for i in 0..RELAY_DIRECTORY_KEYS {
        let rec = raw(&relay, &desc, relay_directory_key(OVERLAY, i), NOW + HOUR);
        if own.contains(&i) {
            assert!(rec.verify(&open(), NOW).is_ok(), "own key {i}");
        } else {
            let e = descriptor_refusal(&rec);
            assert_eq!(
                e,
                RelayDescriptorError::NotRelaysDirectoryKey { index: i, own }
            );
            assert!(RecordError::from(e).is_provable_misbehaviour());
        }
    }
    // Not a directory key at all; a directory key of another overlay.
    for key in [Key([9; 32]), relay_directory_key("other", own[0])] {
        assert_eq!(
            refusal(&raw(&relay, &desc, key, NOW + HOUR)),
            RecordError::WrongKey
        );
    }
}

#[test]
fn the_node_id_must_solve_the_overlays_puzzle() {
    let relay = key(1);
    let bits = relay.public().node_id().puzzle_bits();
    let rec = &sign_relay_descriptors(&relay, &open(), None, offer(), 1, NOW).unwrap()[0];
    let at = |d: u8| rec.verify(&open().with_node_difficulty(d), NOW);
    assert!(at(bits as u8).is_ok());
    assert_eq!(
        at(bits as u8 + 1).unwrap_err(),
        RecordError::BadRelayDescriptor(RelayDescriptorError::PuzzleNotSolved {
            required: bits as u8 + 1,
            actual: bits,
        })
    );
}

#[test]
fn onion_key_and_record_times_are_enforced() {
    let relay = key(1);
    let sign =
        |o: RelayOffer, expires: u64| raw(&relay, &desc_of(&relay, o), own_key(&relay), expires);
    let with_onion = |expires: u64| RelayOffer {
        onion_key: onion(7, expires),
        previous_onion_key: None,
        ..offer()
    };
    // Current onion key expired (the record claims to live on).
    let e = descriptor_refusal(&sign(with_onion(NOW - 1), NOW + HOUR));
    assert_eq!(
        e,
        RelayDescriptorError::OnionKeyExpired {
            expires: NOW - 1,
            now: NOW
        }
    );
    assert!(!e.is_provable_misbehaviour());
    // Record outlives its onion key.
    let e = descriptor_refusal(&sign(with_onion(NOW + HOUR), NOW + 2 * HOUR));
    assert_eq!(
        e,
        RelayDescriptorError::OutlivesOnionKey {
            record_expires: NOW + 2 * HOUR,
            onion_expires: NOW + HOUR
        }
    );
    assert!(e.is_provable_misbehaviour());
    // Onion key lifetime beyond 7 days.
    let far = NOW + RELAY_ONION_KEY_MAX_LIFETIME.as_secs() + 1;
    let e = descriptor_refusal(&sign(with_onion(far), NOW + HOUR));
    assert_eq!(
        e,
        RelayDescriptorError::OnionKeyLifetimeTooLong {
            expires: far,
            now: NOW
        }
    );
    // Record lifetime beyond a day (within the 30 days of other records).
    let e = descriptor_refusal(&sign(with_onion(NOW + 3 * DAY), NOW + DAY + 1));
    assert_eq!(
        e,
        RelayDescriptorError::LifetimeTooLong {
            expires: NOW + DAY + 1,
            now: NOW
        }
    );
    assert!(!e.is_provable_misbehaviour());
    // The builder never makes a record outlive its onion key.
    let records =
        sign_relay_descriptors(&relay, &open(), None, with_onion(NOW + HOUR), 1, NOW).unwrap();
    assert_eq!(records[0].expires, NOW + HOUR);
}

#[test]
fn offer_bounds_are_enforced_when_built_and_when_decoded() {
    let relay = key(1);
    let id = relay.public().node_id();
    let addr = |i: u8| -> SocketAddr { format!("192.0.{i}.1:4433").parse().unwrap() };
    let cases: Vec<(RelayOffer, RelayDescriptorError)> = vec![
        (
            RelayOffer {
                addresses: (0..=MAX_RELAY_ADDRESSES as u8).map(addr).collect(),
                ..offer()
            },
            RelayDescriptorError::AddressCount {
                count: MAX_RELAY_ADDRESSES as u64 + 1,
            },
        ),
        (
            RelayOffer {
                addresses: vec![],
                ..offer()
            },
            RelayDescriptorError::AddressCount { count: 0 },
        ),
        (
            RelayOffer {
                addresses: vec![addr(1), addr(1)],
                ..offer()
            },
            RelayDescriptorError::BadAddress(addr(1)),
        ),
        (
            RelayOffer {
                addresses: vec!["0.0.0.0:4433".parse().unwrap()],
                ..offer()
            },
            RelayDescriptorError::BadAddress("0.0.0.0:4433".parse().unwrap()),
        ),
        (
            RelayOffer {
                addresses: vec!["192.0.2.1:0".parse().unwrap()],
                ..offer()
            },
            RelayDescriptorError::BadAddress("192.0.2.1:0".parse().unwrap()),
        ),
        (
            RelayOffer {
                addresses: vec!["[::ffff:192.0.2.1]:1".parse().unwrap()],
                ..offer()
            },
            RelayDescriptorError::BadAddress("[::ffff:192.0.2.1]:1".parse().unwrap()),
        ),
        (
            RelayOffer {
                capacity: MAX_RELAY_CAPACITY + 1,
                ..offer()
            },
            RelayDescriptorError::CapacityTooLarge(u64::from(MAX_RELAY_CAPACITY) + 1),
        ),
        (
            RelayOffer {
                onion_key: OnionKeyInfo {
                    key: [0; 32],
                    expires: NOW + DAY,
                },
                ..offer()
            },
            RelayDescriptorError::LowOrderOnionKey,
        ),
        (
            RelayOffer {
                previous_onion_key: Some(onion(7, NOW + DAY)),
                ..offer()
            },
            RelayDescriptorError::BadPreviousOnionKey,
        ),
        (
            RelayOffer {
                previous_onion_key: Some(onion(6, NOW + 4 * DAY)),
                ..offer()
            },
            RelayDescriptorError::BadPreviousOnionKey,
        ),
    ];
    for (bad, expected) in cases {
        assert_eq!(
            RelayDescriptor::new(id, None, bad.clone()).unwrap_err(),
            expected
        );
        // The same offer, encoded anyway, is refused when decoded and when
        // verified, naming the same fault.
        let desc = desc_of(&relay, bad);
        assert_eq!(
            RelayDescriptor::decode(&desc.encode()).unwrap_err(),
            expected
        );
        let e = descriptor_refusal(&raw(&relay, &desc, own_key(&relay), NOW + HOUR));
        assert_eq!(e, expected);
        assert!(e.is_provable_misbehaviour());
        assert!(!e.to_string().is_empty());
    }
}

/// `desc`'s encoding with the bytes at `at..at + len` replaced.
fn patched(desc: &RelayDescriptor, at: usize, len: usize, with: &[u8]) -> Vec<u8> {
    let mut b = desc.encode();
    b.splice(at..at + len, with.iter().copied());
    b
}

#[test]
fn malformed_and_non_canonical_values_are_refused() {
    let relay = key(1);
    let desc = desc_of(&relay, offer());
    let good = desc.encode();
    assert_eq!(good[0], 0x84);
    assert_eq!(good[1], 0x01);
    // Version 1 written in two bytes: the value decodes, but not
    // canonically.
    assert_eq!(
        RelayDescriptor::decode(&patched(&desc, 1, 1, &[0x18, 0x01])).unwrap_err(),
        RelayDescriptorError::Malformed(WireError::NonCanonical)
    );
    // Version 2.
    let e = RelayDescriptor::decode(&patched(&desc, 1, 1, &[0x02])).unwrap_err();
    assert_eq!(e, RelayDescriptorError::UnsupportedVersion(2));
    assert!(!e.is_provable_misbehaviour());
    // Wrong arity, trailing bytes, truncation.
    assert!(matches!(
        RelayDescriptor::decode(&patched(&desc, 0, 1, &[0x83])),
        Err(RelayDescriptorError::Malformed(
            WireError::WrongArity { .. }
        ))
    ));
    let mut trailing = good.clone();
    trailing.push(0);
    assert_eq!(
        RelayDescriptor::decode(&trailing).unwrap_err(),
        RelayDescriptorError::Malformed(WireError::TrailingBytes)
    );
    for n in 0..good.len() {
        assert!(RelayDescriptor::decode(&good[..n]).is_err(), "prefix {n}");
    }
    // A declared address count far beyond the bound is refused from the
    // header, before anything is read or allocated.
    let mut e = crate::wire::cbor::encoder();
    e.array(4)
        .unwrap()
        .u64(1)
        .unwrap()
        .bytes(&[0; 32])
        .unwrap()
        .null()
        .unwrap();
    e.array(6).unwrap().array(u64::MAX).unwrap();
    assert_eq!(
        RelayDescriptor::decode(&e.into_writer()).unwrap_err(),
        RelayDescriptorError::AddressCount { count: u64::MAX }
    );
    // Unknown flag bits; a TURN flag without an address and an address
    // without the flag.
    let flags_at = |d: &RelayDescriptor| {
        let b = d.encode();
        // capacity 100 (18 64), then flags, then turn: the flags byte
        // follows the capacity's.
        b.windows(2).position(|w| w == [0x18, 0x64]).unwrap() + 2
    };
    let at = flags_at(&desc);
    assert_eq!(good[at], 0x03);
    assert_eq!(
        RelayDescriptor::decode(&patched(&desc, at, 1, &[0x07])).unwrap_err(),
        RelayDescriptorError::UnknownFlags(7)
    );
    assert_eq!(
        RelayDescriptor::decode(&patched(&desc, at, 1, &[0x01])).unwrap_err(),
        RelayDescriptorError::TurnMismatch
    );
    let no_turn = desc_of(
        &relay,
        RelayOffer {
            turn: None,
            ..offer()
        },
    );
    let at = flags_at(&no_turn);
    assert_eq!(
        RelayDescriptor::decode(&patched(&no_turn, at, 1, &[0x03])).unwrap_err(),
        RelayDescriptorError::TurnMismatch
    );
    // As a record, a malformed value is provable misbehaviour.
    let rec = Record::sign(
        &relay,
        RecordKind::RelayDescriptor,
        own_key(&relay),
        1,
        NOW + HOUR,
        patched(&desc, 1, 1, &[0x18, 0x01]),
    );
    assert!(refusal(&rec).is_provable_misbehaviour());
}

#[test]
fn a_self_certifying_overlay_refuses_a_node_certificate() {
    let relay = key(1);
    let desc = RelayDescriptor {
        node_cert: Some(vec![0x30, 0x00]),
        ..desc_of(&relay, offer())
    };
    assert_eq!(
        descriptor_refusal(&raw(&relay, &desc, own_key(&relay), NOW + HOUR)),
        RelayDescriptorError::CertificateNotAllowed
    );
}

#[test]
fn an_enrolled_overlay_needs_the_relays_node_certificate() {
    use crate::identity::{
        build_ca_certificate, issue_certificate, TrustAnchor, TrustAnchors, VerifyPolicy,
    };
    let (from, to) = (NOW as i64 - DAY as i64, NOW as i64 + 30 * DAY as i64);
    let ca = key(40);
    let (ca_der, _) = build_ca_certificate(&ca, "p2psip test CA", from, to).unwrap();
    let mut anchors = TrustAnchors::default();
    anchors
        .push(TrustAnchor::from_der(&ca_der).unwrap())
        .unwrap();
    let policy = RecordPolicy::enrolled(OVERLAY, VerifyPolicy::enrolled(anchors, 0));
    let relay = key(1);
    let issue = |subject: &SecretKey, kind: IdKind| {
        let sip = (kind == IdKind::User).then_some("sip:relay@p2psip");
        issue_certificate(&ca, &ca_der, &subject.public(), kind, sip, from, to)
            .unwrap()
            .0
    };
    let node_cert = issue(&relay, IdKind::Node);
    let records =
        sign_relay_descriptors(&relay, &policy, Some(node_cert), offer(), 1, NOW).unwrap();
    assert!(records[1].verify(&policy, NOW).is_ok());
    let with = |cert: Option<Vec<u8>>| {
        let desc = RelayDescriptor {
            node_cert: cert,
            ..desc_of(&relay, offer())
        };
        match raw(&relay, &desc, own_key(&relay), NOW + HOUR).verify(&policy, NOW) {
            Err(RecordError::BadRelayDescriptor(e)) => e,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(with(None), RelayDescriptorError::CertificateRequired);
    assert_eq!(
        with(Some(issue(&relay, IdKind::User))),
        RelayDescriptorError::CertificateMismatch
    );
    assert_eq!(
        with(Some(issue(&key(2), IdKind::Node))),
        RelayDescriptorError::CertificateMismatch
    );
    assert!(matches!(
        with(Some(vec![1, 2, 3])),
        RelayDescriptorError::Certificate(_)
    ));
}

#[test]
fn withdrawal_replaces_the_descriptor_and_the_old_one_cannot_return() {
    let relay = key(1);
    let policy = open();
    let mut store = RecordStore::new(StoreLimits::default());
    let live = sign_relay_descriptors(&relay, &policy, None, offer(), 10, NOW).unwrap();
    for r in &live {
        let v = r.verify(&policy, NOW).unwrap();
        assert_eq!(store.put(v, NOW).unwrap(), PutOutcome::Stored);
    }
    let later = NOW + HOUR;
    let gone = withdraw_relay_descriptors(&relay, &policy, None, 11, later).unwrap();
    assert_eq!(gone.len(), RELAY_KEYS_PER_RELAY);
    for (old, new) in live.iter().zip(&gone) {
        assert_eq!(old.key, new.key);
        assert!(new.expires >= old.expires, "no earlier expiry than before");
        let v = new.verify(&policy, later).unwrap();
        assert!(v.relay_descriptor().unwrap().is_withdrawn());
        assert_eq!(
            store.put(v, later).unwrap(),
            PutOutcome::Replaced { previous_seq: 10 }
        );
        let replay = old.verify(&policy, later).unwrap();
        assert_eq!(
            store.put(replay, later).unwrap_err(),
            StoreError::Rollback {
                stored_seq: 11,
                offered_seq: 10
            }
        );
    }
}

#[test]
fn kind_three_is_the_relay_descriptor() {
    assert_eq!(RecordKind::RelayDescriptor.to_u64(), 3);
    assert_eq!(RecordKind::from_u64(3), Some(RecordKind::RelayDescriptor));
    assert_eq!(RecordKind::from_u64(4), Some(RecordKind::Profile));
}

#[test]
fn documented_directory_keys() {
    let mut seed = [0u8; 32];
    hex::decode_to_slice(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        &mut seed,
    )
    .unwrap();
    let id = SecretKey::from_seed(&seed).public().node_id();
    assert_eq!(
        id.to_string(),
        "4c11253328b62f305162f8fb36ce77c1a71da64f6da41b2cbbec3852172afe44"
    );
    assert_eq!(relay_directory_indices(&id), [0, 6]);
    let keys = relay_publication_keys("p2psip", &id);
    assert_eq!(
        keys[0].to_string(),
        "3f295cfd85c31a3a669687521b4242dbd7393af2d7b6868ab49c40259f5c34b8"
    );
    assert_eq!(
        keys[1].to_string(),
        "972ca810c3b3e65e54c149d7bd11d88bbb0858f91abdbe6088e71fff15368b50"
    );
}
