//! Takes jobs from the queue and carries them out: forward orders to their
//! CA, follow up on what the CA says, have the CA send emails. Failures that
//! may pass (an unreachable CA or mail server, SMTP 4xx) are retried with
//! exponential backoff; the rest fail the order or the email request with
//! the reason, for the user to see.
//!
//! A job is deleted only after its effect is recorded. If the process dies
//! between the mail server accepting a message and the desk recording it
//! (one database round trip), the job runs again and the message goes out a
//! second time with the same Message-ID, so the duplicate is recognisable.
//! The first fulfillment email of an order is sent before the order is
//! recorded issued (see `record`): there the submission runs again, and the
//! duplicate carries the same certificate under a new Message-ID.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rand::Rng;
use time::OffsetDateTime;

use crate::ca::{
    CaError, CaNotifier, CaOrderRequest, CaOrderStatus, CertificateAuthority, EmailDelivery,
};
use crate::domain::order::{
    EmailKind, EmailRequest, EmailRequestState, EmailTrigger, Order, OrderState,
};
use crate::domain::{DnsName, EmailAddress};
use crate::service::Desk;
use crate::store::{AuditEvent, Job, JobKind, NewJob, OrderUpdate, StoreError};

/// Jobs carried out at once on SQLite. Most of a job's time is spent
/// waiting (on the SMTP server, on the database writer, which commits
/// whatever is waiting in one transaction), so more tasks than cores keep
/// both busy. Measured with scripts/bench: see docs/PERFORMANCE.md.
pub const TASKS: usize = 16;

/// Jobs carried out at once on PostgreSQL. A job's writes there wait for
/// the statement of their kind ahead of them (see `store::postgres`'s
/// grouped writes), so more jobs at once make bigger statements, each
/// certificate's share of them cheaper: issuance ran 1.13 times as fast
/// with 48 as with 16 (median of seven alternating pairs), resends
/// accepted as fast. On SQLite the same 48 cost resends accepted a third,
/// so each store keeps its own number (docs/PERFORMANCE.md, *48 jobs at
/// once on PostgreSQL*).
pub const TASKS_POSTGRES: usize = 48;

/// The jobs to carry out at once on the store `serve` opened.
pub fn tasks(on_postgres: bool) -> usize {
    if on_postgres {
        TASKS_POSTGRES
    } else {
        TASKS
    }
}

/// An idle worker looks at the queue again after this long on average,
/// times its share of [`TASKS`] (see [`idle_look`]), for the jobs nobody
/// woke it for: another desk's, a retry come due.
const IDLE_LOOK_MS: u64 = 1000;

/// How long an idle worker of `tasks` waits before it looks at the queue
/// again, when the next job is due in `due_in_ms` (or none is).
/// Each worker looks less often the more there are (48 on PostgreSQL
/// looked three times as often as 16 with nothing to do: 2.8 % of a core
/// between the desk and the server, against 0.95 %), at a random point
/// around its mean so that they do not look together: the desk's idle
/// queries stay at [`TASKS`] looks a second, and some worker looks every
/// `IDLE_LOOK_MS / TASKS` on average, however many run. A job due sooner
/// is looked for when it is due.
fn idle_look(tasks: usize, due_in_ms: Option<i64>) -> Duration {
    let mean = IDLE_LOOK_MS * tasks.max(TASKS) as u64 / TASKS as u64;
    let look = rand::thread_rng().gen_range(mean / 2..=mean * 3 / 2);
    Duration::from_millis(due_in_ms.map_or(look, |ms| ms.clamp(10, look as i64) as u64))
}

/// A job is leased for this long; a worker that dies frees it when it ends.
pub const LEASE_MS: i64 = 5 * 60 * 1000;
/// After this many attempts a transient failure becomes final.
pub const MAX_ATTEMPTS: u32 = 20;
const MAX_BACKOFF_SECS: f64 = 300.0;

/// Jobs waiting in memory for a slot (see [`Handoff`]) at most.
pub const HANDOFF_CAPACITY: usize = 1024;

