-- no-transaction
-- Replaced by sessions_live_by_user (0013).
DROP INDEX CONCURRENTLY IF EXISTS sessions_by_user;
