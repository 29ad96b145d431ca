//! Property test (test-only): thousands of random operations on `AgentMemory` against a simulated
//! engine, writer queue and disk, checking the accounting, budget, pinning and namespace
//! invariants after every step. Deterministic (xorshift seeds); no extra crates.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;

use crate::format::encoded_len_parts;
use crate::memory::tests::key;
use crate::{common_prefix, AgentKey, AgentMemory, Budgets, Compat, Eviction, Namespace, SnapshotHeader, Tier};

/// Simulated engine state size per token.
const BPT: u64 = 16;
const COMPAT: Compat = Compat { fingerprint: [1; 32], state_layout: 0x101 };
const NAMESPACES: [&str; 3] = ["n0", "n1", "n2"];
const AGENTS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// A job in the simulated writer queue (applied in order, like `Writer`).
enum Pending {
    Write { header: SnapshotHeader, generation: u64, file_bytes: u64 },
    Remove(AgentKey),
}

/// How often the interesting paths ran, so the test can insist they did.
#[derive(Debug, Default)]
struct Coverage {
    to_warm: usize,
    to_cold: usize,
    deleted: usize,
    restarts: usize,
    failed_writes: usize,
    shared_hits: usize,
    budget_stuck: usize,
}

struct Sim {
    cov: Coverage,
    mem: AgentMemory,
    budgets: Budgets,
    disk: BTreeMap<AgentKey, (SnapshotHeader, u64)>,
    queue: VecDeque<Pending>,
    keys: Vec<AgentKey>,
    next_seq: i32,
    now: u64,
    rng: Rng,
}

impl Sim {
    fn new(seed: u64, budgets: Budgets) -> Self {
        let keys = NAMESPACES.iter().flat_map(|n| AGENTS.iter().map(move |a| key(n, a))).collect();
        Sim {
            cov: Coverage::default(),
            mem: AgentMemory::new(budgets),
            budgets,
            disk: BTreeMap::new(),
            queue: VecDeque::new(),
            keys,
            next_seq: 0,
            now: 1_000,
            rng: Rng(seed),
        }
    }

    fn pick_key(&mut self) -> AgentKey {
        let i = self.rng.below(self.keys.len());
        self.keys[i].clone()
    }

    fn pick_where(&mut self, f: impl Fn(&crate::AgentInfo) -> bool) -> Option<AgentKey> {
        let all: Vec<AgentKey> = self.keys.iter().filter(|k| self.mem.get(k).is_some_and(&f)).cloned().collect();
        (!all.is_empty()).then(|| all[self.rng.below(all.len())].clone())
    }

    fn random_tokens(&mut self, prefix: &[i32]) -> Vec<i32> {
        let mut t = prefix.to_vec();
        for _ in 0..self.rng.below(12) {
            t.push(self.rng.below(4) as i32); // tiny alphabet: prefixes collide often
        }
        t
    }

    /// Export = the simulated engine's state bytes for an agent.
    fn export(&self, k: &AgentKey) -> Arc<Vec<u8>> {
        let n = self.mem.tokens(k).map_or(0, |t| t.len()) as u64 * BPT;
        Arc::new(vec![0; n as usize])
    }

    fn submit_write(&mut self, k: &AgentKey) {
        let Some(header) = self.mem.snapshot_header(k, &COMPAT, 4096) else { return };
        let payload = header.tokens.len() as u64 * BPT;
        let file_bytes =
            encoded_len_parts(k.namespace.as_str().len(), k.agent.as_str().len(), header.tokens.len(), payload);
        let generation = self.mem.generation(k);
        self.mem.mark_writing(k, generation);
        self.queue.push_back(Pending::Write { header, generation, file_bytes });
    }

    /// Completes the oldest queued job; with `may_fail`, a write fails one time in ten.
    fn complete_one(&mut self, may_fail: bool) {
        match self.queue.pop_front() {
            Some(Pending::Write { header, generation, .. }) if may_fail && self.rng.chance(10) => {
                self.cov.failed_writes += 1;
                self.mem.mark_write_failed(&header.key(), generation);
            }
            Some(Pending::Write { header, generation, file_bytes }) => {
                let k = header.key();
                self.disk.insert(k.clone(), (header, file_bytes));
                self.mem.mark_persisted(&k, generation, file_bytes);
            }
            Some(Pending::Remove(k)) => {
                self.disk.remove(&k);
            }
            None => {}
        }
    }

