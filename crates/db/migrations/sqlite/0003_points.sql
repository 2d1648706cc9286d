-- Points (owned by crates/points), secrets and idempotency keys (crates/server).
CREATE TABLE point_balances (
    user_id     INTEGER PRIMARY KEY REFERENCES users (id),
    balance     INTEGER NOT NULL CHECK (balance >= 0),
    updated_at  TEXT    NOT NULL
);

CREATE TABLE point_history (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id        INTEGER NOT NULL REFERENCES users (id),
    kind           TEXT    NOT NULL CHECK (kind IN ('CHARGE', 'USE', 'REFUND')),
    amount         INTEGER NOT NULL CHECK (amount > 0),
    balance_after  INTEGER NOT NULL,
    order_id       INTEGER,
    created_at     TEXT    NOT NULL
);
CREATE INDEX point_history_user ON point_history (user_id, id);
CREATE UNIQUE INDEX point_history_order ON point_history (order_id, kind) WHERE order_id IS NOT NULL;

CREATE TABLE app_secrets (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

CREATE TABLE idempotency_keys (
    scope         TEXT    NOT NULL,
    user_id       INTEGER NOT NULL,
    idem_key      TEXT    NOT NULL,
    request_hash  TEXT    NOT NULL,
    status        INTEGER,
    body          TEXT,
    created_at    TEXT    NOT NULL,
    PRIMARY KEY (scope, user_id, idem_key)
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
