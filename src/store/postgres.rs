//! PostgreSQL: what an operator runs when one machine is not enough, with
//! several desks on one database (DESIGN rule 5).
//!
//! Same tables, same rows and the same answers as the SQLite store
//! (src/store/sqlite.rs), method for method: the same checks in the same
//! order, the same writes committed together, the same ordering of lists.
//! Times are Unix milliseconds from the desk's clock and JSON is text, as
//! there, so cursors and rows mean the same on both. What differs, and why:
//!
//! * **Concurrency is explicit.** SQLite's single writer runs one write at a
//!   time, so a read-then-write inside it cannot race. Here transactions run
//!   side by side (READ COMMITTED), on one desk's pool or on several desks,
//!   so every read-then-write takes the lock it needs:
//!   - `create_email_request` locks the order row (`SELECT … FOR UPDATE`)
//!     before it checks the state, the idempotency key and the rate limit:
//!     two resends of one order queue behind each other, and the second
//!     counts the first;
//!   - idempotency keys are claimed with `INSERT … ON CONFLICT DO NOTHING`
//!     and then looked up: a second transaction with the same key waits for
//!     the first to commit, then finds its answer;
//!   - `update_order` is one conditional `UPDATE … WHERE state = ANY(…)`, so
//!     two writers cannot both move an order;
//!   - `claim` takes the next due job `FOR UPDATE SKIP LOCKED`: claimers
//!     never wait for each other and never get the same job.
//! * **Leases name their desk.** Each desk holds a session-level advisory
//!   lock for as long as it runs, and its claims carry that lock's key. At
//!   start-up ([`JobQueue::release_all_leases`]) a desk frees only the leases
//!   whose desk no longer holds its lock: a desk that crashed (or was killed)
//!   loses its leases as soon as any desk starts, and a live desk keeps its
//!   own.
//! * **Clocks.** Due times, leases, the rate-limit window and session expiry
//!   compare the desks' own clocks, as on SQLite; desks that share a database
//!   need synchronised clocks (NTP), or one desk may take another's job
//!   before its lease is over.
//! * **Text order.** The ids that listings sort by are `COLLATE "C"` in the
//!   schema: byte order, as SQLite compares text, whatever the database's
//!   collation.
//! * **Case.** SQLite's `LIKE` ignores ASCII case; the certificate name
//!   filter uses `ILIKE` here to match.
//! * **Bulk writes.** Rows of many orders go in one statement each
//!   (`INSERT … SELECT * FROM UNNEST(arrays)`): one round trip per table, not
//!   per row, which is what makes `import_orders` fast over the network.
//! * **Group commit for the writes made per certificate or email.**
//!   Each method is one transaction on a pooled connection, and PostgreSQL
//!   flushes the WAL of concurrent commits together by itself. Orders placed
//!   without an idempotency key, orders' changes, requests for an order's
//!   email and emails' outcomes are the exceptions: those that arrive while
//!   one statement of their kind is in flight go together in the next
//!   ([`Grouped`], which says why).
//! * **Commits that may be lost do not wait for the disk.** A job's lease
//!   and its email request's passing states (forwarded, queued to retry) go
//!   through a small pool with `synchronous_commit = off`: if the database
//!   server crashes before it writes them, the job simply runs again, which
//!   it must survive anyway. Every commit that records an accepted request
//!   or an outcome waits for the WAL flush, and flushing one also flushes
//!   every earlier relaxed commit.
//!
//! Queries are checked at run time (`sqlx::query` with `$n` placeholders), so
//! building needs no database.

use async_trait::async_trait;
use sqlx::postgres::{PgArguments, PgConnection, PgPool, PgPoolOptions, PgRow, Postgres};
use sqlx::query::Query;
use sqlx::Row;
use time::OffsetDateTime;

use super::*;
use crate::domain::account::{Account, Role, User};
use crate::domain::order::{
    EmailKind, EmailRequest, EmailRequestState, EmailTrigger, IssuedMetadata, Order, OrderState,
};
use crate::domain::{DnsName, EmailAddress};

/// Connections per desk for transactions and the writes that wait for the
/// disk. With the two pools below and the presence lock's, a desk holds up
/// to 19; PostgreSQL's default limit is 100 connections for the whole
/// server, shared by every desk on it.
const POOL_SIZE: u32 = 10;
/// Connections for the writes that need not wait for the disk (leases,
/// passing states), on top of POOL_SIZE.
const RELAXED_POOL_SIZE: u32 = 4;
/// Connections for reads (lists, lookups), on top of POOL_SIZE. A read
/// keeps a server process busy on a CPU from start to end, so more of them
/// at once than the server has cores only share those cores more finely and
/// stretch every read; a commit mostly waits for its WAL flush, and many in
/// flight are flushed together. With reads and commits on the one pool of 10,
/// 16 clients listing orders got p99 9.2–10.7 ms where 4 connections for
/// reads give 7.3–8.7 ms (p50 about the same), and resends were accepted
/// as fast (docs/PERFORMANCE.md, 2026-12-01).
const READ_POOL_SIZE: u32 = 4;

/// First key of the advisory locks that say "this desk is alive"; the
/// second is the desk's instance number.
const PRESENCE_LOCK: i32 = 0x6364_6b31; // "cdk1"

pub struct PgStore {
    pool: PgPool,
    /// Reads that stand alone (no transaction, no lock): see READ_POOL_SIZE.
    reads: PgPool,
    /// `synchronous_commit = off`: only for writes whose loss means a job
    /// runs again.
    relaxed: PgPool,
    /// This desk's instance number, written on the jobs it leases.
    instance: i32,
    /// The connection holding this desk's presence lock: PostgreSQL releases
    /// the lock when the connection ends, with the process or otherwise.
    _presence: tokio::sync::Mutex<PgConnection>,
    /// Orders placed without an idempotency key, written together.
    placements: Grouped<Placement>,
    /// Emails' outcomes, written together.
    finishes: Grouped<Finish>,
    /// Requests for an order's email (resends mostly), written together.
    email_requests: Grouped<RequestEmail>,
    /// Orders' changes (`update_order`), written together.
    changes: Grouped<Change>,
}

impl PgStore {
    /// Connects and brings the schema up to date with migrations/postgres.
    /// sqlx holds an advisory lock while it migrates, so desks starting
    /// together migrate once.
    ///
    /// The first connection is made on its own, not through a pool: a
    /// server that refuses it or cannot be reached is reported at once with
    /// its reason, where a pool retries until its acquire timeout (30 s) and
    /// then names only the timeout. That connection migrates and then holds
    /// the presence lock. While it migrates, one connection of each pool
    /// opens beside it: a server process takes a few milliseconds to start
    /// (more on a busy server), and the desk's first statements (the first
    /// administrator looked up on `reads`, the leases of a previous run
    /// freed on `relaxed`) no longer wait for theirs one after another
    /// (docs/PERFORMANCE.md, *The start's round trips overlapped*).
    pub async fn connect(url: &str) -> StoreResult<PgStore> {
        use sqlx::ConnectOptions;
        let options: sqlx::postgres::PgConnectOptions = url.parse()?;
        let mut first = options.connect().await?;
        // The writing pools plan each statement once per connection.
        // PostgreSQL plans a prepared statement afresh on each execution
        // until a generic plan looks no costlier than the fresh ones, and
        // the generic plan of a write taking its rows as arrays (UNNEST)
        // assumes ten of each, where most executions carry one to three,
        // so it never looks cheap enough: the emails' outcomes' statement,
        // prepared in psql on 300,000 requests and run with one and two,
        // had 8 custom plans in 8 executions and no generic one. The writes
        // go by key and index, so the generic plan is the one a fresh plan
        // would pick (EXPLAIN: index scans on the keys). Reads keep
        // PostgreSQL's choice (see list_orders).
        let writes = options
            .clone()
            .options([("plan_cache_mode", "force_generic_plan")]);
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .connect_lazy_with(writes.clone());
        let relaxed = PgPoolOptions::new()
            .max_connections(RELAXED_POOL_SIZE)
            .min_connections(0)
            .connect_lazy_with(writes.options([("synchronous_commit", "off")]));
        let reads = PgPoolOptions::new()
            .max_connections(READ_POOL_SIZE)
            .min_connections(0)
            .connect_lazy_with(options);
        let store = async {
            sqlx::migrate!("./migrations/postgres")
                .run(&mut first)
                .await?;
            take_presence_lock(&mut first).await
        };
        let warmed = async {
            tokio::try_join!(
                open_one(pool.clone()),
                open_one(reads.clone()),
                open_one(relaxed.clone())
            )
        };
        let (instance, warmed) = tokio::join!(store, warmed);
        let opened = instance.and_then(|i| warmed.map(|_| i).map_err(StoreError::from));
        let instance = match opened {
            Ok(i) => i,
            Err(e) => {
                relaxed.close().await;
                reads.close().await;
                pool.close().await;
                return Err(e);
            }
        };
        Ok(PgStore {
            placements: Grouped::start(pool.clone()),
            finishes: Grouped::start(pool.clone()),
            email_requests: Grouped::start(pool.clone()),
            changes: Grouped::start(pool.clone()),
            pool,
            reads,
            relaxed,
            instance,
            _presence: tokio::sync::Mutex::new(first),
        })
    }

    /// Writes orders kept elsewhere (another desk's history, or a benchmark's
    /// data set) in one transaction. No jobs, no audit events: these orders
    /// have already run their course. Each order comes with the registrable
    /// domain of each of its names.
    pub async fn import_orders(
        &self,
        orders: Vec<(Order, Vec<Option<String>>)>,
    ) -> StoreResult<()> {
        let rows: Vec<(&Order, &[Option<String>])> =
            orders.iter().map(|(o, r)| (o, r.as_slice())).collect();
        let mut tx = self.pool.begin().await?;
        insert_order_rows(&mut tx, &rows, None).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Waits for the connections in use to come back, then closes them all.
    pub async fn close(&self) {
        self.relaxed.close().await;
        self.reads.close().await;
        self.pool.close().await;
    }
}

/// Opens a connection of `pool`'s, left there idle.
async fn open_one(pool: PgPool) -> Result<(), sqlx::Error> {
    pool.acquire().await.map(drop)
}

/// Takes an advisory lock on a fresh instance number on `c`, held for as
/// long as `c` stays open (for as long as this desk runs).
async fn take_presence_lock(c: &mut PgConnection) -> StoreResult<i32> {
    loop {
        // Positive, so it reads the same through pg_locks' unsigned columns.
        let instance = rand::Rng::gen_range(&mut rand::thread_rng(), 1..i32::MAX);
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(PRESENCE_LOCK)
            .bind(instance)
            .fetch_one(&mut *c)
            .await?;
        if taken {
            return Ok(instance);
        }
    }
}

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("{what}: {value:?}"))
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn email(value: String) -> StoreResult<EmailAddress> {
    EmailAddress::parse(&value).map_err(|_| corrupt("email", &value))
}

/// A unique violation (SQLSTATE 23505) as [`StoreError::Duplicate`], naming
/// `what`; any other error as it is.
fn duplicate(e: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Duplicate(what()),
        _ => e.into(),
    }
}

/// A row that must be there (the order a request is for, the request an
/// idempotency key names) and is not; SQLite says QueryReturnedNoRows.
fn missing() -> StoreError {
    StoreError::Database(sqlx::Error::RowNotFound)
}

/// A parameter of a query whose text is built at run time.
enum Arg {
    Text(String),
    Int(i64),
}

/// Query text and its parameters, built together so each `$n` matches its
/// value.
#[derive(Default)]
struct Sql {
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    fn push(&mut self, text: &str) {
        self.text.push_str(text);
    }

    /// Adds a parameter; returns its placeholder.
    fn arg(&mut self, value: Arg) -> String {
        self.args.push(value);
        format!("${}", self.args.len())
    }

    fn query(&self) -> Query<'_, Postgres, PgArguments> {
        self.args
            .iter()
            .fold(sqlx::query(&self.text), |q, a| match a {
                Arg::Text(s) => q.bind(s.as_str()),
                Arg::Int(i) => q.bind(*i),
            })
    }
}

/// Columns 0–3 of a user query: id, account_id, email, role.
fn user_from_row(row: &PgRow) -> StoreResult<User> {
    let role: String = row.try_get(3)?;
    Ok(User {
        id: row.try_get(0)?,
        account_id: row.try_get(1)?,
        email: email(row.try_get(2)?)?,
        role: Role::parse(&role).ok_or_else(|| corrupt("role", &role))?,
    })
}

const USER_COLUMNS: &str = "u.id, u.account_id, u.email, u.role";

/// In the order `order_from_row` reads them.
const ORDER_COLUMNS: &str = "o.id, o.account_id, o.created_by, o.state, o.ca, o.ca_reference,
    o.common_name, o.names, o.key_type, o.days, o.csr_pem, o.admin_email, o.admin_name,
    o.approver_email, o.language, o.failure_reason, o.cert_serial, o.cert_not_before,
    o.cert_not_after, o.cert_fingerprint, o.cert_issuer, o.created_at, o.updated_at";
/// How many columns ORDER_COLUMNS names.
const ORDER_COLUMN_COUNT: usize = column_count(ORDER_COLUMNS);

/// The columns a list of plain column names (no expressions) holds.
const fn column_count(columns: &str) -> usize {
    let bytes = columns.as_bytes();
    let (mut i, mut n) = (0, 1);
    while i < bytes.len() {
        if bytes[i] == b',' {
            n += 1;
        }
        i += 1;
    }
    n
}

/// The same for lists, without the CSR (half of a row's bytes, and a page
/// never shows it).
const ORDER_LIST_COLUMNS: &str = "o.id, o.account_id, o.created_by, o.state, o.ca, o.ca_reference,
    o.common_name, o.names, o.key_type, o.days, ''::text AS csr_pem, o.admin_email, o.admin_name,
    o.approver_email, o.language, o.failure_reason, o.cert_serial, o.cert_not_before,
    o.cert_not_after, o.cert_fingerprint, o.cert_issuer, o.created_at, o.updated_at";

fn order_from_row(row: &PgRow) -> StoreResult<Order> {
    let state: String = row.try_get(3)?;
    let names: String = row.try_get(7)?;
    let approver: Option<String> = row.try_get(13)?;
    let serial: Option<String> = row.try_get(16)?;
    let certificate = match serial {
        Some(serial) => Some(IssuedMetadata {
            serial,
            not_before: from_ms(row.try_get(17)?),
            not_after: from_ms(row.try_get(18)?),
            sha256_fingerprint: row.try_get(19)?,
            issuer: row.try_get(20)?,
        }),
        None => None,
    };
    Ok(Order {
        id: row.try_get(0)?,
        account_id: row.try_get(1)?,
        created_by: row.try_get(2)?,
        state: OrderState::parse(&state).ok_or_else(|| corrupt("order state", &state))?,
        ca: row.try_get(4)?,
        ca_reference: row.try_get(5)?,
        common_name: row.try_get(6)?,
        names: serde_json::from_str(&names).map_err(|_| corrupt("names", &names))?,
        key_type: row.try_get(8)?,
        days: row.try_get::<i32, _>(9)? as u32,
        csr_pem: row.try_get(10)?,
        admin_email: email(row.try_get(11)?)?,
        admin_name: row.try_get(12)?,
        approver_email: approver.map(email).transpose()?,
        language: row.try_get(14)?,
        failure_reason: row.try_get(15)?,
        certificate,
        created_at: from_ms(row.try_get(21)?),
        updated_at: from_ms(row.try_get(22)?),
    })
}

/// In the order `email_request_from_row` reads them.
const EMAIL_COLUMNS: &str = "id, order_id, kind, trigger, recipient, state, error, requested_by,
    message_id, created_at, updated_at";

fn email_request_from_row(row: &PgRow) -> StoreResult<EmailRequest> {
    email_request_at(row, 0)
}

/// The request whose EMAIL_COLUMNS start at column `at` of the row.
fn email_request_at(row: &PgRow, at: usize) -> StoreResult<EmailRequest> {
    let kind: String = row.try_get(at + 2)?;
    let trigger: String = row.try_get(at + 3)?;
    let state: String = row.try_get(at + 5)?;
    Ok(EmailRequest {
        id: row.try_get(at)?,
        order_id: row.try_get(at + 1)?,
        kind: EmailKind::parse(&kind).ok_or_else(|| corrupt("email kind", &kind))?,
        trigger: EmailTrigger::parse(&trigger).ok_or_else(|| corrupt("trigger", &trigger))?,
        recipient: email(row.try_get(at + 4)?)?,
        state: EmailRequestState::parse(&state).ok_or_else(|| corrupt("email state", &state))?,
        error: row.try_get(at + 6)?,
        requested_by: row.try_get(at + 7)?,
        message_id: row.try_get(at + 8)?,
        created_at: from_ms(row.try_get(at + 9)?),
        updated_at: from_ms(row.try_get(at + 10)?),
    })
}

fn account_from_row(row: &PgRow) -> StoreResult<Account> {
    Ok(Account {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
    })
}

fn job_from_row(row: &PgRow) -> StoreResult<Job> {
    let kind: String = row.try_get(1)?;
    Ok(Job {
        id: row.try_get(0)?,
        kind: JobKind::parse(&kind).ok_or_else(|| corrupt("job kind", &kind))?,
        target: row.try_get(2)?,
        attempts: row.try_get::<i32, _>(3)? as u32,
    })
}

/// Placed orders' jobs and audit events, one of each per order, written
/// with them.
struct OrderTails<'a> {
    rows: &'a [(&'a NewJob, &'a AuditEvent)],
    now: i64,
    instance: i32,
}

