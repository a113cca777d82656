-- Social login: sign-ins in flight and the provider identities linked to users.
-- Same shape as migrations/sqlite, with BIGINT integers.
-- A state row lives from the redirect to the provider until its callback
-- (single use: the callback deletes it). Only digests of the state id and
-- of the browser-binding cookie are stored; the PKCE verifier is sealed.
CREATE TABLE oauth_states (
    id_hash         TEXT PRIMARY KEY,
    provider        TEXT NOT NULL,
    verifier_sealed TEXT NOT NULL,
    nonce           TEXT NOT NULL,
    binding_hash    TEXT NOT NULL,
    redirect_uri    TEXT,
    mode            TEXT NOT NULL DEFAULT 'json',  -- json or cookie
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL
);
CREATE INDEX oauth_states_by_expiry ON oauth_states(expires_at);

-- The provider's tokens are sealed (AES-256-GCM under
-- OAUTH_TOKEN_ENCRYPTION_KEY, bound to the identity id).
CREATE TABLE oauth_identities (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    provider      TEXT NOT NULL,
    subject       TEXT NOT NULL,
    email         TEXT NOT NULL,
    tokens_sealed TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    last_login_at BIGINT NOT NULL,
    UNIQUE (provider, subject)
);
CREATE INDEX oauth_identities_by_user ON oauth_identities(user_id);
