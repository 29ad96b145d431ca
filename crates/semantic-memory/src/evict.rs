//! Eviction planning: which agents must move between tiers (or lose their file) to keep
//! [`Budgets`](crate::Budgets), least recently used first. Owns the policy; does not perform moves
//! (the step thread does the engine and disk work, then reports back to `AgentMemory`).

use std::collections::{BTreeSet, HashSet};

use crate::format::encoded_len_parts;
use crate::memory::Entry;
use crate::{AgentKey, AgentMemory, Tier};

/// One move the caller should make.
///
/// How to carry it out:
/// - `Demote { to: Warm }` (a hot agent): export its sequence, free it, call `set_warm`.
/// - `Demote { to: Cold }` (hot or warm): if it is clean, free its sequence if hot (no export
///   needed: the file has the content) and call `set_cold`. If dirty, export to warm if hot
///   (`set_warm`), queue a write of the warm bytes (`mark_writing`), and once the outcome is in,
///   `mark_persisted` then `set_cold`. Until then it counts as warm and plans repeat it: skip
///   agents whose `AgentInfo::writing` is set.
/// - `DeleteFile`: forget the agent. Usually a cold one (its file is all there is); an agent still
///   hot or warm gets this instead of a demotion when the disk has no room for it either. Free
///   its sequence if hot, call `remove`, and delete its file if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Eviction {
    /// Move an agent down to tier `to`.
    Demote {
        /// The agent.
        key: AgentKey,
        /// `Warm` or `Cold`.
        to: Tier,
    },
    /// Forget the agent: delete its file and drop any hot or warm state.
    DeleteFile {
        /// The agent.
        key: AgentKey,
    },
}