/// Jobs a request wrote leased to this desk when every slot was busy,
/// waiting in memory for the next free slot: the worker that takes one runs
/// it from what the request already holds, with no claim and no read of the
/// order or the email request back from the database (on PostgreSQL, two
/// statements and a transaction fewer per email). Full, requests leave their
/// jobs in the database queue as before.
///
/// Memory holds nothing the database does not: each job is in the queue,
/// leased to this desk. If the desk dies the lease is freed when it starts
/// again (or, on PostgreSQL, when the lease runs out and another desk claims
/// it), and the job runs then. A job that waited here for half its lease is
/// left to that claim instead of run from here, so that it never runs twice.
pub struct Handoff<J = HandedJob> {
    inner: Mutex<Waiting<J>>,
}

struct Waiting<J> {
    jobs: VecDeque<Handed<J>>,
    /// Places promised to requests still writing their job.
    reserved: usize,
}

struct Handed<J> {
    job: J,
    job_id: i64,
    since: Instant,
}

impl<J> Default for Handoff<J> {
    fn default() -> Self {
        Handoff {
            inner: Mutex::new(Waiting {
                jobs: VecDeque::new(),
                reserved: 0,
            }),
        }
    }
}

/// What a handed-over job carries: all its running needs.
pub enum HandedJob {
    /// An order placed a moment ago, for its CA, with the address of the
    /// user who placed it (the requester the CA records).
    Submit(Order, EmailAddress),
    /// An email requested a moment ago, for the order's CA to send.
    Email(EmailRequest, Order),
}

impl<J> Handoff<J> {
    /// A place for one job, if there is room. Reserve before writing the
    /// job, so that it is written leased only when it will be run from here.
    pub fn reserve(&self) -> Option<Place<'_, J>> {
        let mut w = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if w.jobs.len() + w.reserved >= HANDOFF_CAPACITY {
            return None;
        }
        w.reserved += 1;
        Some(Place {
            handoff: self,
            taken: false,
        })
    }

    /// Every job waiting, taken out: the ids of jobs this desk will not run
    /// (it is stopping).
    pub fn drain(&self) -> Vec<i64> {
        let mut w = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        w.jobs.drain(..).map(|h| h.job_id).collect()
    }

    /// The oldest job waiting that is still safe to run from here.
    pub fn take(&self) -> Option<(J, i64)> {
        let mut w = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(h) = w.jobs.pop_front() {
            if h.since.elapsed() < Duration::from_millis(LEASE_MS as u64 / 2) {
                return Some((h.job, h.job_id));
            }
            tracing::warn!(
                job = h.job_id,
                "a job waited too long for a free slot; it runs once its lease runs out"
            );
        }
        None
    }
}

/// A reserved place in the [`Handoff`]; given back if not filled.
pub struct Place<'a, J> {
    handoff: &'a Handoff<J>,
    taken: bool,
}

impl<J> Place<'_, J> {
    /// Hands the job, written leased as `job_id`, to the next free worker.
    pub fn fill(mut self, job: J, job_id: i64) {
        let mut w = self.handoff.inner.lock().unwrap_or_else(|e| e.into_inner());
        w.reserved -= 1;
        w.jobs.push_back(Handed {
            job,
            job_id,
            since: Instant::now(),
        });
        self.taken = true;
    }
}

impl<J> Drop for Place<'_, J> {
    fn drop(&mut self) {
        if !self.taken {
            let mut w = self.handoff.inner.lock().unwrap_or_else(|e| e.into_inner());
            w.reserved -= 1;
        }
    }
}

enum Outcome {
    Done,
    /// Done, and the job row was already deleted in the transaction that
    /// recorded the effect: no second write to remove it.
    Recorded,
    /// Try again later, with this reason recorded.
    Retry(String),
}

/// Starts `tasks` workers. Each sleeps until woken or until the next job is due.
pub async fn spawn(desk: Arc<Desk>, tasks: usize) -> Result<(), StoreError> {
    // Leases left by a run that is gone are stale: on SQLite every lease (one
    // desk process), on PostgreSQL those of desks that no longer run. The
    // orders still waiting for their CA are listed in the same moment (on
    // PostgreSQL, another connection).
    let (freed, pending) = tokio::try_join!(
        desk.store.release_all_leases(),
        desk.store.pending_order_ids()
    )?;
    if freed > 0 {
        tracing::info!(
            jobs = freed,
            "resuming jobs left running by the previous run"
        );
    }
    // The CA may have decided orders while the desk was down.
    for id in pending {
        desk.store.enqueue(&NewJob::sync_order(&id)).await?;
    }
    for _ in 0..tasks {
        let desk = desk.clone();
        tokio::spawn(async move { run(desk, tasks).await });
    }
    Ok(())
}

