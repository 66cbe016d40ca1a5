//! Membership: joins (driven by the core's [`JoinPlan`]), leaves,
//! crashes, upkeep, and the core's actions and churn queue carried out
//! (pings resolved, hand-over and repair by [`churn_pushes`]).

use super::*;

impl Simulator {
    /// Carries out what `node`'s core asked for: a ping of a resident of a
    /// full bucket is answered at once (by a live node); a ban needs
    /// nothing more, since the simulator keeps no connections and the core
    /// already refuses the peer everywhere else. Then its churn events
    /// ([`Simulator::carry_churn`]).
    pub(super) fn drain_actions(&mut self, node: usize, now: u64) {
        while let Some(action) = self.nodes[node].peers.poll_action() {
            match action {
                PeerAction::Ping { resident } => {
                    let alive = self
                        .index
                        .get(&resident.id)
                        .is_some_and(|i| self.nodes[*i].alive);
                    self.nodes[node].peers.ping_result(now, &resident.id, alive);
                }
                PeerAction::Disconnect { .. } => {}
            }
        }
        self.carry_churn(node);
    }

    /// Hand-over and repair, as the node's upkeep does them: for each
    /// churn event of `node`'s core ([`Peers::poll_churn`]), the records
    /// nearest to its contact ([`nearest_held`], at most
    /// [`MAX_HANDOVER_RECORDS`]) go where [`churn_pushes`] says (a Store
    /// costs no time; a dead or adversarial receiver keeps nothing, an
    /// honest one takes it as [`Simulator::accept_store`] decides).
    pub(super) fn carry_churn(&mut self, node: usize) {
        while let Some(event) = self.nodes[node].peers.poll_churn() {
            let n = &self.nodes[node];
            if n.records.is_empty() {
                continue;
            }
            let pushes = self.churn_plan(node, &event);
            for (to, (key, value)) in pushes {
                let Some(&i) = self.index.get(&to.id) else {
                    continue;
                };
                // The receiver decides as the node's does: responsible
                // for the key, then within its store's bounds.
                if self.nodes[i].alive && self.nodes[i].behaviour == Behaviour::Honest {
                    self.accept_store(i, key, value);
                }
            }
        }
    }

    /// What `event` of `node`'s core moves of the records it holds: the
    /// node's `OverlayService::plan_churn` over the simulated store.
    pub(super) fn churn_plan(&self, node: usize, event: &ChurnEvent) -> Vec<(Contact, (Key, u64))> {
        let n = &self.nodes[node];
        let point = Key::from(churn_contact(event).id);
        let held = n.records.iter().map(|(k, v)| (*k, (*k, *v)));
        let candidates = nearest_held(&point, held, MAX_HANDOVER_RECORDS);
        churn_pushes(
            n.peers.table(),
            self.config.params.replication,
            event,
            candidates,
        )
    }

    /// Adds a node that joins through a random live honest node, as the
    /// node joins ([`Simulator::join_existing`]).
    pub fn join(&mut self) -> usize {
        let me = self.new_node();
        self.join_existing(me);
        me
    }

    /// Joins the node `me` (already added) through a random live honest
    /// node, as the node joins: an attempt ([`Simulator::join_attempt`])
    /// and, while the core's [`JoinPlan`] says so, more attempts later on
    /// the virtual clock ([`Simulator::run_due_joins`]). The records it
    /// should now hold come from its new neighbours' churn-driven
    /// hand-over, as they admit it ([`Simulator::carry_churn`]).
    pub(super) fn join_existing(&mut self, me: usize) {
        // Bootstrap nodes are configured by the operator, so trusted: the
        // node joins through a random live honest one.
        let live: Vec<usize> = (0..me)
            .filter(|i| self.nodes[*i].alive && self.nodes[*i].behaviour == Behaviour::Honest)
            .collect();
        if live.is_empty() {
            return;
        }
        let via = live[self.rng.gen_range(0..live.len())];
        let via_contact = self.nodes[via].contact;
        self.join_attempt(me, via_contact, JoinPlan::new());
    }

    /// One attempt of `me`'s join through `via`, as the node's
    /// `OverlayService::join_attempt`: the bootstrap node learned as an
    /// outbound peer, a lookup of its own id whose result it learns, then
    /// the plan's step: a lookup (result learned) per bucket to refresh,
    /// or a retry queued for later.
    pub(super) fn join_attempt(&mut self, me: usize, via: Contact, mut plan: JoinPlan) {
        let now = self.now;
        self.nodes[me].peers.learn_outbound(now, via);
        self.drain_actions(me, now);
        let own = Key::from(self.nodes[me].contact.id);
        let run = self.query(me, own, Goal::Closest);
        self.learn_found(me, &run.found);
        match plan.on_own_lookup(run.end, &own, &run.found) {
            JoinStep::Refresh(buckets) => {
                for bucket in buckets {
                    let mut random = [0u8; 32];
                    self.rng.fill_bytes(&mut random);
                    let Some(target) = self.nodes[me].peers.table().key_in_bucket(bucket, random)
                    else {
                        continue;
                    };
                    let found = self.query(me, target, Goal::Closest).found;
                    self.learn_found(me, &found);
                }
            }
            JoinStep::Retry { at_ms } => {
                self.nodes[me].joining = Some((plan, via));
                self.join_retries.push(Reverse((at_ms, me)));
            }
            JoinStep::GiveUp => {}
        }
    }

