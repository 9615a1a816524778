-- email_requests_latest (order_id, kind, created_at) serves every lookup of
-- an order's email requests; this older index only cost every new request
-- one more B-tree page to write.
DROP INDEX email_requests_by_order;
