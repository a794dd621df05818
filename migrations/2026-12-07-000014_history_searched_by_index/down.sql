DROP INDEX webhook_queue_leased;
CREATE INDEX webhook_queue_leased
    ON webhook_queue (lock_expires_at) WHERE status = 'processing' AND deleted_at IS NULL;
ALTER TABLE webhook_queue ALTER COLUMN created_at SET DEFAULT now();
DROP INDEX webhook_queue_partner_failed;
CREATE UNIQUE INDEX webhook_queue_idempotency_key_by_config
    ON webhook_queue (config_id, event_type, event_id) WHERE event_id IS NOT NULL;
DROP INDEX webhook_queue_idempotency_key;
ALTER INDEX webhook_queue_idempotency_key_by_config RENAME TO webhook_queue_idempotency_key;
