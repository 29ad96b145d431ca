//! The sampler's per-row arithmetic: argmax, the lane-wise max/sum/exp that vectorize, candidate keys,
//! top-k, min-p, the nucleus quickselect and the cumulative draw. Pure functions over one logits row.

use std::collections::BinaryHeap;

use super::{DRAW_CHUNK, HEAP_REPLACEMENTS, LANES, MAX_VOCAB, NUCLEUS_FIRST_PIVOT, NUCLEUS_SORT_BELOW};

/// Index of the largest logit, ties to the lowest index; NaN counts as `-inf`. Returns 0 for an empty row or one
/// with nothing above `-inf`. Only the first `i32::MAX + 1` entries are looked at (token ids are `i32`).
pub fn argmax(logits: &[f32]) -> i32 {
    let logits = &logits[..logits.len().min(MAX_VOCAB)];
    // One pass over fixed-size lanes so that it vectorizes: each lane keeps its maximum and where it first saw it
    // (strict `>`: NaN never wins, and later equal values do not replace earlier ones).
    let mut best = [f32::NEG_INFINITY; LANES];
    let mut at = [0u32; LANES];
    let mut chunks = logits.chunks_exact(LANES);
    for (c, chunk) in (&mut chunks).enumerate() {
        if let Ok(chunk) = <&[f32; LANES]>::try_from(chunk) {
            let base = (c * LANES) as u32; // < MAX_VOCAB
            for (j, ((best, at), &l)) in best.iter_mut().zip(&mut at).zip(chunk).enumerate() {
                if l > *best {
                    *best = l;
                    *at = base + j as u32;
                }
            }
        }
    }
    let done = logits.len() - chunks.remainder().len();
    let tail = chunks.remainder().iter().enumerate().map(|(j, &l)| (l, (done + j) as u32));
    let (mut max, mut index) = (f32::NEG_INFINITY, 0);
    for (l, i) in best.into_iter().zip(at).chain(tail) {
        if l > max || (l == max && i < index) {
            (max, index) = (l, i);
        }
    }
    if max == f32::NEG_INFINITY {
        0
    } else {
        to_token(index as usize)
    }
}

/// Gap between the largest and second-largest logits (NaN counts as `-inf`), for "nearly tied" diagnostics: 0 when
/// the top two are tied (including both infinite), `f32::INFINITY` when there are fewer than two logits or only
/// the top one is above `-inf`.
pub fn top2_gap(logits: &[f32]) -> f32 {
    if logits.len() < 2 {
        return f32::INFINITY;
    }
    let mut first = f32::NEG_INFINITY;
    let mut second = f32::NEG_INFINITY;
    for &logit in logits {
        let logit = sanitize(logit);
        if logit > first {
            second = first;
            first = logit;
        } else if logit > second {
            second = logit;
        }
    }
    let gap = first - second;
    if gap.is_nan() {
        0.0
    } else {
        gap
    }
}

pub(super) fn sanitize(logit: f32) -> f32 {
    if logit.is_nan() {
        f32::NEG_INFINITY
    } else {
        logit
    }
}

pub(super) fn slot(logits: &mut [f32], token: i32) -> Option<&mut f32> {
    usize::try_from(token).ok().and_then(|i| logits.get_mut(i))
}

pub(super) fn to_token(index: usize) -> i32 {
    i32::try_from(index).unwrap_or(i32::MAX)
}

/// Largest logit, NaN ignored (`-inf` for an empty row), over eight independent lanes so that it vectorizes.
pub(super) fn max_logit(logits: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let mut chunks = logits.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (lane, &l) in lanes.iter_mut().zip(chunk) {
            *lane = if l > *lane { l } else { *lane };
        }
    }
    let rest = chunks.remainder().iter().chain(&lanes);
    rest.fold(f32::NEG_INFINITY, |m, &l| if l > m { l } else { m })
}

/// Sum in f64 over eight independent lanes, so that it vectorizes; the grouping is fixed, hence deterministic.
pub(super) fn lane_sum(values: &[f32]) -> f64 {
    let mut lanes = [0.0f64; LANES];
    let mut chunks = values.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (lane, &v) in lanes.iter_mut().zip(chunk) {
            *lane += f64::from(v);
        }
    }
    let rest: f64 = chunks.remainder().iter().map(|&v| f64::from(v)).sum();
    lanes.iter().sum::<f64>() + rest
}

