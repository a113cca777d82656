//! Webhook delivery: the [`Dispatcher`] leases due deliveries from the
//! database queue, signs the stored bytes afresh and POSTs them through an
//! HTTP client whose every connection passes the SSRF [`guard`].
//!
//! Durable by construction: a delivery is a row before anyone tries it, an
//! attempt's outcome is written before the next is scheduled, and a lease
//! that runs out (the process died mid-attempt) makes it due again. So a
//! restart loses nothing and several instances share the queue. Retries
//! back off exponentially with jitter (`TRUXE_WEBHOOK_RETRY_BASE`, doubling,
//! at most 6 h apart) until `TRUXE_WEBHOOK_MAX_ATTEMPTS`, then the delivery
//! is dead-lettered; `POST /webhooks/deliveries/{id}/retry` revives it.

pub mod guard;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use secure::webhook::{
    signature_header, DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};

use crate::config::Webhooks;
use crate::model::{Attempt, Delivery};
use crate::repo::NextStep;
use crate::service::AuthService;

/// At most this much of a response is read.
const MAX_RESPONSE: usize = 64 * 1024;
/// Longest pause between two retries.
const MAX_BACKOFF: Duration = Duration::from_secs(6 * 3600);
/// Deliveries leased per round.
const BATCH: u32 = 16;

/// Sends queued deliveries.
pub struct Dispatcher {
    auth: Arc<AuthService>,
    client: reqwest::Client,
    guard: Arc<guard::Guard>,
    settings: Webhooks,
}

/// The delay before retry number `attempt` (1-based): `base · 2^(attempt-1)`,
/// at most [`MAX_BACKOFF`], times a random factor in [0.8, 1.2).
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = exp.min(MAX_BACKOFF);
    capped.mul_f64(rand::thread_rng().gen_range(0.8..1.2))
}

