//! Token sampling: turns one row of logits into the next token id (logit bias, repetition / frequency / presence
//! penalties, then greedy argmax or top-k / top-p / min-p / temperature sampling with a seedable RNG), and keeps the
//! per-sequence token history those penalties need. It does not own the model, batches, detokenization or stop
//! conditions, and knows nothing of llama.cpp beyond its token ids (`i32`) and its sampler-chain semantics.
//!
//! The pipeline mirrors llama.cpp's common sampler chain:
//! `logit_bias -> penalties (repetition, then frequency/presence) -> greedy argmax`, or, when sampling,
//! `-> top_k -> top_p -> min_p -> temperature -> softmax -> draw`. Cost per call is O(vocab): the row is copied into a
//! reused buffer (skipped on the greedy path when nothing adjusts logits); argmax, softmax weights and sums run
//! over fixed-size lanes so that they vectorize (with a libm-free `exp`); top-k is a heap scan or a selection,
//! never a sort; top-p is a weighted quickselect on integer keys; an untruncated distribution is sampled with a
//! cumulative draw over per-chunk sums, without sorting anything.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

use rand::distributions::{Distribution, Standard};
use rand::rngs::{OsRng, StdRng};
use rand::SeedableRng;

/// Default penalty window, as in llama.cpp (`--repeat-last-n 64`).
pub const DEFAULT_PENALTY_LAST_N: usize = 64;

/// Largest temperature [`SamplingParams::validate`] accepts.
const MAX_TEMPERATURE: f32 = 100.0;

/// Largest magnitude of presence / frequency penalty [`SamplingParams::validate`] accepts (OpenAI's range).
const MAX_OPENAI_PENALTY: f32 = 2.0;

/// Token ids are `i32`, so only the first `i32::MAX + 1` entries of a row are addressable. Every index below this
/// fits both `i32` and `u32`, which is the invariant behind the `as` casts on candidate indices.
const MAX_VOCAB: usize = i32::MAX as usize + 1;

/// Where top-p's first partition cuts: most of a language model's probability mass sits in a few dozen tokens.
const NUCLEUS_FIRST_PIVOT: usize = 63;

/// Top-p sorts the undecided range outright once it is this small.
const NUCLEUS_SORT_BELOW: usize = 64;

/// Largest top-k done by a heap scan; beyond it a selection over all candidates is cheaper.
const HEAP_TOP_K: usize = 128;

/// Heap replacements a top-k scan may make before it gives way to a selection. On rows in random order it makes
/// about k ln(n / k) (under 800 for k = 128 over 49k tokens).
const HEAP_REPLACEMENTS: usize = 4096;

/// Lanes of the vectorizable reductions.
const LANES: usize = 8;

/// Tokens per chunk of the untruncated cumulative draw.
const DRAW_CHUNK: usize = 256;

