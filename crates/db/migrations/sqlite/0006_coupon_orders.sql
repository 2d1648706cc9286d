-- Where each order's coupon step stands (owned by crates/coupons): the row both the use and
-- the restore write first, so they serialize per order and a restore that comes before the
-- use (an order cancelled while PENDING) makes the use refuse instead of spending the coupon.
CREATE TABLE coupon_orders (
    order_id  INTEGER PRIMARY KEY,
    state     TEXT    NOT NULL CHECK (state IN ('USED', 'FAILED', 'RESTORED'))
);
