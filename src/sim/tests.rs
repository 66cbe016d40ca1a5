//! The simulator's tests.

use super::*;

fn small(seed: u64) -> SimConfig {
    SimConfig {
        nodes: 200,
        lookups: 200,
        store_fetch: 20,
        seed,
        ..SimConfig::default()
    }
}

#[test]
fn same_seed_same_report_byte_for_byte() {
    let tiny = |seed| SimConfig {
        nodes: 100,
        lookups: 100,
        store_fetch: 10,
        churn_per_min: 0.05,
        loss: 0.01,
        ..small(seed)
    };
    let a = Simulator::new(tiny(7)).run().to_json();
    let b = Simulator::new(tiny(7)).run().to_json();
    assert_eq!(a, b);
    let c = Simulator::new(tiny(8)).run().to_json();
    assert_ne!(a, c, "another seed, another run");
}

#[test]
fn a_stable_overlay_finds_every_node_in_few_hops() {
    let r = Simulator::new(small(1)).run();
    assert_eq!(r.success_rate, 1.0, "{r:?}");
    assert_eq!(r.store_fetch_success_rate, 1.0, "{r:?}");
    assert!(r.hops_p50 <= 3, "{r:?}");
    assert!(r.table_entries_mean > 20.0, "{r:?}");
}

#[test]
fn records_survive_the_crash_of_30_percent_of_their_holders() {
    let mut sim = Simulator::new(small(3));
    sim.bootstrap();
    let key = Key(Sha256::digest(b"survivor").into());
    let writer = sim.random_live();
    let stored = sim.store(writer, key, 42);
    // Placed on the replication factor's nodes; one that knows
    // 2 × replication nodes closer refuses, as the node does.
    assert!((18..=20).contains(&stored), "{stored}");
    let holders = sim.holders(&key);
    assert_eq!(holders.len(), stored);
    let doomed: Vec<usize> = holders
        .iter()
        .copied()
        .take(holders.len() * 3 / 10)
        .collect();
    assert!(doomed.len() >= 5);
    sim.crash(&doomed);
    assert_eq!(sim.holders(&key).len(), stored - doomed.len());
    // Right after the crash, before anyone noticed: still found.
    for _ in 0..10 {
        let reader = sim.random_live();
        assert_eq!(sim.fetch(reader, key), Some(42));
    }
    // Once tables have dropped the dead (periodic liveness checks),
    // republishing restores the replication factor on live nodes.
    sim.maintain();
    sim.republish(key);
    assert!(sim.holders(&key).len() >= 20, "{}", sim.holders(&key).len());
    for _ in 0..20 {
        let reader = sim.random_live();
        assert_eq!(sim.fetch(reader, key), Some(42));
    }
}

/// The `n` live nodes closest to `key`, by the true distance.
fn truly_closest(sim: &Simulator, key: &Key, n: usize) -> Vec<usize> {
    let mut live: Vec<usize> = (0..sim.nodes.len())
        .filter(|i| sim.nodes[*i].alive)
        .collect();
    live.sort_by_key(|i| key.distance(&Key::from(sim.nodes[*i].contact.id)));
    live.truncate(n);
    live
}

#[test]
fn a_graceful_leave_hands_its_records_over_and_is_forgotten() {
    let mut sim = Simulator::new(small(5));
    sim.bootstrap();
    let key = Key(Sha256::digest(b"leaver").into());
    let writer = sim.random_live();
    assert_eq!(sim.store(writer, key, 7), 20);
    let leavers: Vec<usize> = sim.holders(&key).into_iter().take(5).collect();
    for l in &leavers {
        let id = sim.nodes[*l].contact.id;
        sim.leave(*l);
        assert!(
            sim.nodes
                .iter()
                .filter(|n| n.alive)
                .all(|n| !n.peers.table().contains(&id)),
            "no live table keeps a node that said goodbye"
        );
    }
    // No maintenance, no republish: the leavers' copies moved on.
    assert!(sim.holders(&key).len() >= 20, "{}", sim.holders(&key).len());
    let closest = truly_closest(&sim, &key, 20);
    let held = closest
        .iter()
        .filter(|i| sim.nodes[**i].records.contains_key(&key))
        .count();
    assert!(held >= 19, "{held} of the 20 closest hold the record");
    for _ in 0..10 {
        let reader = sim.random_live();
        assert_eq!(sim.fetch(reader, key), Some(7));
    }
}

