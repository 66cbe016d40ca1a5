//! Tests of path choice and guards: each rule holds, and names itself
//! when it leaves no candidate; guards stay put.

use super::*;
use crate::identity::SecretKey;
use crate::overlay::record::{sign_relay_descriptors, OnionKeyInfo, RecordPolicy};
use crate::reputation::{Evidence, Verdict};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::collections::{BTreeSet, HashMap};

const NOW: u64 = 1_750_000_000;
const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

fn key(seed: u8) -> SecretKey {
    SecretKey::from_seed(&[seed; 32])
}

fn id(seed: u8) -> NodeId {
    key(seed).public().node_id()
}

fn offer(seed: u8, addr: &str) -> RelayOffer {
    let secret = x25519_dalek::StaticSecret::from([seed; 32]);
    RelayOffer {
        addresses: vec![addr.parse().unwrap()],
        onion_key: OnionKeyInfo {
            key: x25519_dalek::PublicKey::from(&secret).to_bytes(),
            expires: NOW + 3 * DAY,
        },
        previous_onion_key: None,
        capacity: 100,
        relays_circuits: true,
        turn: None,
    }
}

fn verified(seed: u8, offer: RelayOffer) -> VerifiedRelay {
    let policy = RecordPolicy::self_certifying("p2psip");
    let records = sign_relay_descriptors(&key(seed), &policy, None, offer, 1, NOW).unwrap();
    VerifiedRelay::from_record(&records[0].verify(&policy, NOW).unwrap()).unwrap()
}

/// Relay `seed` at `addr` (`ip:port`), round-trip time unknown.
fn relay(seed: u8, addr: &str) -> Candidate {
    Candidate {
        relay: verified(seed, offer(seed, addr)),
        rtt: None,
    }
}

/// Relays 1..=n, each in its own /16 (10.n.0.1).
fn spread(n: u8) -> Vec<Candidate> {
    (1..=n)
        .map(|i| relay(i, &format!("10.{i}.0.1:4433")))
        .collect()
}

fn ends() -> Endpoints {
    Endpoints {
        own_id: id(200),
        own_addrs: vec!["198.51.100.1".parse().unwrap()],
        peer_id: Some(id(201)),
        peer_addrs: vec!["2001:db8:1::1".parse().unwrap()],
    }
}

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn choose(
    c: &[Candidate],
    e: &Endpoints,
    rep: &Reputation,
    g: &mut Guards,
    p: &PathParams,
    r: &mut ChaCha20Rng,
) -> Result<Path, PathError> {
    choose_path(c, e, rep, g, p, NOW, r)
}

fn rule_of(e: PathError) -> (Rule, usize) {
    match e {
        PathError::NoCandidate { rule, hop, .. } => (rule, hop),
        e => panic!("{e:?}"),
    }
}

fn ban(rep: &mut Reputation, peer: NodeId) {
    for _ in 0..1000 {
        if let Verdict::Disconnect { .. } =
            rep.observe(peer, Evidence::ProtocolViolation, NOW * 1000)
        {
            return;
        }
    }
    panic!("never banned");
}

#[test]
fn a_three_hop_path_has_guard_first_and_distinct_relays() {
    let cands = spread(10);
    let rep = Reputation::new();
    let mut guards = Guards::new();
    let p = choose(
        &cands,
        &ends(),
        &rep,
        &mut guards,
        &PathParams::default(),
        &mut rng(1),
    )
    .unwrap();
    assert_eq!(p.hops.len(), 3);
    assert_eq!(guards.guards().len(), RELAY_GUARDS);
    assert_eq!(p.hops[0].node_id, guards.guards()[0].id);
    let ids: BTreeSet<_> = p.hops.iter().map(|h| h.node_id).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(p.estimated_delay, 3 * RELAY_DEFAULT_HOP_DELAY);
    for h in &p.hops {
        let c = cands.iter().find(|c| c.relay.node_id == h.node_id).unwrap();
        assert_eq!(h.onion_key, c.relay.offer.onion_key.key);
        assert_eq!(h.addresses, c.relay.offer.addresses);
    }
}

