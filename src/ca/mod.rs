//! Certificate authorities, reached only through [`CertificateAuthority`].
//!
//! The desk forwards orders, asks where they stand, and asks the CA to send
//! the approval and fulfillment emails. The built-in CA is one connector; an
//! ACME connector is another, and both look the same from the desk.

pub mod builtin;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::order::IssuedMetadata;
use crate::domain::{DnsName, EmailAddress};
use crate::pki::csr::CsrPolicy;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CaError {
    /// Try again later: the CA or the mail server is unreachable.
    #[error("{0}")]
    Transient(String),
    /// The CA refused for good; the message says why.
    #[error("{0}")]
    Refused(String),
    /// The CA does not know this reference.
    #[error("the CA has no order {0}")]
    UnknownReference(String),
    /// The order is in a state that does not allow this.
    #[error("{0}")]
    Conflict(String),
}

/// What the desk sends the CA for a new order.
#[derive(Debug, Clone)]
pub struct CaOrderRequest {
    /// The desk's order id: the CA keeps it, so a repeated submission of the
    /// same order returns the first one instead of a second order.
    pub desk_order_id: String,
    pub csr_der: Vec<u8>,
    pub names: Vec<DnsName>,
    pub days: u32,
    pub admin_email: EmailAddress,
    pub admin_name: String,
    pub approver_email: Option<EmailAddress>,
    pub requester: EmailAddress,
    pub language: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaOrderStatus {
    PendingApproval,
    Issued(IssuedMetadata),
    Declined,
    Cancelled,
}

#[derive(Debug, Clone)]
pub struct CaSubmission {
    pub reference: String,
    pub status: CaOrderStatus,
}

/// One email the desk asks the CA to send, for one email request.
#[derive(Debug, Clone)]
pub struct EmailDelivery {
    pub request_id: String,
    /// Stable per request, so a duplicate after a crash is recognisable.
    pub message_id: String,
    pub recipient: EmailAddress,
}

/// What a CA accepts, checked by the desk before it takes the order.
#[derive(Debug, Clone)]
pub struct CaPolicy {
    pub csr: CsrPolicy,
    pub max_days: u32,
    /// Whether the approver's address must be chosen on the order.
    pub needs_approver: bool,
}

#[async_trait]
pub trait CertificateAuthority: Send + Sync {
    /// Stable identifier used on orders and in URLs (`builtin`).
    fn id(&self) -> &str;
    /// Name shown to users.
    fn name(&self) -> &str;
    fn policy(&self) -> CaPolicy;
    async fn submit(&self, request: &CaOrderRequest) -> Result<CaSubmission, CaError>;
    async fn status(&self, reference: &str) -> Result<CaOrderStatus, CaError>;
    /// Withdraws a pending order; a `Conflict` once it is issued.
    async fn cancel(&self, reference: &str) -> Result<(), CaError>;
    async fn send_approval_email(
        &self,
        reference: &str,
        delivery: &EmailDelivery,
    ) -> Result<(), CaError>;
    async fn send_fulfillment_email(
        &self,
        reference: &str,
        delivery: &EmailDelivery,
    ) -> Result<(), CaError>;
}

/// How a CA tells the desk that one of its orders changed (approved,
/// declined), so the desk looks at it without waiting for a poll.
#[async_trait]
pub trait CaNotifier: Send + Sync {
    async fn order_changed(&self, desk_order_id: &str);
}

/// The CAs this desk forwards to, by id.
#[derive(Clone, Default)]
pub struct CaRegistry {
    cas: BTreeMap<String, Arc<dyn CertificateAuthority>>,
}

impl CaRegistry {
    pub fn add(&mut self, ca: Arc<dyn CertificateAuthority>) {
        self.cas.insert(ca.id().to_string(), ca);
    }

    pub fn get(&self, id: &str) -> Option<&Arc<dyn CertificateAuthority>> {
        self.cas.get(id)
    }

    pub fn ids(&self) -> Vec<String> {
        self.cas.keys().cloned().collect()
    }
}
