//! Token-bucket rate limits: one bucket per caller (an API key's namespace, or one `anonymous`
//! bucket for every unauthenticated caller) and one global bucket. The time is passed in, so the
//! buckets are tested without sleeping. Does not own: who the caller is (`auth.rs`), which routes
//! are limited and the 429 response (`ops.rs`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Rates in requests per second (0 = unlimited) and bucket sizes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RateLimitConfig {
    /// Requests per second per caller.
    pub per_key_rps: f64,
    /// Per-caller bucket size (raised to 1 when the rate is set).
    pub per_key_burst: u32,
    /// Requests per second for the whole server.
    pub global_rps: f64,
    /// Global bucket size (raised to 1 when the rate is set).
    pub global_burst: u32,
}

/// The bucket key every unauthenticated caller shares.
pub(crate) const ANONYMOUS: &str = "anonymous";

/// Most per-caller buckets kept. Callers are API-key namespaces (bounded by the configured keys)
/// or `anonymous`, so this is a backstop, not a working limit.
const MAX_KEYS: usize = 4096;

/// A refill rate and a capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rate {
    per_sec: f64,
    burst: f64,
}

impl Rate {
    fn new(rps: f64, burst: u32) -> Option<Self> {
        (rps.is_finite() && rps > 0.0).then(|| Rate { per_sec: rps, burst: f64::from(burst.max(1)) })
    }
}

/// Up to `burst` tokens, refilled continuously at `per_sec`; a request takes one.
#[derive(Debug, Clone, Copy)]
struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    fn full(rate: Rate, now: Instant) -> Self {
        Self { tokens: rate.burst, updated: now }
    }

    /// Adds what accrued since the last update. A `now` before it (callers racing for the lock
    /// with slightly older instants) adds nothing.
    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_sec).min(rate.burst);
        self.updated = self.updated.max(now);
    }

    /// How long until one token is there (zero when one is, give or take float rounding).
    fn wait(&self, rate: Rate) -> Duration {
        if self.tokens >= 1.0 - 1e-9 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / rate.per_sec)
        }
    }

    fn is_full(&self, rate: Rate) -> bool {
        self.tokens >= rate.burst
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The caller's own bucket.
    Caller,
    /// The server-wide bucket.
    Global,
}

/// A refused request: which limit, and when to retry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Limited {
    pub scope: Scope,
    pub retry_after: Duration,
}

impl Limited {
    /// `Retry-After` in whole seconds, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        (self.retry_after.as_secs_f64().ceil() as u64).max(1)
    }
}

#[derive(Debug, Default)]
struct Buckets {
    global: Option<TokenBucket>,
    keys: HashMap<String, TokenBucket>,
}

/// Both limits and their buckets, behind one lock (each check is a few float operations).
#[derive(Debug)]
pub(crate) struct RateLimiter {
    per_key: Option<Rate>,
    global: Option<Rate>,
    max_keys: usize,
    buckets: Mutex<Buckets>,
}

impl RateLimiter {
    /// Limits as configured; with both rates 0 every request passes.
    pub fn new(config: RateLimitConfig) -> Self {
        Self::with_max_keys(config, MAX_KEYS)
    }

    fn with_max_keys(config: RateLimitConfig, max_keys: usize) -> Self {
        Self {
            per_key: Rate::new(config.per_key_rps, config.per_key_burst),
            global: Rate::new(config.global_rps, config.global_burst),
            max_keys: max_keys.max(1),
            buckets: Mutex::default(),
        }
    }

    /// True when some limit is set.
    pub fn is_enabled(&self) -> bool {
        self.per_key.is_some() || self.global.is_some()
    }