#[test]
fn newcomers_closer_to_a_key_receive_its_records() {
    let mut sim = Simulator::new(small(6));
    sim.bootstrap();
    let keys: Vec<Key> = (0..20u8).map(|i| Key(Sha256::digest([i]).into())).collect();
    for (i, key) in keys.iter().enumerate() {
        let writer = sim.random_live();
        // A replica placed round-robin across the paths may land on
        // a node that knows 2 × replication closer ones: it refuses
        // (not responsible), as the node does: 14 of 20 at worst
        // here. What this test measures is the hand-over.
        let stored = sim.store(writer, *key, i as u64);
        assert!(stored > 10, "{i}: {stored}");
    }
    let first_newcomer = sim.nodes.len();
    for _ in 0..100 {
        sim.join();
    }
    // Newcomers that are now among a key's 20 closest nodes.
    let (mut should, mut hold) = (0, 0);
    for key in &keys {
        for i in truly_closest(&sim, key, 20) {
            if i >= first_newcomer {
                should += 1;
                if sim.nodes[i].records.contains_key(key) {
                    hold += 1;
                }
            }
        }
    }
    assert!(
        should >= 50,
        "100 joins into 200 nodes: a third of each closest set is new ({should})"
    );
    assert!(
        hold * 100 >= should * 95,
        "{hold} of {should} newcomers hold what they should"
    );
}

#[test]
fn a_join_whose_bootstrap_request_is_lost_tries_again_and_recovers() {
    let mut sim = Simulator::new(SimConfig {
        nodes: 60,
        ..small(11)
    });
    sim.bootstrap();
    // Every request is lost: the own-id lookup finds nobody.
    sim.config.loss = 1.0;
    let me = sim.join();
    assert_eq!(sim.nodes[me].peers.table().len(), 1, "its bootstrap node");
    let known_by = |sim: &Simulator| {
        let id = sim.nodes[me].contact.id;
        sim.nodes
            .iter()
            .filter(|n| n.peers.table().contains(&id))
            .count()
    };
    assert_eq!(known_by(&sim), 0, "nobody knows it");
    let Some((plan, _)) = &sim.nodes[me].joining else {
        panic!("a retry is planned");
    };
    assert_eq!(plan.attempts(), 1);
    // The retry is due 1 virtual second after the lookup timed out.
    let Some(&Reverse((at, who))) = sim.join_retries.peek() else {
        panic!("a retry is queued");
    };
    assert_eq!((who, at), (me, sim.now + sim.config.timeout_ms + 1000));
    // The network heals.
    sim.config.loss = 0.0;
    sim.now = at - 1;
    sim.run_due_joins();
    assert!(sim.nodes[me].joining.is_some(), "not due yet");
    sim.now = at;
    sim.run_due_joins();
    assert!(sim.nodes[me].joining.is_none());
    assert!(sim.nodes[me].peers.table().len() > 20);
    assert!(known_by(&sim) > 10, "{}", known_by(&sim));
    let from = sim.random_live();
    let target = Key::from(sim.nodes[me].contact.id);
    assert!(sim
        .query(from, target, Goal::Node)
        .found
        .target_hop
        .is_some());
}

