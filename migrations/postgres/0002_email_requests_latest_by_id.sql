-- The Orders screen takes each order's newest fulfillment email request,
-- the later id when two share a millisecond. With the id in the index the
-- backward scan yields that row first and stops; without it PostgreSQL read
-- and sorted every request of the order (27 buffers an order against 4, for
-- orders resent about twenty times each).
DROP INDEX email_requests_latest;
CREATE INDEX email_requests_latest ON email_requests(order_id, kind, created_at, id);
