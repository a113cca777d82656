-- Webhook endpoints of organizations and the durable delivery queue.
-- Signing secrets are sealed (AES-256-GCM, bound to the endpoint id).
-- A delivery stores the exact body bytes it signs, so a retry re-signs
-- the same payload; each attempt is logged with status and timing.
CREATE TABLE webhook_endpoints (
    id                    TEXT PRIMARY KEY,
    org_id                TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    url                   TEXT NOT NULL,
    description           TEXT NOT NULL DEFAULT '',
    events                TEXT NOT NULL DEFAULT '[]',   -- JSON array of event types
    secret_sealed         TEXT NOT NULL,
    previous_secret_sealed TEXT,                        -- still signed with during rotation
    previous_secret_until INTEGER,
    enabled               INTEGER NOT NULL DEFAULT 1,
    created_by            TEXT,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL
);
CREATE INDEX webhook_endpoints_by_org ON webhook_endpoints(org_id);

CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,        -- X-Truxe-Delivery
    endpoint_id      TEXT NOT NULL REFERENCES webhook_endpoints(id) ON DELETE CASCADE,
    org_id           TEXT NOT NULL,
    event            TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    body             TEXT NOT NULL,           -- the exact bytes signed and sent
    status           TEXT NOT NULL,           -- pending | retrying | delivering | succeeded | dead
    attempts         INTEGER NOT NULL DEFAULT 0,  -- in the current schedule (a manual retry restarts it)
    total_attempts   INTEGER NOT NULL DEFAULT 0,  -- numbering of webhook_attempts
    next_attempt_at  INTEGER NOT NULL,
    lease_until      INTEGER,                 -- a dispatcher holds it until then
    last_status_code INTEGER,
    last_error       TEXT,
    last_duration_ms INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    delivered_at     INTEGER
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
CREATE INDEX webhook_deliveries_by_org ON webhook_deliveries(org_id, created_at);

CREATE TABLE webhook_attempts (
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    attempt     INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    status_code INTEGER,
    error       TEXT,
    duration_ms INTEGER NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
