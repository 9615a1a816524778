//! The embedded default: one SQLite file in WAL mode.
//!
//! All writes go through a pool of one connection (SQLite has one writer at a
//! time; queuing in the pool beats spinning on SQLITE_BUSY), reads through a
//! small pool of their own.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use time::OffsetDateTime;

use super::*;
use crate::domain::account::{Account, Role, User};
use crate::domain::order::{
    EmailKind, EmailRequest, EmailRequestState, EmailTrigger, IssuedMetadata, Order, OrderState,
};
use crate::domain::{DnsName, EmailAddress};

pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
}

pub(crate) fn connect_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true)
}

impl SqliteStore {
    pub async fn open(path: &Path) -> StoreResult<SqliteStore> {
        let opts = connect_options(path);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.read_only(true))
            .await?;
        Ok(SqliteStore { write, read })
    }

    /// In-memory-free helper for tests and tools that want a throwaway store.
    pub async fn open_url(url: &str) -> StoreResult<SqliteStore> {
        let opts = SqliteConnectOptions::from_str(url)?;
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&write).await?;
        Ok(SqliteStore {
            read: write.clone(),
            write,
        })
    }

    /// Writes orders kept elsewhere (another desk's history, or a benchmark's
    /// data set) in one transaction, many rows per statement. No jobs, no
    /// audit events: these orders have already run their course. Each order
    /// comes with the registrable domain of each of its names.
    pub async fn import_orders(&self, orders: &[(Order, Vec<Option<String>>)]) -> StoreResult<()> {
        // At most 23 bound values per row; SQLite allows 32,766 per statement.
        const ROWS: usize = 1000;
        let mut tx = self.write.begin().await?;
        for chunk in orders.chunks(ROWS) {
            let mut q = sqlx::QueryBuilder::<Sqlite>::new(
                "INSERT INTO orders (id, account_id, created_by, state, ca, ca_reference,
                    common_name, names, key_type, days, csr_pem, admin_email, admin_name,
                    approver_email, language, failure_reason, cert_serial, cert_not_before,
                    cert_not_after, cert_fingerprint, cert_issuer, created_at, updated_at) ",
            );
            q.push_values(chunk, |mut b, (o, _)| {
                let cert = o.certificate.as_ref();
                b.push_bind(&o.id)
                    .push_bind(&o.account_id)
                    .push_bind(&o.created_by)
                    .push_bind(o.state.as_str())
                    .push_bind(&o.ca)
                    .push_bind(&o.ca_reference)
                    .push_bind(&o.common_name)
                    .push_bind(serde_json::to_string(&o.names).expect("names serialize"))
                    .push_bind(&o.key_type)
                    .push_bind(o.days as i64)
                    .push_bind(&o.csr_pem)
                    .push_bind(o.admin_email.as_str())
                    .push_bind(&o.admin_name)
                    .push_bind(o.approver_email.as_ref().map(|e| e.as_str()))
                    .push_bind(&o.language)
                    .push_bind(&o.failure_reason)
                    .push_bind(cert.map(|c| c.serial.clone()))
                    .push_bind(cert.map(|c| to_ms(c.not_before)))
                    .push_bind(cert.map(|c| to_ms(c.not_after)))
                    .push_bind(cert.map(|c| c.sha256_fingerprint.clone()))
                    .push_bind(cert.map(|c| c.issuer.clone()))
                    .push_bind(to_ms(o.created_at))
                    .push_bind(to_ms(o.updated_at));
            });
            q.build().execute(&mut *tx).await?;
            let names: Vec<(&Order, &String, &Option<String>)> = chunk
                .iter()
                .flat_map(|(o, reg)| o.names.iter().zip(reg).map(move |(n, r)| (o, n, r)))
                .collect();
            for names in names.chunks(ROWS * 2) {
                let mut q = sqlx::QueryBuilder::<Sqlite>::new(
                    "INSERT OR IGNORE INTO order_names (account_id, order_id, name, registrable, created_at) ",
                );
                q.push_values(names, |mut b, (o, name, registrable)| {
                    b.push_bind(&o.account_id)
                        .push_bind(&o.id)
                        .push_bind(*name)
                        .push_bind(*registrable)
                        .push_bind(to_ms(o.created_at));
                });
                q.build().execute(&mut *tx).await?;
                let domains: Vec<_> = names
                    .iter()
                    .filter_map(|(o, _, r)| r.as_ref().map(|r| (*o, r)))
                    .collect();
                if domains.is_empty() {
                    continue;
                }
                let mut q = sqlx::QueryBuilder::<Sqlite>::new(
                    "INSERT OR IGNORE INTO order_domains (account_id, order_id, registrable, created_at) ",
                );
                q.push_values(domains, |mut b, (o, registrable)| {
                    b.push_bind(&o.account_id)
                        .push_bind(&o.id)
                        .push_bind(registrable)
                        .push_bind(to_ms(o.created_at));
                });
                q.build().execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("{what}: {value:?}"))
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn email(value: String) -> StoreResult<EmailAddress> {
    EmailAddress::parse(&value).map_err(|_| corrupt("email", &value))
}

fn user_from_row(row: &SqliteRow) -> StoreResult<User> {
    let role: String = row.try_get("role")?;
    Ok(User {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        email: email(row.try_get("email")?)?,
        role: Role::parse(&role).ok_or_else(|| corrupt("role", &role))?,
    })
}

fn order_from_row(row: &SqliteRow) -> StoreResult<Order> {
    let state: String = row.try_get("state")?;
    let names: String = row.try_get("names")?;
    let approver: Option<String> = row.try_get("approver_email")?;
    let serial: Option<String> = row.try_get("cert_serial")?;
    let certificate = match serial {
        Some(serial) => Some(IssuedMetadata {
            serial,
            not_before: from_ms(row.try_get("cert_not_before")?),
            not_after: from_ms(row.try_get("cert_not_after")?),
            sha256_fingerprint: row.try_get("cert_fingerprint")?,
            issuer: row.try_get("cert_issuer")?,
        }),
        None => None,
    };
    Ok(Order {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        state: OrderState::parse(&state).ok_or_else(|| corrupt("order state", &state))?,
        ca: row.try_get("ca")?,
        ca_reference: row.try_get("ca_reference")?,
        common_name: row.try_get("common_name")?,
        names: serde_json::from_str(&names).map_err(|_| corrupt("names", &names))?,
        key_type: row.try_get("key_type")?,
        days: row.try_get::<i64, _>("days")? as u32,
        admin_email: email(row.try_get("admin_email")?)?,
        admin_name: row.try_get("admin_name")?,
        approver_email: approver.map(email).transpose()?,
        language: row.try_get("language")?,
        failure_reason: row.try_get("failure_reason")?,
        certificate,
        created_by: row.try_get("created_by")?,
        created_at: from_ms(row.try_get("created_at")?),
        updated_at: from_ms(row.try_get("updated_at")?),
        csr_pem: row.try_get("csr_pem")?,
    })
}

fn email_request_from_row(row: &SqliteRow) -> StoreResult<EmailRequest> {
    let kind: String = row.try_get("kind")?;
    let trigger: String = row.try_get("trigger")?;
    let state: String = row.try_get("state")?;
    Ok(EmailRequest {
        id: row.try_get("id")?,
        order_id: row.try_get("order_id")?,
        kind: EmailKind::parse(&kind).ok_or_else(|| corrupt("email kind", &kind))?,
        trigger: EmailTrigger::parse(&trigger).ok_or_else(|| corrupt("trigger", &trigger))?,
        recipient: email(row.try_get("recipient")?)?,
        state: EmailRequestState::parse(&state).ok_or_else(|| corrupt("email state", &state))?,
        error: row.try_get("error")?,
        requested_by: row.try_get("requested_by")?,
        message_id: row.try_get("message_id")?,
        created_at: from_ms(row.try_get("created_at")?),
        updated_at: from_ms(row.try_get("updated_at")?),
    })
}

async fn insert_job(tx: &mut Transaction<'_, Sqlite>, job: &NewJob, now: i64) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO jobs (key, kind, payload, run_at, created_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(key) DO NOTHING",
    )
    .bind(&job.key)
    .bind(job.kind.as_str())
    .bind(&job.target)
    .bind(now)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_audit(
    tx: &mut Transaction<'_, Sqlite>,
    event: &AuditEvent,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO audit_events (account_id, actor, action, subject, detail, created_at)
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&event.account_id)
    .bind(&event.actor)
    .bind(&event.action)
    .bind(&event.subject)
    .bind(event.detail.to_string())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_email_request(
    tx: &mut Transaction<'_, Sqlite>,
    account_id: &str,
    r: &EmailRequest,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO email_requests (id, account_id, order_id, kind, trigger, recipient, state,
            error, requested_by, message_id, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&r.id)
    .bind(account_id)
    .bind(&r.order_id)
    .bind(r.kind.as_str())
    .bind(r.trigger.as_str())
    .bind(r.recipient.as_str())
    .bind(r.state.as_str())
    .bind(&r.error)
    .bind(&r.requested_by)
    .bind(&r.message_id)
    .bind(to_ms(r.created_at))
    .bind(to_ms(r.updated_at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Claims an idempotency key inside `tx`; returns the resource it already
/// names when it was used before.
async fn claim_idempotency_key(
    tx: &mut Transaction<'_, Sqlite>,
    account_id: &str,
    key: &IdempotencyKey,
    resource_id: &str,
    now: i64,
) -> StoreResult<Option<String>> {
    let existing: Option<String> = sqlx::query_scalar(
        "SELECT resource_id FROM idempotency_keys WHERE account_id = ? AND scope = ? AND key = ?",
    )
    .bind(account_id)
    .bind(key.scope)
    .bind(&key.key)
    .fetch_optional(&mut **tx)
    .await?;
    if existing.is_some() {
        return Ok(existing);
    }
    sqlx::query(
        "INSERT INTO idempotency_keys (account_id, scope, key, resource_id, created_at)
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(account_id)
    .bind(key.scope)
    .bind(&key.key)
    .bind(resource_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(None)
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn create_account(&self, name: &str) -> StoreResult<Account> {
        let account = Account {
            id: new_id(),
            name: name.to_string(),
        };
        sqlx::query("INSERT INTO accounts (id, name, created_at) VALUES (?, ?, ?)")
            .bind(&account.id)
            .bind(&account.name)
            .bind(now_ms())
            .execute(&self.write)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Duplicate(format!("an account named {name:?}"))
                } else {
                    e.into()
                }
            })?;
        Ok(account)
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        let rows = sqlx::query("SELECT id, name FROM accounts ORDER BY created_at")
            .fetch_all(&self.read)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Account {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                })
            })
            .collect()
    }

    async fn find_account(&self, id_or_name: &str) -> StoreResult<Option<Account>> {
        let row = sqlx::query("SELECT id, name FROM accounts WHERE id = ? OR name = ?")
            .bind(id_or_name)
            .bind(id_or_name)
            .fetch_optional(&self.write)
            .await?;
        row.map(|r| {
            Ok(Account {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
            })
        })
        .transpose()
    }

    async fn create_user(
        &self,
        account_id: &str,
        email: &EmailAddress,
        role: Role,
        password_hash: Option<&str>,
    ) -> StoreResult<User> {
        let user = User {
            id: new_id(),
            account_id: account_id.to_string(),
            email: email.clone(),
            role,
        };
        sqlx::query(
            "INSERT INTO users (id, account_id, email, role, password_hash, created_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&user.id)
        .bind(account_id)
        .bind(email.as_str())
        .bind(role.as_str())
        .bind(password_hash)
        .bind(now_ms())
        .execute(&self.write)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Duplicate(format!("a user with email {email}"))
            } else {
                e.into()
            }
        })?;
        Ok(user)
    }

    async fn count_users(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.write)
            .await?)
    }

    async fn find_user(&self, user_id: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT id, account_id, email, role FROM users WHERE id = ?")
            .bind(user_id)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| user_from_row(&r)).transpose()
    }

    async fn find_user_by_email(&self, email: &str) -> StoreResult<Option<(User, Option<String>)>> {
        let row = sqlx::query(
            "SELECT id, account_id, email, role, password_hash FROM users WHERE email = ?",
        )
        .bind(email)
        .fetch_optional(&self.write)
        .await?;
        row.map(|r| Ok((user_from_row(&r)?, r.try_get("password_hash")?)))
            .transpose()
    }

    async fn set_password_hash(&self, user_id: &str, hash: &str) -> StoreResult<()> {
        sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?")
            .bind(hash)
            .bind(user_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn create_token(&self, user_id: &str, token_hash: &[u8]) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, token_hash, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(new_id())
        .bind(user_id)
        .bind(token_hash)
        .bind(now_ms())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn find_user_by_token_hash(&self, token_hash: &[u8]) -> StoreResult<Option<User>> {
        let row = sqlx::query(
            "SELECT u.id, u.account_id, u.email, u.role FROM api_tokens t
             JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?",
        )
        .bind(token_hash)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| user_from_row(&r)).transpose()
    }
}