async fn run(desk: Arc<Desk>, tasks: usize) {
    let mut turn = 0u32;
    loop {
        // The slot is shared with the jobs requests carry out at once
        // (`Desk::at_once`): a flood of them waits in the handoff or the
        // queue instead of multiplying the jobs running at the same time.
        let Ok(slot) = desk.at_once.clone().acquire_owned().await else {
            return;
        };
        // Jobs handed over in memory go first, but every fourth turn the
        // queue does, so that jobs due there (retries, a CA's news, what
        // did not fit in the handoff) are not held back by a steady stream.
        turn = turn.wrapping_add(1);
        if turn % 4 != 0 {
            if let Some((job, job_id)) = desk.handoff.take() {
                run_handed(&desk, job, job_id).await;
                continue;
            }
        }
        let claimed = desk.store.claim(LEASE_MS).await;
        if let Ok(Some(job)) = &claimed {
            let outcome = execute(&desk, job).await;
            settle(&desk, job, outcome).await;
            continue;
        }
        if let Some((job, job_id)) = desk.handoff.take() {
            run_handed(&desk, job, job_id).await;
            continue;
        }
        drop(slot);
        match claimed {
            Ok(_) => {
                let wait = idle_look(tasks, desk.store.next_due_in_ms().await.ok().flatten());
                let _ = tokio::time::timeout(wait, desk.wake.notified()).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the job queue");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn run_handed(desk: &Desk, job: HandedJob, job_id: i64) {
    match job {
        HandedJob::Submit(order, requester) => submit_placed(desk, order, requester, job_id).await,
        HandedJob::Email(request, order) => deliver_requested(desk, request, &order, job_id).await,
    }
}

/// Records what running a job came to: gone when done, due again later
/// when it must be retried.
async fn settle(desk: &Desk, job: &Job, outcome: Result<Outcome, StoreError>) {
    let (id, attempts) = (job.id, job.attempts);
    let recorded = match outcome {
        Ok(Outcome::Done) => desk.store.complete(id).await,
        Ok(Outcome::Recorded) => Ok(()),
        Ok(Outcome::Retry(reason)) => {
            let at = OffsetDateTime::now_utc() + backoff(attempts);
            tracing::warn!(job = id, attempts, reason = %reason, "job will be retried");
            desk.store.retry(id, at, &reason).await
        }
        Err(e) => {
            let at = OffsetDateTime::now_utc() + backoff(attempts);
            tracing::error!(job = id, error = %e, "job failed on the desk's database; retrying");
            desk.store.retry(id, at, &e.to_string()).await
        }
    };
    if let Err(e) = recorded {
        tracing::error!(job = id, error = %e, "could not record a job's outcome");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn backoff(attempts: u32) -> time::Duration {
    let base = 2f64
        .powi(attempts.saturating_sub(1).min(16) as i32)
        .min(MAX_BACKOFF_SECS);
    let jitter = rand::thread_rng().gen_range(0.8..1.2);
    time::Duration::seconds_f64(base * jitter)
}

async fn execute(desk: &Desk, job: &Job) -> Result<Outcome, StoreError> {
    match job.kind {
        JobKind::SubmitOrder => submit_order(desk, job).await,
        JobKind::SyncOrder => sync_order(desk, &job.target).await,
        JobKind::SendEmail => send_email(desk, job).await,
    }
}

fn system_audit(order: &Order, action: &str, detail: serde_json::Value) -> AuditEvent {
    AuditEvent {
        account_id: Some(order.account_id.clone()),
        actor: format!("ca:{}", order.ca),
        action: action.to_string(),
        subject: order.id.clone(),
        detail,
    }
}

/// The order's change after the CA reported `status`, with the email that
/// follows it (approval request, or the fulfillment email once issued).
fn update_for_status(
    desk: &Desk,
    order: &Order,
    from: OrderState,
    reference: Option<String>,
    status: CaOrderStatus,
) -> Option<OrderUpdate> {
    let mut update = OrderUpdate {
        order_id: order.id.clone(),
        from: vec![from],
        to: from,
        ca_reference: reference,
        failure_reason: None,
        certificate: None,
        new_email: None,
        jobs: vec![],
        done_job: None,
        email_audit: None,
        audit: system_audit(order, "", serde_json::json!({})),
    };
    let email = |kind, recipient| {
        desk.new_email_request(order, kind, EmailTrigger::Initial, recipient, None)
    };
    match status {
        CaOrderStatus::PendingApproval => {
            if from == OrderState::PendingApproval {
                return None;
            }
            update.to = OrderState::PendingApproval;
            update.audit.action = "order.submitted".into();
            if let Some(approver) = order.approver_email.clone() {
                update.new_email = Some(email(EmailKind::Approval, approver));
            }
        }
        CaOrderStatus::Issued(meta) => {
            update.to = OrderState::Issued;
            update.audit.action = "order.issued".into();
            update.audit.detail = serde_json::json!({"serial": meta.serial});
            update.certificate = Some(meta);
            update.new_email = Some(email(EmailKind::Fulfillment, order.admin_email.clone()));
        }
        CaOrderStatus::Declined => {
            update.to = OrderState::Declined;
            update.audit.action = "order.declined".into();
        }
        CaOrderStatus::Cancelled => {
            update.to = OrderState::Cancelled;
            update.audit.action = "order.cancelled_at_ca".into();
        }
    }
    if let Some(r) = &mut update.new_email {
        // Leased to this worker in the same commit: it sends the email right
        // after (see `record`), with no claim, no second read of the request
        // and the order, and no other worker woken for it. As it goes to the
        // CA at once it is written as forwarded, not queued then forwarded:
        // one write fewer per email.
        r.state = EmailRequestState::Forwarded;
        update.jobs.push(NewJob::send_email(&r.id).leased(LEASE_MS));
    }
    Some(update)
}

/// A job this desk wrote leased to itself: it runs it without a claim, and
/// the write counted as its first attempt.
fn written_leased(id: i64, kind: JobKind, target: &str) -> Job {
    Job {
        id,
        kind,
        target: target.to_string(),
        attempts: 1,
    }
}

/// Records the order's change with the email that follows it.
///
/// The fulfillment email goes out first, and the order is recorded issued
/// with the email already sent (or failed) in one commit: one durable write
/// per certificate fewer than recording the issue, sending, then recording
/// the send (measured with scripts/bench, see docs/PERFORMANCE.md). The
/// submission job, leased to this worker, stays until that commit, so if
/// the desk dies after the mail server took the message the submission runs
/// again, the CA answers with the certificate it issued, and the email goes
/// out a second time (same certificate, a new request and Message-ID). A
/// send still going after [`SEND_FIRST_WAIT`] does not hold the order back:
/// it is recorded issued with the email forwarded, and the send is recorded
/// when it ends. Other emails (the approval request) are recorded before
/// they go out: the approver's answer must find the order waiting for it.
///
/// False when the order had moved on (cancelled while at the CA).
async fn record(desk: &Desk, order: &Order, update: OrderUpdate) -> Result<bool, StoreError> {
    let mut after = order.clone();
    after.state = update.to;
    after.ca_reference = update.ca_reference.clone().or(after.ca_reference);
    after.certificate = update.certificate.clone().or(after.certificate);
    match &update.new_email {
        Some(r) if r.kind == EmailKind::Fulfillment && update.to == OrderState::Issued => {
            let request = r.clone();
            send_then_record(desk, &after, update, request).await
        }
        _ => record_then_send(desk, after, update).await,
    }
}

/// How long a fulfillment email may take before its order is recorded
/// issued without waiting for it. A mail server answers in milliseconds;
/// one that hangs must not leave the order looking unissued.
const SEND_FIRST_WAIT: Duration = Duration::from_secs(2);

async fn send_then_record(
    desk: &Desk,
    order: &Order,
    mut update: OrderUpdate,
    request: EmailRequest,
) -> Result<bool, StoreError> {
    let (Some(ca), Some(reference)) = (desk.cas.get(&order.ca), order.ca_reference.as_deref())
    else {
        return record_then_send(desk, order.clone(), update).await;
    };
    let sending = send(ca.as_ref(), reference, &request);
    tokio::pin!(sending);
    let result = match tokio::time::timeout(SEND_FIRST_WAIT, &mut sending).await {
        Ok(result) => result,
        Err(_) => {
            // Recorded issued with the email forwarded and its job leased,
            // as when it is sent after; its outcome is recorded when known.
            let Some(queued) = desk.store.update_order(&update).await? else {
                return Ok(false);
            };
            if let [job_id] = queued[..] {
                let job = written_leased(job_id, JobKind::SendEmail, &request.id);
                let result = sending.await;
                let outcome = conclude(desk, &job, request.clone(), order, result).await;
                settle(desk, &job, outcome).await;
            }
            return Ok(true);
        }
    };
    // The first attempt: its outcome goes into the order's commit.
    let (state, error, retry) = match email_outcome(1, result) {
        EmailOutcome::Final(state, error) => (state, error, None),
        EmailOutcome::Retry(m) => (
            EmailRequestState::Queued,
            Some(format!("will retry: {m}")),
            Some(m),
        ),
    };
    let email = update.new_email.as_mut().expect("the fulfillment email");
    email.state = state;
    email.error = error.clone();
    if retry.is_none() {
        // Sent or failed for good: nothing left to run.
        update.jobs.clear();
        update.email_audit = Some(email_audit(order, &request, state, error));
    }
    let Some(queued) = desk.store.update_order(&update).await? else {
        if state == EmailRequestState::Sent {
            tracing::warn!(
                order = %order.id,
                "the fulfillment email went out, but the order was cancelled meanwhile"
            );
        }
        return Ok(false);
    };
    if let (Some(reason), [job_id]) = (retry, &queued[..]) {
        // Written leased: freed now, due after the backoff.
        let job = written_leased(*job_id, JobKind::SendEmail, &request.id);
        settle(desk, &job, Ok(Outcome::Retry(reason))).await;
    }
    Ok(true)
}

/// Records the order's change; then sends the email it queued, as the
/// holder of that email's lease.
async fn record_then_send(
    desk: &Desk,
    order: Order,
    update: OrderUpdate,
) -> Result<bool, StoreError> {
    let Some(queued) = desk.store.update_order(&update).await? else {
        return Ok(false);
    };
    match (update.new_email, &update.jobs[..], &queued[..]) {
        // The one job queued is the email's, leased to us: send it now.
        (Some(request), [job], [job_id]) if job.lease_ms.is_some() && job.target == request.id => {
            deliver_requested(desk, request, &order, *job_id).await;
        }
        // Anything else queued is for whichever worker claims it.
        (_, _, [_, ..]) => desk.wake.notify_one(),
        _ => {}
    }
    Ok(true)
}

async fn fail_order(desk: &Desk, order: &Order, reason: String) -> Result<Outcome, StoreError> {
    desk.store
        .update_order(&OrderUpdate {
            order_id: order.id.clone(),
            from: vec![OrderState::Submitted, OrderState::PendingApproval],
            to: OrderState::Failed,
            ca_reference: None,
            failure_reason: Some(reason.clone()),
            certificate: None,
            new_email: None,
            jobs: vec![],
            done_job: None,
            email_audit: None,
            audit: system_audit(order, "order.failed", serde_json::json!({"reason": reason})),
        })
        .await?;
    Ok(Outcome::Done)
}

async fn submit_order(desk: &Desk, job: &Job) -> Result<Outcome, StoreError> {
    let Some(order) = desk.store.get_order_for_system(&job.target).await? else {
        return Ok(Outcome::Done);
    };
    if order.state != OrderState::Submitted {
        return Ok(Outcome::Done);
    }
    submit(desk, job, order, None).await
}

/// Submits an order placed a moment ago by `requester`, as the holder of the
/// lease its submission job was written with (see `Desk::place_order`).
pub async fn submit_placed(desk: &Desk, order: Order, requester: EmailAddress, job_id: i64) {
    let job = written_leased(job_id, JobKind::SubmitOrder, &order.id);
    let outcome = submit(desk, &job, order, Some(requester)).await;
    settle(desk, &job, outcome).await;
}

/// `requester`: the placing user's address when the caller holds it; read
/// from the store otherwise.
async fn submit(
    desk: &Desk,
    job: &Job,
    order: Order,
    requester: Option<EmailAddress>,
) -> Result<Outcome, StoreError> {
    let Some(ca) = desk.cas.get(&order.ca) else {
        return fail_order(
            desk,
            &order,
            format!("this desk no longer has CA {:?}", order.ca),
        )
        .await;
    };
    let request = match ca_request(desk, &order, requester).await? {
        Ok(r) => r,
        Err(reason) => return fail_order(desk, &order, reason).await,
    };
    let submission = match ca.submit(&request).await {
        Ok(s) => s,
        Err(CaError::Transient(m)) if job.attempts < MAX_ATTEMPTS => return Ok(Outcome::Retry(m)),
        Err(e) => return fail_order(desk, &order, format!("the CA refused the order: {e}")).await,
    };
    let reference = submission.reference.clone();
    let Some(mut update) = update_for_status(
        desk,
        &order,
        OrderState::Submitted,
        Some(reference.clone()),
        submission.status,
    ) else {
        return Ok(Outcome::Done);
    };
    // The submission is done when its outcome is recorded: one commit for
    // both (one commit fewer per certificate).
    update.done_job = Some(job.id);
    if !record(desk, &order, update).await? {
        // Cancelled while we were at the CA: withdraw it there too.
        if let Err(e) = ca.cancel(&reference).await {
            tracing::warn!(order = %order.id, error = %e, "could not withdraw a cancelled order at the CA");
        }
        return Ok(Outcome::Done);
    }
    Ok(Outcome::Recorded)
}

/// The request for the CA, or why the stored order cannot make one (a
/// database error is returned apart, to be retried). The requester is the
/// user who placed the order: the placing request hands its address over
/// with the order (on PostgreSQL a read of the user is a round trip, 6 % of
/// the desk's CPU per certificate in the issuance benchmark); a job claimed
/// from the queue reads it. A user deleted since gives the order's
/// administrator instead.
async fn ca_request(
    desk: &Desk,
    order: &Order,
    requester: Option<EmailAddress>,
) -> Result<Result<CaOrderRequest, String>, StoreError> {
    let requester = match requester {
        Some(r) => r,
        None => desk
            .store
            .find_user(&order.created_by)
            .await?
            .map(|u| u.email)
            .unwrap_or_else(|| order.admin_email.clone()),
    };
    let csr_der = match pem::parse(&order.csr_pem) {
        Ok(p) => p.into_contents(),
        Err(e) => return Ok(Err(format!("stored CSR unreadable: {e}"))),
    };
    let names = match order
        .names
        .iter()
        .map(|n| DnsName::parse(n))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(n) => n,
        Err(e) => return Ok(Err(e.to_string())),
    };
    Ok(Ok(CaOrderRequest {
        desk_order_id: order.id.clone(),
        csr_der,
        names,
        days: order.days,
        admin_email: order.admin_email.clone(),
        admin_name: order.admin_name.clone(),
        approver_email: order.approver_email.clone(),
        requester,
        language: order.language.clone(),
    }))
}

async fn sync_order(desk: &Desk, order_id: &str) -> Result<Outcome, StoreError> {
    let Some(order) = desk.store.get_order_for_system(order_id).await? else {
        return Ok(Outcome::Done);
    };
    if order.state != OrderState::PendingApproval {
        return Ok(Outcome::Done);
    }
    let (Some(ca), Some(reference)) = (desk.cas.get(&order.ca), order.ca_reference.clone()) else {
        return Ok(Outcome::Done);
    };
    let status = match ca.status(&reference).await {
        Ok(s) => s,
        Err(CaError::Transient(m)) => return Ok(Outcome::Retry(m)),
        Err(e) => return fail_order(desk, &order, e.to_string()).await,
    };
    if let Some(update) = update_for_status(desk, &order, OrderState::PendingApproval, None, status)
    {
        record(desk, &order, update).await?;
    }
    Ok(Outcome::Done)
}

/// Has the CA send an email requested a moment ago, as the holder of the
/// lease its job was written with.
pub async fn deliver_requested(desk: &Desk, request: EmailRequest, order: &Order, job_id: i64) {
    let job = written_leased(job_id, JobKind::SendEmail, &request.id);
    let outcome = deliver(desk, &job, request, order).await;
    settle(desk, &job, outcome).await;
}

async fn send_email(desk: &Desk, job: &Job) -> Result<Outcome, StoreError> {
    let Some((request, order)) = desk.store.forward_email_request(&job.target).await? else {
        return Ok(Outcome::Done);
    };
    deliver(desk, job, request, &order).await
}

/// Has the order's CA send the email, and records how it went. The request
/// comes forwarded (written so when it was sent at once from the request
/// that wrote it, marked so when a worker took it: `forward_email_request`)
/// or queued (handed over in memory, see [`Handoff`]: it goes from queued to
/// sent with no write in between).
async fn deliver(
    desk: &Desk,
    job: &Job,
    request: EmailRequest,
    order: &Order,
) -> Result<Outcome, StoreError> {
    let (Some(ca), Some(reference)) = (desk.cas.get(&order.ca), order.ca_reference.as_deref())
    else {
        let error = Some("the order has no CA to send it".to_string());
        let audit = email_audit(order, &request, EmailRequestState::Failed, error.clone());
        desk.store
            .finish_email_request(
                &request.id,
                EmailRequestState::Failed,
                error.as_deref(),
                job.id,
                &audit,
            )
            .await?;
        return Ok(Outcome::Recorded);
    };
    let result = send(ca.as_ref(), reference, &request).await;
    conclude(desk, job, request, order, result).await
}

/// The email handed to the CA that sends it.
async fn send(
    ca: &dyn CertificateAuthority,
    reference: &str,
    request: &EmailRequest,
) -> Result<(), CaError> {
    let delivery = EmailDelivery {
        request_id: request.id.clone(),
        message_id: request.message_id.clone(),
        recipient: request.recipient.clone(),
    };
    match request.kind {
        EmailKind::Approval => ca.send_approval_email(reference, &delivery).await,
        EmailKind::Fulfillment => ca.send_fulfillment_email(reference, &delivery).await,
    }
}

/// What a send came to, for the request.
enum EmailOutcome {
    /// Sent, or failed for good, with the reason.
    Final(EmailRequestState, Option<String>),
    /// Failed in a way that may pass: try again later.
    Retry(String),
}

fn email_outcome(attempts: u32, result: Result<(), CaError>) -> EmailOutcome {
    match result {
        Ok(()) => EmailOutcome::Final(EmailRequestState::Sent, None),
        Err(CaError::Transient(m)) if attempts < MAX_ATTEMPTS => EmailOutcome::Retry(m),
        Err(CaError::Transient(m)) => EmailOutcome::Final(
            EmailRequestState::Failed,
            Some(format!("gave up after {attempts} attempts: {m}")),
        ),
        Err(e) => EmailOutcome::Final(EmailRequestState::Failed, Some(e.to_string())),
    }
}

fn email_audit(
    order: &Order,
    request: &EmailRequest,
    state: EmailRequestState,
    error: Option<String>,
) -> AuditEvent {
    let action = format!(
        "email.{}.{}",
        request.kind.as_str(),
        if state == EmailRequestState::Sent {
            "sent"
        } else {
            "failed"
        }
    );
    system_audit(
        order,
        &action,
        serde_json::json!({"request_id": request.id, "error": error}),
    )
}

/// Records a send's outcome: the request sent or failed with its job gone,
/// or queued again with its job due after the backoff.
async fn conclude(
    desk: &Desk,
    job: &Job,
    request: EmailRequest,
    order: &Order,
    result: Result<(), CaError>,
) -> Result<Outcome, StoreError> {
    let (state, error) = match email_outcome(job.attempts, result) {
        EmailOutcome::Final(state, error) => (state, error),
        EmailOutcome::Retry(m) => {
            desk.store
                .set_email_request_state(
                    &request.id,
                    EmailRequestState::Queued,
                    Some(&format!("will retry: {m}")),
                )
                .await?;
            return Ok(Outcome::Retry(m));
        }
    };
    let audit = email_audit(order, &request, state, error.clone());
    // The state and the job's removal commit together: the job is gone
    // exactly when the request is recorded as sent or failed.
    desk.store
        .finish_email_request(&request.id, state, error.as_deref(), job.id, &audit)
        .await?;
    Ok(Outcome::Recorded)
}

/// The desk's side of [`CaNotifier`]: a CA said an order changed, so queue a
/// look at it.
pub struct QueueNotifier {
    pub desk: std::sync::Weak<Desk>,
}

#[async_trait]
impl CaNotifier for QueueNotifier {
    async fn order_changed(&self, desk_order_id: &str) {
        let Some(desk) = self.desk.upgrade() else {
            return;
        };
        // If this fails the start-up sweep still finds the order pending.
        if let Err(e) = desk.store.enqueue(&NewJob::sync_order(desk_order_id)).await {
            tracing::error!(order = %desk_order_id, error = %e, "could not queue an order update");
        }
        desk.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mean idle wait of `tasks` workers with nothing queued, in ms.
    fn mean_idle_look(tasks: usize) -> f64 {
        let looks: Vec<u128> = (0..2000)
            .map(|_| idle_look(tasks, None).as_millis())
            .collect();
        looks.iter().sum::<u128>() as f64 / looks.len() as f64
    }

    #[test]
    fn idle_workers_query_the_queue_as_often_however_many_run() {
        // Looks a second, all workers together: TASKS, within a tenth.
        for tasks in [TASKS, TASKS_POSTGRES] {
            let per_second = tasks as f64 * 1000.0 / mean_idle_look(tasks);
            assert!(
                (per_second - TASKS as f64).abs() < TASKS as f64 / 10.0,
                "{tasks} workers look {per_second:.1} times a second"
            );
        }
        // Spread, so that they do not look together.
        let looks: std::collections::HashSet<u128> = (0..100)
            .map(|_| idle_look(TASKS_POSTGRES, None).as_millis())
            .collect();
        assert!(looks.len() > 50, "{} distinct waits in 100", looks.len());
    }

    #[test]
    fn an_idle_worker_looks_when_the_next_job_is_due() {
        for tasks in [TASKS, TASKS_POSTGRES] {
            assert_eq!(idle_look(tasks, Some(200)), Duration::from_millis(200));
            // Due already: a moment, not a busy loop.
            assert_eq!(idle_look(tasks, Some(-5)), Duration::from_millis(10));
            // Due in an hour: the usual look, for other desks' jobs.
            let far = idle_look(tasks, Some(3_600_000));
            let mean = IDLE_LOOK_MS * tasks as u64 / TASKS as u64;
            assert!(far <= Duration::from_millis(mean * 3 / 2), "{far:?}");
        }
    }

    #[test]
    fn a_full_handoff_turns_jobs_away_until_one_is_taken() {
        let handoff = Handoff::<u32>::default();
        for i in 0..HANDOFF_CAPACITY {
            handoff.reserve().expect("room").fill(i as u32, i as i64);
        }
        assert!(
            handoff.reserve().is_none(),
            "full: the job goes to the queue"
        );
        assert_eq!(handoff.take(), Some((0, 0)), "oldest first");
        handoff.reserve().expect("room again").fill(7, 7);
        assert!(handoff.reserve().is_none());
    }

    #[test]
    fn a_place_reserved_then_not_filled_is_given_back() {
        let handoff = Handoff::<u32>::default();
        let places: Vec<_> = (0..HANDOFF_CAPACITY)
            .map(|_| handoff.reserve().expect("room"))
            .collect();
        assert!(
            handoff.reserve().is_none(),
            "reserved places count as taken"
        );
        // The request's write failed, or found the request already there.
        drop(places);
        assert!(handoff.reserve().is_some());
        assert_eq!(handoff.take(), None, "nothing was handed over");
    }

    #[test]
    fn a_job_that_waited_half_its_lease_is_left_for_a_claim_after_it() {
        let handoff = Handoff::<u32>::default();
        handoff.reserve().unwrap().fill(1, 1);
        handoff.reserve().unwrap().fill(2, 2);
        {
            let mut w = handoff.inner.lock().unwrap();
            let long_ago = Instant::now()
                .checked_sub(Duration::from_millis(LEASE_MS as u64 / 2))
                .unwrap();
            w.jobs[0].since = long_ago;
        }
        assert_eq!(handoff.take(), Some((2, 2)), "the stale job is skipped");
        assert_eq!(handoff.take(), None);
    }

    #[test]
    fn stopping_takes_every_waiting_job_out_for_its_lease_to_be_freed() {
        let handoff = Handoff::<u32>::default();
        for i in 0..3 {
            handoff.reserve().unwrap().fill(i, i as i64 + 10);
        }
        assert_eq!(handoff.drain(), vec![10, 11, 12]);
        assert_eq!(handoff.take(), None);
    }
}
