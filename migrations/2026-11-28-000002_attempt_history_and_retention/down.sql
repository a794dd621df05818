DROP INDEX webhook_queue_cancelled_at;
DROP INDEX webhook_queue_failed_updated_at;
DROP INDEX webhook_queue_completed_at;
-- Archived attempts leave the statistics with their rows, as they would by retention.
DELETE FROM webhook_attempt_history;
DROP TABLE webhook_attempt_history;
DROP FUNCTION webhook_attempt_history_count();
