-- Money order (SPEC §11): a -debit never reaches a partner before the +credit with the same
-- (config_id, event_id). The rule lives here, in the database, so that it holds across crashes
-- and processes:
--
-- * the insert of new rows asks webhook_money_order_verdicts() which of its debits must wait
--   (held_reason = 'waiting_for_credit') or are cancelled with their credit;
-- * the AFTER UPDATE and AFTER DELETE triggers of webhook_queue settle the waiting debits of
--   credits that completed (due now), were cancelled (cancelled with reason credit_cancelled)
--   or were removed (due now: a debit whose credit is not in the queue is delivered as before).
--
-- The race between a debit's insert and its credit's outcome write is closed by the credit's
-- row lock: the insert takes FOR SHARE on every credit it may wait for, and a locking read in
-- READ COMMITTED waits for a concurrent writer and re-checks the row's latest committed
-- version. The triggers run their statements with fresh snapshots, after the statement that
-- fired them holds its rows, so they see a debit committed while that statement waited for a
-- credit's lock.

ALTER TABLE webhook_configs ADD COLUMN ordering TEXT NOT NULL DEFAULT 'credit_before_debit'
    CONSTRAINT webhook_configs_ordering CHECK (ordering IN ('credit_before_debit', 'none'));
COMMENT ON COLUMN webhook_configs.ordering IS
    'credit_before_debit (default): a -debit waits (held_reason waiting_for_credit) while the +credit with the same event_id is queued and has not completed; none: debits and credits are independent';

ALTER TABLE webhook_queue ADD COLUMN cancel_reason TEXT
    CONSTRAINT webhook_queue_cancel_reason CHECK (cancel_reason IN ('credit_cancelled'));
ALTER TABLE webhook_queue ADD CONSTRAINT webhook_queue_cancel_reason_when_cancelled
    CHECK (cancel_reason IS NULL OR deleted_at IS NOT NULL);
COMMENT ON COLUMN webhook_queue.cancel_reason IS
    'Why webhookd cancelled the row itself: credit_cancelled (a -debit whose +credit was cancelled). NULL: not cancelled, or cancelled by an operator (DELETE /webhooks/{queue_id})';

ALTER TABLE webhook_queue ADD COLUMN released_by_operator_at TIMESTAMPTZ;
COMMENT ON COLUMN webhook_queue.released_by_operator_at IS
    'When an operator released this -debit from waiting for its +credit (POST /webhooks/{queue_id}/release); NULL: never';

-- Whether any debit waits at all: the settling triggers' first probe, free while the index is
-- empty.
CREATE INDEX webhook_queue_waiting_for_credit
    ON webhook_queue (config_id, event_id) WHERE held_reason = 'waiting_for_credit' AND deleted_at IS NULL;

-- How the functions below reach rows: a debit and its credit know each other by the idempotency
-- key (config_id, event_type, event_id), so each lookup is one probe of its unique index, driven
-- by the statement's own list (a LATERAL subquery that is not flattened: OFFSET 0). A plan
-- chosen from the table's statistics could otherwise scan: the statistics rarely know how many
-- debits wait right now (a burst of debits after the last ANALYZE looks like none), and a plan
-- cached while the queue was small would keep scanning it once large. Hence too the conditions on
-- held_reason written IS NOT DISTINCT FROM, which no index serves, and seq scans off inside them.

CREATE FUNCTION webhook_money_order_verdicts(config_ids BIGINT[], event_types TEXT[], event_ids TEXT[])
RETURNS TEXT[]
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
AS $$
DECLARE
    credits BIGINT[];
    verdicts TEXT[];
