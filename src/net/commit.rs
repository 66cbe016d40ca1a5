//! Group commit of record writes: one thread takes every write queued since
//! its last commit and makes them durable in one redb transaction, then
//! tells each waiter. A durable Store costs a share of one `fsync` instead
//! of one of its own, and is still acknowledged only after the transaction
//! that holds it committed.
//!
//! - The queue is bounded ([`MAX_PENDING_RECORD_WRITES`]): a writer waits
//!   for room ([`Committer::reserve`]), so a disk slower than the network
//!   pushes back on the Stores instead of growing a queue.
//! - Writes are applied in queue order; the overlay queues a slot's writes
//!   under the same lock that orders them in its record store, so the disk
//!   ends with the record the store holds.
//! - A batch commits or fails as a whole: a failed commit fails every
//!   waiter of its batch, and none of its writes is on disk.
//! - Under load, commits start at most once per [`MIN_COMMIT_INTERVAL`]
//!   (2 ms), so that a batch fills instead of each commit paying its
//!   fixed cost for a handful of Stores; a lone writer is not held back.
//! - The thread stops when the [`Committer`] is dropped, after the writes
//!   already queued; the drop waits for it, so that the database is closed
//!   when the drop returns.

use super::disk::{DiskError, DiskStore, RecordWrite};
use crate::limits::MAX_PENDING_RECORD_WRITES;
use crate::metrics::{Histogram, HistogramSnapshot};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

/// The shortest time from the start of one commit to the start of the
/// next. A commit has a fixed cost (redb's commit and the `fsync`, about
/// 200 µs of CPU here); started back to back under load, commits stay
/// small (3–4 Stores each in the Store-rate benchmark) and that cost
/// takes a fifth of the node's CPU. Waiting this long lets a batch fill:
/// it adds at most this much to a durable Store's latency, and only when
/// the previous batch held more than one operation (one writer waiting
/// for each commit would otherwise be slowed to one Store per interval).
const MIN_COMMIT_INTERVAL: Duration = Duration::from_millis(2);

/// What a queued operation's waiter learns: whether the transaction that
/// held it committed.
pub type CommitOutcome = Result<(), DiskError>;

/// Where the committer applies a batch: one transaction, all or nothing.
pub(crate) trait CommitSink: Send + 'static {
    /// Applies `writes`, in order, in one durable transaction.
    fn apply(&self, writes: &[&RecordWrite]) -> Result<(), DiskError>;
    /// What errors name when the committer itself stopped.
    fn name(&self) -> String;
}

impl CommitSink for Arc<DiskStore> {
    fn apply(&self, writes: &[&RecordWrite]) -> Result<(), DiskError> {
        DiskStore::apply(self, writes.iter().copied())
    }

    fn name(&self) -> String {
        self.path().to_owned()
    }
}

/// One queued operation: writes (none for a barrier) and who to tell.
#[derive(Debug)]
struct Op {
    writes: Vec<RecordWrite>,
    done: oneshot::Sender<CommitOutcome>,
    /// When it was queued (its latency runs from here to the commit).
    queued: Instant,
}

/// The handle of the committer thread.
#[derive(Debug)]
pub struct Committer {
    queue: Option<mpsc::Sender<Op>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// From queueing to commit, per operation with writes.
    latency: Arc<Histogram>,
    /// Names the database in the error of a stopped committer.
    name: String,
}

impl Committer {
    /// Starts the committer of `disk`, with a queue of
    /// [`MAX_PENDING_RECORD_WRITES`].
    pub fn start(disk: Arc<DiskStore>) -> Result<Self, DiskError> {
        Self::with_sink(disk, MAX_PENDING_RECORD_WRITES)
    }

    /// Starts a committer applying its batches to `sink`, with a queue of
    /// `capacity` operations (also the most one batch takes).
    pub(crate) fn with_sink<S: CommitSink>(sink: S, capacity: usize) -> Result<Self, DiskError> {
        let capacity = capacity.max(1);
        let name = sink.name();
        let (queue, rx) = mpsc::channel(capacity);
        let latency = Arc::new(Histogram::default());
        let observed = latency.clone();
        let thread = std::thread::Builder::new()
            .name("p2psip-commit".into())
            .spawn(move || run(sink, rx, capacity, &observed))
            .map_err(|e| {
                DiskError::new(name.clone(), format!("cannot start the committer: {e}"))
            })?;
        Ok(Self {
            queue: Some(queue),
            thread: Some(thread),
            latency,
            name,
        })
    }

