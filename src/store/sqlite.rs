//! The embedded default: one SQLite file in WAL mode.
//!
//! Writes go to a single writer thread that commits many callers' changes in
//! one transaction (group commit); reads run on a few read-only connections
//! (src/store/sqlite_db.rs says why this is not sqlx's driver). Migrations
//! still run through sqlx, so databases created by earlier versions carry on.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{ffi, params, params_from_iter, Connection, Row};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use time::OffsetDateTime;

use super::sqlite_db::SqliteDb;
use super::*;
use crate::domain::account::{Account, Role, User};
use crate::domain::order::{
    EmailKind, EmailRequest, EmailRequestState, EmailTrigger, IssuedMetadata, Order, OrderState,
};
use crate::domain::{DnsName, EmailAddress};

pub struct SqliteStore {
    db: SqliteDb,
}

fn connect_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true)
}

/// Creates the file if needed, brings its schema up to date (through sqlx,
/// which keeps the record of applied migrations), then hands it to the
/// writer thread and the readers.
pub(crate) async fn open_migrated(
    path: &Path,
    migrations: &sqlx::migrate::Migrator,
    name: &str,
) -> StoreResult<SqliteDb> {
    let migrator = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(connect_options(path))
        .await?;
    let migrated = migrations.run(&migrator).await;
    migrator.close().await;
    migrated?;
    Ok(SqliteDb::open(path, name)?)
}

impl SqliteStore {
    pub async fn open(path: &Path) -> StoreResult<SqliteStore> {
        let db = open_migrated(path, &sqlx::migrate!("./migrations/sqlite"), "store").await?;
        Ok(SqliteStore { db })
    }

    /// Writes orders kept elsewhere (another desk's history, or a benchmark's
    /// data set) in one transaction. No jobs, no audit events: these orders
    /// have already run their course. Each order comes with the registrable
    /// domain of each of its names.
    pub async fn import_orders(
        &self,
        orders: Vec<(Order, Vec<Option<String>>)>,
    ) -> StoreResult<()> {
        self.db
            .write(move |c| {
                for (o, registrable) in &orders {
                    insert_order_rows(c, o, registrable)?;
                }
                Ok(())
            })
            .await
    }

    /// Commits what is queued and stops the writer.
    pub async fn close(&self) {
        self.db.close();
    }
}

/// An order's row, and one row per name (and per registrable domain) for
/// the listing filters.
fn insert_order_rows(c: &Connection, o: &Order, registrable: &[Option<String>]) -> StoreResult<()> {
    let cert = o.certificate.as_ref();
    execute(
        c,
        "INSERT INTO orders (id, account_id, created_by, state, ca, ca_reference,
            common_name, names, key_type, days, csr_pem, admin_email, admin_name,
            approver_email, language, failure_reason, cert_serial, cert_not_before,
            cert_not_after, cert_fingerprint, cert_issuer, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            o.id,
            o.account_id,
            o.created_by,
            o.state.as_str(),
            o.ca,
            o.ca_reference,
            o.common_name,
            serde_json::to_string(&o.names).expect("names serialize"),
            o.key_type,
            o.days as i64,
            o.csr_pem,
            o.admin_email.as_str(),
            o.admin_name,
            o.approver_email.as_ref().map(|e| e.as_str()),
            o.language,
            o.failure_reason,
            cert.map(|c| c.serial.as_str()),
            cert.map(|c| to_ms(c.not_before)),
            cert.map(|c| to_ms(c.not_after)),
            cert.map(|c| c.sha256_fingerprint.as_str()),
            cert.map(|c| c.issuer.as_str()),
            to_ms(o.created_at),
            to_ms(o.updated_at),
        ],
    )?;
    let created_at = to_ms(o.created_at);
    for (name, registrable) in o.names.iter().zip(registrable) {
        execute(
            c,
            "INSERT OR IGNORE INTO order_names (account_id, order_id, name, registrable, created_at)
             VALUES (?, ?, ?, ?, ?)",
            params![o.account_id, o.id, name, registrable, created_at],
        )?;
        if let Some(registrable) = registrable {
            execute(
                c,
                "INSERT OR IGNORE INTO order_domains (account_id, order_id, registrable, created_at)
                 VALUES (?, ?, ?, ?)",
                params![o.account_id, o.id, registrable, created_at],
            )?;
        }
    }
    Ok(())
}

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("{what}: {value:?}"))
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

fn email(value: String) -> StoreResult<EmailAddress> {
    EmailAddress::parse(&value).map_err(|_| corrupt("email", &value))
}

/// Every row the query returns, each through `map`.
pub(crate) fn all<T>(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl Fn(&Row) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let mut stmt = c.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(map(row)?);
    }
    Ok(out)
}

/// The first row the query returns, if any, through `map`.
pub(crate) fn one<T>(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl Fn(&Row) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    let mut stmt = c.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    match rows.next()? {
        Some(row) => Ok(Some(map(row)?)),
        None => Ok(None),
    }
}