    /// Takes a token from `key`'s bucket and from the global one, or from neither: a request
    /// refused by one limit costs nothing from the other.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Limited> {
        if !self.is_enabled() {
            return Ok(());
        }
        // The buckets are plain numbers, valid whatever a panicking holder left behind.
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let Buckets { global, keys } = &mut *buckets;
        let global = self.global.map(|rate| {
            let bucket = global.get_or_insert_with(|| TokenBucket::full(rate, now));
            bucket.refill(rate, now);
            (rate, bucket)
        });
        if let Some(rate) = self.per_key {
            if !keys.contains_key(key) && keys.len() >= self.max_keys {
                make_room(keys, rate, now, self.max_keys);
            }
        }
        let caller = self.per_key.map(|rate| {
            let bucket = keys.entry(key.to_owned()).or_insert_with(|| TokenBucket::full(rate, now));
            bucket.refill(rate, now);
            (rate, bucket)
        });
        let caller_wait = caller.as_ref().map_or(Duration::ZERO, |(rate, b)| b.wait(*rate));
        let global_wait = global.as_ref().map_or(Duration::ZERO, |(rate, b)| b.wait(*rate));
        if caller_wait.is_zero() && global_wait.is_zero() {
            for (_, bucket) in caller.into_iter().chain(global) {
                bucket.tokens -= 1.0;
            }
            return Ok(());
        }
        let scope = if caller_wait >= global_wait { Scope::Caller } else { Scope::Global };
        Err(Limited { scope, retry_after: caller_wait.max(global_wait) })
    }

    #[cfg(test)]
    fn keys(&self) -> usize {
        self.buckets.lock().map(|b| b.keys.len()).unwrap_or(0)
    }
}