impl AgentMemory {
    /// What must move to stay within budgets, least recently used first, never touching pinned
    /// agents or keys in `in_use` (agents generating now). In order:
    /// 1. hot → down while more than `hot_sequences - free_seqs_needed` agents are hot;
    /// 2. warm → cold while warm bytes (including those step 1 adds, at the estimated size) exceed
    ///    the warm budget; a hot agent picked here goes straight to `Demote { to: Cold }`;
    /// 3. forget agents (`DeleteFile`), least recently used first among the cold ones and those
    ///    step 2 sends to cold, while disk bytes (including the files step 2 would write) exceed
    ///    the disk budget.
    ///
    /// The plan is a pure function of the state: applying it and planning again converges (sizes
    /// of hot agents are estimates; an unknown size counts as 1 byte so a zero warm budget sends
    /// hot agents straight to cold). Budgets held only by pinned or in-use agents stay exceeded.
    pub fn plan_evictions(&self, in_use: &HashSet<AgentKey>, free_seqs_needed: usize) -> Vec<Eviction> {
        let movable = |k: &AgentKey, e: &Entry| !e.info.pinned && !in_use.contains(k);
        let lru = |tier: Tier| {
            let mut v: Vec<(&AgentKey, &Entry)> =
                self.entries.iter().filter(|(k, e)| e.info.tier == tier && movable(k, e)).collect();
            v.sort_by_key(|(k, e)| (e.info.last_used_ms, *k));
            v
        };

        // 1. Hot agents over the sequence limit.
        let hot_limit = self.budgets.hot_sequences.saturating_sub(free_seqs_needed);
        let excess = self.totals.hot.saturating_sub(hot_limit);
        let demoted: Vec<(&AgentKey, &Entry)> = lru(Tier::Hot).into_iter().take(excess).collect();

        // 2. Warm bytes over budget, counting the demoted agents at their estimated size.
        let bpt = self.bytes_per_token();
        let est = |e: &Entry| (e.tokens.len() as u64 * bpt).max(1);
        let mut warm_total = self.totals.warm_bytes + demoted.iter().map(|(_, e)| est(e)).sum::<u64>();
        let mut warm_candidates: Vec<(&AgentKey, &Entry, u64)> =
            lru(Tier::Warm).into_iter().map(|(k, e)| (k, e, e.warm_len())).collect();
        warm_candidates.extend(demoted.iter().map(|&(k, e)| (k, e, est(e))));
        warm_candidates.sort_by_key(|(k, e, _)| (e.info.last_used_ms, *k));
        let mut to_cold: Vec<(&AgentKey, &Entry, u64)> = Vec::new();
        let mut disk_total = self.totals.disk_bytes;
        for (k, e, bytes) in warm_candidates {
            if warm_total <= self.budgets.warm_bytes {
                break;
            }
            warm_total -= bytes;
            // What its file will weigh: the existing one if clean, else a rewrite of the content.
            let file = match e.info.file_bytes {
                Some(f) if !e.info.dirty => f,
                old => {
                    let new_len =
                        encoded_len_parts(k.namespace.as_str().len(), k.agent.as_str().len(), e.tokens.len(), bytes);
                    disk_total = disk_total - old.unwrap_or(0) + new_len;
                    new_len
                }
            };
            to_cold.push((k, e, file));
        }

        // 3. Disk bytes over budget: forget the least recently used of the cold agents and those
        //    on their way to cold (which then need no write at all).
        let mut disk_candidates: Vec<(&AgentKey, &Entry, u64)> =
            lru(Tier::Cold).into_iter().map(|(k, e)| (k, e, e.info.file_bytes.unwrap_or(0))).collect();
        disk_candidates.extend(to_cold.iter().copied());
        disk_candidates.sort_by_key(|(k, e, _)| (e.info.last_used_ms, *k));
        let mut forget: Vec<&AgentKey> = Vec::new();
        for (k, _, file) in disk_candidates {
            if disk_total <= self.budgets.disk_bytes {
                break;
            }
            disk_total -= file;
            forget.push(k);
        }

        // Emit, each group least recently used first: hot demotions, warm → cold, forgets.
        let going_cold: BTreeSet<&AgentKey> = to_cold.iter().map(|(k, _, _)| *k).collect();
        let forgotten: BTreeSet<&AgentKey> = forget.iter().copied().collect();
        let mut plan = Vec::new();
        let mut emitted: BTreeSet<&AgentKey> = BTreeSet::new();
        let demotions = demoted.iter().map(|(k, _)| *k).chain(to_cold.iter().map(|(k, _, _)| *k));
        for k in demotions.chain(forget.iter().copied()) {
            if !emitted.insert(k) {
                continue;
            }
            plan.push(if forgotten.contains(k) {
                Eviction::DeleteFile { key: k.clone() }
            } else {
                let to = if going_cold.contains(k) { Tier::Cold } else { Tier::Warm };
                Eviction::Demote { key: k.clone(), to }
            });
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::tests::key;
    use crate::Budgets;
    use std::sync::Arc;

    fn mem(warm_bytes: u64, disk_bytes: u64, hot_sequences: usize) -> AgentMemory {
        AgentMemory::new(Budgets { warm_bytes, disk_bytes, hot_sequences })
    }

    fn demote(a: &str, to: Tier) -> Eviction {
        Eviction::Demote { key: key("ns", a), to }
    }

    #[test]
    fn hot_over_limit_demotes_lru_first_sparing_pinned_and_in_use() {
        let mut m = mem(u64::MAX, u64::MAX, 3);
        for (i, a) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            m.set_hot(key("ns", a), i as i32, vec![1; 10], i as u64);
        }
        assert_eq!(m.plan_evictions(&HashSet::new(), 0), vec![demote("a", Tier::Warm), demote("b", Tier::Warm)]);
        m.pin(&key("ns", "a"), true);
        let in_use = HashSet::from([key("ns", "b")]);
        assert_eq!(m.plan_evictions(&in_use, 0), vec![demote("c", Tier::Warm), demote("d", Tier::Warm)]);
        // Needing a free sequence demotes one more; pinned and in-use agents still count as hot.
        assert_eq!(
            m.plan_evictions(&in_use, 1),
            vec![demote("c", Tier::Warm), demote("d", Tier::Warm), demote("e", Tier::Warm)]
        );
        assert_eq!(m.plan_evictions(&in_use, 9).len(), 3);
    }

    #[test]
    fn warm_over_budget_goes_cold_and_hot_can_skip_warm() {
        let mut m = mem(250, u64::MAX, 1);
        for (i, a) in ["a", "b", "c"].iter().enumerate() {
            m.set_hot(key("ns", a), i as i32, vec![1; 10], i as u64 * 10);
            m.set_warm(&key("ns", a), Arc::new(vec![0; 100]), 0);
        }
        assert_eq!(m.plan_evictions(&HashSet::new(), 0), vec![demote("a", Tier::Cold)]);
        m.set_budgets(Budgets { warm_bytes: 300, ..m.budgets() });
        assert_eq!(m.plan_evictions(&HashSet::new(), 0), vec![], "exactly at budget is within it");
        m.set_budgets(Budgets { warm_bytes: 250, ..m.budgets() });
        // A hot agent older than every warm one is demoted straight to cold.
        m.set_hot(key("ns", "h"), 9, vec![1; 10], 5);
        m.set_hot(key("ns", "i"), 8, vec![1; 10], 50);
        assert_eq!(m.plan_evictions(&HashSet::new(), 0), vec![demote("h", Tier::Cold), demote("a", Tier::Cold)]);
    }

    #[test]
    fn zero_warm_budget_sends_hot_straight_to_cold_even_before_sizes_are_known() {
        let mut m = mem(0, u64::MAX, 0);
        m.set_hot(key("ns", "a"), 0, vec![1; 10], 1);
        assert_eq!(m.plan_evictions(&HashSet::new(), 0), vec![demote("a", Tier::Cold)]);
    }

    #[test]
    fn no_room_anywhere_forgets_instead_of_writing() {
        let mut m = mem(0, 0, 0);
        m.set_hot(key("ns", "a"), 0, vec![1; 10], 1);
        assert_eq!(m.plan_evictions(&HashSet::new(), 0), vec![Eviction::DeleteFile { key: key("ns", "a") }]);
        m.pin(&key("ns", "a"), true);
        assert_eq!(m.plan_evictions(&HashSet::new(), 0), vec![]);
    }

    #[test]
    fn disk_over_budget_deletes_oldest_cold_and_counts_new_files() {
        let mut m = mem(0, 1000, 8);
        for (i, a) in ["a", "b", "c"].iter().enumerate() {
            m.set_hot(key("ns", a), i as i32, vec![1; 10], i as u64);
            let g = m.generation(&key("ns", a));
            m.mark_persisted(&key("ns", a), g, 400);
            assert!(m.set_cold(&key("ns", a)));
        }
        m.pin(&key("ns", "a"), true);
        assert_eq!(m.plan_evictions(&HashSet::new(), 0), vec![Eviction::DeleteFile { key: key("ns", "b") }]);
        // A dirty warm agent going cold adds its file: more must go.
        m.set_hot(key("ns", "w"), 5, vec![1; 10], 10);
        m.set_warm(&key("ns", "w"), Arc::new(vec![0; 100]), 10);
        let plan = m.plan_evictions(&HashSet::new(), 0);
        assert_eq!(
            plan,
            vec![
                demote("w", Tier::Cold),
                Eviction::DeleteFile { key: key("ns", "b") },
                Eviction::DeleteFile { key: key("ns", "c") }
            ]
        );
    }
}
