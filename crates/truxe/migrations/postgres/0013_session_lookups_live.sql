-- no-transaction
-- (No IF NOT EXISTS: a build interrupted midway leaves an invalid index,
-- and the rerun must then fail by name rather than keep it; drop it and
-- run again.)
-- The live count of a sign-in (see 0012); it also serves what
-- sessions_by_user did (a user's live sessions, sorted after).
CREATE INDEX CONCURRENTLY sessions_live_by_user ON sessions(user_id, revoked_at, expires_at);
