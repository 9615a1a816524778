//! Persistence behind traits, one per aggregate, so a second backend slots in
//! without touching the service layer (DESIGN rule 5).
//!
//! Every change that needs follow-up work writes its job and its audit event
//! in the same transaction (transactional outbox, DESIGN rule 2).

pub mod postgres;
pub mod sqlite;
pub mod sqlite_db;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::domain::account::{Account, Role, User};
use crate::domain::order::{EmailRequest, EmailRequestState, IssuedMetadata, Order, OrderState};

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique value (account name, user email) is already taken.
    #[error("{0} already exists")]
    Duplicate(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A row holds a value this version does not understand.
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What the worker does with a job; the payload holds ids only, never a
/// certificate or a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Forward a new order to its CA.
    SubmitOrder,
    /// Ask the CA where an order stands (after the CA said it changed).
    SyncOrder,
    /// Have the CA send an approval or fulfillment email.
    SendEmail,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::SubmitOrder => "submit_order",
            JobKind::SyncOrder => "sync_order",
            JobKind::SendEmail => "send_email",
        }
    }
    pub fn parse(s: &str) -> Option<JobKind> {
        match s {
            "submit_order" => Some(JobKind::SubmitOrder),
            "sync_order" => Some(JobKind::SyncOrder),
            "send_email" => Some(JobKind::SendEmail),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewJob {
    /// Stable key: enqueuing the same work twice keeps one job.
    pub key: String,
    pub kind: JobKind,
    /// The order or email request the job is about.
    pub target: String,
    /// Leased at once to the desk writing it, for this long: that desk runs
    /// the job itself right after the commit, without claiming it.
    pub lease_ms: Option<i64>,
}

impl NewJob {
    pub fn submit_order(order_id: &str) -> NewJob {
        NewJob {
            key: format!("submit:{order_id}"),
            kind: JobKind::SubmitOrder,
            target: order_id.to_string(),
            lease_ms: None,
        }
    }
    /// Each notice gets its own job: a notice that arrives while an earlier
    /// look is running must not be folded into it.
    pub fn sync_order(order_id: &str) -> NewJob {
        NewJob {
            key: format!("sync:{order_id}:{}", uuid::Uuid::new_v4()),
            kind: JobKind::SyncOrder,
            target: order_id.to_string(),
            lease_ms: None,
        }
    }
    pub fn send_email(request_id: &str) -> NewJob {
        NewJob {
            key: format!("email:{request_id}"),
            kind: JobKind::SendEmail,
            target: request_id.to_string(),
            lease_ms: None,
        }
    }
    /// The same job, leased at once to the desk that queues it.
    pub fn leased(mut self, lease_ms: i64) -> NewJob {
        self.lease_ms = Some(lease_ms);
        self
    }
}

#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub kind: JobKind,
    pub target: String,
    /// Including the current one.
    pub attempts: u32,
}

#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub account_id: Option<String>,
    /// A user id, or "system" / "ca:<id>".
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub detail: serde_json::Value,
}

#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub state: Option<OrderState>,
    /// A name on the order, or the registrable domain of one.
    pub domain: Option<String>,
    /// Oldest first instead of newest first.
    pub oldest_first: bool,
}

/// Position after the last order of a page (keyset paging, newest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub created_at_ms: i64,
    pub id: String,
}

#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub scope: &'static str,
    pub key: String,
}

/// A change of an order's state, applied only if the order is still in one
/// of `from` (so two racing writers cannot both move it).
#[derive(Debug, Clone)]
pub struct OrderUpdate {
    pub order_id: String,
    pub from: Vec<OrderState>,
    pub to: OrderState,
    pub ca_reference: Option<String>,
    pub failure_reason: Option<String>,
    pub certificate: Option<IssuedMetadata>,
    pub new_email: Option<EmailRequest>,
    pub jobs: Vec<NewJob>,
    /// The job this change completes, deleted in the same commit (when the
    /// change applies; otherwise it stays for its worker to complete).
    pub done_job: Option<i64>,
    pub audit: AuditEvent,
    /// The outcome of `new_email` when the email went out before the change
    /// was recorded (the fulfillment email, see `worker::record`), recorded
    /// after `audit`.
    pub email_audit: Option<AuditEvent>,
}

#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub max: u32,
    pub window_ms: i64,
}

#[derive(Debug)]
pub enum InsertOutcome<T> {
    /// Written now; with the id of the job queued beside it (None when a
    /// job with the same key was already queued).
    Created(T, Option<i64>),
    /// The idempotency key was used before: here is the first answer.
    Existing(T),
}

