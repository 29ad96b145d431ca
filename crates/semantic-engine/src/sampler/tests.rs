//! Sampler tests: each filter and penalty, seeds, stop tokens and their edge cases.

use super::*;

/// ln 0.5, ln 0.3, ln 0.2: softmax gives back 0.5, 0.3, 0.2.
fn ln_probs() -> [f32; 3] {
    [0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()]
}

type Mutate = fn(&mut SamplingParams);
/// (case, params, generated tokens, logits, expected token)
type Outcome<'a> = (&'a str, Mutate, &'a [i32], &'a [f32], i32);
/// (case, params, prompt, generated tokens, logits, expected adjusted logits)
type Adjusted<'a> = (&'a str, Mutate, &'a [i32], &'a [i32], &'a [f32], &'a [f32]);

fn seeded(params: &SamplingParams, seed: u64) -> Sampler {
    Sampler::new(SamplingParams { seed: Some(seed), ..params.clone() })
}

const NAN: f32 = f32::NAN;
const INF: f32 = f32::INFINITY;

fn with(f: impl FnOnce(&mut SamplingParams)) -> SamplingParams {
    let mut params = SamplingParams::default();
    f(&mut params);
    params
}

/// A case whose outcome does not depend on the seed: sampled under 20 seeds after accepting `generated`.
fn check(case: &str, mutate: Mutate, generated: &[i32], logits: &[f32], expected: i32) {
    let params = with(mutate);
    for seed in 0..20 {
        let mut sampler = seeded(&params, seed);
        for &token in generated {
            sampler.accept(token);
        }
        let got = sampler.sample(logits);
        assert_eq!(got, expected, "{case} (seed {seed}): {params:?}, logits {logits:?}");
    }
}

