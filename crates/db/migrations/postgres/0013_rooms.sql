-- Waiting rooms (owned by crates/rooms): a room's definition and its rate history. Its line
-- lives in the cache. One room at a time per sale: the partial unique indexes hold while a
-- room is not closed.
CREATE TABLE rooms (
    id              BIGSERIAL   PRIMARY KEY,
    name            TEXT        NOT NULL,
    coupon_id       BIGINT,
    product_id      BIGINT,
    opens_at        TIMESTAMPTZ NOT NULL,
    max_active      BIGINT,
    admission_secs  BIGINT      NOT NULL,
    shuffle_seed    TEXT        NOT NULL,
    closed_reason   TEXT,
    closed_at       TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL,
    CHECK ((coupon_id IS NULL) <> (product_id IS NULL))
);
CREATE UNIQUE INDEX rooms_open_coupon ON rooms (coupon_id)
    WHERE closed_at IS NULL AND coupon_id IS NOT NULL;
CREATE UNIQUE INDEX rooms_open_product ON rooms (product_id)
    WHERE closed_at IS NULL AND product_id IS NOT NULL;

-- The rate from each change on (the first row is the opening rate): admissions due by a moment
-- are computed from it (crates/rooms/src/schedule.rs), the same on every instance.
CREATE TABLE room_rate_changes (
    room_id           BIGINT      NOT NULL REFERENCES rooms (id),
    seq               INTEGER     NOT NULL,
    at                TIMESTAMPTZ NOT NULL,
    admit_per_second  BIGINT      NOT NULL,
    paused            BOOLEAN     NOT NULL,
    PRIMARY KEY (room_id, seq)
);
