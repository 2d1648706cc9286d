-- Waiting rooms (owned by crates/rooms); see the PostgreSQL migration for the reasoning.
CREATE TABLE rooms (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT    NOT NULL,
    coupon_id       INTEGER,
    product_id      INTEGER,
    opens_at        TEXT    NOT NULL,
    max_active      INTEGER,
    admission_secs  INTEGER NOT NULL,
    shuffle_seed    TEXT    NOT NULL,
    closed_reason   TEXT,
    closed_at       TEXT,
    created_at      TEXT    NOT NULL,
    CHECK ((coupon_id IS NULL) <> (product_id IS NULL))
);
CREATE UNIQUE INDEX rooms_open_coupon ON rooms (coupon_id)
    WHERE closed_at IS NULL AND coupon_id IS NOT NULL;
CREATE UNIQUE INDEX rooms_open_product ON rooms (product_id)
    WHERE closed_at IS NULL AND product_id IS NOT NULL;

CREATE TABLE room_rate_changes (
    room_id           INTEGER NOT NULL REFERENCES rooms (id),
    seq               INTEGER NOT NULL,
    at                TEXT    NOT NULL,
    admit_per_second  INTEGER NOT NULL,
    paused            BOOLEAN NOT NULL,
    PRIMARY KEY (room_id, seq)
);
