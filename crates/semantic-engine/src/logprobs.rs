//! Log probabilities of a sampled token and its most likely alternatives, for the APIs' `logprobs`: the log-softmax
//! of the model's raw logits (before logit bias, penalties, temperature, truncation or a structured-output mask),
//! which is what the model itself says about each token. Does not sample.

use crate::TokenId;

/// Most alternatives reported per token (OpenAI's limit for `top_logprobs`).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// One generated token's log probability and its `top` most likely alternatives (most likely first).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenLogprob {
    /// The token sampled.
    pub token: TokenId,
    /// Its log probability.
    pub logprob: f32,
    /// The most likely tokens with their log probabilities, most likely first (ties: lower id first).
    pub top: Vec<(TokenId, f32)>,
}

/// Log-softmax of `logits` at `token`, with the `top` (at most [`MAX_TOP_LOGPROBS`]) most likely tokens.
/// O(vocab): one pass for the maximum, one for the normalizer, one for the top list.
pub fn token_logprob(logits: &[f32], token: TokenId, top: usize) -> TokenLogprob {
    let top = top.min(MAX_TOP_LOGPROBS);
    let max = logits.iter().copied().filter(|l| !l.is_nan()).fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().filter(|l| !l.is_nan()).map(|&l| f64::from(l - max).exp()).sum();
    let log_z = max + sum.ln() as f32;
    let lp = |l: f32| if l.is_nan() { f32::NEG_INFINITY } else { l - log_z };
    let logprob = usize::try_from(token).ok().and_then(|i| logits.get(i)).map_or(f32::NEG_INFINITY, |&l| lp(l));
    let mut best: Vec<(TokenId, f32)> = Vec::with_capacity(top + 1);
    if top > 0 {
        for (i, &l) in logits.iter().enumerate() {
            if l.is_nan() || (best.len() == top && l <= best[top - 1].1) {
                continue;
            }
            let at = best.partition_point(|&(_, b)| b >= l);
            best.insert(at, (i as TokenId, l));
            best.truncate(top);
        }
    }
    TokenLogprob { token, logprob, top: best.into_iter().map(|(t, l)| (t, lp(l))).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_direct_log_softmax() {
        let logits = [1.0f32, 3.0, -2.0, 3.0, 0.5];
        let z: f64 = logits.iter().map(|&l| f64::from(l).exp()).sum();
        let want = |i: usize| (f64::from(logits[i]) - z.ln()) as f32;
        let got = token_logprob(&logits, 4, 3);
        assert!((got.logprob - want(4)).abs() < 1e-5);
        let ids: Vec<TokenId> = got.top.iter().map(|&(t, _)| t).collect();
        assert_eq!(ids, vec![1, 3, 0], "most likely first, ties to the lower id");
        for &(t, l) in &got.top {
            assert!((l - want(t as usize)).abs() < 1e-5);
        }
        assert!(token_logprob(&logits, 1, 0).top.is_empty());
        assert_eq!(token_logprob(&logits, 1, 99).top.len(), 5);
    }
}
