//! Scenario tests of the reputation table, with the real constants.

use super::entry::{Counts, Entry};
use super::*;
use crate::overlay::key::Key;
use crate::overlay::lookup::FaultKind;
use crate::wire::WireError;

const MIN: u64 = 60_000;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;
/// A plausible wall-clock start (unix ms, 2025).
const T0: u64 = 1_750_000_000_000;

fn id(n: u64) -> NodeId {
    let mut b = [0u8; 32];
    b[24..].copy_from_slice(&n.to_be_bytes());
    NodeId::from_bytes(b)
}

fn observe_n(rep: &mut Reputation, peer: NodeId, evidence: Evidence, n: usize, now: u64) {
    for _ in 0..n {
        let _ = rep.observe(peer, evidence, now);
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn unknown_peers_are_neutral() {
    let rep = Reputation::new();
    let p = id(1);
    assert_eq!(rep.score(&p, T0), 0.0);
    assert_eq!(rep.standing(&p, T0), Standing::Neutral);
    assert!(!rep.is_banned(&p, T0));
    assert_eq!(rep.rate_factor(&p, T0), 1.0);
    assert!(rep.may_hold_replica(&p, T0));
    assert!(rep.may_admit(&p, T0));
    assert!(!rep.is_established(&p, T0));
    assert!(rep.prefer_resident(&p, &id(2), T0));
    assert!(rep.peer(&p, T0).is_none());
}

#[test]
fn score_halves_after_each_half_life() {
    let mut rep = Reputation::new();
    let good = id(1);
    observe_n(&mut rep, good, Evidence::Verified, 10, T0);
    assert_eq!(rep.score(&good, T0), 20.0);
    assert!(close(rep.score(&good, T0 + HOUR), 10.0));
    assert!(close(rep.score(&good, T0 + 2 * HOUR), 5.0));
    assert!(close(rep.score(&good, T0 + 30 * MIN), 20.0 / 2f64.sqrt()));

    // Misbehaviour decays with its own, longer half-life.
    let bad = id(2);
    let _ = rep.observe(bad, Evidence::Misbehaved(Misbehaviour::TooManyContacts), T0);
    assert_eq!(rep.score(&bad, T0), -50.0);
    assert!(close(
        rep.score(&bad, T0 + HOUR),
        -50.0 * 2f64.powf(-1.0 / 24.0)
    ));
    assert!(close(rep.score(&bad, T0 + DAY), -25.0));
    assert!(close(rep.score(&bad, T0 + 2 * DAY), -12.5));
    assert_eq!(rep.standing(&bad, T0 + 2 * DAY), Standing::Suspect);
    assert_eq!(rep.standing(&bad, T0 + 3 * DAY), Standing::Neutral);

    // Decay is applied before new evidence is added.
    let _ = rep.observe(good, Evidence::Answered, T0 + HOUR);
    assert!(close(rep.score(&good, T0 + HOUR), 11.0));
}

#[test]
fn scores_are_bounded() {
    let mut rep = Reputation::new();
    let (good, dead, bad) = (id(1), id(2), id(3));
    observe_n(&mut rep, good, Evidence::Verified, 1000, T0);
    assert_eq!(rep.score(&good, T0), REPUTATION_SCORE_MAX);
    observe_n(&mut rep, dead, Evidence::Unresponsive, 1000, T0);
    assert_eq!(rep.score(&dead, T0), REPUTATION_RELIABILITY_FLOOR);
    // Protocol violations during the ban add load but not strikes.
    observe_n(&mut rep, bad, Evidence::ProtocolViolation, 1000, T0);
    assert_eq!(rep.score(&bad, T0), REPUTATION_SCORE_MIN);
    assert_eq!(rep.peer(&bad, T0).map(|r| r.bans), Some(1));
}

#[test]
fn misbehaviour_outweighs_many_timeouts() {
    let mut rep = Reputation::new();
    let (flaky, liar) = (id(1), id(2));
    observe_n(&mut rep, flaky, Evidence::Unresponsive, 20, T0);
    let _ = rep.observe(liar, Evidence::Misbehaved(Misbehaviour::InvalidContact), T0);
    assert_eq!(rep.score(&flaky, T0), -40.0);
    assert_eq!(rep.score(&liar, T0), -50.0);
    assert!(rep.score(&liar, T0) < rep.score(&flaky, T0));
    // However long a peer stays dead, two lies rank below it.
    observe_n(&mut rep, flaky, Evidence::Unresponsive, 10_000, T0);
    let _ = rep.observe(liar, Evidence::Misbehaved(Misbehaviour::InvalidContact), T0);
    assert_eq!(rep.score(&flaky, T0), -50.0);
    assert_eq!(rep.score(&liar, T0), -100.0);
    // A peer at the top loses half its score to one lie, and 2 points to
    // a timeout.
    let top = id(3);
    observe_n(&mut rep, top, Evidence::Verified, 50, T0);
    let mut timed_out = rep.clone();
    let _ = timed_out.observe(top, Evidence::Unresponsive, T0);
    let _ = rep.observe(top, Evidence::Misbehaved(Misbehaviour::BadRecord), T0);
    assert_eq!(timed_out.score(&top, T0), 98.0);
    assert_eq!(rep.score(&top, T0), 50.0);
}

#[test]
fn a_protocol_violation_bans_at_once_and_the_ban_expires() {
    let mut rep = Reputation::new();
    let p = id(7);
    observe_n(&mut rep, p, Evidence::Verified, 50, T0);
    let until = T0 + 10 * MIN;
    assert_eq!(
        rep.observe(p, Evidence::ProtocolViolation, T0),
        Verdict::Disconnect {
            banned_until_ms: until
        }
    );
    // The ban is apart from the score: a well-regarded peer is banned too.
    assert_eq!(rep.score(&p, T0), 50.0);
    assert!(rep.is_banned(&p, until - 1));
    assert_eq!(rep.standing(&p, until - 1), Standing::Banned);
    assert_eq!(rep.rate_factor(&p, until - 1), 0.0);
    assert!(!rep.may_admit(&p, until - 1));
    assert!(!rep.may_hold_replica(&p, until - 1));
    // Anything heard from it meanwhile: disconnect again, same ban.
    assert_eq!(
        rep.observe(p, Evidence::Seen, T0 + MIN),
        Verdict::Disconnect {
            banned_until_ms: until
        }
    );
    let report = rep.peer(&p, until - 1).unwrap();
    assert_eq!(report.banned_until_ms, Some(until));
    assert_eq!((report.violations, report.bans), (1, 1));
    // Expiry.
    assert!(!rep.is_banned(&p, until));
    assert_eq!(rep.peer(&p, until).unwrap().banned_until_ms, None);
    assert_eq!(rep.observe(p, Evidence::Seen, until), Verdict::Keep);
    assert_ne!(rep.standing(&p, until), Standing::Banned);
}

#[test]
fn a_burst_of_violations_is_one_strike() {
    let mut rep = Reputation::new();
    let p = id(7);
    observe_n(&mut rep, p, Evidence::ProtocolViolation, 5, T0);
    let r = rep.peer(&p, T0).unwrap();
    assert_eq!((r.violations, r.bans), (5, 1));
    assert_eq!(r.banned_until_ms, Some(T0 + 10 * MIN));
}

#[test]
fn bans_escalate_up_to_a_bound_and_are_forgotten() {
    let mut rep = Reputation::new();
    let p = id(7);
    let mut now = T0;
    let mut lengths = Vec::new();
    for _ in 0..11 {
        let Verdict::Disconnect { banned_until_ms } =
            rep.observe(p, Evidence::ProtocolViolation, now)
        else {
            panic!("a violation bans");
        };
        lengths.push((banned_until_ms - now) / MIN);
        now = banned_until_ms;
    }
    assert_eq!(
        lengths,
        [10, 20, 40, 80, 160, 320, 640, 1280, 1440, 1440, 1440]
    );
    assert_eq!(rep.peer(&p, now).unwrap().bans, REPUTATION_MAX_BAN_STRIKES);
    // A week after the last ban began, the next starts from the base.
    let last_start = now - DAY;
    let later = last_start + 7 * DAY;
    assert_eq!(rep.peer(&p, later).unwrap().bans, 0);
    assert_eq!(
        rep.observe(p, Evidence::ProtocolViolation, later),
        Verdict::Disconnect {
            banned_until_ms: later + 10 * MIN
        }
    );
}

#[test]
fn forged_records_and_floods_ban_too() {
    let mut rep = Reputation::new();
    let forger = id(1);
    let forged = Evidence::from_record_error(&crate::overlay::record::RecordError::BadSignature);
    assert_eq!(rep.observe(forger, forged, T0), Verdict::Keep);
    assert_eq!(
        rep.observe(forger, forged, T0 + MIN),
        Verdict::Disconnect {
            banned_until_ms: T0 + 11 * MIN
        }
    );
    // After the ban the load is still high: the next lie bans again, longer.
    let after = T0 + 11 * MIN;
    assert!(!rep.is_banned(&forger, after));
    assert_eq!(rep.observe(forger, Evidence::Seen, after), Verdict::Keep);
    assert_eq!(
        rep.observe(forger, forged, after),
        Verdict::Disconnect {
            banned_until_ms: after + 20 * MIN
        }
    );

    let spammer = id(2);
    observe_n(&mut rep, spammer, Evidence::RateViolation, 17, T0);
    assert!(!rep.is_banned(&spammer, T0));
    assert_eq!(rep.score(&spammer, T0), -85.0);
    assert!(matches!(
        rep.observe(spammer, Evidence::RateViolation, T0),
        Verdict::Disconnect { .. }
    ));

    // Refusals that prove nothing never ban, nor cost anything.
    let honest = id(3);
    let expired = crate::overlay::record::RecordError::Expired { expires: 1, now: 2 };
    observe_n(&mut rep, honest, Evidence::from(&expired), 1000, T0);
    assert_eq!(rep.score(&honest, T0), 0.0);
    assert!(!rep.is_banned(&honest, T0));
    let r = rep.peer(&honest, T0).unwrap();
    assert_eq!(
        (r.answered, r.unverifiable, r.misbehaviour),
        (1000, 1000, 0)
    );
}

#[test]
fn lookup_faults_feed_the_table() {
    let mut rep = Reputation::new();
    let p = id(9);
    let fault = PeerFault {
        peer: p,
        kind: FaultKind::InvalidContact,
    };
    assert_eq!(rep.on_fault(&fault, T0), Verdict::Keep);
    assert!(matches!(
        rep.on_fault(&fault, T0),
        Verdict::Disconnect { .. }
    ));
    let timeout = PeerFault {
        peer: id(10),
        kind: FaultKind::Unresponsive,
    };
    assert_eq!(rep.on_fault(&timeout, T0), Verdict::Keep);
    assert_eq!(rep.score(&id(10), T0), -2.0);
    assert_eq!(rep.peer(&p, T0).unwrap().misbehaviour, 2);
}

#[test]
fn pardon_lifts_a_ban_but_keeps_the_history() {
    let mut rep = Reputation::new();
    let p = id(1);
    let _ = rep.observe(p, Evidence::ProtocolViolation, T0);
    assert!(rep.pardon(&p, T0 + 1));
    assert!(!rep.is_banned(&p, T0 + 1));
    assert!(!rep.pardon(&p, T0 + 1));
    assert_eq!(
        rep.observe(p, Evidence::ProtocolViolation, T0 + 2),
        Verdict::Disconnect {
            banned_until_ms: T0 + 2 + 20 * MIN
        }
    );
}

#[test]
fn the_table_cap_holds_under_a_sybil_flood_and_keeps_the_evidence() {
    let mut rep = Reputation::new();
    let (banned, good, suspect, old) = (id(1), id(2), id(3), id(4));
    // An old, quiet but neutral acquaintance.
    let _ = rep.observe(old, Evidence::Answered, T0 - DAY);
    let _ = rep.observe(old, Evidence::Seen, T0);
    for i in 0..60 {
        let _ = rep.observe(good, Evidence::Verified, T0 - 2 * HOUR + i * MIN);
    }
    observe_n(&mut rep, suspect, Evidence::Unresponsive, 10, T0);
    let Verdict::Disconnect { banned_until_ms } =
        rep.observe(banned, Evidence::ProtocolViolation, T0)
    else {
        panic!("a violation bans");
    };
    // 100 000 fresh identities, each heard from once (some answering well),
    // over one minute.
    for i in 0..100_000u64 {
        let sybil = id(1_000_000 + i);
        let evidence = if i % 3 == 0 {
            Evidence::Verified
        } else {
            Evidence::Seen
        };
        let _ = rep.observe(sybil, evidence, T0 + i * 60_000 / 100_000);
        assert!(rep.len() <= REPUTATION_MAX_PEERS);
    }
    let now = T0 + MIN;
    assert!(rep.len() <= REPUTATION_MAX_PEERS);
    assert!(rep.len() > REPUTATION_MAX_PEERS * 15 / 16 - 1);
    let b = rep
        .peer(&banned, now)
        .expect("the banned peer is remembered");
    assert_eq!(b.banned_until_ms, Some(banned_until_ms));
    assert_eq!(b.violations, 1);
    assert_eq!(rep.standing(&good, now), Standing::Good);
    assert_eq!(rep.peer(&good, now).unwrap().verified, 60);
    assert_eq!(rep.standing(&suspect, now), Standing::Suspect);
    assert!(
        rep.peer(&old, now).is_some(),
        "old neutral entries outlive the flood"
    );
}

#[test]
fn a_table_full_of_bans_drops_the_earliest_to_expire() {
    let mut rep = Reputation::with_policy(Policy {
        max_peers: 4,
        ..Policy::default()
    });
    for n in 0..3 {
        let _ = rep.observe(id(n), Evidence::ProtocolViolation, T0 + n);
    }
    let _ = rep.observe(id(3), Evidence::Seen, T0);
    // The neutral entry goes before any ban.
    let _ = rep.observe(id(4), Evidence::ProtocolViolation, T0 + 4);
    assert_eq!(rep.len(), 4);
    assert!(rep.peer(&id(3), T0).is_none());
    // Now every entry is an active ban: the earliest to expire goes.
    let _ = rep.observe(id(5), Evidence::Seen, T0 + 5);
    assert_eq!(rep.len(), 4);
    assert!(rep.peer(&id(0), T0).is_none());
    for n in [1, 2, 4] {
        assert!(rep.is_banned(&id(n), T0 + 5), "ban of {n} kept");
    }
    assert!(rep.peer(&id(5), T0 + 5).is_some());
}

#[test]
fn eviction_forgets_stale_then_young_neutral_entries_first() {
    let mut rep = Reputation::with_policy(Policy {
        max_peers: 5,
        ..Policy::default()
    });
    let now = T0 + 30 * DAY;
    let stale = id(1); // neutral, silent for 30 days
    let _ = rep.observe(stale, Evidence::Answered, T0);
    let good = id(2);
    observe_n(&mut rep, good, Evidence::Verified, 10, now);
    let older = id(3);
    let _ = rep.observe(older, Evidence::Seen, now - HOUR);
    let young = id(4);
    let _ = rep.observe(young, Evidence::Seen, now - MIN);
    let suspect = id(5);
    observe_n(&mut rep, suspect, Evidence::Unresponsive, 6, now);
    assert_eq!(rep.len(), 5);

    let _ = rep.observe(id(6), Evidence::Seen, now);
    assert!(rep.peer(&stale, now).is_none(), "stale first");
    let _ = rep.observe(id(7), Evidence::Seen, now);
    assert!(rep.peer(&id(6), now).is_none(), "then the youngest neutral");
    // A stream of newcomers churns through itself.
    let _ = rep.observe(id(8), Evidence::Seen, now);
    let _ = rep.observe(id(9), Evidence::Seen, now);
    assert!(rep.peer(&id(7), now).is_none());
    assert!(rep.peer(&id(8), now).is_none());
    assert!(rep.peer(&id(9), now).is_some());
    assert!(rep.peer(&young, now).is_some());
    assert!(rep.peer(&older, now).is_some());
    assert!(rep.peer(&good, now).is_some());
    assert!(rep.peer(&suspect, now).is_some());
}

#[test]
fn set_policy_shrinks_the_table_at_the_next_new_peer() {
    let mut rep = Reputation::new();
    for n in 0..100 {
        let _ = rep.observe(id(n), Evidence::Seen, T0 + n);
    }
    rep.set_policy(Policy {
        max_peers: 10,
        ..Policy::default()
    });
    assert_eq!(rep.len(), 100);
    let _ = rep.observe(id(1000), Evidence::Seen, T0 + 100);
    assert_eq!(rep.len(), 10);
    // The oldest relationships stay.
    assert!((0..9).all(|n| rep.peer(&id(n), T0).is_some()));
}

#[test]
fn ranking_prefers_good_peers_then_closeness() {
    let mut rep = Reputation::new();
    let target = Key([0; 32]);
    let (good, near, nearer, suspect, banned) = (id(500), id(40), id(30), id(2), id(1));
    observe_n(&mut rep, good, Evidence::Verified, 10, T0);
    let _ = rep.observe(near, Evidence::Answered, T0);
    observe_n(&mut rep, suspect, Evidence::Unresponsive, 5, T0);
    let _ = rep.observe(banned, Evidence::ProtocolViolation, T0);
    assert_eq!(rep.standing(&good, T0), Standing::Good);
    assert_eq!(rep.standing(&near, T0), Standing::Neutral);
    assert_eq!(rep.standing(&nearer, T0), Standing::Neutral);
    assert_eq!(rep.standing(&suspect, T0), Standing::Suspect);

    let mut candidates = vec![banned, suspect, nearer, near, good];
    rep.rank_candidates(&mut candidates, T0, |c| {
        (*c, false, target.distance(&Key::from(c)))
    });
    assert_eq!(candidates, [good, nearer, near, suspect, banned]);
    // Within a standing, the preferred go first, then the closer.
    rep.rank_candidates(&mut candidates, T0, |c| {
        (*c, *c == near, target.distance(&Key::from(c)))
    });
    assert_eq!(candidates, [good, near, nearer, suspect, banned]);

    let d = |n: &NodeId| target.distance(&Key::from(n));
    assert_eq!(
        rep.compare_candidates((&good, &d(&good)), (&nearer, &d(&nearer)), T0),
        Ordering::Less
    );
    assert_eq!(
        rep.compare_candidates((&near, &d(&near)), (&nearer, &d(&nearer)), T0),
        Ordering::Greater
    );
    assert_eq!(
        rep.compare_candidates((&near, &d(&near)), (&near, &d(&near)), T0),
        Ordering::Equal
    );
}

#[test]
fn a_newcomer_cannot_evict_a_good_long_lived_resident() {
    let mut rep = Reputation::new();
    let resident = id(1);
    for i in 0..=120 {
        let _ = rep.observe(resident, Evidence::Verified, T0 + i * MIN);
    }
    let now = T0 + 2 * HOUR;
    assert!(rep.is_established(&resident, now));
    // A newcomer with a perfect (short) record.
    let newcomer = id(2);
    observe_n(&mut rep, newcomer, Evidence::Verified, 100, now);
    assert_eq!(rep.score(&newcomer, now), 100.0);
    assert!(!rep.is_established(&newcomer, now));
    assert!(rep.prefer_resident(&resident, &newcomer, now));
    // Nor a neutral resident.
    let quiet = id(3);
    let _ = rep.observe(quiet, Evidence::Seen, T0);
    assert!(rep.prefer_resident(&quiet, &newcomer, now));
    // A suspect resident gives way to a neutral or good newcomer, not to
    // another suspect or a banned one.
    let flaky = id(4);
    observe_n(&mut rep, flaky, Evidence::Unresponsive, 5, now);
    assert!(!rep.prefer_resident(&flaky, &newcomer, now));
    assert!(!rep.prefer_resident(&flaky, &id(99), now));
    let flakier = id(5);
    observe_n(&mut rep, flakier, Evidence::Unresponsive, 20, now);
    assert!(rep.prefer_resident(&flaky, &flakier, now));
    let banned = id(6);
    let _ = rep.observe(banned, Evidence::ProtocolViolation, now);
    assert!(rep.prefer_resident(&flaky, &banned, now));
    assert!(!rep.prefer_resident(&banned, &flakier, now));
    assert!(rep.prefer_resident(&banned, &banned, now));
}

#[test]
fn rate_factor_scales_with_score() {
    let mut rep = Reputation::new();
    let (top, half, low, bottom, banned) = (id(1), id(2), id(3), id(4), id(5));
    observe_n(&mut rep, top, Evidence::Verified, 50, T0);
    observe_n(&mut rep, half, Evidence::Verified, 25, T0);
    observe_n(&mut rep, low, Evidence::Unresponsive, 25, T0);
    observe_n(
        &mut rep,
        bottom,
        Evidence::Misbehaved(Misbehaviour::BadRecord),
        3,
        T0,
    );
    let _ = rep.observe(banned, Evidence::ProtocolViolation, T0);
    assert_eq!(rep.rate_factor(&top, T0), 2.0);
    assert_eq!(rep.rate_factor(&half, T0), 1.5);
    assert_eq!(rep.rate_factor(&id(99), T0), 1.0);
    assert_eq!(rep.rate_factor(&low, T0), 0.625);
    // `bottom` is banned by its second lie; after the ban its score is
    // near the bottom.
    let after = T0 + 10 * MIN;
    assert!(!rep.is_banned(&bottom, after));
    assert!(rep.rate_factor(&bottom, after) < 0.26);
    assert!(rep.rate_factor(&bottom, after) >= REPUTATION_RATE_FACTOR_MIN);
    assert_eq!(rep.rate_factor(&banned, T0), 0.0);
}

#[test]
fn replica_placement_skips_suspect_and_banned_peers() {
    let mut rep = Reputation::new();
    let (good, fresh, suspect, banned) = (id(1), id(2), id(3), id(4));
    observe_n(&mut rep, good, Evidence::Verified, 10, T0);
    let _ = rep.observe(fresh, Evidence::Seen, T0);
    observe_n(&mut rep, suspect, Evidence::Unresponsive, 5, T0);
    let _ = rep.observe(banned, Evidence::ProtocolViolation, T0);
    let eligible: Vec<bool> = [good, fresh, suspect, banned, id(5)]
        .iter()
        .map(|p| rep.may_hold_replica(p, T0))
        .collect();
    assert_eq!(eligible, [true, true, false, false, true]);
    // Four timeouts (-8) are not yet suspect; five (-10) are.
    let borderline = id(6);
    observe_n(&mut rep, borderline, Evidence::Unresponsive, 4, T0);
    assert!(rep.may_hold_replica(&borderline, T0));
}

// ----------------------------------------------------------------------
// Persistence

fn sample(now: u64) -> Reputation {
    let mut rep = Reputation::new();
    observe_n(&mut rep, id(1), Evidence::Verified, 7, now - HOUR);
    observe_n(&mut rep, id(2), Evidence::Unresponsive, 3, now - MIN);
    let _ = rep.observe(id(3), Evidence::ProtocolViolation, now - MIN);
    let _ = rep.observe(id(4), Evidence::Misbehaved(Misbehaviour::BadRecord), now);
    observe_n(&mut rep, id(5), Evidence::RateViolation, 3, now);
    let _ = rep.observe(id(6), Evidence::Unverifiable, now);
    let _ = rep.observe(id(6), Evidence::Answered, now);
    rep
}

#[test]
fn encode_decode_round_trip() {
    let now = T0;
    let rep = sample(now);
    let bytes = rep.encode();
    let back = Reputation::decode(&bytes, now).unwrap();
    assert_eq!(back.encode(), bytes);
    assert_eq!(Reputation::decode_verbatim(&bytes).unwrap().encode(), bytes);
    let (a, b) = (rep.report(now + HOUR), back.report(now + HOUR));
    assert_eq!(a.len(), 6);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert!((x.score - y.score).abs() < 1e-3, "{x:?} vs {y:?}");
        let mut y = y.clone();
        y.score = x.score;
        assert_eq!(*x, y);
    }
    assert!(back.is_banned(&id(3), now));
    // An empty table.
    let empty = Reputation::new().encode();
    assert_eq!(empty, [0x82, 0x01, 0x80]);
    assert!(Reputation::decode(&empty, now).unwrap().is_empty());
}

#[test]
fn decode_drops_expired_bans_but_escalation_survives_a_restart() {
    let mut rep = Reputation::new();
    let p = id(1);
    let _ = rep.observe(p, Evidence::ProtocolViolation, T0);
    let bytes = rep.encode();
    let during = Reputation::decode(&bytes, T0 + MIN).unwrap();
    assert_eq!(
        during.peer(&p, T0 + MIN).unwrap().banned_until_ms,
        Some(T0 + 10 * MIN)
    );
    let after = T0 + 11 * MIN;
    let mut restarted = Reputation::decode(&bytes, after).unwrap();
    assert!(!restarted.is_banned(&p, after));
    assert_ne!(restarted.encode(), bytes, "the expired ban was dropped");
    assert_eq!(
        restarted.observe(p, Evidence::ProtocolViolation, after),
        Verdict::Disconnect {
            banned_until_ms: after + 20 * MIN
        }
    );
}

#[test]
fn decode_cuts_bans_and_decay_from_a_clock_that_stepped_back() {
    let mut rep = Reputation::new();
    let p = id(1);
    let now = T0 + 30 * DAY;
    observe_n(&mut rep, p, Evidence::Verified, 5, now);
    let _ = rep.observe(p, Evidence::ProtocolViolation, now);
    // Loaded with a clock 30 days behind: the ban runs at most a day from
    // then, and the score decays from then rather than staying frozen.
    let back = Reputation::decode(&rep.encode(), T0).unwrap();
    assert_eq!(back.peer(&p, T0).unwrap().banned_until_ms, Some(T0 + DAY));
    assert!(!back.is_banned(&p, T0 + DAY));
    assert!(close(rep.score(&p, now), 10.0 - 50.0));
    let reliability = 10.0 * 0.5;
    let load = 50.0 * 2f64.powf(-1.0 / 24.0);
    assert!((back.score(&p, T0 + HOUR) - (reliability - load)).abs() < 1e-3);
}

/// Encodes one peer array with the given fields, bypassing the table's
/// invariants.
fn raw_peer(id_byte: u8, fields: [u64; 16]) -> Vec<u8> {
    let mut e = crate::wire::cbor::encoder();
    let _ = e.array(17).and_then(|e| e.bytes(&[id_byte; 32]));
    for f in fields {
        let _ = e.u64(f);
    }
    e.into_writer()
}

fn raw_table(peers: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![0x82, 0x01];
    let mut e = crate::wire::cbor::encoder();
    let _ = e.array(peers.len() as u64);
    out.extend(e.into_writer());
    for p in peers {
        out.extend(p);
    }
    out
}

/// Fields of a plausible peer: seen, some answers, no ban.
const FIELDS: [u64; 16] = [T0, T0, T0, 4000, 0, 0, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0];

fn with(i: usize, v: u64) -> [u64; 16] {
    let mut f = FIELDS;
    f[i] = v;
    f
}

#[test]
fn decode_refuses_truncated_input() {
    let bytes = sample(T0).encode();
    for len in 0..bytes.len() {
        assert!(
            Reputation::decode(&bytes[..len], T0).is_err(),
            "prefix of {len} bytes accepted"
        );
    }
    assert_eq!(
        Reputation::decode(&bytes[..bytes.len() - 1], T0).unwrap_err(),
        DecodeError::Wire(WireError::Truncated)
    );
    assert_eq!(
        Reputation::decode(&[], T0).unwrap_err(),
        DecodeError::Wire(WireError::Truncated)
    );
}

#[test]
fn decode_refuses_oversized_input_before_reading_it() {
    let huge = vec![0u8; REPUTATION_MAX_ENCODED_LEN + 1];
    assert_eq!(
        Reputation::decode(&huge, T0).unwrap_err(),
        DecodeError::TooLarge {
            len: REPUTATION_MAX_ENCODED_LEN + 1,
            max: REPUTATION_MAX_ENCODED_LEN
        }
    );
    // 4097 peers announced, none present: refused from the header.
    let input = [0x82, 0x01, 0x99, 0x10, 0x01];
    assert_eq!(
        Reputation::decode(&input, T0).unwrap_err(),
        DecodeError::TooManyPeers {
            count: 4097,
            max: REPUTATION_MAX_PEERS
        }
    );
    let input = [
        0x82, 0x01, 0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ];
    assert!(matches!(
        Reputation::decode(&input, T0),
        Err(DecodeError::TooManyPeers { .. })
    ));
}

#[test]
fn decode_refuses_non_canonical_input() {
    // The version as a two-byte integer.
    assert_eq!(
        Reputation::decode(&[0x82, 0x18, 0x01, 0x80], T0).unwrap_err(),
        DecodeError::Wire(WireError::NonCanonical)
    );
    // A peer's counter in a wider form than needed.
    let good = raw_table(&[raw_peer(1, FIELDS)]);
    assert!(Reputation::decode(&good, T0).is_ok());
    let mut wide = good.clone();
    let pos = wide.len() - 10; // `answered` = 2, a single byte
    assert_eq!(wide[pos], 0x02);
    wide.splice(pos..=pos, [0x18, 0x02]);
    assert_eq!(
        Reputation::decode(&wide, T0).unwrap_err(),
        DecodeError::Wire(WireError::NonCanonical)
    );
    // Indefinite-length arrays.
    assert_eq!(
        Reputation::decode(&[0x82, 0x01, 0x9f, 0xff], T0).unwrap_err(),
        DecodeError::Wire(WireError::Indefinite)
    );
}

#[test]
fn decode_refuses_malformed_tables_with_typed_errors() {
    let decode = |b: &[u8]| Reputation::decode(b, T0).unwrap_err();
    assert_eq!(
        decode(&[0x82, 0x02, 0x80]),
        DecodeError::UnsupportedVersion(2)
    );
    assert!(matches!(
        decode(&[0x83, 0x01, 0x80, 0x00]),
        DecodeError::WrongArity { what: "table", .. }
    ));
    let mut trailing = Reputation::new().encode();
    trailing.push(0);
    assert_eq!(
        decode(&trailing),
        DecodeError::Wire(WireError::TrailingBytes)
    );
    let (a, b) = (raw_peer(1, FIELDS), raw_peer(2, FIELDS));
    assert!(Reputation::decode(&raw_table(&[a.clone(), b.clone()]), T0).is_ok());
    assert_eq!(
        decode(&raw_table(&[b.clone(), a.clone()])),
        DecodeError::Unordered
    );
    assert_eq!(
        decode(&raw_table(&[a.clone(), a.clone()])),
        DecodeError::Unordered
    );
    let out_of_range = |fields, name| {
        assert_eq!(
            decode(&raw_table(&[raw_peer(1, fields)])),
            DecodeError::FieldOutOfRange(name),
            "{name}"
        );
    };
    out_of_range(with(3, 100_001), "peer.credit");
    out_of_range(with(4, 50_001), "peer.debit");
    out_of_range(with(4, 1), "peer.debit"); // credit and debit both set
    out_of_range(with(5, 200_001), "peer.load");
    out_of_range(with(6, 1 << 32), "peer.answered");
    out_of_range(with(12, 1 << 32), "peer.rate_violations");
    out_of_range(with(13, 9), "peer.strikes");
    out_of_range(with(0, T0 + 1), "peer.last_seen_ms");
    out_of_range(with(15, T0 + 1), "peer.strikes"); // banned, never struck
                                                    // Wrong peer arity, short id.
    let mut e = crate::wire::cbor::encoder();
    let _ = e.array(2).and_then(|e| e.bytes(&[1; 32])?.u64(0));
    assert!(matches!(
        decode(&raw_table(&[e.into_writer()])),
        DecodeError::WrongArity {
            what: "peer",
            expected: 17,
            found: 2
        }
    ));
    let mut short = raw_peer(1, FIELDS);
    short.splice(1..34, [0x58, 0x1f].into_iter().chain([1; 31]));
    assert_eq!(
        decode(&raw_table(&[short])),
        DecodeError::Wire(WireError::FieldOutOfRange("peer.id"))
    );
}

#[test]
fn a_full_table_fits_the_encoded_bound() {
    let mut rep = Reputation::new();
    let entry = Entry {
        first_seen_ms: u64::MAX - 1,
        last_seen_ms: u64::MAX,
        updated_ms: u64::MAX,
        reliability: REPUTATION_RELIABILITY_FLOOR,
        load: REPUTATION_MISBEHAVIOUR_CAP,
        counts: Counts {
            answered: u32::MAX,
            verified: u32::MAX,
            unverifiable: u32::MAX,
            unresponsive: u32::MAX,
            misbehaviour: u32::MAX,
            violations: u32::MAX,
            rate_violations: u32::MAX,
        },
        strikes: REPUTATION_MAX_BAN_STRIKES,
        last_strike_ms: u64::MAX,
        banned_until_ms: u64::MAX,
    };
    for n in 0..REPUTATION_MAX_PEERS as u64 {
        rep.peers.insert(id(u64::MAX - n), entry.clone());
    }
    let bytes = rep.encode();
    assert!(
        bytes.len() <= REPUTATION_MAX_ENCODED_LEN,
        "{} bytes",
        bytes.len()
    );
    let back = Reputation::decode_verbatim(&bytes).unwrap();
    assert_eq!(back.len(), REPUTATION_MAX_PEERS);
    assert_eq!(back.encode(), bytes);
}

/// The fuzz target's check over its committed corpus (and any regression
/// inputs), so that it holds without a fuzzer: whatever decodes re-encodes
/// to the same bytes, and decoding at any time never panics.
#[test]
fn fuzz_corpus_round_trips() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut inputs = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join("reputation_decode")) else {
            continue;
        };
        for e in entries.flatten() {
            inputs.push((e.path(), std::fs::read(e.path()).unwrap()));
        }
    }
    assert!(inputs.len() >= 8, "seed corpus is committed");
    let mut accepted = 0;
    for (name, data) in inputs {
        if let Ok(t) = Reputation::decode_verbatim(&data) {
            assert_eq!(t.encode(), data, "{}", name.display());
            accepted += 1;
        }
        for now in [0, T0, u64::MAX] {
            if let Ok(t) = Reputation::decode(&data, now) {
                let again = Reputation::decode(&t.encode(), now).unwrap();
                assert_eq!(again.encode(), t.encode(), "{}", name.display());
            }
        }
    }
    assert!(accepted >= 4, "only {accepted} seeds decode");
}
