//! One peer's evidence: counters, the two decaying parts of its score, and
//! its ban state. Pure arithmetic on explicit times (unix milliseconds).

use super::evidence::Evidence;
use super::Policy;
use crate::limits::{
    REPUTATION_ANSWERED_CREDIT, REPUTATION_BAN_THRESHOLD, REPUTATION_MAX_BAN_STRIKES,
    REPUTATION_MISBEHAVIOUR_CAP, REPUTATION_MISBEHAVIOUR_COST, REPUTATION_MISBEHAVIOUR_HALF_LIFE,
    REPUTATION_RATE_VIOLATION_COST, REPUTATION_RELIABILITY_FLOOR, REPUTATION_RELIABILITY_HALF_LIFE,
    REPUTATION_SCORE_MAX, REPUTATION_SCORE_MIN, REPUTATION_STRIKE_MEMORY,
    REPUTATION_UNRESPONSIVE_COST, REPUTATION_VERIFIED_CREDIT,
};
use std::time::Duration;

/// A duration in milliseconds, saturating.
pub(crate) const fn ms(d: Duration) -> u64 {
    let m = d.as_millis();
    if m > u64::MAX as u128 {
        u64::MAX
    } else {
        m as u64
    }
}

pub(crate) const RELIABILITY_HALF_LIFE_MS: u64 = ms(REPUTATION_RELIABILITY_HALF_LIFE);
pub(crate) const MISBEHAVIOUR_HALF_LIFE_MS: u64 = ms(REPUTATION_MISBEHAVIOUR_HALF_LIFE);
pub(crate) const STRIKE_MEMORY_MS: u64 = ms(REPUTATION_STRIKE_MEMORY);

/// `value` after `elapsed_ms` of exponential decay with `half_life_ms`.
fn decay(value: f64, elapsed_ms: u64, half_life_ms: u64) -> f64 {
    if elapsed_ms == 0 || value == 0.0 {
        return value;
    }
    // Precision loss converting to f64 is irrelevant at these magnitudes.
    value * (-(elapsed_ms as f64) / half_life_ms.max(1) as f64).exp2()
}

/// Event counters, saturating. They never decay: they are the history the
/// admin interface shows, not the score.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub answered: u32,
    pub verified: u32,
    pub unverifiable: u32,
    pub unresponsive: u32,
    pub misbehaviour: u32,
    pub violations: u32,
    pub rate_violations: u32,
}

/// What this node knows of one peer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    /// First observation of any kind.
    pub first_seen_ms: u64,
    /// Last time the peer was heard from (or `first_seen_ms`).
    pub last_seen_ms: u64,
    /// The time `reliability` and `load` are as of.
    pub updated_ms: u64,
    /// Answers minus timeouts, in points, in
    /// `[REPUTATION_RELIABILITY_FLOOR, REPUTATION_SCORE_MAX]`.
    pub reliability: f64,
    /// Provable misbehaviour, in points, in `[0, REPUTATION_MISBEHAVIOUR_CAP]`.
    pub load: f64,
    pub counts: Counts,
    /// Bans imposed (saturating at `REPUTATION_MAX_BAN_STRIKES`), forgotten
    /// `REPUTATION_STRIKE_MEMORY` after the last began.
    pub strikes: u8,
    /// When the last ban began.
    pub last_strike_ms: u64,
    /// The active or last ban's end; 0 for none.
    pub banned_until_ms: u64,
}

impl Entry {
    pub fn new(now_ms: u64) -> Self {
        Self {
            first_seen_ms: now_ms,
            last_seen_ms: now_ms,
            updated_ms: now_ms,
            reliability: 0.0,
            load: 0.0,
            counts: Counts::default(),
            strikes: 0,
            last_strike_ms: 0,
            banned_until_ms: 0,
        }
    }

    /// Reliability and load as of `now_ms`. A clock that went backwards
    /// reads as no time elapsed.
    pub fn parts_at(&self, now_ms: u64) -> (f64, f64) {
        let elapsed = now_ms.saturating_sub(self.updated_ms);
        (
            decay(self.reliability, elapsed, RELIABILITY_HALF_LIFE_MS),
            decay(self.load, elapsed, MISBEHAVIOUR_HALF_LIFE_MS),
        )
    }

    /// The soft score at `now_ms`, in `[REPUTATION_SCORE_MIN, REPUTATION_SCORE_MAX]`.
    pub fn score(&self, now_ms: u64) -> f64 {
        let (reliability, load) = self.parts_at(now_ms);
        (reliability - load).clamp(REPUTATION_SCORE_MIN, REPUTATION_SCORE_MAX)
    }

    pub fn is_banned(&self, now_ms: u64) -> bool {
        self.banned_until_ms > now_ms
    }

