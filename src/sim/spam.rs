//! The spam adversary's flood: every junk request admitted through the
//! target's core ([`Peers::admit_request`]), junk stores through the
//! store's own rule ([`admit_new_slot`]).

use super::*;

impl Simulator {
    /// The spam plan: each spammer's [`SIM_SPAM_TARGETS`] honest targets,
    /// drawn from a hash of the seed (the same under every defence). Each
    /// target gets an [`Inbox`].
    pub(super) fn spam_plan(&mut self) -> Vec<(usize, Vec<usize>)> {
        let n = self.nodes.len() as u64;
        let mut plan = Vec::new();
        for s in 0..self.nodes.len() {
            if self.nodes[s].behaviour != Behaviour::Spam {
                continue;
            }
            let mut targets = Vec::new();
            for attempt in 0..(SIM_SPAM_TARGETS as u64 * 16) {
                if targets.len() >= SIM_SPAM_TARGETS || n == 0 {
                    break;
                }
                let h = splitmix(self.config.seed ^ splitmix((s as u64) << 20 | attempt));
                let t = (h % n) as usize;
                if self.nodes[t].behaviour == Behaviour::Honest && !targets.contains(&t) {
                    targets.push(t);
                }
            }
            for t in &targets {
                self.nodes[*t].inbox.get_or_insert_with(Default::default);
            }
            plan.push((s, targets));
        }
        plan
    }

    /// One operation's worth ([`SimConfig::interval_ms`]) of spam: every
    /// live spammer sends [`SIM_SPAM_RATE_FACTOR`] times the per-peer rate
    /// limit to each of its targets, half junk stores (each under a fresh
    /// key, owned by the spammer), half junk lookups. A target admits each
    /// request through its core's [`Peers::admit_request`], as the node's
    /// server does: a banned spammer is refused, the allowance scales with
    /// its standing, the excess is [`Evidence::RateViolation`] (which bans
    /// it soon) and a connection refused too often in a row is closed
    /// (the spammer reconnects at the next operation). Admitted junk
    /// stores obey the store model; admitted requests beyond
    /// [`SIM_NODE_CAPACITY_PER_SEC`] overload the target, which then
    /// leaves that share of all requests unanswered until the next
    /// operation. Returns the requests each target served.
    pub(super) fn flood(&mut self, plan: &[(usize, Vec<usize>)]) -> HashMap<usize, usize> {
        let now = self.now;
        let interval_s = self.config.interval_ms as f64 / 1000.0;
        let per_op =
            (f64::from(MAX_REQUESTS_PER_PEER_PER_SEC * SIM_SPAM_RATE_FACTOR) * interval_s) as usize;
        let capacity = f64::from(SIM_NODE_CAPACITY_PER_SEC) * interval_s;
        let mut load: HashMap<usize, usize> = HashMap::new();
        for (s, targets) in plan {
            if !self.nodes[*s].alive {
                continue;
            }
            let spammer = self.nodes[*s].contact;
            for &t in targets {
                if !self.nodes[t].alive {
                    continue;
                }
                let SimNode { peers, inbox, .. } = &mut self.nodes[t];
                let Some(inbox) = inbox.as_deref_mut() else {
                    continue;
                };
                let streak = inbox.streaks.entry(*s).or_default();
                let mut admitted = 0;
                for _ in 0..per_op {
                    match peers.admit_request(now, &spammer.id, spammer.addr.ip(), streak) {
                        Admission::Serve => admitted += 1,
                        Admission::Refuse(_) => {}
                        Admission::Close(_) => {
                            *streak = RefusalStreak::default();
                            break;
                        }
                        Admission::Banned => break,
                    }
                }
                self.drain_actions(t, now);
                *load.entry(t).or_default() += admitted;
                let stores = admitted / 2;
                let model = self.config.store;
                let node = &mut self.nodes[t];
                if let (Some(model), Some(inbox)) = (model, node.inbox.as_deref_mut()) {
                    for _ in 0..stores {
                        match model.limits() {
                            Some(limits) => {
                                let mine = inbox.junk_per_owner.entry(*s).or_default();
                                let held = (node.records.len() + inbox.junk)
                                    .saturating_mul(SIM_RECORD_COST);
                                if admit_new_slot(&limits, *mine, held, SIM_RECORD_COST).is_err() {
                                    break;
                                }
                                *mine += 1;
                                inbox.junk += 1;
                            }
                            None => {
                                inbox.fifo.push_back(None);
                                inbox.junk += 1;
                                evict_oldest(&mut node.records, inbox, model.slots);
                            }
                        }
                    }
                }
            }
        }
        for (_, targets) in plan {
            for &t in targets {
                if let Some(inbox) = self.nodes[t].inbox.as_deref_mut() {
                    let a = load.get(&t).copied().unwrap_or(0) as f64;
                    inbox.overload = if a > capacity {
                        (a - capacity) / a
                    } else {
                        0.0
                    };
                }
            }
        }
        load
    }
}
