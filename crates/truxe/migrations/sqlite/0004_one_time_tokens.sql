-- Single-use tokens sent by email: password reset, email verification,
-- magic links. Only the SHA-256 of each token is stored.
CREATE TABLE one_time_tokens (
    token_hash TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,          -- password_reset | email_verify | magic_link
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    data       TEXT                    -- e.g. the magic link's redirect URI
);
CREATE INDEX one_time_tokens_by_user ON one_time_tokens(user_id, kind);