#[test]
fn deterministic_outcomes() {
    // One case per line reads as a table; rustfmt would break the long ones.
    #[rustfmt::skip]
    let cases: &[Outcome] = &[
        ("greedy", |p| p.temperature = 0.0, &[], &[0.1, 2.0, -1.0], 1),
        ("greedy tie -> lowest id", |p| p.temperature = 0.0, &[], &[1.0, 3.0, 3.0], 1),
        ("greedy -0 ties 0", |p| p.temperature = 0.0, &[], &[-0.0, 0.0], 0),
        ("greedy NaN is -inf", |p| p.temperature = 0.0, &[], &[NAN, 0.5, NAN], 1),
        ("greedy all NaN", |p| p.temperature = 0.0, &[], &[NAN, NAN], 0),
        ("greedy empty row", |p| p.temperature = 0.0, &[], &[], 0),
        ("greedy -inf row", |p| p.temperature = 0.0, &[], &[-INF, -1e30], 1),
        ("greedy ignores top_k/top_p", |p| (p.temperature, p.top_p, p.top_k) = (0.0, 0.1, 3), &[], &[0.0, 1.0, 0.5], 1),
        ("negative temperature is greedy", |p| p.temperature = -1.0, &[], &[0.0, 1.0, 0.5], 1),
        ("NaN temperature is greedy", |p| p.temperature = NAN, &[], &[0.0, 1.0, 0.5], 1),
        ("top_k 1 = greedy", |p| p.top_k = 1, &[], &[1.0, 3.0, 3.0, 2.9], 1),
        ("top_k 1 -0 ties 0", |p| p.top_k = 1, &[], &[-0.0, 0.0], 0),
        ("top_k 1 NaN is -inf", |p| p.top_k = 1, &[], &[NAN, 0.5, NAN], 1),
        ("tiny top_p", |p| p.top_p = 1e-6, &[], &[1.0, 1.2, 1.1], 1),
        ("tiny top_p after top_k", |p| (p.top_p, p.top_k) = (1e-6, 2), &[], &[1.0, 1.2, 1.1], 1),
        ("top_p <= 0 keeps the top", |p| p.top_p = -1.0, &[], &[1.0, 1.2, 1.1], 1),
        // e^-0.5 < 0.7: only token 0 survives min_p, on the untruncated and the truncating path.
        ("min_p", |p| p.min_p = 0.7, &[], &[0.0, -0.5, -0.9], 0),
        ("min_p after top_k", |p| (p.min_p, p.top_k) = (0.7, 2), &[], &[0.0, -0.5, -0.9], 0),
        ("min_p with top_p", |p| (p.min_p, p.top_p) = (0.7, 0.99), &[], &[0.0, -0.5, -0.9], 0),
        ("min_p > 1 keeps the top", |p| p.min_p = 5.0, &[], &[0.0, -0.5, -0.9], 0),
        ("low temperature", |p| p.temperature = 1e-4, &[], &[1.0, 1.5, 1.4], 1),
        ("low temperature after top_k", |p| (p.temperature, p.top_k) = (1e-4, 2), &[], &[1.0, 1.5, 1.4], 1),
        ("-inf bias bans (greedy)", |p| (p.temperature, p.logit_bias) = (0.0, vec![(1, -INF)]), &[], &[0.1, 2.0, 1.0], 2),
        ("-inf bias bans (sampled)", |p| p.logit_bias = vec![(1, -INF)], &[], &[0.0, 5.0, -100.0], 0),
        ("large bias forces (sampled)", |p| p.logit_bias = vec![(2, 100.0)], &[], &[1.0, 2.0, 0.0], 2),
        ("large bias forces (greedy)", |p| (p.temperature, p.logit_bias) = (0.0, vec![(2, 100.0)]), &[], &[1.0, 2.0, 0.0], 2),
        ("bias on unknown id ignored", |p| (p.temperature, p.logit_bias) = (0.0, vec![(7, 100.0)]), &[], &[1.0, 2.0, 0.0], 1),
        // Banning the whole vocabulary has no right answer; it yields 0 rather than a panic.
        ("all banned", |p| p.logit_bias = vec![(0, -INF), (1, -INF)], &[], &[1.0, 2.0], 0),
        ("all banned, top_k", |p| (p.logit_bias, p.top_k) = (vec![(0, -INF), (1, -INF)], 1), &[], &[1.0, 2.0], 0),
        ("+inf wins, lowest id", |_| {}, &[], &[0.0, INF, INF], 1),
        // 2.0 / 1.5 < 1.9, 2.0 - 0.2 < 1.9: each penalty flips the greedy choice.
        ("repetition flips greedy", |p| (p.temperature, p.repetition_penalty) = (0.0, 1.5), &[0], &[2.0, 1.9], 1),
        ("frequency flips greedy", |p| (p.temperature, p.frequency_penalty) = (0.0, 0.2), &[0], &[2.0, 1.9], 1),
        ("presence flips greedy", |p| (p.temperature, p.presence_penalty) = (0.0, 0.2), &[0], &[2.0, 1.9], 1),
        ("repetition, sampled", |p| (p.top_k, p.repetition_penalty) = (1, 1.5), &[0], &[2.0, 1.9], 1),
    ];
    for &(case, mutate, generated, logits, expected) in cases {
        check(case, mutate, generated, logits, expected);
    }
}

