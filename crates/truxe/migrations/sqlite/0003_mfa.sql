-- TOTP MFA. Secrets are sealed (AES-256-GCM, bound to the user id) before
-- they reach the database; backup codes are stored as SHA-256 digests.
ALTER TABLE users ADD COLUMN mfa_enabled INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN mfa_secret TEXT;           -- sealed, base64
ALTER TABLE users ADD COLUMN mfa_pending_secret TEXT;   -- sealed, set up but not confirmed
ALTER TABLE users ADD COLUMN mfa_last_step INTEGER;        -- replay guard: last accepted TOTP step

CREATE TABLE mfa_backup_codes (
    user_id   TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    used_at   INTEGER,
    PRIMARY KEY (user_id, code_hash)
);

-- A login that passed the password check and waits for a second factor.
CREATE TABLE mfa_challenges (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    used_at    INTEGER,
    ip         TEXT,
    user_agent TEXT
);
