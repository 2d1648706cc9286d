-- Event backbone (owned by crates/eventbus).

-- The transactional outbox. Rows are written in the same transaction as the state change.
-- With the db:// bus it is also the durable log: the relay assigns `log_seq` in commit order,
-- and consumer groups read it by (topic, partition, log_seq).
CREATE TABLE outbox (
    seq           BIGSERIAL PRIMARY KEY,
    event_id      UUID        NOT NULL,
    topic         TEXT        NOT NULL,
    event_key     TEXT        NOT NULL,
    partition_no  INTEGER     NOT NULL,
    envelope      JSONB       NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    log_seq       BIGINT,
    published_at  TIMESTAMPTZ
);
CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
CREATE UNIQUE INDEX outbox_log ON outbox (topic, partition_no, log_seq) WHERE log_seq IS NOT NULL;

-- The last log position the relay gave out, kept apart from the rows so that pruning the
-- outbox never makes positions go backwards.
CREATE TABLE outbox_log_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    top  BIGINT  NOT NULL
);
INSERT INTO outbox_log_head (id, top) VALUES (1, 0);

-- Offsets of the db:// bus: one row per (consumer group, topic, partition); the row lock is
-- the claim that lets several workers of one group split the partitions. `attempts` counts the
-- failed attempts at the event after `log_seq`, whichever worker made them.
CREATE TABLE consumer_offsets (
    consumer      TEXT        NOT NULL,
    topic         TEXT        NOT NULL,
    partition_no  INTEGER     NOT NULL,
    log_seq       BIGINT      NOT NULL DEFAULT 0,
    attempts      INTEGER     NOT NULL DEFAULT 0,
    last_error    TEXT,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, topic, partition_no)
);

-- Deduplication records, written in the same transaction as a consumer's effect.
CREATE TABLE processed_events (
    consumer      TEXT        NOT NULL,
    event_id      UUID        NOT NULL,
    processed_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- Events a consumer gave up on after its retries; `stampede events replay` sends them again.
CREATE TABLE dead_letters (
    id            BIGSERIAL PRIMARY KEY,
    consumer      TEXT        NOT NULL,
    event_id      UUID        NOT NULL,
    topic         TEXT        NOT NULL,
    envelope      JSONB       NOT NULL,
    error         TEXT        NOT NULL,
    attempts      INTEGER     NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    replayed_at   TIMESTAMPTZ
);
CREATE INDEX dead_letters_pending ON dead_letters (id) WHERE replayed_at IS NULL;

-- Wake the relays of every instance when an outbox insert commits (NOTIFY is delivered at
-- commit), so no relay waits for its polling fallback.
CREATE FUNCTION stampede_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('stampede_outbox', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION stampede_outbox_notify();
