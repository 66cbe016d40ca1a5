//! Request rate limits: token buckets per authenticated peer and per
//! source address, sans-IO (the time is an argument, a [`Duration`] since
//! any fixed instant).
//!
//! A bucket holds up to `burst` tokens and gains one every `refill_every`;
//! a request takes one, and a request that finds none is refused and not
//! processed. A node checks the peer's node id and its source address
//! (IPv4 /32, IPv6 /64, with [`RATE_LIMIT_PER_IP_FACTOR`] times the rate
//! and burst): new ids are cheap at a low puzzle difficulty, so an address
//! must not gain a fresh budget with each one.
//!
//! The limiter of incoming requests belongs to a node's core:
//! [`crate::overlay::peers::Peers::admit_request`] consults the ban, the
//! reputation's rate factor and these buckets, and records the evidence,
//! for the node's server and the simulator's flooded nodes alike. The
//! core's clock is its `now_ms`; a clock that steps back refills nothing
//! and the buckets count again from the earlier time.
//!
//! Both maps are bounded ([`MAX_RATE_LIMITED_KEYS`] each). A full map
//! first forgets its idle entries (a full bucket is the state of a key never
//! seen, so forgetting it changes nothing), then its least recently used.

use crate::identity::NodeId;
use crate::limits::{
    MAX_RATE_LIMITED_KEYS, MAX_REFUSED_REQUESTS_IN_A_ROW, MAX_REQUESTS_PER_PEER_PER_SEC,
    PEER_REQUEST_BURST, RATE_LIMIT_PER_IP_FACTOR, REPUTATION_RATE_FACTOR_MAX, SIP_OVERLAY_BURST,
    SIP_OVERLAY_MESSAGES_PER_SEC,
};
use crate::netaddr::IpPrefix;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::Duration;

/// The request rate limit of a node (per authenticated peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests a peer may make at once (the bucket's size); at least 1.
    pub burst: u32,
    /// One more request is allowed per this much time (the sustained rate
    /// is its inverse). Zero disables the limit.
    pub refill_every: Duration,
    /// Refused requests in a row after which the connection is closed.
    pub max_refused_in_a_row: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            burst: PEER_REQUEST_BURST,
            refill_every: Duration::from_secs(1) / MAX_REQUESTS_PER_PEER_PER_SEC.max(1),
            max_refused_in_a_row: MAX_REFUSED_REQUESTS_IN_A_ROW,
        }
    }
}

impl RateLimit {
    /// The limit of one source address: [`RATE_LIMIT_PER_IP_FACTOR`] times
    /// the rate and the burst.
    fn per_address(&self) -> Self {
        Self {
            burst: self.burst.saturating_mul(RATE_LIMIT_PER_IP_FACTOR),
            refill_every: self.refill_every / RATE_LIMIT_PER_IP_FACTOR.max(1),
            ..*self
        }
    }

    /// This limit with rate and burst multiplied by `factor` (clamped to
    /// at most [`REPUTATION_RATE_FACTOR_MAX`]); `None` for a factor of 0
    /// (or not a number): no request at all. A disabled limit stays
    /// disabled.
    fn scaled(&self, factor: f64) -> Option<Self> {
        if self.refill_every.is_zero() {
            return Some(*self);
        }
        if factor.is_nan() || factor <= 0.0 {
            return None;
        }
        let factor = factor.min(REPUTATION_RATE_FACTOR_MAX);
        let burst = (f64::from(self.burst.max(1)) * factor).round().max(1.0) as u32;
        Some(Self {
            burst,
            refill_every: self
                .refill_every
                .div_f64(factor)
                .max(Duration::from_nanos(1)),
            ..*self
        })
    }

    fn capacity(&self) -> Duration {
        self.refill_every.saturating_mul(self.burst.max(1))
    }
}