const ORDER_COLUMNS: &str = "o.id, o.account_id, o.created_by, o.state, o.ca, o.ca_reference,
    o.common_name, o.names, o.key_type, o.days, o.csr_pem, o.admin_email, o.admin_name,
    o.approver_email, o.language, o.failure_reason, o.cert_serial, o.cert_not_before,
    o.cert_not_after, o.cert_fingerprint, o.cert_issuer, o.created_at, o.updated_at";

/// The same for lists, without the CSR (half of a row's bytes, and a page
/// never shows it): fewer values for sqlx to copy out of SQLite.
const ORDER_LIST_COLUMNS: &str = "o.id, o.account_id, o.created_by, o.state, o.ca, o.ca_reference,
    o.common_name, o.names, o.key_type, o.days, '' AS csr_pem, o.admin_email, o.admin_name,
    o.approver_email, o.language, o.failure_reason, o.cert_serial, o.cert_not_before,
    o.cert_not_after, o.cert_fingerprint, o.cert_issuer, o.created_at, o.updated_at";

#[async_trait]
impl OrderStore for SqliteStore {
    async fn insert_order(
        &self,
        order: &Order,
        registrable_domains: &[Option<String>],
        job: &NewJob,
        audit: &AuditEvent,
        idempotency: Option<&IdempotencyKey>,
    ) -> StoreResult<InsertOutcome<String>> {
        let now = now_ms();
        let mut tx = self.write.begin().await?;
        if let Some(key) = idempotency {
            if let Some(existing) =
                claim_idempotency_key(&mut tx, &order.account_id, key, &order.id, now).await?
            {
                return Ok(InsertOutcome::Existing(existing));
            }
        }
        sqlx::query(
            "INSERT INTO orders (id, account_id, created_by, state, ca, ca_reference, common_name,
                names, key_type, days, csr_pem, admin_email, admin_name, approver_email, language,
                created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&order.id)
        .bind(&order.account_id)
        .bind(&order.created_by)
        .bind(order.state.as_str())
        .bind(&order.ca)
        .bind(&order.ca_reference)
        .bind(&order.common_name)
        .bind(serde_json::to_string(&order.names).expect("names serialize"))
        .bind(&order.key_type)
        .bind(order.days as i64)
        .bind(&order.csr_pem)
        .bind(order.admin_email.as_str())
        .bind(&order.admin_name)
        .bind(order.approver_email.as_ref().map(|e| e.as_str()))
        .bind(&order.language)
        .bind(to_ms(order.created_at))
        .bind(to_ms(order.updated_at))
        .execute(&mut *tx)
        .await?;
        let created_at = to_ms(order.created_at);
        for (name, registrable) in order.names.iter().zip(registrable_domains) {
            sqlx::query(
                "INSERT OR IGNORE INTO order_names (account_id, order_id, name, registrable, created_at)
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(&order.account_id)
            .bind(&order.id)
            .bind(name)
            .bind(registrable)
            .bind(created_at)
            .execute(&mut *tx)
            .await?;
            if let Some(registrable) = registrable {
                sqlx::query(
                    "INSERT OR IGNORE INTO order_domains (account_id, order_id, registrable, created_at)
                     VALUES (?, ?, ?, ?)",
                )
                .bind(&order.account_id)
                .bind(&order.id)
                .bind(registrable)
                .bind(created_at)
                .execute(&mut *tx)
                .await?;
            }
        }
        insert_job(&mut tx, job, now).await?;
        insert_audit(&mut tx, audit, now).await?;
        tx.commit().await?;
        Ok(InsertOutcome::Created(order.id.clone()))
    }

    async fn get_order(&self, account_id: &str, order_id: &str) -> StoreResult<Option<Order>> {
        let sql =
            format!("SELECT {ORDER_COLUMNS} FROM orders o WHERE o.id = ? AND o.account_id = ?");
        let row = sqlx::query(&sql)
            .bind(order_id)
            .bind(account_id)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| order_from_row(&r)).transpose()
    }