pub(crate) fn execute(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> StoreResult<usize> {
    Ok(c.prepare_cached(sql)?.execute(params)?)
}

/// Columns 0–3 of a user query: id, account_id, email, role.
fn user_from_row(row: &Row) -> StoreResult<User> {
    let role: String = row.get(3)?;
    Ok(User {
        id: row.get(0)?,
        account_id: row.get(1)?,
        email: email(row.get(2)?)?,
        role: Role::parse(&role).ok_or_else(|| corrupt("role", &role))?,
    })
}

const USER_COLUMNS: &str = "u.id, u.account_id, u.email, u.role";

/// In the order `order_from_row` reads them.
const ORDER_COLUMNS: &str = "o.id, o.account_id, o.created_by, o.state, o.ca, o.ca_reference,
    o.common_name, o.names, o.key_type, o.days, o.csr_pem, o.admin_email, o.admin_name,
    o.approver_email, o.language, o.failure_reason, o.cert_serial, o.cert_not_before,
    o.cert_not_after, o.cert_fingerprint, o.cert_issuer, o.created_at, o.updated_at";

/// The same for lists, without the CSR (half of a row's bytes, and a page
/// never shows it).
const ORDER_LIST_COLUMNS: &str = "o.id, o.account_id, o.created_by, o.state, o.ca, o.ca_reference,
    o.common_name, o.names, o.key_type, o.days, '' AS csr_pem, o.admin_email, o.admin_name,
    o.approver_email, o.language, o.failure_reason, o.cert_serial, o.cert_not_before,
    o.cert_not_after, o.cert_fingerprint, o.cert_issuer, o.created_at, o.updated_at";

fn order_from_row(row: &Row) -> StoreResult<Order> {
    let state: String = row.get(3)?;
    let names: String = row.get(7)?;
    let approver: Option<String> = row.get(13)?;
    let serial: Option<String> = row.get(16)?;
    let certificate = match serial {
        Some(serial) => Some(IssuedMetadata {
            serial,
            not_before: from_ms(row.get(17)?),
            not_after: from_ms(row.get(18)?),
            sha256_fingerprint: row.get(19)?,
            issuer: row.get(20)?,
        }),
        None => None,
    };
    Ok(Order {
        id: row.get(0)?,
        account_id: row.get(1)?,
        created_by: row.get(2)?,
        state: OrderState::parse(&state).ok_or_else(|| corrupt("order state", &state))?,
        ca: row.get(4)?,
        ca_reference: row.get(5)?,
        common_name: row.get(6)?,
        names: serde_json::from_str(&names).map_err(|_| corrupt("names", &names))?,
        key_type: row.get(8)?,
        days: row.get::<_, i64>(9)? as u32,
        csr_pem: row.get(10)?,
        admin_email: email(row.get(11)?)?,
        admin_name: row.get(12)?,
        approver_email: approver.map(email).transpose()?,
        language: row.get(14)?,
        failure_reason: row.get(15)?,
        certificate,
        created_at: from_ms(row.get(21)?),
        updated_at: from_ms(row.get(22)?),
    })
}

/// In the order `email_request_from_row` reads them.
const EMAIL_COLUMNS: &str = "id, order_id, kind, trigger, recipient, state, error, requested_by,
    message_id, created_at, updated_at";

fn email_request_from_row(row: &Row) -> StoreResult<EmailRequest> {
    let kind: String = row.get(2)?;
    let trigger: String = row.get(3)?;
    let state: String = row.get(5)?;
    Ok(EmailRequest {
        id: row.get(0)?,
        order_id: row.get(1)?,
        kind: EmailKind::parse(&kind).ok_or_else(|| corrupt("email kind", &kind))?,
        trigger: EmailTrigger::parse(&trigger).ok_or_else(|| corrupt("trigger", &trigger))?,
        recipient: email(row.get(4)?)?,
        state: EmailRequestState::parse(&state).ok_or_else(|| corrupt("email state", &state))?,
        error: row.get(6)?,
        requested_by: row.get(7)?,
        message_id: row.get(8)?,
        created_at: from_ms(row.get(9)?),
        updated_at: from_ms(row.get(10)?),
    })
}

/// The new job's id; `None` when a job with its key is already queued.
fn insert_job(c: &Connection, job: &NewJob, now: i64) -> StoreResult<Option<i64>> {
    // A job leased at its writing counts as claimed once.
    let (locked_until, attempts) = match job.lease_ms {
        Some(lease) => (Some(now + lease), 1),
        None => (None, 0),
    };
    let inserted = execute(
        c,
        "INSERT INTO jobs (key, kind, payload, run_at, attempts, locked_until, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT(key) DO NOTHING",
        params![
            job.key,
            job.kind.as_str(),
            job.target,
            now,
            attempts,
            locked_until,
            now
        ],
    )?;
    Ok((inserted == 1).then(|| c.last_insert_rowid()))
}

fn insert_audit(c: &Connection, event: &AuditEvent, now: i64) -> StoreResult<()> {
    execute(
        c,
        "INSERT INTO audit_events (account_id, actor, action, subject, detail, created_at)
         VALUES (?, ?, ?, ?, ?, ?)",
        params![
            event.account_id,
            event.actor,
            event.action,
            event.subject,
            event.detail.to_string(),
            now
        ],
    )?;
    Ok(())
}

fn insert_email_request(c: &Connection, account_id: &str, r: &EmailRequest) -> StoreResult<()> {
    execute(
        c,
        "INSERT INTO email_requests (id, account_id, order_id, kind, trigger, recipient, state,
            error, requested_by, message_id, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            r.id,
            account_id,
            r.order_id,
            r.kind.as_str(),
            r.trigger.as_str(),
            r.recipient.as_str(),
            r.state.as_str(),
            r.error,
            r.requested_by,
            r.message_id,
            to_ms(r.created_at),
            to_ms(r.updated_at),
        ],
    )?;
    Ok(())
}

/// Claims an idempotency key in the current transaction; returns the
/// resource it already names when it was used before.
/// What an idempotency key was first used for, if it was.
fn find_idempotency_key(
    c: &Connection,
    account_id: &str,
    key: &IdempotencyKey,
) -> StoreResult<Option<String>> {
    one(
        c,
        "SELECT resource_id FROM idempotency_keys WHERE account_id = ? AND scope = ? AND key = ?",
        params![account_id, key.scope, key.key],
        |r| Ok(r.get::<_, String>(0)?),
    )
}

/// The first answer for a used key; otherwise records the key for
/// `resource_id` (the single writer means nobody else records it meanwhile).
fn claim_idempotency_key(
    c: &Connection,
    account_id: &str,
    key: &IdempotencyKey,
    resource_id: &str,
    now: i64,
) -> StoreResult<Option<String>> {
    let existing = find_idempotency_key(c, account_id, key)?;
    if existing.is_some() {
        return Ok(existing);
    }
    execute(
        c,
        "INSERT INTO idempotency_keys (account_id, scope, key, resource_id, created_at)
         VALUES (?, ?, ?, ?, ?)",
        params![account_id, key.scope, key.key, resource_id, now],
    )?;
    Ok(None)
}

