-- The listing's (status, id) index kept an entry for every version of every row, including the
-- short-lived pending and processing versions each delivery makes and abandons. The planner,
-- which sees few rows in those states, then chose it for the hot statements' `status =
-- 'processing'` (the outcome write, the claim of expired leases) and walked every dead entry
-- left since the last vacuum: 4-7 ms per outcome write after a few seconds at 3,000 events/s,
-- against well under a millisecond by primary key (auto_explain, `just bench`).
--
-- Now it holds settled rows only. Rows in flight are reached through the claim's partial
-- indexes or by id, and a delivery adds one entry here instead of three. Listing pending or
-- processing rows, newest first, walks the primary key backwards: those rows are the newest.
DROP INDEX webhook_queue_status_id;
CREATE INDEX webhook_queue_status_id ON webhook_queue (status, id)
    WHERE status IN ('completed', 'failed');

-- The fence of every write after a claim is (worker_id, locked_at); a lease exists exactly while
-- a row is processing. Stated here, the outcome write and the release need no status test,
-- and without one the planner has no reason to reach rows other than by the ids they hold.
ALTER TABLE webhook_queue ADD CONSTRAINT webhook_queue_locked_while_processing
    CHECK ((status = 'processing') = (locked_at IS NOT NULL));