/// Sampling settings for one request.
///
/// Defaults are OpenAI-ish and neutral: temperature 1.0, top_p 1.0 (off), top_k 0 (off), min_p 0.0 (off),
/// penalties neutral over a 64-token window, no logit bias, seed `None`. [`SamplingParams::greedy`] is the same with
/// temperature 0.
///
/// [`Sampler`] never panics on out-of-range values; call [`SamplingParams::validate`] on user input to reject them
/// with a message instead of having them silently clamped or ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature. 0 (or less, or NaN) means greedy: argmax, ties to the lowest token id, like
    /// llama.cpp's greedy sampler. Applied after truncation (top-k / top-p / min-p), as in llama.cpp.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; 0 means off.
    pub top_k: u32,
    /// Nucleus sampling: keep the smallest set of most likely tokens whose probability (at temperature 1, after
    /// top-k) reaches `top_p`; 1.0 means off.
    pub top_p: f32,
    /// Drop tokens whose probability is below `min_p` times the top token's; 0.0 means off.
    pub min_p: f32,
    /// llama.cpp repetition penalty; 1.0 means off. Every distinct token in the last `penalty_last_n` tokens of the
    /// context (prompt included) has its logit divided by the penalty when positive, multiplied when not.
    pub repetition_penalty: f32,
    /// OpenAI presence penalty; 0.0 means off. Subtracted once from the logit of every token that was generated
    /// (not merely in the prompt) within the last `penalty_last_n` tokens.
    pub presence_penalty: f32,
    /// OpenAI frequency penalty; 0.0 means off. Subtracted `count` times from the logit of every token generated
    /// `count` times within the last `penalty_last_n` tokens.
    pub frequency_penalty: f32,
    /// Window of most recent context tokens (prompt and generated) the penalties look at; 0 disables penalties.
    pub penalty_last_n: usize,
    /// `(token, bias)` pairs added to the logits before anything else; `f32::NEG_INFINITY` bans a token. Repeated
    /// tokens add up; tokens outside the vocabulary are ignored.
    pub logit_bias: Vec<(i32, f32)>,
    /// RNG seed: the same seed and the same sequence of logits give the same tokens (for a given `rand` version).
    /// `None` seeds from the operating system.
    pub seed: Option<u64>,
    /// Structured output: only tokens that keep the output a valid prefix of this grammar may be sampled, and the
    /// end of generation only once the value is complete. Applied by the caller (the scheduler's sequence) as a
    /// mask before this sampler runs, see [`crate::constraint`]; the sampler itself ignores it.
    pub constraint: Option<std::sync::Arc<crate::JsonGrammar>>,
    /// Report each generated token's log probability with this many alternatives (at most
    /// [`crate::MAX_TOP_LOGPROBS`]); `None` reports nothing. Computed by the caller from the raw logits
    /// ([`crate::token_logprob`]); the sampler itself ignores it.
    pub logprobs: Option<usize>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            penalty_last_n: DEFAULT_PENALTY_LAST_N,
            logit_bias: Vec::new(),
            seed: None,
            constraint: None,
            logprobs: None,
        }
    }
}

impl SamplingParams {
    /// The defaults with temperature 0: deterministic argmax decoding.
    pub fn greedy() -> Self {
        Self { temperature: 0.0, ..Self::default() }
    }

    /// Whether sampling is greedy (temperature 0, negative or NaN); greedy sampling never touches the RNG.
    pub fn is_greedy(&self) -> bool {
        self.temperature.is_nan() || self.temperature <= 0.0
    }

    /// Checks every field against the range the API accepts; the error names the first offending field.
    ///
    /// Accepted: temperature finite in [0, 100]; top_p in (0, 1]; min_p in [0, 1]; repetition_penalty finite and
    /// positive; presence and frequency penalties in [-2, 2]; logit biases finite or `-inf` on token ids >= 0.
    /// Whether a biased token exists in the vocabulary is not known here; unknown ids are ignored when sampling.
    pub fn validate(&self) -> Result<(), SamplingError> {
        let t = self.temperature;
        if !(0.0..=MAX_TEMPERATURE).contains(&t) {
            return Err(invalid("temperature", format!("must be in [0, {MAX_TEMPERATURE}], got {t}")));
        }
        let p = self.top_p;
        if !(p > 0.0 && p <= 1.0) {
            return Err(invalid("top_p", format!("must be in (0, 1], got {p}")));
        }
        let m = self.min_p;
        if !(0.0..=1.0).contains(&m) {
            return Err(invalid("min_p", format!("must be in [0, 1], got {m}")));
        }
        let r = self.repetition_penalty;
        if !(r.is_finite() && r > 0.0) {
            return Err(invalid("repetition_penalty", format!("must be a finite number > 0, got {r}")));
        }
        let openai_range = -MAX_OPENAI_PENALTY..=MAX_OPENAI_PENALTY;
        if !openai_range.contains(&self.presence_penalty) {
            return Err(invalid("presence_penalty", format!("must be in [-2, 2], got {}", self.presence_penalty)));
        }
        if !openai_range.contains(&self.frequency_penalty) {
            return Err(invalid("frequency_penalty", format!("must be in [-2, 2], got {}", self.frequency_penalty)));
        }
        for &(token, bias) in &self.logit_bias {
            if token < 0 {
                return Err(invalid("logit_bias", format!("token id must be >= 0, got {token}")));
            }
            if bias.is_nan() || bias == f32::INFINITY {
                return Err(invalid(
                    "logit_bias",
                    format!("bias for token {token} must be finite or -inf, got {bias}"),
                ));
            }
        }
        Ok(())
    }

