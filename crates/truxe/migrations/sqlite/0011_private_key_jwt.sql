-- private_key_jwt (RFC 7523): a client's public keys, and the assertion ids
-- it has used (each once, until the assertion expires).
ALTER TABLE oauth_clients ADD COLUMN jwks TEXT;
CREATE TABLE oauth_client_assertions (
    client_id  TEXT NOT NULL REFERENCES oauth_clients(id) ON DELETE CASCADE,
    jti        TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (client_id, jti)
);
CREATE INDEX oauth_client_assertions_by_expiry ON oauth_client_assertions(expires_at);
