-- A pending row may be held: due, but not to be called now, and spending no attempt while it
-- waits. Partner health (SPEC §10) holds the rows of a paused or tripped partner; money order
-- (SPEC §11) holds a -debit until its +credit has completed. The reason is on the row, so an
-- operator sees it with plain SQL, and the claim's index leaves held rows out: a backlog of
-- held rows costs the claim nothing.
ALTER TABLE webhook_queue ADD COLUMN held_reason TEXT
    CONSTRAINT webhook_queue_held_reason
        CHECK (held_reason IN ('partner_paused', 'partner_tripped', 'waiting_for_credit'));
ALTER TABLE webhook_queue ADD CONSTRAINT webhook_queue_held_while_pending
    CHECK (held_reason IS NULL OR status = 'pending');

COMMENT ON COLUMN webhook_queue.held_reason IS
    'Why a pending row is not claimed although it may be due: partner_paused (by an operator, or by a 410 Gone), partner_tripped (the partner failed too often in a row), waiting_for_credit (a -debit whose +credit has not completed). NULL: not held. A held row spends no attempt';

DROP INDEX webhook_queue_due_pending;
CREATE INDEX webhook_queue_due_pending
    ON webhook_queue (next_retry_at) WHERE status = 'pending' AND deleted_at IS NULL AND held_reason IS NULL;

-- Held rows by partner and reason: releasing them, counting them.
CREATE INDEX webhook_queue_held
    ON webhook_queue (config_id, held_reason) WHERE held_reason IS NOT NULL AND deleted_at IS NULL;
