DROP TRIGGER webhook_queue_count_insert ON webhook_queue;
CREATE TRIGGER webhook_queue_count_insert
    AFTER INSERT ON webhook_queue
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_queue_count_insert();

DROP TRIGGER webhook_queue_count_update ON webhook_queue;
CREATE TRIGGER webhook_queue_count_update
    AFTER UPDATE ON webhook_queue
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_queue_count_update();

DROP FUNCTION webhook_statement_counted_itself();
DROP FUNCTION webhook_statement_counts_itself();
