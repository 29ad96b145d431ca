//! `AgentMemory`: the metadata of every known agent (tier, tokens, sizes, recency, pin, dirtiness,
//! content generation, writes in flight), running totals, and prefix lookup. Owns the bookkeeping
//! and its invariants; does no I/O and no engine work (the step thread does both and reports
//! transitions here). Eviction planning lives in `evict.rs`.
//!
//! Invariants, per entry: `Hot` ⇔ it holds an engine sequence (and no RAM bytes); `Warm` ⇔ it holds
//! RAM bytes (and no sequence); `Cold` ⇒ it has a file and is clean; clean ⇒ it has a file.
//! `totals()` always equals a recount of the entries (kept incrementally by `AgentMemory::update`).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use crate::format::{Compat, SnapshotHeader};
use crate::{common_prefix, AgentId, AgentKey, Namespace};

/// Where an agent's KV lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// In an engine sequence, ready to extend.
    Hot,
    /// As exported state bytes in RAM.
    Warm,
    /// Only in its snapshot file.
    Cold,
}

impl Tier {
    /// Lower-case name, for metric labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Hot => "hot",
            Tier::Warm => "warm",
            Tier::Cold => "cold",
        }
    }
}

/// One agent's metadata, as [`AgentMemory::get`] and [`AgentMemory::list`] show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInfo {
    /// Which agent.
    pub key: AgentKey,
    /// Where its KV lives.
    pub tier: Tier,
    /// How many tokens its KV covers.
    pub tokens: usize,
    /// Warm: RAM bytes; cold: file bytes; hot: an estimate (tokens × learned bytes per token,
    /// 0 until a first export was seen).
    pub bytes: u64,
    /// Last use, unix millis (the LRU key).
    pub last_used_ms: u64,
    /// Pinned agents are never evicted.
    pub pinned: bool,
    /// Its latest content is not on disk yet (a write may be in flight).
    pub dirty: bool,
    /// A write of its latest content is in flight ([`AgentMemory::mark_writing`]).
    pub writing: bool,
    /// Its engine sequence, when hot.
    pub seq: Option<i32>,
    /// Size of its snapshot file, if one exists (possibly of older content when dirty).
    pub file_bytes: Option<u64>,
    /// When it was created, unix millis.
    pub created_ms: u64,
    /// When its content (tokens) last changed, unix millis.
    pub updated_ms: u64,
}

/// Resource limits the eviction plan keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    /// Most bytes of warm (RAM) snapshots.
    pub warm_bytes: u64,
    /// Most bytes of snapshot files.
    pub disk_bytes: u64,
    /// Most engine sequences hot agents may hold.
    pub hot_sequences: usize,
}

/// Counts and sizes over all entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Agents in the hot tier.
    pub hot: usize,
    /// Agents in the warm tier.
    pub warm: usize,
    /// Agents in the cold tier.
    pub cold: usize,
    /// Bytes held by warm agents.
    pub warm_bytes: u64,
    /// Bytes of snapshot files (of agents in any tier).
    pub disk_bytes: u64,
    /// Agents whose latest content is not on disk (including those being written).
    pub dirty: usize,
    /// Dirty agents with a write of their latest content in flight ([`AgentMemory::mark_writing`]).
    pub writing: usize,
    /// Pinned agents.
    pub pinned: usize,
    /// Tokens held by hot agents.
    pub hot_tokens: u64,
}

impl Totals {
    fn apply(&mut self, e: &Entry, add: bool) {
        let i = &e.info;
        let counts = [
            (&mut self.hot, usize::from(i.tier == Tier::Hot)),
            (&mut self.warm, usize::from(i.tier == Tier::Warm)),
            (&mut self.cold, usize::from(i.tier == Tier::Cold)),
            (&mut self.dirty, usize::from(i.dirty)),
            (&mut self.writing, usize::from(e.is_writing())),
            (&mut self.pinned, usize::from(i.pinned)),
        ];
        for (field, n) in counts {
            *field = if add { *field + n } else { *field - n };
        }
        let sizes = [
            (&mut self.warm_bytes, e.warm_len()),
            (&mut self.disk_bytes, i.file_bytes.unwrap_or(0)),
            (&mut self.hot_tokens, e.hot_tokens()),
        ];
        for (field, n) in sizes {
            *field = if add { *field + n } else { *field - n };
        }
    }
}