#[test]
fn a_path_to_a_rendezvous_ends_there_and_keeps_clear_of_it() {
    // Relay 5 is the point; relay 6 shares its /16.
    let mut cands = spread(8);
    cands[5] = relay(6, "10.5.9.9:4433");
    let point_relay = &cands[4];
    let point = crate::relay::circuit::PathHop {
        id: point_relay.relay.node_id,
        addr: point_relay.relay.offer.addresses[0],
        onion: point_relay.relay.offer.onion_key.key,
    };
    let rep = Reputation::new();
    for seed in 0..40 {
        let mut guards = Guards::new();
        let p = choose_path_to(
            &cands,
            &ends(),
            &rep,
            &mut guards,
            &PathParams::default(),
            &point,
            NOW,
            &mut rng(seed),
        )
        .unwrap();
        let hops = p.circuit_hops().unwrap();
        assert_eq!(hops.len(), 3);
        assert_eq!(hops[2], point);
        for h in &hops[..2] {
            assert_ne!(h.id, point.id);
            assert_ne!(h.id, id(6), "in the point's /16");
        }
        assert_eq!(hops[0].id, guards.guards()[0].id);
        assert_eq!(p.estimated_delay, 3 * RELAY_DEFAULT_HOP_DELAY);
    }
    let mut guards = Guards::new();
    let one = PathParams {
        hops: 1,
        ..PathParams::default()
    };
    assert_eq!(
        choose_path_to(
            &cands,
            &ends(),
            &rep,
            &mut guards,
            &one,
            &point,
            NOW,
            &mut rng(1)
        ),
        Err(PathError::HopCount(1))
    );
}

#[test]
fn a_rendezvous_point_is_never_one_of_the_guards() {
    let cands = spread(6);
    let rep = Reputation::new();
    for seed in 0..40 {
        let mut guards = Guards::new();
        let p = choose_rendezvous_path(
            &cands,
            &ends(),
            &rep,
            &mut guards,
            &PathParams::default(),
            NOW,
            &mut rng(seed),
        )
        .unwrap();
        let point = p.hops.last().unwrap().node_id;
        assert!(guards.guards().iter().all(|g| g.id != point), "seed {seed}");
        assert_eq!(p.hops[0].node_id, guards.guards()[0].id);
    }
}

#[test]
fn no_two_hops_share_an_ipv4_16_or_an_ipv6_32() {
    // Three relays in 10.1/16, three in 2001:db8::/32, four elsewhere.
    let mut cands = vec![
        relay(1, "10.1.0.1:1"),
        relay(2, "10.1.200.2:1"),
        relay(3, "10.1.7.3:1"),
        relay(4, "[2001:db8:aa::1]:1"),
        relay(5, "[2001:db8:bb::1]:1"),
        relay(6, "[2001:db8:ffff::1]:1"),
    ];
    cands.extend((7..=10).map(|i| relay(i, &format!("172.{i}.0.1:1"))));
    let networks: HashMap<NodeId, IpPrefix> = cands
        .iter()
        .map(|c| {
            (
                c.relay.node_id,
                IpPrefix::wide(c.relay.offer.addresses[0].ip()),
            )
        })
        .collect();
    let rep = Reputation::new();
    let e = Endpoints {
        peer_addrs: vec![],
        ..ends()
    };
    let params = PathParams {
        hops: 4,
        ..PathParams::default()
    };
    for seed in 0..300 {
        let mut guards = Guards::new();
        let p = choose(&cands, &e, &rep, &mut guards, &params, &mut rng(seed)).unwrap();
        let nets: BTreeSet<_> = p.hops.iter().map(|h| networks[&h.node_id]).collect();
        assert_eq!(nets.len(), 4, "two hops in one network: {p:?}");
    }
    // Only one network: a second hop is impossible, and the error says why.
    let same: Vec<_> = (1..=5)
        .map(|i| relay(i, &format!("10.1.{i}.1:1")))
        .collect();
    let params = PathParams {
        hops: 2,
        ..PathParams::default()
    };
    let err = choose(&same, &e, &rep, &mut Guards::new(), &params, &mut rng(1)).unwrap_err();
    assert_eq!(rule_of(err.clone()), (Rule::Diversity, 1));
    assert!(err.to_string().contains("/16"), "{err}");
}