    fn repetition_active(&self) -> bool {
        let r = self.repetition_penalty;
        r.is_finite() && r > 0.0 && r != 1.0
    }

    /// A penalty that is NaN or infinite (only possible without `validate`) is treated as off.
    fn openai_penalty(value: f32) -> f32 {
        if value.is_finite() {
            value
        } else {
            0.0
        }
    }

    fn penalties_active(&self) -> bool {
        self.penalty_last_n > 0
            && (self.repetition_active()
                || Self::openai_penalty(self.presence_penalty) != 0.0
                || Self::openai_penalty(self.frequency_penalty) != 0.0)
    }
}

/// Why a [`SamplingParams`] was rejected.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SamplingError {
    /// A field is outside the accepted range.
    #[error("invalid sampling parameter {field}: {reason}")]
    Invalid {
        /// The field's name, as in [`SamplingParams`] (and the OpenAI request body).
        field: &'static str,
        /// What was wrong, including the rejected value.
        reason: String,
    },
}

fn invalid(field: &'static str, reason: String) -> SamplingError {
    SamplingError::Invalid { field, reason }
}

/// Whether a history token came from the prompt or was generated; only generated tokens count for the OpenAI
/// presence and frequency penalties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Prompt,
    Generated,
}

/// Occurrences of one token inside the penalty window.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    in_window: usize,
    generated: usize,
}

/// The last `last_n` context tokens and per-token counts over them, updated incrementally so that applying
/// penalties costs O(distinct tokens in the window), not O(window) or O(vocab).
#[derive(Debug, Default)]
struct PenaltyHistory {
    /// 0 when no penalty is active: nothing is recorded at all.
    last_n: usize,
    window: VecDeque<(i32, Origin)>,
    counts: HashMap<i32, Counts>,
}

impl PenaltyHistory {
    fn new(last_n: usize) -> Self {
        Self { last_n, ..Self::default() }
    }

    fn push(&mut self, token: i32, origin: Origin) {
        if self.last_n == 0 {
            return;
        }
        if self.window.len() >= self.last_n {
            if let Some((old, old_origin)) = self.window.pop_front() {
                self.forget(old, old_origin);
            }
        }
        self.window.push_back((token, origin));
        let counts = self.counts.entry(token).or_default();
        counts.in_window += 1;
        if origin == Origin::Generated {
            counts.generated += 1;
        }
    }

    fn forget(&mut self, token: i32, origin: Origin) {
        if let Some(counts) = self.counts.get_mut(&token) {
            counts.in_window = counts.in_window.saturating_sub(1);
            if origin == Origin::Generated {
                counts.generated = counts.generated.saturating_sub(1);
            }
            if counts.in_window == 0 {
                self.counts.remove(&token);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// llama.cpp's penalties sampler, except that presence/frequency count generated tokens only.
    fn apply(&self, params: &SamplingParams, logits: &mut [f32]) {
        let repetition = params.repetition_active().then_some(params.repetition_penalty);
        let presence = SamplingParams::openai_penalty(params.presence_penalty);
        let frequency = SamplingParams::openai_penalty(params.frequency_penalty);
        for (&token, counts) in &self.counts {
            let Some(logit) = slot(logits, token) else {
                continue;
            };
            let mut value = *logit;
            if let Some(penalty) = repetition {
                value = if value > 0.0 { value / penalty } else { value * penalty };
            }
            if counts.generated > 0 {
                value -= counts.generated as f32 * frequency + presence;
            }
            *logit = sanitize(value);
        }
    }
}

/// Per-sequence sampler state: the params, the RNG and the token history used for penalties, plus scratch buffers
/// reused across calls so that sampling allocates nothing once warm.
pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    history: PenaltyHistory,
    /// Adjusted logits of the current row; the untruncated path turns them into weights in place.
    logits: Vec<f32>,
    /// Per-token weights for the truncating path (only the candidates' entries are meaningful).
    weights: Vec<f32>,
    /// Candidate sort keys (see [`candidate_key`]) for the truncating path.
    candidates: Vec<u64>,
    /// Per-chunk weight sums for the untruncated path's cumulative draw.
    chunk_sums: Vec<f64>,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("params", &self.params)
            .field("history_len", &self.history.window.len())
            .finish_non_exhaustive()
    }
}

impl Sampler {
    /// A sampler for one sequence. `params` is used as given: validate user input first.
    ///
    /// With `seed: None` the RNG is seeded from the operating system (`OsRng`, available because `rand`'s `std`
    /// feature enables `getrandom`); should that fail, from the system clock hashed with std's per-process random
    /// keys, so construction never panics.
    pub fn new(params: SamplingParams) -> Self {
        let rng = match params.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_rng(OsRng).unwrap_or_else(|_| StdRng::seed_from_u64(fallback_seed())),
        };
        let last_n = if params.penalties_active() { params.penalty_last_n } else { 0 };
        Self {
            params,
            rng,
            history: PenaltyHistory::new(last_n),
            logits: Vec::new(),
            weights: Vec::new(),
            candidates: Vec::new(),
            chunk_sums: Vec::new(),
        }
    }

