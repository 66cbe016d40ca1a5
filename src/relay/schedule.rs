//! The constant-rate sender of a circuit during a call: one cell every
//! interval (20 ms for voice) in each direction, whatever the speakers
//! do. Media waiting goes in the next cell; with nothing waiting a
//! cover cell goes instead (sealed like media, told apart only inside
//! the end-to-end layer), so a watcher of any link sees the same cells
//! at the same times in talk and in silence.
//!
//! Sans-IO: the driver calls [`ConstantRate::poll`] at (or after)
//! [`ConstantRate::next_due_ms`]. A driver that fell behind gets at
//! most [`MAX_CATCH_UP`] cells at once; beyond that the schedule starts
//! again from now (the late cells are skipped, not burst: a burst
//! after a stall would be a signal of its own).

use std::collections::VecDeque;

/// The interval for voice (one RTP packet of 20 ms per cell).
pub const VOICE_INTERVAL_MS: u64 = 20;
/// Cells sent at once when the driver is late.
pub const MAX_CATCH_UP: usize = 3;
/// Media payloads waiting at most; the oldest goes when full (late
/// voice is useless).
pub const MAX_WAITING: usize = 8;

/// What a tick sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tick {
    /// A media payload.
    Media(Vec<u8>),
    /// A cover cell (nothing was waiting).
    Cover,
}

/// One direction's constant-rate schedule.
#[derive(Debug)]
pub struct ConstantRate {
    interval_ms: u64,
    next_ms: u64,
    waiting: VecDeque<Vec<u8>>,
    dropped: u64,
}

impl ConstantRate {
    /// A schedule of one cell per `interval_ms` (at least 1), the first
    /// due at `start_ms`.
    pub fn new(start_ms: u64, interval_ms: u64) -> Self {
        Self {
            interval_ms: interval_ms.max(1),
            next_ms: start_ms,
            waiting: VecDeque::new(),
            dropped: 0,
        }
    }

    /// Queues a media payload for the next cell.
    pub fn push(&mut self, payload: Vec<u8>) {
        if self.waiting.len() >= MAX_WAITING {
            self.waiting.pop_front();
            self.dropped += 1;
        }
        self.waiting.push_back(payload);
    }

    /// Puts a media payload back at the head of the queue (its cell
    /// went to something else); it goes in the next cell.
    pub fn push_front(&mut self, payload: Vec<u8>) {
        if self.waiting.len() >= MAX_WAITING {
            // The newest goes: the one put back is the oldest, due first.
            self.waiting.pop_back();
            self.dropped += 1;
        }
        self.waiting.push_front(payload);
    }

    /// Media payloads dropped because too many waited.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// When the next cell is due.
    pub fn next_due_ms(&self) -> u64 {
        self.next_ms
    }

    /// The cells due by `now_ms`.
    pub fn poll(&mut self, now_ms: u64) -> Vec<Tick> {
        let mut ticks = Vec::new();
        while self.next_ms <= now_ms && ticks.len() < MAX_CATCH_UP {
            ticks.push(match self.waiting.pop_front() {
                Some(p) => Tick::Media(p),
                None => Tick::Cover,
            });
            self.next_ms = self.next_ms.saturating_add(self.interval_ms);
        }
        if self.next_ms <= now_ms {
            // Still behind: start again from now rather than burst.
            self.next_ms = now_ms.saturating_add(self.interval_ms);
        }
        ticks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::cell::CELL_LEN;

    /// Runs a schedule for `ms`, polled every `step` ms, with speech
    /// pushed at the times `talk` says; the times cells went out.
    fn run(ms: u64, step: u64, talk: impl Fn(u64) -> bool) -> (Vec<u64>, usize) {
        let mut s = ConstantRate::new(0, VOICE_INTERVAL_MS);
        let (mut times, mut media) = (Vec::new(), 0);
        for now in (0..ms).step_by(step as usize) {
            if talk(now) && now % VOICE_INTERVAL_MS == 0 {
                s.push(vec![0u8; 172]);
            }
            for t in s.poll(now) {
                times.push(now);
                media += usize::from(matches!(t, Tick::Media(_)));
            }
        }
        (times, media)
    }

    #[test]
    fn talk_and_silence_send_the_same_cells_at_the_same_times() {
        let silence = run(10_000, 1, |_| false);
        let speech = run(10_000, 1, |t| (t / 1_500) % 2 == 0);
        let always = run(10_000, 1, |_| true);
        assert_eq!(silence.0.len(), 500, "50 cells a second");
        assert_eq!(speech.0, silence.0);
        assert_eq!(always.0, silence.0);
        assert_eq!(silence.1, 0);
        assert!(
            speech.1 > 200 && always.1 == 500,
            "{} {}",
            speech.1,
            always.1
        );
        // Polled coarsely (every 7 ms), still 50 a second.
        assert_eq!(run(10_000, 7, |_| false).0.len(), 500);
    }

    #[test]
    fn a_late_driver_gets_a_bounded_catch_up_not_a_burst() {
        let mut s = ConstantRate::new(0, 20);
        assert_eq!(s.poll(0).len(), 1);
        assert_eq!(s.poll(1_000).len(), MAX_CATCH_UP);
        assert_eq!(s.next_due_ms(), 1_020);
        for _ in 0..20 {
            s.push(vec![1]);
        }
        assert_eq!(s.dropped(), 20 - MAX_WAITING as u64);
    }

    // Cells at the voice rate cost at most three times G.711's 64 kbit/s.
    const _: () = assert!(CELL_LEN as u64 * 8 * (1_000 / VOICE_INTERVAL_MS) <= 3 * 64_000);
}
