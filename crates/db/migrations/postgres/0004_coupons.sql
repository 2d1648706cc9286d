-- Coupons (owned by crates/coupons). The database is the truth about issuance: the CHECK on
-- issued_quantity backs the conditional UPDATE that takes one unit, and UNIQUE (coupon_id,
-- user_id) makes a second coupon for one user impossible, whatever the cache says.
CREATE TABLE coupons (
    id               BIGSERIAL   PRIMARY KEY,
    name             TEXT        NOT NULL,
    discount_type    TEXT        NOT NULL CHECK (discount_type IN ('FIXED', 'PERCENT')),
    discount_value   BIGINT      NOT NULL CHECK (discount_value > 0),
    total_quantity   BIGINT      NOT NULL CHECK (total_quantity >= 0),
    issued_quantity  BIGINT      NOT NULL DEFAULT 0,
    expires_at       TIMESTAMPTZ NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    CHECK (issued_quantity BETWEEN 0 AND total_quantity)
);

CREATE TABLE user_coupons (
    id         BIGSERIAL   PRIMARY KEY,
    coupon_id  BIGINT      NOT NULL REFERENCES coupons (id),
    user_id    BIGINT      NOT NULL,
    task_id    UUID        NOT NULL UNIQUE,
    status     TEXT        NOT NULL DEFAULT 'AVAILABLE' CHECK (status IN ('AVAILABLE', 'USED')),
    order_id   BIGINT,
    issued_at  TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ,
    UNIQUE (coupon_id, user_id)
);
CREATE INDEX user_coupons_user ON user_coupons (user_id, id);
-- A coupon serves one order at a time: what makes use and restore idempotent per order.
CREATE UNIQUE INDEX user_coupons_order ON user_coupons (order_id) WHERE order_id IS NOT NULL;

-- The terminal result of every accepted issue request (pending ones live in the cache).
CREATE TABLE coupon_tasks (
    task_id         UUID        PRIMARY KEY,
    coupon_id       BIGINT      NOT NULL REFERENCES coupons (id),
    user_id         BIGINT      NOT NULL,
    status          TEXT        NOT NULL CHECK (status IN ('SUCCESS', 'FAILED')),
    reason          TEXT,
    user_coupon_id  BIGINT,
    finished_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX coupon_tasks_coupon ON coupon_tasks (coupon_id, user_id);