    async fn get_order_for_system(&self, order_id: &str) -> StoreResult<Option<Order>> {
        let sql = format!("SELECT {ORDER_COLUMNS} FROM orders o WHERE o.id = ?");
        let row = sqlx::query(&sql)
            .bind(order_id)
            .fetch_optional(&self.write)
            .await?;
        row.map(|r| order_from_row(&r)).transpose()
    }

    async fn list_orders(
        &self,
        account_id: &str,
        filter: &OrderFilter,
        after: Option<&Cursor>,
        limit: u32,
    ) -> StoreResult<Vec<Order>> {
        // Keyset paging on (created_at, id): every page is an index range
        // scan, however deep. With a domain, the scan runs on that domain's
        // own index (order_domains for a registrable domain, which also
        // covers an order for the bare domain; order_names for any other
        // name), in the same order.
        let (cmp, dir) = if filter.oldest_first {
            (">", "ASC")
        } else {
            ("<", "DESC")
        };
        let by_domain = filter.domain.as_deref().map(|d| {
            let registrable = DnsName::parse(d)
                .ok()
                .and_then(|n| n.registrable_domain())
                .is_some_and(|r| r == d);
            if registrable {
                ("order_domains", "registrable")
            } else {
                ("order_names", "name")
            }
        });
        let (mut sql, key) = match by_domain {
            None => (
                format!("SELECT {ORDER_LIST_COLUMNS} FROM orders o WHERE o.account_id = ?"),
                "o",
            ),
            Some((table, column)) => (
                format!(
                    "SELECT {ORDER_LIST_COLUMNS} FROM {table} k JOIN orders o ON o.id = k.order_id
                     WHERE k.account_id = ? AND k.{column} = ?"
                ),
                "k",
            ),
        };
        if filter.state.is_some() {
            sql.push_str(" AND o.state = ?");
        }
        let id = if key == "o" { "o.id" } else { "k.order_id" };
        if after.is_some() {
            sql.push_str(&format!(" AND ({key}.created_at, {id}) {cmp} (?, ?)"));
        }
        sql.push_str(&format!(
            " ORDER BY {key}.created_at {dir}, {id} {dir} LIMIT ?"
        ));
        let mut q = sqlx::query(&sql).bind(account_id);
        if let Some(domain) = &filter.domain {
            q = q.bind(domain);
        }
        if let Some(state) = filter.state {
            q = q.bind(state.as_str());
        }
        if let Some(c) = after {
            q = q.bind(c.created_at_ms).bind(&c.id);
        }
        let rows = q.bind(limit as i64).fetch_all(&self.read).await?;
        rows.iter().map(order_from_row).collect()
    }

