//! The built-in CA's issuance ledger: orders it holds and what it issued.

use std::path::Path;

use rusqlite::{params, Connection, Row};
use time::OffsetDateTime;

use crate::ca::CaOrderRequest;
use crate::domain::order::IssuedMetadata;
use crate::domain::EmailAddress;
use crate::store::sqlite::{all, execute, one, open_migrated};
use crate::store::sqlite_db::SqliteDb;
use crate::store::{from_ms, now_ms, to_ms, StoreError};

/// The ledger's errors are the store's: the same database, the same causes.
pub type LedgerError = StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerState {
    Pending,
    Issued,
    Declined,
    Cancelled,
}

impl LedgerState {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerState::Pending => "pending",
            LedgerState::Issued => "issued",
            LedgerState::Declined => "declined",
            LedgerState::Cancelled => "cancelled",
        }
    }
    fn parse(s: &str) -> Option<LedgerState> {
        [
            LedgerState::Pending,
            LedgerState::Issued,
            LedgerState::Declined,
            LedgerState::Cancelled,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

#[derive(Debug, Clone)]
pub struct LedgerOrder {
    pub reference: String,
    pub desk_order_id: String,
    pub names: Vec<String>,
    pub csr_der: Vec<u8>,
    pub days: u32,
    pub admin_email: EmailAddress,
    pub admin_name: String,
    pub approver_email: Option<EmailAddress>,
    pub requester: EmailAddress,
    /// The order's language ("en" or "it"), for the emails.
    pub language: String,
    pub state: LedgerState,
    pub approval_token_sealed: Option<Vec<u8>>,
    pub approval_expires_at: Option<OffsetDateTime>,
}

/// Its own SQLite file, with its own writer thread: issuing never waits on
/// the desk's writes, and a burst of issuances commits together.
pub struct Ledger {
    db: SqliteDb,
}

fn corrupt(what: &str) -> LedgerError {
    StoreError::Corrupt(format!("CA ledger holds a bad {what}"))
}

/// Every column of ca_orders, in the order `order_from_row` reads them.
const ORDER_COLUMNS: &str = "reference, desk_order_id, names, csr_der, days, admin_email,
    admin_name, approver_email, requester, language, state, approval_token_sealed,
    approval_expires_at";

fn order_from_row(r: &Row) -> Result<LedgerOrder, LedgerError> {
    let email = |i: usize, what: &str| -> Result<EmailAddress, LedgerError> {
        EmailAddress::parse(&r.get::<_, String>(i)?).map_err(|_| corrupt(what))
    };
    let approver: Option<String> = r.get(7)?;
    let names: String = r.get(2)?;
    let state: String = r.get(10)?;
    Ok(LedgerOrder {
        reference: r.get(0)?,
        desk_order_id: r.get(1)?,
        names: serde_json::from_str(&names).map_err(|_| corrupt("names"))?,
        csr_der: r.get(3)?,
        days: r.get::<_, i64>(4)? as u32,
        admin_email: email(5, "admin_email")?,
        admin_name: r.get(6)?,
        approver_email: approver
            .map(|a| EmailAddress::parse(&a).map_err(|_| corrupt("approver")))
            .transpose()?,
        requester: email(8, "requester")?,
        language: r.get(9)?,
        state: LedgerState::parse(&state).ok_or_else(|| corrupt("state"))?,
        approval_token_sealed: r.get(11)?,
        approval_expires_at: r.get::<_, Option<i64>>(12)?.map(from_ms),
    })
}

fn find_order(
    c: &Connection,
    column: &str,
    value: &dyn rusqlite::ToSql,
) -> Result<Option<LedgerOrder>, LedgerError> {
    let sql = format!("SELECT {ORDER_COLUMNS} FROM ca_orders WHERE {column} = ?");
    one(c, &sql, [value], order_from_row)
}

/// What a new row of ca_orders starts as.
enum NewRow<'a> {
    Pending {
        token_hash: &'a [u8],
        token_sealed: &'a [u8],
        expires_ms: i64,
    },
    Issued {
        serial: &'a str,
    },
}

/// Inserts the order unless its desk order is already recorded; returns
/// the rows inserted (0 or 1).
fn insert_order_row(
    c: &Connection,
    req: &CaOrderRequest,
    reference: &str,
    row: NewRow,
    now: i64,
) -> Result<usize, LedgerError> {
    let names: Vec<&str> = req.names.iter().map(|n| n.as_str()).collect();
    let names = serde_json::to_string(&names).expect("names serialize");
    let (state, token_hash, token_sealed, expires, serial, decided_at) = match row {
        NewRow::Pending {
            token_hash,
            token_sealed,
            expires_ms,
        } => (
            LedgerState::Pending,
            Some(token_hash),
            Some(token_sealed),
            Some(expires_ms),
            None,
            None,
        ),
        NewRow::Issued { serial } => (
            LedgerState::Issued,
            None,
            None,
            None,
            Some(serial),
            Some(now),
        ),
    };
    execute(
        c,
        "INSERT INTO ca_orders (reference, desk_order_id, names, csr_der, days, admin_email,
            admin_name, approver_email, requester, language, state, approval_token_hash,
            approval_token_sealed, approval_expires_at, serial, created_at, decided_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT(desk_order_id) DO NOTHING",
        params![
            reference,
            req.desk_order_id,
            names,
            req.csr_der,
            req.days as i64,
            req.admin_email.as_str(),
            req.admin_name,
            req.approver_email.as_ref().map(|e| e.as_str()),
            req.requester.as_str(),
            req.language,
            state.as_str(),
            token_hash,
            token_sealed,
            expires,
            serial,
            now,
            decided_at,
        ],
    )
}

fn insert_certificate(
    c: &Connection,
    reference: &str,
    meta: &IssuedMetadata,
    der: &[u8],
    now: i64,
) -> Result<(), LedgerError> {
    execute(
        c,
        "INSERT INTO certificates (serial, reference, der, not_before, not_after, issued_at)
         VALUES (?, ?, ?, ?, ?, ?)",
        params![
            meta.serial,
            reference,
            der,
            to_ms(meta.not_before),
            to_ms(meta.not_after),
            now
        ],
    )?;
    Ok(())
}

impl Ledger {
    pub async fn open(path: &Path) -> Result<Ledger, super::BuiltinCaError> {
        let db = open_migrated(
            path,
            &sqlx::migrate!("./src/ca/builtin/migrations"),
            "ledger",
        )
        .await?;
        Ok(Ledger { db })
    }

    /// Records a pending order; returns the order now held for the desk
    /// order (another one when the same desk order was recorded first).
    pub async fn insert(
        &self,
        req: &CaOrderRequest,
        reference: &str,
        token_hash: &[u8],
        token_sealed: &[u8],
        expires: OffsetDateTime,
    ) -> Result<Option<LedgerOrder>, LedgerError> {
        let req = req.clone();
        let (reference, token_hash, token_sealed) = (
            reference.to_string(),
            token_hash.to_vec(),
            token_sealed.to_vec(),
        );
        self.db
            .write(move |c| {
                let row = NewRow::Pending {
                    token_hash: &token_hash,
                    token_sealed: &token_sealed,
                    expires_ms: to_ms(expires),
                };
                insert_order_row(c, &req, &reference, row, now_ms())?;
                find_order(c, "desk_order_id", &req.desk_order_id)
            })
            .await
    }

    /// Records an order issued at once (no validation) with its
    /// certificate, in one commit; false when the desk order was recorded
    /// before.
    pub async fn insert_issued(
        &self,
        req: &CaOrderRequest,
        reference: &str,
        meta: &IssuedMetadata,
        der: &[u8],
    ) -> Result<bool, LedgerError> {
        let (req, reference, meta, der) = (
            req.clone(),
            reference.to_string(),
            meta.clone(),
            der.to_vec(),
        );
        self.db
            .write(move |c| {
                let now = now_ms();
                let row = NewRow::Issued {
                    serial: &meta.serial,
                };
                let inserted = insert_order_row(c, &req, &reference, row, now)?;
                if inserted != 1 {
                    return Ok(false);
                }
                insert_certificate(c, &reference, &meta, &der, now)?;
                Ok(true)
            })
            .await
    }

    pub async fn get(&self, reference: &str) -> Result<Option<LedgerOrder>, LedgerError> {
        let reference = reference.to_string();
        self.db
            .read(move |c| find_order(c, "reference", &reference))
            .await
    }

    pub async fn find_by_desk_order(&self, id: &str) -> Result<Option<LedgerOrder>, LedgerError> {
        let id = id.to_string();
        self.db
            .read(move |c| find_order(c, "desk_order_id", &id))
            .await
    }

    pub async fn find_by_token_hash(
        &self,
        hash: &[u8],
    ) -> Result<Option<LedgerOrder>, LedgerError> {
        let hash = hash.to_vec();
        self.db
            .read(move |c| find_order(c, "approval_token_hash", &hash))
            .await
    }

    pub async fn renew_token(
        &self,
        reference: &str,
        token_hash: &[u8],
        token_sealed: &[u8],
        expires: OffsetDateTime,
    ) -> Result<(), LedgerError> {
        let (reference, token_hash, token_sealed) = (
            reference.to_string(),
            token_hash.to_vec(),
            token_sealed.to_vec(),
        );
        self.db
            .write(move |c| {
                execute(
                    c,
                    "UPDATE ca_orders SET approval_token_hash = ?, approval_token_sealed = ?,
                        approval_expires_at = ? WHERE reference = ? AND state = 'pending'",
                    params![token_hash, token_sealed, to_ms(expires), reference],
                )
            })
            .await?;
        Ok(())
    }

    /// Moves a pending order to `state`; false when it was no longer pending.
    /// The link is single use: once decided, it only shows the decision.
    pub async fn decide(&self, reference: &str, state: LedgerState) -> Result<bool, LedgerError> {
        let reference = reference.to_string();
        let done = self
            .db
            .write(move |c| {
                execute(
                    c,
                    "UPDATE ca_orders SET state = ?, decided_at = ?, approval_token_sealed = NULL
                     WHERE reference = ? AND state = 'pending'",
                    params![state.as_str(), now_ms(), reference],
                )
            })
            .await?;
        Ok(done == 1)
    }

    /// Records the certificate and marks the order issued, in one commit, if
    /// it is still pending.
    pub async fn record_issued(
        &self,
        reference: &str,
        meta: &IssuedMetadata,
        der: &[u8],
    ) -> Result<bool, LedgerError> {
        let (reference, meta, der) = (reference.to_string(), meta.clone(), der.to_vec());
        self.db
            .write(move |c| {
                let now = now_ms();
                let done = execute(
                    c,
                    "UPDATE ca_orders SET state = 'issued', serial = ?, decided_at = ?,
                        approval_token_sealed = NULL
                     WHERE reference = ? AND state = 'pending'",
                    params![meta.serial, now, reference],
                )?;
                if done != 1 {
                    return Ok(false);
                }
                insert_certificate(c, &reference, &meta, &der, now)?;
                Ok(true)
            })
            .await
    }

    /// Approval links still sealed, for master-key rotation.
    pub async fn sealed_tokens(&self) -> Result<Vec<(String, Vec<u8>)>, LedgerError> {
        self.db
            .read(|c| {
                all(
                    c,
                    "SELECT reference, approval_token_sealed FROM ca_orders
                     WHERE approval_token_sealed IS NOT NULL",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
            })
            .await
    }

    pub async fn reseal_token(
        &self,
        reference: &str,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, LedgerError> {
        let (reference, old, new) = (reference.to_string(), old.to_vec(), new.to_vec());
        let done = self
            .db
            .write(move |c| {
                execute(
                    c,
                    "UPDATE ca_orders SET approval_token_sealed = ?
                     WHERE reference = ? AND approval_token_sealed = ?",
                    params![new, reference, old],
                )
            })
            .await?;
        Ok(done == 1)
    }

    /// The order and, once issued, its certificate: one read.
    pub async fn get_with_certificate(
        &self,
        reference: &str,
    ) -> Result<Option<(LedgerOrder, Option<Vec<u8>>)>, LedgerError> {
        let reference = reference.to_string();
        self.db
            .read(move |c| {
                let sql = format!(
                    "SELECT {ORDER_COLUMNS}, (SELECT der FROM certificates t
                        WHERE t.reference = ca_orders.reference)
                     FROM ca_orders WHERE reference = ?"
                );
                // The certificate is the column after ORDER_COLUMNS' 13.
                one(c, &sql, [reference], |r| {
                    Ok((order_from_row(r)?, r.get::<_, Option<Vec<u8>>>(13)?))
                })
            })
            .await
    }

    pub async fn certificate(&self, reference: &str) -> Result<Option<Vec<u8>>, LedgerError> {
        let reference = reference.to_string();
        self.db
            .read(move |c| {
                one(
                    c,
                    "SELECT der FROM certificates WHERE reference = ?",
                    [reference],
                    |r| Ok(r.get(0)?),
                )
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DnsName;

    fn request(desk_order_id: &str) -> CaOrderRequest {
        let email = EmailAddress::parse("it@example.com").unwrap();
        CaOrderRequest {
            desk_order_id: desk_order_id.into(),
            csr_der: vec![1, 2, 3],
            names: vec![DnsName::parse("www.example.com").unwrap()],
            days: 90,
            admin_email: email.clone(),
            admin_name: "IT".into(),
            approver_email: None,
            requester: email,
            language: "en".into(),
        }
    }

    fn meta(serial: &str) -> IssuedMetadata {
        IssuedMetadata {
            serial: serial.into(),
            not_before: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            not_after: OffsetDateTime::from_unix_timestamp(1_707_776_000).unwrap(),
            sha256_fingerprint: "ab".into(),
            issuer: "CN=test".into(),
        }
    }

    #[tokio::test]
    async fn an_order_issued_at_once_is_recorded_once_with_its_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join("ledger.db")).await.unwrap();
        let req = request("order-1");
        assert!(ledger
            .insert_issued(&req, "ref-1", &meta("01"), b"first")
            .await
            .unwrap());
        // The same desk order again (a retried submission): the first stands.
        assert!(!ledger
            .insert_issued(&req, "ref-2", &meta("02"), b"second")
            .await
            .unwrap());
        let (order, der) = ledger.get_with_certificate("ref-1").await.unwrap().unwrap();
        assert_eq!(order.state, LedgerState::Issued);
        assert_eq!(order.desk_order_id, "order-1");
        assert_eq!(der.as_deref(), Some(&b"first"[..]));
        assert!(ledger
            .get_with_certificate("ref-2")
            .await
            .unwrap()
            .is_none());
        assert_eq!(
            ledger
                .find_by_desk_order("order-1")
                .await
                .unwrap()
                .unwrap()
                .reference,
            "ref-1"
        );
    }

    #[tokio::test]
    async fn a_pending_order_is_returned_by_its_insert_and_has_no_certificate_yet() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join("ledger.db")).await.unwrap();
        let expires = OffsetDateTime::now_utc() + time::Duration::days(30);
        let first = ledger
            .insert(
                &request("order-1"),
                "ref-1",
                b"hash-1",
                b"sealed-1",
                expires,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (first.reference.as_str(), first.state),
            ("ref-1", LedgerState::Pending)
        );
        // Inserted twice for one desk order: both callers get the first.
        let again = ledger
            .insert(
                &request("order-1"),
                "ref-2",
                b"hash-2",
                b"sealed-2",
                expires,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.reference, "ref-1");
        let (order, der) = ledger.get_with_certificate("ref-1").await.unwrap().unwrap();
        assert_eq!(order.state, LedgerState::Pending);
        assert_eq!(der, None);
    }
}