#[test]
fn bias_and_penalties() {
    /// Applies bias and penalties after `prompt` and `generated`, and compares the adjusted row.
    fn check_adjusted(case: &str, mutate: Mutate, prompt: &[i32], generated: &[i32], logits: &[f32], want: &[f32]) {
        let mut sampler = seeded(&with(mutate), 0);
        sampler.accept_prompt(prompt);
        for &token in generated {
            sampler.accept(token);
        }
        sampler.adjust(logits);
        let close = |(a, b): (&f32, &f32)| a == b || (a - b).abs() < 1e-5;
        let same = sampler.logits.len() == want.len() && sampler.logits.iter().zip(want).all(close);
        assert!(same, "{case}: got {:?}, want {want:?}", sampler.logits);
    }
    const L: &[f32] = &[2.0, -2.0, 1.0];
    #[rustfmt::skip]
    let cases: &[Adjusted] = &[
        ("neutral", |_| {}, &[], &[0, 1], L, L),
        ("repetition: positive / r, negative * r", |p| p.repetition_penalty = 2.0, &[], &[0, 1], L, &[1.0, -4.0, 1.0]),
        ("repetition once per distinct token", |p| p.repetition_penalty = 2.0, &[], &[0, 0, 0], L, &[1.0, -2.0, 1.0]),
        ("repetition < 1 boosts", |p| p.repetition_penalty = 0.5, &[], &[0], L, &[4.0, -2.0, 1.0]),
        ("repetition of a zero logit", |p| p.repetition_penalty = 2.0, &[], &[0], &[0.0, 1.0], &[0.0, 1.0]),
        ("frequency scales with count", |p| p.frequency_penalty = 0.5, &[], &[0, 0, 0, 2], L, &[0.5, -2.0, 0.5]),
        ("negative frequency boosts", |p| p.frequency_penalty = -0.5, &[], &[1, 1], L, &[2.0, -1.0, 1.0]),
        ("presence applies once", |p| p.presence_penalty = 0.5, &[], &[0, 0, 0, 2], L, &[1.5, -2.0, 0.5]),
        ("repetition, then frequency + presence", |p| (p.repetition_penalty, p.frequency_penalty, p.presence_penalty) = (2.0, 0.5, 0.25), &[], &[0, 0], L, &[-0.25, -2.0, 1.0]),
        ("prompt counts for repetition", |p| p.repetition_penalty = 2.0, &[0, 1], &[], L, &[1.0, -4.0, 1.0]),
        ("prompt not for frequency", |p| p.frequency_penalty = 0.5, &[0, 1], &[], L, L),
        ("prompt not for presence", |p| p.presence_penalty = 0.5, &[0, 1], &[], L, L),
        ("prompt + generated", |p| (p.repetition_penalty, p.frequency_penalty, p.presence_penalty) = (2.0, 0.5, 0.25), &[0], &[0], L, &[0.25, -2.0, 1.0]),
        ("window drops old generated", |p| (p.penalty_last_n, p.frequency_penalty) = (2, 1.0), &[], &[0, 1, 2], L, &[2.0, -3.0, 0.0]),
        ("window keeps the prompt's tail", |p| (p.penalty_last_n, p.repetition_penalty) = (2, 2.0), &[0, 1, 2, 1], &[], L, &[2.0, -4.0, 0.5]),
        ("window spans prompt and generated", |p| (p.penalty_last_n, p.repetition_penalty) = (3, 2.0), &[0, 1], &[2, 2], L, &[2.0, -4.0, 0.5]),
        ("window counts generated only", |p| (p.penalty_last_n, p.frequency_penalty) = (3, 1.0), &[0, 0, 0], &[0, 1], L, &[1.0, -3.0, 1.0]),
        ("window 0 disables", |p| (p.penalty_last_n, p.repetition_penalty) = (0, 2.0), &[0], &[1, 2], L, L),
        ("huge window", |p| (p.penalty_last_n, p.frequency_penalty) = (usize::MAX, 1.0), &[], &[0; 100], L, &[-98.0, -2.0, 1.0]),
        ("unknown ids in history ignored", |p| p.frequency_penalty = 1.0, &[-5], &[-1, 3, 99], L, L),
        ("biases add up, unknown ids ignored", |p| p.logit_bias = vec![(0, 1.0), (0, 1.0), (9, 5.0), (-1, 5.0)], &[], &[], L, &[4.0, -2.0, 1.0]),
        ("-inf bias", |p| p.logit_bias = vec![(1, -INF)], &[], &[], L, &[2.0, -INF, 1.0]),
        ("NaN logit and NaN bias -> -inf", |p| p.logit_bias = vec![(2, NAN)], &[], &[], &[NAN, 1.0, 1.0], &[-INF, 1.0, -INF]),
        // Penalties that validate rejects are treated as off rather than poisoning the row.
        ("repetition 0 is off", |p| p.repetition_penalty = 0.0, &[], &[0], L, L),
        ("NaN frequency is off", |p| p.frequency_penalty = NAN, &[], &[0], L, L),
        ("infinite presence is off", |p| p.presence_penalty = INF, &[], &[0], L, L),
    ];
    for &(case, mutate, prompt, generated, logits, want) in cases {
        check_adjusted(case, mutate, prompt, generated, logits, want);
    }
}

