//! Rate limiting with GCRA (the generic cell rate algorithm): for a quota
//! of `limit` requests per `window`, each key stores one number, its
//! theoretical arrival time (TAT). A request is allowed when it would not
//! push the TAT more than `window` ahead of now; bursts up to `limit` pass.
//!
//! The store is a seam ([`RateLimitStore`]): [`MemoryStore`] for one
//! instance; a shared store (Redis) lets several instances share limits.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::Error;

/// `limit` requests per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Requests allowed per window (also the largest burst).
    pub limit: u32,
    /// Window length.
    pub window: Duration,
}

impl Quota {
    /// Interval between requests at the sustained rate.
    fn emission(&self) -> u64 {
        (self.window.as_nanos() / u128::from(self.limit.max(1))) as u64
    }
}

impl std::str::FromStr for Quota {
    type Err = Error;
    /// Parses `LIMIT/WINDOW`, e.g. `10/1m`, `100/1h`, `5/15m`.
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::Config(format!("`{s}` is not a quota like 10/1m"));
        let (n, w) = s.trim().split_once('/').ok_or_else(bad)?;
        let limit: u32 = n.trim().parse().map_err(|_| bad())?;
        let window = parse_window(w.trim()).ok_or_else(bad)?;
        if limit == 0 || window.is_zero() {
            return Err(bad());
        }
        Ok(Quota { limit, window })
    }
}

fn parse_window(w: &str) -> Option<Duration> {
    let split = w.find(|c: char| !c.is_ascii_digit()).unwrap_or(w.len());
    let (num, unit) = w.split_at(split);
    let n: u64 = if num.is_empty() { 1 } else { num.parse().ok()? };
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(secs)?))
}

/// The outcome of one check, with what the `RateLimit-*` headers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The quota's limit.
    pub limit: u32,
    /// Requests left in the current window.
    pub remaining: u32,
    /// Time until the key is back to a full quota.
    pub reset_after: Duration,
    /// When denied: time until one request would be allowed.
    pub retry_after: Option<Duration>,
}

impl Decision {
    /// `(name, value)` pairs: `RateLimit-Limit`, `RateLimit-Remaining`,
    /// `RateLimit-Reset` (seconds), and `Retry-After` when denied.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let secs = |d: Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
        let mut h = vec![
            ("ratelimit-limit", self.limit.to_string()),
            ("ratelimit-remaining", self.remaining.to_string()),
            ("ratelimit-reset", secs(self.reset_after).to_string()),
        ];
        if let Some(r) = self.retry_after {
            h.push(("retry-after", secs(r).max(1).to_string()));
        }
        h
    }
}

/// Pure GCRA step: given the stored TAT (nanoseconds), returns the decision
/// and the TAT to store (unchanged when denied).
pub fn gcra(tat: Option<u64>, quota: &Quota, now: u64) -> (Decision, u64) {
    let t = quota.emission();
    let window = quota.window.as_nanos() as u64;
    let tat = tat.unwrap_or(now).max(now);
    let new_tat = tat + t;
    let allow_at = new_tat.saturating_sub(window);
    if now < allow_at {
        let d = Decision {
            allowed: false,
            limit: quota.limit,
            remaining: 0,
            reset_after: Duration::from_nanos(tat - now),
            retry_after: Some(Duration::from_nanos(allow_at - now)),
        };
        return (d, tat);
    }
    let remaining = ((window - (new_tat - now)) / t.max(1)) as u32;
    let d = Decision {
        allowed: true,
        limit: quota.limit,
        remaining: remaining.min(quota.limit),
        reset_after: Duration::from_nanos(new_tat - now),
        retry_after: None,
    };
    (d, new_tat)
}

/// Where TATs live.
#[async_trait]
pub trait RateLimitStore: Send + Sync {
    /// Applies one request for `key` under `quota` at `now` (nanoseconds on
    /// a clock shared by every instance using the store).
    async fn check(&self, key: &str, quota: &Quota, now: u64) -> Result<Decision, Error>;
}

/// Most keys kept in memory before expired ones are swept.
const SWEEP_AT: usize = 100_000;

/// In-process store: one map behind a mutex (each check is a few hundred
/// nanoseconds of work, so the lock is never held long).
#[derive(Debug, Default)]
pub struct MemoryStore {
    tats: Mutex<HashMap<String, u64>>,
}

#[async_trait]
impl RateLimitStore for MemoryStore {
    async fn check(&self, key: &str, quota: &Quota, now: u64) -> Result<Decision, Error> {
        let mut map = self
            .tats
            .lock()
            .map_err(|_| Error::Crypto("rate limiter lock poisoned".into()))?;
        if map.len() >= SWEEP_AT {
            // A key whose TAT is in the past is back to a full quota: forget it.
            map.retain(|_, tat| *tat > now);
        }
        let (decision, tat) = gcra(map.get(key).copied(), quota, now);
        match map.get_mut(key) {
            Some(t) => *t = tat,
            None => {
                map.insert(key.to_owned(), tat);
            }
        }
        Ok(decision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn bursts_then_sustained_rate() {
        let q: Quota = "5/10s".parse().unwrap_or(Quota {
            limit: 0,
            window: Duration::ZERO,
        });
        assert_eq!(
            q,
            Quota {
                limit: 5,
                window: Duration::from_secs(10)
            }
        );
        let mut tat = None;
        let now = 1000 * SEC;
        for i in 0..5 {
            let (d, t) = gcra(tat, &q, now);
            assert!(d.allowed, "burst request {i}");
            assert_eq!(d.remaining, 4 - i);
            tat = Some(t);
        }
        let (d, _) = gcra(tat, &q, now);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Some(Duration::from_secs(2)));
        assert!(d.headers().contains(&("retry-after", "2".into())));
        // One emission interval later, exactly one more passes.
        let (d, t) = gcra(tat, &q, now + 2 * SEC);
        assert!(d.allowed);
        assert!(!gcra(Some(t), &q, now + 2 * SEC).0.allowed);
    }

    #[test]
    fn quotas_parse() {
        for (s, limit, secs) in [
            ("10/1m", 10, 60),
            ("100/h", 100, 3600),
            ("5/15m", 5, 900),
            ("1/1d", 1, 86400),
        ] {
            let q: Quota = s.parse().unwrap_or(Quota {
                limit: 0,
                window: Duration::ZERO,
            });
            assert_eq!((q.limit, q.window.as_secs()), (limit, secs), "{s}");
        }
        for bad in ["", "10", "0/1m", "10/0s", "x/1m", "10/1w", "-1/1m"] {
            assert!(bad.parse::<Quota>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn keys_are_independent() -> Result<(), Error> {
        let store = MemoryStore::default();
        let q = Quota {
            limit: 1,
            window: Duration::from_secs(60),
        };
        assert!(store.check("a", &q, SEC).await?.allowed);
        assert!(!store.check("a", &q, SEC).await?.allowed);
        assert!(store.check("b", &q, SEC).await?.allowed);
        Ok(())
    }
}
