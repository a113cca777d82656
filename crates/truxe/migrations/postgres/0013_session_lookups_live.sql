-- no-transaction
-- The live count of a sign-in (see 0012); it also serves what
-- sessions_by_user did (a user's live sessions, sorted after).
CREATE INDEX CONCURRENTLY IF NOT EXISTS sessions_live_by_user ON sessions(user_id, revoked_at, expires_at);
