//! `WriteBackoff`: when a failed agent write may be tried again. Owns the per-agent retry times
//! (1 s after the first failure, doubling to 30 s); does not write anything or decide what to
//! write (`agents.rs` does). Without it a full disk made the step loop retry the same multi-MB
//! write on every idle step, flooding the log and burning a core.

use std::collections::HashMap;

use semantic_memory::AgentKey;

/// The first wait after a failure, milliseconds.
const FIRST_MS: u64 = 1_000;
/// The longest wait, milliseconds: space freed later is used within this long.
const MAX_MS: u64 = 30_000;

/// Per-agent retry times after failed writes. Time is unix milliseconds, given by the caller.
#[derive(Debug, Default)]
pub(crate) struct WriteBackoff {
    /// Agent → (earliest retry, consecutive failures).
    waits: HashMap<AgentKey, (u64, u32)>,
}

impl WriteBackoff {
    /// Records a failed write of `key` at `now_ms`.
    pub fn failed(&mut self, key: &AgentKey, now_ms: u64) {
        let entry = self.waits.entry(key.clone()).or_insert((0, 0));
        entry.1 = entry.1.saturating_add(1);
        let wait = FIRST_MS.saturating_mul(1 << (entry.1 - 1).min(16)).min(MAX_MS);
        entry.0 = now_ms.saturating_add(wait);
    }

    /// Records a successful write (or that the agent is gone): no more waiting.
    pub fn cleared(&mut self, key: &AgentKey) {
        self.waits.remove(key);
    }

    /// How long until `key` may be written again (0 when it may be now).
    pub fn wait_ms(&self, key: &AgentKey, now_ms: u64) -> u64 {
        self.waits.get(key).map_or(0, |&(at, _)| at.saturating_sub(now_ms))
    }

    /// Lets every agent be tried at once (shutdown's flush makes one last attempt each).
    pub fn reset(&mut self) {
        for entry in self.waits.values_mut() {
            entry.0 = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use semantic_memory::{AgentId, Namespace};

    fn key(agent: &str) -> AgentKey {
        AgentKey { namespace: Namespace::parse("ns").unwrap(), agent: AgentId::parse(agent).unwrap() }
    }

    #[test]
    fn waits_double_from_one_second_to_thirty_and_clear_on_success() {
        let mut b = WriteBackoff::default();
        let a = key("a");
        assert_eq!(b.wait_ms(&a, 0), 0);
        let mut waits = Vec::new();
        for _ in 0..7 {
            b.failed(&a, 100);
            waits.push(b.wait_ms(&a, 100));
        }
        assert_eq!(waits, vec![1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
        assert_eq!(b.wait_ms(&a, 30_100), 0, "due once the wait has passed");
        assert_eq!(b.wait_ms(&key("b"), 100), 0, "other agents are not held back");
        b.reset();
        assert_eq!(b.wait_ms(&a, 100), 0, "reset lets a final flush try");
        b.failed(&a, 100);
        assert_eq!(b.wait_ms(&a, 100), 30_000, "reset keeps the failure count");
        b.cleared(&a);
        b.failed(&a, 100);
        assert_eq!(b.wait_ms(&a, 100), 1_000, "a success starts over");
    }
}
