//! The snapshot file format (version 3 encrypted, version 2 plaintext; version 1 is still read):
//! encoding, header-only reads and verified full reads.
//! Owns the byte layout, its limits and the compatibility check; does not know where files live
//! (`disk.rs`) or what the payload means (the engine's opaque sequence state).
//!
//! Frame, the same for every version (only the header's inner encoding may change):
//!
//! ```text
//! MAGIC (8) | version u16 | header_len u32 | header (header_len bytes) | payload | crc32 u32
//! ```
//!
//! All integers are little-endian. The header's last 4 bytes are `header_crc`, a CRC-32 over
//! everything before it (magic, version, header_len and the header fields), so a header-only read
//! verifies the version field too. The trailing CRC-32 covers everything before it.
//!
//! Header fields of version 2, in order: namespace (u8 length + bytes), agent (u8 length + bytes),
//! fingerprint (32), state_layout u16 (the engine's `ContextInfo::state_layout`: KV type code,
//! 0x80 = V transposed, 0x100 = one KV stream per sequence), n_ctx u32, created_ms u64,
//! updated_ms u64, pinned u8 (0 or 1), payload_len u64, token count u32 + tokens (i32 each),
//! header_crc u32. Version 1 has the same fields with a u8 state layout (a unified KV cache's:
//! no 0x100 bit), so its files read, never match a per-sequence engine, and are missed cleanly.
//!
//! Version 3 (written when a master key is configured, see `sealed.rs`) has the fields of version 2
//! up to the token count, then token_nonce (24), payload_nonce (24), the token ids sealed with
//! XChaCha20-Poly1305 (4 bytes each + a 16-byte tag), header_crc. Its payload is the sealed KV
//! state in 4 MiB chunks followed by one 16-byte tag per chunk (`payload_len` counts the tags). Names, fingerprint, layout,
//! sizes, times and the pin flag stay readable (and authenticated) so files can be listed without
//! the key; token ids and KV are not.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::key::MasterKey;
use crate::sealed::{open_in_place, open_payload_in_place, Nonces, NONCE_LEN, TAG_LEN};
use crate::{AgentId, AgentKey, MemoryError, Namespace, PageBuf};

/// First 8 bytes of every snapshot file.
pub const MAGIC: [u8; 8] = *b"SEMKV\r\n\x1a";
/// The newest format version: what this build writes when a master key is configured (encrypted).
pub const VERSION: u16 = 3;
/// The version this build writes without a key (plaintext); versions 1 to 3 are read.
pub const PLAINTEXT_VERSION: u16 = 2;
/// Most tokens a snapshot may describe (16 Mi, far beyond any context length).
pub const MAX_TOKENS: usize = 1 << 24;

/// magic + version + header_len.
pub(crate) const PREFIX_LEN: usize = 8 + 2 + 4;
/// The trailing CRC-32.
const TRAILER_LEN: u64 = 4;
/// Fixed-size header fields of version 2: 2 name lengths, fingerprint, state_layout, n_ctx,
/// created, updated, pinned, payload_len, token count, header_crc.
const FIXED_HEADER_LEN: usize = 2 + 32 + 2 + 4 + 8 + 8 + 1 + 8 + 4 + 4;
/// Largest header a valid file can have; larger declared lengths are rejected before allocating.
const MAX_HEADER_LEN: usize =
    FIXED_HEADER_LEN + 2 * NONCE_LEN + TAG_LEN + 2 * crate::agent::MAX_NAME_LEN + 4 * MAX_TOKENS;