    /// Tokens already in context (e.g. the prompt) that count for the penalty window.
    ///
    /// As in llama.cpp, the repetition penalty looks at the last `penalty_last_n` tokens of the whole context,
    /// prompt included. The OpenAI presence and frequency penalties count generated tokens only (OpenAI's
    /// semantics), so prompt tokens merely occupy window slots for them. Call before the first [`Sampler::sample`];
    /// calling again later appends more context (e.g. a tool result) and counts it as prompt.
    pub fn accept_prompt(&mut self, tokens: &[i32]) {
        let start = tokens.len().saturating_sub(self.history.last_n);
        for &token in &tokens[start..] {
            self.history.push(token, Origin::Prompt);
        }
    }

    /// Picks the next token from one row of logits (length = vocabulary size). Does NOT record it: call
    /// [`Sampler::accept`] with the token actually emitted.
    ///
    /// NaN logits count as `-inf`. The stochastic path draws exactly one number from the RNG per call (none for the
    /// degenerate rows below); the greedy path draws none. Degenerate rows still yield a token rather than a panic:
    /// if any logit is `+inf` the lowest such id is returned, and if every token is `-inf` after bias and penalties
    /// (an empty row, or a fully banned vocabulary) the result is 0.
    pub fn sample(&mut self, logits: &[f32]) -> i32 {
        let logits = &logits[..logits.len().min(MAX_VOCAB)];
        let greedy = self.params.is_greedy();
        if greedy && self.params.logit_bias.is_empty() && self.history.is_empty() {
            return argmax(logits);
        }
        self.adjust(logits);
        if greedy {
            return argmax(&self.logits);
        }
        let max = max_logit(&self.logits);
        if !max.is_finite() {
            // No distribution to draw from: everything banned, or +inf dominates (argmax finds the first +inf).
            return argmax(&self.logits);
        }
        let u: f64 = Standard.sample(&mut self.rng);
        let temperature = self.params.temperature;
        let top_k = usize::try_from(self.params.top_k).unwrap_or(usize::MAX);
        let truncates = (top_k > 0 && top_k < self.logits.len()) || self.params.top_p < 1.0;
        if truncates {
            self.truncate(max);
            self.draw_candidates(max, temperature, u)
        } else {
            let floor = min_p_floor(max, self.params.min_p);
            draw_full(&mut self.logits, &mut self.chunk_sums, [max, floor, temperature], u)
        }
    }

    /// Records a token as generated (updates the penalty history).
    pub fn accept(&mut self, token: i32) {
        self.history.push(token, Origin::Generated);
    }

    /// The params this sampler was built with.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Copies `logits` into the scratch buffer (NaN -> -inf), then applies logit bias and penalties.
    fn adjust(&mut self, logits: &[f32]) {
        self.logits.clear();
        self.logits.extend(logits.iter().map(|&l| sanitize(l)));
        for &(token, bias) in &self.params.logit_bias {
            if let Some(logit) = slot(&mut self.logits, token) {
                *logit = sanitize(*logit + bias);
            }
        }
        self.history.apply(&self.params, &mut self.logits);
    }

