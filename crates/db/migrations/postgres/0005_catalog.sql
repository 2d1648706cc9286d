-- Catalog (owned by crates/catalog). Stock is the live stock: what can still be ordered. The
-- CHECK backs the conditional UPDATE that reserves it, so it never goes negative.
CREATE TABLE products (
    id           BIGSERIAL   PRIMARY KEY,
    name         TEXT        NOT NULL,
    category     TEXT        NOT NULL,
    description  TEXT        NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE product_options (
    id          BIGSERIAL PRIMARY KEY,
    product_id  BIGINT    NOT NULL REFERENCES products (id),
    name        TEXT      NOT NULL,
    price       BIGINT    NOT NULL CHECK (price >= 0),
    stock       BIGINT    NOT NULL CHECK (stock >= 0)
);
CREATE INDEX product_options_product ON product_options (product_id, id);

-- What each order holds: the record that makes reserve and release happen once per order.
CREATE TABLE stock_reservations (
    order_id     BIGINT      NOT NULL,
    option_id    BIGINT      NOT NULL REFERENCES product_options (id),
    quantity     BIGINT      NOT NULL CHECK (quantity > 0),
    unit_price   BIGINT      NOT NULL,
    reserved_at  TIMESTAMPTZ NOT NULL,
    released_at  TIMESTAMPTZ,
    PRIMARY KEY (order_id, option_id)
);

-- Where each order's stock stands: the row both reserve and release write first, so they
-- serialize per order and a release that comes before the reserve (an order cancelled while
-- PENDING) makes the reserve refuse instead of leaking stock.
CREATE TABLE order_stock (
    order_id  BIGINT PRIMARY KEY,
    state     TEXT NOT NULL CHECK (state IN ('RESERVED', 'FAILED', 'RELEASED'))
);
