use super::*;
use crate::identity::SecretKey;
use crate::limits::MAX_HANDOVER_RECORDS;
use crate::limits::MAX_PENDING_CHURN_EVENTS;
use crate::net::conns::same_addr;
use crate::net::disk::DiskStore;
use crate::overlay::record::OwnerValue;
use std::net::SocketAddr;

fn params(replication: usize) -> OverlayParams {
    OverlayParams {
        name: "unit".into(),
        k: 20,
        replication,
        id_difficulty: 0,
        ..OverlayParams::default()
    }
}

/// The point at XOR distance `d` (in the first byte) from `key`.
fn near(key: &Key, d: u8) -> NodeId {
    let mut b = key.0;
    b[0] ^= d;
    NodeId::from_bytes(b)
}

/// A contact on its own /24, so that the diversity limits stay out of
/// the way.
fn contact(id: NodeId, n: u8) -> Contact {
    Contact {
        id,
        addr: SocketAddr::from(([10, n, 0, 1], 4433)),
    }
}

fn record(name: &str) -> Record {
    OwnerValue::new(name, b"v".to_vec()).unwrap().sign(
        &SecretKey::from_seed(&[7; 32]),
        1,
        crate::unix_now() as u64 + 3600,
    )
}

fn service(local: NodeId, replication: usize) -> OverlayService {
    let p = params(replication);
    let policy = RecordPolicy::self_certifying(p.name.clone());
    OverlayService::new(local, p, policy)
}

fn store(overlay: &OverlayService, from: Contact, r: &Record) -> Message {
    let request = Message::Store {
        overlay: "unit".into(),
        record: r.encode(),
    };
    block_on(overlay.answer(from, ListenProof::Verified, &request)).unwrap()
}

/// Runs `f` to completion (the store path is async: it awaits the
/// commit of a durable Store).
fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn drain(overlay: &OverlayService) -> Vec<ChurnEvent> {
    std::iter::from_fn(|| overlay.next_event()).collect()
}

#[test]
fn a_store_is_refused_once_twice_replication_nodes_are_closer() {
    let r = record("a");
    let key = r.key;
    // Replication 2: refused at 4 closer nodes. This node is at
    // distance 0x40; contacts at 0x01.. are closer.
    let overlay = service(near(&key, 0x40), 2);
    let far = contact(near(&key, 0x80), 200);
    overlay.learn(far);
    for d in 1..=3u8 {
        overlay.learn(contact(near(&key, d), d));
    }
    assert!(overlay.is_responsible(&key));
    assert_eq!(store(&overlay, far, &r), Message::Stored { seq: 1 });
    overlay.learn(contact(near(&key, 4), 4));
    assert!(!overlay.is_responsible(&key));
    // A record under another key it does not hold, one with at least
    // four known nodes closer than this one: refused.
    let other = (0..256)
        .map(|i| record(&format!("z{i}")))
        .find(|r| !overlay.is_responsible(&r.key))
        .expect("some key among 256 has four known nodes closer than this one");
    match store(&overlay, far, &other) {
        Message::Error { code, reason } => {
            assert_eq!(code, ErrorCode::NotResponsible);
            assert!(reason.contains("closer"), "{reason}");
        }
        unexpected => panic!("unexpected {unexpected:?}"),
    }
    assert_eq!(
        overlay.records_len(),
        1,
        "the refused record changed nothing"
    );
    // A newer version of the record it holds: taken (it updates the
    // slot; refusing would leave the older version served).
    let newer = OwnerValue::new("a", b"w".to_vec()).unwrap().sign(
        &SecretKey::from_seed(&[7; 32]),
        2,
        crate::unix_now() as u64 + 3600,
    );
    assert_eq!(store(&overlay, far, &newer), Message::Stored { seq: 2 });
    assert_eq!(overlay.records_len(), 1);
    // A key near this node is still accepted.
    let own_key = Key::from(overlay.local_id());
    assert!(overlay.is_responsible(&own_key));
}

#[test]
fn a_newcomer_closer_to_a_held_key_is_handed_the_record() {
    let r = record("b");
    let key = r.key;
    let overlay = service(near(&key, 0x08), 2);
    let a = contact(near(&key, 0x10), 1);
    let b = contact(near(&key, 0x20), 2);
    overlay.learn(a);
    overlay.learn(b);
    assert_eq!(store(&overlay, a, &r), Message::Stored { seq: 1 });
    assert_eq!(
        drain(&overlay),
        vec![ChurnEvent::Admitted(a), ChurnEvent::Admitted(b)]
    );
    // Holders now: this node (0x08) and a (0x10). A newcomer at 0x40
    // is not among the two closest: nothing to hand over.
    let far = contact(near(&key, 0x40), 3);
    overlay.learn(far);
    assert_eq!(drain(&overlay), vec![ChurnEvent::Admitted(far)]);
    assert!(overlay.plan_handover(&far).is_empty());
    // One at 0x04 is the closest of all: it gets the record.
    let close = contact(near(&key, 0x04), 4);
    overlay.learn(close);
    assert_eq!(drain(&overlay), vec![ChurnEvent::Admitted(close)]);
    assert_eq!(overlay.plan_handover(&close), vec![r.encode()]);
    // A contact not (or no longer) in the table is handed nothing.
    let stranger = contact(near(&key, 0x02), 5);
    assert!(overlay.plan_handover(&stranger).is_empty());
}

