-- Orders (owned by crates/orders); see the PostgreSQL migration for the reasoning.
CREATE TABLE orders (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id            INTEGER NOT NULL,
    status             TEXT    NOT NULL CHECK (status IN
                           ('PENDING', 'AWAITING_PAYMENT', 'PAID', 'FAILED', 'EXPIRED', 'CANCELLED')),
    user_coupon_id     INTEGER,
    original_amount    INTEGER NOT NULL DEFAULT 0,
    discount_amount    INTEGER NOT NULL DEFAULT 0,
    total_amount       INTEGER NOT NULL DEFAULT 0 CHECK (total_amount >= 0),
    failure_reason     TEXT,
    payment_deadline   TEXT,
    stock_reserved_at  TEXT,
    coupon_applied_at  TEXT,
    redrives           INTEGER NOT NULL DEFAULT 0,
    version            INTEGER NOT NULL DEFAULT 1,
    created_at         TEXT    NOT NULL,
    updated_at         TEXT    NOT NULL
);
CREATE INDEX orders_by_user ON orders (user_id, id DESC);
CREATE INDEX orders_pending ON orders (created_at) WHERE status = 'PENDING';
CREATE INDEX orders_awaiting ON orders (payment_deadline) WHERE status = 'AWAITING_PAYMENT';

CREATE TABLE order_items (
    order_id           INTEGER NOT NULL REFERENCES orders (id),
    product_option_id  INTEGER NOT NULL,
    product_id         INTEGER NOT NULL,
    product_name       TEXT    NOT NULL,
    option_name        TEXT    NOT NULL,
    unit_price         INTEGER NOT NULL CHECK (unit_price >= 0),
    quantity           INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, product_option_id)
);

CREATE TABLE order_changes (
    order_id    INTEGER NOT NULL REFERENCES orders (id),
    version     INTEGER NOT NULL,
    body        TEXT    NOT NULL,
    changed_at  TEXT    NOT NULL,
    PRIMARY KEY (order_id, version)
);

CREATE TABLE payments (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id  INTEGER NOT NULL UNIQUE REFERENCES orders (id),
    user_id   INTEGER NOT NULL,
    amount    INTEGER NOT NULL CHECK (amount >= 0),
    paid_at   TEXT    NOT NULL
);