/// Orders' rows, and one row per name (and per registrable domain) for the
/// listing filters, with `tail`'s job and audit event: one statement for
/// all of it (data-modifying CTEs; the foreign keys are checked at its end),
/// so one round trip where a placed order took five statements. Names are
/// paired with their registrable domains as given (`zip`), and a name or
/// domain given twice is written once, as SQLite's `INSERT OR IGNORE` does.
/// Returns, for each of `tails`' jobs in their order, its id when it was
/// inserted (None when a job with its key was queued already).
async fn insert_order_rows(
    c: &mut PgConnection,
    orders: &[(&Order, &[Option<String>])],
    tails: Option<OrderTails<'_>>,
) -> StoreResult<Vec<Option<i64>>> {
    if orders.is_empty() {
        return Ok(vec![]);
    }
    let n = orders.len();
    let mut id = Vec::with_capacity(n);
    let mut account_id = Vec::with_capacity(n);
    let mut created_by = Vec::with_capacity(n);
    let mut state = Vec::with_capacity(n);
    let mut ca = Vec::with_capacity(n);
    let mut ca_reference = Vec::with_capacity(n);
    let mut common_name = Vec::with_capacity(n);
    let mut names = Vec::with_capacity(n);
    let mut key_type = Vec::with_capacity(n);
    let mut days = Vec::with_capacity(n);
    let mut csr_pem = Vec::with_capacity(n);
    let mut admin_email = Vec::with_capacity(n);
    let mut admin_name = Vec::with_capacity(n);
    let mut approver_email = Vec::with_capacity(n);
    let mut language = Vec::with_capacity(n);
    let mut failure_reason = Vec::with_capacity(n);
    let mut cert_serial = Vec::with_capacity(n);
    let mut cert_not_before = Vec::with_capacity(n);
    let mut cert_not_after = Vec::with_capacity(n);
    let mut cert_fingerprint = Vec::with_capacity(n);
    let mut cert_issuer = Vec::with_capacity(n);
    let mut created_at = Vec::with_capacity(n);
    let mut updated_at = Vec::with_capacity(n);
    // order_names and order_domains
    let (mut n_account, mut n_order, mut n_name, mut n_registrable, mut n_created) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut d_account, mut d_order, mut d_registrable, mut d_created) =
        (vec![], vec![], vec![], vec![]);
    for (o, registrable) in orders {
        let cert = o.certificate.as_ref();
        id.push(o.id.as_str());
        account_id.push(o.account_id.as_str());
        created_by.push(o.created_by.as_str());
        state.push(o.state.as_str());
        ca.push(o.ca.as_str());
        ca_reference.push(o.ca_reference.as_deref());
        common_name.push(o.common_name.as_str());
        names.push(serde_json::to_string(&o.names).expect("names serialize"));
        key_type.push(o.key_type.as_str());
        days.push(o.days as i32);
        csr_pem.push(o.csr_pem.as_str());
        admin_email.push(o.admin_email.as_str());
        admin_name.push(o.admin_name.as_str());
        approver_email.push(o.approver_email.as_ref().map(|e| e.as_str()));
        language.push(o.language.as_str());
        failure_reason.push(o.failure_reason.as_deref());
        cert_serial.push(cert.map(|c| c.serial.as_str()));
        cert_not_before.push(cert.map(|c| to_ms(c.not_before)));
        cert_not_after.push(cert.map(|c| to_ms(c.not_after)));
        cert_fingerprint.push(cert.map(|c| c.sha256_fingerprint.as_str()));
        cert_issuer.push(cert.map(|c| c.issuer.as_str()));
        created_at.push(to_ms(o.created_at));
        updated_at.push(to_ms(o.updated_at));
        // Each name and each registrable domain once per order, here
        // rather than by `ON CONFLICT DO NOTHING`: a speculative insert
        // costs the server a lock and a WAL record more than a plain one,
        // and this order's rows are new, so only its own could collide.
        let (first_name, first_domain) = (n_name.len(), d_registrable.len());
        for (name, registrable) in o.names.iter().zip(registrable.iter()) {
            if n_name[first_name..].contains(&name.as_str()) {
                continue;
            }
            n_account.push(o.account_id.as_str());
            n_order.push(o.id.as_str());
            n_name.push(name.as_str());
            n_registrable.push(registrable.as_deref());
            n_created.push(to_ms(o.created_at));
            let new_domain = registrable
                .as_deref()
                .filter(|r| !d_registrable[first_domain..].contains(r));
            if let Some(registrable) = new_domain {
                d_account.push(o.account_id.as_str());
                d_order.push(o.id.as_str());
                d_registrable.push(registrable);
                d_created.push(to_ms(o.created_at));
            }
        }
    }
    // $1..$23 the orders, $24..$28 their names, $29..$32 their domains,
    // $33..$44 the jobs and the audit events.
    let tail_sql = if tails.is_some() {
        ", job AS (
             INSERT INTO jobs (key, kind, payload, run_at, attempts, locked_until, locked_by,
                 created_at)
             SELECT j.key, j.kind, j.payload, $36, j.attempts, j.locked_until, j.locked_by, $36
             FROM UNNEST($33::text[], $34::text[], $35::text[], $37::int[], $38::bigint[],
                 $39::int[]) AS j(key, kind, payload, attempts, locked_until, locked_by)
             ON CONFLICT (key) DO NOTHING
             RETURNING id, key
         ), audit AS (
             INSERT INTO audit_events (account_id, actor, action, subject, detail, created_at)
             SELECT a.account_id, a.actor, a.action, a.subject, a.detail, $36
             FROM UNNEST($40::text[], $41::text[], $42::text[], $43::text[], $44::text[])
                 WITH ORDINALITY AS a(account_id, actor, action, subject, detail, n)
             ORDER BY a.n
         )
         SELECT ARRAY(SELECT key FROM job), ARRAY(SELECT id FROM job)"
    } else {
        " SELECT NULL::text[], NULL::bigint[]"
    };
    let sql = format!(
        "WITH placed AS (
             INSERT INTO orders (id, account_id, created_by, state, ca, ca_reference,
                common_name, names, key_type, days, csr_pem, admin_email, admin_name,
                approver_email, language, failure_reason, cert_serial, cert_not_before,
                cert_not_after, cert_fingerprint, cert_issuer, created_at, updated_at)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                $6::text[], $7::text[], $8::text[], $9::text[], $10::int[], $11::text[],
                $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[],
                $18::bigint[], $19::bigint[], $20::text[], $21::text[], $22::bigint[],
                $23::bigint[])
         ), names AS (
             INSERT INTO order_names (account_id, order_id, name, registrable, created_at)
             SELECT * FROM UNNEST($24::text[], $25::text[], $26::text[], $27::text[],
                $28::bigint[])
         ), domains AS (
             INSERT INTO order_domains (account_id, order_id, registrable, created_at)
             SELECT * FROM UNNEST($29::text[], $30::text[], $31::text[], $32::bigint[])
         ){tail_sql}"
    );
    let query = sqlx::query(&sql)
        .bind(id)
        .bind(account_id)
        .bind(created_by)
        .bind(state)
        .bind(ca)
        .bind(ca_reference)
        .bind(common_name)
        .bind(names)
        .bind(key_type)
        .bind(days)
        .bind(csr_pem)
        .bind(admin_email)
        .bind(admin_name)
        .bind(approver_email)
        .bind(language)
        .bind(failure_reason)
        .bind(cert_serial)
        .bind(cert_not_before)
        .bind(cert_not_after)
        .bind(cert_fingerprint)
        .bind(cert_issuer)
        .bind(created_at)
        .bind(updated_at)
        .bind(n_account)
        .bind(n_order)
        .bind(n_name)
        .bind(n_registrable)
        .bind(n_created)
        .bind(d_account)
        .bind(d_order)
        .bind(d_registrable)
        .bind(d_created);
    let Some(tails) = tails else {
        query.execute(&mut *c).await?;
        return Ok(vec![]);
    };
    let n = tails.rows.len();
    let mut jobs = JobColumns::default();
    let (mut a_account, mut a_actor, mut a_action, mut a_subject, mut a_detail) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (job, audit) in tails.rows {
        jobs.push(job, lease(job.lease_ms, tails.now, tails.instance));
        a_account.push(audit.account_id.as_deref());
        a_actor.push(audit.actor.as_str());
        a_action.push(audit.action.as_str());
        a_subject.push(audit.subject.as_str());
        a_detail.push(audit.detail.to_string());
    }
    let row = query
        .bind(jobs.key)
        .bind(jobs.kind)
        .bind(jobs.payload)
        .bind(tails.now)
        .bind(jobs.attempts)
        .bind(jobs.locked_until)
        .bind(jobs.locked_by)
        .bind(a_account)
        .bind(a_actor)
        .bind(a_action)
        .bind(a_subject)
        .bind(a_detail)
        .fetch_one(&mut *c)
        .await?;
    let keys: Vec<String> = row.try_get(0)?;
    let ids: Vec<i64> = row.try_get(1)?;
    Ok(tails
        .rows
        .iter()
        .map(|(job, _)| keys.iter().position(|k| *k == job.key).map(|i| ids[i]))
        .collect())
}

/// New jobs as the arrays a statement unnests, one element per job: what
/// runs (key, kind, payload) and its lease (see [`lease`]).
#[derive(Default)]
struct JobColumns<'a> {
    key: Vec<&'a str>,
    kind: Vec<&'a str>,
    payload: Vec<&'a str>,
    attempts: Vec<i32>,
    locked_until: Vec<Option<i64>>,
    locked_by: Vec<Option<i32>>,
}

impl<'a> JobColumns<'a> {
    fn push(&mut self, job: &'a NewJob, (until, by, tries): (Option<i64>, Option<i32>, i32)) {
        self.key.push(&job.key);
        self.kind.push(job.kind.as_str());
        self.payload.push(&job.target);
        self.attempts.push(tries);
        self.locked_until.push(until);
        self.locked_by.push(by);
    }
}

/// A new job's lease columns (locked_until, locked_by, attempts): leased at
/// its writing to this desk (`instance`) for `lease_ms`, its run counted,
/// or free for any worker.
fn lease(lease_ms: Option<i64>, now: i64, instance: i32) -> (Option<i64>, Option<i32>, i32) {
    match lease_ms {
        Some(lease) => (Some(now + lease), Some(instance), 1),
        None => (None, None, 0),
    }
}

/// Binds a new job's key, kind, payload, time, attempts, locked_until and
/// locked_by, in that order (see `lease`).
fn bind_job<'q>(
    query: Query<'q, Postgres, PgArguments>,
    job: &'q NewJob,
    now: i64,
    instance: i32,
) -> Query<'q, Postgres, PgArguments> {
    let (locked_until, locked_by, attempts) = lease(job.lease_ms, now, instance);
    query
        .bind(&job.key)
        .bind(job.kind.as_str())
        .bind(&job.target)
        .bind(now)
        .bind(attempts)
        .bind(locked_until)
        .bind(locked_by)
}

/// The new job's id; `None` when a job with its key is already queued. A
/// job leased at its writing is leased to `instance` (this desk) and counts
/// as claimed once.
async fn insert_job(
    c: &mut PgConnection,
    job: &NewJob,
    now: i64,
    instance: i32,
) -> StoreResult<Option<i64>> {
    let query = sqlx::query(
        "INSERT INTO jobs (key, kind, payload, run_at, attempts, locked_until, locked_by,
             created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $4)
         ON CONFLICT (key) DO NOTHING
         RETURNING id",
    );
    let row = bind_job(query, job, now, instance)
        .fetch_optional(c)
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// Binds an audit event's account, actor, action, subject and detail, in
/// the order of audit_events' columns (its time is bound apart).
fn bind_audit<'q>(
    query: Query<'q, Postgres, PgArguments>,
    event: &'q AuditEvent,
) -> Query<'q, Postgres, PgArguments> {
    query
        .bind(&event.account_id)
        .bind(&event.actor)
        .bind(&event.action)
        .bind(&event.subject)
        .bind(event.detail.to_string())
}

async fn insert_audit(c: &mut PgConnection, event: &AuditEvent, now: i64) -> StoreResult<()> {
    bind_audit(
        sqlx::query(
            "INSERT INTO audit_events (account_id, actor, action, subject, detail, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        ),
        event,
    )
    .bind(now)
    .execute(c)
    .await?;
    Ok(())
}

async fn delete_job(c: &mut PgConnection, job_id: i64) -> StoreResult<()> {
    sqlx::query("DELETE FROM jobs WHERE id = $1")
        .bind(job_id)
        .execute(c)
        .await?;
    Ok(())
}

async fn existing_email_request(c: &mut PgConnection, id: String) -> StoreResult<EmailRequest> {
    let row = sqlx::query(&format!(
        "SELECT {EMAIL_COLUMNS} FROM email_requests WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(c)
    .await?
    .ok_or_else(missing)?;
    email_request_from_row(&row)
}

/// Claims an idempotency key in the current transaction; returns the
/// resource it already names when it was used before. A transaction that
/// claims a key another one has just claimed waits (on the key's unique
/// index) for that one to end, then sees its row.
async fn claim_idempotency_key(
    c: &mut PgConnection,
    account_id: &str,
    key: &IdempotencyKey,
    resource_id: &str,
    now: i64,
) -> StoreResult<Option<String>> {
    let claimed = sqlx::query(
        "INSERT INTO idempotency_keys (account_id, scope, key, resource_id, created_at)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(account_id)
    .bind(key.scope)
    .bind(&key.key)
    .bind(resource_id)
    .bind(now)
    .execute(&mut *c)
    .await?
    .rows_affected()
        == 1;
    if claimed {
        return Ok(None);
    }
    let existing: String = sqlx::query_scalar(
        "SELECT resource_id FROM idempotency_keys WHERE account_id = $1 AND scope = $2 AND key = $3",
    )
    .bind(account_id)
    .bind(key.scope)
    .bind(&key.key)
    .fetch_optional(c)
    .await?
    .ok_or_else(missing)?;
    Ok(Some(existing))
}

#[async_trait]
impl AccountStore for PgStore {
    async fn create_account(&self, name: &str) -> StoreResult<Account> {
        let account = Account {
            id: new_id(),
            name: name.to_string(),
        };
        sqlx::query("INSERT INTO accounts (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(&account.id)
            .bind(&account.name)
            .bind(now_ms())
            .execute(&self.pool)
            .await
            .map_err(|e| duplicate(e, || format!("an account named {name:?}")))?;
        Ok(account)
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        sqlx::query("SELECT id, name FROM accounts ORDER BY created_at, id COLLATE \"C\"")
            .fetch_all(&self.reads)
            .await?
            .iter()
            .map(account_from_row)
            .collect()
    }

    async fn find_account(&self, id_or_name: &str) -> StoreResult<Option<Account>> {
        sqlx::query("SELECT id, name FROM accounts WHERE id = $1 OR name = $1")
            .bind(id_or_name)
            .fetch_optional(&self.reads)
            .await?
            .as_ref()
            .map(account_from_row)
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
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&user.id)
        .bind(&user.account_id)
        .bind(user.email.as_str())
        .bind(user.role.as_str())
        .bind(password_hash)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(|e| duplicate(e, || format!("a user with email {email}")))?;
        Ok(user)
    }

    async fn count_users(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.reads)
            .await?)
    }

    async fn find_user(&self, user_id: &str) -> StoreResult<Option<User>> {
        sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.id = $1"
        ))
        .bind(user_id)
        .fetch_optional(&self.reads)
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()
    }

    async fn find_user_by_email(&self, email: &str) -> StoreResult<Option<(User, Option<String>)>> {
        sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, u.password_hash FROM users u WHERE u.email = $1"
        ))
        .bind(email)
        .fetch_optional(&self.reads)
        .await?
        .as_ref()
        .map(|r| Ok((user_from_row(r)?, r.try_get(4)?)))
        .transpose()
    }

    async fn set_password_hash(&self, user_id: &str, hash: &str) -> StoreResult<()> {
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(hash)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn create_token(&self, user_id: &str, token_hash: &[u8]) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO api_tokens (id, user_id, token_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(new_id())
        .bind(user_id)
        .bind(token_hash)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn find_user_by_token_hash(&self, token_hash: &[u8]) -> StoreResult<Option<User>> {
        sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM api_tokens t
             JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1"
        ))
        .bind(token_hash)
        .fetch_optional(&self.reads)
        .await?
        .as_ref()
        .map(user_from_row)
        .transpose()
    }
}

#[async_trait]
impl OrderStore for PgStore {
    async fn insert_order(
        &self,
        order: &Order,
        registrable_domains: &[Option<String>],
        job: &NewJob,
        audit: &AuditEvent,
        idempotency: Option<&IdempotencyKey>,
    ) -> StoreResult<InsertOutcome<String>> {
        // Without a key, one statement, atomic without BEGIN and COMMIT,
        // shared with the orders placed at the same moment (`Placement`).
        let Some(key) = idempotency else {
            let placement = Placement {
                order: order.clone(),
                registrable_domains: registrable_domains.to_vec(),
                job: job.clone(),
                audit: audit.clone(),
                instance: self.instance,
            };
            let job_id = self.placements.write(&self.pool, placement).await?;
            return Ok(InsertOutcome::Created(order.id.clone(), job_id));
        };
        let now = now_ms();
        let rows = [(order, registrable_domains)];
        let tails = [(job, audit)];
        let mut tx = self.pool.begin().await?;
        if let Some(existing) =
            claim_idempotency_key(&mut tx, &order.account_id, key, &order.id, now).await?
        {
            tx.commit().await?;
            return Ok(InsertOutcome::Existing(existing));
        }
        let job_ids = insert_order_rows(
            &mut tx,
            &rows,
            Some(OrderTails {
                rows: &tails,
                now,
                instance: self.instance,
            }),
        )
        .await?;
        tx.commit().await?;
        Ok(InsertOutcome::Created(order.id.clone(), job_ids[0]))
    }