    /// Makes the join attempts due by now (of nodes still alive).
    pub(super) fn run_due_joins(&mut self) {
        while let Some(&Reverse((at, me))) = self.join_retries.peek() {
            if at > self.now {
                break;
            }
            self.join_retries.pop();
            let Some((plan, via)) = self.nodes[me].joining.take() else {
                continue;
            };
            if self.nodes[me].alive {
                self.join_attempt(me, via, plan);
            }
        }
    }

    /// Lets virtual time run on until no join waits to be tried again.
    pub(crate) fn settle_joins(&mut self) {
        while let Some(&Reverse((at, _))) = self.join_retries.peek() {
            self.now = self.now.max(at);
            self.run_due_joins();
        }
    }

    /// `node` learns the result of its join or refresh lookup
    /// ([`Peers::learn_found`]).
    pub(super) fn learn_found(&mut self, node: usize, found: &Found) {
        let now = self.now;
        let _ = self.nodes[node].peers.learn_found(now, &found.per_path);
        self.drain_actions(node, now);
    }

    /// A graceful leave, as the node's: `node` stores each of its records
    /// on the `replication` closest nodes of its routing table
    /// ([`republish_targets`]; each receiver decides as
    /// [`Simulator::accept_store`] says), its neighbours
    /// forget it (the real node's "shutting down" close,
    /// [`Peers::peer_left`]), and it stops.
    pub fn leave(&mut self, node: usize) {
        let Some(leaver) = self.nodes.get(node).filter(|n| n.alive) else {
            return;
        };
        let leaver_id = leaver.contact.id;
        let mut records: Vec<(Key, u64)> = leaver.records.iter().map(|(k, v)| (*k, *v)).collect();
        records.sort_unstable_by_key(|(k, _)| *k);
        let r = self.config.params.replication;
        for (key, value) in records {
            // As the node's leave: the `replication` closest of its own
            // table ([`republish_targets`]), each sent one Store; a dead
            // or adversarial receiver keeps nothing.
            let (candidates, _) = republish_targets(self.nodes[node].peers.table(), r, &key);
            let targets: Vec<usize> = candidates
                .iter()
                .take(r)
                .filter_map(|c| self.index.get(&c.id).copied())
                .filter(|i| self.nodes[*i].alive && self.nodes[*i].behaviour == Behaviour::Honest)
                .collect();
            for t in targets {
                self.accept_store(t, key, value);
            }
        }
        self.nodes[node].alive = false;
        let now = self.now;
        for i in 0..self.nodes.len() {
            if i != node {
                // Told directly: no need to wait for failed requests.
                self.nodes[i].peers.peer_left(&leaver_id);
                if self.nodes[i].alive {
                    self.drain_actions(i, now);
                }
            }
        }
    }

    /// Crashes a random live node other than `keep`; returns it.
    pub(super) fn crash_random(&mut self, keep: &HashSet<usize>) -> Option<usize> {
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].alive && !keep.contains(i))
            .collect();
        if live.is_empty() {
            return None;
        }
        let victim = live[self.rng.gen_range(0..live.len())];
        self.nodes[victim].alive = false;
        Some(victim)
    }

    /// Crashes the given nodes.
    pub fn crash(&mut self, nodes: &[usize]) {
        for n in nodes {
            if let Some(node) = self.nodes.get_mut(*n) {
                node.alive = false;
            }
        }
    }

    /// Table maintenance: every live node checks the liveness of its
    /// residents (the periodic ping of a real node) and evicts the dead.
    pub fn maintain(&mut self) {
        let now = self.now;
        for i in 0..self.nodes.len() {
            if !self.nodes[i].alive {
                continue;
            }
            let dead: Vec<NodeId> = self.nodes[i]
                .peers
                .table()
                .entries()
                .map(|(_, c, _, _)| c.id)
                .filter(|id| self.index.get(id).is_some_and(|j| !self.nodes[*j].alive))
                .collect();
            for id in dead {
                self.nodes[i].peers.ping_result(now, &id, false);
            }
            self.drain_actions(i, now);
        }
    }
}
