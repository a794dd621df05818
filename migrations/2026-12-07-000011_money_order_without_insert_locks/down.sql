DROP FUNCTION webhook_money_order_sweep();
DROP FUNCTION webhook_money_order_recheck(BIGINT[], TEXT[]);
-- The verdicts of migration 000010, which lock the credits they read.
CREATE OR REPLACE FUNCTION webhook_money_order_verdicts(config_ids BIGINT[], event_types TEXT[], event_ids TEXT[])
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
    IF credits IS NOT NULL THEN
        PERFORM 1 FROM webhook_queue c WHERE c.id = ANY (credits) ORDER BY c.id FOR SHARE;
    END IF;
    SELECT array_agg(
               CASE
                   WHEN d.event_type <> '-debit' OR d.event_id IS NULL OR cfg.ordering <> 'credit_before_debit' THEN NULL
                   WHEN c.id = ANY (credits) AND c.deleted_at IS NOT NULL THEN 'credit_cancelled'
                   WHEN c.id = ANY (credits) THEN 'waiting_for_credit'
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
        WHERE credits IS NOT NULL AND d.event_type = '-debit'
          AND q.config_id = d.config_id AND q.event_type = '+credit' AND q.event_id = d.event_id
          AND q.status <> 'completed'
        OFFSET 0) c ON true;
    RETURN verdicts;
END
$$;