    async fn get_order(&self, account_id: &str, order_id: &str) -> StoreResult<Option<Order>> {
        sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders o WHERE o.id = $1 AND o.account_id = $2"
        ))
        .bind(order_id)
        .bind(account_id)
        .fetch_optional(&self.reads)
        .await?
        .as_ref()
        .map(order_from_row)
        .transpose()
    }

    async fn get_order_for_system(&self, order_id: &str) -> StoreResult<Option<Order>> {
        sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders o WHERE o.id = $1"
        ))
        .bind(order_id)
        .fetch_optional(&self.reads)
        .await?
        .as_ref()
        .map(order_from_row)
        .transpose()
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
        let mut q = Sql::default();
        let account = q.arg(Arg::Text(account_id.to_string()));
        let (key, id) = match (by_domain, &filter.domain) {
            (Some((table, column)), Some(domain)) => {
                let domain = q.arg(Arg::Text(domain.clone()));
                q.push(&format!(
                    "SELECT {ORDER_LIST_COLUMNS} FROM {table} k JOIN orders o ON o.id = k.order_id
                     WHERE k.account_id = {account} AND k.{column} = {domain}"
                ));
                ("k", "k.order_id")
            }
            _ => {
                q.push(&format!(
                    "SELECT {ORDER_LIST_COLUMNS} FROM orders o WHERE o.account_id = {account}"
                ));
                ("o", "o.id")
            }
        };
        if let Some(state) = filter.state {
            let state = q.arg(Arg::Text(state.as_str().to_string()));
            q.push(&format!(" AND o.state = {state}"));
        }
        if let Some(c) = after {
            let at = q.arg(Arg::Int(c.created_at_ms));
            let after_id = q.arg(Arg::Text(c.id.clone()));
            q.push(&format!(
                " AND ({key}.created_at, {id}) {cmp} ({at}, {after_id})"
            ));
        }
        // The limit (a u32: nothing but digits) is written into the
        // statement, not bound as $n. PostgreSQL plans a prepared statement
        // afresh on each execution until its generic plan looks no costlier
        // than the fresh ones, and a generic plan must assume an unknown
        // limit keeps a tenth of the rows: once the tables had statistics,
        // the list by domain (order_domains joined to orders) was planned
        // anew on every request, 0.68 ms a page against 0.33 ms with the
        // limit written in, which keeps the generic plan from the sixth
        // execution (pg_prepared_statements: 0 generic plans in 20 against
        // 15). The statements differ by limit only; callers use a handful.
        q.push(&format!(
            " ORDER BY {key}.created_at {dir}, {id} {dir} LIMIT {limit}"
        ));
        q.query()
            .fetch_all(&self.reads)
            .await?
            .iter()
            .map(order_from_row)
            .collect()
    }

    async fn pending_order_ids(&self) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM orders WHERE state IN ('submitted', 'pending_approval')",
        )
        .fetch_all(&self.reads)
        .await?)
    }

    async fn update_order(&self, u: &OrderUpdate) -> StoreResult<Option<Vec<i64>>> {
        // The states the order may be in for the change to apply: one of
        // `from`, and one from which `to` is allowed (staying in the same
        // state is, a retried step; any other move must be one the order's
        // rules permit). Checked by the UPDATE itself, so of two racing
        // writers only the first moves the order.
        let allowed: Vec<&str> = u
            .from
            .iter()
            .filter(|s| **s == u.to || s.can_become(u.to))
            .map(|s| s.as_str())
            .collect();
        if allowed.is_empty() {
            return Ok(None);
        }
        // Changes that arrive together go in one statement, one call of
        // change_order (migration 0005) each ([`Change`]).
        let now = now_ms();
        let change = Change {
            leases: u
                .jobs
                .iter()
                .map(|job| lease(job.lease_ms, now, self.instance))
                .collect(),
            allowed: allowed.join(","),
            update: u.clone(),
            now,
        };
        self.changes.write(&self.pool, change).await
    }
}

#[async_trait]
impl EmailRequestStore for PgStore {
    async fn create_email_request(
        &self,
        request: &EmailRequest,
        required_state: OrderState,
        audit: &AuditEvent,
        idempotency: Option<&IdempotencyKey>,
        rate_limit: Option<RateLimit>,
        lease_ms: Option<i64>,
    ) -> StoreResult<EmailRequestOutcome> {
        // The checks and the writes run in the server, in request_email
        // (migration 0003), whose comments say why and how it keeps the
        // order's requests in line; resends that arrive together go in one
        // statement ([`RequestEmail`]).
        let now = now_ms();
        let job = NewJob {
            lease_ms,
            ..NewJob::send_email(&request.id)
        };
        let (locked_until, locked_by, attempts) = lease(job.lease_ms, now, self.instance);
        let ask = RequestEmail {
            request: request.clone(),
            required_state: required_state.as_str(),
            key_scope: idempotency.map(|k| k.scope),
            key: idempotency.map(|k| k.key.clone()),
            // A limit beyond i32 is no limit anyone reaches in an hour.
            limit_max: rate_limit.map(|l| i32::try_from(l.max).unwrap_or(i32::MAX)),
            limit_since: rate_limit.map(|l| now - l.window_ms),
            job,
            now,
            attempts,
            locked_until,
            locked_by,
            audit: audit.clone(),
        };
        let row = self.email_requests.write(&self.pool, ask).await?;
        let RequestEmailRow {
            outcome,
            found_id,
            oldest,
            job_id,
        } = row;
        match (outcome.as_str(), found_id, oldest) {
            ("created", _, _) => Ok(EmailRequestOutcome::Created(
                request.clone(),
                job_id.filter(|_| lease_ms.is_some()),
            )),
            ("existing", Some(id), _) => {
                let mut c = self.reads.acquire().await?;
                Ok(EmailRequestOutcome::Existing(
                    existing_email_request(&mut c, id).await?,
                ))
            }
            ("wrong_state", Some(state), _) => Ok(EmailRequestOutcome::WrongState(
                OrderState::parse(&state).ok_or_else(|| corrupt("order state", &state))?,
            )),
            ("rate_limited", _, Some(oldest)) => {
                let window_ms = rate_limit.map_or(0, |l| l.window_ms);
                // Never past the window: a concurrent resend stamped a moment
                // after this one read the clock would put it a few ms past.
                Ok(EmailRequestOutcome::RateLimited {
                    retry_after_ms: (oldest + window_ms - now).min(window_ms).max(1),
                })
            }
            ("missing", _, _) => Err(missing()),
            (other, _, _) => Err(corrupt("request_email outcome", other)),
        }
    }

    async fn get_email_request(&self, request_id: &str) -> StoreResult<Option<EmailRequest>> {
        sqlx::query(&format!(
            "SELECT {EMAIL_COLUMNS} FROM email_requests WHERE id = $1"
        ))
        .bind(request_id)
        .fetch_optional(&self.reads)
        .await?
        .as_ref()
        .map(email_request_from_row)
        .transpose()
    }

    async fn list_email_requests(&self, order_id: &str) -> StoreResult<Vec<EmailRequest>> {
        sqlx::query(&format!(
            "SELECT {EMAIL_COLUMNS} FROM email_requests WHERE order_id = $1
             ORDER BY created_at, id"
        ))
        .bind(order_id)
        .fetch_all(&self.reads)
        .await?
        .iter()
        .map(email_request_from_row)
        .collect()
    }

    async fn latest_email_requests(
        &self,
        order_ids: &[String],
        kind: EmailKind,
    ) -> StoreResult<Vec<EmailRequest>> {
        if order_ids.is_empty() {
            return Ok(vec![]);
        }
        // One backward index seek per order, taking its newest request
        // (the newer id when two share a timestamp; the index ends with the
        // id, so the first row found is the one, with no sort). Keeping the
        // rows whose created_at equals their order's MAX read every request
        // of every order on the page and ran the MAX for each: 20.6 ms
        // against 0.4 ms for 50 orders resent 50 times each (EXPLAIN
        // ANALYZE).
        sqlx::query(&format!(
            "SELECT e.* FROM unnest($2::text[]) AS o(wanted)
             CROSS JOIN LATERAL (
                 SELECT {EMAIL_COLUMNS} FROM email_requests
                 WHERE order_id = o.wanted AND kind = $1
                 ORDER BY created_at DESC, id DESC LIMIT 1
             ) e"
        ))
        .bind(kind.as_str())
        .bind(order_ids)
        .fetch_all(&self.reads)
        .await?
        .iter()
        .map(email_request_from_row)
        .collect()
    }

    async fn set_email_request_state(
        &self,
        request_id: &str,
        state: EmailRequestState,
        error: Option<&str>,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE email_requests SET state = $1, error = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(state.as_str())
        .bind(error)
        .bind(now_ms())
        .bind(request_id)
        .execute(&self.relaxed)
        .await?;
        Ok(())
    }

    async fn forward_email_request(
        &self,
        request_id: &str,
    ) -> StoreResult<Option<(EmailRequest, Order)>> {
        // One round trip where reading the request, reading its order and
        // marking it forwarded took three. A passing state: on the relaxed
        // pool, as in set_email_request_state.
        let row = sqlx::query(&format!(
            "WITH r AS (
                 UPDATE email_requests SET state = 'forwarded', updated_at = $2
                 WHERE id = $1 AND state IN ('queued', 'forwarded')
                 RETURNING {EMAIL_COLUMNS}
             )
             SELECT {ORDER_COLUMNS}, r.* FROM r JOIN orders o ON o.id = r.order_id"
        ))
        .bind(request_id)
        .bind(now_ms())
        .fetch_optional(&self.relaxed)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let order = order_from_row(&row)?;
        let request = email_request_at(&row, ORDER_COLUMN_COUNT)?;
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
        let finish = Finish {
            request_id: request_id.to_string(),
            state,
            error: error.map(str::to_string),
            job_id,
            audit: audit.clone(),
        };
        self.finishes.write(&self.pool, finish).await
    }
}

/// Writes that go together in one statement when they arrive together:
/// those that arrive while a statement is in flight go in the next, so
/// under load a statement carries several and alone a write goes at once
/// (no timer). Each writer waits for its own commit, as when it wrote its
/// own.
///
/// Much of a statement's cost is the same whatever its rows: the check of
/// its cached plan, the locks on its tables and their indexes, a commit, a
/// round trip and a server process woken. And a statement waiting for its
/// WAL flush holds one of the pool's connections: with 16 jobs and 16
/// clients at once, the waiting writes of one kind could hold every one.
/// In alternating pairs of benchmark runs (docs/PERFORMANCE.md, *Writes
/// that arrive together, in one statement*), grouped emails' outcomes took
/// resends accepted from a median of 1,099/s to 1,433/s, grouped
/// placements issuance up by a median ratio of 1.22 with a quarter less of
/// the server's CPU per certificate, grouped email requests halved the
/// server's CPU per resend and its email, and grouped changes of orders
/// took a third off the server's CPU per certificate again. The last two
/// call a PL/pgSQL function once per write within the one statement
/// (`LATERAL`), so each write runs the same by-key statements as alone. Placements in one statement also take
/// their foreign keys' row locks on the account and the user once, where
/// concurrent ones shared them through MultiXacts.
///
/// When a statement of several fails, each write is made again alone, so
/// one that cannot be made fails by itself with its own error.
struct Grouped<T: GroupWrite> {
    queue: tokio::sync::mpsc::UnboundedSender<Waiting<T>>,
}

/// A write that [`Grouped`] can put in one statement with others of its kind.
#[async_trait]
trait GroupWrite: Sized + Send + Sync + 'static {
    type Out: Send + 'static;
    /// Writes `batch` in one statement; one answer per write, in order.
    async fn write(pool: &PgPool, batch: &[Self]) -> StoreResult<Vec<Self::Out>>;
}

struct Waiting<T: GroupWrite> {
    write: T,
    done: tokio::sync::oneshot::Sender<StoreResult<T::Out>>,
}

/// The most writes one statement carries.
const GROUP_LIMIT: usize = 64;

impl<T: GroupWrite> Grouped<T> {
    /// Starts the task that writes for `pool`.
    fn start(pool: PgPool) -> Grouped<T> {
        let (queue, waiting) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(Self::run(pool, waiting));
        Grouped { queue }
    }

    async fn write(&self, pool: &PgPool, write: T) -> StoreResult<T::Out> {
        let (done, written) = tokio::sync::oneshot::channel();
        if let Err(unsent) = self.queue.send(Waiting { write, done }) {
            // The task is gone (the runtime is shutting down): write here.
            let mut out = T::write(pool, std::slice::from_ref(&unsent.0.write)).await?;
            return out.pop().ok_or_else(no_answer);
        }
        // Dropped unanswered only if the task died with a statement in
        // flight: whether it committed is unknown, as with a lost connection.
        written.await.unwrap_or_else(|_| Err(no_answer()))
    }

    async fn run(pool: PgPool, mut waiting: tokio::sync::mpsc::UnboundedReceiver<Waiting<T>>) {
        let mut batch = Vec::with_capacity(GROUP_LIMIT);
        while waiting.recv_many(&mut batch, GROUP_LIMIT).await > 0 {
            let (writes, done): (Vec<T>, Vec<_>) =
                batch.drain(..).map(|w| (w.write, w.done)).unzip();
            match T::write(&pool, &writes).await {
                Ok(outs) if outs.len() == done.len() => {
                    for (done, out) in done.into_iter().zip(outs) {
                        let _ = done.send(Ok(out));
                    }
                }
                Ok(_) => {
                    for done in done {
                        let _ = done.send(Err(no_answer()));
                    }
                }
                Err(e) if done.len() == 1 => {
                    if let Some(done) = done.into_iter().next() {
                        let _ = done.send(Err(e));
                    }
                }
                Err(_) => {
                    for (write, done) in writes.iter().zip(done) {
                        let out = T::write(&pool, std::slice::from_ref(write)).await;
                        let _ = done.send(out.and_then(|mut o| o.pop().ok_or_else(no_answer)));
                    }
                }
            }
        }
    }
}

/// A grouped write that came back without its answer.
fn no_answer() -> StoreError {
    StoreError::Database(sqlx::Error::WorkerCrashed)
}

/// An order placed without an idempotency key, with its job and audit event
/// (`insert_order`).
struct Placement {
    order: Order,
    registrable_domains: Vec<Option<String>>,
    job: NewJob,
    audit: AuditEvent,
    instance: i32,
}

#[async_trait]
impl GroupWrite for Placement {
    /// The job's id when it was inserted.
    type Out = Option<i64>;

    async fn write(pool: &PgPool, batch: &[Placement]) -> StoreResult<Vec<Option<i64>>> {
        let rows: Vec<(&Order, &[Option<String>])> = batch
            .iter()
            .map(|p| (&p.order, p.registrable_domains.as_slice()))
            .collect();
        let tails: Vec<(&NewJob, &AuditEvent)> = batch.iter().map(|p| (&p.job, &p.audit)).collect();
        let mut c = pool.acquire().await?;
        insert_order_rows(
            &mut c,
            &rows,
            Some(OrderTails {
                rows: &tails,
                now: now_ms(),
                instance: batch.first().map_or(0, |p| p.instance),
            }),
        )
        .await
    }
}

/// An order's change (`update_order`) with what its statement needs: the
/// states it applies from (joined by commas), the leases of its jobs and
/// the time.
struct Change {
    update: OrderUpdate,
    allowed: String,
    leases: Vec<(Option<i64>, Option<i32>, i32)>,
    now: i64,
}

#[async_trait]
impl GroupWrite for Change {
    /// `None` when the change did not apply; otherwise the ids of the jobs
    /// it queued, in the order they were given.
    type Out = Option<Vec<i64>>;

