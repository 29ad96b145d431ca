//! Agent memory: which agent's KV cache lives where (hot in an engine sequence, warm as bytes in
//! RAM, cold in a snapshot file), the budgets and LRU policy that move it, prefix lookup for reuse,
//! the versioned and checksummed snapshot file format, a crash-safe disk store and a background
//! writer.
//!
//! Owns: identities (`agent.rs`), tier accounting (`memory.rs`), eviction planning (`evict.rs`),
//! the file format (`format.rs`), encryption at rest (`key.rs`, `sealed.rs`), one process per cache directory (`lock.rs`), the crash-safe file replacement (`atomic.rs`), the read buffer (`buffer.rs`), files (`disk.rs`) and off-thread persistence (`writer.rs`).
//! Does not own: the engine (the scheduler's step thread exports, imports and truncates sequences
//! itself and reports transitions to [`AgentMemory`]), HTTP, or the clock (callers pass
//! `now_ms`). Pure Rust; knows nothing about llama.cpp — snapshot payloads are opaque bytes.
#![warn(missing_docs)]

mod agent;
mod atomic;
mod buffer;
mod disk;
mod error;
mod evict;
mod format;
mod key;
mod lock;
mod memory;
mod sealed;
mod writer;

#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod testutil;

pub use agent::{common_prefix, AgentId, AgentKey, Namespace, MAX_NAME_LEN};
pub use atomic::{sync_dir, write_atomic};
pub use buffer::PageBuf;
pub use disk::{adopt_legacy, model_root, DiskStore, ScanReport, SNAPSHOT_EXT};
pub use error::MemoryError;
pub use evict::Eviction;
pub use format::{
    decode, encode, encoded_len, read_header, read_snapshot, Compat, SnapshotHeader, MAGIC, MAX_TOKENS,
    PLAINTEXT_VERSION, VERSION,
};
pub use key::{key_file_is_shared, MasterKey, KEY_LEN};
pub use lock::{CacheLock, LOCK_FILE};
pub use memory::{AgentInfo, AgentMemory, Budgets, Lookup, Tier, Totals};
pub use sealed::{encode_sealed, seal_overhead};
pub use writer::{FailureReason, JobKind, WriteFailure, WriteJob, WriteOutcome, Writer, WriterBusy};
