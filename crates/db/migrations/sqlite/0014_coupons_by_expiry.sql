-- The reconciler asks for the coupons whose gate state may still be kept (expired less than a
-- week ago) every few seconds on every worker: without this it scans every coupon.
CREATE INDEX coupons_expires_at ON coupons (expires_at);