#[test]
fn endpoints_are_excluded_by_id_and_by_network() {
    let e = ends();
    let mut cands = spread(6);
    cands.push(relay(200, "10.200.0.1:1")); // this node itself
    cands.push(relay(201, "10.201.0.1:1")); // the callee
    cands.push(relay(30, "198.51.7.7:1")); // in this node's /16
    cands.push(relay(31, "[2001:db8:ffff::9]:1")); // in the callee's /32
    let excluded: BTreeSet<NodeId> = [id(200), id(201), id(30), id(31)].into();
    let rep = Reputation::new();
    for seed in 0..300 {
        let mut guards = Guards::new();
        let p = choose(
            &cands,
            &e,
            &rep,
            &mut guards,
            &PathParams::default(),
            &mut rng(seed),
        )
        .unwrap();
        assert!(p.hops.iter().all(|h| !excluded.contains(&h.node_id)));
        // Guards are chosen once, whoever is called: never this node or
        // its network, but perhaps a callee (then another guard serves).
        assert!(guards
            .guards()
            .iter()
            .all(|g| g.id != id(200) && g.id != id(30)));
    }
    let only = |c: Vec<Candidate>| {
        rule_of(
            choose(
                &c,
                &e,
                &rep,
                &mut Guards::new(),
                &PathParams::default(),
                &mut rng(1),
            )
            .unwrap_err(),
        )
    };
    assert_eq!(only(vec![relay(200, "10.200.0.1:1")]), (Rule::Endpoint, 0));
    assert_eq!(only(vec![relay(201, "10.201.0.1:1")]), (Rule::Endpoint, 0));
    assert_eq!(
        only(vec![relay(30, "198.51.7.7:1")]),
        (Rule::EndpointNetwork, 0)
    );
    assert_eq!(
        only(vec![relay(31, "[2001:db8:ffff::9]:1")]),
        (Rule::EndpointNetwork, 0)
    );
}

#[test]
fn banned_and_suspect_relays_are_never_chosen() {
    let cands = spread(8);
    let mut rep = Reputation::new();
    ban(&mut rep, id(1));
    ban(&mut rep, id(2));
    // Suspect: unresponsive often enough to fall below the threshold.
    for _ in 0..200 {
        let _ = rep.observe(id(3), Evidence::Unresponsive, NOW * 1000);
    }
    assert_eq!(rep.standing(&id(3), NOW * 1000), Standing::Suspect);
    let bad: BTreeSet<NodeId> = [id(1), id(2), id(3)].into();
    for seed in 0..300 {
        let mut guards = Guards::new();
        let p = choose(
            &cands,
            &ends(),
            &rep,
            &mut guards,
            &PathParams::default(),
            &mut rng(seed),
        )
        .unwrap();
        assert!(p.hops.iter().all(|h| !bad.contains(&h.node_id)));
    }
    let err = choose(
        &cands[..3],
        &ends(),
        &rep,
        &mut Guards::new(),
        &PathParams::default(),
        &mut rng(1),
    );
    assert_eq!(rule_of(err.unwrap_err()), (Rule::Reputation, 0));
}

#[test]
fn unusable_descriptors_are_skipped() {
    let rep = Reputation::new();
    let no_relay = Candidate {
        relay: verified(
            1,
            RelayOffer {
                relays_circuits: false,
                ..offer(1, "10.1.0.1:1")
            },
        ),
        rtt: None,
    };
    let no_capacity = Candidate {
        relay: verified(
            2,
            RelayOffer {
                capacity: 0,
                ..offer(2, "10.2.0.1:1")
            },
        ),
        rtt: None,
    };
    let err = choose(
        &[no_relay, no_capacity],
        &ends(),
        &rep,
        &mut Guards::new(),
        &PathParams::default(),
        &mut rng(1),
    );
    assert_eq!(rule_of(err.unwrap_err()), (Rule::Unusable, 0));
    // A descriptor past its record's expiry.
    let cands = spread(4);
    let later = cands[0].relay.expires;
    let err = choose_path(
        &cands,
        &ends(),
        &rep,
        &mut Guards::new(),
        &PathParams::default(),
        later,
        &mut rng(1),
    );
    assert_eq!(rule_of(err.unwrap_err()), (Rule::Unusable, 0));
}