/// The best reuse for a prompt (see [`AgentMemory::lookup`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lookup {
    /// The named agent (any tier) and how many leading prompt tokens its KV already covers.
    pub own: Option<(AgentKey, Tier, usize)>,
    /// A hot agent of the same namespace whose sequence covers a longer prompt prefix than `own`:
    /// its key, sequence and match length. The caller copies that prefix instead of prefilling.
    pub shared: Option<(AgentKey, i32, usize)>,
}

/// One entry: the public view plus what only this crate needs. Crate-visible for `evict.rs`;
/// mutate only through [`AgentMemory::update`] so totals and the view stay right.
#[derive(Debug)]
pub(crate) struct Entry {
    /// Tier, sequence, pin, dirtiness, file size, times; `tokens` and `bytes` are derived
    /// ([`Entry::refresh`]).
    pub(crate) info: AgentInfo,
    pub(crate) tokens: Vec<i32>,
    pub(crate) warm: Option<Arc<Vec<u8>>>,
    pub(crate) generation: u64,
    /// Counter value of the last use: orders uses within one millisecond for LRU choices.
    pub(crate) used: u64,
    /// The generation counter when this entry was created; write outcomes from before (for an
    /// earlier entry under the same key) are ignored.
    pub(crate) born: u64,
    /// The generation of a write in flight, if any.
    pub(crate) writing: Option<u64>,
}

impl Entry {
    fn new(key: AgentKey, tier: Tier, tokens: Vec<i32>, now_ms: u64, generation: u64) -> Self {
        let info = AgentInfo {
            key,
            tier,
            tokens: 0,
            bytes: 0,
            last_used_ms: now_ms,
            pinned: false,
            dirty: true,
            writing: false,
            seq: None,
            file_bytes: None,
            created_ms: now_ms,
            updated_ms: now_ms,
        };
        Entry { info, tokens, warm: None, generation, used: generation, born: generation, writing: None }
    }

    pub(crate) fn warm_len(&self) -> u64 {
        self.warm.as_ref().map_or(0, |b| b.len() as u64)
    }

    fn hot_tokens(&self) -> u64 {
        if self.info.tier == Tier::Hot {
            self.tokens.len() as u64
        } else {
            0
        }
    }

    /// Dirty, with a write of the current content in flight.
    fn is_writing(&self) -> bool {
        self.info.dirty && self.writing == Some(self.generation)
    }

    /// Recomputes the derived fields of the view.
    fn refresh(&mut self, bytes_per_token: u64) {
        self.info.tokens = self.tokens.len();
        self.info.writing = self.is_writing();
        self.info.bytes = match self.info.tier {
            Tier::Hot => self.tokens.len() as u64 * bytes_per_token,
            Tier::Warm => self.warm_len(),
            Tier::Cold => self.info.file_bytes.unwrap_or(0),
        };
    }
}

/// Tier bookkeeping for every agent. Owned by the step thread; pure (no I/O, no clock: callers pass
/// `now_ms`).
#[derive(Debug)]
pub struct AgentMemory {
    pub(crate) budgets: Budgets,
    pub(crate) entries: BTreeMap<AgentKey, Entry>,
    pub(crate) totals: Totals,
    next_generation: u64,
    /// The export with the most tokens seen so far, (bytes, tokens): the basis of hot estimates.
    size_sample: (u64, u64),
}

impl AgentMemory {
    /// An empty memory with these budgets.
    pub fn new(budgets: Budgets) -> Self {
        AgentMemory {
            budgets,
            entries: BTreeMap::new(),
            totals: Totals::default(),
            next_generation: 1,
            size_sample: (0, 0),
        }
    }

