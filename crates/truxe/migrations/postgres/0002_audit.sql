-- Security audit trail. Append-only: nothing updates or deletes rows.
CREATE TABLE audit_events (
    seq        BIGSERIAL PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    at_ms      BIGINT NOT NULL,
    action     TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    actor      TEXT,
    target     TEXT,
    ip         TEXT,
    user_agent TEXT,
    request_id TEXT,
    details    TEXT NOT NULL DEFAULT 'null'
);
CREATE INDEX audit_by_actor ON audit_events(actor, seq);
CREATE INDEX audit_by_action ON audit_events(action, seq);
