-- Money order (docs/decisions.md, "Money order"): a -debit never reaches a partner before the
-- +credit with the same (config_id, event_id). The rule lives in the database, so that it
-- holds across crashes and processes, and for an operator's hand-written SQL:
--
-- * the insert of new rows asks webhook_money_order_verdicts which of its debits must wait
--   (held_reason = 'waiting_for_credit') or are cancelled with their credit. It decides from
--   its own snapshot and takes no lock;
-- * the queue's AFTER UPDATE and AFTER DELETE triggers settle the waiting debits of credits
--   that completed (due now, keeping their place), were cancelled (cancelled with reason
--   credit_cancelled) or were removed (due now: a debit whose credit is not queued is
--   delivered as any row);
-- * once the insert has committed, the API looks again at the debits it held whose credit was
--   already queued (webhook_money_order_recheck), and the pruner's sweep
--   (webhook_money_order_sweep) settles those an API process left when it died in between.
--
-- Why the recheck misses nothing: a debit is left waiting for a completed credit only if the
-- completing statement could not see it, i.e. the debit committed after that statement had
-- written the credit (its AFTER triggers take fresh snapshots once the rows are written). The
-- recheck comes after the debit's commit, so it finds the credit written: completed, or marked
-- by the write in progress (xmax), whose commit it waits for with FOR SHARE.
--
-- How the functions reach rows: a debit and its credit know each other by the idempotency key
-- (config_id, event_type, event_id), so each lookup is one probe of its unique index, driven by
-- the statement's own list (a LATERAL subquery that is not flattened: OFFSET 0). A plan chosen
-- from the table's statistics could otherwise scan: the statistics rarely know how many debits
-- wait right now (a burst of debits after the last ANALYZE looks like none), and a plan cached
-- while the queue was small would keep scanning it once large. Hence too the conditions on
-- held_reason written IS NOT DISTINCT FROM, which no index serves, and seq scans off inside.
-- The functions plan as PostgreSQL chooses (plan_cache_mode = auto) even inside the workers'
-- sessions, which force generic plans: the settle's generic plan, run by the outcome write's
-- trigger, took about 300 ms a call.
--
-- A release announces nothing: a transaction that notifies holds a lock through its commit's
-- flush that every other notifying transaction (each submit) waits for. A credit completes in
-- an outcome write, whose process wakes a worker of its own after it; a debit released
-- otherwise (its credit removed by hand) is found by the workers' poll. A released debit is
-- simply due: its partner's state is read by the claim (05_claim.sql).

CREATE OR REPLACE FUNCTION webhook_money_order_verdicts(config_ids BIGINT[], event_types TEXT[], event_ids TEXT[])
RETURNS TEXT[]
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
SET plan_cache_mode = auto
AS $$
BEGIN
    IF NOT ('-debit' = ANY (event_types)) THEN
        RETURN NULL;
    END IF;
    RETURN (
        SELECT array_agg(
                   CASE
                       WHEN d.event_type <> '-debit' OR d.event_id IS NULL OR cfg.ordering <> 'credit_before_debit' THEN NULL
                       WHEN c.id IS NOT NULL AND c.deleted_at IS NOT NULL THEN 'credit_cancelled'
                       WHEN c.id IS NOT NULL THEN 'waiting_for_credit'
                       -- the credit arrives in this same insert
                       WHEN (d.config_id, d.event_id) IN (SELECT b.config_id, b.event_id
                                                          FROM unnest(config_ids, event_types, event_ids) AS b(config_id, event_type, event_id)
                                                          WHERE b.event_type = '+credit')
                           THEN 'waiting_for_credit'
                   END
                   ORDER BY d.n)
        FROM unnest(config_ids, event_types, event_ids) WITH ORDINALITY AS d(config_id, event_type, event_id, n)
        LEFT JOIN webhook_configs cfg ON cfg.id = d.config_id
        LEFT JOIN LATERAL (
            SELECT q.id, q.deleted_at FROM webhook_queue q
            WHERE d.event_type = '-debit'
              AND q.config_id = d.config_id AND q.event_type = '+credit' AND q.event_id = d.event_id
              AND q.status <> 'completed'
            OFFSET 0) c ON true);
