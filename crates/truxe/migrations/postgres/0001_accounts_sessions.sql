-- Accounts, sessions and rotating refresh tokens. Times are unix seconds.
-- Same shape as migrations/sqlite; integers are BIGINT so that both backends
-- decode to i64 through sqlx's Any driver.
CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    email          TEXT NOT NULL UNIQUE,          -- stored lower-cased
    password_hash  TEXT NOT NULL,                 -- Argon2id PHC string
    email_verified BIGINT NOT NULL DEFAULT 0,
    status         TEXT NOT NULL DEFAULT 'active',
    is_admin       BIGINT NOT NULL DEFAULT 0,
    metadata       TEXT NOT NULL DEFAULT '{}',
    failed_logins  BIGINT NOT NULL DEFAULT 0,
    failed_since   BIGINT,
    locked_until   BIGINT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

CREATE TABLE sessions (
    seq           BIGSERIAL PRIMARY KEY,         -- insertion order (oldest first)
    id            TEXT NOT NULL UNIQUE,
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    revoked_at    BIGINT,
    revoke_reason TEXT,
    ip            TEXT,
    user_agent    TEXT
);
CREATE INDEX sessions_by_user ON sessions(user_id, created_at, seq);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX refresh_by_session ON refresh_tokens(session_id);
