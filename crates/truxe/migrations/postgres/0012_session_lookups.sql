-- no-transaction
-- What a sign-in reads of a user's sessions (any before? any from this
-- agent? how many live?) read from indexes alone: sessions are kept after
-- they end, and without these each sign-in read every session the user
-- ever had, so each was slower than the one before. Built CONCURRENTLY,
-- one statement per migration (PostgreSQL runs several in one implicit
-- transaction), so that an upgrade does not hold sign-ins and refreshes
-- while a large sessions table is indexed.
CREATE INDEX CONCURRENTLY IF NOT EXISTS sessions_by_user_agent ON sessions(user_id, user_agent);