/// One token bucket. The level is kept as time: a token is worth
/// `refill_every`, so refilling is adding the elapsed time, capped at
/// `burst` tokens' worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    level: Duration,
    last: Duration,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn full(limit: &RateLimit, now: Duration) -> Self {
        Self {
            level: limit.capacity(),
            last: now,
        }
    }

    fn refill(&mut self, limit: &RateLimit, now: Duration) {
        // A clock that steps back (a wall clock can) refills nothing, and
        // the bucket counts from the earlier time on: waiting for the old
        // time to come back would refuse every request until then.
        let elapsed = now.saturating_sub(self.last);
        self.level = self.level.saturating_add(elapsed).min(limit.capacity());
        self.last = now;
    }

    /// Whether a request at `now` would be allowed, without taking a token:
    /// `Err` tells how long until one is available.
    pub fn check(&self, limit: &RateLimit, now: Duration) -> Result<(), Duration> {
        if limit.refill_every.is_zero() {
            return Ok(());
        }
        let mut probe = *self;
        probe.refill(limit, now);
        if probe.level >= limit.refill_every {
            Ok(())
        } else {
            Err(limit.refill_every.saturating_sub(probe.level))
        }
    }

    /// Takes a token at `now` if there is one; otherwise `Err` tells how
    /// long until there is.
    pub fn try_take(&mut self, limit: &RateLimit, now: Duration) -> Result<(), Duration> {
        // Refilling first is neutral (two refills add up to one) and
        // follows a clock that stepped back even when nothing is taken.
        self.refill(limit, now);
        self.check(limit, now)?;
        self.level = self.level.saturating_sub(limit.refill_every);
        Ok(())
    }

    /// Puts back a token taken earlier (capped at the bucket's size).
    pub fn give_back(&mut self, limit: &RateLimit, now: Duration) {
        self.refill(limit, now);
        self.level = self
            .level
            .saturating_add(limit.refill_every)
            .min(limit.capacity());
    }

    /// Whether the bucket is full at `now` (the key can be forgotten).
    pub fn is_full(&self, limit: &RateLimit, now: Duration) -> bool {
        let mut probe = *self;
        probe.refill(limit, now);
        probe.level >= limit.capacity()
    }
}

/// Token buckets by key, at most `max_keys` of them.
#[derive(Debug, Clone)]
pub struct KeyedBuckets<K> {
    limit: RateLimit,
    max_keys: usize,
    // Keys are peer ids and addresses: std's SipHash with a random key
    // makes collisions unaimable; the size is bounded by `max_keys`.
    buckets: HashMap<K, TokenBucket>,
}