/// `e^x` for `x <= 0` (Cephes' `expf`: relative error below 1e-7), 0 below -87 (where f32 turns subnormal) and for
/// NaN. Branch-free and libm-free so that loops over a whole row vectorize; also the same bits on every platform.
pub(super) fn exp_nonpositive(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer, kept in the low mantissa bits.
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4; // x - n ln 2, ln 2 split for precision
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1)
        * r
        + 0.5;
    let e_r = p * (r * r) + r + 1.0;
    // 2^n built from n's bits in `t` (no float -> int conversion, which would not vectorize). For x < -87 or NaN
    // these bits are garbage, and the select below discards them.
    let two_n = f32::from_bits(t.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127).wrapping_shl(23));
    if x >= -87.0 {
        e_r * two_n
    } else {
        0.0
    }
}

/// Sort key of a candidate: ascending key order is descending logit, then ascending token id (the greedy tie
/// rule), so selections and sorts compare plain integers. The token id is the low 32 bits.
pub(super) fn candidate_key(index: usize, logit: f32) -> u64 {
    // `+ 0.0` turns -0.0 into 0.0: they must tie.
    let bits = (logit + 0.0).to_bits();
    // IEEE order as unsigned order: negative floats reversed below positive ones.
    let ascending = if bits >> 31 == 1 { !bits } else { bits | 0x8000_0000 };
    // index < MAX_VOCAB fits 32 bits.
    (u64::from(!ascending) << 32) | index as u64
}

pub(super) fn key_index(key: u64) -> usize {
    (key & u64::from(u32::MAX)) as usize
}

pub(super) fn logit_of(logits: &[f32], key: u64) -> f32 {
    logits.get(key_index(key)).copied().unwrap_or(f32::NEG_INFINITY)
}

/// Appends the keys of the finite logits at or above `floor`.
pub(super) fn push_keys(logits: &[f32], floor: f32, out: &mut Vec<u64>) {
    let kept = logits.iter().enumerate().filter(|&(_, &l)| l > f32::NEG_INFINITY && l >= floor);
    out.extend(kept.map(|(i, &l)| candidate_key(i, l)));
}

/// Fills `weights` with `e^(l - max)` for the whole row; returns their total and the part from logits >= `cut`.
/// Separate simple passes over fixed-size lanes, so that each vectorizes.
pub(super) fn weigh_row(logits: &[f32], max: f32, cut: f32, weights: &mut [f32]) -> (f64, f64) {
    for (w, &l) in weights.iter_mut().zip(logits) {
        *w = exp_nonpositive(l - max);
    }
    let mut above = [0.0f64; LANES];
    let mut weight_chunks = weights.chunks_exact(LANES);
    let mut logit_chunks = logits.chunks_exact(LANES);
    for (w, l) in (&mut weight_chunks).zip(&mut logit_chunks) {
        if let (Ok(w), Ok(l)) = (<&[f32; LANES]>::try_from(w), <&[f32; LANES]>::try_from(l)) {
            for ((above, &w), &l) in above.iter_mut().zip(w).zip(l) {
                *above += f64::from(if l >= cut { w } else { 0.0 });
            }
        }
    }
    let rest = weight_chunks.remainder().iter().zip(logit_chunks.remainder());
    let rest: f64 = rest.map(|(&w, &l)| f64::from(if l >= cut { w } else { 0.0 })).sum();
    (lane_sum(weights), above.iter().sum::<f64>() + rest)
}

/// The keys of the `k` best logits at or above `floor` (k >= 1), by one scan that keeps a max-heap of keys whose
/// top is the worst one kept: most tokens cost a single comparison with that token's logit. Returns false, with
/// `out` in no useful state, when the row makes the heap churn (e.g. logits ascending with the id), so that the
/// caller can switch to a selection instead of paying n log k.
pub(super) fn top_k_keys(logits: &[f32], k: usize, floor: f32, out: &mut Vec<u64>) -> bool {
    out.clear();
    let mut heap = BinaryHeap::from(std::mem::take(out)); // empty, keeps the allocation
    let mut rest = logits.iter().enumerate();
    for (i, &l) in rest.by_ref() {
        if l > f32::NEG_INFINITY && l >= floor {
            heap.push(candidate_key(i, l));
            if heap.len() >= k {
                break;
            }
        }
    }
    let mut churned = false;
    if let Some(&top) = heap.peek().filter(|_| heap.len() >= k) {
        let mut worst = logit_of(logits, top);
        let mut budget = HEAP_REPLACEMENTS;
        // Later ids lose ties, so only a strictly larger logit displaces the worst kept token.
        for (i, &l) in rest {
            if l > worst {
                if budget == 0 {
                    churned = true;
                    break;
                }
                budget -= 1;
                if let Some(mut top) = heap.peek_mut() {
                    *top = candidate_key(i, l);
                }
                worst = heap.peek().map_or(l, |&top| logit_of(logits, top));
            }
        }
    }
    *out = heap.into_vec();
    !churned
}

