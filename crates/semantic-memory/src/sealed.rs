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
//!   included) as associated data, which binds the payload to that header.

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
/// Bytes a sealed file has beyond the plaintext one: two nonces and two tags.
pub const SEAL_OVERHEAD: u64 = (2 * NONCE_LEN + 2 * TAG_LEN) as u64;

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

/// A sealed file's head (prefix + header with sealed tokens) and its encrypted payload with the
/// tag appended; the caller appends the trailing CRC-32 (over both) and writes them.
pub(crate) fn seal_file(
    header: &SnapshotHeader,
    payload: &[u8],
    key: &MasterKey,
) -> Result<(Vec<u8>, Vec<u8>), MemoryError> {
    let ns_key = key.namespace_key(&header.namespace);
    let nonces = Nonces::random();
    let stored_len = payload.len() as u64 + TAG_LEN as u64;
    let head = encode_head_with(header, stored_len, Some((&ns_key, &nonces)))?;
    let mut body = Vec::new();
    body.try_reserve_exact(payload.len() + TAG_LEN).map_err(|_| MemoryError::TooLarge {
        what: "payload to encrypt",
        len: payload.len() as u64,
        max: isize::MAX as u64,
    })?;
    body.extend_from_slice(payload);
    let tag = seal_in_place(&ns_key, &nonces.payload, &head, &mut body);
    body.extend_from_slice(&tag);
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
        assert_eq!(bytes.len() as u64, plain_len + SEAL_OVERHEAD);
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
}