    /// One call of `change_order` per change, in one statement and so in
    /// one transaction: each call sees what the calls before it wrote, so
    /// two changes of one order apply one after the other, as two
    /// statements did. The calls go in order of their order's id (changes
    /// of one order in the order they came), so two statements lock order
    /// rows in the same order. Each change's jobs are a slice of arrays
    /// shared by the batch.
    async fn write(pool: &PgPool, batch: &[Change]) -> StoreResult<Vec<Option<Vec<i64>>>> {
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by(|&a, &b| batch[a].update.order_id.cmp(&batch[b].update.order_id));
        let changes: Vec<&Change> = order.iter().map(|&i| &batch[i]).collect();
        let text = |f: &dyn Fn(&Change) -> Option<String>| -> Vec<Option<String>> {
            changes.iter().map(|c| f(c)).collect()
        };
        let number = |f: &dyn Fn(&Change) -> Option<i64>| -> Vec<Option<i64>> {
            changes.iter().map(|c| f(c)).collect()
        };
        let (mut job_from, mut job_to) = (Vec::new(), Vec::new());
        let mut jobs = JobColumns::default();
        for c in &changes {
            // 1-based and inclusive, as PostgreSQL slices arrays.
            job_from.push(jobs.key.len() as i32 + 1);
            for (job, &lease) in c.update.jobs.iter().zip(&c.leases) {
                jobs.push(job, lease);
            }
            job_to.push(jobs.key.len() as i32);
        }
        let email = |f: &dyn Fn(&EmailRequest) -> Option<String>| {
            text(&|c| c.update.new_email.as_ref().and_then(f))
        };
        let email_audit = |f: &dyn Fn(&AuditEvent) -> Option<String>| {
            text(&|c| c.update.email_audit.as_ref().and_then(f))
        };
        let cert = |f: &dyn Fn(&IssuedMetadata) -> Option<String>| {
            text(&|c| c.update.certificate.as_ref().and_then(f))
        };
        let rows = sqlx::query(
            "SELECT r.applied, r.job_keys, r.job_ids
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                     $6::text[], $7::int8[], $8::int8[], $9::text[], $10::text[], $11::int8[],
                     $12::text[], $13::text[], $14::text[], $15::text[], $16::text[],
                     $17::text[], $18::text[], $19::text[], $20::int8[], $21::int8[],
                     $22::int4[], $23::int4[], $24::int8[],
                     $25::text[], $26::text[], $27::text[], $28::text[], $29::text[],
                     $30::text[], $31::text[], $32::text[], $33::text[], $34::text[])
                 WITH ORDINALITY AS a(order_id, allowed, to_state, ca_reference,
                     failure_reason, cert_serial, cert_not_before, cert_not_after,
                     cert_fingerprint, cert_issuer, now, email_id, email_kind, email_trigger,
                     email_recipient, email_state, email_error, email_requested_by,
                     email_message_id, email_created_at, email_updated_at, job_from, job_to,
                     done_job, audit_account, audit_actor, audit_action, audit_subject,
                     audit_detail, email_audit_account, email_audit_actor,
                     email_audit_action, email_audit_subject, email_audit_detail, n)
             CROSS JOIN LATERAL change_order(a.order_id, string_to_array(a.allowed, ','),
                 a.to_state, a.ca_reference, a.failure_reason, a.cert_serial,
                 a.cert_not_before, a.cert_not_after, a.cert_fingerprint, a.cert_issuer, a.now,
                 a.email_id, a.email_kind, a.email_trigger, a.email_recipient, a.email_state,
                 a.email_error, a.email_requested_by, a.email_message_id, a.email_created_at,
                 a.email_updated_at,
                 ($35::text[])[a.job_from:a.job_to], ($36::text[])[a.job_from:a.job_to],
                 ($37::text[])[a.job_from:a.job_to], ($38::int4[])[a.job_from:a.job_to],
                 ($39::int8[])[a.job_from:a.job_to], ($40::int4[])[a.job_from:a.job_to],
                 a.done_job, a.audit_account, a.audit_actor, a.audit_action, a.audit_subject,
                 a.audit_detail, a.email_audit_account, a.email_audit_actor,
                 a.email_audit_action, a.email_audit_subject, a.email_audit_detail) r
             ORDER BY a.n",
        )
        .bind(text(&|c| Some(c.update.order_id.clone())))
        .bind(text(&|c| Some(c.allowed.clone())))
        .bind(text(&|c| Some(c.update.to.as_str().to_string())))
        .bind(text(&|c| c.update.ca_reference.clone()))
        .bind(text(&|c| c.update.failure_reason.clone()))
        .bind(cert(&|m| Some(m.serial.clone())))
        .bind(number(&|c| {
            c.update.certificate.as_ref().map(|m| to_ms(m.not_before))
        }))
        .bind(number(&|c| {
            c.update.certificate.as_ref().map(|m| to_ms(m.not_after))
        }))
        .bind(cert(&|m| Some(m.sha256_fingerprint.clone())))
        .bind(cert(&|m| Some(m.issuer.clone())))
        .bind(number(&|c| Some(c.now)))
        .bind(email(&|r| Some(r.id.clone())))
        .bind(email(&|r| Some(r.kind.as_str().to_string())))
        .bind(email(&|r| Some(r.trigger.as_str().to_string())))
        .bind(email(&|r| Some(r.recipient.as_str().to_string())))
        .bind(email(&|r| Some(r.state.as_str().to_string())))
        .bind(email(&|r| r.error.clone()))
        .bind(email(&|r| r.requested_by.clone()))
        .bind(email(&|r| Some(r.message_id.clone())))
        .bind(number(&|c| {
            c.update.new_email.as_ref().map(|r| to_ms(r.created_at))
        }))
        .bind(number(&|c| {
            c.update.new_email.as_ref().map(|r| to_ms(r.updated_at))
        }))
        .bind(job_from)
        .bind(job_to)
        .bind(number(&|c| c.update.done_job))
        .bind(text(&|c| c.update.audit.account_id.clone()))
        .bind(text(&|c| Some(c.update.audit.actor.clone())))
        .bind(text(&|c| Some(c.update.audit.action.clone())))
        .bind(text(&|c| Some(c.update.audit.subject.clone())))
        .bind(text(&|c| Some(c.update.audit.detail.to_string())))
        .bind(email_audit(&|e| e.account_id.clone()))
        .bind(email_audit(&|e| Some(e.actor.clone())))
        .bind(email_audit(&|e| Some(e.action.clone())))
        .bind(email_audit(&|e| Some(e.subject.clone())))
        .bind(email_audit(&|e| Some(e.detail.to_string())))
        .bind(jobs.key)
        .bind(jobs.kind)
        .bind(jobs.payload)
        .bind(jobs.attempts)
        .bind(jobs.locked_until)
        .bind(jobs.locked_by)
        .fetch_all(pool)
        .await?;
        if rows.len() != batch.len() {
            return Err(no_answer());
        }
        // Back in the order the changes were given.
        let mut out: Vec<Option<Option<Vec<i64>>>> = (0..batch.len()).map(|_| None).collect();
        for ((row, &i), c) in rows.iter().zip(&order).zip(&changes) {
            let applied: bool = row.try_get(0)?;
            let keys: Vec<String> = row.try_get(1)?;
            let ids: Vec<i64> = row.try_get(2)?;
            // No such order, or it left `from`: nothing changed, and the
            // done job stays for its worker to complete or retry.
            out[i] = Some(applied.then(|| {
                // The ids in the order the jobs were given.
                c.update
                    .jobs
                    .iter()
                    .filter_map(|job| keys.iter().position(|k| *k == job.key).map(|i| ids[i]))
                    .collect()
            }));
        }
        out.into_iter().map(|r| r.ok_or_else(no_answer)).collect()
    }
}

/// A request for an order's email (`create_email_request`): the values
/// `request_email` (migration 0003) takes, in its order.
struct RequestEmail {
    request: EmailRequest,
    required_state: &'static str,
    key_scope: Option<&'static str>,
    key: Option<String>,
    limit_max: Option<i32>,
    limit_since: Option<i64>,
    job: NewJob,
    now: i64,
    attempts: i32,
    locked_until: Option<i64>,
    locked_by: Option<i32>,
    audit: AuditEvent,
}

/// What `request_email` answered for one request.
struct RequestEmailRow {
    outcome: String,
    found_id: Option<String>,
    oldest: Option<i64>,
    job_id: Option<i64>,
}

#[async_trait]
impl GroupWrite for RequestEmail {
    type Out = RequestEmailRow;

    /// One call of `request_email` per request, in one statement and so in
    /// one transaction: each call's statements take their own snapshots and
    /// see what the calls before it wrote, so two requests for one order in
    /// the same statement line up as they do in two transactions (the
    /// second counts the first against the rate limit, and finds its
    /// idempotency key). The calls go in order of their order's id, so the
    /// row locks of two statements (of two desks) are taken in the same
    /// order and cannot wait for each other in a cycle.
    async fn write(pool: &PgPool, batch: &[RequestEmail]) -> StoreResult<Vec<RequestEmailRow>> {
        let mut order: Vec<usize> = (0..batch.len()).collect();
        order.sort_by(|&a, &b| batch[a].request.order_id.cmp(&batch[b].request.order_id));
        // Text columns borrow from the batch: nothing is copied but into
        // the statement's buffer.
        let column = |f: &dyn Fn(&RequestEmail) -> Option<&str>| -> Vec<Option<&str>> {
            order.iter().map(|&i| f(&batch[i])).collect()
        };
        let number = |f: &dyn Fn(&RequestEmail) -> Option<i64>| -> Vec<Option<i64>> {
            order.iter().map(|&i| f(&batch[i])).collect()
        };
        let small = |f: &dyn Fn(&RequestEmail) -> Option<i32>| -> Vec<Option<i32>> {
            order.iter().map(|&i| f(&batch[i])).collect()
        };
        let rows = sqlx::query(
            "SELECT r.outcome, r.found_id, r.oldest, r.new_job_id
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                     $6::text[], $7::text[], $8::text[], $9::text[], $10::int8[], $11::int8[],
                     $12::text[], $13::text[], $14::text[], $15::int4[], $16::int8[],
                     $17::text[], $18::text[], $19::text[], $20::int8[], $21::int4[],
                     $22::int8[], $23::int4[], $24::text[], $25::text[], $26::text[],
                     $27::text[], $28::text[])
                 WITH ORDINALITY AS a(id, order_id, kind, trigger, recipient, state, error,
                     requested_by, message_id, created_at, updated_at, required_state,
                     key_scope, key, limit_max, limit_since, job_key, job_kind, job_payload,
                     now, attempts, locked_until, locked_by, audit_account, audit_actor,
                     audit_action, audit_subject, audit_detail, n)
             CROSS JOIN LATERAL request_email(a.id, a.order_id, a.kind, a.trigger,
                 a.recipient, a.state, a.error, a.requested_by, a.message_id, a.created_at,
                 a.updated_at, a.required_state, a.key_scope, a.key, a.limit_max,
                 a.limit_since, a.job_key, a.job_kind, a.job_payload, a.now, a.attempts,
                 a.locked_until, a.locked_by, a.audit_account, a.audit_actor, a.audit_action,
                 a.audit_subject, a.audit_detail) r
             ORDER BY a.n",
        )
        .bind(column(&|r| Some(&r.request.id)))
        .bind(column(&|r| Some(&r.request.order_id)))
        .bind(column(&|r| Some(r.request.kind.as_str())))
        .bind(column(&|r| Some(r.request.trigger.as_str())))
        .bind(column(&|r| Some(r.request.recipient.as_str())))
        .bind(column(&|r| Some(r.request.state.as_str())))
        .bind(column(&|r| r.request.error.as_deref()))
        .bind(column(&|r| r.request.requested_by.as_deref()))
        .bind(column(&|r| Some(&r.request.message_id)))
        .bind(number(&|r| Some(to_ms(r.request.created_at))))
        .bind(number(&|r| Some(to_ms(r.request.updated_at))))
        .bind(column(&|r| Some(r.required_state)))
        .bind(column(&|r| r.key_scope))
        .bind(column(&|r| r.key.as_deref()))
        .bind(small(&|r| r.limit_max))
        .bind(number(&|r| r.limit_since))
        .bind(column(&|r| Some(&r.job.key)))
        .bind(column(&|r| Some(r.job.kind.as_str())))
        .bind(column(&|r| Some(&r.job.target)))
        .bind(number(&|r| Some(r.now)))
        .bind(small(&|r| Some(r.attempts)))
        .bind(number(&|r| r.locked_until))
        .bind(small(&|r| r.locked_by))
        .bind(column(&|r| r.audit.account_id.as_deref()))
        .bind(column(&|r| Some(&r.audit.actor)))
        .bind(column(&|r| Some(&r.audit.action)))
        .bind(column(&|r| Some(&r.audit.subject)))
        .bind(
            order
                .iter()
                .map(|&i| batch[i].audit.detail.to_string())
                .collect::<Vec<String>>(),
        )
        .fetch_all(pool)
        .await?;
        if rows.len() != batch.len() {
            return Err(no_answer());
        }
        // Back in the order the requests were given.
        let mut out: Vec<Option<RequestEmailRow>> = (0..batch.len()).map(|_| None).collect();
        for (row, &i) in rows.iter().zip(&order) {
            out[i] = Some(RequestEmailRow {
                outcome: row.try_get(0)?,
                found_id: row.try_get(1)?,
                oldest: row.try_get(2)?,
                job_id: row.try_get(3)?,
            });
        }
        out.into_iter().map(|r| r.ok_or_else(no_answer)).collect()
    }
}

/// An email's outcome (`finish_email_request`): the final state of its
/// request, the job to remove and the audit event.
struct Finish {
    request_id: String,
    state: EmailRequestState,
    error: Option<String>,
    job_id: i64,
    audit: AuditEvent,
}

#[async_trait]
impl GroupWrite for Finish {
    type Out = ();

    async fn write(pool: &PgPool, batch: &[Finish]) -> StoreResult<Vec<()>> {
        write_finishes(pool, batch).await?;
        Ok(vec![(); batch.len()])
    }
}

/// The outcomes in one statement: atomic without BEGIN and COMMIT. Each
/// request's state and its job's removal commit together, as the trait
/// requires; the audit events go in the order given.
async fn write_finishes(pool: &PgPool, batch: &[Finish]) -> StoreResult<()> {
    let mut request = Vec::with_capacity(batch.len());
    let mut state = Vec::with_capacity(batch.len());
    let mut error = Vec::with_capacity(batch.len());
    let mut job = Vec::with_capacity(batch.len());
    let mut account = Vec::with_capacity(batch.len());
    let mut actor = Vec::with_capacity(batch.len());
    let mut action = Vec::with_capacity(batch.len());
    let mut subject = Vec::with_capacity(batch.len());
    let mut detail = Vec::with_capacity(batch.len());
    for f in batch {
        request.push(f.request_id.as_str());
        state.push(f.state.as_str());
        error.push(f.error.as_deref());
        job.push(f.job_id);
        account.push(f.audit.account_id.as_deref());
        actor.push(f.audit.actor.as_str());
        action.push(f.audit.action.as_str());
        subject.push(f.audit.subject.as_str());
        detail.push(f.audit.detail.to_string());
    }
    sqlx::query(
        "WITH finished AS (
             UPDATE email_requests e SET state = f.state, error = f.error, updated_at = $4
             FROM UNNEST($1::text[], $2::text[], $3::text[]) AS f(id, state, error)
             WHERE e.id = f.id
         ), done AS (
             DELETE FROM jobs WHERE id = ANY($5::bigint[])
         )
         INSERT INTO audit_events (account_id, actor, action, subject, detail, created_at)
         SELECT a.account_id, a.actor, a.action, a.subject, a.detail, $4
         FROM UNNEST($6::text[], $7::text[], $8::text[], $9::text[], $10::text[])
             WITH ORDINALITY AS a(account_id, actor, action, subject, detail, n)
         ORDER BY a.n",
    )
    .bind(request)
    .bind(state)
    .bind(error)
    .bind(now_ms())
    .bind(job)
    .bind(account)
    .bind(actor)
    .bind(action)
    .bind(subject)
    .bind(detail)
    .execute(pool)
    .await?;
    Ok(())
}

/// The earliest job a worker could claim now or later, leased ones left out
/// (a lease runs for minutes; idle workers look again within a second): the
/// first entry of the free jobs' index, and the few leases run out. Neither
/// scans the queue, however many jobs wait to be retried or sit leased.
const NEXT_DUE: &str = "SELECT LEAST(
       (SELECT MIN(run_at) FROM jobs WHERE locked_until IS NULL),
       (SELECT MIN(run_at) FROM jobs WHERE locked_until < $1))";

/// The earlier, in (run_at, id) order, of two candidates: the first due
/// free job and the job whose lease ran out first, each read from its own
/// index (`jobs_free`, `jobs_leased`): the jobs leased and still running are never walked, and
/// with the handoff (`worker::Handoff`) a thousand may be. SKIP LOCKED passes
/// over rows another claimer has locked, so claimers of several desks
/// neither wait for each other nor get the same job; each side locks its
/// candidate (FOR UPDATE cannot apply to a UNION), and the one not taken is
/// let go at the end of the statement's transaction.
///
/// The leases that ran out are taken in the order they ran out, the order
/// of their index, not in (run_at, id): the writing pools keep one generic
/// plan per statement, and without a value for "ran out before now" the
/// planner expects a third of the table to match, which (run_at, id) order
/// could only sort after a scan of the whole table. It did so on every
/// claim: in a benchmark run 14 million rows of `jobs` were read for 12,000
/// claims. Read in the index's order, the first entry is the candidate.
const CLAIM: &str = "WITH free AS (
         SELECT id, run_at FROM jobs WHERE locked_until IS NULL AND run_at <= $2
         ORDER BY run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED),
     lost AS (
         SELECT id, run_at FROM jobs WHERE locked_until < $2 AND run_at <= $2
         ORDER BY locked_until LIMIT 1 FOR UPDATE SKIP LOCKED)
     UPDATE jobs SET locked_until = $1, locked_by = $3, attempts = attempts + 1
     WHERE id = (SELECT id FROM (SELECT * FROM free UNION ALL SELECT * FROM lost) c
                 ORDER BY run_at, id LIMIT 1)
     RETURNING id, kind, payload, attempts";

#[async_trait]
impl JobQueue for PgStore {
    async fn enqueue(&self, job: &NewJob) -> StoreResult<()> {
        let mut c = self.pool.acquire().await?;
        insert_job(&mut c, job, now_ms(), self.instance).await?;
        Ok(())
    }

    /// A due job that no other transaction is claiming right now: the
    /// first free one in (run_at, id) order, or one whose lease ran out if
    /// that came earlier (see [`CLAIM`]). A job whose lease ran out is due
    /// again.
    async fn claim(&self, lease_ms: i64) -> StoreResult<Option<Job>> {
        let now = now_ms();
        sqlx::query(CLAIM)
            .bind(now + lease_ms)
            .bind(now)
            .bind(self.instance)
            .fetch_optional(&self.relaxed)
            .await?
            .as_ref()
            .map(job_from_row)
            .transpose()
    }

    async fn complete(&self, job_id: i64) -> StoreResult<()> {
        let mut c = self.pool.acquire().await?;
        delete_job(&mut c, job_id).await
    }

