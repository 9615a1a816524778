-- A resend ("Resend email" on the Orders screen, POST
-- /orders/{id}/fulfillment-email) in one round trip: the order's row lock,
-- the idempotency key, the state and rate-limit checks, then the request,
-- its job and its audit event. Sent from the desk as BEGIN, five
-- statements and COMMIT, these were seven round trips, each one costing the
-- desk and the server a wake-up and a protocol exchange on the same two
-- cores (docs/PERFORMANCE.md). PgStore::create_email_request calls it.
--
-- Each statement of a PL/pgSQL function takes its own snapshot under READ
-- COMMITTED, as each statement of the transaction it replaces did: once
-- the row lock is held, the key and rate-limit checks see every request for
-- the order committed before it, so concurrent resends line up as they did.
--
-- outcome: 'missing' (no such order), 'existing' (the idempotency key's
-- request; found_id names it), 'wrong_state' (found_id holds the order's
-- state), 'rate_limited' (oldest is the created_at of the oldest request
-- in the full window), 'created' (new_job_id is the job's id, NULL if a job
-- with its key was already queued).
CREATE FUNCTION request_email(
    p_id TEXT, p_order_id TEXT, p_kind TEXT, p_trigger TEXT, p_recipient TEXT,
    p_state TEXT, p_error TEXT, p_requested_by TEXT, p_message_id TEXT,
    p_created_at BIGINT, p_updated_at BIGINT,
    p_required_state TEXT,
    p_key_scope TEXT, p_key TEXT,
    p_limit_max INTEGER, p_limit_since BIGINT,
    p_job_key TEXT, p_job_kind TEXT, p_job_payload TEXT, p_now BIGINT,
    p_attempts INTEGER, p_locked_until BIGINT, p_locked_by INTEGER,
    p_audit_account TEXT, p_audit_actor TEXT, p_audit_action TEXT,
    p_audit_subject TEXT, p_audit_detail TEXT,
    OUT outcome TEXT, OUT found_id TEXT, OUT oldest BIGINT, OUT new_job_id BIGINT
) LANGUAGE plpgsql AS $$
DECLARE
    v_account TEXT;
    v_state TEXT;
BEGIN
    -- FOR NO KEY UPDATE: resends of the order and changes of its state
    -- (update_order's UPDATE) wait for each other; the foreign-key checks
    -- of rows inserted for the order elsewhere do not wait for us.
    SELECT o.account_id, o.state INTO v_account, v_state
      FROM orders o WHERE o.id = p_order_id FOR NO KEY UPDATE;
    IF NOT FOUND THEN
        outcome := 'missing';
        RETURN;
    END IF;
    -- A used key gives the first answer. The key is recorded only with a
    -- request it points to: a refusal leaves it free.
    IF p_key IS NOT NULL THEN
        SELECT k.resource_id INTO found_id FROM idempotency_keys k
         WHERE k.account_id = v_account AND k.scope = p_key_scope AND k.key = p_key;
        IF FOUND THEN
            outcome := 'existing';
            RETURN;
        END IF;
    END IF;
    IF v_state <> p_required_state THEN
        outcome := 'wrong_state';
        found_id := v_state;
        RETURN;
    END IF;
    -- The window is full when it holds p_limit_max resends; it frees a
    -- slot when the oldest of the newest p_limit_max ages out.
    IF p_limit_max IS NOT NULL THEN
        SELECT e.created_at INTO oldest FROM email_requests e
         WHERE e.order_id = p_order_id AND e.kind = p_kind AND e.trigger = 'resend'
           AND e.created_at > p_limit_since
         ORDER BY e.created_at DESC OFFSET p_limit_max - 1 LIMIT 1;
        IF FOUND THEN
            outcome := 'rate_limited';
            RETURN;
        END IF;
    END IF;
    -- The same key used at once for another order: the first to commit
    -- wins (this insert waits on the key's unique index until it has), and
    -- this one answers with its request, having written nothing.
    IF p_key IS NOT NULL THEN
        INSERT INTO idempotency_keys (account_id, scope, key, resource_id, created_at)
        VALUES (v_account, p_key_scope, p_key, p_id, p_now)
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            SELECT k.resource_id INTO found_id FROM idempotency_keys k
             WHERE k.account_id = v_account AND k.scope = p_key_scope AND k.key = p_key;
            outcome := 'existing';
            RETURN;
        END IF;
    END IF;
    INSERT INTO email_requests (id, account_id, order_id, kind, trigger, recipient,
        state, error, requested_by, message_id, created_at, updated_at)
    VALUES (p_id, v_account, p_order_id, p_kind, p_trigger, p_recipient, p_state,
        p_error, p_requested_by, p_message_id, p_created_at, p_updated_at);
    INSERT INTO jobs (key, kind, payload, run_at, attempts, locked_until, locked_by,
        created_at)
    VALUES (p_job_key, p_job_kind, p_job_payload, p_now, p_attempts, p_locked_until,
        p_locked_by, p_now)
    ON CONFLICT (key) DO NOTHING
    RETURNING id INTO new_job_id;
    INSERT INTO audit_events (account_id, actor, action, subject, detail, created_at)
    VALUES (p_audit_account, p_audit_actor, p_audit_action, p_audit_subject,
        p_audit_detail, p_now);
    outcome := 'created';
END
$$;
