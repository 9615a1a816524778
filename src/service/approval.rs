//! "Resend approval email": ask the CA to mail the approver again.

use super::fulfillment::EmailRequestAccepted;
use super::*;
use crate::domain::order::OrderState;

impl Desk {
    pub async fn resend_approval_email(
        self: &Arc<Self>,
        actor: &Actor,
        order_id: &str,
        idempotency_key: Option<String>,
    ) -> ServiceResult<EmailRequestAccepted> {
        let order = self.scoped_order(actor, order_id).await?;
        require_ordering_role(actor)?;
        let Some(approver) = order.approver_email.clone() else {
            return Err(ServiceError::Conflict {
                code: "no_approver",
                message: "this order's CA validates without an approval email".into(),
            });
        };
        self.request_email(
            actor,
            &order,
            EmailKind::Approval,
            approver,
            OrderState::PendingApproval,
            idempotency_key,
        )
        .await
    }
}