/// The node's planning (`OverlayService::plan_churn`, over its record
/// store) and the simulator's (`Simulator::churn_plan`, over its
/// tags), given the same table, the same held keys and the same churn
/// events, move the same records to the same contacts.
#[test]
fn the_node_and_the_simulator_move_records_alike_on_churn() {
    use crate::identity::SecretKey;
    use crate::net::overlay::OverlayService;
    use crate::overlay::record::{OwnerValue, RecordPolicy};
    use crate::wire::Message;

    let mut sim = Simulator::new(SimConfig {
        nodes: 60,
        ..small(12)
    });
    sim.bootstrap();
    let x = sim.random_live();
    let params = sim.config.params.clone();
    let node = OverlayService::new(
        sim.nodes[x].contact.id,
        params.clone(),
        RecordPolicy::self_certifying(params.name.clone()),
    );
    let table: Vec<Contact> = sim.nodes[x]
        .peers
        .table()
        .entries()
        .map(|(_, c, _, _)| c)
        .collect();
    for c in &table {
        node.learn(*c);
    }
    let ids = |v: Vec<Contact>| v.into_iter().map(|c| c.id).collect::<HashSet<_>>();
    assert_eq!(
        ids(node.routes().into_iter().map(|(_, c)| c).collect()),
        ids(table.clone())
    );
    while node.next_event().is_some() {}
    // The same records: signed ones for the node, tags for the
    // simulator, under keys the node is responsible for.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let owner = SecretKey::from_seed(&[3; 32]);
    let expires = crate::unix_now() as u64 + 3600;
    let mut keys = Vec::new();
    for i in 0..200 {
        let r = OwnerValue::new(&format!("churn-{i}"), vec![])
            .unwrap()
            .sign(&owner, 1, expires);
        if !node.is_responsible(&r.key) {
            continue;
        }
        let store = Message::Store {
            overlay: params.name.clone(),
            record: r.encode(),
        };
        let answer = rt.block_on(node.answer(table[0], ListenProof::Verified, &store));
        assert!(matches!(answer, Some(Message::Stored { .. })), "{answer:?}");
        sim.nodes[x].records.insert(r.key, 1);
        keys.push(r.key);
        if keys.len() == 12 {
            break;
        }
    }
    assert_eq!(keys.len(), 12);
    while node.next_event().is_some() {}
    let key_of = |encoded: &[u8]| crate::overlay::record::Record::decode(encoded).unwrap().key;
    let now = sim.now;
    let (mut handed, mut repaired) = (0, 0);
    // Newcomers next to each key (some among its closest, some not),
    // then the eviction of contacts near the keys.
    for (i, key) in keys.iter().enumerate() {
        for flip in [0x01u8, 0x40] {
            let mut id = key.0;
            id[31] ^= flip;
            id[1] ^= flip;
            let newcomer = Contact {
                id: NodeId::from_bytes(id),
                addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(100, i as u8, flip, 1)), 4433),
            };
            sim.nodes[x]
                .peers
                .learn(now, newcomer, ListenProof::Verified);
            node.learn(newcomer);
        }
        let near = sim.nodes[x].peers.closest(key, 1);
        for c in near {
            sim.nodes[x].peers.peer_left(&c.id);
            node.core().with(|p, _| p.peer_left(&c.id));
        }
    }
    while let Some(event) = sim.nodes[x].peers.poll_churn() {
        assert_eq!(node.next_event(), Some(event));
        let in_sim: Vec<(Contact, Key)> = sim
            .churn_plan(x, &event)
            .into_iter()
            .map(|(to, (key, _))| (to, key))
            .collect();
        let in_node: Vec<(Contact, Key)> = node
            .plan_churn(&event)
            .into_iter()
            .map(|(to, encoded)| (to, key_of(&encoded)))
            .collect();
        assert_eq!(in_sim, in_node, "{event:?}");
        match event {
            ChurnEvent::Admitted(_) => handed += in_sim.len(),
            ChurnEvent::Evicted(_) => repaired += in_sim.len(),
        }
    }
    assert_eq!(node.next_event(), None);
    assert!(
        handed > 0 && repaired > 0,
        "{handed} handed over, {repaired} repaired"
    );
}

