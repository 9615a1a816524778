-- The desk's own database on PostgreSQL: the schema SQLite reaches after
-- migrations/sqlite/0001..0005, in one step. It never holds an issued
-- certificate (DESIGN rule 1): orders keep the CA's reference and public
-- metadata only.
--
-- Kept as on SQLite, so rows, row mappers and keyset cursors are the same on
-- both backends:
-- * times are BIGINT Unix milliseconds, not timestamptz;
-- * JSON columns are TEXT holding the same JSON text;
-- * ids are TEXT (UUIDv7 strings). The ids that keyset paging and listings
--   sort by are COLLATE "C": byte order, as SQLite compares text, whatever
--   the database's default collation is.
-- `key` and `trigger` are non-reserved words in PostgreSQL and need no quotes.

CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    account_id     TEXT NOT NULL REFERENCES accounts(id),
    email          TEXT NOT NULL UNIQUE,
    role           TEXT NOT NULL CHECK (role IN ('admin', 'member', 'viewer')),
    password_hash  TEXT,
    created_at     BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id),
    token_hash  BYTEA NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE orders (
    id                TEXT COLLATE "C" PRIMARY KEY,
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
    cert_not_before   BIGINT,
    cert_not_after    BIGINT,
    cert_fingerprint  TEXT,
    cert_issuer       TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
-- Keyset paging: newest first, per account, optionally per state.
CREATE INDEX orders_by_account ON orders(account_id, created_at DESC, id DESC);
CREATE INDEX orders_by_account_state ON orders(account_id, state, created_at DESC, id DESC);
-- Orders still waiting on their CA, for the start-up sweep.
CREATE INDEX orders_pending ON orders(state) WHERE state IN ('submitted', 'pending_approval');

-- One row per name, so "orders for www.example.com" is one index range scan
-- in listing order (it carries the order's creation time for that).
CREATE TABLE order_names (
    account_id   TEXT NOT NULL,
    order_id     TEXT COLLATE "C" NOT NULL REFERENCES orders(id),
    name         TEXT NOT NULL,
    registrable  TEXT,
    created_at   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (order_id, name)
);
CREATE INDEX order_names_by_name ON order_names(account_id, name, created_at DESC, order_id DESC);

-- One row per order and registrable domain (an order for example.com and
-- www.example.com counts once), indexed in listing order.
CREATE TABLE order_domains (
    account_id   TEXT NOT NULL,
    order_id     TEXT COLLATE "C" NOT NULL REFERENCES orders(id),
    registrable  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (order_id, registrable)
);
CREATE INDEX order_domains_by_domain ON order_domains(account_id, registrable, created_at DESC, order_id DESC);

CREATE TABLE email_requests (
    id            TEXT COLLATE "C" PRIMARY KEY,
    account_id    TEXT NOT NULL,
    order_id      TEXT COLLATE "C" NOT NULL REFERENCES orders(id),
    kind          TEXT NOT NULL CHECK (kind IN ('approval', 'fulfillment')),
    trigger       TEXT NOT NULL CHECK (trigger IN ('initial', 'resend')),
    recipient     TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('queued', 'forwarded', 'sent', 'failed')),
    error         TEXT,
    requested_by  TEXT,
    message_id    TEXT NOT NULL UNIQUE,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
-- Every lookup of an order's email requests (the Orders screen shows each
-- order's latest fulfillment email request; the rate limit counts resends).
CREATE INDEX email_requests_latest ON email_requests(order_id, kind, created_at);

-- The job queue (transactional outbox). A job row is written in the same
-- transaction as the change that needs it; the worker deletes it when done.
-- Workers of several desks claim with FOR UPDATE SKIP LOCKED.
CREATE TABLE jobs (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key           TEXT NOT NULL UNIQUE,
    kind          TEXT NOT NULL,
    payload       TEXT NOT NULL,
    run_at        BIGINT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    locked_until  BIGINT,
    -- The desk holding the lease: the key of the advisory lock it holds
    -- while it runs (PgStore::connect), so a dead desk's leases can be told
    -- from a live one's.
    locked_by     INTEGER,
    last_error    TEXT,
    created_at    BIGINT NOT NULL
);
CREATE INDEX jobs_due ON jobs(run_at);

CREATE TABLE audit_events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  TEXT,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    detail      TEXT NOT NULL,  -- JSON
    created_at  BIGINT NOT NULL
);
CREATE INDEX audit_events_by_account ON audit_events(account_id, id);

-- A retried POST with the same Idempotency-Key gets the first answer.
CREATE TABLE idempotency_keys (
    account_id   TEXT NOT NULL,
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL,
    resource_id  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (account_id, scope, key)
);

-- Console sign-in sessions. The cookie holds a random token; only its hash
-- is kept, so a copy of the database opens no session.
CREATE TABLE sessions (
    token_hash  BYTEA PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id),
    csrf_token  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions(expires_at);

-- The certificate store: certificates users imported by hand. Unlike ordered
-- certificates (which the desk never keeps), these are held on purpose.
-- Private keys are encrypted (envelope encryption): each row has its own data
-- key, itself sealed by the master key; rotating the master key re-seals
-- only the data keys.
CREATE TABLE certificates (
    id               TEXT COLLATE "C" PRIMARY KEY,
    account_id       TEXT NOT NULL REFERENCES accounts(id),
    common_name      TEXT,
    names            TEXT NOT NULL,     -- JSON array
    issuer           TEXT NOT NULL,
    serial           TEXT NOT NULL,
    not_before       BIGINT NOT NULL,
    not_after        BIGINT NOT NULL,
    fingerprint      TEXT NOT NULL,
    key_type         TEXT NOT NULL,
    certificate_pem  TEXT NOT NULL,
    chain_pem        TEXT NOT NULL,
    csr_pem          TEXT,
    key_ciphertext   BYTEA NOT NULL,    -- PKCS#8 under the data key
    wrapped_key      BYTEA NOT NULL,    -- the data key under the master key
    notes            TEXT NOT NULL DEFAULT '',
    warnings         TEXT NOT NULL,     -- JSON array of {code, message}
    expired_on_import BOOLEAN NOT NULL DEFAULT FALSE,
    created_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX certificates_by_account ON certificates(account_id, created_at DESC, id DESC);
CREATE INDEX certificates_by_expiry ON certificates(account_id, not_after);