/// Everything a snapshot file says about its payload. Read without touching the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// The namespace of the agent.
    pub namespace: Namespace,
    /// The agent.
    pub agent: AgentId,
    /// SHA-256 of the model GGUF that produced the state.
    pub fingerprint: [u8; 32],
    /// The engine's state layout (`ContextInfo::state_layout`: the KV type's code, 0x80 when the
    /// V cache is stored transposed, 0x100 with one KV stream per sequence).
    pub state_layout: u16,
    /// Context size the state was made with (informational).
    pub n_ctx: u32,
    /// The token ids whose KV the payload holds (positions `0..tokens.len()`).
    pub tokens: Vec<i32>,
    /// When the agent was created, unix millis.
    pub created_ms: u64,
    /// When its content last changed, unix millis.
    pub updated_ms: u64,
    /// Pinned agents are never evicted.
    pub pinned: bool,
    /// Payload length in bytes; set by [`encode`].
    pub payload_len: u64,
    /// CRC-32 of the frame up to this field; set by [`encode`], checked by reads.
    pub header_crc: u32,
    /// The file was encrypted (version 3); set by reads, ignored by writes (the store's key
    /// decides).
    pub encrypted: bool,
}

impl SnapshotHeader {
    /// The agent this snapshot belongs to.
    pub fn key(&self) -> AgentKey {
        AgentKey::new(self.namespace.clone(), self.agent.clone())
    }
}

/// What a snapshot must match to be usable by the loaded model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compat {
    /// SHA-256 of the model GGUF.
    pub fingerprint: [u8; 32],
    /// The engine's state layout (`ContextInfo::state_layout`).
    pub state_layout: u16,
}

impl Compat {
    /// `None` when the header is compatible, else which field differs (a bounded phrase).
    pub fn mismatch(&self, header: &SnapshotHeader) -> Option<&'static str> {
        if header.fingerprint != self.fingerprint {
            Some("model fingerprint differs")
        } else if header.state_layout != self.state_layout {
            Some("state layout (KV type or stream mode) differs")
        } else {
            None
        }
    }
}

/// Exact size of the file [`encode`] makes for `header` and a payload of `payload_len` bytes.
pub fn encoded_len(header: &SnapshotHeader, payload_len: usize) -> u64 {
    let (ns, agent) = (header.namespace.as_str().len(), header.agent.as_str().len());
    encoded_len_parts(ns, agent, header.tokens.len(), payload_len as u64)
}

/// [`encoded_len`] from the name lengths, token count and payload length.
pub(crate) fn encoded_len_parts(namespace_len: usize, agent_len: usize, n_tokens: usize, payload_len: u64) -> u64 {
    (PREFIX_LEN + FIXED_HEADER_LEN + namespace_len + agent_len + 4 * n_tokens) as u64 + payload_len + TRAILER_LEN
}

/// Encodes magic, version, header_len and the header (with `payload_len` and `header_crc` set from
/// the arguments, whatever the struct holds). The payload and trailer are appended by the caller.
pub(crate) fn encode_head(header: &SnapshotHeader, payload_len: u64) -> Result<Vec<u8>, MemoryError> {
    encode_head_with(header, payload_len, None)
}