    fn drain(&mut self) {
        while !self.queue.is_empty() {
            self.complete_one(false);
        }
    }

    fn forget(&mut self, k: &AgentKey) {
        self.mem.remove(k);
        self.queue.push_back(Pending::Remove(k.clone()));
    }

    fn apply(&mut self, plan: &[Eviction]) {
        for ev in plan {
            match ev {
                Eviction::Demote { key: k, to: Tier::Warm } => {
                    self.cov.to_warm += 1;
                    let bytes = self.export(k);
                    assert!(self.mem.set_warm(k, bytes, self.now));
                }
                Eviction::Demote { key: k, to: Tier::Cold } => {
                    self.cov.to_cold += 1;
                    let info = self.mem.get(k).expect("planned agents exist").clone();
                    if info.dirty {
                        if info.tier == Tier::Hot {
                            let bytes = self.export(k);
                            self.mem.set_warm(k, bytes, self.now);
                        }
                        assert!(!self.mem.set_cold(k), "dirty agents cannot go cold");
                        self.submit_write(k);
                        self.drain();
                    }
                    assert!(self.mem.set_cold(k));
                }
                Eviction::Demote { to: Tier::Hot, .. } => panic!("the plan never promotes"),
                Eviction::DeleteFile { key: k } => {
                    self.cov.deleted += 1;
                    self.forget(k);
                }
            }
        }
    }

    fn plan_and_apply(&mut self) {
        // Writes still queued would land after the plan and add disk bytes it could not see.
        self.drain();
        let hot: Vec<AgentKey> =
            self.keys.iter().filter(|k| self.mem.get(k).is_some_and(|i| i.tier == Tier::Hot)).cloned().collect();
        let in_use: HashSet<AgentKey> = hot.into_iter().filter(|_| self.rng.chance(30)).collect();
        let free = self.rng.below(3);
        // With sizes known, one plan suffices; before the first export, a second fixes estimates.
        let max_rounds = if self.mem.bytes_per_token() == BPT { 1 } else { 2 };
        let mut rounds = 0;
        loop {
            let plan = self.mem.plan_evictions(&in_use, free);
            if plan.is_empty() {
                break;
            }
            rounds += 1;
            assert!(rounds <= max_rounds, "plans converge: {plan:?}");
            for ev in &plan {
                let (Eviction::Demote { key: k, .. } | Eviction::DeleteFile { key: k }) = ev;
                let info = self.mem.get(k).expect("planned agents exist");
                assert!(!info.pinned, "pinned agent in plan: {ev:?}");
                assert!(!in_use.contains(k), "in-use agent in plan: {ev:?}");
            }
            self.apply(&plan);
        }
        self.check_budgets(&in_use, free);
    }

    fn check_budgets(&mut self, in_use: &HashSet<AgentKey>, free: usize) {
        let t = self.mem.totals();
        let stuck = |tier: Tier| {
            self.keys
                .iter()
                .filter_map(|k| self.mem.get(k))
                .filter(|i| i.tier == tier)
                .all(|i| i.pinned || in_use.contains(&i.key))
        };
        let over = t.hot > self.budgets.hot_sequences.saturating_sub(free)
            || t.warm_bytes > self.budgets.warm_bytes
            || t.disk_bytes > self.budgets.disk_bytes;
        self.cov.budget_stuck += usize::from(over);
        assert!(t.hot <= self.budgets.hot_sequences.saturating_sub(free) || stuck(Tier::Hot), "hot {t:?}");
        assert!(t.warm_bytes <= self.budgets.warm_bytes || stuck(Tier::Warm), "warm {t:?}");
        assert!(t.disk_bytes <= self.budgets.disk_bytes || stuck(Tier::Cold), "disk {t:?}");
    }

