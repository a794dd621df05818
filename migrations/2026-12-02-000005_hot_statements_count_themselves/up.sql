-- The two statements on the way from a submit to its first call — the API's insert of new rows
-- and the workers' claim — update webhook_queue_counts themselves, in the same statement, and
-- the statement-level count triggers stand aside for them. The triggers cost those statements
-- a PL/pgSQL call, transition tables and three upserts each; the statements know their effect
-- exactly without them (new rows are pending; a claim moves pending rows to processing).
-- Every other change (outcome writes, hand-backs, cancels, retries, retention, changes by
-- hand) is still counted by the triggers.
--
-- A statement that counts itself calls webhook_statement_counts_itself(), which marks the
-- statement (its statement_timestamp()) in a transaction-local setting. The triggers skip only
-- the marked statement: a later statement of the same transaction is counted as before.

CREATE FUNCTION webhook_statement_counts_itself() RETURNS BOOLEAN
LANGUAGE sql VOLATILE AS $$
    SELECT set_config('webhookd.counted_statement', statement_timestamp()::text, true) IS NOT NULL
$$;

CREATE FUNCTION webhook_statement_counted_itself() RETURNS BOOLEAN
LANGUAGE sql STABLE AS $$
    SELECT current_setting('webhookd.counted_statement', true) IS NOT DISTINCT FROM statement_timestamp()::text
$$;

COMMENT ON FUNCTION webhook_statement_counts_itself() IS
    'Called by a statement that updates webhook_queue_counts itself: the count triggers skip that statement only';
COMMENT ON FUNCTION webhook_statement_counted_itself() IS
    'True inside a statement that called webhook_statement_counts_itself()';

DROP TRIGGER webhook_queue_count_insert ON webhook_queue;
CREATE TRIGGER webhook_queue_count_insert
    AFTER INSERT ON webhook_queue
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT
    WHEN (NOT webhook_statement_counted_itself())
    EXECUTE FUNCTION webhook_queue_count_insert();

DROP TRIGGER webhook_queue_count_update ON webhook_queue;
CREATE TRIGGER webhook_queue_count_update
    AFTER UPDATE ON webhook_queue
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT
    WHEN (NOT webhook_statement_counted_itself())
    EXECUTE FUNCTION webhook_queue_count_update();