    async fn retry(&self, job_id: i64, run_at: OffsetDateTime, error: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE jobs SET run_at = $1, locked_until = NULL, locked_by = NULL, last_error = $2
             WHERE id = $3",
        )
        .bind(to_ms(run_at))
        .bind(error)
        .bind(job_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn next_due_in_ms(&self) -> StoreResult<Option<i64>> {
        let now = now_ms();
        let next: Option<i64> = sqlx::query_scalar(NEXT_DUE)
            .bind(now)
            .fetch_one(&self.reads)
            .await?;
        Ok(next.map(|t| (t - now_ms()).max(0)))
    }

    /// Frees the leases of desks that are gone: those whose presence lock
    /// nobody holds any more. Other desks sharing the queue keep theirs (a
    /// live desk may be working on the job; freeing it would run the job
    /// twice at once).
    async fn release_all_leases(&self) -> StoreResult<u64> {
        let freed = sqlx::query(
            "UPDATE jobs SET locked_until = NULL, locked_by = NULL
             WHERE locked_until IS NOT NULL
               AND NOT EXISTS (
                   SELECT 1 FROM pg_locks l
                   WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
                     AND l.database = (SELECT oid FROM pg_database
                                       WHERE datname = current_database())
                     AND l.classid::bigint = $1
                     AND l.objid::bigint = jobs.locked_by)",
        )
        .bind(PRESENCE_LOCK as i64)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(freed)
    }

    async fn release_leases(&self, job_ids: &[i64]) -> StoreResult<u64> {
        let freed = sqlx::query(
            "UPDATE jobs SET locked_until = NULL, locked_by = NULL,
                             attempts = GREATEST(attempts - 1, 0)
             WHERE id = ANY($1) AND locked_by = $2",
        )
        .bind(job_ids)
        .bind(self.instance)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(freed)
    }
}

#[async_trait]
impl SessionStore for PgStore {
    async fn create_session(
        &self,
        token_hash: &[u8],
        user_id: &str,
        csrf_token: &str,
        expires_at: OffsetDateTime,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        // Sign-ins are rare: a good moment to drop expired sessions.
        sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
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
        sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, s.csrf_token, s.expires_at
             FROM sessions s JOIN users u ON u.id = s.user_id
             WHERE s.token_hash = $1 AND s.expires_at > $2"
        ))
        .bind(token_hash)
        .bind(now_ms())
        .fetch_optional(&self.reads)
        .await?
        .as_ref()
        .map(|r| {
            Ok(Session {
                user: user_from_row(r)?,
                csrf_token: r.try_get(4)?,
                expires_at: from_ms(r.try_get(5)?),
            })
        })
        .transpose()
    }

    async fn delete_session(&self, token_hash: &[u8]) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl AuditLog for PgStore {
    async fn recent_audit_events(
        &self,
        account_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<(String, String, String)>> {
        // The limit is written into the statement, as in list_orders.
        let query = format!(
            "SELECT actor, action, subject FROM audit_events WHERE account_id = $1
             ORDER BY id DESC LIMIT {limit}"
        );
        Ok(sqlx::query_as(&query)
            .bind(account_id)
            .fetch_all(&self.reads)
            .await?)
    }
}

/// In the order `certificate_from_row` reads them.
const CERT_COLUMNS: &str =
    "id, account_id, common_name, names, issuer, serial, not_before, not_after,
    fingerprint, key_type, certificate_pem, chain_pem, csr_pem, notes, warnings, expired_on_import,
    created_by, created_at, updated_at";

fn certificate_from_row(r: &PgRow) -> StoreResult<StoredCertificate> {
    let names: String = r.try_get(3)?;
    let warnings: String = r.try_get(14)?;
    Ok(StoredCertificate {
        id: r.try_get(0)?,
        account_id: r.try_get(1)?,
        common_name: r.try_get(2)?,
        names: serde_json::from_str(&names).map_err(|_| corrupt("names", &names))?,
        issuer: r.try_get(4)?,
        serial: r.try_get(5)?,
        not_before: from_ms(r.try_get(6)?),
        not_after: from_ms(r.try_get(7)?),
        fingerprint: r.try_get(8)?,
        key_type: r.try_get(9)?,
        certificate_pem: r.try_get(10)?,
        chain_pem: r.try_get(11)?,
        csr_pem: r.try_get(12)?,
        notes: r.try_get(13)?,
        warnings: serde_json::from_str(&warnings).map_err(|_| corrupt("warnings", &warnings))?,
        expired_on_import: r.try_get(15)?,
        created_by: r.try_get(16)?,
        created_at: from_ms(r.try_get(17)?),
        updated_at: from_ms(r.try_get(18)?),
    })
}

#[async_trait]
impl CertificateStore for PgStore {
    async fn insert_certificate(
        &self,
        c: &StoredCertificate,
        key: &SealedKey,
        audit: &AuditEvent,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO certificates (id, account_id, common_name, names, issuer, serial,
                not_before, not_after, fingerprint, key_type, certificate_pem, chain_pem,
                csr_pem, key_ciphertext, wrapped_key, notes, warnings, expired_on_import,
                created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                $18, $19, $20, $21)",
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
        .bind(c.expired_on_import)
        .bind(&c.created_by)
        .bind(to_ms(c.created_at))
        .bind(to_ms(c.updated_at))
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit, now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_certificate(
        &self,
        account_id: &str,
        id: &str,
    ) -> StoreResult<Option<StoredCertificate>> {
        sqlx::query(&format!(
            "SELECT {CERT_COLUMNS} FROM certificates WHERE id = $1 AND account_id = $2"
        ))
        .bind(id)
        .bind(account_id)
        .fetch_optional(&self.reads)
        .await?
        .as_ref()
        .map(certificate_from_row)
        .transpose()
    }

    async fn certificate_key(&self, account_id: &str, id: &str) -> StoreResult<Option<SealedKey>> {
        let key: Option<(Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "SELECT key_ciphertext, wrapped_key FROM certificates WHERE id = $1 AND account_id = $2",
        )
        .bind(id)
        .bind(account_id)
        .fetch_optional(&self.reads)
        .await?;
        Ok(key.map(|(ciphertext, wrapped_key)| SealedKey {
            ciphertext,
            wrapped_key,
        }))
    }

    async fn list_certificates(
        &self,
        account_id: &str,
        filter: &CertificateFilter,
        after: Option<&Cursor>,
        limit: u32,
    ) -> StoreResult<Vec<StoredCertificate>> {
        let mut q = Sql::default();
        let account = q.arg(Arg::Text(account_id.to_string()));
        q.push(&format!(
            "SELECT {CERT_COLUMNS} FROM certificates WHERE account_id = {account}"
        ));
        if let Some(name) = &filter.name {
            let escaped = name
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            let pattern = q.arg(Arg::Text(format!("%{escaped}%")));
            q.push(&format!(
                " AND (names ILIKE {pattern} ESCAPE '\\' OR common_name ILIKE {pattern} ESCAPE '\\')"
            ));
        }
        if let Some(t) = filter.expiring_before {
            let t = q.arg(Arg::Int(to_ms(t)));
            q.push(&format!(" AND not_after < {t}"));
        }
        if let Some(c) = after {
            let at = q.arg(Arg::Int(c.created_at_ms));
            let after_id = q.arg(Arg::Text(c.id.clone()));
            q.push(&format!(
                " AND (created_at < {at} OR (created_at = {at} AND id < {after_id}))"
            ));
        }
        // The limit is written into the statement, as in list_orders.
        q.push(&format!(" ORDER BY created_at DESC, id DESC LIMIT {limit}"));
        q.query()
            .fetch_all(&self.reads)
            .await?
            .iter()
            .map(certificate_from_row)
            .collect()
    }

    async fn update_certificate(
        &self,
        c: &StoredCertificate,
        key: Option<&SealedKey>,
        audit: &AuditEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE certificates SET common_name = $1, names = $2, issuer = $3, serial = $4,
                not_before = $5, not_after = $6, fingerprint = $7, key_type = $8,
                certificate_pem = $9, chain_pem = $10, csr_pem = $11, notes = $12, warnings = $13,
                expired_on_import = $14, updated_at = $15
             WHERE id = $16 AND account_id = $17",
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
        .bind(c.expired_on_import)
        .bind(now)
        .bind(&c.id)
        .bind(&c.account_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if done != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        if let Some(k) = key {
            sqlx::query(
                "UPDATE certificates SET key_ciphertext = $1, wrapped_key = $2 WHERE id = $3",
            )
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
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM certificates WHERE id = $1 AND account_id = $2")
            .bind(id)
            .bind(account_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if done != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_audit(&mut tx, audit, now_ms()).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn record_audit(&self, audit: &AuditEvent) -> StoreResult<()> {
        let mut c = self.pool.acquire().await?;
        insert_audit(&mut c, audit, now_ms()).await
    }

    async fn wrapped_keys(&self) -> StoreResult<Vec<(String, Vec<u8>)>> {
        Ok(sqlx::query_as("SELECT id, wrapped_key FROM certificates")
            .fetch_all(&self.reads)
            .await?)
    }

    async fn rewrap_key(&self, id: &str, old: &[u8], new: &[u8]) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE certificates SET wrapped_key = $1 WHERE id = $2 AND wrapped_key = $3",
        )
        .bind(new)
        .bind(id)
        .bind(old)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(done == 1)
    }
}

/// Against the PostgreSQL server named by CERTDESK_TEST_POSTGRES (scripts/test
/// starts one); each test in a database of its own, dropped at its end.
#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use sqlx::{Connection, Executor};

    use super::*;

    /// A fresh database on the test server with the store connected to it.
    /// Dropped WITH (FORCE) when this goes, after a failed assertion too.
    struct TestDb {
        store: Arc<PgStore>,
        server: String,
        name: String,
    }

    impl TestDb {
        async fn new() -> TestDb {
            let server = std::env::var("CERTDESK_TEST_POSTGRES")
                .ok()
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| {
                    panic!("set CERTDESK_TEST_POSTGRES=postgres://… (scripts/test starts a server)")
                });
            let name = format!("certdesk_unit_{}", uuid::Uuid::new_v4().simple());
            let mut admin = PgConnection::connect(&server)
                .await
                .unwrap_or_else(|e| panic!("cannot connect to CERTDESK_TEST_POSTGRES: {e}"));
            admin
                .execute(format!("CREATE DATABASE {name}").as_str())
                .await
                .unwrap();
            admin.close().await.unwrap();
            let mut url = url::Url::parse(&server).expect("CERTDESK_TEST_POSTGRES is a URL");
            url.set_path(&name);
            let store = PgStore::connect(url.as_str()).await.unwrap();
            TestDb {
                store: Arc::new(store),
                server,
                name,
            }
        }

        fn pool(&self) -> &PgPool {
            &self.store.pool
        }

        fn url(&self) -> String {
            let mut url = url::Url::parse(&self.server).unwrap();
            url.set_path(&self.name);
            url.to_string()
        }

        /// As if every lease had run out (PgStore never frees them itself).
        async fn expire_leases(&self) {
            sqlx::query("UPDATE jobs SET locked_until = NULL")
                .execute(self.pool())
                .await
                .unwrap();
        }

        async fn count(&self, sql: &str) -> i64 {
            sqlx::query_scalar(sql)
                .fetch_one(self.pool())
                .await
                .unwrap()
        }
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            let (server, name) = (self.server.clone(), self.name.clone());
            // The test's runtime cannot wait on a future from inside Drop: a
            // thread with a runtime of its own does the dropping.
            let dropped = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime")
                    .block_on(async {
                        let mut admin = PgConnection::connect(&server).await?;
                        admin
                            .execute(
                                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                            )
                            .await?;
                        admin.close().await
                    })
            })
            .join();
            if !matches!(dropped, Ok(Ok(()))) {
                eprintln!("could not drop the test database {}", self.name);
            }
        }
    }

    async fn account_with_user(store: &PgStore, name: &str) -> (Account, User) {
        let account = store.create_account(name).await.unwrap();
        let admin = EmailAddress::parse(&format!("admin@{name}.example")).unwrap();
        let user = store
            .create_user(&account.id, &admin, Role::Admin, None)
            .await
            .unwrap();
        (account, user)
    }

    fn new_order(user: &User, names: &[&str], created_at_ms: i64, state: OrderState) -> Order {
        let at = from_ms(created_at_ms);
        Order {
            id: new_id(),
            account_id: user.account_id.clone(),
            state,
            ca: "builtin".into(),
            ca_reference: None,
            common_name: names[0].into(),
            names: names.iter().map(|n| n.to_string()).collect(),
            key_type: "ecdsa-p256".into(),
            days: 90,
            admin_email: user.email.clone(),
            admin_name: "Admin".into(),
            approver_email: None,
            language: "en".into(),
            failure_reason: None,
            certificate: None,
            created_by: user.id.clone(),
            created_at: at,
            updated_at: at,
            csr_pem: "-----BEGIN CERTIFICATE REQUEST-----".into(),
        }
    }

    /// The registrable domain of each name, as the service computes it.
    fn registrable(order: &Order) -> Vec<Option<String>> {
        order
            .names
            .iter()
            .map(|n| DnsName::parse(n).ok().and_then(|d| d.registrable_domain()))
            .collect()
    }

    fn audit(account_id: &str, action: &str, subject: &str) -> AuditEvent {
        AuditEvent {
            account_id: Some(account_id.to_string()),
            actor: "test".into(),
            action: action.into(),
            subject: subject.into(),
            detail: serde_json::json!({"n": 1}),
        }
    }

    /// Places `order` as the service does, without an idempotency key.
    async fn place(store: &PgStore, order: &Order) -> StoreResult<InsertOutcome<String>> {
        store
            .insert_order(
                order,
                &registrable(order),
                &NewJob::submit_order(&order.id),
                &audit(&order.account_id, "order.created", &order.id),
                None,
            )
            .await
    }

    async fn insert(store: &PgStore, order: &Order) {
        let outcome = place(store, order).await.unwrap();
        assert!(matches!(outcome, InsertOutcome::Created(ref id, Some(_)) if *id == order.id));
    }

    fn resend(order: &Order) -> EmailRequest {
        let id = new_id();
        let now = OffsetDateTime::now_utc();
        EmailRequest {
            message_id: format!("<{id}@desk.test>"),
            id,
            order_id: order.id.clone(),
            kind: EmailKind::Fulfillment,
            trigger: EmailTrigger::Resend,
            recipient: order.admin_email.clone(),
            state: EmailRequestState::Queued,
            error: None,
            requested_by: Some(order.created_by.clone()),
            created_at: now,
            updated_at: now,
        }
    }

    async fn all_pages(
        store: &PgStore,
        account_id: &str,
        filter: &OrderFilter,
        limit: u32,
    ) -> Vec<String> {
        let mut ids = Vec::new();
        let mut after: Option<Cursor> = None;
        loop {
            let page = store
                .list_orders(account_id, filter, after.as_ref(), limit)
                .await
                .unwrap();
            assert!(page.len() <= limit as usize);
            let Some(last) = page.last() else { break };
            after = Some(Cursor {
                created_at_ms: to_ms(last.created_at),
                id: last.id.clone(),
            });
            ids.extend(page.iter().map(|o| o.id.clone()));
        }
        ids
    }

    #[tokio::test]
    async fn orders_come_in_keyset_pages_scoped_by_account_and_filtered_by_domain_and_state() {
        let db = TestDb::new().await;
        let store = &db.store;
        let (a, alice) = account_with_user(store, "alpha").await;
        let (b, bob) = account_with_user(store, "beta").await;
        // Two orders created in the same millisecond: the id breaks the tie.
        let times = [1_000, 2_000, 2_000, 3_000, 4_000, 5_000];
        let mut orders = Vec::new();
        for (i, t) in times.iter().enumerate() {
            let names: &[&str] = if i % 2 == 0 {
                &["example.com", "www.example.com"]
            } else {
                &["shop.other.org"]
            };
            let o = new_order(&alice, names, 1_700_000_000_000 + t, OrderState::Submitted);
            insert(store, &o).await;
            orders.push(o);
        }
        let theirs = new_order(
            &bob,
            &["example.com"],
            1_700_000_009_000,
            OrderState::Submitted,
        );
        insert(store, &theirs).await;

        let mut newest_first: Vec<&Order> = orders.iter().collect();
        newest_first.sort_by(|x, y| (y.created_at, &y.id).cmp(&(x.created_at, &x.id)));
        let expected: Vec<String> = newest_first.iter().map(|o| o.id.clone()).collect();

        let all = OrderFilter::default();
        assert_eq!(all_pages(store, &a.id, &all, 2).await, expected);
        assert_eq!(all_pages(store, &a.id, &all, 100).await, expected);
        let oldest = OrderFilter {
            oldest_first: true,
            ..OrderFilter::default()
        };
        let mut oldest_expected = expected.clone();
        oldest_expected.reverse();
        assert_eq!(all_pages(store, &a.id, &oldest, 2).await, oldest_expected);

        let even: Vec<String> = newest_first
            .iter()
            .filter(|o| o.names.len() == 2)
            .map(|o| o.id.clone())
            .collect();
        let odd: Vec<String> = newest_first
            .iter()
            .filter(|o| o.names.len() == 1)
            .map(|o| o.id.clone())
            .collect();
        let domain = |d: &str| OrderFilter {
            domain: Some(d.into()),
            ..OrderFilter::default()
        };
        // A registrable domain (order_domains: each order once) and a name.
        assert_eq!(
            all_pages(store, &a.id, &domain("example.com"), 1).await,
            even
        );
        assert_eq!(
            all_pages(store, &a.id, &domain("www.example.com"), 2).await,
            even
        );
        assert_eq!(all_pages(store, &a.id, &domain("other.org"), 2).await, odd);
        assert_eq!(
            all_pages(store, &a.id, &domain("shop.other.org"), 5).await,
            odd
        );
        assert!(all_pages(store, &a.id, &domain("nowhere.net"), 5)
            .await
            .is_empty());
        assert_eq!(
            all_pages(store, &b.id, &domain("example.com"), 5).await,
            vec![theirs.id.clone()]
        );

        // State filter, alone and with a domain.
        let moved = &newest_first[1];
        let update = OrderUpdate {
            order_id: moved.id.clone(),
            from: vec![OrderState::Submitted],
            to: OrderState::PendingApproval,
            ca_reference: Some("ca-1".into()),
            failure_reason: None,
            certificate: None,
            new_email: None,
            jobs: vec![],
            done_job: None,
            email_audit: None,
            audit: audit(&a.id, "order.pending", &moved.id),
        };
        assert!(store.update_order(&update).await.unwrap().is_some());
        let pending = OrderFilter {
            state: Some(OrderState::PendingApproval),
            ..OrderFilter::default()
        };
        assert_eq!(
            all_pages(store, &a.id, &pending, 1).await,
            vec![moved.id.clone()]
        );
        let pending_here = OrderFilter {
            domain: Some(moved.names[0].clone()),
            ..pending.clone()
        };
        assert_eq!(
            all_pages(store, &a.id, &pending_here, 1).await,
            vec![moved.id.clone()]
        );
        assert!(all_pages(store, &b.id, &pending, 1).await.is_empty());

        // Scoped by account: another account's order is not found.
        let mine = &orders[0];
        assert!(store.get_order(&b.id, &mine.id).await.unwrap().is_none());
        let got = store.get_order(&a.id, &mine.id).await.unwrap().unwrap();
        assert_eq!(got.names, mine.names);
        assert_eq!(got.csr_pem, mine.csr_pem);
        assert_eq!(got.created_at, mine.created_at);
        assert_eq!(got.admin_email, mine.admin_email);
        assert_eq!(got.days, 90);
        let listed = store
            .list_orders(&a.id, &all, None, 100)
            .await
            .unwrap()
            .into_iter()
            .find(|o| o.id == mine.id)
            .unwrap();
        assert_eq!(listed.csr_pem, "", "lists leave the CSR out");
        assert!(store
            .get_order_for_system(&theirs.id)
            .await
            .unwrap()
            .is_some());

        let mut pending_ids = store.pending_order_ids().await.unwrap();
        pending_ids.sort();
        let mut every: Vec<String> = orders.iter().map(|o| o.id.clone()).collect();
        every.push(theirs.id.clone());
        every.sort();
        assert_eq!(pending_ids, every);
        // Each insert wrote its job and its audit event.
        assert_eq!(db.count("SELECT COUNT(*) FROM jobs").await, 7);
        let events = store.recent_audit_events(&a.id, 3).await.unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].1, "order.pending");
    }

    fn issued(order: &Order, job: i64, from: OrderState) -> OrderUpdate {
        OrderUpdate {
            order_id: order.id.clone(),
            from: vec![from],
            to: OrderState::Issued,
            ca_reference: Some("ref-1".into()),
            failure_reason: None,
            certificate: Some(IssuedMetadata {
                serial: "01ab".into(),
                not_before: from_ms(1_700_000_000_000),
                not_after: from_ms(1_707_776_000_000),
                sha256_fingerprint: "ff".repeat(32),
                issuer: "CN=Desk CA".into(),
            }),
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

    /// An order issued, its fulfillment email's job written leased to this
    /// desk: the update, and the ids of the jobs it queued.
    async fn issued_with_a_leased_email(store: &PgStore) -> (OrderUpdate, Vec<i64>) {
        let (_, user) = account_with_user(store, "acme").await;
        let order = new_order(&user, &["www.example.com"], now_ms(), OrderState::Submitted);
        insert(store, &order).await;
        let submit = store.claim(60_000).await.unwrap().expect("the submit job");
        let mut update = issued(&order, submit.id, OrderState::Submitted);
        update.jobs = vec![NewJob::send_email("request-1").leased(60_000)];
        let queued = store.update_order(&update).await.unwrap().expect("applied");
        (update, queued)
    }

    #[tokio::test]
    async fn a_job_leased_as_it_is_queued_is_this_desks_until_it_is_gone() {
        let db = TestDb::new().await;
        let store = &db.store;
        let (mut update, queued) = issued_with_a_leased_email(store).await;
        assert_eq!(queued.len(), 1, "its id comes back");
        assert!(
            store.claim(60_000).await.unwrap().is_none(),
            "no worker takes a job leased at its writing"
        );
        // This desk is alive: a desk starting beside it leaves the lease.
        let other = PgStore::connect(&db.url()).await.unwrap();
        assert_eq!(other.release_all_leases().await.unwrap(), 0);
        // Queued again under the same key: nothing new, no id.
        update.done_job = None;
        update.from = vec![OrderState::Issued];
        assert_eq!(store.update_order(&update).await.unwrap(), Some(vec![]));
        db.expire_leases().await;
        let again = other
            .claim(60_000)
            .await
            .unwrap()
            .expect("once the lease ran out");
        assert_eq!((again.id, again.kind), (queued[0], JobKind::SendEmail));
        assert_eq!(again.attempts, 2, "the leased run counted as one");
        other.close().await;
    }

    #[tokio::test]
    async fn a_job_leased_but_not_run_is_given_back_due_and_its_attempt_uncounted() {
        let db = TestDb::new().await;
        let store = &db.store;
        let (_, queued) = issued_with_a_leased_email(store).await;
        // Another desk cannot give back what it does not hold.
        let other = PgStore::connect(&db.url()).await.unwrap();
        assert_eq!(other.release_leases(&queued).await.unwrap(), 0);
        // This desk stops before running it: any desk may take it at once.
        assert_eq!(store.release_leases(&queued).await.unwrap(), 1);
        let again = other.claim(60_000).await.unwrap().expect("due at once");
        assert_eq!((again.id, again.attempts), (queued[0], 1));
        other.close().await;
    }

    #[tokio::test]
    async fn the_job_an_update_completes_goes_with_it_and_stays_when_it_does_not_apply() {
        let db = TestDb::new().await;
        let store = &db.store;
        let (_, user) = account_with_user(store, "acme").await;
        let order = new_order(&user, &["www.example.com"], now_ms(), OrderState::Submitted);
        insert(store, &order).await;
        let job = store.claim(60_000).await.unwrap().expect("the submit job");
        assert_eq!(job.kind, JobKind::SubmitOrder);
        assert_eq!(job.target, order.id);
        assert_eq!(job.attempts, 1);

        // The order is not pending approval: the update does not apply and
        // the job stays, for its worker to complete or retry.
        let refused = issued(&order, job.id, OrderState::PendingApproval);
        assert!(store.update_order(&refused).await.unwrap().is_none());
        // Leases stay on PostgreSQL (another desk may hold them)…
        assert_eq!(store.release_all_leases().await.unwrap(), 0);
        assert!(store.claim(60_000).await.unwrap().is_none());
        // …until they run out.
        db.expire_leases().await;
        let again = store.claim(60_000).await.unwrap().expect("still queued");
        assert_eq!(again.id, job.id);
        assert_eq!(again.attempts, 2);

        let applied = issued(&order, job.id, OrderState::Submitted);
        assert!(store.update_order(&applied).await.unwrap().is_some());
        db.expire_leases().await;
        assert!(store.claim(60_000).await.unwrap().is_none());
        let stored = store
            .get_order_for_system(&order.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.state, OrderState::Issued);
        assert_eq!(stored.ca_reference.as_deref(), Some("ref-1"));
        assert_eq!(stored.certificate, applied.certificate);

        // A move the order's rules forbid does not apply either, even from
        // the state it is in.
        let back = OrderUpdate {
            to: OrderState::Submitted,
            from: vec![OrderState::Issued],
            done_job: None,
            email_audit: None,
            ..applied.clone()
        };
        assert!(store.update_order(&back).await.unwrap().is_none());
        // An unknown order is not updated.
        let nobody = OrderUpdate {
            order_id: "no-such-order".into(),
            ..applied
        };
        assert!(store.update_order(&nobody).await.unwrap().is_none());
        assert_eq!(
            db.count("SELECT COUNT(*) FROM audit_events WHERE action = 'order.issued'")
                .await,
            1
        );
    }

    #[tokio::test]
    async fn an_update_that_applies_writes_its_email_request_and_jobs_in_the_same_commit() {
        let db = TestDb::new().await;
        let store = &db.store;
        let (account, user) = account_with_user(store, "acme").await;
        let order = new_order(&user, &["www.example.com"], now_ms(), OrderState::Submitted);
        insert(store, &order).await;
        let job = store.claim(60_000).await.unwrap().unwrap();
        let mut email = resend(&order);
        email.trigger = EmailTrigger::Initial;
        let update = OrderUpdate {
            new_email: Some(email.clone()),
            jobs: vec![NewJob::send_email(&email.id), NewJob::sync_order(&order.id)],
            ..issued(&order, job.id, OrderState::Submitted)
        };
        assert!(store.update_order(&update).await.unwrap().is_some());
        let requests = store.list_email_requests(&order.id).await.unwrap();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].id, email.id);
        assert_eq!(
            db.count(&format!(
                "SELECT COUNT(*) FROM email_requests WHERE account_id = '{}'",
                account.id
            ))
            .await,
            1
        );
        // The submit job went, the two new ones came.
        let mut kinds = Vec::new();
        while let Some(j) = store.claim(60_000).await.unwrap() {
            kinds.push(j.kind);
        }
        kinds.sort_by_key(|k| k.as_str());
        assert_eq!(kinds, vec![JobKind::SendEmail, JobKind::SyncOrder]);
    }

    #[tokio::test]
    async fn an_order_recorded_issued_with_its_email_already_sent_logs_both_in_order() {
        let db = TestDb::new().await;
        let store = &db.store;
        let (account, user) = account_with_user(store, "acme").await;
        let order = new_order(&user, &["www.example.com"], now_ms(), OrderState::Submitted);
        insert(store, &order).await;
        let job = store.claim(60_000).await.unwrap().unwrap();
        let mut email = resend(&order);
        (email.trigger, email.state) = (EmailTrigger::Initial, EmailRequestState::Sent);
        let mut sent = issued(&order, job.id, OrderState::Submitted).audit;
        sent.action = "email.fulfillment.sent".into();
        let update = OrderUpdate {
            new_email: Some(email.clone()),
            email_audit: Some(sent),
            ..issued(&order, job.id, OrderState::Submitted)
        };
        assert_eq!(store.update_order(&update).await.unwrap(), Some(vec![]));
        let requests = store.list_email_requests(&order.id).await.unwrap();
        assert_eq!(
            (requests.len(), requests[0].state),
            (1, EmailRequestState::Sent)
        );
        let actions: Vec<String> = store
            .recent_audit_events(&account.id, 10)
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
        assert_eq!(
            db.count("SELECT COUNT(*) FROM jobs").await,
            0,
            "nothing left to run"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_writers_racing_to_move_an_order_move_it_once() {
        let db = TestDb::new().await;
        let store = &db.store;
        let (_, user) = account_with_user(store, "acme").await;
        let order = new_order(&user, &["www.example.com"], now_ms(), OrderState::Submitted);
        insert(store, &order).await;
        let mut tasks = Vec::new();
        for i in 0..8 {
            let store = db.store.clone();
            let mut update = issued(&order, -1, OrderState::Submitted);
            update.done_job = None;
            update.to = if i % 2 == 0 {
                OrderState::Issued
            } else {
                OrderState::Failed
            };
            tasks.push(tokio::spawn(
                async move { store.update_order(&update).await },
            ));
        }
        let mut applied = 0;
        for t in tasks {
            applied += t.await.unwrap().unwrap().is_some() as usize;
        }
        assert_eq!(applied, 1);
        assert_eq!(
            db.count("SELECT COUNT(*) FROM audit_events WHERE actor = 'ca:builtin'")
                .await,
            1
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn changes_of_many_orders_at_once_each_apply_and_one_that_cannot_fails_alone() {
        let db = TestDb::new().await;
        let store = &db.store;
        let orders = orders_of_one_user(store, 12, |_| OrderState::Submitted).await;
        // Each issued with its fulfillment email's request and two jobs,
        // order 4 twice (the second finds it issued and does not apply),
        // all at once so most share a statement (Grouped). The request
        // for order 6 holds a NUL (PostgreSQL refuses it in text); order
        // 9's change names no order.
        let mut changing = tokio::task::JoinSet::new();
        for (i, order) in orders.iter().enumerate().chain([(12, &orders[4])]) {
            let mut update = issued(order, -1, OrderState::Submitted);
            update.done_job = None;
            let mut request = resend(order);
            request.trigger = EmailTrigger::Initial;
            if i == 6 {
                request.message_id = "<bad\0id@desk.test>".into();
            }
            if i == 9 {
                update.order_id = "no-such-order".into();
            }
            update.jobs = vec![
                NewJob::send_email(&request.id).leased(60_000),
                NewJob::sync_order(&order.id),
            ];
            update.new_email = Some(request);
            let store = store.clone();
            changing.spawn(async move { (i, update.clone(), store.update_order(&update).await) });
        }
        let mut fourth = Vec::new();
        while let Some(changed) = changing.join_next().await {
            let (i, update, changed) = changed.unwrap();
            match (i, changed) {
                (6, Err(_)) | (9, Ok(None)) => {}
                (4 | 12, Ok(queued)) => fourth.push(queued.map(|q| q.len())),
                (i, Ok(Some(queued))) => {
                    assert_eq!(queued.len(), 2, "order {i}'s jobs");
                    let request = update.new_email.as_ref().unwrap();
                    assert_eq!(
                        db.count(&format!(
                            "SELECT COUNT(*) FROM jobs WHERE id = {} AND payload = '{}' \
                             AND locked_until IS NOT NULL",
                            queued[0], request.id
                        ))
                        .await,
                        1,
                        "order {i}'s email job, leased, first"
                    );
                }
                (i, other) => panic!("order {i}: {other:?}"),
            }
        }
        fourth.sort();
        assert_eq!(fourth, vec![None, Some(2)], "order 4: one change applies");
        for (i, order) in orders.iter().enumerate() {
            let stored = store
                .get_order_for_system(&order.id)
                .await
                .unwrap()
                .unwrap();
            let issued = ![6, 9].contains(&i);
            let expected = if issued {
                OrderState::Issued
            } else {
                OrderState::Submitted
            };
            assert_eq!(stored.state, expected, "order {i}");
            assert_eq!(stored.certificate.is_some(), issued, "order {i}");
            let requests = store.list_email_requests(&order.id).await.unwrap();
            assert_eq!(requests.len(), usize::from(issued), "order {i}'s requests");
        }
        // Ten orders issued, each with two jobs and one audit event.
        assert_eq!(
            db.count("SELECT COUNT(*) FROM jobs WHERE kind <> 'submit_order'")
                .await,
            20
        );
        assert_eq!(
            db.count("SELECT COUNT(*) FROM audit_events WHERE actor = 'ca:builtin'")
                .await,
            10
        );
    }

    #[tokio::test]
    async fn the_next_due_job_leaves_leased_ones_out_and_is_found_through_the_index() {
        let db = TestDb::new().await;
        let store = &db.store;
        let (_, user) = account_with_user(store, "acme").await;
        let order = new_order(&user, &["www.example.com"], now_ms(), OrderState::Submitted);
        insert(store, &order).await;
        store.claim(60_000).await.unwrap().expect("the submit job");
        assert_eq!(store.next_due_in_ms().await.unwrap(), None);
        let later = OffsetDateTime::now_utc() + time::Duration::seconds(30);
        store.enqueue(&NewJob::sync_order("o-2")).await.unwrap();
        assert_eq!(store.next_due_in_ms().await.unwrap(), Some(0));
        let job = store.claim(60_000).await.unwrap().expect("the sync job");
        store.retry(job.id, later, "not yet").await.unwrap();
        assert!(store.claim(60_000).await.unwrap().is_none(), "not due yet");
        let due = store
            .next_due_in_ms()
            .await
            .unwrap()
            .expect("a job is due later");
        assert!((25_000..=30_000).contains(&due), "due in {due} ms");
        // Enqueuing the same work twice keeps one job.
        let submit = NewJob::submit_order(&order.id);
        store.enqueue(&submit).await.unwrap();
        assert_eq!(db.count("SELECT COUNT(*) FROM jobs").await, 2);

        // On a table this small the planner would rather scan it; with
        // scans priced out it shows the index serves the query.
        let mut c = db.pool().acquire().await.unwrap();
        c.execute("SET enable_seqscan = off").await.unwrap();
        let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {NEXT_DUE}"))
            .bind(now_ms())
            .fetch_all(&mut *c)
            .await
            .unwrap();
        assert!(plan.iter().any(|p| p.contains("jobs_free")), "{plan:?}");
    }

    #[tokio::test]
    async fn a_claim_takes_the_oldest_due_job_and_reads_past_the_running_ones_through_the_indexes()
    {
        let db = TestDb::new().await;
        let store = &db.store;
        shared_tests::a_claim_takes_the_oldest_due_job_past_the_running_ones(store.as_ref()).await;

        // The plan each writing connection keeps, made here on a database
        // of a few rows, as at a desk's first claims: index lookups alone.
        let plan = generic_plan(&db, CLAIM, "0, 0, 0").await;
        for index in ["jobs_free", "jobs_leased"] {
            assert!(plan.contains(index), "{index}: {plan}");
        }
        assert!(!plan.contains("Seq Scan"), "{plan}");
    }

    /// The generic plan PostgreSQL makes for `statement` with `args`, the
    /// one a connection of the writing pools keeps (`force_generic_plan`).
    async fn generic_plan(db: &TestDb, statement: &str, args: &str) -> String {
        let mut c = db.pool().acquire().await.unwrap();
        c.execute("SET plan_cache_mode = force_generic_plan")
            .await
            .unwrap();
        c.execute(format!("PREPARE planned AS {statement}").as_str())
            .await
            .unwrap();
        let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN EXECUTE planned({args})"))
            .fetch_all(&mut *c)
            .await
            .unwrap();
        c.execute("DEALLOCATE planned").await.unwrap();
        plan.join("\n")
    }

    #[tokio::test]
    async fn a_dead_desks_leases_are_freed_when_a_desk_starts_and_a_live_desks_are_kept() {
        let db = TestDb::new().await;
        shared_tests::enqueue_syncs(db.store.as_ref(), "o", 2).await;
        // Two desks on one database, each working on a job.
        let live = &db.store;
        let dying = PgStore::connect(&db.url()).await.unwrap();
        assert_ne!(live.instance, dying.instance);
        let kept = live.claim(600_000).await.unwrap().expect("a job");
        let lost = dying.claim(600_000).await.unwrap().expect("the other job");
        // One dies: its connections, the presence lock's among them, end.
        dying.close().await;
        drop(dying);
        // PostgreSQL lets go of the lock when it sees the connection close.
        let end = Instant::now() + Duration::from_secs(10);
        let starting = PgStore::connect(&db.url()).await.unwrap();
        let freed = loop {
            let freed = starting.release_all_leases().await.unwrap();
            if freed > 0 || Instant::now() > end {
                break freed;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(freed, 1, "only the dead desk's lease");
        let again = starting
            .claim(600_000)
            .await
            .unwrap()
            .expect("the freed job");
        assert_eq!(again.id, lost.id);
        assert_eq!(again.attempts, 2);
        assert!(
            starting.claim(600_000).await.unwrap().is_none(),
            "the live desk's job {} stays leased",
            kept.id
        );
        starting.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn claimers_skip_a_job_another_is_claiming_and_never_share_one() {
        let db = TestDb::new().await;
        let store = &db.store;
        shared_tests::enqueue_syncs(store.as_ref(), "o", 3).await;
        // Another desk's claim, caught between its lock and its commit.
        let mut other = db.pool().begin().await.unwrap();
        let first: i64 =
            sqlx::query_scalar("SELECT id FROM jobs ORDER BY run_at, id LIMIT 1 FOR UPDATE")
                .fetch_one(&mut *other)
                .await
                .unwrap();
        let job = tokio::time::timeout(Duration::from_secs(5), store.claim(60_000))
            .await
            .expect("a claim does not wait for another claimer")
            .unwrap()
            .expect("the next job");
        assert_ne!(job.id, first);
        other.rollback().await.unwrap();
        let job = store.claim(60_000).await.unwrap().expect("the first job");
        assert_eq!(job.id, first);

        // Many claimers at once: every job once, none twice.
        shared_tests::enqueue_syncs(store.as_ref(), "p", 200).await;
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let store = db.store.clone();
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                while let Some(job) = store.claim(60_000).await.unwrap() {
                    mine.push(job.id);
                }
                mine
            }));
        }
        let mut claimed = Vec::new();
        for t in tasks {
            claimed.extend(t.await.unwrap());
        }
        let distinct: HashSet<i64> = claimed.iter().copied().collect();
        assert_eq!(distinct.len(), claimed.len(), "a job was claimed twice");
        assert_eq!(claimed.len(), 201);
    }

    async fn issued_order(db: &TestDb) -> Order {
        let (_, user) = account_with_user(&db.store, "acme").await;
        let order = new_order(&user, &["www.example.com"], now_ms(), OrderState::Issued);
        insert(&db.store, &order).await;
        order
    }

    /// `count` orders of one user, order i for www{i}.example.com in
    /// `state(i)`, each with its submit job.
    async fn orders_of_one_user(
        store: &PgStore,
        count: usize,
        state: impl Fn(usize) -> OrderState,
    ) -> Vec<Order> {
        let (_, user) = account_with_user(store, "acme").await;
        let mut orders = Vec::new();
        for i in 0..count {
            let name = format!("www{i}.example.com");
            let order = new_order(&user, &[name.as_str()], now_ms(), state(i));
            insert(store, &order).await;
            orders.push(order);
        }
        orders
    }

    /// A resend of `order`'s fulfillment email, queued with its job.
    async fn queue_resend(store: &PgStore, order: &Order) -> EmailRequest {
        let r = resend(order);
        let outcome = store
            .create_email_request(
                &r,
                OrderState::Issued,
                &audit(&order.account_id, "email.fulfillment.requested", &order.id),
                None,
                None,
                None,
            )
            .await
            .unwrap();
        assert!(matches!(outcome, EmailRequestOutcome::Created(..)));
        r
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn resends_at_once_under_a_limit_of_one_give_one_created_and_the_rest_rate_limited() {
        let db = TestDb::new().await;
        let order = issued_order(&db).await;
        let limit = RateLimit {
            max: 1,
            window_ms: 3_600_000,
        };
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let store = db.store.clone();
            let request = resend(&order);
            let event = audit(&order.account_id, "email.fulfillment.requested", &order.id);
            tasks.push(tokio::spawn(async move {
                store
                    .create_email_request(
                        &request,
                        OrderState::Issued,
                        &event,
                        None,
                        Some(limit),
                        None,
                    )
                    .await
            }));
        }
        let (mut created, mut limited) = (0, 0);
        for t in tasks {
            match t.await.unwrap().unwrap() {
                EmailRequestOutcome::Created(..) => created += 1,
                EmailRequestOutcome::RateLimited { retry_after_ms } => {
                    assert!(
                        (1..=3_600_000).contains(&retry_after_ms),
                        "{retry_after_ms}"
                    );
                    limited += 1
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!((created, limited), (1, 7));
        assert_eq!(
            db.store.list_email_requests(&order.id).await.unwrap().len(),
            1
        );
        // One send job beside the submit job, one audit event beside the order's.
        assert_eq!(
            db.count("SELECT COUNT(*) FROM jobs WHERE kind = 'send_email'")
                .await,
            1
        );
        assert_eq!(db.count("SELECT COUNT(*) FROM audit_events").await, 2);

        // The state is checked too.
        let outcome = db
            .store
            .create_email_request(
                &resend(&order),
                OrderState::PendingApproval,
                &audit(&order.account_id, "x", &order.id),
                None,
                None,
                None,
            )
            .await
            .unwrap();
        assert!(matches!(
            outcome,
            EmailRequestOutcome::WrongState(OrderState::Issued)
        ));
        // A request for an unknown order is an error, as on SQLite.
        let mut stray = resend(&order);
        stray.order_id = "no-such-order".into();
        assert!(db
            .store
            .create_email_request(
                &stray,
                OrderState::Issued,
                &audit("a", "x", "y"),
                None,
                None,
                None
            )
            .await
            .is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_same_idempotency_key_at_once_gives_one_created_and_the_rest_existing() {
        let db = TestDb::new().await;
        let order = issued_order(&db).await;
        let key = IdempotencyKey {
            scope: "fulfillment-email",
            key: "retry-me".into(),
        };
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let store = db.store.clone();
            let request = resend(&order);
            let event = audit(&order.account_id, "email.fulfillment.requested", &order.id);
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .create_email_request(
                        &request,
                        OrderState::Issued,
                        &event,
                        Some(&key),
                        None,
                        None,
                    )
                    .await
            }));
        }
        let (mut created, mut existing) = (Vec::new(), Vec::new());
        for t in tasks {
            match t.await.unwrap().unwrap() {
                EmailRequestOutcome::Created(r, _) => created.push(r.id),
                EmailRequestOutcome::Existing(r) => existing.push(r.id),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(created.len(), 1);
        assert_eq!(existing, vec![created[0].clone(); 7]);

        // Orders: no row lock to line them up, the key's unique index does.
        let user = db
            .store
            .find_user(&order.created_by)
            .await
            .unwrap()
            .unwrap();
        let key = IdempotencyKey {
            scope: "order",
            key: "place-once".into(),
        };
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let store = db.store.clone();
            let o = new_order(&user, &["api.example.com"], now_ms(), OrderState::Submitted);
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                let event = audit(&o.account_id, "order.created", &o.id);
                store
                    .insert_order(
                        &o,
                        &registrable(&o),
                        &NewJob::submit_order(&o.id),
                        &event,
                        Some(&key),
                    )
                    .await
            }));
        }
        let (mut created, mut existing) = (Vec::new(), Vec::new());
        for t in tasks {
            match t.await.unwrap().unwrap() {
                InsertOutcome::Created(id, _) => created.push(id),
                InsertOutcome::Existing(id) => existing.push(id),
            }
        }
        assert_eq!(created.len(), 1);
        assert_eq!(existing, vec![created[0].clone(); 7]);
        let by_name = OrderFilter {
            domain: Some("api.example.com".into()),
            ..OrderFilter::default()
        };
        assert_eq!(
            all_pages(&db.store, &user.account_id, &by_name, 10).await,
            created
        );
        // The same key in another account is another key.
        let (_, other) = account_with_user(&db.store, "other").await;
        let o = new_order(
            &other,
            &["api.example.com"],
            now_ms(),
            OrderState::Submitted,
        );
        let outcome = db
            .store
            .insert_order(
                &o,
                &registrable(&o),
                &NewJob::submit_order(&o.id),
                &audit(&o.account_id, "order.created", &o.id),
                Some(&key),
            )
            .await
            .unwrap();
        assert!(matches!(outcome, InsertOutcome::Created(..)));
    }

    #[tokio::test]
    async fn a_taken_account_name_or_user_email_is_a_duplicate() {
        let db = TestDb::new().await;
        let store = &db.store;
        let (account, user) = account_with_user(store, "acme").await;
        match store.create_account("acme").await {
            Err(StoreError::Duplicate(what)) => assert_eq!(what, "an account named \"acme\""),
            other => panic!("{other:?}"),
        }
        match store
            .create_user(&account.id, &user.email, Role::Member, None)
            .await
        {
            Err(StoreError::Duplicate(what)) => {
                assert_eq!(what, format!("a user with email {}", user.email))
            }
            other => panic!("{other:?}"),
        }
        // Another failure stays a database error.
        let unknown = store
            .create_user(
                "no-such-account",
                &EmailAddress::parse("x@example.com").unwrap(),
                Role::Member,
                None,
            )
            .await;
        assert!(
            matches!(unknown, Err(StoreError::Database(_))),
            "{unknown:?}"
        );
        assert_eq!(store.count_users().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn accounts_users_tokens_and_sessions_round_trip() {
        let db = TestDb::new().await;
        let store = &db.store;
        let (a, alice) = account_with_user(store, "alpha").await;
        let (b, _) = account_with_user(store, "beta").await;
        let names: Vec<String> = store
            .list_accounts()
            .await
            .unwrap()
            .into_iter()
            .map(|x| x.name)
            .collect();
        assert_eq!(names, vec!["alpha", "beta"]);
        assert_eq!(
            store.find_account(&a.id).await.unwrap().unwrap().name,
            "alpha"
        );
        assert_eq!(store.find_account("beta").await.unwrap().unwrap().id, b.id);
        assert!(store.find_account("gamma").await.unwrap().is_none());

        let found = store.find_user(&alice.id).await.unwrap().unwrap();
        assert_eq!(
            (found.email, found.role),
            (alice.email.clone(), Role::Admin)
        );
        let (u, hash) = store
            .find_user_by_email(alice.email.as_str())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((u.id, hash), (alice.id.clone(), None));
        store
            .set_password_hash(&alice.id, "$argon2id$x")
            .await
            .unwrap();
        let (_, hash) = store
            .find_user_by_email(alice.email.as_str())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(hash.as_deref(), Some("$argon2id$x"));

        store.create_token(&alice.id, &[1, 2, 3]).await.unwrap();
        let by_token = store.find_user_by_token_hash(&[1, 2, 3]).await.unwrap();
        assert_eq!(by_token.unwrap().id, alice.id);
        assert!(store.find_user_by_token_hash(&[9]).await.unwrap().is_none());

        let in_an_hour = OffsetDateTime::now_utc() + time::Duration::hours(1);
        let an_hour_ago = OffsetDateTime::now_utc() - time::Duration::hours(1);
        store
            .create_session(&[7; 32], &alice.id, "csrf-1", an_hour_ago)
            .await
            .unwrap();
        assert!(
            store.find_session(&[7; 32]).await.unwrap().is_none(),
            "expired"
        );
        // The next sign-in clears expired sessions.
        store
            .create_session(&[8; 32], &alice.id, "csrf-2", in_an_hour)
            .await
            .unwrap();
        assert_eq!(db.count("SELECT COUNT(*) FROM sessions").await, 1);
        let session = store.find_session(&[8; 32]).await.unwrap().unwrap();
        assert_eq!(session.user.id, alice.id);
        assert_eq!(session.csrf_token, "csrf-2");
        assert_eq!(to_ms(session.expires_at), to_ms(in_an_hour));
        store.delete_session(&[8; 32]).await.unwrap();
        assert!(store.find_session(&[8; 32]).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn email_requests_are_listed_and_finished_with_their_job() {
        let db = TestDb::new().await;
        let store = &db.store;
        let order = issued_order(&db).await;
        store.claim(60_000).await.unwrap().expect("the submit job");
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(queue_resend(store, &order).await.id);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let listed: Vec<String> = store
            .list_email_requests(&order.id)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(listed, ids);
        let latest = store
            .latest_email_requests(&[order.id.clone(), "other".into()], EmailKind::Fulfillment)
            .await
            .unwrap();
        assert_eq!(latest.len(), 1);
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

        let job = store.claim(60_000).await.unwrap().expect("a send job");
        assert_eq!(job.kind, JobKind::SendEmail);
        store
            .set_email_request_state(&job.target, EmailRequestState::Forwarded, Some("slow"))
            .await
            .unwrap();
        let r = store.get_email_request(&job.target).await.unwrap().unwrap();
        assert_eq!(r.state, EmailRequestState::Forwarded);
        assert_eq!(r.error.as_deref(), Some("slow"));
        // The worker's way in: forwarded (again), with its order, the
        // reason kept until the email is sent.
        let (r, o) = store
            .forward_email_request(&job.target)
            .await
            .unwrap()
            .expect("a request not yet sent");
        assert_eq!(
            (r.id.as_str(), r.state, r.error.as_deref()),
            (
                job.target.as_str(),
                EmailRequestState::Forwarded,
                Some("slow")
            )
        );
        assert_eq!((o.id, o.state), (order.id.clone(), OrderState::Issued));
        assert_eq!(o.names, order.names);
        assert_eq!(
            r.message_id,
            store
                .get_email_request(&job.target)
                .await
                .unwrap()
                .unwrap()
                .message_id
        );
        store
            .finish_email_request(
                &job.target,
                EmailRequestState::Sent,
                None,
                job.id,
                &audit(&order.account_id, "email.sent", &job.target),
            )
            .await
            .unwrap();
        let r = store.get_email_request(&job.target).await.unwrap().unwrap();
        assert_eq!((r.state, r.error), (EmailRequestState::Sent, None));
        assert!(
            store
                .forward_email_request(&job.target)
                .await
                .unwrap()
                .is_none(),
            "a sent email is not sent again"
        );
        assert!(store.forward_email_request("nope").await.unwrap().is_none());
        assert_eq!(
            db.count(&format!("SELECT COUNT(*) FROM jobs WHERE id = {}", job.id))
                .await,
            0
        );
        store
            .complete(store.claim(60_000).await.unwrap().unwrap().id)
            .await
            .unwrap();
        // The submit job (leased) and the third send job are left.
        assert_eq!(db.count("SELECT COUNT(*) FROM jobs").await, 2);
        assert!(store.get_email_request("nope").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_order_for_a_domain_and_its_www_is_listed_once_under_that_domain() {
        let db = TestDb::new().await;
        let store = &db.store;
        let (_, user) = account_with_user(store, "acme").await;
        // Two names of one registrable domain, and a name given twice (an
        // import from elsewhere may): one row per name and per domain.
        let order = new_order(
            &user,
            &["example.net", "www.example.net", "example.net"],
            now_ms(),
            OrderState::Submitted,
        );
        insert(store, &order).await;
        assert_eq!(db.count("SELECT COUNT(*) FROM order_names").await, 2);
        assert_eq!(db.count("SELECT COUNT(*) FROM order_domains").await, 1);
        for (filter, name) in [
            (
                OrderFilter {
                    domain: Some("example.net".into()),
                    ..OrderFilter::default()
                },
                "domain",
            ),
            (
                OrderFilter {
                    domain: Some("www.example.net".into()),
                    ..OrderFilter::default()
                },
                "name",
            ),
        ] {
            let listed = all_pages(store, &user.account_id, &filter, 10).await;
            assert_eq!(listed, std::slice::from_ref(&order.id), "by {name}");
        }
    }

    #[tokio::test]
    async fn orders_placed_at_once_each_get_their_rows_and_job_and_one_that_cannot_be_fails_alone()
    {
        let db = TestDb::new().await;
        let store = &db.store;
        let (_, user) = account_with_user(store, "acme").await;
        // Placed at once, so most share a statement with others (Grouped).
        // The fifth's holder name holds a NUL, which PostgreSQL refuses in
        // text.
        let mut orders = Vec::new();
        for i in 0..24 {
            let names = [
                format!("www{i}.example.com"),
                format!("shop{i}.example.org"),
            ];
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let mut order = new_order(&user, &names, now_ms() + i, OrderState::Submitted);
            if i == 5 {
                order.admin_name = "bad\0byte".into();
            }
            orders.push(order);
        }
        let mut placing = tokio::task::JoinSet::new();
        for (i, order) in orders.iter().enumerate() {
            let (store, order) = (store.clone(), order.clone());
            placing.spawn(async move { (i, place(&store, &order).await) });
        }
        let mut job_ids = HashSet::new();
        while let Some(placed) = placing.join_next().await {
            let (i, placed) = placed.unwrap();
            if i == 5 {
                assert!(placed.is_err(), "{placed:?}");
                continue;
            }
            match placed {
                Ok(InsertOutcome::Created(id, Some(job))) => {
                    assert_eq!(id, orders[i].id);
                    assert!(job_ids.insert(job), "job {job} given twice");
                    let target: String =
                        sqlx::query_scalar("SELECT payload FROM jobs WHERE id = $1")
                            .bind(job)
                            .fetch_one(&store.reads)
                            .await
                            .unwrap();
                    assert_eq!(target, orders[i].id, "order {i}'s job");
                }
                other => panic!("order {i}: {other:?}"),
            }
        }
        for (i, order) in orders.iter().enumerate() {
            let found = store.get_order(&order.account_id, &order.id).await.unwrap();
            assert_eq!(
                found.map(|o| o.names),
                (i != 5).then(|| order.names.clone()),
                "order {i}"
            );
            assert_eq!(
                db.count(&format!(
                    "SELECT COUNT(*) FROM audit_events WHERE subject = '{}'",
                    order.id
                ))
                .await,
                i64::from(i != 5),
                "order {i}'s audit event"
            );
        }
        let by_domain = all_pages(
            store,
            &user.account_id,
            &OrderFilter {
                domain: Some("example.org".into()),
                ..OrderFilter::default()
            },
            10,
        )
        .await;
        assert_eq!(by_domain.len(), 23, "each order's names, by domain");
        assert_eq!(db.count("SELECT COUNT(*) FROM jobs").await, 23);
    }

    #[tokio::test]
    async fn writes_keep_one_plan_per_statement_and_reads_leave_it_to_postgresql() {
        let db = TestDb::new().await;
        let store = &db.store;
        let mode = |pool: &PgPool| {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, String>("SHOW plan_cache_mode")
                    .fetch_one(&pool)
                    .await
                    .unwrap()
            }
        };
        assert_eq!(mode(&store.pool).await, "force_generic_plan");
        assert_eq!(mode(&store.relaxed).await, "force_generic_plan");
        assert_eq!(mode(&store.reads).await, "auto");
    }

    #[tokio::test]
    async fn emails_finished_at_once_are_each_recorded_and_one_that_cannot_be_fails_alone() {
        let db = TestDb::new().await;
        let store = &db.store;
        let order = issued_order(&db).await;
        store.claim(60_000).await.unwrap().expect("the submit job");
        let mut jobs = Vec::new();
        for _ in 0..24 {
            let r = queue_resend(store, &order).await;
            let job = store.claim(60_000).await.unwrap().expect("its send job");
            assert_eq!(job.target, r.id);
            jobs.push(job);
        }
        // Every other one failed to send; for the seventh the error holds
        // a NUL, which PostgreSQL refuses in text. All finish at once, so
        // most share a statement with others (Grouped).
        let outcome = |i: usize| match i {
            7 => (
                EmailRequestState::Failed,
                Some("bad\0byte".to_string()),
                "email.failed",
            ),
            i if i % 2 == 0 => (EmailRequestState::Sent, None, "email.sent"),
            i => (
                EmailRequestState::Failed,
                Some(format!("mailbox {i} unavailable")),
                "email.failed",
            ),
        };
        let mut finishing = tokio::task::JoinSet::new();
        for (i, job) in jobs.iter().enumerate() {
            let (store, job, account) = (store.clone(), job.clone(), order.account_id.clone());
            let (state, error, action) = outcome(i);
            finishing.spawn(async move {
                let finished = store
                    .finish_email_request(
                        &job.target,
                        state,
                        error.as_deref(),
                        job.id,
                        &audit(&account, action, &job.target),
                    )
                    .await;
                (i, finished)
            });
        }
        while let Some(finished) = finishing.join_next().await {
            let (i, finished) = finished.unwrap();
            assert_eq!(finished.is_err(), i == 7, "request {i}: {finished:?}");
        }
        for (i, job) in jobs.iter().enumerate() {
            let r = store.get_email_request(&job.target).await.unwrap().unwrap();
            let (state, error, action) = outcome(i);
            let recorded = if i == 7 {
                (EmailRequestState::Queued, None)
            } else {
                (state, error)
            };
            assert_eq!((r.state, r.error), recorded, "request {i}");
            assert_eq!(
                db.count(&format!(
                    "SELECT COUNT(*) FROM audit_events WHERE action = '{action}' \
                     AND subject = '{}'",
                    job.target
                ))
                .await,
                i64::from(i != 7),
                "request {i}'s audit event"
            );
        }
        // The submit job (leased) and the job of the email not recorded.
        assert_eq!(db.count("SELECT COUNT(*) FROM jobs").await, 2);
        assert_eq!(
            db.count(&format!(
                "SELECT COUNT(*) FROM jobs WHERE id = {}",
                jobs[7].id
            ))
            .await,
            1
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn email_requests_at_once_for_many_orders_each_get_their_own_answer() {
        let db = TestDb::new().await;
        let store = &db.store;
        let orders = orders_of_one_user(store, 12, |i| {
            if i == 3 {
                OrderState::PendingApproval
            } else {
                OrderState::Issued
            }
        })
        .await;
        // Order 5 has had its one resend of the hour.
        queue_resend(store, &orders[5]).await;
        let limit = RateLimit {
            max: 1,
            window_ms: 3_600_000,
        };
        // All at once, so most share a statement (Grouped): order 3 is not
        // issued, order 5 is over its limit, the request for order 7 holds
        // a NUL (PostgreSQL refuses it in text), the one for order 9 names
        // no order. Each gets its own answer; the others are queued, leased.
        let mut asking = tokio::task::JoinSet::new();
        for (i, order) in orders.iter().enumerate() {
            let mut request = resend(order);
            if i == 7 {
                request.message_id = "<bad\0id@desk.test>".into();
            }
            if i == 9 {
                request.order_id = "no-such-order".into();
            }
            let store = store.clone();
            let event = audit(&order.account_id, "email.fulfillment.requested", &order.id);
            asking.spawn(async move {
                let outcome = store
                    .create_email_request(
                        &request,
                        OrderState::Issued,
                        &event,
                        None,
                        Some(limit),
                        Some(60_000),
                    )
                    .await;
                (i, request.id, outcome)
            });
        }
        while let Some(asked) = asking.join_next().await {
            let (i, id, outcome) = asked.unwrap();
            match (i, outcome) {
                (3, Ok(EmailRequestOutcome::WrongState(OrderState::PendingApproval))) => {}
                (5, Ok(EmailRequestOutcome::RateLimited { retry_after_ms })) => {
                    assert!((1..=3_600_000).contains(&retry_after_ms))
                }
                (7 | 9, Err(_)) => {}
                (i, Ok(EmailRequestOutcome::Created(r, Some(job))))
                    if ![3, 5, 7, 9].contains(&i) =>
                {
                    assert_eq!(r.id, id);
                    assert_eq!(
                        db.count(&format!(
                            "SELECT COUNT(*) FROM jobs WHERE id = {job} AND payload = '{id}' \
                             AND locked_until IS NOT NULL"
                        ))
                        .await,
                        1,
                        "order {i}'s job, leased"
                    );
                }
                (i, other) => panic!("order {i}: {other:?}"),
            }
        }
        for (i, order) in orders.iter().enumerate() {
            let requests = store.list_email_requests(&order.id).await.unwrap();
            let expected = usize::from(![3, 7, 9].contains(&i));
            assert_eq!(requests.len(), expected, "order {i}'s requests");
        }
        // Eight created at once and order 5's earlier one, each with its
        // job and audit event.
        assert_eq!(
            db.count("SELECT COUNT(*) FROM jobs WHERE kind = 'send_email'")
                .await,
            9
        );
        assert_eq!(
            db.count(
                "SELECT COUNT(*) FROM audit_events WHERE action = 'email.fulfillment.requested'"
            )
            .await,
            9
        );
    }

    fn certificate(
        account_id: &str,
        cn: &str,
        created_at_ms: i64,
        not_after_ms: i64,
    ) -> StoredCertificate {
        StoredCertificate {
            id: new_id(),
            account_id: account_id.into(),
            common_name: Some(cn.into()),
            names: vec![cn.into(), format!("alt_{cn}")],
            issuer: "CN=Some CA".into(),
            serial: "0a".into(),
            not_before: from_ms(created_at_ms),
            not_after: from_ms(not_after_ms),
            fingerprint: "ab".repeat(32),
            key_type: "ecdsa-p256".into(),
            certificate_pem: "-----BEGIN CERTIFICATE-----".into(),
            chain_pem: String::new(),
            csr_pem: None,
            notes: String::new(),
            warnings: serde_json::json!([{"code": "expired", "message": "m"}]),
            expired_on_import: true,
            created_by: "u".into(),
            created_at: from_ms(created_at_ms),
            updated_at: from_ms(created_at_ms),
        }
    }

    #[tokio::test]
    async fn certificates_round_trip_scoped_by_account() {
        let db = TestDb::new().await;
        let store = &db.store;
        let (a, _) = account_with_user(store, "alpha").await;
        let (b, _) = account_with_user(store, "beta").await;
        let key = SealedKey {
            ciphertext: vec![1, 2, 3],
            wrapped_key: vec![4, 5],
        };
        let t = 1_700_000_000_000;
        let certs = [
            certificate(&a.id, "one.example.com", t, t + 10_000),
            certificate(&a.id, "Two.Example.com", t + 1, t + 20_000),
            certificate(&a.id, "50%_off.example.com", t + 1, t + 30_000),
        ];
        for c in &certs {
            let event = audit(&a.id, "certificate.imported", &c.id);
            store.insert_certificate(c, &key, &event).await.unwrap();
        }
        let got = store
            .get_certificate(&a.id, &certs[0].id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.names, certs[0].names);
        assert_eq!(got.warnings, certs[0].warnings);
        assert!(got.expired_on_import);
        assert_eq!(got.not_after, certs[0].not_after);
        assert!(store
            .get_certificate(&b.id, &certs[0].id)
            .await
            .unwrap()
            .is_none());
        assert!(store
            .certificate_key(&b.id, &certs[0].id)
            .await
            .unwrap()
            .is_none());
        let k = store
            .certificate_key(&a.id, &certs[0].id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (k.ciphertext, k.wrapped_key),
            (key.ciphertext.clone(), key.wrapped_key.clone())
        );

        let list = |filter: CertificateFilter, after: Option<Cursor>| {
            let (store, account) = (store.clone(), a.id.clone());
            async move {
                store
                    .list_certificates(&account, &filter, after.as_ref(), 10)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|c| c.id)
                    .collect::<Vec<_>>()
            }
        };
        let mut newest: Vec<&StoredCertificate> = certs.iter().collect();
        newest.sort_by(|x, y| (y.created_at, &y.id).cmp(&(x.created_at, &x.id)));
        let newest: Vec<String> = newest.iter().map(|c| c.id.clone()).collect();
        assert_eq!(list(CertificateFilter::default(), None).await, newest);
        let cursor = Cursor {
            created_at_ms: t + 1,
            id: newest[0].clone(),
        };
        assert_eq!(
            list(CertificateFilter::default(), Some(cursor)).await,
            newest[1..]
        );
        // A substring, any case; % and _ are plain characters.
        let by_name = |n: &str| CertificateFilter {
            name: Some(n.into()),
            ..CertificateFilter::default()
        };
        assert_eq!(
            list(by_name("two.EXAMPLE"), None).await,
            vec![certs[1].id.clone()]
        );
        assert_eq!(list(by_name("50%_"), None).await, vec![certs[2].id.clone()]);
        assert!(list(by_name("%"), None).await.len() == 1);
        let expiring = CertificateFilter {
            expiring_before: Some(from_ms(t + 15_000)),
            ..CertificateFilter::default()
        };
        assert_eq!(list(expiring, None).await, vec![certs[0].id.clone()]);
        assert!(store
            .list_certificates(&b.id, &CertificateFilter::default(), None, 10)
            .await
            .unwrap()
            .is_empty());

        let mut changed = certs[0].clone();
        changed.notes = "renewed".into();
        changed.expired_on_import = false;
        let new_key = SealedKey {
            ciphertext: vec![9],
            wrapped_key: vec![8],
        };
        let event = audit(&a.id, "certificate.updated", &changed.id);
        assert!(store
            .update_certificate(&changed, Some(&new_key), &event)
            .await
            .unwrap());
        let got = store
            .get_certificate(&a.id, &changed.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.notes, "renewed");
        assert!(!got.expired_on_import);
        assert_eq!(
            store
                .certificate_key(&a.id, &changed.id)
                .await
                .unwrap()
                .unwrap()
                .ciphertext,
            vec![9]
        );
        let mut elsewhere = changed.clone();
        elsewhere.account_id = b.id.clone();
        assert!(!store
            .update_certificate(&elsewhere, None, &event)
            .await
            .unwrap());

        let wrapped = store.wrapped_keys().await.unwrap();
        assert_eq!(wrapped.len(), 3);
        assert!(store.rewrap_key(&changed.id, &[8], &[7]).await.unwrap());
        assert!(
            !store.rewrap_key(&changed.id, &[8], &[6]).await.unwrap(),
            "no longer old"
        );

        let gone = audit(&a.id, "certificate.deleted", &changed.id);
        assert!(!store
            .delete_certificate(&b.id, &changed.id, &gone)
            .await
            .unwrap());
        assert!(store
            .delete_certificate(&a.id, &changed.id, &gone)
            .await
            .unwrap());
        assert!(store
            .get_certificate(&a.id, &changed.id)
            .await
            .unwrap()
            .is_none());
        store
            .record_audit(&audit(&a.id, "certificate.viewed", "x"))
            .await
            .unwrap();
        let events = store.recent_audit_events(&a.id, 2).await.unwrap();
        assert_eq!(
            events.iter().map(|e| e.1.as_str()).collect::<Vec<_>>(),
            vec!["certificate.viewed", "certificate.deleted"]
        );
        // 3 imports, 1 update, 1 delete, 1 recorded: the refused ones wrote none.
        assert_eq!(db.count("SELECT COUNT(*) FROM audit_events").await, 6);
    }

    #[tokio::test]
    async fn a_row_with_an_unknown_state_is_corrupt() {
        let db = TestDb::new().await;
        let order = issued_order(&db).await;
        sqlx::query("UPDATE orders SET state = 'lost' WHERE id = $1")
            .bind(&order.id)
            .execute(db.pool())
            .await
            .unwrap();
        let read = db.store.get_order(&order.account_id, &order.id).await;
        assert!(matches!(read, Err(StoreError::Corrupt(_))), "{read:?}");
        sqlx::query("UPDATE jobs SET kind = 'dance'")
            .execute(db.pool())
            .await
            .unwrap();
        let claimed = db.store.claim(1_000).await;
        assert!(
            matches!(claimed, Err(StoreError::Corrupt(_))),
            "{claimed:?}"
        );
    }

    #[tokio::test]
    async fn twenty_thousand_imported_orders_list_in_pages_and_by_domain() {
        let db = TestDb::new().await;
        let store = &db.store;
        let (account, user) = account_with_user(store, "bulk").await;
        let t = 1_600_000_000_000;
        let orders: Vec<(Order, Vec<Option<String>>)> = (0..20_000)
            .map(|i| {
                let host = format!("host{i}.example{}.com", i % 10);
                let mut o = new_order(&user, &[host.as_str()], t + i, OrderState::Issued);
                o.certificate = Some(IssuedMetadata {
                    serial: format!("{i:x}"),
                    not_before: from_ms(t + i),
                    not_after: from_ms(t + i + 86_400_000),
                    sha256_fingerprint: "cd".repeat(32),
                    issuer: "CN=Desk CA".into(),
                });
                let r = registrable(&o);
                (o, r)
            })
            .collect();
        let newest = orders.last().unwrap().0.clone();
        let started = Instant::now();
        let mut batches = orders.into_iter().peekable();
        while batches.peek().is_some() {
            let batch: Vec<_> = batches.by_ref().take(10_000).collect();
            store.import_orders(batch).await.unwrap();
        }
        eprintln!("imported 20,000 orders in {:?}", started.elapsed());
        assert_eq!(db.count("SELECT COUNT(*) FROM orders").await, 20_000);
        assert_eq!(db.count("SELECT COUNT(*) FROM order_names").await, 20_000);
        assert_eq!(db.count("SELECT COUNT(*) FROM order_domains").await, 20_000);
        // No jobs, no audit events: these orders have run their course.
        assert_eq!(db.count("SELECT COUNT(*) FROM jobs").await, 0);
        assert_eq!(db.count("SELECT COUNT(*) FROM audit_events").await, 0);

        let all = OrderFilter::default();
        let first = store
            .list_orders(&account.id, &all, None, 50)
            .await
            .unwrap();
        assert_eq!(first.len(), 50);
        assert_eq!(first[0].id, newest.id);
        assert_eq!(first[0].certificate, newest.certificate);
        assert!(first
            .windows(2)
            .all(|w| (w[0].created_at, &w[0].id) > (w[1].created_at, &w[1].id)));
        // A page deep in the list.
        let deep = Cursor {
            created_at_ms: t + 10_000,
            id: "~".into(),
        };
        let page = store
            .list_orders(&account.id, &all, Some(&deep), 3)
            .await
            .unwrap();
        let at: Vec<i64> = page.iter().map(|o| to_ms(o.created_at)).collect();
        assert_eq!(at, vec![t + 10_000, t + 9_999, t + 9_998]);

        let example3 = OrderFilter {
            domain: Some("example3.com".into()),
            ..OrderFilter::default()
        };
        let ids = all_pages(store, &account.id, &example3, 500).await;
        assert_eq!(ids.len(), 2_000);
        let host = OrderFilter {
            domain: Some("host12345.example5.com".into()),
            state: Some(OrderState::Issued),
            ..OrderFilter::default()
        };
        let one = store
            .list_orders(&account.id, &host, None, 10)
            .await
            .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(to_ms(one[0].created_at), t + 12_345);
        // An import is one transaction: a batch with a bad row leaves nothing.
        let mut bad = new_order(&user, &["x.example.com"], t, OrderState::Issued);
        bad.created_by = "no-such-user".into();
        let good = new_order(&user, &["y.example.com"], t, OrderState::Issued);
        let (rg, rb) = (registrable(&good), registrable(&bad));
        assert!(store
            .import_orders(vec![(good, rg), (bad, rb)])
            .await
            .is_err());
        assert_eq!(db.count("SELECT COUNT(*) FROM orders").await, 20_000);
    }
}
