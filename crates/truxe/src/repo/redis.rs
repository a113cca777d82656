//! Rate-limit state in Redis, shared by every Truxe instance that uses the
//! same `REDIS_URL`. The GCRA arithmetic stays in `secure::ratelimit`;
//! Redis only stores each key's TAT, updated by an atomic compare-and-set
//! (retried when another instance changed it meanwhile).

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use secure::ratelimit::{gcra, Decision, Quota, RateLimitStore};

/// Attempts before giving up under heavy contention on one key.
const CAS_ATTEMPTS: usize = 8;

/// Sets KEYS[1] to ARGV[2] (with a TTL of ARGV[3] ms) only if it still holds
/// ARGV[1] ('' meaning absent).
const CAS: &str = r"
local cur = redis.call('GET', KEYS[1])
if (cur or '') == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

/// GCRA state in Redis.
#[derive(Clone)]
pub struct RedisRateLimitStore {
    conn: ConnectionManager,
    cas: redis::Script,
}

/// How long start-up waits for Redis to answer.
const CONNECT_WITHIN: std::time::Duration = std::time::Duration::from_secs(10);
/// How long one check may take, reconnecting included. Redis down means
/// refusals (fail closed): they must come at once, not after the
/// client's default retries, with every request waiting meanwhile.
const CHECK_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

impl RedisRateLimitStore {
    /// Connects (and pings) so a bad `REDIS_URL` stops start-up. With `ca`
    /// (a PEM bundle), a `rediss://` server's certificate must chain to it
    /// instead of to the system's roots.
    pub async fn connect(url: &str, ca: Option<&std::path::Path>) -> Result<Self, String> {
        let client = match ca {
            None => redis::Client::open(url),
            Some(path) => {
                let root = std::fs::read(path)
                    .map_err(|e| format!("TRUXE_REDIS_CA {}: {e}", path.display()))?;
                redis::Client::build_with_tls(
                    url,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root),
                    },
                )
            }
        }
        .map_err(|e| format!("REDIS_URL: {e}"))?;
        // Bounded: a server speaking TLS to a plain client (or the reverse)
        // never answers, and start-up must say so rather than hang.
        let ready = async {
            let bounded = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(std::time::Duration::from_secs(1))
                .set_response_timeout(std::time::Duration::from_secs(1))
                .set_number_of_retries(2)
                .set_max_delay(500);
            let mut conn = ConnectionManager::new_with_config(client, bounded)
                .await
                .map_err(|e| format!("REDIS_URL: cannot connect: {e}"))?;
            let _: String = redis::cmd("PING")
                .query_async(&mut conn)
                .await
                .map_err(|e| format!("REDIS_URL: {e}"))?;
            Ok::<_, String>(conn)
        };
        let conn = tokio::time::timeout(CONNECT_WITHIN, ready)
            .await
            .map_err(|_| {
                format!(
                    "REDIS_URL: no answer within {}s (a TLS server needs rediss://, a plain one redis://)",
                    CONNECT_WITHIN.as_secs()
                )
            })??;
        Ok(RedisRateLimitStore {
            conn,
            cas: redis::Script::new(CAS),
        })
    }
}

#[async_trait]
impl RateLimitStore for RedisRateLimitStore {
    async fn check(&self, key: &str, quota: &Quota, now: u64) -> Result<Decision, secure::Error> {
        tokio::time::timeout(CHECK_WITHIN, self.check_now(key, quota, now))
            .await
            .map_err(|_| {
                secure::Error::Io(format!(
                    "redis: no answer within {}s",
                    CHECK_WITHIN.as_secs()
                ))
            })?
    }
}

impl RedisRateLimitStore {
    async fn check_now(
        &self,
        key: &str,
        quota: &Quota,
        now: u64,
    ) -> Result<Decision, secure::Error> {
        let key = format!("truxe:rl:{key}");
        let mut conn = self.conn.clone();
        let err = |e: redis::RedisError| secure::Error::Io(format!("redis: {e}"));
        for _ in 0..CAS_ATTEMPTS {
            let old: Option<String> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .map_err(err)?;
            let tat = old.as_deref().and_then(|s| s.parse::<u64>().ok());
            let (decision, new_tat) = gcra(tat, quota, now);
            if !decision.allowed {
                return Ok(decision);
            }
            let ttl_ms = (new_tat.saturating_sub(now) / 1_000_000).max(1) + 1;
            let set: i64 = self
                .cas
                .key(&key)
                .arg(old.unwrap_or_default())
                .arg(new_tat.to_string())
                .arg(ttl_ms)
                .invoke_async(&mut conn)
                .await
                .map_err(err)?;
            if set == 1 {
                return Ok(decision);
            }
        }
        Err(secure::Error::Io(
            "redis: rate limit key too contended".into(),
        ))
    }
}