    async fn pending_order_ids(&self) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM orders WHERE state IN ('submitted', 'pending_approval')",
        )
        .fetch_all(&self.write)
        .await?)
    }

    async fn update_order(&self, u: &OrderUpdate) -> StoreResult<bool> {
        let now = now_ms();
        let mut tx = self.write.begin().await?;
        let row = sqlx::query("SELECT account_id, state FROM orders WHERE id = ?")
            .bind(&u.order_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else { return Ok(false) };
        let account_id: String = row.try_get("account_id")?;
        let state: String = row.try_get("state")?;
        let current = OrderState::parse(&state).ok_or_else(|| corrupt("order state", &state))?;
        // Staying in the same state is allowed (a retried step), any other
        // move must be one the order's rules permit.
        let allowed = current == u.to || current.can_become(u.to);
        if !u.from.contains(&current) || !allowed {
            return Ok(false);
        }
        let cert = u.certificate.as_ref();
        sqlx::query(
            "UPDATE orders SET state = ?, ca_reference = COALESCE(?, ca_reference),
                failure_reason = COALESCE(?, failure_reason),
                cert_serial = COALESCE(?, cert_serial), cert_not_before = COALESCE(?, cert_not_before),
                cert_not_after = COALESCE(?, cert_not_after),
                cert_fingerprint = COALESCE(?, cert_fingerprint), cert_issuer = COALESCE(?, cert_issuer),
                updated_at = ?
             WHERE id = ?",
        )
        .bind(u.to.as_str())
        .bind(&u.ca_reference)
        .bind(&u.failure_reason)
        .bind(cert.map(|c| c.serial.clone()))
        .bind(cert.map(|c| to_ms(c.not_before)))
        .bind(cert.map(|c| to_ms(c.not_after)))
        .bind(cert.map(|c| c.sha256_fingerprint.clone()))
        .bind(cert.map(|c| c.issuer.clone()))
        .bind(now)
        .bind(&u.order_id)
        .execute(&mut *tx)
        .await?;
        if let Some(r) = &u.new_email {
            insert_email_request(&mut tx, &account_id, r).await?;
        }
        for job in &u.jobs {
            insert_job(&mut tx, job, now).await?;
        }
        insert_audit(&mut tx, &u.audit, now).await?;
        tx.commit().await?;
        Ok(true)
    }
}

