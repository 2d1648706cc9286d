-- The Location header of a stored response (crates/server), so a replayed 201/202 points at
-- the same resource.
ALTER TABLE idempotency_keys ADD COLUMN location TEXT;