#[derive(Debug)]
pub enum EmailRequestOutcome {
    /// Recorded; with the id of its job when that was written leased.
    Created(EmailRequest, Option<i64>),
    Existing(EmailRequest),
    /// The order is not in the state the request needs.
    WrongState(OrderState),
    RateLimited {
        retry_after_ms: i64,
    },
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    async fn create_account(&self, name: &str) -> StoreResult<Account>;
    async fn list_accounts(&self) -> StoreResult<Vec<Account>>;
    async fn find_account(&self, id_or_name: &str) -> StoreResult<Option<Account>>;
    async fn create_user(
        &self,
        account_id: &str,
        email: &crate::domain::EmailAddress,
        role: Role,
        password_hash: Option<&str>,
    ) -> StoreResult<User>;
    async fn count_users(&self) -> StoreResult<i64>;
    async fn find_user(&self, user_id: &str) -> StoreResult<Option<User>>;
    async fn find_user_by_email(&self, email: &str) -> StoreResult<Option<(User, Option<String>)>>;
    async fn set_password_hash(&self, user_id: &str, hash: &str) -> StoreResult<()>;
    async fn create_token(&self, user_id: &str, token_hash: &[u8]) -> StoreResult<()>;
    async fn find_user_by_token_hash(&self, token_hash: &[u8]) -> StoreResult<Option<User>>;
}

#[async_trait]
pub trait OrderStore: Send + Sync {
    /// The order, its names, its first job and its audit event, in one commit.
    async fn insert_order(
        &self,
        order: &Order,
        registrable_domains: &[Option<String>],
        job: &NewJob,
        audit: &AuditEvent,
        idempotency: Option<&IdempotencyKey>,
    ) -> StoreResult<InsertOutcome<String>>;
    /// Scoped by account: another account's order is `None`.
    async fn get_order(&self, account_id: &str, order_id: &str) -> StoreResult<Option<Order>>;
    /// For the worker, which acts for the system rather than for a user.
    async fn get_order_for_system(&self, order_id: &str) -> StoreResult<Option<Order>>;
    async fn list_orders(
        &self,
        account_id: &str,
        filter: &OrderFilter,
        after: Option<&Cursor>,
        limit: u32,
    ) -> StoreResult<Vec<Order>>;
    /// Orders still waiting on their CA, for the start-up sweep.
    async fn pending_order_ids(&self) -> StoreResult<Vec<String>>;
    /// `None` (and nothing changes) when the order left `from`; otherwise
    /// the ids of the jobs it queued, in order (a job whose key is already
    /// queued is not queued again, and not among them).
    async fn update_order(&self, update: &OrderUpdate) -> StoreResult<Option<Vec<i64>>>;
}

