-- The desk's own database. It never holds an issued certificate (DESIGN rule 1):
-- orders keep the CA's reference and public metadata only.
-- Times are Unix milliseconds.

CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    account_id     TEXT NOT NULL REFERENCES accounts(id),
    email          TEXT NOT NULL UNIQUE,
    role           TEXT NOT NULL CHECK (role IN ('admin', 'member', 'viewer')),
    password_hash  TEXT,
    created_at     INTEGER NOT NULL
);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id),
    token_hash  BLOB NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE orders (
    id                TEXT PRIMARY KEY,
    account_id        TEXT NOT NULL REFERENCES accounts(id),
    created_by        TEXT NOT NULL REFERENCES users(id),
    state             TEXT NOT NULL,
    ca                TEXT NOT NULL,
    ca_reference      TEXT,
    common_name       TEXT NOT NULL,
    names             TEXT NOT NULL,  -- JSON array
    key_type          TEXT NOT NULL,
    days              INTEGER NOT NULL,
    csr_pem           TEXT NOT NULL,
    admin_email       TEXT NOT NULL,
    admin_name        TEXT NOT NULL,
    approver_email    TEXT,
    language          TEXT NOT NULL,
    failure_reason    TEXT,
    cert_serial       TEXT,
    cert_not_before   INTEGER,
    cert_not_after    INTEGER,
    cert_fingerprint  TEXT,
    cert_issuer       TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);
-- Keyset paging: newest first, per account, optionally per state.
CREATE INDEX orders_by_account ON orders(account_id, created_at DESC, id DESC);
CREATE INDEX orders_by_account_state ON orders(account_id, state, created_at DESC, id DESC);
CREATE INDEX orders_pending ON orders(state) WHERE state IN ('submitted', 'pending_approval');

-- One row per name, so "orders for example.com" is an index look-up.
CREATE TABLE order_names (
    account_id   TEXT NOT NULL,
    order_id     TEXT NOT NULL REFERENCES orders(id),
    name         TEXT NOT NULL,
    registrable  TEXT,
    PRIMARY KEY (order_id, name)
);
CREATE INDEX order_names_by_name ON order_names(account_id, name);
CREATE INDEX order_names_by_registrable ON order_names(account_id, registrable);

CREATE TABLE email_requests (
    id            TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL,
    order_id      TEXT NOT NULL REFERENCES orders(id),
    kind          TEXT NOT NULL CHECK (kind IN ('approval', 'fulfillment')),
    trigger       TEXT NOT NULL CHECK (trigger IN ('initial', 'resend')),
    recipient     TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('queued', 'forwarded', 'sent', 'failed')),
    error         TEXT,
    requested_by  TEXT,
    message_id    TEXT NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX email_requests_by_order ON email_requests(order_id, created_at);

-- The job queue (transactional outbox). A job row is written in the same
-- transaction as the change that needs it; the worker deletes it when done.
CREATE TABLE jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    key           TEXT NOT NULL UNIQUE,
    kind          TEXT NOT NULL,
    payload       TEXT NOT NULL,
    run_at        INTEGER NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    locked_until  INTEGER,
    last_error    TEXT,
    created_at    INTEGER NOT NULL
);
CREATE INDEX jobs_due ON jobs(run_at);

CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id  TEXT,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    detail      TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX audit_events_by_account ON audit_events(account_id, id);

-- A retried POST with the same Idempotency-Key gets the first answer.
CREATE TABLE idempotency_keys (
    account_id   TEXT NOT NULL,
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL,
    resource_id  TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (account_id, scope, key)
);
