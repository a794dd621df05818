DROP TRIGGER webhook_money_order_on_update ON webhook_queue;
CREATE TRIGGER webhook_money_order_on_update
    AFTER UPDATE ON webhook_queue
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT
    WHEN (NOT webhook_statement_counted_itself())
    EXECUTE FUNCTION webhook_money_order_on_update();
