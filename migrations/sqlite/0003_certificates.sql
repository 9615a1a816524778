-- The certificate store: certificates users imported by hand. Unlike ordered
-- certificates (which the desk never keeps), these are held on purpose.
-- Private keys are encrypted (envelope encryption): each row has its own data
-- key, itself sealed by the master key; rotating the master key re-seals
-- only the data keys.
CREATE TABLE certificates (
    id               TEXT PRIMARY KEY,
    account_id       TEXT NOT NULL REFERENCES accounts(id),
    common_name      TEXT,
    names            TEXT NOT NULL,     -- JSON array
    issuer           TEXT NOT NULL,
    serial           TEXT NOT NULL,
    not_before       INTEGER NOT NULL,
    not_after        INTEGER NOT NULL,
    fingerprint      TEXT NOT NULL,
    key_type         TEXT NOT NULL,
    certificate_pem  TEXT NOT NULL,
    chain_pem        TEXT NOT NULL,
    csr_pem          TEXT,
    key_ciphertext   BLOB NOT NULL,     -- PKCS#8 under the data key
    wrapped_key      BLOB NOT NULL,     -- the data key under the master key
    notes            TEXT NOT NULL DEFAULT '',
    warnings         TEXT NOT NULL,     -- JSON array of {code, message}
    expired_on_import INTEGER NOT NULL DEFAULT 0,
    created_by       TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX certificates_by_account ON certificates(account_id, created_at DESC, id DESC);
CREATE INDEX certificates_by_expiry ON certificates(account_id, not_after);