#[test]
fn hand_over_is_bounded_per_newcomer() {
    let owner = SecretKey::from_seed(&[9; 32]);
    let local = NodeId::from_bytes([0xff; 32]);
    let overlay = service(local, 3);
    let expires = crate::unix_now() as u64 + 3600;
    let n = MAX_HANDOVER_RECORDS + 10;
    for i in 0..n {
        let r = OwnerValue::new(&format!("r{i}"), vec![])
            .unwrap()
            .sign(&owner, 1, expires);
        assert!(matches!(
            block_on(overlay.store_local(&r.encode(), true)),
            Message::Stored { .. }
        ));
    }
    assert_eq!(overlay.records_len(), n);
    // Alone with this node, a newcomer is among the 3 closest of every
    // key: it qualifies for all, and gets the bounded number.
    let newcomer = contact(NodeId::from_bytes([0; 32]), 1);
    overlay.learn(newcomer);
    assert_eq!(overlay.plan_handover(&newcomer).len(), MAX_HANDOVER_RECORDS);
}

#[test]
fn an_evicted_holder_is_replaced_by_the_next_closest_node() {
    let r = record("c");
    let key = r.key;
    // Replication 2. Holders: h (0x01) and this node (0x02); next in
    // line: n (0x04), then f (0x08).
    let overlay = service(near(&key, 0x02), 2);
    let h = contact(near(&key, 0x01), 1);
    let n = contact(near(&key, 0x04), 2);
    let f = contact(near(&key, 0x08), 3);
    for c in [h, n, f] {
        overlay.learn(c);
    }
    assert_eq!(store(&overlay, h, &r), Message::Stored { seq: 1 });
    drain(&overlay);
    // Not evicted yet: nothing to repair.
    assert!(overlay.plan_repair(&h).is_empty());
    for _ in 0..crate::overlay::routing::MAX_CONSECUTIVE_FAILURES {
        overlay
            .core()
            .with(|p, now| p.on_request_failed(now, &h, Failure::Timeout));
    }
    assert_eq!(drain(&overlay), vec![ChurnEvent::Evicted(h)]);
    assert_eq!(overlay.plan_repair(&h), vec![(n, r.encode())]);
    // The eviction of a non-holder moves nothing.
    overlay.core().with(|p, _| p.peer_left(&f.id));
    assert_eq!(drain(&overlay), vec![ChurnEvent::Evicted(f)]);
    assert!(overlay.plan_repair(&f).is_empty());
    // When this node itself enters the set, there is no one to push to.
    let overlay = service(near(&key, 0x04), 2);
    let a = contact(near(&key, 0x01), 1);
    let b = contact(near(&key, 0x02), 2);
    overlay.learn(a);
    overlay.learn(b);
    assert!(matches!(
        block_on(overlay.store_local(&r.encode(), false)),
        Message::Stored { .. }
    ));
    overlay.core().with(|p, _| p.peer_left(&a.id));
    assert!(overlay.plan_repair(&a).is_empty());
}

#[test]
fn republish_targets_the_closest_with_spares() {
    let r = record("d");
    let key = r.key;
    let overlay = service(near(&key, 0x10), 2);
    let contacts: Vec<Contact> = (1..=6u8)
        .map(|i| contact(near(&key, i << 4 ^ 0x01), i))
        .collect();
    for c in &contacts {
        overlay.learn(*c);
    }
    assert!(matches!(
        block_on(overlay.store_local(&r.encode(), false)),
        Message::Stored { .. }
    ));
    let batch = overlay.republish_batch(None, 10);
    assert_eq!(batch.len(), 1);
    let plan = overlay.republish_plan(&batch[0]).unwrap();
    assert_eq!(plan.encoded, r.encode());
    // This node (0x10) is the closest of all, so a holder itself: one
    // more holder is needed, with as many spares again.
    assert_eq!(plan.needed, 1);
    let d: Vec<u8> = plan
        .candidates
        .iter()
        .map(|c| c.id.as_bytes()[0] ^ key.0[0])
        .collect();
    assert_eq!(d, vec![0x11, 0x21, 0x31, 0x41]);
    assert!(overlay.republish_batch(batch.last(), 10).is_empty());
}

