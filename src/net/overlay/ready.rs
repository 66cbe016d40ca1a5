//! When a node became part of its overlay: the readiness that `node run`
//! prints, `status` reports and `status --wait-ready` waits for
//! (docs/operations.md).
//!
//! A node is ready once: when it starts a new overlay (no bootstrap node
//! and no saved routing table), or when a join (through `--bootstrap`,
//! the saved table, or the join seeds again later) ends with contacts in
//! its routing table. It stays ready afterwards, even if its contacts
//! go: that is what `table_size` and `peers` tell.

use tokio::sync::watch;

/// How and when a node became part of its overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    /// When, unix milliseconds.
    pub at_unix_ms: u64,
    /// How.
    pub how: Joined,
}

/// How a node became part of its overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// It started a new overlay: it had nobody to join through.
    StartedNew,
    /// A join ended with this many contacts in its routing table.
    Through {
        /// The routing table's size when the join ended.
        contacts: usize,
    },
}

/// The readiness of one node, set once, awaited by any number of tasks.
#[derive(Debug)]
pub(crate) struct ReadyFlag(watch::Sender<Option<Readiness>>);

impl Default for ReadyFlag {
    fn default() -> Self {
        Self(watch::channel(None).0)
    }
}

impl ReadyFlag {
    /// Marks the node ready (the first call counts; later ones change
    /// nothing). Returns whether this call did it.
    pub(crate) fn set(&self, readiness: Readiness) -> bool {
        self.0.send_if_modified(|now| match now {
            Some(_) => false,
            None => {
                *now = Some(readiness);
                true
            }
        })
    }

    /// The readiness, if the node is ready.
    pub(crate) fn get(&self) -> Option<Readiness> {
        *self.0.borrow()
    }

    /// Waits until the node is ready.
    pub(crate) async fn wait(&self) -> Readiness {
        let mut rx = self.0.subscribe();
        loop {
            if let Some(r) = *rx.borrow_and_update() {
                return r;
            }
            if rx.changed().await.is_err() {
                // The sender lives as long as `self`: not reached.
                std::future::pending::<()>().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_readiness_counts_and_waiters_see_it() {
        let flag = std::sync::Arc::new(ReadyFlag::default());
        assert_eq!(flag.get(), None);
        let waiter = {
            let flag = flag.clone();
            tokio::spawn(async move { flag.wait().await })
        };
        let first = Readiness {
            at_unix_ms: 1_000,
            how: Joined::Through { contacts: 3 },
        };
        assert!(flag.set(first));
        assert!(!flag.set(Readiness {
            at_unix_ms: 2_000,
            how: Joined::StartedNew,
        }));
        assert_eq!(flag.get(), Some(first));
        assert_eq!(waiter.await.unwrap(), first);
        // A waiter that comes late returns at once.
        assert_eq!(flag.wait().await, first);
    }
}