fn account_from_row(r: &Row) -> StoreResult<Account> {
    Ok(Account {
        id: r.get(0)?,
        name: r.get(1)?,
    })
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn create_account(&self, name: &str) -> StoreResult<Account> {
        let account = Account {
            id: new_id(),
            name: name.to_string(),
        };
        let (id, name) = (account.id.clone(), account.name.clone());
        self.db
            .write(move |c| {
                c.prepare_cached("INSERT INTO accounts (id, name, created_at) VALUES (?, ?, ?)")?
                    .execute(params![id, name, now_ms()])
                    .map_err(|e| {
                        if is_unique_violation(&e) {
                            StoreError::Duplicate(format!("an account named {name:?}"))
                        } else {
                            e.into()
                        }
                    })
            })
            .await?;
        Ok(account)
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        self.db
            .read(|c| {
                all(
                    c,
                    "SELECT id, name FROM accounts ORDER BY created_at",
                    [],
                    account_from_row,
                )
            })
            .await
    }

    async fn find_account(&self, id_or_name: &str) -> StoreResult<Option<Account>> {
        let key = id_or_name.to_string();
        self.db
            .read(move |c| {
                one(
                    c,
                    "SELECT id, name FROM accounts WHERE id = ?1 OR name = ?1",
                    [key],
                    account_from_row,
                )
            })
            .await
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
        let u = user.clone();
        let hash = password_hash.map(str::to_string);
        self.db
            .write(move |c| {
                c.prepare_cached(
                    "INSERT INTO users (id, account_id, email, role, password_hash, created_at)
                     VALUES (?, ?, ?, ?, ?, ?)",
                )?
                .execute(params![
                    u.id,
                    u.account_id,
                    u.email.as_str(),
                    u.role.as_str(),
                    hash,
                    now_ms()
                ])
                .map_err(|e| {
                    if is_unique_violation(&e) {
                        StoreError::Duplicate(format!("a user with email {}", u.email))
                    } else {
                        e.into()
                    }
                })
            })
            .await?;
        Ok(user)
    }

    async fn count_users(&self) -> StoreResult<i64> {
        self.db
            .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))?))
            .await
    }

    async fn find_user(&self, user_id: &str) -> StoreResult<Option<User>> {
        let id = user_id.to_string();
        self.db
            .read(move |c| {
                one(
                    c,
                    &format!("SELECT {USER_COLUMNS} FROM users u WHERE u.id = ?"),
                    [id],
                    user_from_row,
                )
            })
            .await
    }

    async fn find_user_by_email(&self, email: &str) -> StoreResult<Option<(User, Option<String>)>> {
        let email = email.to_string();
        self.db
            .read(move |c| {
                one(
                    c,
                    &format!(
                        "SELECT {USER_COLUMNS}, u.password_hash FROM users u WHERE u.email = ?"
                    ),
                    [email],
                    |r| Ok((user_from_row(r)?, r.get(4)?)),
                )
            })
            .await
    }

    async fn set_password_hash(&self, user_id: &str, hash: &str) -> StoreResult<()> {
        let (id, hash) = (user_id.to_string(), hash.to_string());
        self.db
            .write(move |c| {
                execute(
                    c,
                    "UPDATE users SET password_hash = ? WHERE id = ?",
                    params![hash, id],
                )
            })
            .await?;
        Ok(())
    }

    async fn create_token(&self, user_id: &str, token_hash: &[u8]) -> StoreResult<()> {
        let (id, hash) = (user_id.to_string(), token_hash.to_vec());
        self.db
            .write(move |c| {
                execute(
                    c,
                    "INSERT INTO api_tokens (id, user_id, token_hash, created_at) VALUES (?, ?, ?, ?)",
                    params![new_id(), id, hash, now_ms()],
                )
            })
            .await?;
        Ok(())
    }

    async fn find_user_by_token_hash(&self, token_hash: &[u8]) -> StoreResult<Option<User>> {
        let hash = token_hash.to_vec();
        self.db
            .read(move |c| {
                one(
                    c,
                    &format!(
                        "SELECT {USER_COLUMNS} FROM api_tokens t
                         JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?"
                    ),
                    [hash],
                    user_from_row,
                )
            })
            .await
    }
}

/// The order's account and state, read inside a write.
fn order_account_and_state(
    c: &Connection,
    order_id: &str,
) -> StoreResult<Option<(String, OrderState)>> {
    one(
        c,
        "SELECT account_id, state FROM orders WHERE id = ?",
        [order_id],
        |r| {
            let state: String = r.get(1)?;
            let state = OrderState::parse(&state).ok_or_else(|| corrupt("order state", &state))?;
            Ok((r.get(0)?, state))
        },
    )
}

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
        let order = order.clone();
        let registrable = registrable_domains.to_vec();
        let (job, audit, idempotency) = (job.clone(), audit.clone(), idempotency.cloned());
        self.db
            .write(move |c| {
                let now = now_ms();
                if let Some(key) = &idempotency {
                    if let Some(existing) =
                        claim_idempotency_key(c, &order.account_id, key, &order.id, now)?
                    {
                        return Ok(InsertOutcome::Existing(existing));
                    }
                }
                insert_order_rows(c, &order, &registrable)?;
                let job_id = insert_job(c, &job, now)?;
                insert_audit(c, &audit, now)?;
                Ok(InsertOutcome::Created(order.id, job_id))
            })
            .await
    }

    async fn get_order(&self, account_id: &str, order_id: &str) -> StoreResult<Option<Order>> {
        let (account_id, order_id) = (account_id.to_string(), order_id.to_string());
        self.db
            .read(move |c| {
                one(
                    c,
                    &format!(
                        "SELECT {ORDER_COLUMNS} FROM orders o WHERE o.id = ? AND o.account_id = ?"
                    ),
                    [order_id, account_id],
                    order_from_row,
                )
            })
            .await
    }

    async fn get_order_for_system(&self, order_id: &str) -> StoreResult<Option<Order>> {
        let order_id = order_id.to_string();
        self.db
            .read(move |c| {
                one(
                    c,
                    &format!("SELECT {ORDER_COLUMNS} FROM orders o WHERE o.id = ?"),
                    [order_id],
                    order_from_row,
                )
            })
            .await
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
        let mut values: Vec<Value> = vec![Value::Text(account_id.to_string())];
        if let Some(domain) = &filter.domain {
            values.push(Value::Text(domain.clone()));
        }
        if let Some(state) = filter.state {
            sql.push_str(" AND o.state = ?");
            values.push(Value::Text(state.as_str().to_string()));
        }
        let id = if key == "o" { "o.id" } else { "k.order_id" };
        if let Some(c) = after {
            sql.push_str(&format!(" AND ({key}.created_at, {id}) {cmp} (?, ?)"));
            values.push(Value::Integer(c.created_at_ms));
            values.push(Value::Text(c.id.clone()));
        }
        sql.push_str(&format!(
            " ORDER BY {key}.created_at {dir}, {id} {dir} LIMIT ?"
        ));
        values.push(Value::Integer(limit as i64));
        self.db
            .read(move |c| all(c, &sql, params_from_iter(values), order_from_row))
            .await
    }

    async fn pending_order_ids(&self) -> StoreResult<Vec<String>> {
        self.db
            .read(|c| {
                all(
                    c,
                    "SELECT id FROM orders WHERE state IN ('submitted', 'pending_approval')",
                    [],
                    |r| Ok(r.get(0)?),
                )
            })
            .await
    }

    async fn update_order(&self, u: &OrderUpdate) -> StoreResult<Option<Vec<i64>>> {
        let u = u.clone();
        self.db
            .write(move |c| {
                let now = now_ms();
                let Some((account_id, current)) = order_account_and_state(c, &u.order_id)? else {
                    return Ok(None);
                };
                // Staying in the same state is allowed (a retried step), any
                // other move must be one the order's rules permit.
                let allowed = current == u.to || current.can_become(u.to);
                if !u.from.contains(&current) || !allowed {
                    return Ok(None);
                }
                let cert = u.certificate.as_ref();
                execute(
                    c,
                    "UPDATE orders SET state = ?, ca_reference = COALESCE(?, ca_reference),
                        failure_reason = COALESCE(?, failure_reason),
                        cert_serial = COALESCE(?, cert_serial),
                        cert_not_before = COALESCE(?, cert_not_before),
                        cert_not_after = COALESCE(?, cert_not_after),
                        cert_fingerprint = COALESCE(?, cert_fingerprint),
                        cert_issuer = COALESCE(?, cert_issuer),
                        updated_at = ?
                     WHERE id = ?",
                    params![
                        u.to.as_str(),
                        u.ca_reference,
                        u.failure_reason,
                        cert.map(|c| c.serial.as_str()),
                        cert.map(|c| to_ms(c.not_before)),
                        cert.map(|c| to_ms(c.not_after)),
                        cert.map(|c| c.sha256_fingerprint.as_str()),
                        cert.map(|c| c.issuer.as_str()),
                        now,
                        u.order_id,
                    ],
                )?;
                if let Some(r) = &u.new_email {
                    insert_email_request(c, &account_id, r)?;
                }
                let mut queued = Vec::with_capacity(u.jobs.len());
                for job in &u.jobs {
                    queued.extend(insert_job(c, job, now)?);
                }
                if let Some(job_id) = u.done_job {
                    execute(c, "DELETE FROM jobs WHERE id = ?", [job_id])?;
                }
                insert_audit(c, &u.audit, now)?;
                if let Some(event) = &u.email_audit {
                    insert_audit(c, event, now)?;
                }
                Ok(Some(queued))
            })
            .await
    }
}