    /// How long durable writes took, from queueing to commit (what a
    /// Store's acknowledgement waits for).
    pub fn write_latency(&self) -> HistogramSnapshot {
        self.latency.snapshot()
    }

    fn stopped(&self) -> DiskError {
        DiskError::new(self.name.clone(), "the committer has stopped")
    }

    /// Room for one operation in the queue, waiting while it is full.
    pub async fn reserve(&self) -> Result<Reserved<'_>, DiskError> {
        let queue = self.queue.as_ref().ok_or_else(|| self.stopped())?;
        let permit = queue.reserve().await.map_err(|_| self.stopped())?;
        Ok(Reserved {
            permit,
            committer: self,
        })
    }

    /// Room for one operation in the queue, if there is some now.
    pub fn try_reserve(&self) -> Option<Reserved<'_>> {
        let permit = self.queue.as_ref()?.try_reserve().ok()?;
        Some(Reserved {
            permit,
            committer: self,
        })
    }

    /// Durably writes `encoded` as the record of `slot`: completes once
    /// the transaction holding it committed (or failed).
    pub async fn persist(&self, slot: Vec<u8>, encoded: Vec<u8>) -> Result<(), DiskError> {
        self.reserve().await?.put(slot, encoded).wait().await
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        // The thread ends once the queue is closed and drained.
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                warn!("the record committer panicked");
            }
        }
    }
}

/// Room for one operation in the committer's queue, taken by
/// [`Committer::reserve`]: queuing with it cannot wait or fail, so it can
/// be done under a lock.
#[derive(Debug)]
pub struct Reserved<'a> {
    permit: mpsc::Permit<'a, Op>,
    committer: &'a Committer,
}

impl<'a> Reserved<'a> {
    fn send(self, writes: Vec<RecordWrite>) -> Pending {
        let (done, outcome) = oneshot::channel();
        self.permit.send(Op {
            writes,
            done,
            queued: Instant::now(),
        });
        Pending {
            outcome,
            stopped: self.committer.stopped(),
        }
    }

    /// Queues the write of `encoded` as the record of `slot`.
    pub fn put(self, slot: Vec<u8>, encoded: Vec<u8>) -> Pending {
        self.send(vec![RecordWrite::Put { slot, encoded }])
    }

    /// Queues the removal of the records of `slots`.
    pub fn remove(self, slots: Vec<Vec<u8>>) -> Pending {
        self.send(
            slots
                .into_iter()
                .map(|slot| RecordWrite::Remove { slot })
                .collect(),
        )
    }

    /// Queues nothing but a marker: it completes once every write queued
    /// before it is durable (a Store of a record already held must not be
    /// acknowledged before the write that stored it has committed).
    pub fn barrier(self) -> Pending {
        self.send(Vec::new())
    }
}

/// The outcome of a queued operation, to wait for. Dropping it does not
/// cancel the operation.
#[derive(Debug)]
pub struct Pending {
    outcome: oneshot::Receiver<CommitOutcome>,
    stopped: DiskError,
}

impl Pending {
    /// Waits until the transaction holding the operation committed, or
    /// failed.
    pub async fn wait(self) -> CommitOutcome {
        self.outcome.await.unwrap_or(Err(self.stopped))
    }
}

