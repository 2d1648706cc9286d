-- Orders (owned by crates/orders): the order and its saga state, the changes clients follow
-- over SSE, and payments.
CREATE TABLE orders (
    id                 BIGSERIAL   PRIMARY KEY,
    user_id            BIGINT      NOT NULL,
    status             TEXT        NOT NULL CHECK (status IN
                           ('PENDING', 'AWAITING_PAYMENT', 'PAID', 'FAILED', 'EXPIRED', 'CANCELLED')),
    user_coupon_id     BIGINT,
    original_amount    BIGINT      NOT NULL DEFAULT 0,
    discount_amount    BIGINT      NOT NULL DEFAULT 0,
    total_amount       BIGINT      NOT NULL DEFAULT 0 CHECK (total_amount >= 0),
    failure_reason     TEXT,
    payment_deadline   TIMESTAMPTZ,
    -- The saga's record of the steps other contexts reported done (NULL: not yet).
    stock_reserved_at  TIMESTAMPTZ,
    coupon_applied_at  TIMESTAMPTZ,
    -- How often the sweeper re-published `order-created` for a saga stuck in PENDING.
    redrives           INTEGER     NOT NULL DEFAULT 0,
    -- Bumped on every status change; the id of the change's SSE event.
    version            INTEGER     NOT NULL DEFAULT 1,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX orders_by_user ON orders (user_id, id DESC);
-- What the sweeper scans: only open orders are indexed.
CREATE INDEX orders_pending ON orders (created_at) WHERE status = 'PENDING';
CREATE INDEX orders_awaiting ON orders (payment_deadline) WHERE status = 'AWAITING_PAYMENT';

CREATE TABLE order_items (
    order_id           BIGINT NOT NULL REFERENCES orders (id),
    product_option_id  BIGINT NOT NULL,
    product_id         BIGINT NOT NULL,
    product_name       TEXT   NOT NULL,
    option_name        TEXT   NOT NULL,
    unit_price         BIGINT NOT NULL CHECK (unit_price >= 0),
    quantity           BIGINT NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, product_option_id)
);

-- Every status an order took, as served then (JSON): what order SSE streams replay after
-- `Last-Event-ID`.
CREATE TABLE order_changes (
    order_id    BIGINT      NOT NULL REFERENCES orders (id),
    version     INTEGER     NOT NULL,
    body        TEXT        NOT NULL,
    changed_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (order_id, version)
);

CREATE TABLE payments (
    id        BIGSERIAL   PRIMARY KEY,
    order_id  BIGINT      NOT NULL UNIQUE REFERENCES orders (id),
    user_id   BIGINT      NOT NULL,
    amount    BIGINT      NOT NULL CHECK (amount >= 0),
    paid_at   TIMESTAMPTZ NOT NULL
);