/// Lowest logit min-p keeps: p_i >= min_p * p_max  <=>  l_i >= l_max + ln(min_p). `-inf` when min-p is off.
pub(super) fn min_p_floor(max: f32, min_p: f32) -> f32 {
    if min_p > 0.0 {
        max + min_p.min(1.0).ln()
    } else {
        f32::NEG_INFINITY
    }
}

/// Length of the nucleus: the shortest prefix of the descending order whose `weights` reach `target` (all
/// candidates if they never do), moved to the front of `keys` (in no particular order). A weighted quickselect:
/// each round partitions the undecided range and keeps the half the boundary lies in, so the cost is O(n) however
/// flat the distribution; the first pivot is the 64th candidate, since the nucleus is usually that small.
pub(super) fn nucleus_len(keys: &mut [u64], weights: &[f32], target: f64) -> usize {
    let weight = |key: &u64| f64::from(weights.get(key_index(*key)).copied().unwrap_or(0.0));
    let (mut lo, mut hi) = (0, keys.len());
    // Mass of keys[..lo]: the best `lo` candidates, all inside the nucleus and short of the target.
    let mut above = 0.0;
    let mut pivot = NUCLEUS_FIRST_PIVOT;
    while hi - lo > NUCLEUS_SORT_BELOW {
        let mid = lo + pivot.min((hi - lo) / 2);
        keys[lo..hi].select_nth_unstable(mid - lo);
        let upper: f64 = keys[lo..=mid].iter().map(weight).sum();
        if above + upper >= target {
            hi = mid + 1;
        } else {
            above += upper;
            lo = mid + 1;
        }
        pivot = usize::MAX;
    }
    keys[lo..hi].sort_unstable();
    let mut cumulative = above;
    for (i, key) in keys.iter().enumerate().take(hi).skip(lo) {
        cumulative += weight(key);
        if cumulative >= target {
            return i + 1;
        }
    }
    hi
}

/// Draws from the softmax of the whole row without sorting it. `logits` become weights in place (0 for `-inf` and
/// below the min-p `floor`), summed per chunk; the draw then walks the chunk sums and scans one chunk.
/// `[max, floor, temperature]`: the largest logit (finite), the min-p floor, the temperature (> 0).
pub(super) fn draw_full(
    logits: &mut [f32],
    chunk_sums: &mut Vec<f64>,
    [max, floor, temperature]: [f32; 3],
    u: f64,
) -> i32 {
    chunk_sums.clear();
    let mut total = 0.0;
    for chunk in logits.chunks_mut(DRAW_CHUNK) {
        for value in chunk.iter_mut() {
            let l = *value;
            let w = exp_nonpositive((l - max) / temperature);
            *value = if l > f32::NEG_INFINITY && l >= floor { w } else { 0.0 };
        }
        let sum = lane_sum(chunk);
        chunk_sums.push(sum);
        total += sum;
    }
    let weights: &[f32] = logits;
    let target = u * total;
    let mut before = 0.0;
    let mut last = None;
    for (c, &sum) in chunk_sums.iter().enumerate() {
        if sum > 0.0 {
            if target < before + sum {
                return pick_in_chunk(weights, c, before, target);
            }
            last = Some(c);
            before += sum;
        }
    }
    // Only reachable through rounding: the last token with any weight.
    last.map_or(0, |c| pick_in_chunk(weights, c, 0.0, f64::INFINITY))
}

/// Cumulative scan of chunk `c`, starting from the mass `before` it; the chunk's last weighted token if rounding
/// keeps `target` out of reach.
pub(super) fn pick_in_chunk(weights: &[f32], c: usize, before: f64, target: f64) -> i32 {
    let start = c.saturating_mul(DRAW_CHUNK);
    let chunk = weights.get(start..).unwrap_or(&[]);
    let mut cumulative = before;
    let mut last = start;
    for (i, &w) in chunk.iter().take(DRAW_CHUNK).enumerate() {
        if w > 0.0 {
            cumulative += f64::from(w);
            last = start + i;
            if target < cumulative {
                break;
            }
        }
    }
    to_token(last)
}
