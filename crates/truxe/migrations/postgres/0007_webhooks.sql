-- Webhook endpoints of organizations and the durable delivery queue.
-- Signing secrets are sealed (AES-256-GCM, bound to the endpoint id).
-- A delivery stores the exact body bytes it signs, so a retry re-signs
-- the same payload; each attempt is logged with status and timing.
-- Same shape as migrations/sqlite, with BIGINT integers.
CREATE TABLE webhook_endpoints (
    id                    TEXT PRIMARY KEY,
    org_id                TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    url                   TEXT NOT NULL,
    description           TEXT NOT NULL DEFAULT '',
    events                TEXT NOT NULL DEFAULT '[]',   -- JSON array of event types
    secret_sealed         TEXT NOT NULL,
    previous_secret_sealed TEXT,                        -- still signed with during rotation
    previous_secret_until BIGINT,
    enabled               BIGINT NOT NULL DEFAULT 1,
    created_by            TEXT,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
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
    attempts         BIGINT NOT NULL DEFAULT 0,  -- in the current schedule (a manual retry restarts it)
    total_attempts   BIGINT NOT NULL DEFAULT 0,  -- numbering of webhook_attempts
    next_attempt_at  BIGINT NOT NULL,
    lease_until      BIGINT,                 -- a dispatcher holds it until then
    last_status_code BIGINT,
    last_error       TEXT,
    last_duration_ms BIGINT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    delivered_at     BIGINT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(status, next_attempt_at);
CREATE INDEX webhook_deliveries_by_org ON webhook_deliveries(org_id, created_at);

CREATE TABLE webhook_attempts (
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    attempt     BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    status_code BIGINT,
    error       TEXT,
    duration_ms BIGINT NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
