//! "Resend email": ask the order's CA to send the fulfillment email again.
//!
//! The request is recorded, queued and audited in one commit and answered at
//! once; the desk forwards it to the CA right after, or a worker does (see
//! `Desk::request_email`).

use serde::Serialize;

use super::*;
use crate::domain::order::OrderState;
use crate::store::{EmailRequestOutcome, IdempotencyKey, RateLimit};
use crate::worker::{self, HandedJob};

const HOUR_MS: i64 = 3_600_000;

/// What the confirmation dialog shows before "Resend email".
#[derive(Debug, Clone, Serialize)]
pub struct FulfillmentEmailInfo {
    pub order_id: String,
    /// The administrator address given at order time.
    pub recipient: EmailAddress,
    pub ca: String,
    pub ca_name: String,
    /// Whether a resend is possible now (the order is issued).
    pub available: bool,
    pub requests: Vec<EmailRequest>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EmailRequestAccepted {
    pub request_id: String,
    pub order_id: String,
    pub kind: EmailKind,
    pub recipient: EmailAddress,
    pub ca: String,
    pub ca_name: String,
    pub state: EmailRequestState,
}

impl Desk {
    pub async fn fulfillment_email_info(
        &self,
        actor: &Actor,
        order_id: &str,
    ) -> ServiceResult<FulfillmentEmailInfo> {
        let order = self.scoped_order(actor, order_id).await?;
        let requests = self
            .store
            .list_email_requests(&order.id)
            .await?
            .into_iter()
            .filter(|r| r.kind == EmailKind::Fulfillment)
            .collect();
        Ok(FulfillmentEmailInfo {
            ca_name: self.ca(&order.ca)?.name().to_string(),
            order_id: order.id,
            recipient: order.admin_email,
            ca: order.ca,
            available: order.state == OrderState::Issued,
            requests,
        })
    }

    pub async fn request_fulfillment_email(
        self: &Arc<Self>,
        actor: &Actor,
        order_id: &str,
        idempotency_key: Option<String>,
    ) -> ServiceResult<EmailRequestAccepted> {
        let order = self.scoped_order(actor, order_id).await?;
        require_ordering_role(actor)?;
        let recipient = order.admin_email.clone();
        self.request_email(
            actor,
            &order,
            EmailKind::Fulfillment,
            recipient,
            OrderState::Issued,
            idempotency_key,
        )
        .await
    }

    /// Shared by the fulfillment and approval resends: one commit holds the
    /// request, its job and its audit event, after the state, idempotency
    /// and rate-limit checks.
    ///
    /// With a free slot the email goes to the CA from here, right after the
    /// commit, holding its job's lease (as a new order goes to its CA, see
    /// `place_order`): no worker claims the job, reads the request and the
    /// order back, or marks it forwarded (three writes and two reads fewer
    /// on PostgreSQL). The answer does not wait for the sending. Without a
    /// free slot it is handed over in memory, leased likewise, to the next
    /// free worker (`worker::Handoff`); with that full too, it waits in the
    /// queue for a worker to claim it.
    pub(crate) async fn request_email(
        self: &Arc<Self>,
        actor: &Actor,
        order: &Order,
        kind: EmailKind,
        recipient: EmailAddress,
        required_state: OrderState,
        idempotency_key: Option<String>,
    ) -> ServiceResult<EmailRequestAccepted> {
        let ca = self.ca(&order.ca)?;
        let at_once = self.at_once.clone().try_acquire_owned().ok();
        let handoff = match at_once {
            Some(_) => None,
            None => self.handoff.reserve(),
        };
        let mut request = self.new_email_request(
            order,
            kind,
            EmailTrigger::Resend,
            recipient,
            Some(&actor.user_id),
        );
        if at_once.is_some() {
            request.state = EmailRequestState::Forwarded;
        }
        let event = audit(
            actor,
            &format!("email.{}.requested", kind.as_str()),
            &order.id,
            serde_json::json!({"request_id": request.id, "recipient": request.recipient, "ca": order.ca}),
        );
        let scope = match kind {
            EmailKind::Fulfillment => "fulfillment-email",
            EmailKind::Approval => "approval-email",
        };
        let idempotency = idempotency_key.map(|key| IdempotencyKey { scope, key });
        let limit = RateLimit {
            max: self.settings.resend_limit_per_hour,
            window_ms: HOUR_MS,
        };
        let outcome = self
            .store
            .create_email_request(
                &request,
                required_state,
                &event,
                idempotency.as_ref(),
                Some(limit),
                (at_once.is_some() || handoff.is_some()).then_some(worker::LEASE_MS),
            )
            .await?;
        let accepted = match outcome {
            EmailRequestOutcome::Created(r, job_id) => {
                match (job_id, at_once, handoff) {
                    (Some(job_id), Some(slot), _) => {
                        let (desk, request, order) = (self.clone(), r.clone(), order.clone());
                        tokio::spawn(async move {
                            worker::deliver_requested(&desk, request, &order, job_id).await;
                            drop(slot);
                        });
                    }
                    (Some(job_id), None, Some(place)) => {
                        place.fill(HandedJob::Email(r.clone(), order.clone()), job_id);
                        self.wake.notify_one();
                    }
                    _ => self.wake.notify_one(),
                }
                r
            }
            EmailRequestOutcome::Existing(r) => r,
            EmailRequestOutcome::WrongState(state) => {
                let message = match kind {
                    EmailKind::Fulfillment => format!(
                        "the order is {}: the fulfillment email can be sent again only once the certificate is issued",
                        state.label().to_lowercase()
                    ),
                    EmailKind::Approval => format!(
                        "the order is {}: the approval email can be sent again only while the order waits for approval",
                        state.label().to_lowercase()
                    ),
                };
                return Err(ServiceError::Conflict {
                    code: "order_state",
                    message,
                });
            }
            EmailRequestOutcome::RateLimited { retry_after_ms } => {
                let secs = ((retry_after_ms + 999) / 1000) as u64;
                return Err(ServiceError::RateLimited {
                    retry_after_secs: secs,
                    message: format!(
                        "this email was already requested {} times in the last hour; the next request is possible in {}",
                        self.settings.resend_limit_per_hour,
                        human_duration(secs)
                    ),
                });
            }
        };
        Ok(EmailRequestAccepted {
            request_id: accepted.id,
            order_id: order.id.clone(),
            kind,
            recipient: accepted.recipient,
            ca: order.ca.clone(),
            ca_name: ca.name().to_string(),
            state: accepted.state,
        })
    }
}

pub fn human_duration(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs} seconds"),
        60..=3599 => format!("{} minutes", secs.div_ceil(60)),
        _ => format!("{} hours", secs.div_ceil(3600)),
    }
}