#[test]
fn the_latency_budget_is_respected() {
    let rep = Reputation::new();
    // Fast relays (10 ms one way), slow ones (150 ms one way).
    let mut cands: Vec<Candidate> = (1..=4)
        .map(|i| Candidate {
            rtt: Some(Duration::from_millis(20)),
            ..relay(i, &format!("10.{i}.0.1:1"))
        })
        .collect();
    cands.extend((5..=10).map(|i| Candidate {
        rtt: Some(Duration::from_millis(300)),
        ..relay(i, &format!("10.{i}.0.1:1"))
    }));
    let params = PathParams::default();
    for seed in 0..300 {
        let mut guards = Guards::new();
        let p = choose(&cands, &ends(), &rep, &mut guards, &params, &mut rng(seed)).unwrap();
        assert!(p.estimated_delay <= params.latency_budget, "{p:?}");
        assert_eq!(p.estimated_delay, Duration::from_millis(30));
    }
    // Nothing fast enough: the budget is the rule that fails.
    let slow: Vec<_> = cands[4..].to_vec();
    let err = choose(
        &slow,
        &ends(),
        &rep,
        &mut Guards::new(),
        &params,
        &mut rng(1),
    )
    .unwrap_err();
    assert_eq!(rule_of(err), (Rule::LatencyBudget, 0));
    // Unknown round trips count the default delay: 6 hops of 30 ms do
    // not fit 150 ms.
    let params = PathParams {
        hops: 6,
        ..PathParams::default()
    };
    let err = choose(
        &spread(10),
        &ends(),
        &rep,
        &mut Guards::new(),
        &params,
        &mut rng(1),
    )
    .unwrap_err();
    assert_eq!(rule_of(err).0, Rule::LatencyBudget);
}

#[test]
fn hop_counts_are_bounded() {
    let rep = Reputation::new();
    for hops in [0, RELAY_MAX_HOPS + 1] {
        let params = PathParams {
            hops,
            ..PathParams::default()
        };
        assert_eq!(
            choose(
                &spread(3),
                &ends(),
                &rep,
                &mut Guards::new(),
                &params,
                &mut rng(1)
            ),
            Err(PathError::HopCount(hops))
        );
    }
}

#[test]
fn choice_is_weighted_by_score() {
    let cands = spread(2);
    let mut rep = Reputation::new();
    for _ in 0..50 {
        let _ = rep.observe(id(1), Evidence::Verified, NOW * 1000);
    }
    let now_ms = NOW * 1000;
    let (w1, w2) = (
        weight(&cands[0], &rep, now_ms),
        weight(&cands[1], &rep, now_ms),
    );
    assert!(w1 > 2.0 * w2, "a good score weighs more: {w1} vs {w2}");
    let set: Vec<&Candidate> = cands.iter().collect();
    let mut r = rng(7);
    let n = 20_000;
    let ones = (0..n)
        .filter(|_| draw(&set, &rep, now_ms, &mut r).unwrap().relay.node_id == id(1))
        .count();
    let expected = n as f64 * w1 / (w1 + w2);
    assert!(
        (ones as f64 - expected).abs() < 0.05 * n as f64,
        "{ones} draws of the good relay, expected about {expected}"
    );
    // Capacity counts, but at most double.
    let big = Candidate {
        relay: verified(
            3,
            RelayOffer {
                capacity: 1_000_000,
                ..offer(3, "10.3.0.1:1")
            },
        ),
        rtt: None,
    };
    let small = Candidate {
        relay: verified(
            4,
            RelayOffer {
                capacity: 1,
                ..offer(4, "10.4.0.1:1")
            },
        ),
        rtt: None,
    };
    let ratio = weight(&big, &rep, now_ms) / weight(&small, &rep, now_ms);
    assert!((1.9..=2.0).contains(&ratio), "{ratio}");
}

#[test]
fn guards_are_stable_across_many_circuits() {
    let cands = spread(12);
    let rep = Reputation::new();
    let mut guards = Guards::new();
    let mut r = rng(3);
    let first = choose(
        &cands,
        &ends(),
        &rep,
        &mut guards,
        &PathParams::default(),
        &mut r,
    )
    .unwrap();
    let chosen = guards.clone();
    let mut middles = BTreeSet::new();
    for i in 0..500u32 {
        // Different callees, at different times within the guards' life.
        let e = Endpoints {
            peer_id: Some(NodeId::from_bytes([i as u8; 32])),
            ..ends()
        };
        let t = NOW + u64::from(i) * 60;
        let p = choose_path(
            &cands,
            &e,
            &rep,
            &mut guards,
            &PathParams::default(),
            t,
            &mut r,
        )
        .unwrap();
        assert_eq!(p.hops[0].node_id, first.hops[0].node_id);
        middles.insert(p.hops[1].node_id);
    }
    assert_eq!(guards, chosen, "no guard changed");
    assert!(middles.len() > 5, "the other hops vary");
    // The two guards are in different networks.
    let g = guards.guards();
    let net = |id: &NodeId| {
        let c = cands.iter().find(|c| c.relay.node_id == *id).unwrap();
        IpPrefix::wide(c.relay.offer.addresses[0].ip())
    };
    assert_ne!(net(&g[0].id), net(&g[1].id));
    let life = g[0].until - g[0].chosen;
    assert!(
        (RELAY_GUARD_ROTATION_MIN.as_secs()..=RELAY_GUARD_ROTATION_MAX.as_secs()).contains(&life)
    );
}