/// [`encode_head`], as version 3 with the tokens sealed under `seal`'s key and nonces when given.
pub(crate) fn encode_head_with(
    header: &SnapshotHeader,
    payload_len: u64,
    seal: Option<(&crate::key::NamespaceKey, &Nonces)>,
) -> Result<Vec<u8>, MemoryError> {
    if header.tokens.len() > MAX_TOKENS {
        let (len, max) = (header.tokens.len() as u64, MAX_TOKENS as u64);
        return Err(MemoryError::TooLarge { what: "token count", len, max });
    }
    let ns = header.namespace.as_str().as_bytes();
    let agent = header.agent.as_str().as_bytes();
    let seal_len = if seal.is_some() { 2 * NONCE_LEN + TAG_LEN } else { 0 };
    let header_len = FIXED_HEADER_LEN + seal_len + ns.len() + agent.len() + 4 * header.tokens.len();
    let mut out = Vec::with_capacity(PREFIX_LEN + header_len);
    out.extend_from_slice(&MAGIC);
    let version = if seal.is_some() { VERSION } else { PLAINTEXT_VERSION };
    out.extend_from_slice(&version.to_le_bytes());
    // Fits: header_len <= MAX_HEADER_LEN < u32::MAX (names are <= 128 bytes, tokens capped above).
    out.extend_from_slice(&(header_len as u32).to_le_bytes());
    // Names are validated ASCII of at most 128 bytes, so their lengths fit a u8.
    out.push(ns.len() as u8);
    out.extend_from_slice(ns);
    out.push(agent.len() as u8);
    out.extend_from_slice(agent);
    out.extend_from_slice(&header.fingerprint);
    out.extend_from_slice(&header.state_layout.to_le_bytes());
    out.extend_from_slice(&header.n_ctx.to_le_bytes());
    out.extend_from_slice(&header.created_ms.to_le_bytes());
    out.extend_from_slice(&header.updated_ms.to_le_bytes());
    out.push(u8::from(header.pinned));
    out.extend_from_slice(&payload_len.to_le_bytes());
    out.extend_from_slice(&(header.tokens.len() as u32).to_le_bytes());
    if let Some((_, nonces)) = seal {
        out.extend_from_slice(&nonces.tokens);
        out.extend_from_slice(&nonces.payload);
    }
    let aad_end = out.len();
    for t in &header.tokens {
        out.extend_from_slice(&t.to_le_bytes());
    }
    if let Some((key, nonces)) = seal {
        let (aad, tokens) = out.split_at_mut(aad_end);
        let tag = crate::sealed::seal_in_place(key, &nonces.tokens, aad, tokens);
        out.extend_from_slice(&tag);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(out.len(), PREFIX_LEN + header_len);
    Ok(out)
}

/// Encodes a whole snapshot file in memory. `payload_len` and `header_crc` are computed, whatever
/// the struct holds. `DiskStore::write` streams the same bytes without this extra copy.
pub fn encode(header: &SnapshotHeader, payload: &[u8]) -> Result<Vec<u8>, MemoryError> {
    let mut out = encode_head(header, payload.len() as u64)?;
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Reads and verifies only the header: magic, version, `header_crc`, and that the file length is
/// exactly prefix + header + payload_len + 4. An encrypted file's tokens are opened with `key`
/// (no key or the wrong one: [`MemoryError::Sealed`]). Returns the header and the file length.
/// Does not read the payload.
pub fn read_header(path: &Path, key: Option<&MasterKey>) -> Result<(SnapshotHeader, u64), MemoryError> {
    let mut file = File::open(path).map_err(|e| MemoryError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| MemoryError::io(path, e))?.len();
    let (header, _) = read_head(&mut file, file_len, path, key)?;
    Ok((header, file_len))
}

/// Reads a whole snapshot, verifying the header, the compatibility with `expect` (before reading the
/// payload), the trailing CRC-32 over everything and, for an encrypted file, both authentication
/// tags under `key` (the payload is decrypted in place).
pub fn read_snapshot(
    path: &Path,
    expect: &Compat,
    key: Option<&MasterKey>,
) -> Result<(SnapshotHeader, PageBuf), MemoryError> {
    let mut file = File::open(path).map_err(|e| MemoryError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| MemoryError::io(path, e))?.len();
    let (header, head) = read_head(&mut file, file_len, path, key)?;
    if let Some(reason) = expect.mismatch(&header) {
        return Err(MemoryError::Foreign { path: path.to_owned(), reason });
    }
    let n = usize::try_from(header.payload_len).map_err(|_| MemoryError::corrupt(path, "payload too large"))?;
    // n was checked against the real file length in read_head, so this allocation is bounded by
    // the file's size, not by what a hostile header declares.
    let mut payload = PageBuf::zeroed(n).ok_or_else(|| MemoryError::corrupt(path, "payload too large"))?;
    read_exact(&mut file, &mut payload, path)?;
    let mut trailer = [0u8; 4];
    read_exact(&mut file, &mut trailer, path)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&head);
    hasher.update(&payload);
    if hasher.finalize() != u32::from_le_bytes(trailer) {
        return Err(MemoryError::corrupt(path, "checksum mismatch"));
    }
    let mut extra = [0u8; 1];
    if file.read(&mut extra).map_err(|e| MemoryError::io(path, e))? != 0 {
        return Err(MemoryError::corrupt(path, "length mismatch"));
    }
    if header.encrypted {
        open_payload(&header, &head, &mut payload, path, key)?;
    }
    Ok((header, payload))
}

/// Decodes and verifies a whole plaintext snapshot file held in memory (an upload), as
/// [`read_snapshot`] does a file: header, exact length and the trailing CRC-32. Compatibility is
/// the caller's to judge. An encrypted file is refused ([`MemoryError::Sealed`]): export it
/// through the server that holds its key. `name` stands for the file in errors.
pub fn decode(bytes: &[u8], name: &Path) -> Result<(SnapshotHeader, Vec<u8>), MemoryError> {
    let (header, head) = read_head(&mut io::Cursor::new(bytes), bytes.len() as u64, name, None)?;
    // read_head checked that the length is exactly head + payload + trailer.
    let end = usize::try_from(header.payload_len)
        .ok()
        .and_then(|n| head.len().checked_add(n))
        .filter(|&end| end + TRAILER_LEN as usize == bytes.len())
        .ok_or_else(|| MemoryError::corrupt(name, "length mismatch"))?;
    let trailer: [u8; 4] = bytes[end..].try_into().map_err(|_| MemoryError::corrupt(name, "truncated"))?;
    if crc32fast::hash(&bytes[..end]) != u32::from_le_bytes(trailer) {
        return Err(MemoryError::corrupt(name, "checksum mismatch"));
    }
    Ok((header, bytes[head.len()..end].to_vec()))
}

/// Decrypts a version-3 payload in place (its tag is its last 16 bytes, dropped on success).
fn open_payload(
    header: &SnapshotHeader,
    head: &[u8],
    payload: &mut PageBuf,
    path: &Path,
    key: Option<&MasterKey>,
) -> Result<(), MemoryError> {
    // read_head opened the tokens, so a key is present here; checked again rather than assumed.
    let key = key.ok_or(MemoryError::Sealed { path: path.to_owned(), reason: "no encryption key is configured" })?;
    let at = nonces_at(header) + NONCE_LEN;
    let nonce: [u8; NONCE_LEN] =
        head[at..at + NONCE_LEN].try_into().map_err(|_| MemoryError::corrupt(path, "undecodable header"))?;
    let opened = open_payload_in_place(&key.namespace_key(&header.namespace), &nonce, head, payload);
    let Some(n) = opened else {
        return Err(MemoryError::Sealed { path: path.to_owned(), reason: "wrong key, or the file was altered" });
    };
    payload.truncate(n);
    Ok(())
}

/// Offset of the token nonce in a version-3 file (right after the token count).
fn nonces_at(header: &SnapshotHeader) -> usize {
    PREFIX_LEN + FIXED_HEADER_LEN - 4 + header.namespace.as_str().len() + header.agent.as_str().len()
}

/// `read_exact` that reports a short file as `Corrupt { reason: "truncated" }`.
fn read_exact(file: &mut impl Read, buf: &mut [u8], path: &Path) -> Result<(), MemoryError> {
    file.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => MemoryError::corrupt(path, "truncated"),
        _ => MemoryError::io(path, e),
    })
}