/// The committer thread: takes what is queued (at most `max_batch`
/// operations), applies it in one transaction, tells every waiter, and
/// starts again; ends when the queue is closed and empty.
fn run<S: CommitSink>(
    sink: S,
    mut queue: mpsc::Receiver<Op>,
    max_batch: usize,
    latency: &Histogram,
) {
    let mut batch: Vec<Op> = Vec::with_capacity(max_batch);
    let mut last_start: Option<Instant> = None;
    let mut last_len = 0;
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        // Under load (the last batch held more than one operation), a
        // commit starts at most MIN_COMMIT_INTERVAL after the previous
        // one: the Stores of the pause join this batch instead of each
        // paying a commit's fixed cost. A lone writer, waiting for each
        // commit before its next Store, is never held back.
        if last_len > 1 {
            if let Some(rest) =
                last_start.and_then(|t| MIN_COMMIT_INTERVAL.checked_sub(t.elapsed()))
            {
                std::thread::sleep(rest);
            }
        }
        last_start = Some(Instant::now());
        while batch.len() < max_batch {
            match queue.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        last_len = batch.len();
        let writes: Vec<&RecordWrite> = batch.iter().flat_map(|op| op.writes.iter()).collect();
        let outcome = if writes.is_empty() {
            // Only barriers: everything before them has committed.
            Ok(())
        } else {
            sink.apply(&writes)
        };
        if let Err(e) = &outcome {
            warn!(error = %e, writes = writes.len(), "record writes not committed");
        }
        drop(writes);
        for op in batch.drain(..) {
            if !op.writes.is_empty() {
                latency.observe(op.queued.elapsed());
            }
            // A waiter that went away (its request timed out) is not told.
            let _ = op.done.send(outcome.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::sync::Mutex;

    /// A sink that records its batches, can be held inside `apply` until
    /// released, and fails the batches it is told to.
    #[derive(Clone, Default)]
    struct Fake {
        batches: Arc<Mutex<Vec<Vec<RecordWrite>>>>,
        /// When set, `apply` tells it that it was entered and then waits
        /// for one message on `release` before it returns.
        hold: Arc<Mutex<Option<Hold>>>,
        /// The numbers (from 0) of the batches that fail.
        fail: Arc<Mutex<Vec<usize>>>,
    }

    struct Hold {
        entered: std::sync::mpsc::Sender<()>,
        release: std::sync::mpsc::Receiver<()>,
    }

    impl Fake {
        /// Holds the next `apply` calls; returns (entered, release).
        fn hold(&self) -> (std::sync::mpsc::Receiver<()>, std::sync::mpsc::Sender<()>) {
            let (entered, entered_rx) = std::sync::mpsc::channel();
            let (release_tx, release) = std::sync::mpsc::channel();
            *self.hold.lock().unwrap() = Some(Hold { entered, release });
            (entered_rx, release_tx)
        }

        fn batches(&self) -> Vec<Vec<RecordWrite>> {
            self.batches.lock().unwrap().clone()
        }
    }

    impl CommitSink for Fake {
        fn apply(&self, writes: &[&RecordWrite]) -> Result<(), DiskError> {
            if let Some(hold) = self.hold.lock().unwrap().as_ref() {
                hold.entered.send(()).unwrap();
                hold.release.recv().unwrap();
            }
            let mut batches = self.batches.lock().unwrap();
            let number = batches.len();
            batches.push(writes.iter().map(|w| (*w).clone()).collect());
            if self.fail.lock().unwrap().contains(&number) {
                return Err(DiskError::new("fake", "disk full"));
            }
            Ok(())
        }

        fn name(&self) -> String {
            "fake".into()
        }
    }

    fn put(n: u8) -> RecordWrite {
        RecordWrite::Put {
            slot: vec![n],
            encoded: vec![n; 3],
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap()
    }

    #[test]
    fn every_waiter_is_completed_and_every_write_committed() {
        let fake = Fake::default();
        let committer = Arc::new(Committer::with_sink(fake.clone(), 8).unwrap());
        let rt = runtime();
        let outcomes = rt.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for n in 0..100u8 {
                let c = committer.clone();
                tasks.spawn(async move { (n, c.persist(vec![n], vec![n; 3]).await) });
            }
            let mut outcomes = Vec::new();
            while let Some(done) = tasks.join_next().await {
                outcomes.push(done.unwrap());
            }
            outcomes
        });
        assert_eq!(outcomes.len(), 100);
        assert!(outcomes.iter().all(|(_, o)| o.is_ok()), "{outcomes:?}");
        let batches = fake.batches();
        let mut written: Vec<RecordWrite> = batches.concat();
        written.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        let mut expected: Vec<RecordWrite> = (0..100).map(put).collect();
        expected.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        assert_eq!(written, expected, "each write exactly once");
        assert!(
            batches.iter().all(|b| b.len() <= 8),
            "a batch takes at most the queue's capacity"
        );
    }

    #[test]
    fn the_queue_is_bounded_and_writes_queued_meanwhile_share_a_commit() {
        let fake = Fake::default();
        let (entered, release) = fake.hold();
        let committer = Committer::with_sink(fake.clone(), 4).unwrap();
        let rt = runtime();
        // The first write is taken by the thread, which is then held in
        // `apply`; the queue fills up behind it.
        let first = committer.try_reserve().unwrap().put(vec![0], vec![0; 3]);
        entered.recv().unwrap();
        let queued: Vec<Pending> = (1..=4u8)
            .map(|n| {
                committer
                    .try_reserve()
                    .expect("room in the queue")
                    .put(vec![n], vec![n; 3])
            })
            .collect();
        assert!(committer.try_reserve().is_none(), "the queue is full");
        release.send(()).unwrap();
        entered.recv().unwrap();
        release.send(()).unwrap();
        rt.block_on(async {
            assert!(first.wait().await.is_ok());
            for p in queued {
                assert!(p.wait().await.is_ok());
            }
        });
        assert_eq!(
            fake.batches(),
            vec![vec![put(0)], (1..=4).map(put).collect::<Vec<_>>()],
            "the four writes queued during the first commit went in one"
        );
        // Room again.
        assert!(committer.try_reserve().is_some());
    }

    #[test]
    fn a_failed_commit_fails_every_waiter_of_its_batch_and_acknowledges_none() {
        let fake = Fake::default();
        fake.fail.lock().unwrap().push(1);
        let (entered, release) = fake.hold();
        let committer = Committer::with_sink(fake.clone(), 8).unwrap();
        let rt = runtime();
        let first = committer.try_reserve().unwrap().put(vec![0], vec![0; 3]);
        entered.recv().unwrap();
        // Batch 1 (which fails): two writes, a removal and a barrier.
        let doomed = vec![
            committer.try_reserve().unwrap().put(vec![1], vec![1; 3]),
            committer.try_reserve().unwrap().put(vec![2], vec![2; 3]),
            committer.try_reserve().unwrap().remove(vec![vec![0]]),
            committer.try_reserve().unwrap().barrier(),
        ];
        release.send(()).unwrap();
        entered.recv().unwrap();
        release.send(()).unwrap();
        rt.block_on(async {
            assert!(first.wait().await.is_ok());
            for p in doomed {
                let err = p.wait().await.unwrap_err();
                assert!(err.to_string().contains("disk full"), "{err}");
            }
        });
        // The committer goes on: the next batch commits.
        *fake.hold.lock().unwrap() = None;
        rt.block_on(async {
            assert!(committer.persist(vec![3], vec![3; 3]).await.is_ok());
        });
        assert_eq!(fake.batches().len(), 3);
    }

    #[test]
    fn a_barrier_completes_after_the_writes_queued_before_it() {
        let fake = Fake::default();
        let (entered, release) = fake.hold();
        let committer = Committer::with_sink(fake.clone(), 8).unwrap();
        let rt = runtime();
        let write = committer.try_reserve().unwrap().put(vec![7], vec![7; 3]);
        entered.recv().unwrap();
        let barrier = committer.try_reserve().unwrap().barrier();
        // The barrier cannot complete while the write's commit is held.
        let mut barrier = Box::pin(barrier.wait());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(barrier.as_mut().poll(&mut cx).is_pending());
        release.send(()).unwrap();
        let (barrier_done, write_done) = rt.block_on(async { (barrier.await, write.wait().await) });
        assert!(barrier_done.is_ok() && write_done.is_ok());
        // Only the write was applied: a barrier alone commits nothing.
        assert_eq!(fake.batches(), vec![vec![put(7)]]);
    }

    #[test]
    fn dropping_the_committer_finishes_what_was_queued() {
        let fake = Fake::default();
        let committer = Committer::with_sink(fake.clone(), 8).unwrap();
        let pending: Vec<Pending> = (0..5u8)
            .map(|n| committer.try_reserve().unwrap().put(vec![n], vec![n; 3]))
            .collect();
        drop(committer);
        assert_eq!(fake.batches().concat(), (0..5).map(put).collect::<Vec<_>>());
        let rt = runtime();
        rt.block_on(async {
            for p in pending {
                assert!(p.wait().await.is_ok());
            }
        });
    }

    #[test]
    fn writes_reach_the_database_in_queue_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.redb");
        let disk = Arc::new(DiskStore::open(&path).unwrap());
        let committer = Committer::start(disk.clone()).unwrap();
        let rt = runtime();
        rt.block_on(async {
            let a = committer
                .try_reserve()
                .unwrap()
                .put(b"s".to_vec(), b"one".to_vec());
            let b = committer
                .try_reserve()
                .unwrap()
                .put(b"s".to_vec(), b"two".to_vec());
            let c = committer
                .try_reserve()
                .unwrap()
                .put(b"t".to_vec(), b"x".to_vec());
            let d = committer.try_reserve().unwrap().remove(vec![b"t".to_vec()]);
            for p in [a, b, c, d] {
                p.wait().await.unwrap();
            }
            committer
                .persist(b"u".to_vec(), b"y".to_vec())
                .await
                .unwrap();
        });
        drop(committer);
        drop(disk);
        let disk = DiskStore::open(&path).unwrap();
        assert_eq!(
            disk.load_all().unwrap(),
            vec![
                (b"s".to_vec(), b"two".to_vec()),
                (b"u".to_vec(), b"y".to_vec())
            ]
        );
    }
}
