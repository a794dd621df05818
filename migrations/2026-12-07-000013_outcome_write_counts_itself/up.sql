-- The outcome write counts itself, as the insert of new rows and the claim do (migration
-- 000005): it knows what it changes (rows leave processing for their new status, one attempt
-- slot is written, rows reach completed or failed), so the count trigger's transition tables
-- (every old and new row image, response bodies and all) and its seven-slot walks are spared
-- on the statement that runs once per delivery.
--
-- Money order's update trigger (migration 000010) must still run after an outcome write: it
-- settles the debits of the credits it completed with a fresh snapshot, which finds a debit
-- that committed while the write ran (docs/decisions.md, "Money order"). So "counted itself"
-- no longer means "settled itself": a statement that neither completes nor cancels a credit
-- (the claim) says so with a second marker (webhook_statement_settles_nothing, migration
-- 000012), and only that one makes money order stand aside.
--
-- The markers are keyed by statement_timestamp(), which a trigger's own statements share with
-- the statement that fired it: the settle that money order's trigger runs after an outcome
-- write is not counted by the count trigger either. It only releases debits there (pending
-- stays pending); a cancel comes from the statement that cancels the credit, which does not
-- count itself.

DROP TRIGGER webhook_money_order_on_update ON webhook_queue;
CREATE TRIGGER webhook_money_order_on_update
    AFTER UPDATE ON webhook_queue
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT
    WHEN (NOT webhook_statement_settled_nothing())
    EXECUTE FUNCTION webhook_money_order_on_update();
