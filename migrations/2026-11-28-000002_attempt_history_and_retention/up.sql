-- Operating webhookd: the history of manual retries and redrives, and the indexes retention
-- needs to find old rows without scanning the queue.

-- A failed entry put through a fresh retry cycle (POST /webhooks/{queue_id}/retry, or a bulk
-- redrive) has its retry_N_* columns cleared for the new cycle; the attempts they held are
-- kept here first, in the same statement.
CREATE TABLE webhook_attempt_history (
    id            BIGSERIAL PRIMARY KEY,
    queue_id      UUID NOT NULL REFERENCES webhook_queue (queue_id) ON DELETE CASCADE,
    cycle         INTEGER NOT NULL CHECK (cycle >= 0),
    attempt       INTEGER NOT NULL CHECK (attempt BETWEEN 0 AND 6),
    started_at    TIMESTAMPTZ NOT NULL,
    completed_at  TIMESTAMPTZ,
    duration_ms   BIGINT,
    http_status   INTEGER,
    response_body TEXT,
    error         TEXT,
    archived_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

COMMENT ON TABLE webhook_attempt_history IS 'Attempts of earlier retry cycles, moved here from webhook_queue.retry_N_* when a failed entry was retried or redriven';
COMMENT ON COLUMN webhook_attempt_history.queue_id IS 'The entry (webhook_queue.queue_id); its history goes when the entry is deleted';
COMMENT ON COLUMN webhook_attempt_history.cycle IS 'Retry cycle the attempt belonged to: 0 for the first, 1 after the first manual retry or redrive, ...';
COMMENT ON COLUMN webhook_attempt_history.attempt IS 'Attempt number N within its cycle (it was recorded in retry_N_*)';
COMMENT ON COLUMN webhook_attempt_history.started_at IS 'When the call started (was retry_N_started_at)';
COMMENT ON COLUMN webhook_attempt_history.completed_at IS 'When the call ended (was retry_N_completed_at)';
COMMENT ON COLUMN webhook_attempt_history.duration_ms IS 'Wall time of the call in milliseconds (was retry_N_duration_ms)';
COMMENT ON COLUMN webhook_attempt_history.http_status IS 'HTTP status the partner answered; NULL when no response arrived (was retry_N_http_status)';
COMMENT ON COLUMN webhook_attempt_history.response_body IS 'First RESPONSE_BODY_LIMIT bytes of the partner response (was retry_N_response_body)';
COMMENT ON COLUMN webhook_attempt_history.error IS 'Why the attempt failed; NULL on success (was retry_N_error)';
COMMENT ON COLUMN webhook_attempt_history.archived_at IS 'When the cycle was closed by a manual retry or redrive';

-- Reading an entry's attempts in order; also one cycle's attempts are never archived twice.
CREATE UNIQUE INDEX webhook_attempt_history_entry
    ON webhook_attempt_history (queue_id, cycle, attempt);

-- Statistics stay honest: webhook_attempt_counts counts every attempt recorded in
-- webhook_queue.retry_N_* (the queue triggers) plus every row of this table (this trigger).
-- Archiving moves an attempt from the first to the second in one statement: the queue's
-- UPDATE trigger takes it off, this INSERT trigger puts it back, and attempts.total is
-- unchanged. Deleting history rows (with their entry, by retention) takes them off again,
-- as deleting a queue row does for its own attempts. Same shard, bucket and success rule as
-- the queue triggers, so the two cancel exactly.
CREATE FUNCTION webhook_attempt_history_count() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    sign INTEGER := CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END;
BEGIN
    INSERT INTO webhook_attempt_counts AS c (shard, succeeded, duration_ms, n, sum_ms)
    SELECT pg_backend_pid() % 16, a.succeeded, webhook_duration_bucket(a.ms), sign * count(*), sign * sum(a.ms)
    FROM (
        SELECT coalesce(r.http_status BETWEEN 200 AND 299, false) AS succeeded, coalesce(r.duration_ms, 0) AS ms
        FROM changed_rows r
        WHERE r.completed_at IS NOT NULL
    ) a
    GROUP BY a.succeeded, webhook_duration_bucket(a.ms)
    ON CONFLICT (shard, succeeded, duration_ms) DO UPDATE
        SET n = c.n + excluded.n, sum_ms = c.sum_ms + excluded.sum_ms;
    RETURN NULL;
END
$$;

CREATE TRIGGER webhook_attempt_history_count_insert
    AFTER INSERT ON webhook_attempt_history
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_attempt_history_count();

CREATE TRIGGER webhook_attempt_history_count_delete
    AFTER DELETE ON webhook_attempt_history
    REFERENCING OLD TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_attempt_history_count();

-- Retention (RETENTION_COMPLETED, RETENTION_FAILED): each rule finds its oldest rows with one
-- range scan of a small partial index. The buckets are those of the statistics: a row with
-- deleted_at set is cancelled whatever its status.
CREATE INDEX webhook_queue_completed_at
    ON webhook_queue (completed_at) WHERE status = 'completed' AND deleted_at IS NULL;
-- Also serves redrive's failed_after/failed_before filters.
CREATE INDEX webhook_queue_failed_updated_at
    ON webhook_queue (updated_at) WHERE status = 'failed' AND deleted_at IS NULL;
CREATE INDEX webhook_queue_cancelled_at
    ON webhook_queue (deleted_at) WHERE deleted_at IS NOT NULL;