END
$$;

COMMENT ON FUNCTION webhook_money_order_verdicts(BIGINT[], TEXT[], TEXT[]) IS
    'For rows about to be inserted (element-wise: partner, event type, event id), what money order makes of each: '
    'waiting_for_credit (a -debit of an ordered partner whose +credit is queued, live and not completed, or is in the same insert), '
    'credit_cancelled (its +credit was cancelled before it completed) or NULL (as any row). Takes no lock: '
    'once the insert has committed, webhook_money_order_recheck settles a debit whose credit completed meanwhile';

CREATE OR REPLACE FUNCTION webhook_money_order_settle(config_ids BIGINT[], event_ids TEXT[], steps TEXT[])
RETURNS VOID
LANGUAGE plpgsql STRICT
SET enable_seqscan = off
SET plan_cache_mode = auto
AS $$
DECLARE
    waiting BIGINT[];
    waiting_steps TEXT[];
BEGIN
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
    -- Locked in id order, as the outcome write locks the debits it leases: the update below
    -- reaches them in whatever order its plan takes.
    PERFORM 1 FROM webhook_queue d WHERE d.id = ANY (waiting) ORDER BY d.id FOR UPDATE;
    UPDATE webhook_queue d SET
        held_reason = NULL,
        -- Keeps its place in the queue: not put behind what was submitted after it.
        next_retry_at = CASE WHEN s.step = 'release' THEN least(d.next_retry_at, now()) ELSE d.next_retry_at END,
        deleted_at = CASE WHEN s.step = 'cancel' THEN now() END,
        cancel_reason = CASE WHEN s.step = 'cancel' THEN 'credit_cancelled' END,
        updated_at = now()
    FROM unnest(waiting, waiting_steps) AS s(id, step)
    WHERE d.id = ANY (waiting) AND d.id = s.id
      AND d.held_reason IS NOT DISTINCT FROM 'waiting_for_credit' AND d.deleted_at IS NULL;
END
$$;

COMMENT ON FUNCTION webhook_money_order_settle(BIGINT[], TEXT[], TEXT[]) IS
    'Settles the -debits waiting for the given +credits (element-wise: partner, event id, step): '
    'release makes them due now, '
    'cancel cancels them with cancel_reason credit_cancelled';

CREATE OR REPLACE FUNCTION webhook_money_order_on_update() RETURNS trigger
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

CREATE OR REPLACE TRIGGER webhook_money_order_on_update
    AFTER UPDATE ON webhook_queue
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT
    WHEN (NOT webhook_statement_settled_nothing())
    EXECUTE FUNCTION webhook_money_order_on_update();

CREATE OR REPLACE FUNCTION webhook_money_order_on_delete() RETURNS trigger
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

CREATE OR REPLACE TRIGGER webhook_money_order_on_delete
    AFTER DELETE ON webhook_queue
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT
    EXECUTE FUNCTION webhook_money_order_on_delete();

CREATE OR REPLACE FUNCTION webhook_money_order_recheck(config_ids BIGINT[], event_ids TEXT[])
RETURNS INT
LANGUAGE plpgsql STRICT VOLATILE
SET enable_seqscan = off
SET plan_cache_mode = auto
AS $$
DECLARE
    credits BIGINT[];
    keys_config BIGINT[];
    keys_event TEXT[];
    steps TEXT[];