#[test]
fn the_second_guard_serves_when_the_first_does_not_suit_the_circuit() {
    let cands = spread(8);
    let rep = Reputation::new();
    let mut guards = Guards::new();
    let _ = choose(
        &cands,
        &ends(),
        &rep,
        &mut guards,
        &PathParams::default(),
        &mut rng(4),
    )
    .unwrap();
    let [g0, g1] = [guards.guards()[0].id, guards.guards()[1].id];
    // A callee in the primary guard's network.
    let c0 = cands.iter().find(|c| c.relay.node_id == g0).unwrap();
    let e = Endpoints {
        peer_addrs: vec![c0.relay.offer.addresses[0].ip()],
        ..ends()
    };
    let p = choose(
        &cands,
        &e,
        &rep,
        &mut guards,
        &PathParams::default(),
        &mut rng(5),
    )
    .unwrap();
    assert_eq!(p.hops[0].node_id, g1);
    // A callee next to both: no guard suits; no stranger is used instead.
    let c1 = cands.iter().find(|c| c.relay.node_id == g1).unwrap();
    let e = Endpoints {
        peer_addrs: vec![
            c0.relay.offer.addresses[0].ip(),
            c1.relay.offer.addresses[0].ip(),
        ],
        ..ends()
    };
    let err = choose(
        &cands,
        &e,
        &rep,
        &mut guards,
        &PathParams::default(),
        &mut rng(6),
    )
    .unwrap_err();
    assert_eq!(rule_of(err), (Rule::Guard, 0));
    assert_eq!(guards.guards().len(), 2);
}

#[test]
fn a_failing_primary_guard_gives_way_to_the_other_guard_not_to_a_new_one() {
    let cands = spread(8);
    let rep = Reputation::new();
    let mut guards = Guards::new();
    let params = PathParams::default();
    let _ = choose(&cands, &ends(), &rep, &mut guards, &params, &mut rng(4)).unwrap();
    let [g0, g1] = [guards.guards()[0].id, guards.guards()[1].id];
    guards.note_failure(&g0, NOW);
    for seed in 0..20 {
        let p = choose(&cands, &ends(), &rep, &mut guards, &params, &mut rng(seed)).unwrap();
        assert_eq!(p.hops[0].node_id, g1);
    }
    assert_eq!(guards.guards()[0].id, g0, "still a guard");
    // Once it works again, it is the primary again.
    guards.note_success(&g0, NOW);
    let p = choose(&cands, &ends(), &rep, &mut guards, &params, &mut rng(1)).unwrap();
    assert_eq!(p.hops[0].node_id, g0);
}

