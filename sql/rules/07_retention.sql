-- Retention keeps a +credit whose -debit still waits for it: removing the credit would release
-- the debit as one whose credit is not queued (docs/decisions.md, "Money order"). The batches
-- that delete old rows are statements of store::queue::retention; this is the rule they ask.

CREATE OR REPLACE FUNCTION webhook_credit_has_waiting_debit(config_id BIGINT, event_type TEXT, event_id TEXT)
RETURNS BOOLEAN
LANGUAGE sql STABLE AS $$
    SELECT event_type = '+credit' AND event_id IS NOT NULL AND EXISTS (
        SELECT 1 FROM webhook_queue d
        WHERE d.config_id = $1 AND d.event_type = '-debit' AND d.event_id = $3
          AND d.held_reason IS NOT DISTINCT FROM 'waiting_for_credit' AND d.deleted_at IS NULL)
$$;

COMMENT ON FUNCTION webhook_credit_has_waiting_debit(BIGINT, TEXT, TEXT) IS
    'Whether a -debit waits for this +credit (one probe of the idempotency key): retention keeps such a credit';