impl Dispatcher {
    /// A dispatcher for `auth`'s queue.
    pub fn new(auth: Arc<AuthService>, settings: Webhooks) -> Result<Self, reqwest::Error> {
        let guard = Arc::new(guard::Guard {
            allow_loopback: settings.allow_loopback,
            allowed: settings.allowed_networks.clone(),
        });
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(guard::GuardedResolver(guard.clone())))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("Truxe-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Dispatcher {
            auth,
            client,
            guard,
            settings,
        })
    }

    /// Runs until the process ends: lease, deliver, repeat; when idle,
    /// waits for new work or one second.
    pub async fn run(self: Arc<Self>) {
        let wake = self.auth.webhook_wake();
        let lease = self.settings.timeout + Duration::from_secs(30);
        loop {
            let now = crate::http::now();
            let batch = match self
                .auth
                .store()
                .claim_due(now, now + lease.as_secs() as i64, BATCH)
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "webhook queue unavailable");
                    Vec::new()
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            }
            let mut tasks = tokio::task::JoinSet::new();
            for d in batch {
                let me = self.clone();
                tasks.spawn(async move { me.deliver(d).await });
            }
            while tasks.join_next().await.is_some() {}
        }
    }

    /// One attempt, logged, and the next step scheduled.
    async fn deliver(&self, d: Delivery) {
        let started = Instant::now();
        let at = crate::http::now();
        let (status_code, error, deliverable) = match self.attempt(&d).await {
            Ok(code) if (200..300).contains(&code) => (Some(code), None, true),
            Ok(code) if (300..400).contains(&code) => (
                Some(code),
                Some(format!("redirect ({code}) not followed")),
                true,
            ),
            Ok(code) => (Some(code), Some(format!("receiver answered {code}")), true),
            Err(Failure::Retry(e)) => (None, Some(e), true),
            Err(Failure::Final(e)) => (None, Some(e), false),
        };
        let ok = error.is_none();
        let next = if ok {
            NextStep::Succeeded
        } else if !deliverable || d.attempts >= i64::from(self.settings.max_attempts) {
            NextStep::Dead
        } else {
            let delay = backoff(self.settings.retry_base, d.attempts as u32);
            NextStep::RetryAt(at + delay.as_secs().max(1) as i64)
        };
        let attempt = Attempt {
            attempt: d.total_attempts,
            at,
            status_code: status_code.map(i64::from),
            error,
            duration_ms: started.elapsed().as_millis() as i64,
        };
        match next {
            NextStep::Dead => {
                tracing::warn!(delivery = %d.id, event = %d.event, error = ?attempt.error, "webhook delivery dead-lettered")
            }
            NextStep::RetryAt(t) => {
                tracing::info!(delivery = %d.id, event = %d.event, error = ?attempt.error, retry_in = t - at, "webhook delivery failed; will retry")
            }
            NextStep::Succeeded => {
                tracing::debug!(delivery = %d.id, event = %d.event, "webhook delivered")
            }
        }
        if let Err(e) = self.auth.store().finish_attempt(&d, &attempt, next).await {
            // The lease runs out and the delivery is tried again: at least once.
            tracing::error!(error = %e, delivery = %d.id, "webhook attempt not recorded");
        }
    }

    /// Sends `d` once; the response status, or why there was none.
    async fn attempt(&self, d: &Delivery) -> Result<u16, Failure> {
        let store = self.auth.store();
        let ep = store
            .endpoint(&d.endpoint_id)
            .await
            .map_err(|e| Failure::Retry(e.to_string()))?
            .ok_or_else(|| Failure::Final("the endpoint was deleted".into()))?;
        if !ep.enabled {
            return Err(Failure::Final("the endpoint is disabled".into()));
        }
        let url = self
            .guard
            .check_url(&ep.url, self.settings.https_only, false)
            .await
            .map_err(|e| Failure::Retry(format!("destination refused: {e}")))?;
        let ts = crate::http::now();
        let secrets = self
            .auth
            .signing_secrets(&ep, ts)
            .map_err(|e| Failure::Retry(e.to_string()))?;
        let keys: Vec<&[u8]> = secrets.iter().map(|s| s.expose().as_bytes()).collect();
        let signature = signature_header(&keys, ts, d.body.as_bytes());
        let mut res = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(EVENT_HEADER, &d.event)
            .header(DELIVERY_HEADER, &d.id)
            .header(TIMESTAMP_HEADER, ts.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(d.body.clone())
            .send()
            .await
            .map_err(|e| Failure::Retry(describe(&e)))?;
        let status = res.status().as_u16();
        // Read (and drop) at most MAX_RESPONSE bytes so the connection can be
        // reused; a receiver that streams more is cut off.
        let mut read = 0;
        while read < MAX_RESPONSE {
            match res.chunk().await {
                Ok(Some(c)) => read += c.len(),
                Ok(None) | Err(_) => break,
            }
        }
        Ok(status)
    }
}

/// Why an attempt got no response.
enum Failure {
    /// Worth retrying (network, timeout, refused destination).
    Retry(String),
    /// Never deliverable (endpoint deleted or disabled).
    Final(String),
}

/// A short, secret-free description of a client error.
fn describe(e: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut root = e.to_string();
    while let Some(s) = source {
        root = s.to_string();
        source = s.source();
    }
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        format!("connection failed: {root}")
    } else {
        root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_a_cap() {
        let base = Duration::from_secs(30);
        for attempt in 1..=30 {
            let d = backoff(base, attempt);
            let nominal = base
                .saturating_mul(1 << (attempt - 1).min(20))
                .min(MAX_BACKOFF);
            assert!(
                d >= nominal.mul_f64(0.8) && d < nominal.mul_f64(1.2),
                "{attempt}: {d:?}"
            );
        }
        // Twelve attempts at the default spread over more than ten hours.
        let total: Duration = (1..12)
            .map(|a| base.saturating_mul(1 << (a - 1)).min(MAX_BACKOFF))
            .sum();
        assert!(total > Duration::from_secs(10 * 3600), "{total:?}");
    }
}
