//! Records: placement by the core ([`place_replicas`]), the holders'
//! responsibility check and store bounds, reads, republishing.

use super::*;

impl Simulator {
    /// A random live node reads `key` back: `Some(true)` if it found
    /// `value`, `Some(false)` if only an older version, `None` if nothing
    /// (or no honest node is alive to read).
    pub(super) fn read_back(&mut self, key: Key, value: u64) -> Option<bool> {
        if self.live_honest() == 0 {
            return None;
        }
        let reader = self.random_live();
        match self.fetch(reader, key) {
            Some(v) if v == value => Some(true),
            Some(v) if v < value => Some(false),
            _ => None,
        }
    }

    /// Stores `value` under `key` from `from`, as the node publishes: a
    /// placement query ([`Goal::Place`]) and the core's
    /// [`place_replicas`]; returns how many nodes hold it. The writer
    /// keeps a copy itself when it is among the closest
    /// ([`Replica::Local`]). Adversaries acknowledge (or not) and keep
    /// nothing.
    pub fn store(&mut self, from: usize, key: Key, value: u64) -> usize {
        let run = self.query(from, key, Goal::Place);
        let local_held = self.nodes[from].records.get(&key).copied();
        let replicas = place_replicas(
            &self.nodes[from].peers,
            run.end,
            &key,
            &run.found,
            value,
            local_held,
        );
        let mut stored = 0;
        for replica in replicas {
            let (holder, sent) = match replica {
                Replica::Local => (from, false),
                Replica::Remote(c) => match self.index.get(&c.id) {
                    Some(&i) => (i, true),
                    None => continue,
                },
            };
            if !self.nodes[holder].alive || self.nodes[holder].behaviour != Behaviour::Honest {
                continue;
            }
            // The writer's own copy: its lookup just found it among the
            // closest, no check against its own table (as the node).
            let kept = if sent {
                self.accept_store(holder, key, value)
            } else {
                self.put_record(holder, key, value)
            };
            stored += usize::from(kept);
        }
        stored
    }

    /// `holder` receives a Store of `value` under `key` from another node:
    /// as the node, it refuses a key it is not responsible for (the core's
    /// [`Peers::is_responsible`], `NotResponsible`), then stores within
    /// its bounds ([`Simulator::put_record`]). Returns whether it holds
    /// `value` now.
    pub(super) fn accept_store(&mut self, holder: usize, key: Key, value: u64) -> bool {
        let holds = self.nodes[holder].records.contains_key(&key);
        self.nodes[holder].peers.accepts_replica(&key, holds) && self.put_record(holder, key, value)
    }

    /// `node` stores `value` under `key` if it is newer than what it holds
    /// (a holder never rolls a record back), within its store's bounds
    /// ([`SimConfig::store`]). Returns whether it holds `value` now.
    pub(super) fn put_record(&mut self, node: usize, key: Key, value: u64) -> bool {
        let model = self.config.store;
        let n = &mut self.nodes[node];
        match n.records.get(&key) {
            Some(v) if *v >= value => return *v == value,
            Some(_) => {
                n.records.insert(key, value);
                return true;
            }
            None => {}
        }
        if let (Some(model), Some(inbox)) = (model, n.inbox.as_deref_mut()) {
            match model.limits() {
                Some(limits) => {
                    // Honest records are not counted per owner: every
                    // writer holds far fewer than a quota's worth.
                    let held = (n.records.len() + inbox.junk).saturating_mul(SIM_RECORD_COST);
                    if admit_new_slot(&limits, 0, held, SIM_RECORD_COST).is_err() {
                        return false;
                    }
                }
                None => {
                    inbox.fifo.push_back(Some(key));
                    n.records.insert(key, value);
                    evict_oldest(&mut n.records, inbox, model.slots);
                    return n.records.contains_key(&key);
                }
            }
        }
        n.records.insert(key, value);
        true
    }

    /// Fetches the value under `key` from `from` (a [`Goal::Value`]
    /// query): the highest version it found.
    pub fn fetch(&mut self, from: usize, key: Key) -> Option<u64> {
        self.query(from, key, Goal::Value).found.best_seq
    }

    /// Every holder of `key` re-stores it on the closest nodes it finds
    /// (the periodic and churn-triggered republish).
    pub fn republish(&mut self, key: Key) {
        let holders: Vec<(usize, u64)> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].alive)
            .filter_map(|i| self.nodes[i].records.get(&key).map(|v| (i, *v)))
            .collect();
        for (holder, value) in holders {
            self.store(holder, key, value);
        }
    }

    /// The live nodes holding `key`.
    pub fn holders(&self, key: &Key) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].alive && self.nodes[*i].records.contains_key(key))
            .collect()
    }
}
