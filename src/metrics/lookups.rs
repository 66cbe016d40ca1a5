//! What the overlay's lookups did, counted as they end: how many, of
//! which kind, whether a value lookup found a record, their requests and
//! their duration (a histogram).

use super::counters::{Histogram, HistogramSnapshot};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the lookup duration histogram, seconds.
pub const LOOKUP_SECONDS_BUCKETS: [f64; 10] = super::counters::SECONDS_BUCKETS;

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
    requests: AtomicU64,
    duration: Histogram,
}

/// One kind's counts, read at a scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct LookupSnapshot {
    /// `closest`, `value_found` or `value_missing`.
    pub outcome: &'static str,
    /// Requests they sent.
    pub requests: u64,
    /// How many ended and how long they took.
    pub duration: HistogramSnapshot,
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
        counts
            .requests
            .fetch_add(u64::from(requests), Ordering::Relaxed);
        counts.duration.observe(elapsed);
    }

    /// Every kind's counts now.
    pub fn snapshot(&self) -> Vec<LookupSnapshot> {
        [
            ("closest", &self.closest),
            ("value_found", &self.found),
            ("value_missing", &self.missing),
        ]
        .into_iter()
        .map(|(outcome, c)| LookupSnapshot {
            outcome,
            requests: c.requests.load(Ordering::Relaxed),
            duration: c.duration.snapshot(),
        })
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_are_counted_by_outcome() {
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
        assert_eq!((s[0].duration.count, s[0].requests), (1, 3));
        assert_eq!((s[1].duration.count, s[1].requests), (2, 6));
        assert_eq!(s[1].duration.cumulative, vec![0, 0, 0, 0, 0, 1, 1, 1, 1, 1]);
        assert_eq!(s[2].duration.count, 0);
    }
}
