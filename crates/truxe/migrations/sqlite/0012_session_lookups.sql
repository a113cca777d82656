-- What a sign-in reads of a user's sessions (any before? any from this
-- agent? how many live?) read from indexes alone: sessions are kept after
-- they end, and without these each sign-in read every session the user
-- ever had, so each was slower than the one before. The live index also
-- serves what sessions_by_user did (a user's live sessions, sorted after).
CREATE INDEX sessions_by_user_agent ON sessions(user_id, user_agent);
CREATE INDEX sessions_live_by_user ON sessions(user_id, revoked_at, expires_at);
DROP INDEX sessions_by_user;