#[test]
fn argmax_and_gap() {
    let (nan, inf) = (NAN, INF);
    let cases: &[(&[f32], i32, f32)] = &[
        (&[], 0, inf),
        (&[3.0], 0, inf),
        (&[1.0, 3.0, 2.5], 1, 0.5),
        (&[3.0, 1.0, 3.0], 0, 0.0),
        (&[nan, 2.0, 1.0], 1, 1.0),
        (&[nan, nan], 0, 0.0),
        (&[-inf, -inf, -inf], 0, 0.0),
        (&[-inf, 1.0, -inf], 1, inf),
        (&[inf, inf, 0.0], 0, 0.0),
        (&[0.0, inf, 1.0], 1, inf),
        (&[-0.0, 0.0], 0, 0.0),
    ];
    for &(logits, index, gap) in cases {
        assert_eq!(argmax(logits), index, "argmax {logits:?}");
        assert_eq!(top2_gap(logits), gap, "top2_gap {logits:?}");
    }
    // Against a plain scan, on rows of every length around the lane width, with many ties and NaNs.
    let mut rng = StdRng::seed_from_u64(5);
    for len in 0..40 {
        for _ in 0..50 {
            let row: Vec<f32> = (0..len)
                .map(|_| Standard.sample(&mut rng))
                .map(|x: f32| if x < 0.1 { NAN } else { (x * 4.0).floor() - 2.0 })
                .collect();
            let mut want = 0;
            for (i, &l) in row.iter().enumerate() {
                if l > row[want] || row[want].is_nan() && !l.is_nan() {
                    want = i;
                }
            }
            assert_eq!(argmax(&row), want as i32, "{row:?}");
        }
    }
}

#[test]
fn same_seed_same_tokens_different_seed_different() {
    let logits = [0.0, 0.1, 0.2, 0.3, -0.1, 0.05, 0.0, 0.15];
    let draw = |params: &SamplingParams, seed| {
        let mut sampler = seeded(params, seed);
        let mut step = || {
            let token = sampler.sample(&logits);
            sampler.accept(token);
            token
        };
        (0..200).map(|_| step()).collect::<Vec<_>>()
    };
    for params in [
        SamplingParams::default(),
        with(|p| (p.top_k, p.top_p) = (6, 0.9)),
        with(|p| (p.min_p, p.temperature) = (0.5, 0.7)),
        with(|p| (p.repetition_penalty, p.frequency_penalty) = (1.3, 0.2)),
    ] {
        assert_eq!(draw(&params, 42), draw(&params, 42), "{params:?}");
        assert_ne!(draw(&params, 42), draw(&params, 43), "{params:?}");
    }
    // Greedy never touches the RNG, so the seed is irrelevant.
    let greedy = SamplingParams::greedy();
    assert_eq!(draw(&greedy, 1), vec![3; 200]);
    assert_eq!(draw(&greedy, 2), vec![3; 200]);
}

#[test]
fn empirical_frequencies_match() {
    let sqrt = [0.5f64.sqrt(), 0.3f64.sqrt(), 0.2f64.sqrt()];
    let sqrt_sum: f64 = sqrt.iter().sum();
    let cases: Vec<(SamplingParams, [f64; 3])> = vec![
        (SamplingParams::default(), [0.5, 0.3, 0.2]),
        (with(|p| p.top_p = 0.99), [0.5, 0.3, 0.2]),
        (with(|p| p.top_k = 3), [0.5, 0.3, 0.2]),
        (with(|p| p.top_k = 2), [0.625, 0.375, 0.0]),
        (with(|p| p.top_p = 0.7), [0.625, 0.375, 0.0]),
        (with(|p| p.min_p = 0.5), [0.625, 0.375, 0.0]),
        (with(|p| p.temperature = 2.0), sqrt.map(|s| s / sqrt_sum)),
    ];
    for (params, expected) in cases {
        let mut sampler = seeded(&params, 7);
        let mut counts = [0u32; 3];
        let draws = 20_000;
        for _ in 0..draws {
            let token = sampler.sample(&ln_probs());
            counts[usize::try_from(token).unwrap()] += 1;
        }
        for (i, (&count, &want)) in counts.iter().zip(&expected).enumerate() {
            let got = f64::from(count) / f64::from(draws);
            assert!((got - want).abs() < 0.02, "token {i}: {got} vs {want}; {params:?}");
        }
    }
}

