//! Audit events: one type for every security-relevant action in both
//! products, and one sink trait to record them. Truxe stores events in its
//! database; Torua writes MAC-chained JSON lines ([`chain`]). Events never
//! carry passwords, tokens or key material.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::Error;

pub mod chain;

/// Whether the action succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It happened.
    Success,
    /// It was attempted and failed (bad credentials, invalid token, …).
    Failure,
    /// It was refused by policy (locked, rate limited, forbidden, …).
    Denied,
}

impl Outcome {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

/// One audited action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Unique id (UUID v7: sorts by time, see `token::time_uuid`).
    pub id: String,
    /// When, in unix milliseconds.
    pub at_ms: i64,
    /// Snake-case action name, e.g. `login`, `refresh_token_reused`.
    pub action: String,
    /// Outcome.
    pub outcome: Outcome,
    /// Who acted (user id, key id, node id), when known.
    pub actor: Option<String>,
    /// What was acted on (user id, session id, key prefix, kid), when any.
    pub target: Option<String>,
    /// Client address.
    pub ip: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// Request id (`X-Request-ID`), to join with logs.
    pub request_id: Option<String>,
    /// Extra facts (never secrets).
    pub details: serde_json::Value,
}

impl AuditEvent {
    /// A new event at `at_ms` with a fresh id and no context.
    pub fn new(action: &str, outcome: Outcome, at_ms: i64) -> Self {
        AuditEvent {
            id: crate::token::time_uuid(at_ms),
            at_ms,
            action: action.to_owned(),
            outcome,
            actor: None,
            target: None,
            ip: None,
            user_agent: None,
            request_id: None,
            details: serde_json::Value::Null,
        }
    }
    /// Sets the actor.
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }
    /// Sets the target.
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }
    /// Sets the details.
    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// Where audit events go. Recording must be durable before it returns.
#[async_trait]
pub trait AuditSink: Send + Sync {
    /// Records one event.
    async fn record(&self, event: &AuditEvent) -> Result<(), Error>;
}
