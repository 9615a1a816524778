-- An order's change (PgStore::update_order: the CA's answer recorded, the
-- order moved, its email request, jobs, the done job's removal and audit
-- events) as one function, so that the changes of several orders that
-- arrive together can go in one statement, one call per change (see
-- PgStore's Grouped). Each statement here takes its own snapshot under
-- READ COMMITTED, as the one statement it replaces did, and a call sees
-- what the calls before it in the same statement wrote: two changes of one
-- order in one statement apply one after the other, as two statements did.
--
-- The change applies only while the order is in one of p_allowed; every
-- write after the UPDATE happens only when it moved the order, so a change
-- that does not apply writes nothing. A job whose key is queued already is
-- not queued again. applied says whether it applied; job_keys and job_ids
-- name the jobs queued.
CREATE FUNCTION change_order(
    p_order_id TEXT, p_allowed TEXT[], p_to TEXT, p_ca_reference TEXT,
    p_failure_reason TEXT, p_cert_serial TEXT, p_cert_not_before BIGINT,
    p_cert_not_after BIGINT, p_cert_fingerprint TEXT, p_cert_issuer TEXT,
    p_now BIGINT,
    p_email_id TEXT, p_email_kind TEXT, p_email_trigger TEXT, p_email_recipient TEXT,
    p_email_state TEXT, p_email_error TEXT, p_email_requested_by TEXT,
    p_email_message_id TEXT, p_email_created_at BIGINT, p_email_updated_at BIGINT,
    p_job_keys TEXT[], p_job_kinds TEXT[], p_job_payloads TEXT[], p_job_attempts INTEGER[],
    p_job_locked_until BIGINT[], p_job_locked_by INTEGER[],
    p_done_job BIGINT,
    p_audit_account TEXT, p_audit_actor TEXT, p_audit_action TEXT,
    p_audit_subject TEXT, p_audit_detail TEXT,
    p_email_audit_account TEXT, p_email_audit_actor TEXT, p_email_audit_action TEXT,
    p_email_audit_subject TEXT, p_email_audit_detail TEXT,
    OUT applied BOOLEAN, OUT job_keys TEXT[], OUT job_ids BIGINT[]
) LANGUAGE plpgsql AS $$
DECLARE
    v_account TEXT;
BEGIN
    UPDATE orders SET state = p_to, ca_reference = COALESCE(p_ca_reference, ca_reference),
        failure_reason = COALESCE(p_failure_reason, failure_reason),
        cert_serial = COALESCE(p_cert_serial, cert_serial),
        cert_not_before = COALESCE(p_cert_not_before, cert_not_before),
        cert_not_after = COALESCE(p_cert_not_after, cert_not_after),
        cert_fingerprint = COALESCE(p_cert_fingerprint, cert_fingerprint),
        cert_issuer = COALESCE(p_cert_issuer, cert_issuer),
        updated_at = p_now
     WHERE id = p_order_id AND state = ANY(p_allowed)
     RETURNING account_id INTO v_account;
    IF NOT FOUND THEN
        applied := false;
        job_keys := '{}';
        job_ids := '{}';
        RETURN;
    END IF;
    applied := true;
    IF p_email_id IS NOT NULL THEN
        INSERT INTO email_requests (id, account_id, order_id, kind, trigger, recipient,
            state, error, requested_by, message_id, created_at, updated_at)
        VALUES (p_email_id, v_account, p_order_id, p_email_kind, p_email_trigger,
            p_email_recipient, p_email_state, p_email_error, p_email_requested_by,
            p_email_message_id, p_email_created_at, p_email_updated_at);
    END IF;
    WITH queued AS (
        INSERT INTO jobs (key, kind, payload, run_at, attempts, locked_until, locked_by,
            created_at)
        SELECT j.key, j.kind, j.payload, p_now, j.attempts, j.locked_until, j.locked_by, p_now
        FROM UNNEST(p_job_keys, p_job_kinds, p_job_payloads, p_job_attempts,
            p_job_locked_until, p_job_locked_by)
            AS j(key, kind, payload, attempts, locked_until, locked_by)
        ON CONFLICT (key) DO NOTHING
        RETURNING id, key
    )
    SELECT COALESCE(array_agg(q.key), '{}'), COALESCE(array_agg(q.id), '{}')
      INTO job_keys, job_ids FROM queued q;
    IF p_done_job IS NOT NULL THEN
        DELETE FROM jobs WHERE id = p_done_job;
    END IF;
    INSERT INTO audit_events (account_id, actor, action, subject, detail, created_at)
    VALUES (p_audit_account, p_audit_actor, p_audit_action, p_audit_subject,
        p_audit_detail, p_now);
    -- The email's outcome, when it went out first, after the change (in id
    -- order, as the audit log is read).
    IF p_email_audit_action IS NOT NULL THEN
        INSERT INTO audit_events (account_id, actor, action, subject, detail, created_at)
        VALUES (p_email_audit_account, p_email_audit_actor, p_email_audit_action,
            p_email_audit_subject, p_email_audit_detail, p_now);
    END IF;
END
$$;