    /// Fills `self.candidates` with the keys of the tokens that survive top-k, top-p and min-p, in llama.cpp's
    /// order. `max` is the largest adjusted logit, finite.
    fn truncate(&mut self, max: f32) {
        let logits = &self.logits;
        let candidates = &mut self.candidates;
        let weights = &mut self.weights;
        let top_k = usize::try_from(self.params.top_k).unwrap_or(usize::MAX);
        let top_k = if top_k < logits.len() { top_k } else { 0 };
        let top_p = self.params.top_p;
        let nucleus = top_p < 1.0; // NaN: off
        let floor = min_p_floor(max, self.params.min_p);
        candidates.clear();
        weights.resize(logits.len(), 0.0);
        let total = if top_k > 0 {
            // Top-k and min-p each keep a prefix of the descending order, so min-p may go first and shrink the
            // work; top-p normalizes over the top-k survivors, so with top-p min-p has to wait.
            let early_floor = if nucleus { f32::NEG_INFINITY } else { floor };
            if top_k > HEAP_TOP_K || !top_k_keys(logits, top_k, early_floor, candidates) {
                candidates.clear();
                push_keys(logits, early_floor, candidates);
                if top_k < candidates.len() {
                    candidates.select_nth_unstable(top_k - 1);
                    candidates.truncate(top_k);
                }
            }
            if !nucleus {
                return;
            }
            let mut total = 0.0;
            for &key in candidates.iter() {
                if let Some(w) = weights.get_mut(key_index(key)) {
                    *w = exp_nonpositive(logit_of(logits, key) - max);
                    total += f64::from(*w);
                }
            }
            candidates.retain(|&key| logit_of(logits, key) >= floor);
            total
        } else {
            // Tokens below `cut` weigh less than (1 - top_p) / n each, so together less than (1 - top_p) of the
            // total (>= 1, the top token's weight): the nucleus lies above `cut`. The sums double-check it.
            let cut = (max + ((1.0 - top_p) / logits.len() as f32).ln()).min(max);
            let (total, above) = weigh_row(logits, max, cut, weights);
            let lowest = if nucleus && above >= f64::from(top_p) * total { floor.max(cut) } else { floor };
            push_keys(logits, lowest, candidates);
            if !nucleus {
                return;
            }
            total
        };
        let len = nucleus_len(candidates, weights, f64::from(top_p) * total);
        candidates.truncate(len);
    }

    /// Draws from the softmax (at `temperature`) of the candidates left by [`Sampler::truncate`].
    fn draw_candidates(&mut self, max: f32, temperature: f32, u: f64) -> i32 {
        self.weights.resize(self.logits.len(), 0.0);
        let mut total = 0.0;
        for &key in &self.candidates {
            let i = key_index(key);
            if let (Some(w), Some(&l)) = (self.weights.get_mut(i), self.logits.get(i)) {
                *w = exp_nonpositive((l - max) / temperature);
                total += f64::from(*w);
            }
        }
        let target = u * total;
        let mut cumulative = 0.0;
        let mut last = None;
        for &key in &self.candidates {
            let w = self.weights.get(key_index(key)).copied().unwrap_or(0.0);
            if w > 0.0 {
                cumulative += f64::from(w);
                last = Some(key);
                if target < cumulative {
                    return to_token(key_index(key));
                }
            }
        }
        // Only reachable through rounding (or no candidates, which a finite `max` rules out).
        last.map_or(0, |key| to_token(key_index(key)))
    }
}

/// Seed for `seed: None` when the OS RNG fails: the clock hashed with std's randomly keyed hasher (whose keys also
/// differ per `RandomState`), so two samplers created in the same nanosecond still differ.
fn fallback_seed() -> u64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(nanos);
    hasher.finish()
}

mod kernels;

use kernels::*;
pub use kernels::{argmax, top2_gap};

#[cfg(test)]
mod tests;
