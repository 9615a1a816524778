-- The fulfillment email attaches the certificate issued for an order,
-- found by the order's reference: without this index every email scanned
-- every certificate the CA ever issued (seen in a profile of the benchmark).
CREATE INDEX certificates_by_reference ON certificates(reference);
