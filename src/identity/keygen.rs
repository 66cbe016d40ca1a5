//! Generating an identity that solves the admission puzzle, on every core.

use super::{IdKind, SecretKey};
use rand::{rngs::StdRng, RngCore, SeedableRng};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What [`generate`] reports while it searches.
#[derive(Debug, Clone, Copy)]
pub struct GenerateProgress {
    /// Keys tried so far, over all threads.
    pub attempts: u64,
    /// Keys expected on average at this difficulty (2^difficulty).
    pub expected: u64,
    /// The difficulty searched for (leading zero bits).
    pub difficulty: u8,
    /// Time since the search started.
    pub elapsed: Duration,
}

impl GenerateProgress {
    /// Candidates tried per second so far; 0 before any was counted.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.attempts as f64 / secs
        } else {
            0.0
        }
    }

    /// The expected time from now until a key is found, at the rate so
    /// far; `None` before there is a rate. An expectation, not a
    /// countdown: each candidate meets the puzzle with probability
    /// 2^-difficulty whatever was tried before, so the candidates still
    /// to try number [`GenerateProgress::expected`] on average at any
    /// moment (the search takes that many on average, and any one
    /// search may take several times as many).
    pub fn expected_remaining(&self) -> Option<Duration> {
        let rate = self.rate();
        if rate <= 0.0 {
            return None;
        }
        let secs = self.expected as f64 / rate;
        Some(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
    }
}

/// Generates a key whose `kind` id has at least `difficulty` leading zero
/// bits in `SHA-256(id)`, searching on `threads` threads (0 = every core).
///
/// `progress` is called about every `report_every` from the calling thread
/// while the search runs; it is not called for searches shorter than that.
/// Each thread seeds its own ChaCha-based CSPRNG from the operating system,
/// so the search costs no system call per attempt.
pub fn generate(
    kind: IdKind,
    difficulty: u8,
    threads: usize,
    report_every: Duration,
    progress: &mut dyn FnMut(GenerateProgress),
) -> SecretKey {
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    let expected = 1u64.checked_shl(u32::from(difficulty)).unwrap_or(u64::MAX);
    let found: Mutex<Option<SecretKey>> = Mutex::new(None);
    let done = AtomicBool::new(false);
    let attempts = AtomicU64::new(0);

    let started = Instant::now();
    let waiter = std::thread::current();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut rng = StdRng::from_entropy();
                let mut seed = zeroize::Zeroizing::new([0u8; 32]);
                let mut local: u64 = 0;
                while !done.load(Ordering::Relaxed) {
                    rng.fill_bytes(seed.as_mut());
                    let key = SecretKey::from_seed(&seed);
                    local += 1;
                    if local % 256 == 0 {
                        attempts.fetch_add(256, Ordering::Relaxed);
                    }
                    if kind.puzzle_bits(&key.public()) >= u32::from(difficulty) {
                        let mut slot = found.lock().unwrap_or_else(|p| p.into_inner());
                        if slot.is_none() {
                            *slot = Some(key);
                        }
                        done.store(true, Ordering::Relaxed);
                        waiter.unpark();
                    }
                }
                attempts.fetch_add(local % 256, Ordering::Relaxed);
            });
        }
        while !done.load(Ordering::Relaxed) {
            std::thread::park_timeout(report_every);
            if !done.load(Ordering::Relaxed) {
                progress(GenerateProgress {
                    attempts: attempts.load(Ordering::Relaxed),
                    expected,
                    difficulty,
                    elapsed: started.elapsed(),
                });
            }
        }
    });

    let slot = found.into_inner().unwrap_or_else(|p| p.into_inner());
    // `done` is only set after a key was stored, so the slot is full; were
    // it not, searching again is still correct.
    match slot {
        Some(key) => key,
        None => generate(kind, difficulty, threads, report_every, progress),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_meet_the_difficulty_for_their_kind() {
        for kind in [IdKind::Node, IdKind::User] {
            let key = generate(kind, 6, 2, Duration::from_secs(60), &mut |_| {});
            assert!(kind.puzzle_bits(&key.public()) >= 6);
        }
    }

    #[test]
    fn progress_reports_the_rate_and_the_expected_time_left() {
        let at = |attempts, secs| GenerateProgress {
            attempts,
            expected: 1 << 20,
            difficulty: 20,
            elapsed: Duration::from_secs(secs),
        };
        // 100,000 candidates a second: 2^20 take 10.49 s on average.
        let p = at(500_000, 5);
        assert_eq!(p.rate(), 100_000.0);
        assert_eq!(p.expected_remaining().map(|d| d.as_millis()), Some(10_485));
        // Past the average the expectation is the same: the search has
        // no memory.
        let late = at(4_000_000, 40);
        assert_eq!(late.rate(), 100_000.0);
        assert_eq!(late.expected_remaining(), p.expected_remaining());
        // No time or no candidates yet: no rate, no estimate.
        assert_eq!(at(0, 0).rate(), 0.0);
        assert_eq!(at(0, 0).expected_remaining(), None);
        assert_eq!(at(0, 3).expected_remaining(), None);
        // The largest difficulty does not overflow (it saturates).
        let hard = GenerateProgress {
            expected: u64::MAX,
            difficulty: 255,
            ..at(1, 1)
        };
        assert_eq!(hard.expected_remaining(), Some(Duration::MAX));
    }

    #[test]
    fn difficulty_zero_returns_at_once() {
        let key = generate(IdKind::Node, 0, 1, Duration::from_secs(60), &mut |_| {
            panic!("no progress report expected for an instant search")
        });
        let _ = key.public().node_id();
    }
}
