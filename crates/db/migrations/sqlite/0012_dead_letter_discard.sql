-- stampede events discard: a dead letter an operator decided not to replay stays on record.
ALTER TABLE dead_letters ADD COLUMN discarded_at TEXT;