#[test]
fn events_are_bounded_and_oldest_dropped() {
    let overlay = service(NodeId::from_bytes([0; 32]), 2);
    let c = contact(NodeId::from_bytes([0x80; 32]), 1);
    // Each round queues two events: 400 in all.
    for _ in 0..200 {
        overlay.learn(c);
        overlay.core().with(|p, _| p.peer_left(&c.id));
    }
    let events = drain(&overlay);
    assert_eq!(events.len(), MAX_PENDING_CHURN_EVENTS);
    // 400 - 256 = 144 oldest dropped: the queue starts at an
    // admission and ends with the last eviction.
    assert_eq!(events.first(), Some(&ChurnEvent::Admitted(c)));
    assert_eq!(events.last(), Some(&ChurnEvent::Evicted(c)));
    // A refreshed resident is no event.
    overlay.learn(c);
    overlay.learn(c);
    assert_eq!(drain(&overlay), vec![ChurnEvent::Admitted(c)]);
}

#[test]
fn contacts_survive_a_restart_through_the_admission_rules() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.redb");
    let local = NodeId::from_bytes([0; 32]);
    let a = contact(NodeId::from_bytes([0x80; 32]), 1);
    let b = contact(NodeId::from_bytes([0x40; 32]), 2);
    // Same bucket as b and the same /24: saved, but a table with a
    // limit of 1 per /24 per bucket admits only one of them.
    let b2 = Contact {
        id: NodeId::from_bytes([0x41; 32]),
        addr: SocketAddr::from(([10, 2, 0, 9], 1)),
    };
    {
        let disk = DiskStore::open(&path).unwrap();
        let (overlay, _) = service(local, 2).with_disk(disk).unwrap();
        for c in [a, b, b2] {
            overlay.learn(c);
        }
        assert_eq!(overlay.save_contacts().unwrap(), 3);
    }
    let disk = DiskStore::open(&path).unwrap();
    let strict = OverlayParams {
        max_per_prefix_per_bucket: 1,
        ..params(2)
    };
    let overlay = OverlayService::new(local, strict, RecordPolicy::self_certifying("unit"));
    let (overlay, _) = overlay.with_disk(disk).unwrap();
    assert_eq!(overlay.restore_contacts().unwrap(), 2);
    assert_eq!(overlay.table_len(), 2);
    let reloaded = overlay.take_reloaded();
    assert_eq!(reloaded.len(), 2);
    assert!(reloaded.contains(&a));
    assert!(overlay.take_reloaded().is_empty(), "handed out once");
    assert!(drain(&overlay).is_empty(), "a reload is no churn");
    // An empty table does not overwrite the saved one.
    for c in overlay.routes() {
        overlay.core().with(|p, _| p.peer_left(&c.1.id));
    }
    assert_eq!(overlay.save_contacts().unwrap(), 0);
    assert_eq!(overlay.restore_contacts().unwrap(), 2);
    // Without a data directory there is nothing to save or restore.
    let memory = service(local, 2);
    assert_eq!(memory.save_contacts().unwrap(), 0);
    assert_eq!(memory.restore_contacts().unwrap(), 0);
}

#[test]
fn an_address_and_its_mapped_form_are_the_same_endpoint() {
    let v4: SocketAddr = "127.0.0.1:4433".parse().unwrap();
    let mapped: SocketAddr = "[::ffff:127.0.0.1]:4433".parse().unwrap();
    assert!(same_addr(v4, mapped));
    assert!(!same_addr(v4, "127.0.0.1:4434".parse().unwrap()));
    assert!(!same_addr(v4, "127.0.0.2:4433".parse().unwrap()));
}

#[test]
fn expired_records_leave_memory_and_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("records.redb");
    let owner = SecretKey::from_seed(&[3; 32]);
    let now = crate::unix_now() as u64;
    let short = OwnerValue::new("short", vec![])
        .unwrap()
        .sign(&owner, 1, now + 600);
    let long = OwnerValue::new("long", vec![])
        .unwrap()
        .sign(&owner, 1, now + 3600);
    let disk = DiskStore::open(&path).unwrap();
    let (overlay, _) = service(NodeId::from_bytes([1; 32]), 2)
        .with_disk(disk)
        .unwrap();
    for r in [&short, &long] {
        assert!(matches!(
            block_on(overlay.store_local(&r.encode(), false)),
            Message::Stored { .. }
        ));
    }
    assert_eq!(overlay.expire_records(), 0, "nothing expired yet");
    assert_eq!(overlay.expire_records_at(now + 600), 1);
    assert_eq!(overlay.records_len(), 1);
    assert_eq!(overlay.expire_records_at(now + 600), 0);
    drop(overlay);
    let disk = DiskStore::open(&path).unwrap();
    let rows = disk.load_all().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].1, long.encode());
}