BEGIN
    IF NOT ('-debit' = ANY (event_types)) THEN
        RETURN NULL;
    END IF;
    SELECT array_agg(c.id ORDER BY c.id) INTO credits
    FROM unnest(config_ids, event_types, event_ids) AS d(config_id, event_type, event_id)
    CROSS JOIN LATERAL (
        SELECT q.id FROM webhook_queue q
        WHERE q.config_id = d.config_id AND q.event_type = '+credit' AND q.event_id = d.event_id
          AND q.status <> 'completed'
        OFFSET 0) c
    WHERE d.event_type = '-debit';
    -- Lock every credit a debit may wait for, in id order (the order in which an outcome write
    -- locks its rows, so the two never deadlock). A credit being completed or cancelled right
    -- now is waited for and read as that writer left it.
    IF credits IS NOT NULL THEN
        PERFORM 1 FROM webhook_queue c WHERE c.id = ANY (credits) ORDER BY c.id FOR SHARE;
    END IF;
    -- A fresh snapshot, taken after the locks: the locked credits are as they will stay until
    -- this transaction ends.
    SELECT array_agg(
               CASE
                   WHEN d.event_type <> '-debit' OR d.event_id IS NULL OR cfg.ordering <> 'credit_before_debit' THEN NULL
                   -- Only the credits locked above count: one committed since is as if
                   -- submitted after the debit.
                   WHEN c.id = ANY (credits) AND c.deleted_at IS NOT NULL THEN 'credit_cancelled'
                   WHEN c.id = ANY (credits) THEN 'waiting_for_credit'
                   -- the credit arrives in this same insert
                   WHEN (d.config_id, d.event_id) IN (SELECT b.config_id, b.event_id
                                                      FROM unnest(config_ids, event_types, event_ids) AS b(config_id, event_type, event_id)
                                                      WHERE b.event_type = '+credit')
                       THEN 'waiting_for_credit'
               END
               ORDER BY d.n)
    INTO verdicts
    FROM unnest(config_ids, event_types, event_ids) WITH ORDINALITY AS d(config_id, event_type, event_id, n)
    LEFT JOIN webhook_configs cfg ON cfg.id = d.config_id
    LEFT JOIN LATERAL (
        SELECT q.id, q.deleted_at FROM webhook_queue q
        -- No probe at all when no debit had a live credit (a batch that carries its credits).
        WHERE credits IS NOT NULL AND d.event_type = '-debit'
          AND q.config_id = d.config_id AND q.event_type = '+credit' AND q.event_id = d.event_id
          AND q.status <> 'completed'
        OFFSET 0) c ON true;
    RETURN verdicts;
END
$$;
COMMENT ON FUNCTION webhook_money_order_verdicts(BIGINT[], TEXT[], TEXT[]) IS
    'For rows about to be inserted (element-wise: partner, event type, event id), what money order makes of each: '
    'waiting_for_credit (a -debit of an ordered partner whose +credit is queued, live and not completed, or is in the same insert), '
    'credit_cancelled (its +credit was cancelled before it completed) or NULL (as any row). Locks the credits it reads FOR SHARE';

CREATE FUNCTION webhook_money_order_settle(config_ids BIGINT[], event_ids TEXT[], steps TEXT[])
RETURNS VOID
LANGUAGE plpgsql STRICT
SET enable_seqscan = off
AS $$
DECLARE
    waiting BIGINT[];
    waiting_steps TEXT[];