#[test]
fn full_draw_walks_chunks() {
    // Mass spread over several draw chunks, ids far apart; the draw must land where a plain cumulative scan does.
    let probs: [(usize, f64); 4] = [(5, 0.4), (700, 0.3), (1500, 0.2), (2999, 0.1)];
    for filler in [-INF, -40.0] {
        let mut row = vec![filler; 3000];
        for (i, p) in probs {
            row[i] = (p as f32).ln();
        }
        let max = max_logit(&row);
        // min_p 0.3 cuts 0.1 / 0.4; what is left renormalizes.
        for (min_p, kept) in [(0.0, 4), (0.3, 3)] {
            let total: f64 = probs[..kept].iter().map(|&(_, p)| p).sum();
            let mut cumulative = 0.0;
            let bounds: Vec<(f64, usize)> = probs[..kept]
                .iter()
                .map(|&(i, p)| {
                    cumulative += p / total;
                    (cumulative, i)
                })
                .collect();
            for j in 0..1000 {
                let u = (f64::from(j) + 0.5) / 1000.0;
                if bounds.iter().any(|&(b, _)| (b - u).abs() < 1e-4) {
                    continue; // too close to a boundary for f32 weights
                }
                let want = bounds.iter().find(|&&(b, _)| u < b).map(|&(_, i)| to_token(i));
                let mut weights = row.clone();
                let got = draw_full(&mut weights, &mut Vec::new(), [max, min_p_floor(max, min_p), 1.0], u);
                assert_eq!(Some(got), want, "u {u}, min_p {min_p}, filler {filler}");
            }
        }
    }
}

/// Reference truncation with a full sort and std's `exp`, to compare with the selection-based one.
fn reference_kept(logits: &[f32], params: &SamplingParams) -> Vec<usize> {
    let mut all: Vec<(usize, f32)> = logits.iter().copied().enumerate().collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let max = all[0].1;
    let weight = |l: f32| f64::from(l - max).exp();
    if params.top_k > 0 {
        all.truncate(params.top_k as usize);
    }
    if params.top_p < 1.0 {
        let target = f64::from(params.top_p) * all.iter().map(|&(_, l)| weight(l)).sum::<f64>();
        let mut cumulative = 0.0;
        let reached = all.iter().position(|&(_, l)| {
            cumulative += weight(l);
            cumulative >= target
        });
        all.truncate(reached.map_or(all.len(), |i| i + 1));
    }
    let floor = min_p_floor(max, params.min_p);
    let mut kept: Vec<usize> = all.into_iter().filter(|&(_, l)| l >= floor).map(|(i, _)| i).collect();
    kept.sort_unstable();
    kept
}

fn kept(params: &SamplingParams, row: &[f32]) -> Vec<usize> {
    let mut sampler = seeded(params, 0);
    sampler.adjust(row);
    sampler.truncate(max_logit(row));
    let mut kept: Vec<usize> = sampler.candidates.iter().map(|&key| key_index(key)).collect();
    kept.sort_unstable();
    kept
}

#[test]
fn truncation_matches_full_sort() {
    let mut rng = StdRng::seed_from_u64(3);
    let uniform: Vec<f32> = (0..5000).map(|_| Standard.sample(&mut rng)).collect();
    let spread: Vec<f32> = uniform.iter().map(|x| x * 12.0).collect();
    let peaked: Vec<f32> = uniform.iter().enumerate().map(|(i, x)| x + if i % 700 == 5 { 9.0 } else { 0.0 }).collect();
    let flat = vec![0.0f32; 1000];
    // Top-p must normalize over all top-k survivors, min-p's rejects included: with k 10, p 0.7 and min_p 0.5
    // the nucleus is {0, 1, 2}; applying min-p first would shrink the total and the nucleus to {0, 1}.
    let stepped: Vec<f32> = [0.0, -0.5, -0.5].into_iter().chain([-3.0; 7]).chain([-5.0; 20]).collect();
    // Ascending logits make the top-k heap churn until it gives way to a selection.
    let ascending: Vec<f32> = (0..5000).map(|i| i as f32 / 100.0).collect();
    #[rustfmt::skip]
    let settings = [
        (0, 0.5, 0.0), (0, 0.9, 0.0), (0, 0.999, 0.0), (40, 1.0, 0.0), (40, 0.9, 0.0), (1024, 0.9, 0.0),
        (1025, 0.9, 0.0), (4000, 0.95, 0.0), (0, 0.95, 0.05), (100, 0.99, 0.2), (1, 0.5, 0.9), (3000, 1.0, 0.01),
        (10, 0.7, 0.5), (10, 0.95, 0.5), (0, 0.7, 0.5),
    ];
    for (top_k, top_p, min_p) in settings {
        let params = with(|p| (p.top_k, p.top_p, p.min_p) = (top_k, top_p, min_p));
        for row in [&spread, &peaked, &uniform, &flat, &ascending, &stepped] {
            assert_eq!(kept(&params, row), reference_kept(row, &params), "{params:?}, len {}", row.len());
        }
    }
    // On a flat row the nucleus is exactly the lowest half of the ids.
    assert_eq!(kept(&with(|p| p.top_p = 0.5), &flat), (0..500).collect::<Vec<_>>());
    assert_eq!(kept(&with(|p| p.top_k = 10), &flat), (0..10).collect::<Vec<_>>());
}

