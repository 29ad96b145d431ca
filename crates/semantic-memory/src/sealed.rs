//! Encryption of agent files (format version 3): XChaCha20-Poly1305 under the namespace's key
//! (`key.rs`), random 24-byte nonces, detached tags. Owns the AEAD calls and the write-side of a
//! sealed file (`seal_file`); the byte layout and the read side live in `format.rs`, which calls
//! [`open_in_place`].
//!
//! Two seals per file, both under the namespace key with their own random nonce:
//! - the token ids, inside the header, with the header's plaintext fields (magic, version,
//!   header_len, names, fingerprint, ..., both nonces) as associated data, so a header-only scan
//!   can index an agent's tokens without touching the payload;
//! - the payload (the engine's KV state), with the whole header (sealed tokens and `header_crc`
//!   included) as associated data, which binds the payload to that header. The payload is sealed
//!   in chunks of [`CHUNK`] bytes, chunk `i` under the nonce `payload_nonce[..16] ++ i (u64 LE)`,
//!   their tags stored in order after the last chunk, so restores decrypt on every core (one
//!   core does ~0.9 GB/s here: 100 ms for a 4K-token agent). The chunk count follows from the
//!   authenticated `payload_len`, and the index in the nonce pins each chunk to its place.

use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use rand::RngCore;

use crate::format::{encode_head_with, SnapshotHeader};
use crate::key::{MasterKey, NamespaceKey};
use crate::MemoryError;

/// Nonce length of XChaCha20-Poly1305.
pub(crate) const NONCE_LEN: usize = 24;
/// Authentication tag length.
pub(crate) const TAG_LEN: usize = 16;
/// Payload chunk size: large enough that a tag (16 bytes) and a thread hand-off are negligible,
/// small enough that a 100 MB payload splits over many cores.
pub(crate) const CHUNK: usize = 4 << 20;
/// Most threads one payload is sealed or opened on.
const MAX_THREADS: usize = 8;

/// Bytes a sealed file has beyond the plaintext one with a payload of `payload_len` bytes: two
/// nonces, the token tag and one tag per payload chunk.
pub fn seal_overhead(payload_len: u64) -> u64 {
    (2 * NONCE_LEN + TAG_LEN) as u64 + TAG_LEN as u64 * chunks_of(payload_len as usize) as u64
}

/// Chunks of a payload of `n` bytes (at least one, so an empty payload still has a tag).
fn chunks_of(n: usize) -> usize {
    n.div_ceil(CHUNK).max(1)
}

/// The plaintext length and chunk count of a stored payload of `stored` bytes (ciphertext +
/// tags), or `None` when no plaintext length gives that size.
pub(crate) fn split_stored(stored: usize) -> Option<(usize, usize)> {
    let k = stored.div_ceil(CHUNK + TAG_LEN).max(1);
    let n = stored.checked_sub(k * TAG_LEN)?;
    (chunks_of(n) == k).then_some((n, k))
}

/// The nonce of payload chunk `i`.
fn chunk_nonce(base: &[u8; NONCE_LEN], i: usize) -> [u8; NONCE_LEN] {
    let mut nonce = *base;
    nonce[16..].copy_from_slice(&(i as u64).to_le_bytes());
    nonce
}

/// Runs `f(i, chunk, tag)` over the chunks of `data` and their tags, on up to [`MAX_THREADS`]
/// threads; true if every call returned true.
fn for_chunks<F>(data: &mut [u8], tags: &mut [u8], f: F) -> bool
where
    F: Fn(usize, &mut [u8], &mut [u8]) -> bool + Sync,
{
    let k = tags.len() / TAG_LEN;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_THREADS).min(k);
    let per = k.div_ceil(threads.max(1));
    let run = |first: usize, data: &mut [u8], tags: &mut [u8]| {
        let mut ok = true;
        let mut chunks = data.chunks_mut(CHUNK);
        for (j, tag) in tags.chunks_mut(TAG_LEN).enumerate() {
            // An empty payload has one empty chunk.
            let chunk = chunks.next().unwrap_or_default();
            ok &= f(first + j, chunk, tag);
        }
        ok
    };
    if threads <= 1 {
        return run(0, data, tags);
    }
    std::thread::scope(|scope| {
        let mut handles = Vec::new();
        let (mut data, mut tags) = (data, tags);
        for t in 0..threads {
            let take = per.min(tags.len() / TAG_LEN);
            let (d, d_rest) = data.split_at_mut((take * CHUNK).min(data.len()));
            let (g, g_rest) = tags.split_at_mut(take * TAG_LEN);
            (data, tags) = (d_rest, g_rest);
            let run = &run;
            handles.push(scope.spawn(move || run(t * per, d, g)));
        }
        // A panicking worker (a bug) counts as a failed open, never as success.
        handles.into_iter().map(|h| h.join().unwrap_or(false)).fold(true, |a, b| a & b)
    })
}