    fn restart(&mut self) {
        self.cov.restarts += 1;
        self.drain(); // the writer finishes its queue on drop
        let report: Vec<(SnapshotHeader, u64)> = self.disk.values().cloned().collect();
        self.mem = AgentMemory::new(self.budgets);
        self.mem.load_index(report);
        for (k, (h, _)) in &self.disk {
            assert_eq!(self.mem.tokens(k), Some(h.tokens.as_slice()));
        }
    }

    fn step(&mut self) {
        self.now += 1 + self.rng.below(5) as u64;
        match self.rng.below(100) {
            0..=29 => {
                let k = self.pick_key();
                let base = match self.mem.tokens(&k) {
                    Some(t) if self.rng.chance(70) => t[..self.rng.below(t.len() + 1)].to_vec(),
                    _ if self.rng.chance(50) => vec![7, 7, 7], // a shared "system prompt"
                    _ => vec![],
                };
                let tokens = self.random_tokens(&base);
                let seq = match self.mem.get(&k).and_then(|i| i.seq) {
                    Some(s) => s,
                    None => {
                        self.next_seq += 1;
                        self.next_seq
                    }
                };
                self.mem.set_hot(k, seq, tokens, self.now);
            }
            30..=39 => {
                if let Some(k) = self.pick_where(|i| i.tier == Tier::Hot) {
                    let bytes = self.export(&k);
                    self.mem.set_warm(&k, bytes, self.now);
                }
            }
            40..=49 => {
                let dirty = self.mem.dirty();
                if !dirty.is_empty() {
                    let k = dirty[self.rng.below(dirty.len())].clone();
                    self.submit_write(&k);
                }
            }
            50..=59 => self.complete_one(true),
            60..=64 => {
                if let Some(k) = self.pick_where(|i| i.tier != Tier::Cold) {
                    let dirty = self.mem.get(&k).is_some_and(|i| i.dirty);
                    assert_eq!(self.mem.set_cold(&k), !dirty);
                }
            }
            65..=74 => self.plan_and_apply(),
            75..=79 => {
                let k = self.pick_key();
                let pinned = self.rng.chance(50);
                self.mem.pin(&k, pinned);
            }
            80..=84 => {
                let k = self.pick_key();
                self.mem.touch(&k, self.now);
            }
            85..=88 => {
                if let Some(k) = self.pick_where(|_| true) {
                    self.forget(&k);
                }
            }
            89..=90 => self.restart(),
            _ => self.check_lookup(),
        }
        self.check_invariants();
    }

    fn check_lookup(&mut self) {
        let ns = Namespace::parse(NAMESPACES[self.rng.below(3)]).unwrap();
        let agent = self.rng.chance(60).then(|| self.pick_key().agent);
        let base = if self.rng.chance(50) { vec![7, 7, 7] } else { vec![] };
        let prompt = self.random_tokens(&base);
        let l = self.mem.lookup(&ns, agent.as_ref(), &prompt);
        let mut floor = 0;
        if let Some((k, tier, m)) = &l.own {
            assert_eq!((&k.namespace, Some(&k.agent)), (&ns, agent.as_ref()));
            assert_eq!(Some(*tier), self.mem.get(k).map(|i| i.tier));
            assert_eq!(*m, common_prefix(self.mem.tokens(k).unwrap(), &prompt));
            floor = *m;
        } else if let Some(a) = &agent {
            assert!(self.mem.get(&crate::AgentKey::new(ns.clone(), a.clone())).is_none());
        }
        let best_hot = self
            .mem
            .list(&ns)
            .into_iter()
            .filter(|i| i.tier == Tier::Hot && Some(&i.key.agent) != agent.as_ref())
            .map(|i| common_prefix(self.mem.tokens(&i.key).unwrap(), &prompt))
            .max()
            .unwrap_or(0);
        match &l.shared {
            Some((k, seq, m)) => {
                self.cov.shared_hits += 1;
                assert_eq!(k.namespace, ns, "lookup crossed namespaces");
                let info = self.mem.get(k).unwrap();
                assert_eq!((info.tier, info.seq), (Tier::Hot, Some(*seq)));
                assert_eq!(*m, common_prefix(self.mem.tokens(k).unwrap(), &prompt));
                assert!(*m > floor && *m == best_hot);
            }
            None => assert!(best_hot <= floor),
        }
    }