const EMAIL_COLUMNS: &str = "id, order_id, kind, trigger, recipient, state, error, requested_by,
    message_id, created_at, updated_at";

#[async_trait]
impl EmailRequestStore for SqliteStore {
    async fn create_email_request(
        &self,
        request: &EmailRequest,
        required_state: OrderState,
        audit: &AuditEvent,
        idempotency: Option<&IdempotencyKey>,
        rate_limit: Option<RateLimit>,
    ) -> StoreResult<EmailRequestOutcome> {
        let now = now_ms();
        let mut tx = self.write.begin().await?;
        let row = sqlx::query("SELECT account_id, state FROM orders WHERE id = ?")
            .bind(&request.order_id)
            .fetch_one(&mut *tx)
            .await?;
        let account_id: String = row.try_get("account_id")?;
        if let Some(key) = idempotency {
            if let Some(existing) =
                claim_idempotency_key(&mut tx, &account_id, key, &request.id, now).await?
            {
                let sql = format!("SELECT {EMAIL_COLUMNS} FROM email_requests WHERE id = ?");
                let row = sqlx::query(&sql)
                    .bind(&existing)
                    .fetch_one(&mut *tx)
                    .await?;
                return Ok(EmailRequestOutcome::Existing(email_request_from_row(&row)?));
            }
        }
        let state: String = row.try_get("state")?;
        let current = OrderState::parse(&state).ok_or_else(|| corrupt("order state", &state))?;
        if current != required_state {
            return Ok(EmailRequestOutcome::WrongState(current));
        }
        if let Some(limit) = rate_limit {
            let since = now - limit.window_ms;
            let times: Vec<i64> = sqlx::query_scalar(
                "SELECT created_at FROM email_requests
                 WHERE order_id = ? AND kind = ? AND trigger = 'resend' AND created_at > ?
                 ORDER BY created_at",
            )
            .bind(&request.order_id)
            .bind(request.kind.as_str())
            .bind(since)
            .fetch_all(&mut *tx)
            .await?;
            if times.len() as u32 >= limit.max {
                // The window frees a slot when its oldest request ages out.
                let oldest = times[times.len() - limit.max as usize];
                return Ok(EmailRequestOutcome::RateLimited {
                    retry_after_ms: (oldest + limit.window_ms - now).max(1),
                });
            }
        }
        insert_email_request(&mut tx, &account_id, request).await?;
        insert_job(&mut tx, &NewJob::send_email(&request.id), now).await?;
        insert_audit(&mut tx, audit, now).await?;
        tx.commit().await?;
        Ok(EmailRequestOutcome::Created(request.clone()))
    }

