//! Placing, reading, listing and cancelling orders.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::*;
use crate::domain::approver::{
    approver_addresses, approver_addresses_for_names, is_allowed_approver,
};
use crate::domain::order::{OrderState, MAX_VALIDITY_DAYS};
use crate::domain::DnsName;
use crate::pki::csr::{decode_csr, CsrPolicy, DecodedCsr};
use crate::store::{Cursor, IdempotencyKey, InsertOutcome, NewJob, OrderFilter, OrderUpdate};
use crate::worker::{self, HandedJob};

pub const LANGUAGES: [&str; 2] = ["en", "it"];

/// What a user fills in to order a certificate.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderInput {
    pub csr: String,
    pub admin_email: String,
    #[serde(default)]
    pub admin_name: String,
    #[serde(default)]
    pub approver_email: Option<String>,
    #[serde(default)]
    pub ca: Option<String>,
    #[serde(default)]
    pub days: Option<u32>,
    #[serde(default)]
    pub language: Option<String>,
}

/// An order with the history of its email requests.
#[derive(Debug, Clone, Serialize)]
pub struct OrderDetail {
    #[serde(flatten)]
    pub order: Order,
    pub status_label: &'static str,
    pub email_requests: Vec<EmailRequest>,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrderSummary {
    #[serde(flatten)]
    pub order: Order,
    pub status_label: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrderPage {
    pub orders: Vec<OrderSummary>,
    /// Pass back as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListQuery {
    pub status: Option<String>,
    pub domain: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
    /// `newest` (default) or `oldest`.
    pub sort: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ApproverChoice {
    pub registrable_domain: String,
    pub addresses: Vec<EmailAddress>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CsrSummary {
    pub common_name: Option<String>,
    pub names: Vec<String>,
    pub key_type: String,
    pub subject: String,
    pub signature_algorithm: String,
    pub approver_emails: Vec<ApproverChoice>,
}

fn csr_invalid(e: crate::pki::csr::CsrError) -> ServiceError {
    ServiceError::invalid("csr", e.code(), e.to_string())
}

fn approver_choices(names: &[DnsName]) -> Vec<ApproverChoice> {
    approver_addresses_for_names(names)
        .into_iter()
        .map(|(registrable_domain, addresses)| ApproverChoice {
            registrable_domain,
            addresses,
        })
        .collect()
}

/// Decodes a CSR for the user to check before ordering.
pub fn decode(csr: &str, policy: &CsrPolicy) -> ServiceResult<CsrSummary> {
    if csr.trim().is_empty() {
        return Err(ServiceError::invalid(
            "csr",
            "required",
            "paste the CSR (PEM)",
        ));
    }
    let d = decode_csr(csr.as_bytes(), policy).map_err(csr_invalid)?;
    Ok(summary(&d))
}

fn summary(d: &DecodedCsr) -> CsrSummary {
    CsrSummary {
        common_name: d.common_name.clone(),
        names: d.names.iter().map(|n| n.as_str().to_string()).collect(),
        key_type: d.key_type.to_string(),
        subject: d.subject.clone(),
        signature_algorithm: d.signature_algorithm.clone(),
        approver_emails: approver_choices(&d.names),
    }
}

/// The constructed approver addresses (BR 3.2.2.4.4) for one domain.
pub fn approver_emails(domain: &str) -> ServiceResult<ApproverChoice> {
    let name = DnsName::parse(domain)
        .map_err(|e| ServiceError::invalid("domain", "invalid_domain", e.to_string()))?;
    let addresses = approver_addresses(&name)
        .map_err(|e| ServiceError::invalid("domain", "no_registrable_domain", e.to_string()))?;
    Ok(ApproverChoice {
        registrable_domain: name.registrable_domain().unwrap_or_default(),
        addresses,
    })
}

fn parse_email(field: &'static str, value: &str) -> ServiceResult<EmailAddress> {
    if value.trim().is_empty() {
        return Err(ServiceError::invalid(
            field,
            "required",
            "an email address is required",
        ));
    }
    EmailAddress::parse(value)
        .map_err(|e| ServiceError::invalid(field, "invalid_email", e.to_string()))
}

fn check_admin_name(name: &str) -> ServiceResult<String> {
    let name = name.trim();
    if name.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            "admin_name",
            "invalid_text",
            "the name must not contain line breaks or control characters",
        ));
    }
    if name.chars().count() > 200 {
        return Err(ServiceError::invalid(
            "admin_name",
            "too_long",
            "at most 200 characters",
        ));
    }
    Ok(name.to_string())
}

impl Desk {
    pub async fn place_order(
        self: &Arc<Self>,
        actor: &Actor,
        input: OrderInput,
        idempotency_key: Option<String>,
    ) -> ServiceResult<OrderDetail> {
        require_ordering_role(actor)?;
        let ca_id = input
            .ca
            .clone()
            .unwrap_or_else(|| self.settings.default_ca.clone());
        let ca = self.cas.get(&ca_id).ok_or_else(|| {
            ServiceError::invalid(
                "ca",
                "unknown_ca",
                format!(
                    "no CA named {ca_id:?}; this desk has: {}",
                    self.cas.ids().join(", ")
                ),
            )
        })?;
        let policy = ca.policy();
        if input.csr.trim().is_empty() {
            return Err(ServiceError::invalid(
                "csr",
                "required",
                "paste the CSR (PEM)",
            ));
        }
        let csr = decode_csr(input.csr.as_bytes(), &policy.csr).map_err(csr_invalid)?;
        let days = input
            .days
            .unwrap_or(self.settings.default_days.min(policy.max_days));
        let max_days = policy.max_days.min(MAX_VALIDITY_DAYS);
        if days == 0 || days > max_days {
            return Err(ServiceError::invalid(
                "days",
                "invalid_validity",
                format!("validity must be between 1 and {max_days} days; {days} was asked"),
            ));
        }
        let admin_email = parse_email("admin_email", &input.admin_email)?;
        let admin_name = check_admin_name(&input.admin_name)?;
        let approver_email = match input.approver_email.as_deref().map(str::trim) {
            Some(a) if !a.is_empty() => {
                let a = parse_email("approver_email", a)?;
                if !is_allowed_approver(&csr.names, &a) {
                    let allowed: Vec<String> = approver_choices(&csr.names)
                        .iter()
                        .flat_map(|c| c.addresses.iter().map(|a| a.to_string()))
                        .collect();
                    return Err(ServiceError::invalid(
                        "approver_email",
                        "approver_not_allowed",
                        format!(
                            "{a} cannot approve {}; choose one of: {}",
                            csr.names
                                .iter()
                                .map(|n| n.as_str())
                                .collect::<Vec<_>>()
                                .join(", "),
                            allowed.join(", ")
                        ),
                    ));
                }
                Some(a)
            }
            _ if policy.needs_approver => {
                return Err(ServiceError::invalid(
                    "approver_email",
                    "required",
                    "choose the approver's address (see approver-emails for the allowed ones)",
                ))
            }
            _ => None,
        };
        let language = input.language.unwrap_or_else(|| "en".into());
        if !LANGUAGES.contains(&language.as_str()) {
            return Err(ServiceError::invalid(
                "language",
                "unsupported_language",
                format!("supported languages: {}", LANGUAGES.join(", ")),
            ));
        }
        let idempotency = idempotency_key.map(|key| IdempotencyKey {
            scope: "orders",
            key,
        });

        // To the millisecond, as stored: the answer below is this value, not
        // a read back.
        let now = crate::store::from_ms(crate::store::to_ms(OffsetDateTime::now_utc()));
        let order = Order {
            id: uuid::Uuid::now_v7().to_string(),
            account_id: actor.account_id.clone(),
            state: OrderState::Submitted,
            ca: ca_id.clone(),
            ca_reference: None,
            common_name: csr
                .common_name
                .clone()
                .unwrap_or_else(|| csr.names[0].as_str().to_string()),
            names: csr.names.iter().map(|n| n.as_str().to_string()).collect(),
            key_type: csr.key_type.to_string(),
            days,
            admin_email,
            admin_name,
            approver_email,
            language,
            failure_reason: None,
            certificate: None,
            created_by: actor.user_id.clone(),
            created_at: now,
            updated_at: now,
            csr_pem: pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", csr.der.clone())),
        };
        let registrable: Vec<Option<String>> =
            csr.names.iter().map(|n| n.registrable_domain()).collect();
        let event = audit(
            actor,
            "order.placed",
            &order.id,
            serde_json::json!({"names": order.names, "ca": ca_id, "admin_email": order.admin_email}),
        );
        // With room, the order goes to its CA right after the commit, from
        // here, holding its submission job's lease: no worker claims it (one
        // write fewer) or reads the order back. The job stays queued until
        // the CA's answer is recorded, so a crash in between loses nothing.
        // Without a free slot it is handed over in memory to the next free
        // worker, leased likewise (`worker::Handoff`); with that full too, it
        // waits in the queue for a worker to claim it.
        let at_once = self.at_once.clone().try_acquire_owned().ok();
        let handoff = match at_once {
            Some(_) => None,
            None => self.handoff.reserve(),
        };
        let job = NewJob::submit_order(&order.id);
        let job = match (&at_once, &handoff) {
            (None, None) => job,
            _ => job.leased(worker::LEASE_MS),
        };
        let outcome = self
            .store
            .insert_order(&order, &registrable, &job, &event, idempotency.as_ref())
            .await?;
        let job_id = match outcome {
            InsertOutcome::Created(_, job_id) => job_id,
            // The key's first answer, as it stands now.
            InsertOutcome::Existing(id) => return self.order_detail(actor, &id).await,
        };
        // The order as committed: just placed, no email yet. Not read back.
        let placed = OrderDetail {
            status_label: order.state.label(),
            order: order.clone(),
            email_requests: vec![],
        };
        // The CA records who asked for the certificate: the worker needs no
        // read of the user for it.
        let requester = actor.email.clone();
        match (job_id, at_once, handoff) {
            (Some(job_id), Some(permit), _) => {
                let desk = self.clone();
                tokio::spawn(async move {
                    worker::submit_placed(&desk, order, requester, job_id).await;
                    drop(permit);
                });
            }
            (Some(job_id), None, Some(place)) => {
                place.fill(HandedJob::Submit(order, requester), job_id);
                self.wake.notify_one();
            }
            _ => self.wake.notify_one(),
        }
        Ok(placed)
    }