    /// The budgets in force.
    pub fn budgets(&self) -> Budgets {
        self.budgets
    }

    /// Replaces the budgets; the next [`AgentMemory::plan_evictions`] applies them.
    pub fn set_budgets(&mut self, budgets: Budgets) {
        self.budgets = budgets;
    }

    /// Estimated state bytes per token, learned from the export with the most tokens seen
    /// (rounded up); 0 before any. Used to size hot agents.
    pub fn bytes_per_token(&self) -> u64 {
        let (bytes, tokens) = self.size_sample;
        if tokens == 0 {
            0
        } else {
            bytes.div_ceil(tokens)
        }
    }

    /// Number of known agents.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no agent is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn bump(&mut self) -> u64 {
        let g = self.next_generation;
        self.next_generation += 1;
        g
    }

    /// Runs `f` on an entry, keeping `totals` equal to a recount and the view current: the entry's
    /// contribution is removed before and added back after. The only way entries change in place.
    pub(crate) fn update<R>(&mut self, key: &AgentKey, f: impl FnOnce(&mut Entry) -> R) -> Option<R> {
        let bpt = self.bytes_per_token();
        let e = self.entries.get_mut(key)?;
        self.totals.apply(e, false);
        let r = f(e);
        e.refresh(bpt);
        self.totals.apply(e, true);
        Some(r)
    }

    fn insert(&mut self, mut entry: Entry) {
        entry.refresh(self.bytes_per_token());
        self.totals.apply(&entry, true);
        if let Some(old) = self.entries.insert(entry.info.key.clone(), entry) {
            self.totals.apply(&old, false);
        }
    }

    /// Loads the cold index from a start-up scan (headers only). Keys already known are skipped
    /// (live state wins). Recency starts at each file's `updated_ms`.
    pub fn load_index(&mut self, entries: Vec<(SnapshotHeader, u64)>) {
        for (h, file_bytes) in entries {
            let key = h.key();
            if self.entries.contains_key(&key) {
                continue;
            }
            let generation = self.bump();
            let mut entry = Entry::new(key, Tier::Cold, h.tokens, h.updated_ms, generation);
            entry.info.created_ms = h.created_ms;
            entry.info.pinned = h.pinned;
            entry.info.dirty = false;
            entry.info.file_bytes = Some(file_bytes);
            self.insert(entry);
        }
    }

    /// An agent's metadata.
    pub fn get(&self, key: &AgentKey) -> Option<&AgentInfo> {
        self.entries.get(key).map(|e| &e.info)
    }

    /// The token ids an agent's KV covers (positions `0..len`).
    pub fn tokens(&self, key: &AgentKey) -> Option<&[i32]> {
        self.entries.get(key).map(|e| e.tokens.as_slice())
    }

    /// Every known agent, in key order (namespace, then id).
    pub fn keys(&self) -> Vec<AgentKey> {
        self.entries.keys().cloned().collect()
    }

    pub(crate) fn namespace_entries<'a>(
        &'a self,
        ns: &'a Namespace,
    ) -> impl Iterator<Item = (&'a AgentKey, &'a Entry)> {
        let start = AgentKey::new(ns.clone(), AgentId::range_start());
        self.entries.range(start..).take_while(move |(k, _)| k.namespace == *ns)
    }

    /// Every agent of one namespace, sorted by id.
    pub fn list(&self, namespace: &Namespace) -> Vec<AgentInfo> {
        self.namespace_entries(namespace).map(|(_, e)| e.info.clone()).collect()
    }

    /// Tokens (KV cells) held by hot agents not in `in_use`, pinned ones included.
    pub fn hot_tokens_excluding(&self, in_use: &HashSet<AgentKey>) -> usize {
        self.entries
            .iter()
            .filter(|(k, e)| e.info.tier == Tier::Hot && !in_use.contains(*k))
            .map(|(_, e)| e.info.tokens)
            .sum()
    }

    /// The least recently used hot agent that is neither pinned nor in `in_use`: the one to demote
    /// when a sequence or KV cells are needed now.
    pub fn lru_hot(&self, in_use: &HashSet<AgentKey>) -> Option<AgentKey> {
        self.entries
            .iter()
            .filter(|(k, e)| e.info.tier == Tier::Hot && !e.info.pinned && !in_use.contains(*k))
            .min_by_key(|(k, e)| (e.info.last_used_ms, e.used, *k))
            .map(|(k, _)| k.clone())
    }

    /// The best reuse for `prompt` within `namespace`: the named agent's entry (any tier) with its
    /// common-prefix length, and — when no agent is named, it is unknown, or its match is shorter —
    /// the hot agent of the same namespace with the longest common prefix (ties: most recently
    /// used). `shared` is only given for a match of at least one token and never names the agent
    /// itself. Never crosses namespaces. The caller must still leave at least one prompt token to
    /// decode when a match covers the whole prompt.
    pub fn lookup(&self, namespace: &Namespace, agent: Option<&AgentId>, prompt: &[i32]) -> Lookup {
        let own = agent.and_then(|a| {
            let key = AgentKey::new(namespace.clone(), a.clone());
            let e = self.entries.get(&key)?;
            let matched = common_prefix(&e.tokens, prompt);
            Some((key, e.info.tier, matched))
        });
        let floor = own.as_ref().map_or(0, |o| o.2);
        let shared = self
            .namespace_entries(namespace)
            .filter(|(k, _)| Some(&k.agent) != agent)
            .filter_map(|(k, e)| Some((k, e.info.seq?, common_prefix(&e.tokens, prompt), e.info.last_used_ms)))
            .filter(|&(_, _, matched, _)| matched > floor)
            .max_by_key(|&(_, _, matched, used)| (matched, used))
            .map(|(k, seq, matched, _)| (k.clone(), seq, matched));
        Lookup { own, shared }
    }

    /// Reports that `key` now lives in engine sequence `seq` with KV for `tokens` (creating the
    /// agent if new). When the tokens differ from what was known (or the agent is new) this is a
    /// content change: the generation bumps, the agent is dirty and `updated_ms` is `now_ms`.
    /// Re-importing unchanged content keeps it clean. Drops any warm bytes (the engine has the
    /// state now). The caller guarantees `seq` is not held by another hot agent.
    pub fn set_hot(&mut self, key: AgentKey, seq: i32, tokens: Vec<i32>, now_ms: u64) {
        let generation = self.bump();
        let updated = self.update(&key, |e| {
            e.info.tier = Tier::Hot;
            e.info.seq = Some(seq);
            e.warm = None;
            e.info.last_used_ms = now_ms;
            e.used = generation;
            if e.tokens != tokens {
                e.tokens = tokens.clone();
                e.generation = generation;
                e.info.dirty = true;
                e.info.updated_ms = now_ms;
            }
        });
        if updated.is_none() {
            let mut entry = Entry::new(key, Tier::Hot, tokens, now_ms, generation);
            entry.info.seq = Some(seq);
            self.insert(entry);
        }
    }

    /// Reports that the agent's state is now `bytes` in RAM: hot → warm (its sequence is free;
    /// tokens kept; LRU order unchanged) or cold → warm (read back from disk for use: counts as a
    /// use at `now_ms`; stays clean). Warm → warm replaces the bytes. Returns false for an
    /// unknown agent.
    pub fn set_warm(&mut self, key: &AgentKey, bytes: Arc<Vec<u8>>, now_ms: u64) -> bool {
        let Some(tokens) = self.entries.get(key).map(|e| e.tokens.len() as u64) else { return false };
        if tokens > 0 && tokens >= self.size_sample.1 {
            let before = self.bytes_per_token();
            self.size_sample = (bytes.len() as u64, tokens);
            let bpt = self.bytes_per_token();
            if bpt != before {
                // Hot sizes are estimates from this ratio; totals do not include them.
                self.entries.values_mut().filter(|e| e.info.tier == Tier::Hot).for_each(|e| e.refresh(bpt));
            }
        }
        let used = self.bump();
        self.update(key, |e| {
            if e.info.tier == Tier::Cold {
                e.info.last_used_ms = now_ms;
                e.used = used;
            }
            e.info.tier = Tier::Warm;
            e.info.seq = None;
            e.warm = Some(bytes);
        })
        .is_some()
    }

    /// Takes an agent made elsewhere (an imported file: `header` and its state `bytes`) as a warm,
    /// dirty agent, so the usual persistence writes it under this store; its times and pin come from
    /// the header. Replaces any agent of that key (the caller has freed its sequence).
    pub fn adopt(&mut self, header: &SnapshotHeader, bytes: Arc<Vec<u8>>) -> AgentInfo {
        let generation = self.bump();
        let mut entry = Entry::new(header.key(), Tier::Cold, header.tokens.clone(), header.updated_ms, generation);
        entry.info.created_ms = header.created_ms;
        entry.info.pinned = header.pinned;
        let key = header.key();
        self.insert(entry);
        self.set_warm(&key, bytes, header.updated_ms);
        self.entries[&key].info.clone()
    }

    /// Moves a clean agent (its current content confirmed on disk: loaded by `load_index` or
    /// reported by [`AgentMemory::mark_persisted`]) to the cold tier: warm → cold drops its RAM
    /// bytes, hot → cold frees its sequence. Returns false, changing nothing, for an unknown or
    /// dirty agent — keep a dirty agent warm until its write is confirmed, so a cold agent's
    /// file always holds exactly the tokens recorded here.
    pub fn set_cold(&mut self, key: &AgentKey) -> bool {
        if self.entries.get(key).is_none_or(|e| e.info.dirty) {
            return false;
        }
        self.update(key, |e| {
            e.info.tier = Tier::Cold;
            e.info.seq = None;
            e.warm = None;
        })
        .is_some()
    }

    /// Reports that a write of the agent's `generation` was queued, so [`AgentMemory::dirty`] does
    /// not offer it again until the outcome arrives. Returns false if `generation` is not the
    /// agent's latest dirty content.
    pub fn mark_writing(&mut self, key: &AgentKey, generation: u64) -> bool {
        self.update(key, |e| {
            let current = e.info.dirty && generation == e.generation;
            if current {
                e.writing = Some(generation);
            }
            current
        })
        .unwrap_or(false)
    }

    /// Reports a finished write of the agent's `generation` (a file of `file_bytes`). The file size
    /// is recorded whatever the generation; the agent becomes clean only if `generation` is its
    /// latest. Outcomes for an earlier agent under the same key are ignored. Returns whether the
    /// agent is now clean.
    pub fn mark_persisted(&mut self, key: &AgentKey, generation: u64, file_bytes: u64) -> bool {
        self.update(key, |e| {
            if generation >= e.born {
                e.info.file_bytes = Some(file_bytes);
                if generation == e.generation {
                    e.info.dirty = false;
                }
                if e.writing.is_some_and(|w| w <= generation) {
                    e.writing = None;
                }
            }
            !e.info.dirty
        })
        .unwrap_or(false)
    }

    /// Reports a failed write of the agent's `generation`: the agent stays dirty and
    /// [`AgentMemory::dirty`] offers it again. Its recorded file (if any) is unchanged, since a
    /// failed write leaves the previous file in place.
    pub fn mark_write_failed(&mut self, key: &AgentKey, generation: u64) {
        self.update(key, |e| {
            if e.writing == Some(generation) {
                e.writing = None;
            }
        });
    }

    /// The agent's warm bytes, when warm.
    pub fn warm_bytes(&self, key: &AgentKey) -> Option<Arc<Vec<u8>>> {
        self.entries.get(key).and_then(|e| e.warm.clone())
    }

    /// Marks a use at `now_ms` (LRU). Returns false for an unknown agent.
    pub fn touch(&mut self, key: &AgentKey, now_ms: u64) -> bool {
        let used = self.bump();
        self.update(key, |e| {
            e.info.last_used_ms = now_ms;
            e.used = used;
        })
        .is_some()
    }

    /// Pins or unpins an agent (pinned agents are never evicted). Does not mark it dirty: the flag
    /// reaches its file with the next write. Returns false for an unknown agent.
    pub fn pin(&mut self, key: &AgentKey, pinned: bool) -> bool {
        self.update(key, |e| e.info.pinned = pinned).is_some()
    }

    /// Forgets an agent and returns its last metadata. The caller frees its sequence (if hot) and
    /// removes its file (if any).
    pub fn remove(&mut self, key: &AgentKey) -> Option<AgentInfo> {
        let e = self.entries.remove(key)?;
        self.totals.apply(&e, false);
        Some(e.info)
    }

    /// Counts and sizes, maintained incrementally.
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// Counts and sizes recomputed from every entry (O(n); for checks and tests).
    pub fn recount(&self) -> Totals {
        let mut t = Totals::default();
        self.entries.values().for_each(|e| t.apply(e, true));
        t
    }

    /// Agents whose latest content is not on disk and has no write in flight (what to persist
    /// next, and what a shutdown flush still has to do), in key order.
    pub fn dirty(&self) -> Vec<AgentKey> {
        self.entries.iter().filter(|(_, e)| e.info.dirty && !e.is_writing()).map(|(k, _)| k.clone()).collect()
    }

    /// The agent's content generation (unique across agents, grows with every content change); 0
    /// for an unknown agent. Pass it with a write and back to [`AgentMemory::mark_persisted`].
    pub fn generation(&self, key: &AgentKey) -> u64 {
        self.entries.get(key).map_or(0, |e| e.generation)
    }

    /// The header to write the agent's current content with (payload length and checksum are
    /// filled in by the write).
    pub fn snapshot_header(&self, key: &AgentKey, compat: &Compat, n_ctx: u32) -> Option<SnapshotHeader> {
        let e = self.entries.get(key)?;
        Some(SnapshotHeader {
            namespace: key.namespace.clone(),
            agent: key.agent.clone(),
            fingerprint: compat.fingerprint,
            state_layout: compat.state_layout,
            n_ctx,
            tokens: e.tokens.clone(),
            created_ms: e.info.created_ms,
            updated_ms: e.info.updated_ms,
            pinned: e.info.pinned,
            payload_len: 0,
            header_crc: 0,
            encrypted: false,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn key(ns: &str, agent: &str) -> AgentKey {
        AgentKey::new(Namespace::parse(ns).unwrap(), AgentId::parse(agent).unwrap())
    }

    fn mem() -> AgentMemory {
        AgentMemory::new(Budgets { warm_bytes: 1000, disk_bytes: 10_000, hot_sequences: 2 })
    }

    #[test]
    fn an_adopted_agent_is_warm_dirty_and_keeps_its_times_and_pin() {
        let mut m = mem();
        m.set_hot(key("ns", "a"), 0, vec![9], 1);
        let mut h = crate::format::tests::header("ns", "a", vec![1, 2, 3]);
        (h.pinned, h.created_ms, h.updated_ms) = (true, 5, 7);
        let info = m.adopt(&h, Arc::new(vec![0; 30]));
        let seen = (info.tier, info.dirty, info.pinned, info.tokens, info.created_ms, info.updated_ms, info.seq);
        assert_eq!(seen, (Tier::Warm, true, true, 3, 5, 7, None));
        assert_eq!(m.tokens(&key("ns", "a")), Some(&[1, 2, 3][..]));
        assert_eq!(m.dirty(), vec![key("ns", "a")]);
        assert_eq!(m.totals(), m.recount());
    }

    #[test]
    fn lifecycle_hot_warm_cold_keeps_totals() {
        let mut m = mem();
        let a = key("ns", "a");
        m.set_hot(a.clone(), 3, vec![1, 2, 3, 4], 10);
        let g1 = m.generation(&a);
        assert_eq!(m.get(&a).map(|i| (i.tier, i.seq, i.dirty)), Some((Tier::Hot, Some(3), true)));
        assert!(m.set_warm(&a, Arc::new(vec![0; 400]), 20));
        assert_eq!(m.bytes_per_token(), 100);
        let info = m.get(&a).unwrap();
        assert_eq!((info.tier, info.bytes, info.seq, info.last_used_ms), (Tier::Warm, 400, None, 10));
        assert!(!m.set_cold(&a), "a dirty agent stays warm until its write is confirmed");
        assert!(m.mark_writing(&a, g1));
        assert_eq!((m.dirty(), m.totals().writing), (vec![], 1));
        assert!(m.mark_persisted(&a, g1, 600));
        assert!(m.set_cold(&a));
        assert_eq!(m.totals(), Totals { cold: 1, disk_bytes: 600, ..Totals::default() });
        assert_eq!(m.totals(), m.recount());
        assert_eq!(m.warm_bytes(&a), None);
        assert_eq!(m.tokens(&a), Some(&[1, 2, 3, 4][..]));
        let removed = m.remove(&a).unwrap();
        assert_eq!(removed.file_bytes, Some(600));
        assert_eq!(m.totals(), Totals::default());
    }

    #[test]
    fn unchanged_tokens_keep_an_agent_clean() {
        let mut m = mem();
        let a = key("ns", "a");
        m.set_hot(a.clone(), 0, vec![1, 2], 1);
        let g = m.generation(&a);
        m.mark_persisted(&a, g, 100);
        m.set_hot(a.clone(), 1, vec![1, 2], 2);
        assert_eq!((m.generation(&a), m.get(&a).unwrap().dirty), (g, false));
        m.set_hot(a.clone(), 1, vec![1, 2, 3], 3);
        assert!(m.generation(&a) > g);
        assert_eq!(m.dirty(), vec![a]);
    }

    #[test]
    fn stale_write_outcomes_do_not_clean() {
        let mut m = mem();
        let a = key("ns", "a");
        m.set_hot(a.clone(), 0, vec![1], 1);
        let g1 = m.generation(&a);
        m.set_hot(a.clone(), 0, vec![1, 2], 2);
        assert!(!m.mark_persisted(&a, g1, 50), "an older write leaves the agent dirty");
        assert_eq!(m.get(&a).unwrap().file_bytes, Some(50));
        assert!(m.mark_persisted(&a, m.generation(&a), 60));
        // A write for an earlier agent under the same key must not touch the new one.
        m.remove(&a);
        m.set_hot(a.clone(), 0, vec![9], 3);
        assert!(!m.mark_persisted(&a, g1, 50));
        assert_eq!(m.get(&a).unwrap().file_bytes, None);
        assert_eq!(m.totals(), m.recount());
    }

    #[test]
    fn writes_in_flight_are_not_offered_twice() {
        let mut m = mem();
        let a = key("ns", "a");
        m.set_hot(a.clone(), 0, vec![1], 1);
        let g = m.generation(&a);
        assert!(!m.mark_writing(&a, g + 1), "only the latest generation can be in flight");
        assert!(m.mark_writing(&a, g));
        assert!(m.get(&a).unwrap().writing && m.dirty().is_empty());
        m.mark_write_failed(&a, g);
        assert_eq!((m.get(&a).unwrap().writing, m.dirty()), (false, vec![a.clone()]));
        // New content while a write is in flight: the agent needs another write.
        m.mark_writing(&a, g);
        m.set_hot(a.clone(), 0, vec![1, 2], 2);
        assert_eq!((m.get(&a).unwrap().writing, m.dirty()), (false, vec![a.clone()]));
        assert!(!m.mark_persisted(&a, g, 10));
        assert_eq!(m.totals(), m.recount());
    }

    #[test]
    fn lru_hot_skips_pinned_and_in_use() {
        let mut m = mem();
        for (i, a) in ["a", "b", "c"].iter().enumerate() {
            m.set_hot(key("ns", a), i as i32, vec![1], 10 - i as u64);
        }
        assert_eq!(m.lru_hot(&HashSet::new()), Some(key("ns", "c")));
        m.pin(&key("ns", "c"), true);
        assert_eq!(m.lru_hot(&HashSet::from([key("ns", "b")])), Some(key("ns", "a")));
        assert_eq!(m.keys(), vec![key("ns", "a"), key("ns", "b"), key("ns", "c")]);
    }

    #[test]
    fn lookup_prefers_own_then_longest_hot_in_namespace() {
        let mut m = mem();
        let sys = vec![1, 2, 3, 4, 5, 6];
        m.set_hot(key("ns", "a"), 0, vec![1, 2, 9], 1);
        m.set_hot(key("ns", "b"), 1, sys.clone(), 2);
        m.set_hot(key("other", "c"), 2, [sys.clone(), vec![7]].concat(), 3);
        let prompt = [sys.clone(), vec![7, 8]].concat();
        let ns = Namespace::parse("ns").unwrap();
        let a = AgentId::parse("a").unwrap();

        let l = m.lookup(&ns, Some(&a), &prompt);
        assert_eq!(l.own, Some((key("ns", "a"), Tier::Hot, 2)));
        assert_eq!(l.shared, Some((key("ns", "b"), 1, 6)), "never the other namespace's 7-token match");

        let l = m.lookup(&ns, None, &prompt);
        assert_eq!((l.own, l.shared), (None, Some((key("ns", "b"), 1, 6))));

        let new = AgentId::parse("new").unwrap();
        assert_eq!(m.lookup(&ns, Some(&new), &prompt).shared.map(|s| s.2), Some(6));

        // The agent's own longer match suppresses sharing; cold agents are never shared.
        let b = AgentId::parse("b").unwrap();
        assert_eq!(
            m.lookup(&ns, Some(&b), &prompt),
            Lookup { own: Some((key("ns", "b"), Tier::Hot, 6)), shared: None }
        );
        m.set_warm(&key("ns", "b"), Arc::new(vec![0; 10]), 4);
        assert_eq!(m.lookup(&ns, None, &prompt).shared, Some((key("ns", "a"), 0, 2)));
        assert_eq!(m.lookup(&ns, None, &[42]).shared, None);
    }

    #[test]
    fn list_and_index_stay_in_their_namespace() {
        let mut m = mem();
        let h = |ns: &str, a: &str| crate::format::tests::header(ns, a, vec![1, 2]);
        m.load_index(vec![(h("n1", "a"), 100), (h("n2", "a"), 200), (h("n1", "b"), 300)]);
        m.set_hot(key("n1", "a"), 0, vec![1, 2, 3], 5);
        m.load_index(vec![(h("n1", "a"), 999)]);
        let n1 = Namespace::parse("n1").unwrap();
        let names: Vec<_> = m.list(&n1).into_iter().map(|i| (i.key.agent.as_str().to_owned(), i.tier)).collect();
        assert_eq!(names, vec![("a".to_owned(), Tier::Hot), ("b".to_owned(), Tier::Cold)]);
        assert_eq!(m.list(&Namespace::default_ns()), vec![]);
        assert_eq!(
            m.totals(),
            Totals { hot: 1, cold: 2, disk_bytes: 600, dirty: 1, hot_tokens: 3, ..Totals::default() }
        );
        assert_eq!(m.totals(), m.recount());
    }

    #[test]
    fn snapshot_header_carries_the_agent() {
        let mut m = mem();
        let a = key("ns", "a");
        m.set_hot(a.clone(), 0, vec![4, 5], 77);
        m.pin(&a, true);
        let compat = Compat { fingerprint: [3; 32], state_layout: 8 };
        let h = m.snapshot_header(&a, &compat, 2048).unwrap();
        assert_eq!((h.key(), h.tokens, h.pinned, h.created_ms, h.state_layout), (a, vec![4, 5], true, 77, 8));
        assert!(!m.touch(&key("ns", "zz"), 1) && !m.pin(&key("ns", "zz"), true));
        assert_eq!(m.generation(&key("ns", "zz")), 0);
    }
}
