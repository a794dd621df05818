ALTER TABLE webhook_queue DROP CONSTRAINT webhook_queue_locked_while_processing;
DROP INDEX webhook_queue_status_id;
CREATE INDEX webhook_queue_status_id ON webhook_queue (status, id);
