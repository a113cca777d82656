-- Service accounts (machine identities of an organization) and their API
-- keys. Secrets are stored only as SHA-256 digests. A key's effective
-- permissions are its own, narrowed to its account's at every use.
-- Same shape as migrations/sqlite, with BIGINT integers.
CREATE TABLE service_accounts (
    id                 TEXT PRIMARY KEY,            -- also the client id of /api/service-accounts/token
    org_id             TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name               TEXT NOT NULL,
    description        TEXT NOT NULL DEFAULT '',
    permissions        TEXT NOT NULL DEFAULT '[]',  -- JSON array; the ceiling for its keys
    client_secret_hash TEXT NOT NULL,
    status             TEXT NOT NULL DEFAULT 'active', -- active | disabled
    created_by         TEXT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    UNIQUE (org_id, name)
);

CREATE TABLE api_keys (
    id                 TEXT PRIMARY KEY,            -- the <id> in truxe_sk_<env>_<id>_<secret>
    service_account_id TEXT NOT NULL REFERENCES service_accounts(id) ON DELETE CASCADE,
    name               TEXT NOT NULL,
    environment        TEXT NOT NULL,               -- live | test
    secret_hash        TEXT NOT NULL,               -- hex SHA-256 of the whole key
    permissions        TEXT NOT NULL DEFAULT '[]',
    allowed_cidrs      TEXT NOT NULL DEFAULT '[]',  -- empty: any source address
    rate_tier          TEXT NOT NULL DEFAULT 'standard',
    expires_at         BIGINT,
    last_used_at       BIGINT,
    last_used_ip       TEXT,
    revoked_at         BIGINT,
    replaced_by        TEXT,                        -- set by rotation
    grace_until        BIGINT,                     -- a rotated key works until then
    created_by         TEXT,
    created_at         BIGINT NOT NULL
);
CREATE INDEX api_keys_by_account ON api_keys(service_account_id, created_at);