/// Frees a slot in a full map: first drops every bucket that has refilled (a full bucket is the
/// same as no bucket), then, if all are in use, the one untouched longest.
fn make_room(keys: &mut HashMap<String, TokenBucket>, rate: Rate, now: Instant, max_keys: usize) {
    keys.retain(|_, bucket| {
        bucket.refill(rate, now);
        !bucket.is_full(rate)
    });
    while keys.len() >= max_keys {
        let Some(oldest) = keys.iter().min_by_key(|(_, b)| b.updated).map(|(k, _)| k.clone()) else { break };
        keys.remove(&oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_key: (f64, u32), global: (f64, u32)) -> RateLimiter {
        RateLimiter::new(RateLimitConfig {
            per_key_rps: per_key.0,
            per_key_burst: per_key.1,
            global_rps: global.0,
            global_burst: global.1,
        })
    }

    /// `(key, ms since start, expected)`: expected is None for allowed, else the refusing scope
    /// and Retry-After seconds.
    type Step<'a> = (&'a str, u64, Option<(Scope, u64)>);

    /// Runs the steps in order.
    fn check(limiter: &RateLimiter, steps: &[Step<'_>]) {
        let start = Instant::now();
        for (i, &(key, ms, expected)) in steps.iter().enumerate() {
            let got =
                limiter.check(key, start + Duration::from_millis(ms)).err().map(|l| (l.scope, l.retry_after_secs()));
            assert_eq!(got, expected, "step {i}: {key} at {ms} ms");
        }
    }

    #[test]
    fn unlimited_by_default() {
        let limiter = RateLimiter::new(RateLimitConfig::default());
        assert!(!limiter.is_enabled());
        check(&limiter, &[("a", 0, None), ("a", 0, None), ("a", 0, None)]);
        assert_eq!(limiter.keys(), 0, "no bucket is made when nothing is limited");
    }

    #[test]
    fn a_burst_passes_then_the_rate_refills_one_token_at_a_time() {
        // 2 per second, burst 3: three at once, then one every 500 ms.
        check(
            &limiter((2.0, 3), (0.0, 0)),
            &[
                ("a", 0, None),
                ("a", 0, None),
                ("a", 0, None),
                ("a", 0, Some((Scope::Caller, 1))),
                ("a", 499, Some((Scope::Caller, 1))),
                // 499 ms + 1 ms of refill add up to exactly one token.
                ("a", 500, None),
                ("a", 600, Some((Scope::Caller, 1))),
                ("a", 1000, None),
                // A long pause refills only up to the burst.
                ("a", 60_000, None),
                ("a", 60_000, None),
                ("a", 60_000, None),
                ("a", 60_000, Some((Scope::Caller, 1))),
            ],
        );
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        // One request per 10 s: right after one, the next is 10 s away; 2.5 s later, 7.5 -> 8.
        check(
            &limiter((0.1, 1), (0.0, 0)),
            &[("a", 0, None), ("a", 0, Some((Scope::Caller, 10))), ("a", 2500, Some((Scope::Caller, 8)))],
        );
        let almost = Limited { scope: Scope::Caller, retry_after: Duration::from_micros(10) };
        assert_eq!(almost.retry_after_secs(), 1, "never 0");
    }

    #[test]
    fn callers_have_their_own_buckets() {
        check(
            &limiter((1.0, 1), (0.0, 0)),
            &[
                ("a", 0, None),
                ("a", 0, Some((Scope::Caller, 1))),
                ("b", 0, None),
                (ANONYMOUS, 0, None),
                (ANONYMOUS, 10, Some((Scope::Caller, 1))),
            ],
        );
    }

    #[test]
    fn the_global_bucket_caps_all_callers_and_a_refusal_costs_nothing() {
        // Server: 1 per second, burst 2. Callers: 1 per 10 s, burst 2.
        check(
            &limiter((0.1, 2), (1.0, 2)),
            &[("a", 0, None), ("b", 0, None), ("c", 0, Some((Scope::Global, 1))), ("a", 500, Some((Scope::Global, 1)))],
        );
        // Server: 1 per second, burst 1. Callers: 1 per 10 s, burst 2.
        check(
            &limiter((0.1, 2), (1.0, 1)),
            &[
                ("a", 0, None),
                ("a", 0, Some((Scope::Global, 1))),
                ("a", 500, Some((Scope::Global, 1))),
                // `a` refilled only 0.1 since its first request: it passes because the two
                // refusals took nothing from its bucket.
                ("a", 1000, None),
                ("a", 2000, Some((Scope::Caller, 8))),
                // ... and that refusal took nothing from the global bucket.
                ("b", 2000, None),
            ],
        );
    }

    #[test]
    fn the_caller_map_stays_bounded_under_many_keys() {
        let limiter =
            RateLimiter::with_max_keys(RateLimitConfig { per_key_rps: 1.0, per_key_burst: 2, ..Default::default() }, 8);
        let start = Instant::now();
        for i in 0..1000u64 {
            assert!(
                limiter.check(&format!("k{i}"), start + Duration::from_millis(i)).is_ok(),
                "a new key has a full bucket"
            );
            assert!(limiter.keys() <= 8, "{} buckets after {i} keys", limiter.keys());
        }
        // Refilled buckets are dropped first: a busy key keeps its state while idle ones go.
        let limiter =
            RateLimiter::with_max_keys(RateLimitConfig { per_key_rps: 1.0, per_key_burst: 1, ..Default::default() }, 2);
        let t = |s: u64| start + Duration::from_secs(s);
        assert!(limiter.check("busy", t(0)).is_ok());
        assert!(limiter.check("idle", t(0)).is_ok());
        assert!(limiter.check("busy", t(5)).is_ok());
        assert!(limiter.check("new", t(5)).is_ok(), "`idle` refilled and made room");
        assert!(limiter.check("busy", t(5)).is_err(), "`busy` kept its empty bucket");
        assert_eq!(limiter.keys(), 2);
    }

    #[test]
    fn an_instant_older_than_the_last_update_adds_nothing() {
        let limiter = limiter((1.0, 1), (0.0, 0));
        let start = Instant::now() + Duration::from_secs(10);
        assert!(limiter.check("a", start).is_ok());
        assert!(limiter.check("a", start - Duration::from_secs(5)).is_err());
        assert!(limiter.check("a", start + Duration::from_secs(1)).is_ok());
    }
}
