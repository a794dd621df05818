-- Money order (SPEC §11) without a lock on the submit path. Migration 000010 closed the race
-- between a debit's insert and its credit's completion by locking the credit inside the insert,
-- so the insert waited for an outcome write's commit, and an outcome write for the insert's
-- commit; and each API process inserts one batch at a time, so every request in that batch
-- waited too. Now:
--
-- * the insert decides from its own snapshot, taking no lock (webhook_money_order_verdicts);
-- * once the insert has committed, the API looks again at the debits it held whose credit was
--   already queued (webhook_money_order_recheck). That look locks FOR SHARE each credit not
--   yet completed that a write has marked (xmax), so it waits for a write in progress on the
--   credit, then reads the credit as committed and settles the debit as the triggers of 000010
--   would have.
--
-- Why this misses nothing: a debit is left waiting for a completed credit only if the
-- completing statement could not see it, i.e. the debit committed after that statement had
-- written the credit (its AFTER triggers take fresh snapshots once the rows are written). The
-- recheck comes after the debit's commit, so it finds the credit written: completed, or marked
-- by the write in progress, whose commit it waits for. A debit whose API process died between
-- its commit and the recheck is settled by the next sweep (webhook_money_order_sweep, run by the
-- pruner).

CREATE OR REPLACE FUNCTION webhook_money_order_verdicts(config_ids BIGINT[], event_types TEXT[], event_ids TEXT[])
RETURNS TEXT[]
LANGUAGE plpgsql VOLATILE
SET enable_seqscan = off
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

CREATE FUNCTION webhook_money_order_recheck(config_ids BIGINT[], event_ids TEXT[])
RETURNS INT
LANGUAGE plpgsql STRICT VOLATILE
SET enable_seqscan = off
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
    -- As the triggers of 000010 settle: completed or gone releases, cancelled cancels.
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

CREATE FUNCTION webhook_money_order_sweep()
RETURNS INT
LANGUAGE sql VOLATILE
SET enable_seqscan = off
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