    fn check_invariants(&self) {
        assert_eq!(self.mem.totals(), self.mem.recount());
        let mut listed = 0;
        for n in NAMESPACES {
            let ns = Namespace::parse(n).unwrap();
            let list = self.mem.list(&ns);
            assert!(list.iter().all(|i| i.key.namespace == ns), "list leaked across namespaces");
            listed += list.len();
            for i in list {
                assert_eq!(i.tier == Tier::Hot, i.seq.is_some());
                assert_eq!(i.tier == Tier::Warm, self.mem.warm_bytes(&i.key).is_some());
                assert!(i.dirty || i.file_bytes.is_some(), "a clean agent has a file");
                assert!(i.tier != Tier::Cold || !i.dirty, "cold agents are clean");
            }
        }
        assert_eq!(listed, self.mem.len());
        let t = self.mem.totals();
        assert_eq!(self.mem.dirty().len(), t.dirty - t.writing);
        let writing = self.keys.iter().filter(|k| self.mem.get(k).is_some_and(|i| i.writing)).count();
        assert_eq!(writing, t.writing);
        // The property reuse depends on: a clean agent's file holds exactly its recorded tokens.
        for k in &self.keys {
            if let Some(i) = self.mem.get(k).filter(|i| !i.dirty) {
                let file = self.disk.get(k).map(|(h, _)| h.tokens.as_slice());
                assert_eq!(file, self.mem.tokens(k), "{i:?}");
            }
        }
        if self.queue.is_empty() {
            let with_files: Vec<(&AgentKey, u64)> =
                self.keys.iter().filter_map(|k| Some((k, self.mem.get(k)?.file_bytes?))).collect();
            let on_disk: Vec<(&AgentKey, u64)> = self.disk.iter().map(|(k, (_, b))| (k, *b)).collect();
            assert_eq!(with_files, on_disk, "file accounting matches the disk");
            assert_eq!(self.mem.totals().disk_bytes, on_disk.iter().map(|(_, b)| b).sum::<u64>());
        }
    }
}

#[test]
fn random_operations_keep_every_invariant() {
    let budget_sets = [
        Budgets { warm_bytes: 0, disk_bytes: 0, hot_sequences: 0 },
        Budgets { warm_bytes: 600, disk_bytes: 2_000, hot_sequences: 2 },
        Budgets { warm_bytes: 3_000, disk_bytes: 6_000, hot_sequences: 4 },
        Budgets { warm_bytes: u64::MAX, disk_bytes: 1_500, hot_sequences: 1 },
        Budgets { warm_bytes: 200, disk_bytes: u64::MAX, hot_sequences: 8 },
    ];
    let mut ops = 0;
    let mut total = Coverage::default();
    for (i, budgets) in budget_sets.into_iter().enumerate() {
        for seed in 1..=4u64 {
            let mut sim = Sim::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (i as u64 + 1), budgets);
            for _ in 0..3_000 {
                sim.step();
                ops += 1;
            }
            sim.plan_and_apply();
            sim.restart();
            sim.check_invariants();
            let c = &sim.cov;
            total.to_warm += c.to_warm;
            total.to_cold += c.to_cold;
            total.deleted += c.deleted;
            total.restarts += c.restarts;
            total.failed_writes += c.failed_writes;
            total.shared_hits += c.shared_hits;
            total.budget_stuck += c.budget_stuck;
        }
    }
    eprintln!("property test: {ops} random operations checked; {total:?}");
    let Coverage { to_warm, to_cold, deleted, restarts, failed_writes, shared_hits, budget_stuck } = total;
    let counts = [to_warm, to_cold, deleted, restarts, failed_writes, shared_hits, budget_stuck];
    assert!(counts.iter().all(|&n| n > 20), "{total:?}");
}
