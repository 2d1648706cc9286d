-- `stampede orders trace`: an order's events by key, and the consumers that applied each.
CREATE INDEX outbox_by_key ON outbox (event_key);
CREATE INDEX processed_events_by_event ON processed_events (event_id);
