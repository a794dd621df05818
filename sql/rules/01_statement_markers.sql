-- Statement markers. A statement that knows its own effect says so, and the statement-level
-- triggers that would otherwise work it out stand aside for that statement only:
--
-- * counts itself: the statement updates the counters itself (the insert of new rows, the
--   outcome write) or changes none (the claim), so the count triggers (02_counters.sql) skip
--   it;
-- * settles nothing: the statement neither completes nor cancels a +credit (the claim), so
--   money order's update trigger (06_money_order.sql) skips it. An outcome write counts itself
--   but must still be settled after, with a fresh snapshot: hence two markers, not one.
--
-- A marker is a transaction-local setting holding statement_timestamp(). A trigger's own
-- statements share that timestamp with the statement that fired it, and a later statement of
-- the same transaction has another, so it is counted and settled as usual.

CREATE OR REPLACE FUNCTION webhook_statement_counts_itself() RETURNS BOOLEAN
LANGUAGE sql VOLATILE AS $$
    SELECT set_config('webhookd.counted_statement', statement_timestamp()::text, true) IS NOT NULL
$$;

COMMENT ON FUNCTION webhook_statement_counts_itself() IS
    'Called by a statement that updates the counters itself, or changes none: the count triggers skip that statement only';

CREATE OR REPLACE FUNCTION webhook_statement_counted_itself() RETURNS BOOLEAN
LANGUAGE sql STABLE AS $$
    SELECT current_setting('webhookd.counted_statement', true) IS NOT DISTINCT FROM statement_timestamp()::text
$$;

COMMENT ON FUNCTION webhook_statement_counted_itself() IS
    'True inside a statement that called webhook_statement_counts_itself()';

CREATE OR REPLACE FUNCTION webhook_statement_settles_nothing() RETURNS BOOLEAN
LANGUAGE sql VOLATILE AS $$
    SELECT set_config('webhookd.settling_statement', statement_timestamp()::text, true) IS NOT NULL
$$;

COMMENT ON FUNCTION webhook_statement_settles_nothing() IS
    'Called by a statement that completes and cancels no +credit (the claim): money order''s update trigger skips that statement only';

CREATE OR REPLACE FUNCTION webhook_statement_settled_nothing() RETURNS BOOLEAN
LANGUAGE sql STABLE AS $$
    SELECT current_setting('webhookd.settling_statement', true) IS NOT DISTINCT FROM statement_timestamp()::text
$$;

COMMENT ON FUNCTION webhook_statement_settled_nothing() IS
    'True inside a statement that called webhook_statement_settles_nothing()';