    pub async fn order_detail(&self, actor: &Actor, order_id: &str) -> ServiceResult<OrderDetail> {
        let order = self.scoped_order(actor, order_id).await?;
        let email_requests = self.store.list_email_requests(&order.id).await?;
        Ok(OrderDetail {
            status_label: order.state.label(),
            order,
            email_requests,
        })
    }

    pub async fn list_orders(&self, actor: &Actor, q: &ListQuery) -> ServiceResult<OrderPage> {
        let state = match q.status.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => Some(OrderState::parse(s).ok_or_else(|| {
                ServiceError::invalid(
                    "status",
                    "unknown_status",
                    format!(
                        "unknown status {s:?}; use one of: {}",
                        OrderState::ALL.map(|s| s.as_str()).join(", ")
                    ),
                )
            })?),
            None => None,
        };
        let domain = match q.domain.as_deref().filter(|s| !s.is_empty()) {
            Some(d) => Some(
                DnsName::parse(d)
                    .map_err(|e| ServiceError::invalid("domain", "invalid_domain", e.to_string()))?
                    .as_str()
                    .to_string(),
            ),
            None => None,
        };
        let after = match q.cursor.as_deref().filter(|s| !s.is_empty()) {
            Some(c) => Some(decode_cursor(c)?),
            None => None,
        };
        let oldest_first = match q.sort.as_deref().filter(|s| !s.is_empty()) {
            None | Some("newest") => false,
            Some("oldest") => true,
            Some(other) => {
                return Err(ServiceError::invalid(
                    "sort",
                    "unknown_sort",
                    format!("unknown sort {other:?}; use newest or oldest"),
                ))
            }
        };
        let limit = q.limit.unwrap_or(50);
        if !(1..=200).contains(&limit) {
            return Err(ServiceError::invalid(
                "limit",
                "invalid_limit",
                "limit must be between 1 and 200",
            ));
        }
        // One extra row tells whether another page follows.
        let mut orders = self
            .store
            .list_orders(
                &actor.account_id,
                &OrderFilter {
                    state,
                    domain,
                    oldest_first,
                },
                after.as_ref(),
                limit + 1,
            )
            .await?;
        let next_cursor = if orders.len() > limit as usize {
            orders.truncate(limit as usize);
            orders.last().map(|o| {
                encode_cursor(&Cursor {
                    created_at_ms: crate::store::to_ms(o.created_at),
                    id: o.id.clone(),
                })
            })
        } else {
            None
        };
        Ok(OrderPage {
            orders: orders
                .into_iter()
                .map(|o| OrderSummary {
                    status_label: o.state.label(),
                    order: o,
                })
                .collect(),
            next_cursor,
        })
    }