#[async_trait]
impl EmailRequestStore for SqliteStore {
    async fn create_email_request(
        &self,
        request: &EmailRequest,
        required_state: OrderState,
        audit: &AuditEvent,
        idempotency: Option<&IdempotencyKey>,
        rate_limit: Option<RateLimit>,
        lease_ms: Option<i64>,
    ) -> StoreResult<EmailRequestOutcome> {
        let request = request.clone();
        let (audit, idempotency) = (audit.clone(), idempotency.cloned());
        self.db
            .write(move |c| {
                let now = now_ms();
                let (account_id, current) = order_account_and_state(c, &request.order_id)?
                    .ok_or_else(|| StoreError::Sqlite(rusqlite::Error::QueryReturnedNoRows))?;
                // A used key gives the first answer. The key is recorded only
                // with a request it points to: a refusal (wrong state, rate
                // limit) leaves it free, and a retry gets the refusal again.
                if let Some(key) = &idempotency {
                    if let Some(existing) = find_idempotency_key(c, &account_id, key)? {
                        let existing = one(
                            c,
                            &format!("SELECT {EMAIL_COLUMNS} FROM email_requests WHERE id = ?"),
                            [existing],
                            email_request_from_row,
                        )?
                        .ok_or_else(|| StoreError::Sqlite(rusqlite::Error::QueryReturnedNoRows))?;
                        return Ok(EmailRequestOutcome::Existing(existing));
                    }
                }
                if current != required_state {
                    return Ok(EmailRequestOutcome::WrongState(current));
                }
                if let Some(limit) = rate_limit {
                    let since = now - limit.window_ms;
                    let times: Vec<i64> = all(
                        c,
                        "SELECT created_at FROM email_requests
                         WHERE order_id = ? AND kind = ? AND trigger = 'resend' AND created_at > ?
                         ORDER BY created_at",
                        params![request.order_id, request.kind.as_str(), since],
                        |r| Ok(r.get(0)?),
                    )?;
                    if times.len() as u32 >= limit.max {
                        // The window frees a slot when its oldest request ages
                        // out; never past the window (see the PostgreSQL store).
                        let oldest = times[times.len() - limit.max as usize];
                        let wait = oldest + limit.window_ms - now;
                        return Ok(EmailRequestOutcome::RateLimited {
                            retry_after_ms: wait.min(limit.window_ms).max(1),
                        });
                    }
                }
                if let Some(key) = &idempotency {
                    claim_idempotency_key(c, &account_id, key, &request.id, now)?;
                }
                insert_email_request(c, &account_id, &request)?;
                let job = NewJob::send_email(&request.id);
                let job = match lease_ms {
                    Some(ms) => job.leased(ms),
                    None => job,
                };
                let job_id = insert_job(c, &job, now)?;
                insert_audit(c, &audit, now)?;
                Ok(EmailRequestOutcome::Created(
                    request,
                    job_id.filter(|_| lease_ms.is_some()),
                ))
            })
            .await
    }

    async fn get_email_request(&self, request_id: &str) -> StoreResult<Option<EmailRequest>> {
        let id = request_id.to_string();
        self.db
            .read(move |c| {
                one(
                    c,
                    &format!("SELECT {EMAIL_COLUMNS} FROM email_requests WHERE id = ?"),
                    [id],
                    email_request_from_row,
                )
            })
            .await
    }

    async fn list_email_requests(&self, order_id: &str) -> StoreResult<Vec<EmailRequest>> {
        let id = order_id.to_string();
        self.db
            .read(move |c| {
                all(
                    c,
                    &format!(
                        "SELECT {EMAIL_COLUMNS} FROM email_requests WHERE order_id = ?
                         ORDER BY created_at, id"
                    ),
                    [id],
                    email_request_from_row,
                )
            })
            .await
    }

    async fn latest_email_requests(
        &self,
        order_ids: &[String],
        kind: EmailKind,
    ) -> StoreResult<Vec<EmailRequest>> {
        if order_ids.is_empty() {
            return Ok(vec![]);
        }
        // One backward seek in email_requests_latest per order, taking its
        // newest request (the later row when two share a millisecond); the
        // index holds the rowid, so only the rows shown are read. Keeping
        // the rows whose created_at equals their order's MAX read every
        // request of every order on the page and ran the MAX for each: 2.8
        // against 0.17 ms for 50 orders resent 50 times each.
        let rows = vec!["(?)"; order_ids.len()].join(", ");
        let sql = format!(
            "SELECT {EMAIL_COLUMNS} FROM email_requests
             WHERE rowid IN (
                 SELECT (SELECT r.rowid FROM email_requests r
                         WHERE r.order_id = o.column1 AND r.kind = ?
                         ORDER BY r.created_at DESC, r.rowid DESC LIMIT 1)
                 FROM (VALUES {rows}) o)"
        );
        let mut values = Vec::with_capacity(order_ids.len() + 1);
        values.push(kind.as_str().to_string());
        values.extend(order_ids.iter().cloned());
        self.db
            .read(move |c| all(c, &sql, params_from_iter(values), email_request_from_row))
            .await
    }

    async fn set_email_request_state(
        &self,
        request_id: &str,
        state: EmailRequestState,
        error: Option<&str>,
    ) -> StoreResult<()> {
        let (id, error) = (request_id.to_string(), error.map(str::to_string));
        self.db
            .write(move |c| {
                execute(
                    c,
                    "UPDATE email_requests SET state = ?, error = ?, updated_at = ? WHERE id = ?",
                    params![state.as_str(), error, now_ms(), id],
                )
            })
            .await?;
        Ok(())
    }

    async fn forward_email_request(
        &self,
        request_id: &str,
    ) -> StoreResult<Option<(EmailRequest, Order)>> {
        // The writer only when the state changes (a retried send is
        // already forwarded).
        let Some(mut request) = self.get_email_request(request_id).await? else {
            return Ok(None);
        };
        if matches!(
            request.state,
            EmailRequestState::Sent | EmailRequestState::Failed
        ) {
            return Ok(None);
        }
        let Some(order) = self.get_order_for_system(&request.order_id).await? else {
            return Ok(None);
        };
        if request.state != EmailRequestState::Forwarded {
            self.set_email_request_state(
                &request.id,
                EmailRequestState::Forwarded,
                request.error.as_deref(),
            )
            .await?;
            request.state = EmailRequestState::Forwarded;
        }
        Ok(Some((request, order)))
    }

