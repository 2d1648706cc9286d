-- Catalog (owned by crates/catalog); see the PostgreSQL migration for the reasoning.
CREATE TABLE products (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT    NOT NULL,
    category     TEXT    NOT NULL,
    description  TEXT    NOT NULL,
    created_at   TEXT    NOT NULL
);

CREATE TABLE product_options (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    product_id  INTEGER NOT NULL REFERENCES products (id),
    name        TEXT    NOT NULL,
    price       INTEGER NOT NULL CHECK (price >= 0),
    stock       INTEGER NOT NULL CHECK (stock >= 0)
);
CREATE INDEX product_options_product ON product_options (product_id, id);

CREATE TABLE stock_reservations (
    order_id     INTEGER NOT NULL,
    option_id    INTEGER NOT NULL REFERENCES product_options (id),
    quantity     INTEGER NOT NULL CHECK (quantity > 0),
    unit_price   INTEGER NOT NULL,
    reserved_at  TEXT    NOT NULL,
    released_at  TEXT,
    PRIMARY KEY (order_id, option_id)
);

-- Where each order's stock stands: the row both reserve and release write first, so they
-- serialize per order and a release that comes before the reserve (an order cancelled while
-- PENDING) makes the reserve refuse instead of leaking stock.
CREATE TABLE order_stock (
    order_id  INTEGER PRIMARY KEY,
    state     TEXT NOT NULL CHECK (state IN ('RESERVED', 'FAILED', 'RELEASED'))
);
