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

/// Keys one generation of [`MemoryStore`] holds (the store keeps two).
const GENERATION: usize = 100_000;

/// The rate-limit key of a client address: IPv4 addresses as they are
/// (IPv4-mapped IPv6 too), IPv6 addresses by their /64, since one host
/// (one customer line) usually holds a whole /64 and could otherwise take
/// a fresh budget per address.
pub fn address_key(ip: std::net::IpAddr) -> String {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// In-process store with bounded memory: two generations of keys. A key is
/// looked up in the current generation, then in the previous one (and
/// moved forward); when the current one is full it becomes the previous
/// one and the oldest is dropped whole. Memory stays within
/// 2 × [`GENERATION`] keys, every check is O(1) (amortized), and a key in
/// use within the last generation is never forgotten; a flood of new keys
/// can only push out keys that have been idle that long.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tats: Mutex<Generations>,
}

#[derive(Debug, Default)]
struct Generations {
    current: HashMap<String, u64>,
    previous: HashMap<String, u64>,
}

impl MemoryStore {
    /// Keys held now (both generations).
    pub fn len(&self) -> usize {
        self.tats
            .lock()
            .map(|g| g.current.len() + g.previous.len())
            .unwrap_or(0)
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl RateLimitStore for MemoryStore {
    async fn check(&self, key: &str, quota: &Quota, now: u64) -> Result<Decision, Error> {
        let retired;
        let decision = {
            let mut g = self
                .tats
                .lock()
                .map_err(|_| Error::Crypto("rate limiter lock poisoned".into()))?;
            let stored = match g.current.get(key) {
                Some(t) => Some(*t),
                None => g.previous.remove(key),
            };
            let (decision, tat) = gcra(stored, quota, now);
            match g.current.get_mut(key) {
                Some(t) => *t = tat,
                None => {
                    g.current.insert(key.to_owned(), tat);
                }
            }
            retired = if g.current.len() >= GENERATION {
                let full = std::mem::take(&mut g.current);
                Some(std::mem::replace(&mut g.previous, full))
            } else {
                None
            };
            decision
        };
        // Freed outside the lock: other checks do not wait for it.
        drop(retired);
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
    async fn memory_is_bounded_and_recent_keys_are_kept() -> Result<(), Error> {
        let store = MemoryStore::default();
        let q = Quota {
            limit: 1,
            window: Duration::from_secs(3600),
        };
        // The key under watch is spent...
        assert!(store.check("victim", &q, SEC).await?.allowed);
        assert!(!store.check("victim", &q, SEC).await?.allowed);
        // ...and a flood of new keys, five generations' worth, passes
        // while the watched key keeps being used.
        for i in 0..(5 * GENERATION) {
            store.check(&format!("k{i}"), &q, SEC).await?;
            if i % 1000 == 0 {
                assert!(
                    !store.check("victim", &q, SEC).await?.allowed,
                    "a key in use is never forgotten (at {i})"
                );
            }
            assert!(store.len() <= 2 * GENERATION + 1);
        }
        Ok(())
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let key = |s: &str| address_key(s.parse().unwrap());
        assert_eq!(
            key("2001:db8:1:2::1"),
            key("2001:db8:1:2:ffff:eeee:dddd:cccc")
        );
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
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
