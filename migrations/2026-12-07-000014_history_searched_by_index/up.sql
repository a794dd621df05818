-- Searching a long history: every search an operator can make reaches its rows through an
-- index, or reads a bounded stretch of one (docs/operations.md, "Searching history").

-- The search by event id, with or without a partner, is one probe of the idempotency index
-- once the index leads with the event id. The same columns, so submits still find their
-- conflicts through it and the table keeps as many indexes as before.
CREATE UNIQUE INDEX webhook_queue_idempotency_key_by_event
    ON webhook_queue (event_id, config_id, event_type) WHERE event_id IS NOT NULL;
DROP INDEX webhook_queue_idempotency_key;
ALTER INDEX webhook_queue_idempotency_key_by_event RENAME TO webhook_queue_idempotency_key;

-- One partner's failed rows, newest first (the listing, a redrive's count and selection). Only
-- failed rows have entries, so a delivery that succeeds writes nothing here. It carries what a
-- redrive filters on, so its count reads the index alone, not a heap page per failed row.
CREATE INDEX webhook_queue_partner_failed ON webhook_queue (config_id, id)
    INCLUDE (deleted_at, event_type, updated_at, created_at) WHERE status = 'failed';

-- Leases, live or cancelled: a processing row without one (an invariant's check and heal) is
-- found here whether or not it was cancelled, instead of among every cancelled row of the
-- history. Processing rows are the few in flight, cancelled ones rarer still.
DROP INDEX webhook_queue_leased;
CREATE INDEX webhook_queue_leased ON webhook_queue (lock_expires_at) WHERE status = 'processing';

-- A time window is searched as a range of ids (webhook_queue_first_id_created_since, in
-- sql/rules/08_history_search.sql), which holds when ids rise with created_at. Both are now
-- taken as the row is built, the id from its sequence and created_at from the clock, rather
-- than created_at at the start of the inserting transaction, which may have begun long before.
ALTER TABLE webhook_queue ALTER COLUMN created_at SET DEFAULT clock_timestamp();
