-- Event backbone (owned by crates/eventbus). Same tables as the PostgreSQL migration.

CREATE TABLE outbox (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id      BLOB    NOT NULL,
    topic         TEXT    NOT NULL,
    event_key     TEXT    NOT NULL,
    partition_no  INTEGER NOT NULL,
    envelope      TEXT    NOT NULL,
    created_at    TEXT    NOT NULL,
    log_seq       INTEGER,
    published_at  TEXT
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

CREATE TABLE consumer_offsets (
    consumer      TEXT    NOT NULL,
    topic         TEXT    NOT NULL,
    partition_no  INTEGER NOT NULL,
    log_seq       INTEGER NOT NULL DEFAULT 0,
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    updated_at    TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (consumer, topic, partition_no)
);

CREATE TABLE processed_events (
    consumer      TEXT    NOT NULL,
    event_id      BLOB    NOT NULL,
    processed_at  TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (consumer, event_id)
) WITHOUT ROWID;

CREATE TABLE dead_letters (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    consumer      TEXT    NOT NULL,
    event_id      BLOB    NOT NULL,
    topic         TEXT    NOT NULL,
    envelope      TEXT    NOT NULL,
    error         TEXT    NOT NULL,
    attempts      INTEGER NOT NULL,
    created_at    TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP,
    replayed_at   TEXT
);
CREATE INDEX dead_letters_pending ON dead_letters (id) WHERE replayed_at IS NULL;
