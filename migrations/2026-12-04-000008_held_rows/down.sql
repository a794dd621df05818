DROP INDEX webhook_queue_held;
DROP INDEX webhook_queue_due_pending;
CREATE INDEX webhook_queue_due_pending
    ON webhook_queue (next_retry_at) WHERE status = 'pending' AND deleted_at IS NULL;
ALTER TABLE webhook_queue DROP CONSTRAINT webhook_queue_held_while_pending;
ALTER TABLE webhook_queue DROP COLUMN held_reason;