    async fn finish_email_request(
        &self,
        request_id: &str,
        state: EmailRequestState,
        error: Option<&str>,
        job_id: i64,
        audit: &AuditEvent,
    ) -> StoreResult<()> {
        let (id, error, audit) = (
            request_id.to_string(),
            error.map(str::to_string),
            audit.clone(),
        );
        self.db
            .write(move |c| {
                let now = now_ms();
                execute(
                    c,
                    "UPDATE email_requests SET state = ?, error = ?, updated_at = ? WHERE id = ?",
                    params![state.as_str(), error, now, id],
                )?;
                execute(c, "DELETE FROM jobs WHERE id = ?", [job_id])?;
                insert_audit(c, &audit, now)
            })
            .await
    }
}

/// The earliest job a worker could claim now or later, leased ones left out
/// (a lease runs for minutes; idle workers look again within a second): the
/// first entry of the free jobs' index, and the few leases run out. Neither
/// scans the queue, however many jobs wait to be retried or sit leased.
const NEXT_DUE: &str = "SELECT MIN(m) FROM (
       SELECT MIN(run_at) AS m FROM jobs WHERE locked_until IS NULL
       UNION ALL
       SELECT MIN(run_at) FROM jobs WHERE locked_until < ?1)";

/// The first due job in (run_at, id) order among the free ones and those
/// whose lease ran out, each side read from its own index (`jobs_free`,
/// `jobs_leased`): the jobs leased and still running are never walked, and
/// with the handoff (`worker::Handoff`) a thousand may be.
const CLAIM: &str = "UPDATE jobs SET locked_until = ?2, attempts = attempts + 1
     WHERE id = (SELECT id FROM (
                   SELECT * FROM (SELECT id, run_at FROM jobs
                                  WHERE locked_until IS NULL AND run_at <= ?1
                                  ORDER BY run_at, id LIMIT 1)
                   UNION ALL
                   SELECT * FROM (SELECT id, run_at FROM jobs
                                  WHERE locked_until < ?1 AND run_at <= ?1
                                  ORDER BY run_at, id LIMIT 1))
                 ORDER BY run_at, id LIMIT 1)
     RETURNING id, kind, payload, attempts";

#[async_trait]
impl JobQueue for SqliteStore {
    async fn enqueue(&self, job: &NewJob) -> StoreResult<()> {
        let job = job.clone();
        self.db
            .write(move |c| insert_job(c, &job, now_ms()).map(drop))
            .await
    }

    async fn claim(&self, lease_ms: i64) -> StoreResult<Option<Job>> {
        self.db
            .write(move |c| {
                let now = now_ms();
                one(c, CLAIM, params![now, now + lease_ms], |r| {
                    let kind: String = r.get(1)?;
                    Ok(Job {
                        id: r.get(0)?,
                        kind: JobKind::parse(&kind).ok_or_else(|| corrupt("job kind", &kind))?,
                        target: r.get(2)?,
                        attempts: r.get::<_, i64>(3)? as u32,
                    })
                })
            })
            .await
    }

    async fn complete(&self, job_id: i64) -> StoreResult<()> {
        self.db
            .write(move |c| execute(c, "DELETE FROM jobs WHERE id = ?", [job_id]))
            .await?;
        Ok(())
    }

    async fn retry(&self, job_id: i64, run_at: OffsetDateTime, error: &str) -> StoreResult<()> {
        let error = error.to_string();
        self.db
            .write(move |c| {
                execute(
                    c,
                    "UPDATE jobs SET run_at = ?, locked_until = NULL, last_error = ? WHERE id = ?",
                    params![to_ms(run_at), error, job_id],
                )
            })
            .await?;
        Ok(())
    }

    async fn next_due_in_ms(&self) -> StoreResult<Option<i64>> {
        let now = now_ms();
        let next: Option<i64> = self
            .db
            .read(move |c| Ok::<_, StoreError>(c.query_row(NEXT_DUE, [now], |r| r.get(0))?))
            .await?;
        Ok(next.map(|t| (t - now_ms()).max(0)))
    }

    async fn release_all_leases(&self) -> StoreResult<u64> {
        let n = self
            .db
            .write(|c| {
                execute(
                    c,
                    "UPDATE jobs SET locked_until = NULL WHERE locked_until IS NOT NULL",
                    [],
                )
            })
            .await?;
        Ok(n as u64)
    }

    async fn release_leases(&self, job_ids: &[i64]) -> StoreResult<u64> {
        let ids = job_ids.to_vec();
        let n = self
            .db
            .write(move |c| {
                let mut stmt = c.prepare_cached(
                    "UPDATE jobs SET locked_until = NULL, attempts = MAX(attempts - 1, 0)
                     WHERE id = ? AND locked_until IS NOT NULL",
                )?;
                let mut n = 0;
                for id in ids {
                    n += stmt.execute([id])?;
                }
                Ok::<_, StoreError>(n)
            })
            .await?;
        Ok(n as u64)
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
        let (hash, user_id, csrf) = (
            token_hash.to_vec(),
            user_id.to_string(),
            csrf_token.to_string(),
        );
        self.db
            .write(move |c| {
                let now = now_ms();
                // Sign-ins are rare: a good moment to drop expired sessions.
                execute(c, "DELETE FROM sessions WHERE expires_at < ?", [now])?;
                execute(
                    c,
                    "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at)
                     VALUES (?, ?, ?, ?, ?)",
                    params![hash, user_id, csrf, now, to_ms(expires_at)],
                )?;
                Ok(())
            })
            .await
    }

    async fn find_session(&self, token_hash: &[u8]) -> StoreResult<Option<Session>> {
        let hash = token_hash.to_vec();
        self.db
            .read(move |c| {
                one(
                    c,
                    &format!(
                        "SELECT {USER_COLUMNS}, s.csrf_token, s.expires_at
                         FROM sessions s JOIN users u ON u.id = s.user_id
                         WHERE s.token_hash = ? AND s.expires_at > ?"
                    ),
                    params![hash, now_ms()],
                    |r| {
                        Ok(Session {
                            user: user_from_row(r)?,
                            csrf_token: r.get(4)?,
                            expires_at: from_ms(r.get(5)?),
                        })
                    },
                )
            })
            .await
    }

