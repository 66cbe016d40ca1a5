//! What the overlay's lookups did, counted as they end: how many, of
//! which kind, whether a value lookup found a record, their requests and
//! their duration (a histogram).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the lookup duration histogram, seconds.
pub const LOOKUP_SECONDS_BUCKETS: [f64; 10] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// What a lookup looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupKind {
    /// The closest nodes to a key (joins, refreshes, placing records).
    Closest,
    /// A record under a key: found, or not.
    Value {
        /// Whether a verified record came back.
        found: bool,
    },
}

/// Counters of one kind of lookup.
#[derive(Debug, Default)]
struct Counts {
    count: AtomicU64,
    requests: AtomicU64,
    micros: AtomicU64,
    /// Lookups at most as long as each bound (not cumulative).
    buckets: [AtomicU64; LOOKUP_SECONDS_BUCKETS.len()],
}

/// One kind's counts, read at a scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct LookupSnapshot {
    /// `closest`, `value_found` or `value_missing`.
    pub outcome: &'static str,
    /// Lookups ended.
    pub count: u64,
    /// Requests they sent.
    pub requests: u64,
    /// Their total duration, seconds.
    pub seconds: f64,
    /// Cumulative counts per bound of [`LOOKUP_SECONDS_BUCKETS`].
    pub cumulative: Vec<u64>,
}

/// The lookups of one node, counted lock-free as they end.
#[derive(Debug, Default)]
pub struct LookupMetrics {
    closest: Counts,
    found: Counts,
    missing: Counts,
}

impl LookupMetrics {
    /// Counts a lookup of `kind` that sent `requests` and took `elapsed`.
    pub fn record(&self, kind: LookupKind, requests: u32, elapsed: Duration) {
        let counts = match kind {
            LookupKind::Closest => &self.closest,
            LookupKind::Value { found: true } => &self.found,
            LookupKind::Value { found: false } => &self.missing,
        };
        counts.count.fetch_add(1, Ordering::Relaxed);
        counts
            .requests
            .fetch_add(u64::from(requests), Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        counts.micros.fetch_add(micros, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        if let Some(i) = LOOKUP_SECONDS_BUCKETS.iter().position(|b| secs <= *b) {
            if let Some(bucket) = counts.buckets.get(i) {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Every kind's counts now.
    pub fn snapshot(&self) -> Vec<LookupSnapshot> {
        [
            ("closest", &self.closest),
            ("value_found", &self.found),
            ("value_missing", &self.missing),
        ]
        .into_iter()
        .map(|(outcome, c)| {
            let mut running = 0;
            let cumulative = c
                .buckets
                .iter()
                .map(|b| {
                    running += b.load(Ordering::Relaxed);
                    running
                })
                .collect();
            LookupSnapshot {
                outcome,
                count: c.count.load(Ordering::Relaxed),
                requests: c.requests.load(Ordering::Relaxed),
                seconds: c.micros.load(Ordering::Relaxed) as f64 / 1e6,
                cumulative,
            }
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_are_counted_by_outcome_into_cumulative_buckets() {
        let m = LookupMetrics::default();
        m.record(LookupKind::Closest, 3, Duration::from_millis(2));
        m.record(
            LookupKind::Value { found: true },
            5,
            Duration::from_millis(30),
        );
        m.record(LookupKind::Value { found: true }, 1, Duration::from_secs(9));
        let s = m.snapshot();
        assert_eq!(s[0].outcome, "closest");
        assert_eq!((s[0].count, s[0].requests), (1, 3));
        assert_eq!(s[0].cumulative, vec![0, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
        assert_eq!((s[1].count, s[1].requests), (2, 6));
        // 30 ms falls under 0.05; 9 s under none (only +Inf).
        assert_eq!(s[1].cumulative, vec![0, 0, 0, 0, 0, 1, 1, 1, 1, 1]);
        assert!((s[1].seconds - 9.03).abs() < 1e-9);
        assert_eq!(s[2].count, 0);
    }
}