BEGIN
    -- Nothing waits anywhere: one probe of an empty partial index.
    IF NOT EXISTS (SELECT 1 FROM webhook_queue WHERE held_reason = 'waiting_for_credit' AND deleted_at IS NULL) THEN
        RETURN;
    END IF;
    SELECT array_agg(w.id ORDER BY w.id), array_agg(s.step ORDER BY w.id) INTO waiting, waiting_steps
    FROM unnest(config_ids, event_ids, steps) AS s(config_id, event_id, step)
    CROSS JOIN LATERAL (
        SELECT q.id FROM webhook_queue q
        WHERE q.config_id = s.config_id AND q.event_type = '-debit' AND q.event_id = s.event_id
          AND q.held_reason IS NOT DISTINCT FROM 'waiting_for_credit' AND q.deleted_at IS NULL
        OFFSET 0) w;
    IF waiting IS NULL THEN
        RETURN;
    END IF;
    UPDATE webhook_queue d SET
        -- A released debit is due now, unless its partner is paused or tripped (migration 000009),
        -- and keeps its place in the queue: it is not put behind what was submitted after it.
        held_reason = CASE WHEN s.step = 'release'
                           THEN (SELECT h.held_reason FROM webhook_partner_holds(ARRAY[d.config_id]) h) END,
        next_retry_at = CASE WHEN s.step = 'release' THEN least(d.next_retry_at, now()) ELSE d.next_retry_at END,
        deleted_at = CASE WHEN s.step = 'cancel' THEN now() END,
        cancel_reason = CASE WHEN s.step = 'cancel' THEN 'credit_cancelled' END,
        updated_at = now()
    FROM unnest(waiting, waiting_steps) AS s(id, step)
    WHERE d.id = ANY (waiting) AND d.id = s.id
      AND d.held_reason IS NOT DISTINCT FROM 'waiting_for_credit' AND d.deleted_at IS NULL;
    -- No NOTIFY: a transaction that notifies holds a lock through its commit's flush that every
    -- other notifying transaction (each submit) waits for. A credit completes in an outcome
    -- write, whose process wakes a worker of its own after it (application::engine::writer);
    -- a debit released otherwise (its credit removed by hand) is found by the workers' poll.
END
$$;
COMMENT ON FUNCTION webhook_money_order_settle(BIGINT[], TEXT[], TEXT[]) IS
    'Settles the -debits waiting for the given +credits (element-wise: partner, event id, step): '
    'release makes them due now, '
    'cancel cancels them with cancel_reason credit_cancelled';

CREATE FUNCTION webhook_money_order_on_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- A completed credit releases its debit, even one cancelled while its last call was in
    -- flight (the partner has it); a cancelled credit cancels it.
    PERFORM webhook_money_order_settle(array_agg(n.config_id), array_agg(n.event_id),
                                       array_agg(CASE WHEN n.status = 'completed' THEN 'release' ELSE 'cancel' END))
    FROM new_rows n
    WHERE n.event_type = '+credit' AND n.event_id IS NOT NULL
      AND (n.status = 'completed' OR n.deleted_at IS NOT NULL);
    RETURN NULL;
END
$$;

CREATE FUNCTION webhook_money_order_on_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Retention never removes a credit whose debit waits; one removed all the same (by hand,
    -- or in a race with the debit's insert) no longer holds its debit back.
    PERFORM webhook_money_order_settle(array_agg(o.config_id), array_agg(o.event_id), array_agg('release'::text))
    FROM old_rows o
    WHERE o.event_type = '+credit' AND o.event_id IS NOT NULL;
    RETURN NULL;
END
$$;

-- The claim, the one statement that counts itself on UPDATE (migration 000005), only moves rows
-- to processing: it never completes or cancels a credit, and skips this trigger.
CREATE TRIGGER webhook_money_order_on_update
    AFTER UPDATE ON webhook_queue
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT
    WHEN (NOT webhook_statement_counted_itself())
    EXECUTE FUNCTION webhook_money_order_on_update();

CREATE TRIGGER webhook_money_order_on_delete
    AFTER DELETE ON webhook_queue
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT
    EXECUTE FUNCTION webhook_money_order_on_delete();

CREATE FUNCTION webhook_credit_has_waiting_debit(config_id BIGINT, event_type TEXT, event_id TEXT)
RETURNS BOOLEAN
LANGUAGE sql STABLE AS $$
    SELECT event_type = '+credit' AND event_id IS NOT NULL AND EXISTS (
        SELECT 1 FROM webhook_queue d
        WHERE d.config_id = $1 AND d.event_type = '-debit' AND d.event_id = $3
          AND d.held_reason IS NOT DISTINCT FROM 'waiting_for_credit' AND d.deleted_at IS NULL)
$$;
COMMENT ON FUNCTION webhook_credit_has_waiting_debit(BIGINT, TEXT, TEXT) IS
    'Whether a -debit waits for this +credit (one probe of the idempotency key): retention keeps such a credit';