/// Reads prefix + header from the start of `file`, verifies them against `file_len`, and returns
/// the decoded header plus the raw bytes read (the caller hashes them for the trailer check).
fn read_head(
    file: &mut impl Read,
    file_len: u64,
    path: &Path,
    key: Option<&MasterKey>,
) -> Result<(SnapshotHeader, Vec<u8>), MemoryError> {
    if file_len < PREFIX_LEN as u64 + TRAILER_LEN {
        return Err(MemoryError::corrupt(path, "truncated"));
    }
    let mut prefix = [0u8; PREFIX_LEN];
    read_exact(file, &mut prefix, path)?;
    if prefix[..8] != MAGIC {
        return Err(MemoryError::corrupt(path, "bad magic"));
    }
    let version = u16::from_le_bytes([prefix[8], prefix[9]]);
    let header_len = u32::from_le_bytes([prefix[10], prefix[11], prefix[12], prefix[13]]) as usize;
    if header_len > MAX_HEADER_LEN {
        return Err(MemoryError::corrupt(path, "header too large"));
    }
    if header_len < 4 {
        return Err(MemoryError::corrupt(path, "undecodable header"));
    }
    if (PREFIX_LEN + header_len) as u64 + TRAILER_LEN > file_len {
        return Err(MemoryError::corrupt(path, "truncated"));
    }
    let mut head = vec![0u8; PREFIX_LEN + header_len];
    head[..PREFIX_LEN].copy_from_slice(&prefix);
    read_exact(file, &mut head[PREFIX_LEN..], path)?;
    let header = decode_head(&head, version, path, key)?;
    let expected_len = (PREFIX_LEN as u64 + header_len as u64)
        .checked_add(header.payload_len)
        .and_then(|n| n.checked_add(TRAILER_LEN));
    if expected_len != Some(file_len) {
        return Err(MemoryError::corrupt(path, "length mismatch"));
    }
    Ok((header, head))
}

