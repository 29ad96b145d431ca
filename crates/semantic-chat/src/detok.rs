//! Incremental detokenization: turns the byte pieces of generated tokens into text without ever
//! splitting a UTF-8 character (byte-fallback tokens carry one byte of a character at a time).
//! It knows nothing of tokens or vocabularies; the engine hands it each token's bytes.

/// Decodes a stream of byte pieces into complete UTF-8 text.
///
/// Holds back at most 3 bytes: the start of a character whose remaining bytes have not arrived.
/// Bytes that can never become valid are replaced by U+FFFD as soon as that is known, the same
/// way [`String::from_utf8_lossy`] replaces them, so the concatenation of every [`push`] and the
/// final [`finish`] equals `String::from_utf8_lossy` of all the bytes, however they were split.
///
/// [`push`]: Utf8Stream::push
/// [`finish`]: Utf8Stream::finish
#[derive(Debug, Default)]
pub struct Utf8Stream {
    /// The incomplete tail of the last push: a valid prefix of one UTF-8 character.
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// An empty stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed the bytes of one token's piece; returns the text that is now complete (may be empty).
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::with_capacity(self.pending.len());
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(text) => {
                    out.push_str(text);
                    rest = &[];
                    break;
                }
                Err(err) => {
                    let (valid, after) = rest.split_at(err.valid_up_to());
                    // `valid` is valid UTF-8 by construction, so this borrows without replacing.
                    out.push_str(&String::from_utf8_lossy(valid));
                    match err.error_len() {
                        // Invalid whatever follows: replace it now, as from_utf8_lossy would.
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[bad..];
                        }
                        // A valid but incomplete character at the end: wait for more bytes.
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        let consumed = self.pending.len() - rest.len();
        self.pending.drain(..consumed);
        out
    }

    /// End of stream: any incomplete trailing bytes become U+FFFD.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Pushes each piece, then finishes; compares what each call returned.
    fn check(pieces: &[&[u8]], expected_pushes: &[&str], expected_finish: &str) {
        let mut stream = Utf8Stream::new();
        let got: Vec<String> = pieces.iter().map(|p| stream.push(p)).collect();
        assert_eq!(got, expected_pushes, "pieces {pieces:?}");
        assert_eq!(stream.finish(), expected_finish, "finish after {pieces:?}");
    }

    const EMOJI: &[u8] = "😀".as_bytes(); // F0 9F 98 80
    const CJK: &[u8] = "世".as_bytes(); // E4 B8 96

    #[test]
    fn whole_characters_pass_straight_through() {
        check(&[b"Hello", b" ", "wörld 世界 😀".as_bytes()], &["Hello", " ", "wörld 世界 😀"], "");
        check(&[b""], &[""], "");
        check(&[], &[], "");
    }

    #[test]
    fn split_characters_wait_for_their_last_byte() {
        check(&[&EMOJI[..1], &EMOJI[1..]], &["", "😀"], "");
        check(&[&EMOJI[..2], &EMOJI[2..]], &["", "😀"], "");
        check(&[&EMOJI[..3], &EMOJI[3..]], &["", "😀"], "");
        check(&[&EMOJI[..1], &EMOJI[1..2], &EMOJI[2..3], &EMOJI[3..]], &["", "", "", "😀"], "");
        check(&[&CJK[..1], &CJK[1..]], &["", "世"], "");
        check(&[&CJK[..2], &CJK[2..]], &["", "世"], "");
        check(&[&CJK[..1], &CJK[1..2], &CJK[2..]], &["", "", "世"], "");
        check(&[b"a\xE4", b"\xB8\x96b\xF0\x9F", b"\x98\x80c"], &["a", "世b", "😀c"], "");
    }

    #[test]
    fn invalid_bytes_are_replaced_as_soon_as_known() {
        check(&[b"\xFF"], &["\u{FFFD}"], "");
        check(&[b"a\xFFb"], &["a\u{FFFD}b"], "");
        check(&[b"\xC0\xAF"], &["\u{FFFD}\u{FFFD}"], ""); // overlong, never valid
        check(&[b"\xE4", b"A"], &["", "\u{FFFD}A"], ""); // bad continuation
        check(&[b"\xE4\xB8", b"\xE4\xB8\x96"], &["", "\u{FFFD}世"], "");
        check(&[b"\x80\x80"], &["\u{FFFD}\u{FFFD}"], ""); // stray continuations
        check(&[b"\xED\xA0\x80"], &["\u{FFFD}\u{FFFD}\u{FFFD}"], ""); // surrogate
    }

    #[test]
    fn finish_replaces_an_incomplete_tail() {
        check(&[b"ok\xF0\x9F\x98"], &["ok"], "\u{FFFD}");
        check(&[b"\xE4"], &[""], "\u{FFFD}");
        let mut stream = Utf8Stream::new();
        stream.push(b"\xE4");
        stream.finish();
        assert_eq!(stream.push(b"x"), "x", "finish leaves the stream empty and reusable");
    }

    #[test]
    fn any_split_equals_lossy_decoding_of_the_whole() {
        let text = "ASCII, ünïcödé, 中文字符, emoji 😀🎉👩‍💻, and a tab\t.".as_bytes();
        let mut rng = StdRng::seed_from_u64(0x9E37_79B9_7F4A_7C15);
        for round in 0..2000 {
            // Half the rounds decode valid text, half a byte soup with invalid sequences.
            let bytes: Vec<u8> = if round % 2 == 0 {
                text.to_vec()
            } else {
                let alphabet = [0x41, 0x80, 0xBF, 0xC3, 0xA9, 0xE4, 0xB8, 0xF0, 0x9F, 0xFF, 0xED];
                (0..rng.gen_range(0..24)).map(|_| alphabet[rng.gen_range(0..alphabet.len())]).collect()
            };
            let mut stream = Utf8Stream::new();
            let mut out = String::new();
            let mut at = 0;
            while at < bytes.len() {
                let len = rng.gen_range(1..=5);
                let end = (at + len).min(bytes.len());
                out.push_str(&stream.push(&bytes[at..end]));
                at = end;
            }
            out.push_str(&stream.finish());
            assert_eq!(out, String::from_utf8_lossy(&bytes), "round {round}: {bytes:x?}");
        }
    }
}
