//! Webhook endpoints and the delivery queue.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{json_column, SqlStore};
use crate::model::{Attempt, Delivery, WebhookEndpoint};
use crate::repo::{DeliveryFilter, NextStep, RepoError, WebhookRepo};

pub(super) fn endpoint(r: &AnyRow) -> Result<WebhookEndpoint, RepoError> {
    Ok(WebhookEndpoint {
        id: r.try_get("id")?,
        org_id: r.try_get("org_id")?,
        url: r.try_get("url")?,
        description: r.try_get("description")?,
        events: json_column(r, "events")?,
        secret_sealed: r.try_get("secret_sealed")?,
        previous_secret_sealed: r.try_get("previous_secret_sealed")?,
        previous_secret_until: r.try_get("previous_secret_until")?,
        enabled: r.try_get::<i64, _>("enabled")? != 0,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// The enabled endpoints of the organizations of the user in `$user`.
pub(super) fn member_endpoints(user: usize) -> String {
    format!(
        "SELECT e.* FROM webhook_endpoints e JOIN memberships m ON m.org_id = e.org_id
         WHERE m.user_id = ${user} AND e.enabled = 1"
    )
}

fn delivery(r: &AnyRow) -> Result<Delivery, RepoError> {
    Ok(Delivery {
        id: r.try_get("id")?,
        endpoint_id: r.try_get("endpoint_id")?,
        org_id: r.try_get("org_id")?,
        event: r.try_get("event")?,
        event_id: r.try_get("event_id")?,
        body: r.try_get("body")?,
        status: r.try_get("status")?,
        attempts: r.try_get("attempts")?,
        total_attempts: r.try_get("total_attempts")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        last_status_code: r.try_get("last_status_code")?,
        last_error: r.try_get("last_error")?,
        last_duration_ms: r.try_get("last_duration_ms")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        delivered_at: r.try_get("delivered_at")?,
    })
}

fn events_json(e: &WebhookEndpoint) -> Result<String, RepoError> {
    serde_json::to_string(&e.events).map_err(|err| RepoError::Db(err.to_string()))
}

#[async_trait]
impl WebhookRepo for SqlStore {
    async fn create_endpoint(&self, e: &WebhookEndpoint) -> Result<(), RepoError> {
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, org_id, url, description, events, secret_sealed, enabled, created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&e.id)
        .bind(&e.org_id)
        .bind(&e.url)
        .bind(&e.description)
        .bind(events_json(e)?)
        .bind(&e.secret_sealed)
        .bind(e.enabled as i64)
        .bind(&e.created_by)
        .bind(e.created_at)
        .bind(e.updated_at)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    async fn endpoint(&self, id: &str) -> Result<Option<WebhookEndpoint>, RepoError> {
        let row = sqlx::query("SELECT * FROM webhook_endpoints WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.db)
            .await?;
        row.as_ref().map(endpoint).transpose()
    }

    async fn endpoints(&self, org_id: &str) -> Result<Vec<WebhookEndpoint>, RepoError> {
        let rows = sqlx::query(
            "SELECT * FROM webhook_endpoints WHERE org_id = $1 ORDER BY created_at, id LIMIT 1000",
        )
        .bind(org_id)
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(endpoint).collect()
    }

    async fn endpoints_of_member(&self, user_id: &str) -> Result<Vec<WebhookEndpoint>, RepoError> {
        let rows = sqlx::query(&member_endpoints(1))
            .bind(user_id)
            .fetch_all(&self.db)
            .await?;
        rows.iter().map(endpoint).collect()
    }

    async fn update_endpoint(&self, e: &WebhookEndpoint) -> Result<(), RepoError> {
        sqlx::query(
            "UPDATE webhook_endpoints SET url = $1, description = $2, events = $3, enabled = $4, secret_sealed = $5,
                 previous_secret_sealed = $6, previous_secret_until = $7, updated_at = $8
             WHERE id = $9",
        )
        .bind(&e.url)
        .bind(&e.description)
        .bind(events_json(e)?)
        .bind(e.enabled as i64)
        .bind(&e.secret_sealed)
        .bind(&e.previous_secret_sealed)
        .bind(e.previous_secret_until)
        .bind(e.updated_at)
        .bind(&e.id)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    async fn delete_endpoint(&self, id: &str) -> Result<(), RepoError> {
        sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
            .bind(id)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    async fn enqueue(&self, deliveries: &[Delivery]) -> Result<(), RepoError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for d in deliveries {
            sqlx::query(
                "INSERT INTO webhook_deliveries (id, endpoint_id, org_id, event, event_id, body, status, next_attempt_at, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $8)",
            )
            .bind(&d.id)
            .bind(&d.endpoint_id)
            .bind(&d.org_id)
            .bind(&d.event)
            .bind(&d.event_id)
            .bind(&d.body)
            .bind(d.next_attempt_at)
            .bind(d.created_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn claim_due(
        &self,
        now: i64,
        lease_until: i64,
        limit: u32,
    ) -> Result<Vec<Delivery>, RepoError> {
        let mut out = Vec::new();
        for _ in 0..limit {
            // The outer WHERE repeats the conditions: PostgreSQL re-checks it
            // after waiting for a competing claim, so only one wins the row.
            // A `delivering` row whose lease ran out (its dispatcher died) is
            // due again.
            let row = sqlx::query(
                "UPDATE webhook_deliveries
                 SET status = 'delivering', lease_until = $2, attempts = attempts + 1,
                     total_attempts = total_attempts + 1, updated_at = $1
                 WHERE id = (SELECT id FROM webhook_deliveries
                             WHERE ((status IN ('pending', 'retrying') AND next_attempt_at <= $1)
                                    OR (status = 'delivering' AND lease_until < $1))
                             ORDER BY next_attempt_at LIMIT 1)
                   AND ((status IN ('pending', 'retrying') AND next_attempt_at <= $1)
                        OR (status = 'delivering' AND lease_until < $1))
                 RETURNING *",
            )
            .bind(now)
            .bind(lease_until)
            .fetch_optional(&self.db)
            .await?;
            match row {
                Some(r) => out.push(delivery(&r)?),
                None => break,
            }
        }
        Ok(out)
    }

    async fn finish_attempt(
        &self,
        d: &Delivery,
        a: &Attempt,
        next: NextStep,
    ) -> Result<(), RepoError> {
        let (status, next_at, delivered) = match next {
            NextStep::Succeeded => ("succeeded", d.next_attempt_at, Some(a.at)),
            NextStep::RetryAt(t) => ("retrying", t, None),
            NextStep::Dead => ("dead", d.next_attempt_at, None),
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO webhook_attempts (delivery_id, attempt, at, status_code, error, duration_ms)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&d.id)
        .bind(a.attempt)
        .bind(a.at)
        .bind(a.status_code)
        .bind(&a.error)
        .bind(a.duration_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, next_attempt_at = $2, delivered_at = $3, lease_until = NULL,
                 last_status_code = $4, last_error = $5, last_duration_ms = $6, updated_at = $7
             WHERE id = $8",
        )
        .bind(status)
        .bind(next_at)
        .bind(delivered)
        .bind(a.status_code)
        .bind(&a.error)
        .bind(a.duration_ms)
        .bind(a.at)
        .bind(&d.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delivery(&self, id: &str) -> Result<Option<Delivery>, RepoError> {
        let row = sqlx::query("SELECT * FROM webhook_deliveries WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.db)
            .await?;
        row.as_ref().map(delivery).transpose()
    }

    async fn deliveries(&self, f: &DeliveryFilter) -> Result<Vec<Delivery>, RepoError> {
        let (before_at, before_id) = match &f.before {
            Some((at, id)) => (Some(*at), Some(id.as_str())),
            None => (None, None),
        };
        let rows = sqlx::query(
            "SELECT * FROM webhook_deliveries
             WHERE org_id = $1 AND ($2 IS NULL OR endpoint_id = $2) AND ($3 IS NULL OR status = $3)
               AND ($4 IS NULL OR created_at < $4 OR (created_at = $4 AND id < $5))
             ORDER BY created_at DESC, id DESC LIMIT $6",
        )
        .bind(&f.org_id)
        .bind(&f.endpoint_id)
        .bind(&f.status)
        .bind(before_at)
        .bind(before_id)
        .bind(i64::from(f.limit))
        .fetch_all(&self.db)
        .await?;
        rows.iter().map(delivery).collect()
    }

    async fn attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>, RepoError> {
        let rows =
            sqlx::query("SELECT * FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt")
                .bind(delivery_id)
                .fetch_all(&self.db)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(Attempt {
                    attempt: r.try_get("attempt")?,
                    at: r.try_get("at")?,
                    status_code: r.try_get("status_code")?,
                    error: r.try_get("error")?,
                    duration_ms: r.try_get("duration_ms")?,
                })
            })
            .collect()
    }

    async fn requeue(&self, id: &str, now: i64) -> Result<bool, RepoError> {
        let r = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = $1, updated_at = $1
             WHERE id = $2 AND status <> 'delivering'",
        )
        .bind(now)
        .bind(id)
        .execute(&self.db)
        .await?;
        Ok(r.rows_affected() == 1)
    }
}