/// Verifies `header_crc`, then the version, then decodes the header fields (opening sealed tokens
/// with `key`).
fn decode_head(head: &[u8], version: u16, path: &Path, key: Option<&MasterKey>) -> Result<SnapshotHeader, MemoryError> {
    let (covered, crc_bytes) = head.split_at(head.len() - 4);
    let header_crc = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    if crc32fast::hash(covered) != header_crc {
        return Err(MemoryError::corrupt(path, "header checksum mismatch"));
    }
    if !(1..=VERSION).contains(&version) {
        return Err(MemoryError::UnsupportedVersion { path: path.to_owned(), version });
    }
    let mut cur = Cursor { buf: &covered[PREFIX_LEN..] };
    let undecodable = || MemoryError::corrupt(path, "undecodable header");
    let mut header = decode_fields(&mut cur, version).ok_or_else(undecodable)?;
    if version == VERSION {
        let nonce: [u8; NONCE_LEN] = cur.take(NONCE_LEN).and_then(|n| n.try_into().ok()).ok_or_else(undecodable)?;
        cur.take(NONCE_LEN).ok_or_else(undecodable)?;
        let aad_end = covered.len() - cur.buf.len();
        let n = header.tokens.len() * 4;
        let sealed = cur.take(n + TAG_LEN).ok_or_else(undecodable)?;
        let sealed_err = |reason| MemoryError::Sealed { path: path.to_owned(), reason };
        let key = key.ok_or_else(|| sealed_err("encrypted, and no encryption key is configured"))?;
        let mut tokens = sealed[..n].to_vec();
        let tag: [u8; TAG_LEN] = sealed[n..].try_into().map_err(|_| undecodable())?;
        let ns_key = key.namespace_key(&header.namespace);
        if !open_in_place(&ns_key, &nonce, &covered[..aad_end], &mut tokens, &tag) {
            return Err(sealed_err("wrong key, or the file was altered"));
        }
        header.tokens = tokens.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        header.encrypted = true;
    }
    if !cur.buf.is_empty() {
        return Err(undecodable());
    }
    header.header_crc = header_crc;
    Ok(header)
}

