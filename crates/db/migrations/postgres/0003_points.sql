-- Points (owned by crates/points). A balance never goes negative: the CHECK backs the
-- conditional UPDATE that spends points.
CREATE TABLE point_balances (
    user_id     BIGINT      PRIMARY KEY REFERENCES users (id),
    balance     BIGINT      NOT NULL CHECK (balance >= 0),
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE point_history (
    id             BIGSERIAL   PRIMARY KEY,
    user_id        BIGINT      NOT NULL REFERENCES users (id),
    kind           TEXT        NOT NULL CHECK (kind IN ('CHARGE', 'USE', 'REFUND')),
    amount         BIGINT      NOT NULL CHECK (amount > 0),
    balance_after  BIGINT      NOT NULL,
    order_id       BIGINT,
    created_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX point_history_user ON point_history (user_id, id);
-- One USE and one REFUND per order: what makes them idempotent.
CREATE UNIQUE INDEX point_history_order ON point_history (order_id, kind) WHERE order_id IS NOT NULL;

-- Secrets the deployment generates for itself (owned by crates/server), shared by every instance.
CREATE TABLE app_secrets (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

-- Idempotency-Key records (owned by crates/server): the response is stored in the transaction
-- of the effect.
CREATE TABLE idempotency_keys (
    scope         TEXT        NOT NULL,
    user_id       BIGINT      NOT NULL,
    idem_key      TEXT        NOT NULL,
    request_hash  TEXT        NOT NULL,
    status        INTEGER,
    body          TEXT,
    created_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (scope, user_id, idem_key)
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
