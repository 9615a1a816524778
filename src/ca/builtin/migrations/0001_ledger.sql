-- The built-in CA's issuance ledger: its own file, apart from the desk's
-- database. A CA keeps what it issued, to revoke it and to send it again.

CREATE TABLE ca_orders (
    reference               TEXT PRIMARY KEY,
    desk_order_id           TEXT NOT NULL UNIQUE,
    names                   TEXT NOT NULL,  -- JSON array
    csr_der                 BLOB NOT NULL,
    days                    INTEGER NOT NULL,
    admin_email             TEXT NOT NULL,
    admin_name              TEXT NOT NULL,
    approver_email          TEXT,
    requester               TEXT NOT NULL,
    language                TEXT NOT NULL,
    state                   TEXT NOT NULL CHECK (state IN ('pending', 'issued', 'declined', 'cancelled')),
    approval_token_hash     BLOB UNIQUE,
    approval_token_sealed   BLOB,
    approval_expires_at     INTEGER,
    serial                  TEXT,
    created_at              INTEGER NOT NULL,
    decided_at              INTEGER
);

CREATE TABLE certificates (
    serial      TEXT PRIMARY KEY,
    reference   TEXT NOT NULL REFERENCES ca_orders(reference),
    der         BLOB NOT NULL,
    not_before  INTEGER NOT NULL,
    not_after   INTEGER NOT NULL,
    issued_at   INTEGER NOT NULL
);