BEGIN
    -- The debits that still wait and whose credit has completed, was cancelled or is gone, or is
    -- being written: a write in progress, or one just committed unseen, marks the row version
    -- this snapshot sees (xmax). An unmarked credit is written later, by a statement whose
    -- triggers see the debit, committed before this. Most often there is none, and this one
    -- pass (a probe of each debit and of its credit) is all.
    SELECT array_agg(c.id ORDER BY c.id) FILTER (WHERE c.status <> 'completed' AND c.xmax <> '0'::xid),
           array_agg(k.config_id), array_agg(k.event_id)
    INTO credits, keys_config, keys_event
    FROM unnest(config_ids, event_ids) AS k(config_id, event_id)
    CROSS JOIN LATERAL (
        SELECT 1 FROM webhook_queue d
        WHERE d.config_id = k.config_id AND d.event_type = '-debit' AND d.event_id = k.event_id
          AND d.held_reason IS NOT DISTINCT FROM 'waiting_for_credit' AND d.deleted_at IS NULL
        OFFSET 0) d
    LEFT JOIN LATERAL (
        SELECT q.id, q.status, q.deleted_at, q.xmax FROM webhook_queue q
        WHERE q.config_id = k.config_id AND q.event_type = '+credit' AND q.event_id = k.event_id
        OFFSET 0) c ON true
    WHERE c.id IS NULL OR c.status = 'completed' OR c.deleted_at IS NOT NULL OR c.xmax <> '0'::xid;
    IF keys_config IS NULL THEN
        RETURN 0;
    END IF;
    -- Wait for any write in progress on them, in id order (the order outcome writes lock rows
    -- in, so the two never deadlock).
    IF credits IS NOT NULL THEN
        PERFORM 1 FROM webhook_queue c WHERE c.id = ANY (credits) ORDER BY c.id FOR SHARE;
    END IF;
    -- A fresh snapshot, taken after the locks: each credit as last committed. The settle
    -- touches only debits that still wait.
    SELECT array_agg(k.config_id), array_agg(k.event_id), array_agg(s.step)
    INTO keys_config, keys_event, steps
    FROM unnest(keys_config, keys_event) AS k(config_id, event_id)
    LEFT JOIN LATERAL (
        SELECT q.status, q.deleted_at FROM webhook_queue q
        WHERE q.config_id = k.config_id AND q.event_type = '+credit' AND q.event_id = k.event_id
        OFFSET 0) c ON true
    -- As the triggers settle: completed or gone releases, cancelled cancels.
    CROSS JOIN LATERAL (
        SELECT CASE WHEN c.status IS NULL OR c.status = 'completed' THEN 'release'
                    WHEN c.deleted_at IS NOT NULL THEN 'cancel' END AS step) s
    WHERE s.step IS NOT NULL;
    IF steps IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM webhook_money_order_settle(keys_config, keys_event, steps);
    RETURN cardinality(steps);
END
$$;

COMMENT ON FUNCTION webhook_money_order_recheck(BIGINT[], TEXT[]) IS
    'Settles the waiting -debits of the given keys (element-wise: partner, event id) whose +credit has completed, '
    'was cancelled or is gone, after waiting for any write in progress on those credits (FOR SHARE on the credits a '
    'write has marked). Returns how many debits it settled (or found settled by another meanwhile)';

CREATE OR REPLACE FUNCTION webhook_money_order_sweep()
RETURNS INT
LANGUAGE sql VOLATILE
SET enable_seqscan = off
SET plan_cache_mode = auto
AS $$
    -- Only the debits whose credit looks settled need a recheck; the others cost one probe.
    SELECT coalesce(webhook_money_order_recheck(array_agg(d.config_id), array_agg(d.event_id)), 0)
    FROM webhook_queue d
    WHERE d.held_reason = 'waiting_for_credit' AND d.deleted_at IS NULL
      AND NOT EXISTS (
          SELECT 1 FROM webhook_queue c
          WHERE c.config_id = d.config_id AND c.event_type = '+credit' AND c.event_id = d.event_id
            AND c.status <> 'completed' AND c.deleted_at IS NULL)
$$;

COMMENT ON FUNCTION webhook_money_order_sweep() IS
    'Settles every waiting -debit whose +credit has completed, was cancelled or is gone: the debits an API process '
    'left so when it died between its insert and its recheck. Returns how many it settled';