    async fn get_email_request(&self, request_id: &str) -> StoreResult<Option<EmailRequest>> {
        let sql = format!("SELECT {EMAIL_COLUMNS} FROM email_requests WHERE id = ?");
        let row = sqlx::query(&sql)
            .bind(request_id)
            .fetch_optional(&self.write)
            .await?;
        row.map(|r| email_request_from_row(&r)).transpose()
    }

    async fn list_email_requests(&self, order_id: &str) -> StoreResult<Vec<EmailRequest>> {
        let sql = format!(
            "SELECT {EMAIL_COLUMNS} FROM email_requests WHERE order_id = ? ORDER BY created_at, id"
        );
        let rows = sqlx::query(&sql)
            .bind(order_id)
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(email_request_from_row).collect()
    }

    async fn latest_email_requests(
        &self,
        order_ids: &[String],
        kind: EmailKind,
    ) -> StoreResult<Vec<EmailRequest>> {
        if order_ids.is_empty() {
            return Ok(vec![]);
        }
        let marks = vec!["?"; order_ids.len()].join(", ");
        let sql = format!(
            "SELECT {EMAIL_COLUMNS} FROM email_requests e
             WHERE e.kind = ? AND e.order_id IN ({marks})
               AND e.created_at = (SELECT MAX(created_at) FROM email_requests
                                   WHERE order_id = e.order_id AND kind = e.kind)"
        );
        let mut q = sqlx::query(&sql).bind(kind.as_str());
        for id in order_ids {
            q = q.bind(id);
        }
        let rows = q.fetch_all(&self.read).await?;
        rows.iter().map(email_request_from_row).collect()
    }

