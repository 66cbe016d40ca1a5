//! Lock-light counters a node keeps as it works, read at a scrape: a
//! histogram of durations, and counters keyed by labels that are
//! compile-time constants (message kinds, outcomes, reasons), so that no
//! peer can grow the set of series.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the duration histograms, seconds.
pub const SECONDS_BUCKETS: [f64; 10] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// Durations counted into [`SECONDS_BUCKETS`], lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    count: AtomicU64,
    micros: AtomicU64,
    /// Observations at most as long as each bound (not cumulative).
    buckets: [AtomicU64; SECONDS_BUCKETS.len()],
}

/// A [`Histogram`] read at a scrape.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Observations.
    pub count: u64,
    /// Their sum, seconds.
    pub seconds: f64,
    /// Cumulative counts per bound of [`SECONDS_BUCKETS`].
    pub cumulative: Vec<u64>,
}

impl Histogram {
    /// Counts one observation of `elapsed`.
    pub fn observe(&self, elapsed: Duration) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.micros.fetch_add(micros, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        if let Some(i) = SECONDS_BUCKETS.iter().position(|b| secs <= *b) {
            if let Some(bucket) = self.buckets.get(i) {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The counts now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let cumulative = self
            .buckets
            .iter()
            .map(|b| {
                running += b.load(Ordering::Relaxed);
                running
            })
            .collect();
        HistogramSnapshot {
            count: self.count.load(Ordering::Relaxed),
            seconds: self.micros.load(Ordering::Relaxed) as f64 / 1e6,
            cumulative,
        }
    }
}

/// Counters keyed by `N` label values, each a `&'static str`: the series
/// are bounded by the labels the code names.
#[derive(Debug, Default)]
pub struct CounterVec<const N: usize> {
    counts: Mutex<BTreeMap<[&'static str; N], u64>>,
}

impl<const N: usize> CounterVec<N> {
    /// Adds one under `labels`.
    pub fn inc(&self, labels: [&'static str; N]) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(labels).or_insert(0);
        *n = n.saturating_add(1);
    }

    /// Every series so far, in label order.
    pub fn snapshot(&self) -> Vec<([&'static str; N], u64)> {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
    }

    /// The count under `labels` (0 if never counted).
    pub fn get(&self, labels: [&'static str; N]) -> u64 {
        self.counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&labels)
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_fall_into_cumulative_buckets() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(2));
        h.observe(Duration::from_millis(30));
        h.observe(Duration::from_secs(9));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        // 2 ms under 0.0025; 30 ms under 0.05; 9 s under none (+Inf only).
        assert_eq!(s.cumulative, vec![0, 1, 1, 1, 1, 2, 2, 2, 2, 2]);
        assert!((s.seconds - 9.032).abs() < 1e-9);
    }

    #[test]
    fn labelled_counters_keep_one_series_per_label_set() {
        let c = CounterVec::<2>::default();
        c.inc(["ping", "answered"]);
        c.inc(["ping", "answered"]);
        c.inc(["store", "record_refused"]);
        assert_eq!(
            c.snapshot(),
            vec![(["ping", "answered"], 2), (["store", "record_refused"], 1)]
        );
        assert_eq!(c.get(["store", "answered"]), 0);
    }
}
