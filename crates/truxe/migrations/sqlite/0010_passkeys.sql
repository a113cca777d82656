-- Passkeys (WebAuthn credentials) and the ceremonies in flight. Times are
-- unix seconds.
CREATE TABLE passkeys (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    credential_id  TEXT NOT NULL UNIQUE,          -- base64url, as the authenticator names it
    name           TEXT NOT NULL,
    passkey        TEXT NOT NULL,                 -- the credential as webauthn-rs keeps it: public key, counter, backup state
    backup_eligible INTEGER NOT NULL DEFAULT 0,
    backed_up      INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    last_used_at   INTEGER
);
CREATE INDEX passkeys_by_user ON passkeys(user_id);
-- A registration or authentication started and not yet finished: the
-- server's half of the ceremony (its challenge), used once.
CREATE TABLE webauthn_ceremonies (
    id         TEXT PRIMARY KEY,
    user_id    TEXT REFERENCES users(id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL,                     -- register | login | mfa
    bound_to   TEXT,                              -- mfa: the login challenge it answers
    state      TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX webauthn_ceremonies_by_expiry ON webauthn_ceremonies(expires_at);