    async fn delete_session(&self, token_hash: &[u8]) -> StoreResult<()> {
        let hash = token_hash.to_vec();
        self.db
            .write(move |c| execute(c, "DELETE FROM sessions WHERE token_hash = ?", [hash]))
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
        let account_id = account_id.to_string();
        self.db
            .read(move |c| {
                all(
                    c,
                    "SELECT actor, action, subject FROM audit_events WHERE account_id = ?
                     ORDER BY id DESC LIMIT ?",
                    params![account_id, limit as i64],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
            })
            .await
    }
}

/// In the order `certificate_from_row` reads them.
const CERT_COLUMNS: &str =
    "id, account_id, common_name, names, issuer, serial, not_before, not_after,
    fingerprint, key_type, certificate_pem, chain_pem, csr_pem, notes, warnings, expired_on_import,
    created_by, created_at, updated_at";

fn certificate_from_row(r: &Row) -> StoreResult<StoredCertificate> {
    let names: String = r.get(3)?;
    let warnings: String = r.get(14)?;
    Ok(StoredCertificate {
        id: r.get(0)?,
        account_id: r.get(1)?,
        common_name: r.get(2)?,
        names: serde_json::from_str(&names).map_err(|_| corrupt("names", &names))?,
        issuer: r.get(4)?,
        serial: r.get(5)?,
        not_before: from_ms(r.get(6)?),
        not_after: from_ms(r.get(7)?),
        fingerprint: r.get(8)?,
        key_type: r.get(9)?,
        certificate_pem: r.get(10)?,
        chain_pem: r.get(11)?,
        csr_pem: r.get(12)?,
        notes: r.get(13)?,
        warnings: serde_json::from_str(&warnings).map_err(|_| corrupt("warnings", &warnings))?,
        expired_on_import: r.get::<_, i64>(15)? != 0,
        created_by: r.get(16)?,
        created_at: from_ms(r.get(17)?),
        updated_at: from_ms(r.get(18)?),
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
        let (cert, key, audit) = (c.clone(), key.clone(), audit.clone());
        self.db
            .write(move |conn| {
                let c = &cert;
                execute(
                    conn,
                    "INSERT INTO certificates (id, account_id, common_name, names, issuer, serial,
                        not_before, not_after, fingerprint, key_type, certificate_pem, chain_pem,
                        csr_pem, key_ciphertext, wrapped_key, notes, warnings, expired_on_import,
                        created_by, created_at, updated_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    params![
                        c.id,
                        c.account_id,
                        c.common_name,
                        serde_json::to_string(&c.names).expect("names serialize"),
                        c.issuer,
                        c.serial,
                        to_ms(c.not_before),
                        to_ms(c.not_after),
                        c.fingerprint,
                        c.key_type,
                        c.certificate_pem,
                        c.chain_pem,
                        c.csr_pem,
                        key.ciphertext,
                        key.wrapped_key,
                        c.notes,
                        c.warnings.to_string(),
                        c.expired_on_import as i64,
                        c.created_by,
                        to_ms(c.created_at),
                        to_ms(c.updated_at),
                    ],
                )?;
                insert_audit(conn, &audit, now_ms())
            })
            .await
    }

    async fn get_certificate(
        &self,
        account_id: &str,
        id: &str,
    ) -> StoreResult<Option<StoredCertificate>> {
        let (account_id, id) = (account_id.to_string(), id.to_string());
        self.db
            .read(move |c| {
                one(
                    c,
                    &format!(
                        "SELECT {CERT_COLUMNS} FROM certificates WHERE id = ? AND account_id = ?"
                    ),
                    [id, account_id],
                    certificate_from_row,
                )
            })
            .await
    }

    async fn certificate_key(&self, account_id: &str, id: &str) -> StoreResult<Option<SealedKey>> {
        let (account_id, id) = (account_id.to_string(), id.to_string());
        self.db
            .read(move |c| {
                one(
                    c,
                    "SELECT key_ciphertext, wrapped_key FROM certificates
                     WHERE id = ? AND account_id = ?",
                    [id, account_id],
                    |r| {
                        Ok(SealedKey {
                            ciphertext: r.get(0)?,
                            wrapped_key: r.get(1)?,
                        })
                    },
                )
            })
            .await
    }

    async fn list_certificates(
        &self,
        account_id: &str,
        filter: &CertificateFilter,
        after: Option<&Cursor>,
        limit: u32,
    ) -> StoreResult<Vec<StoredCertificate>> {
        let mut sql = format!("SELECT {CERT_COLUMNS} FROM certificates WHERE account_id = ?");
        let mut values: Vec<Value> = vec![Value::Text(account_id.to_string())];
        if let Some(name) = &filter.name {
            sql.push_str(" AND (names LIKE ? ESCAPE '\\' OR common_name LIKE ? ESCAPE '\\')");
            let escaped = name
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            let pattern = format!("%{escaped}%");
            values.push(Value::Text(pattern.clone()));
            values.push(Value::Text(pattern));
        }
        if let Some(t) = filter.expiring_before {
            sql.push_str(" AND not_after < ?");
            values.push(Value::Integer(to_ms(t)));
        }
        if let Some(c) = after {
            sql.push_str(" AND (created_at < ? OR (created_at = ? AND id < ?))");
            values.push(Value::Integer(c.created_at_ms));
            values.push(Value::Integer(c.created_at_ms));
            values.push(Value::Text(c.id.clone()));
        }
        sql.push_str(" ORDER BY created_at DESC, id DESC LIMIT ?");
        values.push(Value::Integer(limit as i64));
        self.db
            .read(move |c| all(c, &sql, params_from_iter(values), certificate_from_row))
            .await
    }

    async fn update_certificate(
        &self,
        c: &StoredCertificate,
        key: Option<&SealedKey>,
        audit: &AuditEvent,
    ) -> StoreResult<bool> {
        let (cert, key, audit) = (c.clone(), key.cloned(), audit.clone());
        self.db
            .write(move |conn| {
                let now = now_ms();
                let c = &cert;
                let done = execute(
                    conn,
                    "UPDATE certificates SET common_name = ?, names = ?, issuer = ?, serial = ?,
                        not_before = ?, not_after = ?, fingerprint = ?, key_type = ?,
                        certificate_pem = ?, chain_pem = ?, csr_pem = ?, notes = ?, warnings = ?,
                        expired_on_import = ?, updated_at = ?
                     WHERE id = ? AND account_id = ?",
                    params![
                        c.common_name,
                        serde_json::to_string(&c.names).expect("names serialize"),
                        c.issuer,
                        c.serial,
                        to_ms(c.not_before),
                        to_ms(c.not_after),
                        c.fingerprint,
                        c.key_type,
                        c.certificate_pem,
                        c.chain_pem,
                        c.csr_pem,
                        c.notes,
                        c.warnings.to_string(),
                        c.expired_on_import as i64,
                        now,
                        c.id,
                        c.account_id,
                    ],
                )?;
                if done != 1 {
                    return Ok(false);
                }
                if let Some(k) = &key {
                    execute(
                        conn,
                        "UPDATE certificates SET key_ciphertext = ?, wrapped_key = ? WHERE id = ?",
                        params![k.ciphertext, k.wrapped_key, c.id],
                    )?;
                }
                insert_audit(conn, &audit, now)?;
                Ok(true)
            })
            .await
    }

    async fn delete_certificate(
        &self,
        account_id: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> StoreResult<bool> {
        let (account_id, id, audit) = (account_id.to_string(), id.to_string(), audit.clone());
        self.db
            .write(move |c| {
                let done = execute(
                    c,
                    "DELETE FROM certificates WHERE id = ? AND account_id = ?",
                    [id, account_id],
                )?;
                if done != 1 {
                    return Ok(false);
                }
                insert_audit(c, &audit, now_ms())?;
                Ok(true)
            })
            .await
    }

    async fn record_audit(&self, audit: &AuditEvent) -> StoreResult<()> {
        let audit = audit.clone();
        self.db
            .write(move |c| insert_audit(c, &audit, now_ms()))
            .await
    }

    async fn wrapped_keys(&self) -> StoreResult<Vec<(String, Vec<u8>)>> {
        self.db
            .read(|c| {
                all(c, "SELECT id, wrapped_key FROM certificates", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
            })
            .await
    }

    async fn rewrap_key(&self, id: &str, old: &[u8], new: &[u8]) -> StoreResult<bool> {
        let (id, old, new) = (id.to_string(), old.to_vec(), new.to_vec());
        let done = self
            .db
            .write(move |c| {
                execute(
                    c,
                    "UPDATE certificates SET wrapped_key = ? WHERE id = ? AND wrapped_key = ?",
                    params![new, id, old],
                )
            })
            .await?;
        Ok(done == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store_with_order() -> (tempfile::TempDir, SqliteStore, Order) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        let account = store.create_account("acme").await.unwrap();
        let admin = EmailAddress::parse("admin@example.com").unwrap();
        let user = store
            .create_user(&account.id, &admin, Role::Admin, None)
            .await
            .unwrap();
        let now = OffsetDateTime::now_utc();
        let order = Order {
            id: new_id(),
            account_id: account.id.clone(),
            state: OrderState::Submitted,
            ca: "builtin".into(),
            ca_reference: None,
            common_name: "www.example.com".into(),
            names: vec!["www.example.com".into()],
            key_type: "ecdsa-p256".into(),
            days: 90,
            admin_email: admin,
            admin_name: "Admin".into(),
            approver_email: None,
            language: "en".into(),
            failure_reason: None,
            certificate: None,
            created_by: user.id,
            created_at: now,
            updated_at: now,
            csr_pem: "-----BEGIN CERTIFICATE REQUEST-----".into(),
        };
        let audit = AuditEvent {
            account_id: Some(account.id),
            actor: "test".into(),
            action: "order.created".into(),
            subject: order.id.clone(),
            detail: serde_json::json!({}),
        };
        store
            .insert_order(
                &order,
                &[Some("example.com".into())],
                &NewJob::submit_order(&order.id),
                &audit,
                None,
            )
            .await
            .unwrap();
        (dir, store, order)
    }

    fn issued(order: &Order, job: i64, from: OrderState) -> OrderUpdate {
        OrderUpdate {
            order_id: order.id.clone(),
            from: vec![from],
            to: OrderState::Issued,
            ca_reference: Some("ref-1".into()),
            failure_reason: None,
            certificate: None,
            new_email: None,
            jobs: vec![],
            done_job: Some(job),
            email_audit: None,
            audit: AuditEvent {
                account_id: Some(order.account_id.clone()),
                actor: "ca:builtin".into(),
                action: "order.issued".into(),
                subject: order.id.clone(),
                detail: serde_json::json!({}),
            },
        }
    }

    #[tokio::test]
    async fn the_orders_screen_gets_each_orders_newest_fulfillment_request() {
        let (_dir, store, order) = store_with_order().await;
        let submit = store.claim(60_000).await.unwrap().expect("the submit job");
        store
            .update_order(&issued(&order, submit.id, OrderState::Submitted))
            .await
            .unwrap()
            .expect("issued");
        let at = OffsetDateTime::now_utc();
        let mut ids = vec![];
        // Three resends, the last two in the same instant: the later one
        // written is the newest.
        for created_at in [at - time::Duration::seconds(5), at, at] {
            let id = new_id();
            let request = EmailRequest {
                message_id: format!("<{id}@desk.test>"),
                id: id.clone(),
                order_id: order.id.clone(),
                kind: EmailKind::Fulfillment,
                trigger: EmailTrigger::Resend,
                recipient: order.admin_email.clone(),
                state: EmailRequestState::Queued,
                error: None,
                requested_by: None,
                created_at,
                updated_at: created_at,
            };
            let audit = AuditEvent {
                account_id: Some(order.account_id.clone()),
                actor: "test".into(),
                action: "email.fulfillment.requested".into(),
                subject: order.id.clone(),
                detail: serde_json::json!({}),
            };
            let outcome = store
                .create_email_request(&request, OrderState::Issued, &audit, None, None, None)
                .await
                .unwrap();
            assert!(matches!(outcome, EmailRequestOutcome::Created(..)));
            ids.push(id);
        }
        let latest = store
            .latest_email_requests(&[order.id.clone(), "other".into()], EmailKind::Fulfillment)
            .await
            .unwrap();
        assert_eq!(latest.len(), 1, "one per order that has any");
        assert_eq!(latest[0].id, ids[2]);
        assert!(store
            .latest_email_requests(std::slice::from_ref(&order.id), EmailKind::Approval)
            .await
            .unwrap()
            .is_empty());
        assert!(store
            .latest_email_requests(&[], EmailKind::Fulfillment)
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn an_order_recorded_issued_with_its_email_already_sent_logs_both_in_order() {
        let (_dir, store, order) = store_with_order().await;
        let submit = store.claim(60_000).await.unwrap().expect("the submit job");
        let mut update = issued(&order, submit.id, OrderState::Submitted);
        let now = OffsetDateTime::now_utc();
        update.new_email = Some(EmailRequest {
            message_id: "<r-1@desk.test>".into(),
            id: "r-1".into(),
            order_id: order.id.clone(),
            kind: EmailKind::Fulfillment,
            trigger: EmailTrigger::Initial,
            recipient: order.admin_email.clone(),
            state: EmailRequestState::Sent,
            error: None,
            requested_by: None,
            created_at: now,
            updated_at: now,
        });
        let mut sent = update.audit.clone();
        sent.action = "email.fulfillment.sent".into();
        update.email_audit = Some(sent);
        assert_eq!(store.update_order(&update).await.unwrap(), Some(vec![]));
        let requests = store.list_email_requests(&order.id).await.unwrap();
        assert_eq!(
            (requests.len(), requests[0].state),
            (1, EmailRequestState::Sent)
        );
        let actions: Vec<String> = store
            .recent_audit_events(&order.account_id, 10)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, action, _)| action)
            .collect();
        assert_eq!(
            &actions[..2],
            ["email.fulfillment.sent", "order.issued"],
            "newest first: the email after the issue"
        );
        assert!(
            store.claim(60_000).await.unwrap().is_none(),
            "nothing left to run"
        );
    }

    #[tokio::test]
    async fn a_queued_email_taken_by_a_worker_is_forwarded_and_comes_with_its_order() {
        let (_dir, store, order) = store_with_order().await;
        let submit = store.claim(60_000).await.unwrap().expect("the submit job");
        let mut update = issued(&order, submit.id, OrderState::Submitted);
        let now = OffsetDateTime::now_utc();
        let request = EmailRequest {
            message_id: "<r-1@desk.test>".into(),
            id: "r-1".into(),
            order_id: order.id.clone(),
            kind: EmailKind::Fulfillment,
            trigger: EmailTrigger::Initial,
            recipient: order.admin_email.clone(),
            state: EmailRequestState::Queued,
            error: None,
            requested_by: None,
            created_at: now,
            updated_at: now,
        };
        update.new_email = Some(request.clone());
        update.jobs = vec![NewJob::send_email(&request.id)];
        store.update_order(&update).await.unwrap().expect("applied");
        // A send that failed for a moment keeps its reason until it is sent.
        store
            .set_email_request_state("r-1", EmailRequestState::Queued, Some("will retry"))
            .await
            .unwrap();

        let (r, o) = store
            .forward_email_request("r-1")
            .await
            .unwrap()
            .expect("a queued request");
        assert_eq!(
            (r.state, r.error.as_deref(), o.id.as_str(), o.state),
            (
                EmailRequestState::Forwarded,
                Some("will retry"),
                order.id.as_str(),
                OrderState::Issued
            )
        );
        let stored = store.get_email_request("r-1").await.unwrap().unwrap();
        assert_eq!(stored.state, EmailRequestState::Forwarded);
        // Forwarded already (a retry after a crash): taken again.
        assert!(store.forward_email_request("r-1").await.unwrap().is_some());

        let job = store.claim(60_000).await.unwrap().expect("the send job");
        let sent = AuditEvent {
            account_id: Some(order.account_id.clone()),
            actor: "test".into(),
            action: "email.fulfillment.sent".into(),
            subject: order.id.clone(),
            detail: serde_json::json!({}),
        };
        store
            .finish_email_request("r-1", EmailRequestState::Sent, None, job.id, &sent)
            .await
            .unwrap();
        assert!(
            store.forward_email_request("r-1").await.unwrap().is_none(),
            "a sent email is not sent again"
        );
        let stored = store.get_email_request("r-1").await.unwrap().unwrap();
        assert_eq!(stored.state, EmailRequestState::Sent);
        assert!(store.forward_email_request("nope").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_job_leased_as_it_is_queued_is_left_to_its_desk_and_freed_after_a_restart() {
        let (_dir, store, order) = store_with_order().await;
        let submit = store.claim(60_000).await.unwrap().expect("the submit job");
        let mut update = issued(&order, submit.id, OrderState::Submitted);
        update.jobs = vec![NewJob::send_email("request-1").leased(60_000)];
        let queued = store.update_order(&update).await.unwrap().expect("applied");
        assert_eq!(queued.len(), 1, "its id comes back");
        assert!(
            store.claim(60_000).await.unwrap().is_none(),
            "no other worker takes a job leased at its writing"
        );
        // A desk that died before sending it: the next start frees it.
        store.release_all_leases().await.unwrap();
        let again = store.claim(60_000).await.unwrap().expect("freed");
        assert_eq!((again.id, again.kind), (queued[0], JobKind::SendEmail));
        assert_eq!(again.attempts, 2, "the leased run counted as one");
        // Queued again under the same key: nothing new, no id.
        update.done_job = None;
        update.from = vec![OrderState::Issued];
        assert_eq!(store.update_order(&update).await.unwrap(), Some(vec![]));
    }

    #[tokio::test]
    async fn a_job_leased_but_not_run_is_given_back_due_and_its_attempt_uncounted() {
        let (_dir, store, order) = store_with_order().await;
        let submit = store.claim(60_000).await.unwrap().expect("the submit job");
        let mut update = issued(&order, submit.id, OrderState::Submitted);
        update.jobs = vec![NewJob::send_email("request-1").leased(60_000)];
        let queued = store.update_order(&update).await.unwrap().expect("applied");
        // The desk stops before running it.
        assert_eq!(store.release_leases(&queued).await.unwrap(), 1);
        let again = store.claim(60_000).await.unwrap().expect("due at once");
        assert_eq!((again.id, again.attempts), (queued[0], 1));
        assert_eq!(
            store.release_leases(&[again.id + 1000]).await.unwrap(),
            0,
            "no such job"
        );
    }

    #[tokio::test]
    async fn the_job_an_update_completes_goes_with_it_and_stays_when_it_does_not_apply() {
        let (_dir, store, order) = store_with_order().await;
        let job = store.claim(60_000).await.unwrap().expect("the submit job");
        assert_eq!(job.kind, JobKind::SubmitOrder);

        // The order is not pending approval: the update does not apply and
        // the job stays, for its worker to complete or retry.
        let refused = issued(&order, job.id, OrderState::PendingApproval);
        assert!(store.update_order(&refused).await.unwrap().is_none());
        store.release_all_leases().await.unwrap();
        let again = store.claim(60_000).await.unwrap().expect("still queued");
        assert_eq!(again.id, job.id);

        let applied = issued(&order, job.id, OrderState::Submitted);
        assert!(store.update_order(&applied).await.unwrap().is_some());
        store.release_all_leases().await.unwrap();
        assert!(store.claim(60_000).await.unwrap().is_none());
        let stored = store
            .get_order_for_system(&order.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.state, OrderState::Issued);
    }

    #[tokio::test]
    async fn the_next_due_job_leaves_leased_ones_out_and_is_found_through_the_index() {
        let (_dir, store, _order) = store_with_order().await;
        store.claim(60_000).await.unwrap().expect("the submit job");
        assert_eq!(store.next_due_in_ms().await.unwrap(), None);
        let later = OffsetDateTime::now_utc() + time::Duration::seconds(30);
        store.enqueue(&NewJob::sync_order("o-2")).await.unwrap();
        let job = store.claim(60_000).await.unwrap().expect("the sync job");
        store.retry(job.id, later, "not yet").await.unwrap();
        let due = store
            .next_due_in_ms()
            .await
            .unwrap()
            .expect("a job is due later");
        assert!((25_000..=30_000).contains(&due), "due in {due} ms");

        let plan: Vec<String> = store
            .db
            .read(|c| {
                let mut s = c.prepare(&format!("EXPLAIN QUERY PLAN {NEXT_DUE}"))?;
                let rows = s.query_map([0], |r| r.get::<_, String>(3))?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await
            .unwrap();
        assert!(
            plan.iter().any(|p| p.contains("USING INDEX jobs_free")),
            "{plan:?}"
        );
        assert!(!plan.iter().any(|p| p.starts_with("SCAN jobs")), "{plan:?}");
    }

    #[tokio::test]
    async fn a_claim_takes_the_oldest_due_job_and_reads_past_the_running_ones_through_the_indexes()
    {
        let (_dir, store, _order) = store_with_order().await;
        store.claim(60_000).await.unwrap().expect("the submit job");
        shared_tests::a_claim_takes_the_oldest_due_job_past_the_running_ones(&store).await;

        let plan: Vec<String> = store
            .db
            .read(|c| {
                let mut s = c.prepare(&format!("EXPLAIN QUERY PLAN {CLAIM}"))?;
                let rows = s.query_map([0, 0], |r| r.get::<_, String>(3))?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await
            .unwrap();
        for index in ["jobs_free", "jobs_leased"] {
            assert!(plan.iter().any(|p| p.contains(index)), "{index}: {plan:?}");
        }
        assert!(!plan.iter().any(|p| p.starts_with("SCAN jobs")), "{plan:?}");
    }
}