#[test]
fn a_guard_is_replaced_only_after_the_failure_threshold() {
    let cands = spread(10);
    let rep = Reputation::new();
    let params = PathParams::default();
    let mut guards = Guards::new();
    let mut r = rng(8);
    let _ = choose(&cands, &ends(), &rep, &mut guards, &params, &mut r).unwrap();
    let primary = guards.guards()[0].id;
    let down = RELAY_GUARD_DOWN_TIME.as_secs();
    // Many failures within a short outage: kept.
    for i in 0..(RELAY_GUARD_MAX_FAILURES * 3) {
        guards.note_failure(&primary, NOW + u64::from(i));
    }
    let p = choose_path(
        &cands,
        &ends(),
        &rep,
        &mut guards,
        &params,
        NOW + 600,
        &mut r,
    )
    .unwrap();
    // Kept as a guard; while it fails, the other guard serves.
    assert_eq!(guards.guards()[0].id, primary);
    assert_eq!(p.hops[0].node_id, guards.guards()[1].id);
    // A success forgets them; a long outage with few failures: kept.
    guards.note_success(&primary, NOW + 700);
    assert_eq!(guards.guards()[0].failures, 0);
    guards.note_failure(&primary, NOW + 800);
    guards.note_failure(&primary, NOW + 800 + down + 1);
    let p = choose_path(
        &cands,
        &ends(),
        &rep,
        &mut guards,
        &params,
        NOW + 800 + down + 2,
        &mut r,
    )
    .unwrap();
    assert_eq!(guards.guards()[0].id, primary);
    assert_eq!(p.hops[0].node_id, guards.guards()[1].id);
    // Enough failures over the down time: replaced, the other guard
    // becomes primary.
    let second = guards.guards()[1].id;
    for i in 0..RELAY_GUARD_MAX_FAILURES {
        guards.note_failure(&primary, NOW + 800 + down + 3 + u64::from(i));
    }
    let t = NOW + 800 + down + 100;
    let p = choose_path(&cands, &ends(), &rep, &mut guards, &params, t, &mut r).unwrap();
    assert_eq!(p.hops[0].node_id, second);
    assert_eq!(guards.guards().len(), RELAY_GUARDS);
    assert!(guards.guards().iter().all(|g| g.id != primary));
}

#[test]
fn a_banned_or_expired_guard_is_replaced_at_once() {
    let cands = spread(10);
    let mut rep = Reputation::new();
    let params = PathParams::default();
    let mut guards = Guards::new();
    let mut r = rng(9);
    let _ = choose(&cands, &ends(), &rep, &mut guards, &params, &mut r).unwrap();
    let [g0, g1] = [guards.guards()[0].id, guards.guards()[1].id];
    ban(&mut rep, g0);
    let p = choose(&cands, &ends(), &rep, &mut guards, &params, &mut r).unwrap();
    assert_eq!(p.hops[0].node_id, g1);
    assert!(guards.guards().iter().all(|g| g.id != g0));
    // At the end of its life a guard is replaced too (the descriptors are
    // stale by then, so renew them).
    let until = guards.guards()[0].until;
    assert!(guards.guards().iter().any(|g| g.id == g1));
    let mut g = guards.clone();
    g.guards.retain(|x| x.id == g1);
    let all: Vec<&Candidate> = cands.iter().collect();
    g.refresh(&all, &all, &rep, &params, until, &mut r);
    assert!(g.guards().iter().all(|x| x.id != g1));
}

#[test]
fn guards_round_trip_through_bytes() {
    let cands = spread(6);
    let mut guards = Guards::new();
    let _ = choose(
        &cands,
        &ends(),
        &Reputation::new(),
        &mut guards,
        &PathParams::default(),
        &mut rng(10),
    )
    .unwrap();
    guards.note_failure(&guards.guards()[1].id.clone(), NOW + 5);
    let bytes = guards.encode();
    assert_eq!(Guards::decode(&bytes).unwrap(), guards);
    assert_eq!(
        Guards::decode(&Guards::new().encode()).unwrap(),
        Guards::new()
    );
}