    async fn set_email_request_state(
        &self,
        request_id: &str,
        state: EmailRequestState,
        error: Option<&str>,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE email_requests SET state = ?, error = ?, updated_at = ? WHERE id = ?")
            .bind(state.as_str())
            .bind(error)
            .bind(now_ms())
            .bind(request_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn finish_email_request(
        &self,
        request_id: &str,
        state: EmailRequestState,
        error: Option<&str>,
        job_id: i64,
        audit: &AuditEvent,
    ) -> StoreResult<()> {
        let now = now_ms();
        let mut tx = self.write.begin().await?;
        sqlx::query("UPDATE email_requests SET state = ?, error = ?, updated_at = ? WHERE id = ?")
            .bind(state.as_str())
            .bind(error)
            .bind(now)
            .bind(request_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM jobs WHERE id = ?")
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        insert_audit(&mut tx, audit, now).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl JobQueue for SqliteStore {
    async fn enqueue(&self, job: &NewJob) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        insert_job(&mut tx, job, now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn claim(&self, lease_ms: i64) -> StoreResult<Option<Job>> {
        let now = now_ms();
        let row = sqlx::query(
            "UPDATE jobs SET locked_until = ?, attempts = attempts + 1
             WHERE id = (SELECT id FROM jobs
                         WHERE run_at <= ? AND (locked_until IS NULL OR locked_until < ?)
                         ORDER BY run_at, id LIMIT 1)
             RETURNING id, kind, payload, attempts",
        )
        .bind(now + lease_ms)
        .bind(now)
        .bind(now)
        .fetch_optional(&self.write)
        .await?;
        row.map(|r| {
            let kind: String = r.try_get("kind")?;
            Ok(Job {
                id: r.try_get("id")?,
                kind: JobKind::parse(&kind).ok_or_else(|| corrupt("job kind", &kind))?,
                target: r.try_get("payload")?,
                attempts: r.try_get::<i64, _>("attempts")? as u32,
            })
        })
        .transpose()
    }

    async fn complete(&self, job_id: i64) -> StoreResult<()> {
        sqlx::query("DELETE FROM jobs WHERE id = ?")
            .bind(job_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn retry(&self, job_id: i64, run_at: OffsetDateTime, error: &str) -> StoreResult<()> {
        sqlx::query("UPDATE jobs SET run_at = ?, locked_until = NULL, last_error = ? WHERE id = ?")
            .bind(to_ms(run_at))
            .bind(error)
            .bind(job_id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn next_due_in_ms(&self) -> StoreResult<Option<i64>> {
        let next: Option<i64> =
            sqlx::query_scalar("SELECT MIN(MAX(run_at, COALESCE(locked_until, 0))) FROM jobs")
                .fetch_one(&self.write)
                .await?;
        Ok(next.map(|t| (t - now_ms()).max(0)))
    }

    async fn release_all_leases(&self) -> StoreResult<u64> {
        Ok(
            sqlx::query("UPDATE jobs SET locked_until = NULL WHERE locked_until IS NOT NULL")
                .execute(&self.write)
                .await?
                .rows_affected(),
        )
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(
        &self,
        token_hash: &[u8],
        user_id: &str,
        csrf_token: &str,
        expires_at: OffsetDateTime,
    ) -> StoreResult<()> {
        let now = now_ms();
        let mut tx = self.write.begin().await?;
        // Sign-ins are rare: a good moment to drop expired sessions.
        sqlx::query("DELETE FROM sessions WHERE expires_at < ?")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(csrf_token)
        .bind(now)
        .bind(to_ms(expires_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn find_session(&self, token_hash: &[u8]) -> StoreResult<Option<Session>> {
        let row = sqlx::query(
            "SELECT u.id, u.account_id, u.email, u.role, s.csrf_token, s.expires_at
             FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.token_hash = ? AND s.expires_at > ?",
        )
        .bind(token_hash)
        .bind(now_ms())
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| {
            Ok(Session {
                user: user_from_row(&r)?,
                csrf_token: r.try_get("csrf_token")?,
                expires_at: from_ms(r.try_get("expires_at")?),
            })
        })
        .transpose()
    }

    async fn delete_session(&self, token_hash: &[u8]) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
            .bind(token_hash)
            .execute(&self.write)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl AuditLog for SqliteStore {
    async fn recent_audit_events(
        &self,
        account_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<(String, String, String)>> {
        let rows = sqlx::query(
            "SELECT actor, action, subject FROM audit_events WHERE account_id = ?
             ORDER BY id DESC LIMIT ?",
        )
        .bind(account_id)
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("actor")?,
                    r.try_get("action")?,
                    r.try_get("subject")?,
                ))
            })
            .collect()
    }
}

const CERT_COLUMNS: &str =
    "id, account_id, common_name, names, issuer, serial, not_before, not_after,
    fingerprint, key_type, certificate_pem, chain_pem, csr_pem, notes, warnings, expired_on_import,
    created_by, created_at, updated_at";

fn certificate_from_row(r: &SqliteRow) -> StoreResult<StoredCertificate> {
    let names: String = r.try_get("names")?;
    let warnings: String = r.try_get("warnings")?;
    Ok(StoredCertificate {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        common_name: r.try_get("common_name")?,
        names: serde_json::from_str(&names).map_err(|_| corrupt("names", &names))?,
        issuer: r.try_get("issuer")?,
        serial: r.try_get("serial")?,
        not_before: from_ms(r.try_get("not_before")?),
        not_after: from_ms(r.try_get("not_after")?),
        fingerprint: r.try_get("fingerprint")?,
        key_type: r.try_get("key_type")?,
        certificate_pem: r.try_get("certificate_pem")?,
        chain_pem: r.try_get("chain_pem")?,
        csr_pem: r.try_get("csr_pem")?,
        notes: r.try_get("notes")?,
        warnings: serde_json::from_str(&warnings).map_err(|_| corrupt("warnings", &warnings))?,
        expired_on_import: r.try_get::<i64, _>("expired_on_import")? != 0,
        created_by: r.try_get("created_by")?,
        created_at: from_ms(r.try_get("created_at")?),
        updated_at: from_ms(r.try_get("updated_at")?),
    })
}

#[async_trait]
impl CertificateStore for SqliteStore {
    async fn insert_certificate(
        &self,
        c: &StoredCertificate,
        key: &SealedKey,
        audit: &AuditEvent,
    ) -> StoreResult<()> {
        let now = now_ms();
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO certificates (id, account_id, common_name, names, issuer, serial, not_before,
                not_after, fingerprint, key_type, certificate_pem, chain_pem, csr_pem, key_ciphertext,
                wrapped_key, notes, warnings, expired_on_import, created_by, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&c.id)
        .bind(&c.account_id)
        .bind(&c.common_name)
        .bind(serde_json::to_string(&c.names).expect("names serialize"))
        .bind(&c.issuer)
        .bind(&c.serial)
        .bind(to_ms(c.not_before))
        .bind(to_ms(c.not_after))
        .bind(&c.fingerprint)
        .bind(&c.key_type)
        .bind(&c.certificate_pem)
        .bind(&c.chain_pem)
        .bind(&c.csr_pem)
        .bind(&key.ciphertext)
        .bind(&key.wrapped_key)
        .bind(&c.notes)
        .bind(c.warnings.to_string())
        .bind(c.expired_on_import as i64)
        .bind(&c.created_by)
        .bind(to_ms(c.created_at))
        .bind(to_ms(c.updated_at))
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit, now).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_certificate(
        &self,
        account_id: &str,
        id: &str,
    ) -> StoreResult<Option<StoredCertificate>> {
        let sql =
            format!("SELECT {CERT_COLUMNS} FROM certificates WHERE id = ? AND account_id = ?");
        let row = sqlx::query(&sql)
            .bind(id)
            .bind(account_id)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| certificate_from_row(&r)).transpose()
    }

    async fn certificate_key(&self, account_id: &str, id: &str) -> StoreResult<Option<SealedKey>> {
        let row = sqlx::query(
            "SELECT key_ciphertext, wrapped_key FROM certificates WHERE id = ? AND account_id = ?",
        )
        .bind(id)
        .bind(account_id)
        .fetch_optional(&self.write)
        .await?;
        row.map(|r| {
            Ok(SealedKey {
                ciphertext: r.try_get("key_ciphertext")?,
                wrapped_key: r.try_get("wrapped_key")?,
            })
        })
        .transpose()
    }

    async fn list_certificates(
        &self,
        account_id: &str,
        filter: &CertificateFilter,
        after: Option<&Cursor>,
        limit: u32,
    ) -> StoreResult<Vec<StoredCertificate>> {
        let mut sql = format!("SELECT {CERT_COLUMNS} FROM certificates WHERE account_id = ?");
        if filter.name.is_some() {
            sql.push_str(" AND (names LIKE ? ESCAPE '\\' OR common_name LIKE ? ESCAPE '\\')");
        }
        if filter.expiring_before.is_some() {
            sql.push_str(" AND not_after < ?");
        }
        if after.is_some() {
            sql.push_str(" AND (created_at < ? OR (created_at = ? AND id < ?))");
        }
        sql.push_str(" ORDER BY created_at DESC, id DESC LIMIT ?");
        let mut q = sqlx::query(&sql).bind(account_id);
        if let Some(name) = &filter.name {
            let escaped = name
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            let pattern = format!("%{escaped}%");
            q = q.bind(pattern.clone()).bind(pattern);
        }
        if let Some(t) = filter.expiring_before {
            q = q.bind(to_ms(t));
        }
        if let Some(c) = after {
            q = q.bind(c.created_at_ms).bind(c.created_at_ms).bind(&c.id);
        }
        let rows = q.bind(limit as i64).fetch_all(&self.read).await?;
        rows.iter().map(certificate_from_row).collect()
    }

    async fn update_certificate(
        &self,
        c: &StoredCertificate,
        key: Option<&SealedKey>,
        audit: &AuditEvent,
    ) -> StoreResult<bool> {
        let now = now_ms();
        let mut tx = self.write.begin().await?;
        let done = sqlx::query(
            "UPDATE certificates SET common_name = ?, names = ?, issuer = ?, serial = ?, not_before = ?,
                not_after = ?, fingerprint = ?, key_type = ?, certificate_pem = ?, chain_pem = ?,
                csr_pem = ?, notes = ?, warnings = ?, expired_on_import = ?, updated_at = ?
             WHERE id = ? AND account_id = ?",
        )
        .bind(&c.common_name)
        .bind(serde_json::to_string(&c.names).expect("names serialize"))
        .bind(&c.issuer)
        .bind(&c.serial)
        .bind(to_ms(c.not_before))
        .bind(to_ms(c.not_after))
        .bind(&c.fingerprint)
        .bind(&c.key_type)
        .bind(&c.certificate_pem)
        .bind(&c.chain_pem)
        .bind(&c.csr_pem)
        .bind(&c.notes)
        .bind(c.warnings.to_string())
        .bind(c.expired_on_import as i64)
        .bind(now)
        .bind(&c.id)
        .bind(&c.account_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        if let Some(k) = key {
            sqlx::query("UPDATE certificates SET key_ciphertext = ?, wrapped_key = ? WHERE id = ?")
                .bind(&k.ciphertext)
                .bind(&k.wrapped_key)
                .bind(&c.id)
                .execute(&mut *tx)
                .await?;
        }
        insert_audit(&mut tx, audit, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn delete_certificate(
        &self,
        account_id: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.write.begin().await?;
        let done = sqlx::query("DELETE FROM certificates WHERE id = ? AND account_id = ?")
            .bind(id)
            .bind(account_id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit, now_ms()).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn record_audit(&self, audit: &AuditEvent) -> StoreResult<()> {
        let mut tx = self.write.begin().await?;
        insert_audit(&mut tx, audit, now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn wrapped_keys(&self) -> StoreResult<Vec<(String, Vec<u8>)>> {
        let rows = sqlx::query("SELECT id, wrapped_key FROM certificates")
            .fetch_all(&self.write)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("wrapped_key")?)))
            .collect()
    }

    async fn rewrap_key(&self, id: &str, old: &[u8], new: &[u8]) -> StoreResult<bool> {
        let done =
            sqlx::query("UPDATE certificates SET wrapped_key = ? WHERE id = ? AND wrapped_key = ?")
                .bind(new)
                .bind(id)
                .bind(old)
                .execute(&self.write)
                .await?;
        Ok(done.rows_affected() == 1)
    }
}
