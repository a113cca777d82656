-- Organizations, their members and roles, and invitations to join.
-- Permission checks are made in the service (service/policy.rs); these
-- tables only store who holds which role where.
-- Same shape as migrations/sqlite, with BIGINT integers.
CREATE TABLE organizations (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    slug       TEXT NOT NULL UNIQUE,
    parent_id  TEXT REFERENCES organizations(id),   -- hierarchy; cycles refused by the service
    metadata   TEXT NOT NULL DEFAULT '{}',
    created_by TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX organizations_by_parent ON organizations(parent_id);

CREATE TABLE memberships (
    org_id     TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role       TEXT NOT NULL,                      -- built-in or a custom role of the org
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX memberships_by_user ON memberships(user_id, org_id);

-- Custom roles: permissions and inherited roles as JSON arrays.
CREATE TABLE org_roles (
    org_id      TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    permissions TEXT NOT NULL DEFAULT '[]',
    inherits    TEXT NOT NULL DEFAULT '[]',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (org_id, name)
);

-- Single-use invitations; only the SHA-256 of the emailed token is kept.
CREATE TABLE invitations (
    id          TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    org_id      TEXT NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    email       TEXT NOT NULL,                     -- lower-cased
    role        TEXT NOT NULL,
    invited_by  TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    accepted_at BIGINT,
    accepted_by TEXT,
    revoked_at  BIGINT
);
CREATE INDEX invitations_by_org ON invitations(org_id, created_at);

-- The organization a session acts in (set by /auth/switch-org); its tokens
-- carry org_id, role and permissions, recomputed at every refresh.
ALTER TABLE sessions ADD COLUMN org_id TEXT;
