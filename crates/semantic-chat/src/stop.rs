//! Stop strings: matched on decoded text across token boundaries, so a stop string split over
//! several tokens is still caught and never emitted. It works on text only; stop *tokens* (EOS,
//! end-of-turn) are the sampler's business.

/// What one [`StopMatcher::push`] released.
#[derive(Debug, PartialEq, Eq)]
pub struct StopStep {
    /// Text that can be shown to the client now.
    pub emit: String,
    /// When a stop string completed: its index in the list given to [`StopMatcher::new`].
    pub stopped: Option<usize>,
}

/// Watches generated text for stop strings.
///
/// Emits everything that cannot be the start of a stop string and holds back the longest suffix
/// that is a proper prefix of one. When stop strings complete, the earliest occurrence wins (on a
/// tie, the shortest, which completed first, then the lowest index); the text before it is
/// emitted and the rest is discarded. After a stop, `push` and `finish` return nothing.
#[derive(Debug, Default)]
pub struct StopMatcher {
    /// Non-empty stop strings with their index in the caller's list.
    stops: Vec<(usize, String)>,
    /// Text not yet emitted because it may begin a stop string.
    held: String,
    /// Set once a stop string has matched.
    stopped: bool,
}

impl StopMatcher {
    /// A matcher for `stops`; empty strings are ignored (but keep their index).
    pub fn new(stops: Vec<String>) -> Self {
        let stops = stops.into_iter().enumerate().filter(|(_, s)| !s.is_empty()).collect();
        StopMatcher { stops, held: String::new(), stopped: false }
    }

    /// Feed newly decoded text. Emits everything that cannot be the start of a stop string;
    /// holds back the longest suffix that is a proper prefix of some stop string; when a stop
    /// string completes, emits the text before its earliest occurrence and reports it (text
    /// after it is discarded).
    pub fn push(&mut self, text: &str) -> StopStep {
        if self.stopped {
            return StopStep { emit: String::new(), stopped: None };
        }
        let mut buf = std::mem::take(&mut self.held);
        buf.push_str(text);

        if let Some((at, index)) = self.earliest_match(&buf) {
            buf.truncate(at);
            self.stopped = true;
            return StopStep { emit: buf, stopped: Some(index) };
        }
        let keep_from = self.held_suffix_start(&buf);
        self.held = buf.split_off(keep_from);
        StopStep { emit: buf, stopped: None }
    }

    /// End of generation: flush held-back text.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// Whether there are no stop strings (every push then emits its text unchanged).
    pub fn is_empty(&self) -> bool {
        self.stops.is_empty()
    }

    /// The byte offset and caller's index of the earliest complete stop string in `buf`.
    fn earliest_match(&self, buf: &str) -> Option<(usize, usize)> {
        self.stops
            .iter()
            .filter_map(|(index, stop)| buf.find(stop.as_str()).map(|at| (at, stop.len(), *index)))
            .min()
            .map(|(at, _, index)| (at, index))
    }

