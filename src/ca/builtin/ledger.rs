//! The built-in CA's issuance ledger: orders it holds and what it issued.

use std::path::Path;

use sqlx::sqlite::{SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::Row;
use time::OffsetDateTime;

use crate::ca::CaOrderRequest;
use crate::domain::order::IssuedMetadata;
use crate::domain::EmailAddress;
use crate::store::{from_ms, now_ms, to_ms};

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

pub struct Ledger {
    pool: SqlitePool,
}

fn corrupt(what: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("CA ledger holds a bad {what}").into())
}

fn order_from_row(r: &SqliteRow) -> Result<LedgerOrder, sqlx::Error> {
    let email = |col: &str| -> Result<EmailAddress, sqlx::Error> {
        EmailAddress::parse(&r.try_get::<String, _>(col)?).map_err(|_| corrupt(col))
    };
    let approver: Option<String> = r.try_get("approver_email")?;
    let names: String = r.try_get("names")?;
    let state: String = r.try_get("state")?;
    Ok(LedgerOrder {
        reference: r.try_get("reference")?,
        desk_order_id: r.try_get("desk_order_id")?,
        names: serde_json::from_str(&names).map_err(|_| corrupt("names"))?,
        csr_der: r.try_get("csr_der")?,
        days: r.try_get::<i64, _>("days")? as u32,
        admin_email: email("admin_email")?,
        admin_name: r.try_get("admin_name")?,
        approver_email: approver
            .map(|a| EmailAddress::parse(&a).map_err(|_| corrupt("approver")))
            .transpose()?,
        requester: email("requester")?,
        language: r.try_get("language")?,
        state: LedgerState::parse(&state).ok_or_else(|| corrupt("state"))?,
        approval_token_sealed: r.try_get("approval_token_sealed")?,
        approval_expires_at: r
            .try_get::<Option<i64>, _>("approval_expires_at")?
            .map(from_ms),
    })
}

impl Ledger {
    pub async fn open(path: &Path) -> Result<Ledger, super::BuiltinCaError> {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(crate::store::sqlite::connect_options(path))
            .await?;
        sqlx::migrate!("./src/ca/builtin/migrations")
            .run(&pool)
            .await?;
        Ok(Ledger { pool })
    }

    pub async fn insert(
        &self,
        req: &CaOrderRequest,
        reference: &str,
        token_hash: &[u8],
        token_sealed: &[u8],
        expires: OffsetDateTime,
    ) -> Result<(), sqlx::Error> {
        let names: Vec<&str> = req.names.iter().map(|n| n.as_str()).collect();
        sqlx::query(
            "INSERT INTO ca_orders (reference, desk_order_id, names, csr_der, days, admin_email,
                admin_name, approver_email, requester, language, state, approval_token_hash,
                approval_token_sealed, approval_expires_at, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)
             ON CONFLICT(desk_order_id) DO NOTHING",
        )
        .bind(reference)
        .bind(&req.desk_order_id)
        .bind(serde_json::to_string(&names).expect("names serialize"))
        .bind(&req.csr_der)
        .bind(req.days as i64)
        .bind(req.admin_email.as_str())
        .bind(&req.admin_name)
        .bind(req.approver_email.as_ref().map(|e| e.as_str()))
        .bind(req.requester.as_str())
        .bind(&req.language)
        .bind(token_hash)
        .bind(token_sealed)
        .bind(to_ms(expires))
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn get(&self, reference: &str) -> Result<Option<LedgerOrder>, sqlx::Error> {
        let row = sqlx::query("SELECT * FROM ca_orders WHERE reference = ?")
            .bind(reference)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| order_from_row(&r)).transpose()
    }

    pub async fn find_by_desk_order(&self, id: &str) -> Result<Option<LedgerOrder>, sqlx::Error> {
        let row = sqlx::query("SELECT * FROM ca_orders WHERE desk_order_id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| order_from_row(&r)).transpose()
    }

    pub async fn find_by_token_hash(
        &self,
        hash: &[u8],
    ) -> Result<Option<LedgerOrder>, sqlx::Error> {
        let row = sqlx::query("SELECT * FROM ca_orders WHERE approval_token_hash = ?")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| order_from_row(&r)).transpose()
    }

    pub async fn renew_token(
        &self,
        reference: &str,
        token_hash: &[u8],
        token_sealed: &[u8],
        expires: OffsetDateTime,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE ca_orders SET approval_token_hash = ?, approval_token_sealed = ?,
                approval_expires_at = ? WHERE reference = ? AND state = 'pending'",
        )
        .bind(token_hash)
        .bind(token_sealed)
        .bind(to_ms(expires))
        .bind(reference)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Moves a pending order to `state`; false when it was no longer pending.
    /// The link is single use: once decided, it only shows the decision.
    pub async fn decide(&self, reference: &str, state: LedgerState) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE ca_orders SET state = ?, decided_at = ?, approval_token_sealed = NULL
             WHERE reference = ? AND state = 'pending'",
        )
        .bind(state.as_str())
        .bind(now_ms())
        .bind(reference)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records the certificate and marks the order issued, in one commit, if
    /// it is still pending.
    pub async fn record_issued(
        &self,
        reference: &str,
        meta: &IssuedMetadata,
        der: &[u8],
    ) -> Result<bool, sqlx::Error> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE ca_orders SET state = 'issued', serial = ?, decided_at = ?,
                approval_token_sealed = NULL
             WHERE reference = ? AND state = 'pending'",
        )
        .bind(&meta.serial)
        .bind(now)
        .bind(reference)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO certificates (serial, reference, der, not_before, not_after, issued_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&meta.serial)
        .bind(reference)
        .bind(der)
        .bind(to_ms(meta.not_before))
        .bind(to_ms(meta.not_after))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Approval links still sealed, for master-key rotation.
    pub async fn sealed_tokens(&self) -> Result<Vec<(String, Vec<u8>)>, sqlx::Error> {
        let rows = sqlx::query("SELECT reference, approval_token_sealed FROM ca_orders WHERE approval_token_sealed IS NOT NULL")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("reference")?, r.try_get("approval_token_sealed")?)))
            .collect()
    }

    pub async fn reseal_token(
        &self,
        reference: &str,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE ca_orders SET approval_token_sealed = ? WHERE reference = ? AND approval_token_sealed = ?",
        )
        .bind(new)
        .bind(reference)
        .bind(old)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn certificate(&self, reference: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
        sqlx::query_scalar("SELECT der FROM certificates WHERE reference = ?")
            .bind(reference)
            .fetch_optional(&self.pool)
            .await
    }
}
