-- Truxe as an OpenID Connect provider: the applications registered to
-- sign users in through it, authorization codes in flight, and the
-- consents users gave. Times are unix seconds. Same shape as migrations/sqlite, with BIGINT integers.
CREATE TABLE oauth_clients (
    id                        TEXT PRIMARY KEY,          -- client_id
    org_id                    TEXT REFERENCES organizations(id) ON DELETE CASCADE,
    name                      TEXT NOT NULL,
    secret_hash               TEXT,                      -- hex SHA-256 of the secret; NULL: a public client
    redirect_uris             TEXT NOT NULL DEFAULT '[]',
    post_logout_redirect_uris TEXT NOT NULL DEFAULT '[]',
    grant_types               TEXT NOT NULL DEFAULT '[]',
    scopes                    TEXT NOT NULL DEFAULT '[]',
    access_ttl                BIGINT,                   -- seconds; NULL: the server's
    refresh_ttl               BIGINT,
    created_by                TEXT,
    created_at                BIGINT NOT NULL,
    updated_at                BIGINT NOT NULL
);
CREATE INDEX oauth_clients_by_org ON oauth_clients(org_id);
-- Single use: the exchange sets used_at; the session it started is kept so
-- a replayed code can end it.
CREATE TABLE oauth_codes (
    code_hash      TEXT PRIMARY KEY,
    client_id      TEXT NOT NULL REFERENCES oauth_clients(id) ON DELETE CASCADE,
    user_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    redirect_uri   TEXT NOT NULL,
    scope          TEXT NOT NULL,
    nonce          TEXT,
    code_challenge TEXT,
    auth_time      BIGINT NOT NULL,
    amr            TEXT NOT NULL DEFAULT '[]',
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT,
    session_id     TEXT
);
CREATE INDEX oauth_codes_by_expiry ON oauth_codes(expires_at);
CREATE TABLE oauth_consents (
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL REFERENCES oauth_clients(id) ON DELETE CASCADE,
    scopes     TEXT NOT NULL DEFAULT '[]',
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id)
);
-- The client a session was issued to (NULL: Truxe's own API).
ALTER TABLE sessions ADD COLUMN client_id TEXT;