#[test]
fn fast_exp_and_keys() {
    for i in 0..=87_000 {
        let x = -(i as f32) / 1000.0;
        let (fast, exact) = (f64::from(exp_nonpositive(x)), f64::from(x).exp());
        assert!(((fast - exact) / exact).abs() < 2e-7, "exp({x}): {fast} vs {exact}");
    }
    for (x, want) in [(0.0, 1.0), (-0.0, 1.0), (-87.5, 0.0), (-1e30, 0.0), (-INF, 0.0), (NAN, 0.0)] {
        assert_eq!(exp_nonpositive(x), want, "exp({x})");
    }
    // Ascending keys: descending logit, then ascending id; -0.0 ties 0.0.
    let row = [1.0, -0.0, 0.0, f32::MAX, -1e-40, 1e-40, f32::MIN, 1.0, -2.5];
    let mut keys: Vec<u64> = row.iter().enumerate().map(|(i, &l)| candidate_key(i, l)).collect();
    keys.sort_unstable();
    let order: Vec<usize> = keys.iter().map(|&key| key_index(key)).collect();
    assert_eq!(order, [3, 0, 7, 5, 1, 2, 4, 8, 6]);
}

#[test]
fn validate_names_each_bad_field() {
    #[rustfmt::skip]
    let bad: &[(Mutate, &str)] = &[
        (|p| p.temperature = -0.1, "temperature"),
        (|p| p.temperature = 100.5, "temperature"),
        (|p| p.temperature = NAN, "temperature"),
        (|p| p.temperature = INF, "temperature"),
        (|p| p.top_p = 0.0, "top_p"),
        (|p| p.top_p = 1.01, "top_p"),
        (|p| p.top_p = NAN, "top_p"),
        (|p| p.min_p = -0.01, "min_p"),
        (|p| p.min_p = 1.5, "min_p"),
        (|p| p.min_p = NAN, "min_p"),
        (|p| p.repetition_penalty = 0.0, "repetition_penalty"),
        (|p| p.repetition_penalty = -1.0, "repetition_penalty"),
        (|p| p.repetition_penalty = INF, "repetition_penalty"),
        (|p| p.repetition_penalty = NAN, "repetition_penalty"),
        (|p| p.presence_penalty = 2.5, "presence_penalty"),
        (|p| p.presence_penalty = NAN, "presence_penalty"),
        (|p| p.frequency_penalty = -2.5, "frequency_penalty"),
        (|p| p.frequency_penalty = -INF, "frequency_penalty"),
        (|p| p.logit_bias = vec![(-1, 1.0)], "logit_bias"),
        (|p| p.logit_bias = vec![(3, 1.0), (4, NAN)], "logit_bias"),
        (|p| p.logit_bias = vec![(3, INF)], "logit_bias"),
    ];
    for (mutate, field) in bad {
        let params = with(mutate);
        match params.validate() {
            Err(SamplingError::Invalid { field: got, reason }) => {
                assert_eq!(got, *field, "{params:?}: {reason}");
                let message = SamplingError::Invalid { field: got, reason }.to_string();
                assert!(message.starts_with(&format!("invalid sampling parameter {field}: ")), "{message}");
            }
            Ok(()) => panic!("{params:?} should be rejected for {field}"),
        }
    }
    let good: &[Mutate] = &[
        |_| {},
        |p| p.temperature = 0.0,
        |p| p.temperature = 100.0,
        |p| (p.top_p, p.min_p) = (1e-9, 1.0),
        |p| (p.presence_penalty, p.frequency_penalty) = (-2.0, 2.0),
        |p| p.repetition_penalty = 1e-3,
        |p| (p.top_k, p.penalty_last_n, p.seed) = (u32::MAX, usize::MAX, Some(u64::MAX)),
        |p| p.logit_bias = vec![(0, f32::NEG_INFINITY), (i32::MAX, -100.0), (5, 1e30)],
    ];
    for mutate in good {
        let params = with(mutate);
        assert_eq!(params.validate(), Ok(()), "{params:?}");
    }
    assert_eq!(SamplingParams::greedy().validate(), Ok(()));
}