#[test]
fn garbage_guard_state_is_refused_cleanly() {
    let g = |id: u8, chosen: u64, until: u64, failures: u32, since: u64| Guard {
        id: NodeId::from_bytes([id; 32]),
        chosen,
        until,
        failures,
        failing_since: since,
    };
    let month = 30 * DAY;
    let good = Guards {
        guards: vec![
            g(1, NOW, NOW + month, 0, 0),
            g(2, NOW, NOW + 2 * month, 3, NOW),
        ],
    };
    let bytes = good.encode();
    assert_eq!(Guards::decode(&bytes).unwrap(), good);
    for n in 0..bytes.len() {
        assert!(Guards::decode(&bytes[..n]).is_err(), "prefix {n}");
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(
        Guards::decode(&trailing),
        Err(GuardStateError::Malformed(WireError::TrailingBytes))
    );
    let mut v2 = bytes.clone();
    v2[1] = 2;
    assert_eq!(
        Guards::decode(&v2),
        Err(GuardStateError::UnsupportedVersion(2))
    );
    let three = Guards {
        guards: vec![
            g(1, NOW, NOW + month, 0, 0),
            g(2, NOW, NOW + month, 0, 0),
            g(3, NOW, NOW + month, 0, 0),
        ],
    };
    assert_eq!(
        Guards::decode(&three.encode()),
        Err(GuardStateError::TooMany(3))
    );
    for (bad, why) in [
        (
            vec![g(1, NOW, NOW + month, 0, 0), g(1, NOW, NOW + month, 0, 0)],
            "twice",
        ),
        (vec![g(1, NOW, NOW + DAY, 0, 0)], "rotation"),
        (vec![g(1, NOW, NOW + 3 * month, 0, 0)], "rotation"),
        (vec![g(1, NOW + 1, NOW, 0, 0)], "rotation"),
        (vec![g(1, NOW, NOW + month, 2, 0)], "start"),
        (vec![g(1, NOW, NOW + month, 0, NOW)], "start"),
    ] {
        match Guards::decode(&Guards { guards: bad }.encode()) {
            Err(GuardStateError::Inconsistent(m)) => assert!(m.contains(why), "{m}"),
            other => panic!("{other:?}"),
        }
    }
    // Non-canonical: the version as a two-byte integer.
    let mut long = vec![bytes[0], 0x18, 0x01];
    long.extend_from_slice(&bytes[2..]);
    assert_eq!(
        Guards::decode(&long),
        Err(GuardStateError::Malformed(WireError::NonCanonical))
    );
    // A huge declared guard count is refused from the header.
    assert_eq!(
        Guards::decode(&[0x82, 0x01, 0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        Err(GuardStateError::TooMany(u64::MAX))
    );
    for junk in [&b""[..], b"\xff", b"guards", &[0x82, 0x01, 0x81, 0x00]] {
        assert!(Guards::decode(junk).is_err());
    }
}

/// Writes the seed corpus of the `relay_descriptor` fuzz target (run with
/// `P2PSIP_WRITE_SEEDS=1 cargo test --lib write_relay_descriptor_seeds --
/// --ignored`). The records verify at `NOW` in the self-certifying overlay
/// `p2psip`, what the fuzz target checks them with.
#[test]
#[ignore = "writes files; run by hand to regenerate the seeds"]
fn write_relay_descriptor_seeds() {
    use crate::overlay::record::{withdraw_relay_descriptors, RelayDescriptor};
    if std::env::var_os("P2PSIP_WRITE_SEEDS").is_none() {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/relay_descriptor");
    std::fs::create_dir_all(&dir).unwrap();
    let policy = RecordPolicy::self_certifying("p2psip");
    let full = RelayOffer {
        addresses: vec![
            "192.0.2.7:4433".parse().unwrap(),
            "[2001:db8::7]:4433".parse().unwrap(),
        ],
        previous_onion_key: Some(OnionKeyInfo {
            expires: NOW + DAY,
            ..offer(6, "192.0.2.6:1").onion_key
        }),
        turn: Some("192.0.2.7:3478".parse().unwrap()),
        ..offer(7, "192.0.2.7:1")
    };
    let relay = key(1);
    let live = sign_relay_descriptors(&relay, &policy, None, full.clone(), 1, NOW).unwrap();
    let plain =
        sign_relay_descriptors(&key(2), &policy, None, offer(2, "10.2.0.1:4433"), 7, NOW).unwrap();
    let gone = withdraw_relay_descriptors(&relay, &policy, None, 2, NOW).unwrap();
    let desc = RelayDescriptor::new(relay.public().node_id(), None, full).unwrap();
    let mut guards = Guards::new();
    let _ = choose(
        &spread(6),
        &ends(),
        &Reputation::new(),
        &mut guards,
        &PathParams::default(),
        &mut rng(1),
    )
    .unwrap();
    guards.note_failure(&guards.guards()[0].id.clone(), NOW);
    let mut noncanonical = desc.encode();
    noncanonical.splice(1..2, [0x18, 0x01]);
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("record_full", live[0].encode()),
        ("record_full_second_key", live[1].encode()),
        ("record_plain", plain[0].encode()),
        ("record_withdrawn", gone[0].encode()),
        ("value_full", desc.encode()),
        (
            "value_withdrawn",
            RelayDescriptor::withdrawn(relay.public().node_id(), None).encode(),
        ),
        ("value_noncanonical", noncanonical),
        ("guards_two", guards.encode()),
        ("guards_empty", Guards::new().encode()),
    ];
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}