/// Decodes the fields of `version` (1 to 3); `None` on any malformed field or short buffer. For
/// version 3 it stops after the token count and leaves `tokens` zeroed with that length (the
/// caller opens the sealed ids).
fn decode_fields(cur: &mut Cursor<'_>, version: u16) -> Option<SnapshotHeader> {
    let ns_len = cur.u8()? as usize;
    let namespace = Namespace::parse(std::str::from_utf8(cur.take(ns_len)?).ok()?).ok()?;
    let agent_len = cur.u8()? as usize;
    let agent = AgentId::parse(std::str::from_utf8(cur.take(agent_len)?).ok()?).ok()?;
    let fingerprint: [u8; 32] = cur.take(32)?.try_into().ok()?;
    let state_layout = match version {
        1 => u16::from(cur.u8()?),
        _ => u16::from_le_bytes(cur.take(2)?.try_into().ok()?),
    };
    let n_ctx = cur.u32()?;
    let created_ms = cur.u64()?;
    let updated_ms = cur.u64()?;
    let pinned = match cur.u8()? {
        0 => false,
        1 => true,
        _ => return None,
    };
    let payload_len = cur.u64()?;
    let n_tokens = cur.u32()? as usize;
    let tokens = if version == VERSION {
        // Bounded like the plaintext case: the caller takes these bytes from the header.
        if n_tokens.checked_mul(4)? > cur.buf.len() {
            return None;
        }
        vec![0; n_tokens]
    } else {
        // The count is bounded by the bytes actually present (themselves bounded by header_len).
        let raw = cur.take(n_tokens.checked_mul(4)?)?;
        raw.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    };
    Some(SnapshotHeader {
        namespace,
        agent,
        fingerprint,
        state_layout,
        n_ctx,
        tokens,
        created_ms,
        updated_ms,
        pinned,
        payload_len,
        header_crc: 0,
        encrypted: false,
    })
}

