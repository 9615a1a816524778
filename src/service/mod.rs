//! The use cases, one function per thing a user wants. The API, the console
//! and the CLI all come through here, and authorization is checked here,
//! once (DESIGN rule 3): every query is scoped by the actor's account, and
//! another account's order is "not found".

pub mod accounts;
pub mod approval;
pub mod certificates;
pub mod fulfillment;
pub mod keys;
pub mod orders;

use std::sync::Arc;

use tokio::sync::Notify;

use crate::ca::{CaError, CaRegistry, CertificateAuthority};
use crate::domain::account::Actor;
use crate::domain::order::{EmailKind, EmailRequest, EmailRequestState, EmailTrigger, Order};
use crate::domain::EmailAddress;
use crate::store::{AuditEvent, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A field of the request is wrong; `code` is stable and searchable.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        code: &'static str,
        message: String,
    },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("authentication required")]
    Unauthenticated,
    #[error("{0}")]
    Forbidden(String),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("too many requests; try again in {retry_after_secs} seconds")]
    RateLimited {
        retry_after_secs: u64,
        message: String,
    },
    /// The CA could not be reached; nothing changed.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    pub fn invalid(field: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        ServiceError::Invalid {
            field,
            code,
            message: message.into(),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Duplicate(what) => ServiceError::Conflict {
                code: "duplicate",
                message: format!("{what} already exists"),
            },
            other => {
                tracing::error!(error = %other, "store error");
                ServiceError::Internal(other.to_string())
            }
        }
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

#[derive(Debug, Clone)]
pub struct DeskSettings {
    /// Resends of one email kind per order per hour.
    pub resend_limit_per_hour: u32,
    pub default_ca: String,
    pub default_days: u32,
    /// Domain part of Message-IDs (the sender's domain).
    pub message_id_domain: String,
}

pub struct Desk {
    pub store: Arc<dyn Store>,
    pub cas: CaRegistry,
    pub settings: DeskSettings,
    /// Wakes the worker when a job was queued.
    pub wake: Arc<Notify>,
    /// Slots for running jobs, shared by the workers and the requests that
    /// carry out the job they queue at once (a new order's submission, a
    /// resent email): together they run at most `worker::tasks` jobs (16
    /// on SQLite, 48 on PostgreSQL). A request finding no free slot hands
    /// its job over in memory (`handoff`) or, when that is full too, leaves
    /// it in the queue.
    pub at_once: Arc<tokio::sync::Semaphore>,
    /// Jobs requests wrote leased to this desk while every slot was busy,
    /// for the next free worker (see `worker::Handoff`).
    pub handoff: crate::worker::Handoff,
    /// Seals the private keys of the certificate store.
    pub keys: Arc<crate::crypto::Keyring>,
    /// Bearer tokens recently found valid.
    pub tokens: accounts::TokenCache,
    /// Console sessions recently found valid.
    pub sessions: accounts::SessionCache,
}

impl Desk {
    pub fn ca(&self, id: &str) -> ServiceResult<&Arc<dyn CertificateAuthority>> {
        self.cas
            .get(id)
            .ok_or_else(|| ServiceError::Internal(format!("order names unknown CA {id:?}")))
    }

    /// The order, if it belongs to the actor's account.
    pub async fn scoped_order(&self, actor: &Actor, order_id: &str) -> ServiceResult<Order> {
        self.store
            .get_order(&actor.account_id, order_id)
            .await?
            .ok_or(ServiceError::NotFound("order"))
    }

    pub(crate) fn new_email_request(
        &self,
        order: &Order,
        kind: EmailKind,
        trigger: EmailTrigger,
        recipient: EmailAddress,
        requested_by: Option<&str>,
    ) -> EmailRequest {
        let id = uuid::Uuid::now_v7().to_string();
        let now = time::OffsetDateTime::now_utc();
        EmailRequest {
            message_id: format!("<{id}@{}>", self.settings.message_id_domain),
            id,
            order_id: order.id.clone(),
            kind,
            trigger,
            recipient,
            state: EmailRequestState::Queued,
            error: None,
            requested_by: requested_by.map(str::to_string),
            created_at: now,
            updated_at: now,
        }
    }
}

pub(crate) fn require_ordering_role(actor: &Actor) -> ServiceResult<()> {
    if actor.role.can_order() {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(
            "your role (viewer) can read orders but not place, cancel or resend them".into(),
        ))
    }
}

pub(crate) fn audit(
    actor: &Actor,
    action: &str,
    subject: &str,
    detail: serde_json::Value,
) -> AuditEvent {
    AuditEvent {
        account_id: Some(actor.account_id.clone()),
        actor: actor.user_id.clone(),
        action: action.to_string(),
        subject: subject.to_string(),
        detail,
    }
}

pub(crate) fn ca_error(e: CaError) -> ServiceError {
    match e {
        CaError::Transient(m) => ServiceError::Unavailable(format!("the CA is unavailable: {m}")),
        CaError::Conflict(m) => ServiceError::Conflict {
            code: "ca_conflict",
            message: m,
        },
        CaError::Refused(m) => ServiceError::Conflict {
            code: "ca_refused",
            message: m,
        },
        CaError::UnknownReference(r) => ServiceError::Internal(format!("the CA lost order {r}")),
    }
}