#[async_trait]
pub trait EmailRequestStore: Send + Sync {
    /// Records a request with its job and audit event, after checking in the
    /// same transaction that the order is in `required_state`, the
    /// idempotency key and the rate limit (resends only). With `lease_ms`
    /// the job is written leased to the caller, who carries it out, and its
    /// id comes back with the request.
    async fn create_email_request(
        &self,
        request: &EmailRequest,
        required_state: OrderState,
        audit: &AuditEvent,
        idempotency: Option<&IdempotencyKey>,
        rate_limit: Option<RateLimit>,
        lease_ms: Option<i64>,
    ) -> StoreResult<EmailRequestOutcome>;
    async fn get_email_request(&self, request_id: &str) -> StoreResult<Option<EmailRequest>>;
    async fn list_email_requests(&self, order_id: &str) -> StoreResult<Vec<EmailRequest>>;
    /// The newest request of `kind` for each of the orders (one query for a
    /// page of orders).
    async fn latest_email_requests(
        &self,
        order_ids: &[String],
        kind: crate::domain::order::EmailKind,
    ) -> StoreResult<Vec<EmailRequest>>;
    /// A passing state (forwarded, queued to retry). A backend may commit it
    /// without waiting for the disk: lost in a crash, the job runs again.
    async fn set_email_request_state(
        &self,
        request_id: &str,
        state: EmailRequestState,
        error: Option<&str>,
    ) -> StoreResult<()>;
    /// For the worker that claimed a queued email: the request, marked
    /// forwarded (a passing state, as in `set_email_request_state`), with
    /// its order. `None`, and nothing changes, when the request is gone or
    /// already sent or failed.
    async fn forward_email_request(
        &self,
        request_id: &str,
    ) -> StoreResult<Option<(EmailRequest, Order)>>;
    /// Final state and the job's removal in one commit.
    async fn finish_email_request(
        &self,
        request_id: &str,
        state: EmailRequestState,
        error: Option<&str>,
        job_id: i64,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
}

#[async_trait]
pub trait JobQueue: Send + Sync {
    async fn enqueue(&self, job: &NewJob) -> StoreResult<()>;
    /// Takes the next due job and leases it for `lease_ms`.
    async fn claim(&self, lease_ms: i64) -> StoreResult<Option<Job>>;
    async fn complete(&self, job_id: i64) -> StoreResult<()>;
    async fn retry(&self, job_id: i64, run_at: OffsetDateTime, error: &str) -> StoreResult<()>;
    /// Milliseconds until the next job is due, if any is queued and not
    /// leased.
    async fn next_due_in_ms(&self) -> StoreResult<Option<i64>>;
    /// Frees leases held by a process that is gone (single-instance backends).
    async fn release_all_leases(&self) -> StoreResult<u64>;
    /// Frees this desk's leases on jobs it will not run after all (it is
    /// stopping), as if they had never been taken: due at once, for any
    /// desk, their attempt not counted.
    async fn release_leases(&self, job_ids: &[i64]) -> StoreResult<u64>;
}

/// An imported certificate (the certificate store), without its key.
#[derive(Debug, Clone)]
pub struct StoredCertificate {
    pub id: String,
    pub account_id: String,
    pub common_name: Option<String>,
    pub names: Vec<String>,
    pub issuer: String,
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub fingerprint: String,
    pub key_type: String,
    pub certificate_pem: String,
    pub chain_pem: String,
    pub csr_pem: Option<String>,
    pub notes: String,
    pub warnings: serde_json::Value,
    pub expired_on_import: bool,
    pub created_by: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A private key at rest: the key under its own data key, and the data key
/// under the master key.
#[derive(Debug, Clone)]
pub struct SealedKey {
    pub ciphertext: Vec<u8>,
    pub wrapped_key: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
pub struct CertificateFilter {
    /// A substring of one of its names.
    pub name: Option<String>,
    /// Only those that expire before this moment.
    pub expiring_before: Option<OffsetDateTime>,
}

#[async_trait]
pub trait CertificateStore: Send + Sync {
    async fn insert_certificate(
        &self,
        c: &StoredCertificate,
        key: &SealedKey,
        audit: &AuditEvent,
    ) -> StoreResult<()>;
    async fn get_certificate(
        &self,
        account_id: &str,
        id: &str,
    ) -> StoreResult<Option<StoredCertificate>>;
    async fn certificate_key(&self, account_id: &str, id: &str) -> StoreResult<Option<SealedKey>>;
    async fn list_certificates(
        &self,
        account_id: &str,
        filter: &CertificateFilter,
        after: Option<&Cursor>,
        limit: u32,
    ) -> StoreResult<Vec<StoredCertificate>>;
    /// Replaces the stored fields (notes, or a renewed certificate) and, when
    /// given, the key. False when there is no such certificate.
    async fn update_certificate(
        &self,
        c: &StoredCertificate,
        key: Option<&SealedKey>,
        audit: &AuditEvent,
    ) -> StoreResult<bool>;
    async fn delete_certificate(
        &self,
        account_id: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> StoreResult<bool>;
    async fn record_audit(&self, audit: &AuditEvent) -> StoreResult<()>;
    /// Every wrapped data key, for master-key rotation.
    async fn wrapped_keys(&self) -> StoreResult<Vec<(String, Vec<u8>)>>;
    /// Swaps one wrapped data key, if it is still `old`.
    async fn rewrap_key(&self, id: &str, old: &[u8], new: &[u8]) -> StoreResult<bool>;
}

/// A console sign-in.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub csrf_token: String,
    pub expires_at: OffsetDateTime,
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn create_session(
        &self,
        token_hash: &[u8],
        user_id: &str,
        csrf_token: &str,
        expires_at: OffsetDateTime,
    ) -> StoreResult<()>;
    /// The session, if it exists and has not expired.
    async fn find_session(&self, token_hash: &[u8]) -> StoreResult<Option<Session>>;
    async fn delete_session(&self, token_hash: &[u8]) -> StoreResult<()>;
}

#[async_trait]
pub trait AuditLog: Send + Sync {
    async fn recent_audit_events(
        &self,
        account_id: &str,
        limit: u32,
    ) -> StoreResult<Vec<(String, String, String)>>;
}

/// Everything the desk persists.
pub trait Store:
    AccountStore
    + OrderStore
    + EmailRequestStore
    + JobQueue
    + AuditLog
    + SessionStore
    + CertificateStore
{
}
impl<T> Store for T where
    T: AccountStore
        + OrderStore
        + EmailRequestStore
        + JobQueue
        + AuditLog
        + SessionStore
        + CertificateStore
{
}

pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn to_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Checks both stores run alike, called from each store's tests.
#[cfg(test)]
pub(crate) mod shared_tests {
    use super::*;

    /// Enqueues sync jobs for orders `prefix-0` to `prefix-{n-1}`, in order.
    pub(crate) async fn enqueue_syncs(queue: &dyn JobQueue, prefix: &str, n: usize) {
        for i in 0..n {
            queue
                .enqueue(&NewJob::sync_order(&format!("{prefix}-{i}")))
                .await
                .unwrap();
        }
    }

    /// With every job already in the queue leased, a claim takes the oldest
    /// due job among the free ones and those whose lease ran out, then
    /// nothing once all run.
    pub(crate) async fn a_claim_takes_the_oldest_due_job_past_the_running_ones(
        queue: &dyn JobQueue,
    ) {
        enqueue_syncs(queue, "o", 3).await;
        let running = queue.claim(60_000).await.unwrap().expect("o-0");
        assert_eq!(running.target, "o-0");
        // Its lease ran out at once: due again, and older than o-2.
        let lost = queue.claim(-1).await.unwrap().expect("o-1");
        assert_eq!(lost.target, "o-1");
        let again = queue.claim(60_000).await.unwrap().expect("o-1 again");
        assert_eq!((again.id, again.attempts), (lost.id, 2));
        let last = queue.claim(60_000).await.unwrap().expect("o-2");
        assert_eq!(last.target, "o-2");
        assert!(queue.claim(60_000).await.unwrap().is_none(), "all running");
    }
}