impl<K: Eq + Hash + Ord + Copy> KeyedBuckets<K> {
    /// No buckets yet; each key's limit is `limit`.
    pub fn new(limit: RateLimit, max_keys: usize) -> Self {
        Self {
            limit,
            max_keys: max_keys.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Keys tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Whether `key` may make a request at `now` (takes nothing).
    pub fn check(&self, key: &K, now: Duration) -> Result<(), Duration> {
        match self.buckets.get(key) {
            Some(b) => b.check(&self.limit, now),
            None => Ok(()),
        }
    }

    /// [`KeyedBuckets::check`] under `limit` instead of the map's own,
    /// refilling `key`'s bucket (neutral, and it follows a clock that
    /// stepped back even when the request is refused).
    fn check_with(&mut self, key: &K, now: Duration, limit: &RateLimit) -> Result<(), Duration> {
        match self.buckets.get_mut(key) {
            Some(b) => {
                b.refill(limit, now);
                b.check(limit, now)
            }
            None => TokenBucket::full(limit, now).check(limit, now),
        }
    }

    /// [`KeyedBuckets::check_with`] under the map's own limit.
    fn check_own(&mut self, key: &K, now: Duration) -> Result<(), Duration> {
        let limit = self.limit;
        self.check_with(key, now, &limit)
    }

    /// Puts back a token `key` took under `limit` (nothing if `key` is
    /// not tracked: its bucket is full).
    fn give_back_with(&mut self, key: &K, now: Duration, limit: &RateLimit) {
        if let Some(b) = self.buckets.get_mut(key) {
            b.give_back(limit, now);
        }
    }

    /// Takes a token for `key` at `now`.
    pub fn try_take(&mut self, key: K, now: Duration) -> Result<(), Duration> {
        let limit = self.limit;
        self.try_take_with(key, now, &limit)
    }

    /// [`KeyedBuckets::try_take`] under `limit` instead of the map's own.
    fn try_take_with(&mut self, key: K, now: Duration, limit: &RateLimit) -> Result<(), Duration> {
        if !self.buckets.contains_key(&key) && self.buckets.len() >= self.max_keys {
            self.make_room(now);
        }
        self.buckets
            .entry(key)
            .or_insert_with(|| TokenBucket::full(limit, now))
            .try_take(limit, now)
    }

    fn make_room(&mut self, now: Duration) {
        let limit = self.limit;
        self.buckets.retain(|_, b| !b.is_full(&limit, now));
        if self.buckets.len() >= self.max_keys {
            // The bucket touched longest ago goes; its owner regains at
            // most its burst, and only by making `max_keys` others busy.
            // Ties go by key, not by the map's random order: a simulation
            // stays reproducible.
            if let Some(oldest) = self
                .buckets
                .iter()
                .min_by_key(|(k, b)| (b.last, **k))
                .map(|(k, _)| *k)
            {
                self.buckets.remove(&oldest);
            }
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RateRefusal {
    /// The peer (node id) is over its rate.
    #[error("request rate of this node id exceeded; retry in {} ms", retry_after.as_millis())]
    Peer {
        /// When a request would be allowed again.
        retry_after: Duration,
    },
    /// The source address is over its rate (over all its node ids).
    #[error("request rate of this address exceeded; retry in {} ms", retry_after.as_millis())]
    Address {
        /// When a request would be allowed again.
        retry_after: Duration,
    },
}

/// Requests refused in a row on one connection, which its driver keeps
/// (the node per QUIC connection, the simulator per flooding peer and
/// target) and hands to
/// [`crate::overlay::peers::Peers::admit_request`]: past
/// [`RateLimit::max_refused_in_a_row`] the connection is closed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RefusalStreak(u32);

impl RefusalStreak {
    /// Requests refused in a row so far.
    pub fn get(&self) -> u32 {
        self.0
    }

    /// One more refused; returns whether the streak now exceeds `limit`'s
    /// [`RateLimit::max_refused_in_a_row`].
    pub(crate) fn refused(&mut self, limit: &RateLimit) -> bool {
        self.0 = self.0.saturating_add(1);
        self.0 > limit.max_refused_in_a_row
    }

    /// A request was admitted: the streak ends.
    pub(crate) fn reset(&mut self) {
        self.0 = 0;
    }
}

/// A node's request limiter: a bucket per peer and per source address
/// for overlay requests, and a larger one per peer for the SIP it carries
/// ([`RequestLimiter::reclassify_as_sip`]).
#[derive(Debug, Clone)]
pub struct RequestLimiter {
    limit: RateLimit,
    peers: KeyedBuckets<NodeId>,
    addresses: KeyedBuckets<IpPrefix>,
    sip: KeyedBuckets<NodeId>,
}

/// The SIP budget of one peer: [`SIP_OVERLAY_MESSAGES_PER_SEC`] a second,
/// [`SIP_OVERLAY_BURST`] at once (what a receiver allows, and what a
/// sender paces its `Sip` requests by).
pub fn sip_limit() -> RateLimit {
    RateLimit {
        burst: SIP_OVERLAY_BURST,
        refill_every: Duration::from_secs(1) / SIP_OVERLAY_MESSAGES_PER_SEC.max(1),
        max_refused_in_a_row: MAX_REFUSED_REQUESTS_IN_A_ROW,
    }
}

impl RequestLimiter {
    /// A limiter allowing each peer `limit`.
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            peers: KeyedBuckets::new(limit, MAX_RATE_LIMITED_KEYS),
            addresses: KeyedBuckets::new(limit.per_address(), MAX_RATE_LIMITED_KEYS),
            sip: KeyedBuckets::new(sip_limit(), MAX_RATE_LIMITED_KEYS),
        }
    }

    /// The limit per peer.
    pub fn limit(&self) -> &RateLimit {
        &self.limit
    }

    /// Admits or refuses one request of `peer` from `ip` at `now`. A
    /// refused request takes no token from either bucket.
    pub fn check(&mut self, peer: NodeId, ip: IpAddr, now: Duration) -> Result<(), RateRefusal> {
        self.check_scaled(peer, ip, now, 1.0)
    }

    /// [`RequestLimiter::check`] with `peer`'s own allowance (rate and
    /// burst) multiplied by `factor` (its reputation's
    /// [`crate::reputation::Reputation::rate_factor`]), clamped to
    /// `0.0..=`[`REPUTATION_RATE_FACTOR_MAX`]; a factor of 0 refuses every
    /// request. The address's allowance is not scaled: one good id must
    /// not raise the budget of the others behind its address.
    pub fn check_scaled(
        &mut self,
        peer: NodeId,
        ip: IpAddr,
        now: Duration,
        factor: f64,
    ) -> Result<(), RateRefusal> {
        let prefix = IpPrefix::host(ip);
        let limit = self.limit.scaled(factor);
        let Some(limit) = limit else {
            return Err(RateRefusal::Peer {
                retry_after: self.limit.capacity(),
            });
        };
        self.peers
            .check_with(&peer, now, &limit)
            .map_err(|retry_after| RateRefusal::Peer { retry_after })?;
        self.addresses
            .check_own(&prefix, now)
            .map_err(|retry_after| RateRefusal::Address { retry_after })?;
        // Both checks passed and nothing ran in between: these succeed.
        let _ = self.peers.try_take_with(peer, now, &limit);
        let _ = self.addresses.try_take(prefix, now);
        Ok(())
    }

    /// A request [`RequestLimiter::check_scaled`] admitted turned out to
    /// carry SIP (a call between the nodes' phones, whose load is not the
    /// overlay's): its overlay tokens go back, and it takes one of the
    /// peer's SIP budget instead (scaled by `factor` like the overlay's).
    pub fn reclassify_as_sip(
        &mut self,
        peer: NodeId,
        ip: IpAddr,
        now: Duration,
        factor: f64,
    ) -> Result<(), RateRefusal> {
        if let Some(limit) = self.limit.scaled(factor) {
            self.peers.give_back_with(&peer, now, &limit);
        }
        let own = self.limit.per_address();
        self.addresses
            .give_back_with(&IpPrefix::host(ip), now, &own);
        let Some(limit) = sip_limit().scaled(factor) else {
            return Err(RateRefusal::Peer {
                retry_after: sip_limit().capacity(),
            });
        };
        self.sip
            .try_take_with(peer, now, &limit)
            .map_err(|retry_after| RateRefusal::Peer { retry_after })
    }

    /// Peers and addresses tracked (each map at most
    /// [`MAX_RATE_LIMITED_KEYS`]).
    pub fn tracked(&self) -> (usize, usize) {
        (self.peers.len(), self.addresses.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn limit(burst: u32, every_ms: u64) -> RateLimit {
        RateLimit {
            burst,
            refill_every: Duration::from_millis(every_ms),
            max_refused_in_a_row: 10,
        }
    }

    #[test]
    fn burst_then_one_token_per_interval() {
        let l = limit(3, 100);
        let t0 = Duration::from_secs(50);
        let mut b = TokenBucket::full(&l, t0);
        for _ in 0..3 {
            assert_eq!(b.try_take(&l, t0), Ok(()));
        }
        assert_eq!(b.try_take(&l, t0), Err(100 * MS));
        assert_eq!(b.try_take(&l, t0 + 40 * MS), Err(60 * MS));
        assert_eq!(b.try_take(&l, t0 + 100 * MS), Ok(()));
        assert_eq!(b.try_take(&l, t0 + 100 * MS), Err(100 * MS));
        // A long pause refills to the burst, no more.
        let later = t0 + Duration::from_secs(3600);
        assert!(b.is_full(&l, later));
        for _ in 0..3 {
            assert_eq!(b.try_take(&l, later), Ok(()));
        }
        assert!(b.try_take(&l, later).is_err());
        // A clock going backwards refills nothing and does not panic; the
        // bucket then refills from the earlier time on.
        assert!(b.try_take(&l, t0).is_err());
        assert!(b.try_take(&l, t0 + 99 * MS).is_err());
        assert_eq!(b.try_take(&l, t0 + 100 * MS), Ok(()));
    }

    #[test]
    fn a_peers_allowance_scales_with_its_reputation() {
        let l = limit(10, 100);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let t0 = Duration::from_secs(7);
        let allowed = |factor: f64| {
            let mut r = RequestLimiter::new(l);
            let peer = NodeId::from_bytes([9; 32]);
            (0..100)
                .filter(|_| r.check_scaled(peer, ip, t0, factor).is_ok())
                .count()
        };
        assert_eq!(allowed(1.0), 10);
        assert_eq!(allowed(0.25), 3);
        assert_eq!(allowed(2.0), 20);
        // Capped, and a banned peer (factor 0) or a NaN gets nothing.
        assert_eq!(allowed(50.0), 20);
        assert_eq!(allowed(0.0), 0);
        assert_eq!(allowed(f64::NAN), 0);
        // A slower refill for a suspect peer: 400 ms per request at 0.25.
        let mut r = RequestLimiter::new(limit(1, 100));
        let peer = NodeId::from_bytes([1; 32]);
        assert!(r.check_scaled(peer, ip, t0, 0.25).is_ok());
        assert!(r.check_scaled(peer, ip, t0 + 300 * MS, 0.25).is_err());
        assert!(r.check_scaled(peer, ip, t0 + 400 * MS, 0.25).is_ok());
    }

    #[test]
    fn zero_interval_disables_the_limit() {
        let l = limit(1, 0);
        let mut b = TokenBucket::full(&l, Duration::ZERO);
        for _ in 0..1000 {
            assert_eq!(b.try_take(&l, Duration::ZERO), Ok(()));
        }
    }

    #[test]
    fn keyed_buckets_are_bounded_and_drop_idle_keys_first() {
        let l = limit(2, 1000);
        let mut k: KeyedBuckets<u32> = KeyedBuckets::new(l, 3);
        let t = Duration::from_secs(10);
        // Key 1 is drained; keys 2 and 3 took one token each.
        assert!(k.try_take(1, t).is_ok());
        assert!(k.try_take(1, t).is_ok());
        assert!(k.try_take(1, t).is_err());
        assert!(k.try_take(2, t + MS).is_ok());
        assert!(k.try_take(3, t + 2 * MS).is_ok());
        assert_eq!(k.len(), 3);
        // A fourth key: nothing is idle yet, so the least recently used
        // (key 1) goes.
        assert!(k.try_take(4, t + 3 * MS).is_ok());
        assert_eq!(k.len(), 3);
        assert!(k.check(&1, t + 3 * MS).is_ok(), "key 1 was forgotten");
        assert!(k.check(&4, t + 3 * MS).is_ok());
        // Once every bucket refilled, room is made by dropping idle ones.
        let later = t + Duration::from_secs(10);
        assert!(k.try_take(5, later).is_ok());
        assert_eq!(k.len(), 1);
        // Many distinct keys never grow the map past its bound.
        for key in 100..10_000 {
            let _ = k.try_take(key, later);
            assert!(k.len() <= 3);
        }
    }

    #[test]
    fn a_peer_over_its_rate_does_not_affect_another() {
        let mut r = RequestLimiter::new(limit(5, 3_600_000));
        let a = NodeId::from_bytes([1; 32]);
        let b = NodeId::from_bytes([2; 32]);
        let ip_a: IpAddr = "127.1.0.1".parse().unwrap();
        let ip_b: IpAddr = "127.2.0.1".parse().unwrap();
        let now = Duration::from_secs(1);
        let allowed = (0..20).filter(|_| r.check(a, ip_a, now).is_ok()).count();
        assert_eq!(allowed, 5);
        assert!(matches!(
            r.check(a, ip_a, now),
            Err(RateRefusal::Peer { .. })
        ));
        assert_eq!((0..20).filter(|_| r.check(b, ip_b, now).is_ok()).count(), 5);
        assert_eq!(r.tracked(), (2, 2));
    }

    #[test]
    fn fresh_ids_from_one_address_share_its_budget() {
        let mut r = RequestLimiter::new(limit(5, 3_600_000));
        let ip: IpAddr = "2001:db8:1:2::7".parse().unwrap();
        let other_in_slash64: IpAddr = "2001:db8:1:2::8".parse().unwrap();
        let now = Duration::from_secs(1);
        let mut allowed = 0;
        for id in 0..100u8 {
            let peer = NodeId::from_bytes([id; 32]);
            let ip = if id % 2 == 0 { ip } else { other_in_slash64 };
            if r.check(peer, ip, now).is_ok() {
                allowed += 1;
            }
        }
        assert_eq!(
            allowed,
            5 * RATE_LIMIT_PER_IP_FACTOR as usize,
            "the address's burst, whatever the number of ids"
        );
        // A refusal for the address took no token from the peer.
        let fresh = NodeId::from_bytes([200; 32]);
        assert!(matches!(
            r.check(fresh, ip, now),
            Err(RateRefusal::Address { .. })
        ));
        let elsewhere: IpAddr = "2001:db8:9::1".parse().unwrap();
        assert_eq!(
            (0..10)
                .filter(|_| r.check(fresh, elsewhere, now).is_ok())
                .count(),
            5
        );
    }

    #[test]
    fn sip_moves_to_its_own_budget_and_the_overlay_budget_comes_back() {
        let peer = NodeId::from_bytes([1; 32]);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let mut l = RequestLimiter::new(limit(2, 1000));
        let now = Duration::from_secs(100);
        // Far more SIP than the overlay budget allows: each one is
        // admitted as a request, then reclassified.
        for _ in 0..1000 {
            assert!(l.check(peer, ip, now).is_ok());
            assert!(l.reclassify_as_sip(peer, ip, now, 1.0).is_ok());
        }
        // The overlay budget is untouched.
        assert!(l.check(peer, ip, now).is_ok());
        assert!(l.check(peer, ip, now).is_ok());
        assert!(l.check(peer, ip, now).is_err());
        // The SIP budget has its end too.
        let mut l = RequestLimiter::new(limit(2, 1000));
        let mut refused = 0;
        for _ in 0..SIP_OVERLAY_BURST + 10 {
            let _ = l.check(peer, ip, now);
            if l.reclassify_as_sip(peer, ip, now, 1.0).is_err() {
                refused += 1;
            }
        }
        assert_eq!(refused, 10);
    }
}