#[test]
fn lookups_survive_churn() {
    let r = Simulator::new(SimConfig {
        churn_per_min: 0.05,
        ..small(4)
    })
    .run();
    assert!(r.crashed > 0 && r.joined == r.crashed, "{r:?}");
    assert!(r.success_rate >= 0.97, "{r:?}");
}

#[test]
fn a_writer_among_the_closest_keeps_a_replica_itself() {
    let mut sim = Simulator::new(small(2));
    sim.bootstrap();
    let writer = sim.random_live();
    // The writer's own id: it is the closest node to the key.
    let key = Key::from(sim.nodes[writer].contact.id);
    let stored = sim.store(writer, key, 9);
    assert!(stored >= 18, "{stored}");
    let holders = sim.holders(&key);
    assert!(holders.contains(&writer), "{holders:?}");
    assert_eq!(holders.len(), stored);
    // A writer far from the key keeps nothing.
    let other = Key(Sha256::digest(b"far away").into());
    let far = truly_closest(&sim, &other, 200).last().copied().unwrap();
    assert!(sim.store(far, other, 3) >= 18);
    assert!(!sim.holders(&other).contains(&far));
}

/// A flooded node admits the spam through its core's own decision
/// ([`Peers::admit_request`]): with whatever limit that core has, the
/// flood serves what a bare core fed the same requests at the same
/// times serves, request for request, until both ban the spammer; the
/// junk it keeps stays within the store's quota ([`admit_new_slot`]).
#[test]
fn a_flooded_node_admits_as_its_core_decides() {
    use crate::overlay::rate::RateLimit;
    use std::time::Duration;
    let config = SimConfig {
        spam: true,
        store: Some(StoreModel {
            slots: 64,
            per_owner: Some(4),
        }),
        ..small(5)
    };
    let interval = config.interval_ms;
    let mut sim = Simulator::new(config);
    let target = sim.add_node([1; 32], Ipv4Addr::new(10, 0, 0, 1), Behaviour::Honest);
    let s = sim.add_node([2; 32], Ipv4Addr::new(10, 0, 0, 2), Behaviour::Spam);
    // Not the default limit: a copy of the policy in the simulator
    // would not know it.
    let limit = RateLimit {
        burst: 7,
        refill_every: Duration::from_millis(30),
        max_refused_in_a_row: 5,
    };
    sim.nodes[target].peers.set_rate_limit(limit);
    let plan = sim.spam_plan();
    assert_eq!(plan, vec![(s, vec![target])]);
    let spammer = sim.nodes[s].contact;
    let mut model = sim.nodes[target].peers.clone();
    let mut streak = RefusalStreak::default();
    let per_op = (MAX_REQUESTS_PER_PEER_PER_SEC * SIM_SPAM_RATE_FACTOR) as u64 * interval / 1000;
    let mut served_in_all = 0;
    for _ in 0..200 {
        sim.now += interval;
        let served = sim.flood(&plan).get(&target).copied().unwrap_or(0);
        let mut expected = 0;
        for _ in 0..per_op {
            match model.admit_request(sim.now, &spammer.id, spammer.addr.ip(), &mut streak) {
                Admission::Serve => expected += 1,
                Admission::Refuse(_) => {}
                Admission::Close(_) => {
                    streak = RefusalStreak::default();
                    break;
                }
                Admission::Banned => break,
            }
        }
        assert_eq!(served, expected, "at {} ms", sim.now);
        served_in_all += served;
    }
    assert!(served_in_all > 7, "{served_in_all}");
    assert!(model.is_banned(sim.now, &spammer.id));
    let node = &sim.nodes[target];
    assert!(node.peers.is_banned(sim.now, &spammer.id));
    let junk = node.inbox.as_deref().map(|x| x.junk).unwrap_or(0);
    assert_eq!(junk, 4, "the quota of one owner");
}
