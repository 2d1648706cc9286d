-- Coupons (owned by crates/coupons); see the PostgreSQL migration for the reasoning.
CREATE TABLE coupons (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    name             TEXT    NOT NULL,
    discount_type    TEXT    NOT NULL CHECK (discount_type IN ('FIXED', 'PERCENT')),
    discount_value   INTEGER NOT NULL CHECK (discount_value > 0),
    total_quantity   INTEGER NOT NULL CHECK (total_quantity >= 0),
    issued_quantity  INTEGER NOT NULL DEFAULT 0,
    expires_at       TEXT    NOT NULL,
    created_at       TEXT    NOT NULL,
    CHECK (issued_quantity BETWEEN 0 AND total_quantity)
);

CREATE TABLE user_coupons (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    coupon_id  INTEGER NOT NULL REFERENCES coupons (id),
    user_id    INTEGER NOT NULL,
    task_id    BLOB    NOT NULL UNIQUE,
    status     TEXT    NOT NULL DEFAULT 'AVAILABLE' CHECK (status IN ('AVAILABLE', 'USED')),
    order_id   INTEGER,
    issued_at  TEXT    NOT NULL,
    used_at    TEXT,
    UNIQUE (coupon_id, user_id)
);
CREATE INDEX user_coupons_user ON user_coupons (user_id, id);
CREATE UNIQUE INDEX user_coupons_order ON user_coupons (order_id) WHERE order_id IS NOT NULL;

CREATE TABLE coupon_tasks (
    task_id         BLOB    PRIMARY KEY,
    coupon_id       INTEGER NOT NULL REFERENCES coupons (id),
    user_id         INTEGER NOT NULL,
    status          TEXT    NOT NULL CHECK (status IN ('SUCCESS', 'FAILED')),
    reason          TEXT,
    user_coupon_id  INTEGER,
    finished_at     TEXT    NOT NULL
);
CREATE INDEX coupon_tasks_coupon ON coupon_tasks (coupon_id, user_id);