    /// Where the longest suffix of `buf` that is a proper prefix of a stop string begins
    /// (`buf.len()` when there is none). Only char boundaries are considered.
    fn held_suffix_start(&self, buf: &str) -> usize {
        let longest = self.stops.iter().map(|(_, s)| s.len()).max().unwrap_or(0);
        let earliest = buf.len().saturating_sub(longest.saturating_sub(1));
        buf.char_indices()
            .map(|(i, _)| i)
            .filter(|&i| i >= earliest)
            .find(|&i| {
                let suffix = &buf[i..];
                self.stops.iter().any(|(_, stop)| stop.len() > suffix.len() && stop.starts_with(suffix))
            })
            .unwrap_or(buf.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn matcher(stops: &[&str]) -> StopMatcher {
        StopMatcher::new(stops.iter().map(|s| s.to_string()).collect())
    }

    /// Feeds `pushes` one at a time; compares each step's `(emit, stopped)` and then `finish()`.
    fn check(stops: &[&str], pushes: &[&str], steps: &[(&str, Option<usize>)], finish: &str) {
        let mut m = matcher(stops);
        let got: Vec<(String, Option<usize>)> = pushes
            .iter()
            .map(|p| {
                let step = m.push(p);
                (step.emit, step.stopped)
            })
            .collect();
        let want: Vec<(String, Option<usize>)> = steps.iter().map(|(e, s)| (e.to_string(), *s)).collect();
        assert_eq!(got, want, "stops {stops:?}, pushes {pushes:?}");
        assert_eq!(m.finish(), finish, "finish, stops {stops:?}, pushes {pushes:?}");
    }

    #[test]
    fn no_stops_passes_text_through() {
        check(&[], &["a", "b"], &[("a", None), ("b", None)], "");
        check(&["", ""], &["x"], &[("x", None)], "");
        assert!(matcher(&["", ""]).is_empty());
        assert!(!matcher(&["", "x"]).is_empty());
    }

    #[test]
    fn stop_within_one_push() {
        check(&["</s>"], &["hi</s>bye"], &[("hi", Some(0))], "");
        check(&["STOP"], &["STOP now"], &[("", Some(0))], ""); // at the very start
        check(&["x", "STOP"], &["aSTOP"], &[("a", Some(1))], "");
    }

    #[test]
    fn stop_split_across_pushes() {
        check(
            &["<|im_end|>"],
            &["Hello", "<|", "im", "_", "end", "|>", "more"],
            &[("Hello", None), ("", None), ("", None), ("", None), ("", None), ("", Some(0)), ("", None)],
            "",
        );
        check(&["abc"], &["xa", "bc"], &[("x", None), ("", Some(0))], "");
    }

    #[test]
    fn false_starts_are_released() {
        check(&["abc"], &["ab", "x"], &[("", None), ("abx", None)], "");
        check(&["abc"], &["a", "a", "bc"], &[("", None), ("a", None), ("", Some(0))], "");
        check(&["aab"], &["aa", "ab"], &[("", None), ("a", Some(0))], "");
    }

    #[test]
    fn held_text_is_flushed_on_finish() {
        check(&["###"], &["end #", "#"], &[("end ", None), ("", None)], "##");
        check(&["Observation:"], &["Obs"], &[("", None)], "Obs");
    }

    #[test]
    fn earliest_occurrence_wins() {
        check(&["ab", "b"], &["xab"], &[("x", Some(0))], "");
        check(&["b", "ab"], &["xab"], &[("x", Some(1))], "");
        check(&["ab", "b"], &["xa", "b"], &[("x", None), ("", Some(0))], "");
        check(&["bc", "abcd"], &["abc"], &[("a", Some(0))], ""); // "bc" completed first
        check(&["abcd", "bc"], &["abcd"], &[("", Some(0))], "");
        check(&["abc", "ab"], &["zabc"], &[("z", Some(1))], ""); // same start: shortest
    }

    #[test]
    fn multi_byte_stop_strings() {
        check(&["終わり"], &["はい終", "わ", "り!"], &[("はい", None), ("", None), ("", Some(0))], "");
        check(&["😀!"], &["a😀", "b"], &[("a", None), ("😀b", None)], "");
        check(&["é"], &["café"], &[("caf", Some(0))], "");
        // A held prefix must be whole characters: "ü" shares a lead byte with "é" but no prefix.
        check(&["éa"], &["ü"], &[("ü", None)], "");
    }

    #[test]
    fn nothing_after_a_stop() {
        let mut m = matcher(&["x"]);
        assert_eq!(m.push("ax").stopped, Some(0));
        assert_eq!(m.push("more"), StopStep { emit: String::new(), stopped: None });
        assert_eq!(m.finish(), "");
    }

    /// The reference: at the first push boundary where some stop string lies wholly inside the
    /// text so far, the output is the text before the earliest such occurrence.
    fn reference(stops: &[&str], text: &str, boundaries: &[usize]) -> (String, Option<usize>) {
        for &end in boundaries {
            let seen = &text[..end];
            let hit = stops
                .iter()
                .enumerate()
                .filter(|(_, s)| !s.is_empty())
                .filter_map(|(i, s)| seen.find(s).map(|at| (at, s.len(), i)))
                .min();
            if let Some((at, _, i)) = hit {
                return (text[..at].to_owned(), Some(i));
            }
        }
        (text.to_owned(), None)
    }

    #[test]
    fn random_splits_match_the_reference() {
        let alphabet = ['a', 'b', 'é', '😀', ' ', '<', '>'];
        let stops = ["ab", "b a", "é😀é", "<end>", "", "😀😀"];
        let mut rng = StdRng::seed_from_u64(0xD1B5_4A32_D192_ED03);
        for round in 0..3000 {
            let text: String = (0..rng.gen_range(0..30)).map(|_| alphabet[rng.gen_range(0..alphabet.len())]).collect();
            let chars: Vec<(usize, char)> = text.char_indices().collect();
            let mut boundaries = Vec::new();
            let mut i = 0;
            while i < chars.len() {
                i = (i + rng.gen_range(1..=4)).min(chars.len());
                boundaries.push(chars.get(i).map_or(text.len(), |(at, _)| *at));
            }
            let mut m = matcher(&stops);
            let (mut out, mut stopped, mut start) = (String::new(), None, 0);
            for &end in &boundaries {
                let step = m.push(&text[start..end]);
                out.push_str(&step.emit);
                stopped = stopped.or(step.stopped);
                start = end;
            }
            out.push_str(&m.finish());
            assert_eq!(
                (out, stopped),
                reference(&stops, &text, &boundaries),
                "round {round}: {text:?} split at {boundaries:?}"
            );
        }
    }
}