/// The nonces of one sealed write, in header order.
pub(crate) struct Nonces {
    pub tokens: [u8; NONCE_LEN],
    pub payload: [u8; NONCE_LEN],
}

impl Nonces {
    /// Fresh random nonces from the OS generator (random 192-bit nonces never repeat in practice).
    fn random() -> Self {
        let mut n = Nonces { tokens: [0; NONCE_LEN], payload: [0; NONCE_LEN] };
        rand::rngs::OsRng.fill_bytes(&mut n.tokens);
        rand::rngs::OsRng.fill_bytes(&mut n.payload);
        n
    }
}

/// Encrypts `buf` in place and returns the tag.
pub(crate) fn seal_in_place(key: &NamespaceKey, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
    let cipher = XChaCha20Poly1305::new(key.as_slice().into());
    // Infallible for buffers below the cipher's 256 GiB-per-message limit; payloads are bounded
    // by RAM long before that.
    let tag =
        cipher.encrypt_in_place_detached(XNonce::from_slice(nonce), aad, buf).expect("message within AEAD limits");
    tag.into()
}

/// Decrypts `buf` in place if `tag` authenticates it with `aad`; false (and `buf` unspecified)
/// otherwise.
pub(crate) fn open_in_place(
    key: &NamespaceKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> bool {
    let cipher = XChaCha20Poly1305::new(key.as_slice().into());
    cipher.decrypt_in_place_detached(XNonce::from_slice(nonce), aad, buf, tag.into()).is_ok()
}

/// Decrypts a stored payload (chunks + tags) in place; returns the plaintext length, or `None`
/// when its size is impossible or any chunk does not authenticate.
pub(crate) fn open_payload_in_place(
    key: &NamespaceKey,
    base: &[u8; NONCE_LEN],
    head: &[u8],
    stored: &mut [u8],
) -> Option<usize> {
    let (n, _) = split_stored(stored.len())?;
    let (data, tags) = stored.split_at_mut(n);
    let ok = for_chunks(data, tags, |i, chunk, tag| {
        let tag: &[u8; TAG_LEN] = match (&*tag).try_into() {
            Ok(t) => t,
            Err(_) => return false,
        };
        open_in_place(key, &chunk_nonce(base, i), head, chunk, tag)
    });
    ok.then_some(n)
}

/// A sealed file's head (prefix + header with sealed tokens) and its encrypted payload with the
/// tag appended; the caller appends the trailing CRC-32 (over both) and writes them.
pub(crate) fn seal_file(
    header: &SnapshotHeader,
    payload: &[u8],
    key: &MasterKey,
) -> Result<(Vec<u8>, Vec<u8>), MemoryError> {
    let ns_key = key.namespace_key(&header.namespace);
    let nonces = Nonces::random();
    let tags_len = TAG_LEN * chunks_of(payload.len());
    let stored_len = (payload.len() + tags_len) as u64;
    let head = encode_head_with(header, stored_len, Some((&ns_key, &nonces)))?;
    let mut body = Vec::new();
    body.try_reserve_exact(payload.len() + tags_len).map_err(|_| MemoryError::TooLarge {
        what: "payload to encrypt",
        len: payload.len() as u64,
        max: isize::MAX as u64,
    })?;
    body.extend_from_slice(payload);
    body.resize(payload.len() + tags_len, 0);
    let (data, tags) = body.split_at_mut(payload.len());
    for_chunks(data, tags, |i, chunk, tag| {
        tag.copy_from_slice(&seal_in_place(&ns_key, &chunk_nonce(&nonces.payload, i), &head, chunk));
        true
    });
    Ok((head, body))
}

/// A whole sealed file in memory (head, encrypted payload + tag, trailing CRC-32): the encrypted
/// counterpart of [`crate::encode`].
pub fn encode_sealed(header: &SnapshotHeader, payload: &[u8], key: &MasterKey) -> Result<Vec<u8>, MemoryError> {
    let (mut out, body) = seal_file(header, payload, key)?;
    out.extend_from_slice(&body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tests::{header, COMPAT};
    use crate::format::{read_header, read_snapshot, PREFIX_LEN};
    use crate::testutil::TestDir;
    use crate::Namespace;

    const KEY: [u8; 32] = [0x42; 32];

    fn sealed_file(dir: &TestDir) -> (std::path::PathBuf, Vec<u8>, Vec<u8>) {
        let h = header("tenant", "a1", vec![101, 202, 303, -4, 50_000]);
        let payload: Vec<u8> = (0..64u8).collect();
        let bytes = encode_sealed(&h, &payload, &MasterKey::from_bytes(KEY)).unwrap();
        let path = dir.path().join("a1.skv");
        std::fs::write(&path, &bytes).unwrap();
        (path, payload, bytes)
    }

    /// Fixes both CRC-32s after a deliberate edit, so only the AEAD can notice it.
    fn recrc(b: &mut [u8]) {
        let header_len = u32::from_le_bytes(b[10..14].try_into().unwrap()) as usize;
        let at = PREFIX_LEN + header_len - 4;
        let crc = crc32fast::hash(&b[..at]);
        b[at..at + 4].copy_from_slice(&crc.to_le_bytes());
        let end = b.len() - 4;
        let crc = crc32fast::hash(&b[..end]);
        b[end..].copy_from_slice(&crc.to_le_bytes());
    }

    fn reason_with(path: &std::path::Path, key: Option<&MasterKey>) -> &'static str {
        match read_snapshot(path, &COMPAT, key) {
            Ok(_) => "accepted",
            Err(e) => e.reject_reason().unwrap_or("other"),
        }
    }

    #[test]
    fn sealed_round_trip_hides_tokens_and_payload() {
        let dir = TestDir::new("sealed-rt");
        let (path, payload, bytes) = sealed_file(&dir);
        let key = MasterKey::from_bytes(KEY);
        let (h, data) = read_snapshot(&path, &COMPAT, Some(&key)).unwrap();
        assert_eq!(h.tokens, vec![101, 202, 303, -4, 50_000]);
        assert!(h.encrypted);
        assert_eq!(&data[..], &payload[..]);
        assert_eq!(read_header(&path, Some(&key)).unwrap().0, h);
        assert_eq!(bytes[8..10], crate::VERSION.to_le_bytes());
        let tokens: Vec<u8> = [101i32, 202, 303].iter().flat_map(|t| t.to_le_bytes()).collect();
        assert!(!bytes.windows(tokens.len()).any(|w| w == tokens), "token ids in the clear");
        assert!(!bytes.windows(16).any(|w| w == &payload[16..32]), "payload in the clear");
        let plain_len = crate::encoded_len(&h, payload.len());
        assert_eq!(bytes.len() as u64, plain_len + seal_overhead(payload.len() as u64));
    }

    #[test]
    fn a_wrong_key_or_no_key_is_a_clean_miss() {
        let dir = TestDir::new("sealed-wrong");
        let (path, _, _) = sealed_file(&dir);
        assert_eq!(reason_with(&path, Some(&MasterKey::from_bytes([0x43; 32]))), "key");
        assert_eq!(reason_with(&path, None), "key");
        assert!(matches!(read_header(&path, None), Err(MemoryError::Sealed { .. })));
    }

    #[test]
    fn tampering_with_header_nonces_tokens_or_payload_is_a_miss() {
        let dir = TestDir::new("sealed-tamper");
        let (path, _, bytes) = sealed_file(&dir);
        let key = MasterKey::from_bytes(KEY);
        let header_len = u32::from_le_bytes(bytes[10..14].try_into().unwrap()) as usize;
        let names = 1 + 6 + 1 + 2;
        let pinned_at = PREFIX_LEN + names + 32 + 2 + 4 + 8 + 8;
        let nonce_at = pinned_at + 1 + 8 + 4;
        let cases = [
            ("n_ctx (plaintext header field)", PREFIX_LEN + names + 32 + 2),
            ("updated_ms", pinned_at - 1),
            ("token nonce", nonce_at),
            ("payload nonce", nonce_at + NONCE_LEN),
            ("sealed tokens", nonce_at + 2 * NONCE_LEN + 1),
            ("token tag", PREFIX_LEN + header_len - 5),
            ("payload", PREFIX_LEN + header_len + 3),
            ("payload tag", bytes.len() - 5),
        ];
        for (what, at) in cases {
            let mut b = bytes.clone();
            b[at] ^= 0x01;
            recrc(&mut b);
            std::fs::write(&path, &b).unwrap();
            assert_eq!(reason_with(&path, Some(&key)), "key", "{what} at {at}");
        }
        // Without fixing the checksums, the CRC still catches it first (as for plaintext files).
        let mut b = bytes.clone();
        b[PREFIX_LEN + header_len + 3] ^= 0x01;
        std::fs::write(&path, &b).unwrap();
        assert_eq!(reason_with(&path, Some(&key)), "corrupt");
    }

    #[test]
    fn a_file_moved_to_another_namespace_does_not_open() {
        let dir = TestDir::new("sealed-ns");
        let key = MasterKey::from_bytes(KEY);
        let a = key.namespace_key(&Namespace::parse("tenant").unwrap());
        let b = key.namespace_key(&Namespace::parse("other").unwrap());
        let nonce = [3u8; NONCE_LEN];
        let mut buf = b"secret".to_vec();
        let tag = seal_in_place(&a, &nonce, b"aad", &mut buf);
        assert!(!open_in_place(&b, &nonce, b"aad", &mut buf.clone(), &tag));
        assert!(!open_in_place(&a, &nonce, b"other aad", &mut buf.clone(), &tag));
        assert!(open_in_place(&a, &nonce, b"aad", &mut buf, &tag));
        assert_eq!(buf, b"secret");
        drop(dir);
    }

    #[test]
    fn plaintext_files_still_read_with_a_key() {
        let dir = TestDir::new("sealed-plain");
        let h = header("tenant", "p", vec![1, 2]);
        let path = dir.path().join("p.skv");
        std::fs::write(&path, crate::encode(&h, b"kv").unwrap()).unwrap();
        let (got, data) = read_snapshot(&path, &COMPAT, Some(&MasterKey::from_bytes(KEY))).unwrap();
        assert!(!got.encrypted);
        assert_eq!((&got.tokens[..], &data[..]), (&[1, 2][..], &b"kv"[..]));
    }

    #[test]
    fn stored_sizes_map_back_to_one_plaintext_length() {
        for n in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 17] {
            let stored = n + TAG_LEN * chunks_of(n);
            assert_eq!(split_stored(stored), Some((n, chunks_of(n))), "n = {n}");
        }
        assert_eq!(split_stored(0), None);
        assert_eq!(split_stored(TAG_LEN - 1), None);
    }

    #[test]
    fn multi_chunk_payloads_round_trip_and_chunks_cannot_be_swapped() {
        let dir = TestDir::new("sealed-chunks");
        let key = MasterKey::from_bytes(KEY);
        let h = header("tenant", "big", vec![1, 2, 3]);
        let payload: Vec<u8> = (0..2 * CHUNK + 12_345).map(|i| (i * 31 % 251) as u8).collect();
        let bytes = encode_sealed(&h, &payload, &key).unwrap();
        let path = dir.path().join("big.skv");
        std::fs::write(&path, &bytes).unwrap();
        let (_, data) = read_snapshot(&path, &COMPAT, Some(&key)).unwrap();
        assert!(data[..] == payload[..]);
        // Swap the first two chunks (checksums fixed): the nonce index catches it.
        let header_len = u32::from_le_bytes(bytes[10..14].try_into().unwrap()) as usize;
        let start = PREFIX_LEN + header_len;
        let mut b = bytes.clone();
        let (first, second) = b[start..start + 2 * CHUNK].split_at_mut(CHUNK);
        first.swap_with_slice(second);
        recrc(&mut b);
        std::fs::write(&path, &b).unwrap();
        assert_eq!(reason_with(&path, Some(&key)), "key");
    }
}