#[test]
fn defaults_and_accessors() {
    let d = SamplingParams::default();
    let want = "SamplingParams { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, repetition_penalty: 1.0, presence_penalty: 0.0, frequency_penalty: 0.0, penalty_last_n: 64, logit_bias: [], seed: None, constraint: None, logprobs: None }";
    assert_eq!(format!("{d:?}"), want);
    assert!(!d.is_greedy());
    assert!(SamplingParams::greedy().is_greedy());
    assert_eq!(Sampler::new(d.clone()).params(), &d);
    // Unseeded samplers draw from OS entropy: 64 draws over 1000 flat tokens coinciding is a bug, not luck.
    let flat = vec![0.0; 1000];
    let mut a = Sampler::new(d.clone());
    let mut b = Sampler::new(d);
    let draws_a: Vec<i32> = (0..64).map(|_| a.sample(&flat)).collect();
    let draws_b: Vec<i32> = (0..64).map(|_| b.sample(&flat)).collect();
    assert_ne!(draws_a, draws_b);
    assert_ne!(fallback_seed(), fallback_seed());
    assert!(format!("{a:?}").starts_with("Sampler { params: SamplingParams"));
    // The step loop owns samplers on its own thread.
    fn send<T: Send + 'static>() {}
    send::<Sampler>();
}

#[test]
fn never_panics_on_odd_input() {
    let rows: &[&[f32]] = &[
        &[],
        &[NAN],
        &[-INF],
        &[INF, -INF, NAN],
        &[f32::MAX, f32::MIN, 0.0],
        &[f32::MIN_POSITIVE, -f32::MIN_POSITIVE, 1e-45],
        &[1e38, -1e38, 1e38],
    ];
    #[rustfmt::skip]
    let params: &[Mutate] = &[
        |_| {},
        |p| p.temperature = 0.0,
        |p| (p.top_k, p.top_p, p.min_p) = (u32::MAX, NAN, NAN),
        |p| (p.top_k, p.top_p, p.min_p) = (1, -3.0, -1.0),
        |p| (p.temperature, p.top_p) = (INF, 0.5),
        |p| (p.temperature, p.min_p) = (f32::MIN_POSITIVE, 1.0),
        |p| (p.repetition_penalty, p.presence_penalty, p.frequency_penalty) = (-1.0, INF, NAN),
        |p| (p.repetition_penalty, p.frequency_penalty, p.penalty_last_n) = (1e-30, 2.0, usize::MAX),
        |p| p.logit_bias = vec![(0, INF), (1, NAN), (-7, 1.0), (i32::MAX, 1.0), (0, -INF)],
    ];
    for &mutate in params {
        let params = with(mutate);
        for &row in rows {
            let mut sampler = seeded(&params, 0);
            sampler.accept_prompt(&[0, -1, i32::MAX, 2, 0]);
            for _ in 0..3 {
                let token = sampler.sample(row);
                let in_range = usize::try_from(token).is_ok_and(|t| t < row.len().max(1));
                assert!(in_range, "token {token} for {row:?} under {params:?}");
                sampler.accept(token);
                sampler.accept(i32::MIN);
            }
        }
    }
}