/// A bounds-checked little-endian reader over a byte slice.
struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testutil::TestDir;
    use std::time::Instant;

    pub(crate) fn header(ns: &str, agent: &str, tokens: Vec<i32>) -> SnapshotHeader {
        SnapshotHeader {
            namespace: Namespace::parse(ns).unwrap(),
            agent: AgentId::parse(agent).unwrap(),
            fingerprint: [7; 32],
            state_layout: 0x101,
            n_ctx: 4096,
            tokens,
            created_ms: 1_700_000_000_000,
            updated_ms: 1_700_000_000_500,
            pinned: false,
            payload_len: 0,
            header_crc: 0,
            encrypted: false,
        }
    }

    pub(crate) const COMPAT: Compat = Compat { fingerprint: [7; 32], state_layout: 0x101 };

    fn small_file() -> (SnapshotHeader, Vec<u8>, Vec<u8>) {
        let h = header("default", "a1", vec![1, 2, 3, -4, 50_000]);
        let payload: Vec<u8> = (0..32u8).collect();
        let bytes = encode(&h, &payload).unwrap();
        (h, payload, bytes)
    }

    /// Rewrites the version field and both checksums, giving a well-formed file of that version.
    fn with_version(bytes: &[u8], version: u16) -> Vec<u8> {
        let mut b = bytes.to_vec();
        b[8..10].copy_from_slice(&version.to_le_bytes());
        let header_len = u32::from_le_bytes(b[10..14].try_into().unwrap()) as usize;
        let crc_at = PREFIX_LEN + header_len - 4;
        let crc = crc32fast::hash(&b[..crc_at]);
        b[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
        let end = b.len() - 4;
        let crc = crc32fast::hash(&b[..end]);
        b[end..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn reason(r: Result<(SnapshotHeader, PageBuf), MemoryError>) -> &'static str {
        r.err().and_then(|e| e.reject_reason()).unwrap_or("accepted")
    }

    #[test]
    fn round_trip() {
        let dir = TestDir::new("fmt-round-trip");
        let (h, payload, bytes) = small_file();
        let path = dir.path().join("a.skv");
        std::fs::write(&path, &bytes).unwrap();
        let (got, file_len) = read_header(&path, None).unwrap();
        assert_eq!(file_len, bytes.len() as u64);
        assert_eq!(encoded_len(&h, payload.len()), file_len);
        assert_eq!(got.tokens, h.tokens);
        assert_eq!(got.payload_len, 32);
        assert_ne!(got.header_crc, 0);
        assert_eq!(got, SnapshotHeader { payload_len: 32, header_crc: got.header_crc, ..h.clone() });
        let (full, data) = read_snapshot(&path, &COMPAT, None).unwrap();
        assert_eq!(full, got);
        assert_eq!(data.to_vec(), payload);
    }

    #[test]
    fn decode_verifies_an_upload_like_a_file() {
        let (h, payload, bytes) = small_file();
        let name = Path::new("upload");
        let (got, data) = decode(&bytes, name).unwrap();
        assert_eq!((got.tokens, data), (h.tokens, payload));
        let mut flipped = bytes.clone();
        flipped[bytes.len() - 10] ^= 1;
        assert!(decode(&flipped, name).unwrap_err().to_string().contains("checksum"));
        assert!(decode(&bytes[..bytes.len() - 1], name).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer, name).is_err());
        assert!(decode(b"GGUF", name).is_err());
    }

    #[test]
    fn empty_tokens_and_payload_round_trip() {
        let dir = TestDir::new("fmt-empty");
        let mut h = header("n", "x", vec![]);
        h.pinned = true;
        let path = dir.path().join("x.skv");
        std::fs::write(&path, encode(&h, &[]).unwrap()).unwrap();
        let (got, data) = read_snapshot(&path, &COMPAT, None).unwrap();
        assert!(got.pinned && got.tokens.is_empty() && data.is_empty());
    }

    #[test]
    fn every_single_byte_flip_is_rejected_as_corrupt() {
        let dir = TestDir::new("fmt-flip");
        let (_, _, bytes) = small_file();
        let path = dir.path().join("a.skv");
        for i in 0..bytes.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= mask;
                std::fs::write(&path, &b).unwrap();
                assert_eq!(reason(read_snapshot(&path, &COMPAT, None)), "corrupt", "byte {i} mask {mask:#x}");
            }
        }
    }

    #[test]
    fn every_truncation_is_rejected_without_panic() {
        let dir = TestDir::new("fmt-trunc");
        let (_, _, bytes) = small_file();
        let path = dir.path().join("a.skv");
        for len in 0..bytes.len() {
            std::fs::write(&path, &bytes[..len]).unwrap();
            assert_eq!(reason(read_snapshot(&path, &COMPAT, None)), "corrupt", "len {len}");
            assert!(matches!(read_header(&path, None), Err(MemoryError::Corrupt { .. })), "len {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        std::fs::write(&path, &longer).unwrap();
        assert_eq!(reason(read_snapshot(&path, &COMPAT, None)), "corrupt");
    }

    #[test]
    fn foreign_fingerprint_or_kv_type() {
        let dir = TestDir::new("fmt-foreign");
        let (_, _, bytes) = small_file();
        let path = dir.path().join("a.skv");
        std::fs::write(&path, &bytes).unwrap();
        let other_model = Compat { fingerprint: [8; 32], ..COMPAT };
        let other_kv = Compat { state_layout: 0x104, ..COMPAT };
        assert!(matches!(
            read_snapshot(&path, &other_model, None),
            Err(MemoryError::Foreign { reason: "model fingerprint differs", .. })
        ));
        assert!(matches!(
            read_snapshot(&path, &other_kv, None),
            Err(MemoryError::Foreign { reason: "state layout (KV type or stream mode) differs", .. })
        ));
        assert!(read_header(&path, None).is_ok(), "a header-only read does not judge compatibility");
    }

    #[test]
    fn other_versions_are_unsupported_not_corrupt() {
        let dir = TestDir::new("fmt-version");
        let (_, _, bytes) = small_file();
        let path = dir.path().join("a.skv");
        for version in [0u16, 4, 0xffff] {
            std::fs::write(&path, with_version(&bytes, version)).unwrap();
            let err = read_snapshot(&path, &COMPAT, None).unwrap_err();
            assert!(matches!(err, MemoryError::UnsupportedVersion { version: v, .. } if v == version), "{err}");
            assert!(matches!(read_header(&path, None), Err(MemoryError::UnsupportedVersion { .. })));
        }
    }

    /// The same file as version 1 wrote it: a one-byte state layout (the unified cache's).
    fn as_version_1(bytes: &[u8], layout: u8) -> Vec<u8> {
        let header_len = u32::from_le_bytes(bytes[10..14].try_into().unwrap()) as usize;
        let names = 1 + bytes[PREFIX_LEN] as usize;
        let names = names + 1 + bytes[PREFIX_LEN + names] as usize;
        let at = PREFIX_LEN + names + 32;
        let mut b = bytes[..at].to_vec();
        b.push(layout);
        b.extend_from_slice(&bytes[at + 2..]);
        b[10..14].copy_from_slice(&((header_len - 1) as u32).to_le_bytes());
        with_version(&b, 1)
    }

    #[test]
    fn version_1_files_read_but_never_match_a_per_sequence_engine() {
        let dir = TestDir::new("fmt-v1");
        let (_, payload, bytes) = small_file();
        let path = dir.path().join("a.skv");
        std::fs::write(&path, as_version_1(&bytes, 1)).unwrap();
        let (header, _) = read_header(&path, None).unwrap();
        assert_eq!(header.state_layout, 1, "f16, unified: no per-sequence bit");
        assert_eq!(COMPAT.mismatch(&header), Some("state layout (KV type or stream mode) differs"));
        assert!(matches!(read_snapshot(&path, &COMPAT, None), Err(MemoryError::Foreign { .. })));
        let old = Compat { state_layout: 1, ..COMPAT };
        let (_, read) = read_snapshot(&path, &old, None).unwrap();
        assert_eq!(&read[..], &payload[..]);
    }

    #[test]
    fn header_read_skips_a_huge_payload() {
        let dir = TestDir::new("fmt-huge");
        let h = header("default", "big", vec![9; 1000]);
        let payload_len = 8u64 << 30; // 8 GiB, sparse: never written, never read
        let head = encode_head(&h, payload_len).unwrap();
        let path = dir.path().join("big.skv");
        std::fs::write(&path, &head).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(head.len() as u64 + payload_len + 4).unwrap();
        drop(file);
        let t = Instant::now();
        let (got, len) = read_header(&path, None).unwrap();
        let took = t.elapsed();
        eprintln!("read_header on an 8 GiB snapshot: {took:?}");
        assert_eq!(got.payload_len, payload_len);
        assert_eq!(len, head.len() as u64 + payload_len + 4);
        assert!(took.as_secs() < 5, "header read must not touch the payload ({took:?})");
    }

    #[test]
    fn hostile_files_never_panic_or_overallocate() {
        let dir = TestDir::new("fmt-hostile");
        let path = dir.path().join("h.skv");
        let (_, _, good) = small_file();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..2000 {
            let len = (next() % 200) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 2 == 0 && len >= PREFIX_LEN {
                b[..10].copy_from_slice(&good[..10]); // valid magic + version, random lengths after
            }
            if round % 4 == 0 && len >= PREFIX_LEN {
                b[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
            }
            std::fs::write(&path, &b).unwrap();
            assert!(read_snapshot(&path, &COMPAT, None).is_err());
            assert!(read_header(&path, None).is_err());
        }
    }

    #[test]
    fn too_many_tokens_is_refused_at_encode() {
        let h = header("default", "a", vec![0; MAX_TOKENS + 1]);
        assert!(matches!(encode(&h, &[]), Err(MemoryError::TooLarge { .. })));
    }

    #[test]
    fn missing_file_is_not_found() {
        let dir = TestDir::new("fmt-missing");
        let err = read_header(&dir.path().join("nope.skv"), None).unwrap_err();
        assert!(err.is_not_found() && err.reject_reason().is_none());
    }
}