    pub async fn cancel_order(&self, actor: &Actor, order_id: &str) -> ServiceResult<OrderDetail> {
        require_ordering_role(actor)?;
        // Two passes at most: the order may move from submitted to pending
        // at the CA while we look at it.
        for _ in 0..2 {
            let order = self.scoped_order(actor, order_id).await?;
            match order.state {
                OrderState::Submitted => {}
                OrderState::PendingApproval => {
                    let reference = order.ca_reference.as_deref().unwrap_or_default();
                    self.ca(&order.ca)?.cancel(reference).await.map_err(super::ca_error)?;
                }
                other => {
                    return Err(ServiceError::Conflict {
                        code: "order_not_cancellable",
                        message: format!(
                            "the order is {} and can no longer be cancelled; only orders waiting for approval can",
                            other.label().to_lowercase()
                        ),
                    })
                }
            }
            let applied = self
                .store
                .update_order(&OrderUpdate {
                    order_id: order.id.clone(),
                    from: vec![order.state],
                    to: OrderState::Cancelled,
                    ca_reference: None,
                    failure_reason: None,
                    certificate: None,
                    new_email: None,
                    jobs: vec![],
                    done_job: None,
                    email_audit: None,
                    audit: audit(actor, "order.cancelled", &order.id, serde_json::json!({})),
                })
                .await?;
            if applied.is_some() {
                return self.order_detail(actor, order_id).await;
            }
        }
        Err(ServiceError::Conflict {
            code: "order_changed",
            message: "the order changed while it was being cancelled; look at it again".into(),
        })
    }
}

pub fn encode_cursor(c: &Cursor) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(c).expect("cursor serializes"))
}

pub fn decode_cursor(s: &str) -> ServiceResult<Cursor> {
    URL_SAFE_NO_PAD
        .decode(s)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| {
            ServiceError::invalid(
                "cursor",
                "invalid_cursor",
                "the cursor is not one this desk gave out",
            )
        })
}
