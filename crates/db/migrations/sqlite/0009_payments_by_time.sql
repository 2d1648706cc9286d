-- The ranking rebuild reads the payments of its window (the last 30 days) by time.
CREATE INDEX payments_by_time ON payments (paid_at);
