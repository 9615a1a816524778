//! Orders, their states and the email requests made for them.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::EmailAddress;

/// Where an order stands. Transitions live in [`OrderState::can_become`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Accepted by the desk, queued for the CA.
    Submitted,
    /// The CA holds it and waits for the approver.
    PendingApproval,
    /// The CA issued the certificate.
    Issued,
    /// The approver declined.
    Declined,
    /// The owner cancelled it before issuance.
    Cancelled,
    /// The CA refused it or it could not be submitted.
    Failed,
}

impl OrderState {
    pub const ALL: [OrderState; 6] = [
        OrderState::Submitted,
        OrderState::PendingApproval,
        OrderState::Issued,
        OrderState::Declined,
        OrderState::Cancelled,
        OrderState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Submitted => "submitted",
            OrderState::PendingApproval => "pending_approval",
            OrderState::Issued => "issued",
            OrderState::Declined => "declined",
            OrderState::Cancelled => "cancelled",
            OrderState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<OrderState> {
        OrderState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Words users know from other certificate consoles.
    pub fn label(self) -> &'static str {
        match self {
            OrderState::Submitted | OrderState::PendingApproval => "Pending CA approval",
            OrderState::Issued => "Complete",
            OrderState::Declined => "Declined",
            OrderState::Cancelled => "Cancelled",
            OrderState::Failed => "Failed",
        }
    }

    pub fn can_become(self, next: OrderState) -> bool {
        use OrderState::*;
        matches!(
            (self, next),
            (Submitted, PendingApproval | Issued | Cancelled | Failed)
                | (PendingApproval, Issued | Declined | Cancelled | Failed)
        )
    }

    pub fn is_final(self) -> bool {
        !matches!(self, OrderState::Submitted | OrderState::PendingApproval)
    }
}

/// Public facts about an issued certificate. The certificate itself stays
/// with the CA and the administrator (DESIGN rule 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedMetadata {
    pub serial: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    pub sha256_fingerprint: String,
    pub issuer: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Order {
    pub id: String,
    #[serde(skip)]
    pub account_id: String,
    pub state: OrderState,
    pub ca: String,
    pub ca_reference: Option<String>,
    pub common_name: String,
    pub names: Vec<String>,
    pub key_type: String,
    pub days: u32,
    pub admin_email: EmailAddress,
    pub admin_name: String,
    pub approver_email: Option<EmailAddress>,
    pub language: String,
    pub failure_reason: Option<String>,
    pub certificate: Option<IssuedMetadata>,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(skip)]
    pub csr_pem: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailKind {
    /// The CA's request to the approver.
    Approval,
    /// The certificate and its details, to the domain administrator.
    Fulfillment,
}

impl EmailKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EmailKind::Approval => "approval",
            EmailKind::Fulfillment => "fulfillment",
        }
    }
    pub fn parse(s: &str) -> Option<EmailKind> {
        match s {
            "approval" => Some(EmailKind::Approval),
            "fulfillment" => Some(EmailKind::Fulfillment),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailTrigger {
    /// Sent as part of the order's normal course.
    Initial,
    /// Asked for again by a user.
    Resend,
}

impl EmailTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            EmailTrigger::Initial => "initial",
            EmailTrigger::Resend => "resend",
        }
    }
    pub fn parse(s: &str) -> Option<EmailTrigger> {
        match s {
            "initial" => Some(EmailTrigger::Initial),
            "resend" => Some(EmailTrigger::Resend),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailRequestState {
    /// Durably queued at the desk.
    Queued,
    /// Handed to the CA.
    Forwarded,
    /// Accepted by the mail server.
    Sent,
    /// Given up, with the reason.
    Failed,
}

impl EmailRequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            EmailRequestState::Queued => "queued",
            EmailRequestState::Forwarded => "forwarded",
            EmailRequestState::Sent => "sent",
            EmailRequestState::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<EmailRequestState> {
        match s {
            "queued" => Some(EmailRequestState::Queued),
            "forwarded" => Some(EmailRequestState::Forwarded),
            "sent" => Some(EmailRequestState::Sent),
            "failed" => Some(EmailRequestState::Failed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EmailRequest {
    pub id: String,
    pub order_id: String,
    pub kind: EmailKind,
    pub trigger: EmailTrigger,
    pub recipient: EmailAddress,
    pub state: EmailRequestState,
    /// Why it failed, or why the last attempt did not go through.
    pub error: Option<String>,
    /// The user who asked; None when the desk sent it in the order's course.
    pub requested_by: Option<String>,
    pub message_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// Validity the customer may ask for: at least one day, at most the CA's
/// configured maximum, which itself never exceeds the CA/Browser Forum's 397.
pub const MAX_VALIDITY_DAYS: u32 = 397;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pending_orders_can_move_and_final_states_stay() {
        use OrderState::*;
        assert!(Submitted.can_become(PendingApproval));
        assert!(PendingApproval.can_become(Issued));
        assert!(PendingApproval.can_become(Cancelled));
        for s in [Issued, Declined, Cancelled, Failed] {
            assert!(s.is_final());
            for t in OrderState::ALL {
                assert!(!s.can_become(t), "{s:?} -> {t:?}");
            }
        }
    }

    #[test]
    fn state_names_round_trip() {
        for s in OrderState::ALL {
            assert_eq!(OrderState::parse(s.as_str()), Some(s));
        }
        assert_eq!(OrderState::parse("nope"), None);
    }
}
