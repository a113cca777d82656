-- Accounts, sessions and rotating refresh tokens. Times are unix seconds.
CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    email          TEXT NOT NULL UNIQUE,          -- stored lower-cased
    password_hash  TEXT NOT NULL,                 -- Argon2id PHC string
    email_verified INTEGER NOT NULL DEFAULT 0,
    status         TEXT NOT NULL DEFAULT 'active',
    is_admin       INTEGER NOT NULL DEFAULT 0,
    metadata       TEXT NOT NULL DEFAULT '{}',
    failed_logins  INTEGER NOT NULL DEFAULT 0,
    failed_since   INTEGER,                       -- start of the failure window
    locked_until   INTEGER,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

CREATE TABLE sessions (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT, -- insertion order (oldest first)
    id            TEXT NOT NULL UNIQUE,
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    revoked_at    INTEGER,
    revoke_reason TEXT,
    ip            TEXT,
    user_agent    TEXT
);
CREATE INDEX sessions_by_user ON sessions(user_id, created_at, seq);

-- One row per refresh token ever issued: the family is the session.
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,                  -- hex SHA-256 of the token
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER                            -- set once, when rotated
);
CREATE INDEX refresh_by_session ON refresh_tokens(session_id);