    /// Strikes still counting towards escalation at `now_ms`.
    pub fn strikes_at(&self, now_ms: u64) -> u8 {
        if self.strikes > 0 && now_ms.saturating_sub(self.last_strike_ms) >= STRIKE_MEMORY_MS {
            0
        } else {
            self.strikes
        }
    }

    fn heard(&mut self, now_ms: u64) {
        self.last_seen_ms = self.last_seen_ms.max(now_ms);
    }

    /// Applies one observation at `now_ms`; bans the peer when it calls for
    /// it.
    pub fn apply(&mut self, evidence: Evidence, now_ms: u64, policy: &Policy) {
        // Bring both parts to `now` first; the clock never runs them back.
        let (reliability, load) = self.parts_at(now_ms);
        self.reliability = reliability;
        self.load = load;
        self.updated_ms = self.updated_ms.max(now_ms);
        let c = &mut self.counts;
        let mut violation = false;
        match evidence {
            Evidence::Seen => {}
            Evidence::Answered => {
                c.answered = c.answered.saturating_add(1);
                self.reliability += REPUTATION_ANSWERED_CREDIT;
            }
            Evidence::Verified => {
                c.answered = c.answered.saturating_add(1);
                c.verified = c.verified.saturating_add(1);
                self.reliability += REPUTATION_VERIFIED_CREDIT;
            }
            Evidence::Unverifiable => {
                c.answered = c.answered.saturating_add(1);
                c.unverifiable = c.unverifiable.saturating_add(1);
            }
            Evidence::Unresponsive => {
                c.unresponsive = c.unresponsive.saturating_add(1);
                self.reliability -= REPUTATION_UNRESPONSIVE_COST;
            }
            Evidence::Misbehaved(_) => {
                c.misbehaviour = c.misbehaviour.saturating_add(1);
                self.load += REPUTATION_MISBEHAVIOUR_COST;
            }
            Evidence::ProtocolViolation => {
                c.violations = c.violations.saturating_add(1);
                self.load += REPUTATION_MISBEHAVIOUR_COST;
                violation = true;
            }
            Evidence::RateViolation => {
                c.rate_violations = c.rate_violations.saturating_add(1);
                self.load += REPUTATION_RATE_VIOLATION_COST;
            }
        }
        if !matches!(evidence, Evidence::Unresponsive) {
            self.heard(now_ms);
        }
        self.reliability = self
            .reliability
            .clamp(REPUTATION_RELIABILITY_FLOOR, REPUTATION_SCORE_MAX);
        self.load = self.load.clamp(0.0, REPUTATION_MISBEHAVIOUR_CAP);
        // Only fresh misbehaviour bans: a peer whose ban expired while its
        // (slowly decaying) load is still high gets back in, and is banned
        // again, longer, at its next offence.
        let ban =
            violation || (evidence.is_misbehaviour() && self.load >= REPUTATION_BAN_THRESHOLD);
        // A burst of offences before the disconnect takes effect is one strike.
        if ban && !self.is_banned(now_ms) {
            self.impose_ban(now_ms, policy);
        }
    }

    /// Bans the peer from `now_ms` for `ban_base * 2^strikes`, at most
    /// `ban_max`.
    fn impose_ban(&mut self, now_ms: u64, policy: &Policy) {
        let strikes = self.strikes_at(now_ms);
        let (base, max) = policy.ban_bounds_ms();
        let length = base
            .checked_shl(u32::from(strikes))
            .filter(|l| l >> u32::from(strikes) == base)
            .map_or(max, |l| l.min(max));
        self.strikes = strikes.saturating_add(1).min(REPUTATION_MAX_BAN_STRIKES);
        self.last_strike_ms = now_ms;
        self.banned_until_ms = now_ms.saturating_add(length);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decay_is_exponential_with_the_half_life() {
        assert_eq!(decay(8.0, 0, 1000), 8.0);
        assert!((decay(8.0, 1000, 1000) - 4.0).abs() < 1e-12);
        assert!((decay(8.0, 3000, 1000) - 1.0).abs() < 1e-12);
        assert!((decay(-8.0, 2000, 1000) + 2.0).abs() < 1e-12);
        // No overflow or NaN at the extremes.
        assert_eq!(decay(100.0, u64::MAX, 1), 0.0);
    }

    #[test]
    fn clock_going_backwards_reads_as_no_time() {
        let policy = Policy::default();
        let mut e = Entry::new(10_000);
        e.apply(Evidence::Verified, 10_000, &policy);
        assert_eq!(e.score(5_000), REPUTATION_VERIFIED_CREDIT);
        e.apply(Evidence::Verified, 5_000, &policy);
        assert_eq!(e.updated_ms, 10_000);
        assert_eq!(e.last_seen_ms, 10_000);
        assert_eq!(e.score(10_000), 2.0 * REPUTATION_VERIFIED_CREDIT);
    }
}
