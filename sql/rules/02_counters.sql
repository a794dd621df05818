-- Statistics counters, so that statistics never scan the queue (docs/decisions.md,
-- "Operations"): rows by partner, event type and bucket (webhook_queue_tallies, read through
-- the view webhook_queue_counts), attempts by outcome and duration (webhook_attempt_counts),
-- rows settled per second (webhook_throughput).
--
-- Each counter table has one writer, a function that adds a list of deltas on the calling
-- session's shard, so the shard rule, the bucket of a row and the success and duration rule of
-- an attempt are stated here and nowhere else. The statement-level triggers below call them
-- with +1 per new row image and -1 per old one; the statements that count themselves call them
-- directly (01_statement_markers.sql). The adding functions are PL/pgSQL so that their
-- statement is planned once per session (a SQL function holding an INSERT is planned again on
-- every call). They group the deltas themselves, so a caller may pass one delta per row, and
-- are STRICT: an aggregate over no rows gives NULL arrays, and the call is skipped. They
-- update the rows that exist and insert only the others (ON CONFLICT for those a concurrent
-- writer inserted meanwhile): an upsert that finds its row locks it first, a record of its own
-- in the WAL. Every session locks a statement's counter rows in key order (sorted deltas, no
-- sequential scan), so two writers that share a shard cannot deadlock on them.
--
-- What an event costs the counters at everyday rates, where each statement carries one row:
-- one counter row at its insert, none at its claim (pending and processing share the column
-- queued), one at its outcome (queued to completed is one row's two columns), plus its
-- attempt's histogram row. The outcome write leaves rows settled per second to its process,
-- which adds them once a second (application/engine/throughput.rs).
--
-- Archived attempts (webhook_attempt_history) count as the queue's own did, so that archiving
-- one (taken off by the queue's UPDATE trigger, put back by the history's INSERT trigger, in
-- one statement) leaves the statistics unchanged.

-- A duration's histogram bucket: two significant digits, exact below 100 ms.
CREATE OR REPLACE FUNCTION webhook_duration_bucket(ms BIGINT) RETURNS BIGINT
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN ms < 100 THEN greatest(ms, 0)
                ELSE round(ms, 1 - floor(log(ms))::int)::bigint END
$$;

CREATE OR REPLACE FUNCTION webhook_counter_shard() RETURNS SMALLINT
LANGUAGE sql STABLE PARALLEL RESTRICTED AS $$
    SELECT (pg_backend_pid() % 16)::smallint
$$;

COMMENT ON FUNCTION webhook_counter_shard() IS
    'The counter rows a session adds to: concurrent writers rarely share one; readers sum over shards';

CREATE OR REPLACE FUNCTION webhook_count_bucket(status TEXT, deleted_at TIMESTAMPTZ) RETURNS TEXT
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN deleted_at IS NULL THEN status ELSE 'cancelled' END
$$;

COMMENT ON FUNCTION webhook_count_bucket(TEXT, TIMESTAMPTZ) IS
    'The webhook_queue_counts bucket of a queue row: its status, or cancelled once deleted_at is set';

CREATE OR REPLACE FUNCTION webhook_queue_counts_add(
    config_ids BIGINT[], event_types TEXT[], buckets TEXT[], deltas BIGINT[]
) RETURNS VOID
LANGUAGE plpgsql STRICT
SET enable_seqscan = off
AS $$
DECLARE
    own_shard SMALLINT := webhook_counter_shard();
BEGIN
    WITH added AS (
        SELECT d.config_id, d.event_type,
               coalesce(sum(d.delta) FILTER (WHERE d.bucket IN ('pending', 'processing')), 0) AS queued,
               coalesce(sum(d.delta) FILTER (WHERE d.bucket = 'completed'), 0) AS completed,
               coalesce(sum(d.delta) FILTER (WHERE d.bucket = 'failed'), 0) AS failed,
               coalesce(sum(d.delta) FILTER (WHERE d.bucket = 'cancelled'), 0) AS cancelled
        FROM unnest(config_ids, event_types, buckets, deltas) AS d(config_id, event_type, bucket, delta)
        GROUP BY d.config_id, d.event_type
    ), nonzero AS (
        SELECT * FROM added a WHERE a.queued <> 0 OR a.completed <> 0 OR a.failed <> 0 OR a.cancelled <> 0
        ORDER BY a.config_id, a.event_type
    ), updated AS (
        UPDATE webhook_queue_tallies t
        SET queued = t.queued + a.queued, completed = t.completed + a.completed,
            failed = t.failed + a.failed, cancelled = t.cancelled + a.cancelled
        FROM nonzero a
        WHERE t.shard = own_shard AND t.config_id = a.config_id AND t.event_type = a.event_type
        RETURNING t.config_id, t.event_type
    )
    INSERT INTO webhook_queue_tallies AS t (shard, config_id, event_type, queued, completed, failed, cancelled)
    SELECT own_shard, a.config_id, a.event_type, a.queued, a.completed, a.failed, a.cancelled
    FROM nonzero a
    WHERE NOT EXISTS (SELECT 1 FROM updated u WHERE u.config_id = a.config_id AND u.event_type = a.event_type)
    ORDER BY a.config_id, a.event_type
    ON CONFLICT (shard, config_id, event_type) DO UPDATE
        SET queued = t.queued + excluded.queued, completed = t.completed + excluded.completed,
            failed = t.failed + excluded.failed, cancelled = t.cancelled + excluded.cancelled;
END
$$;

COMMENT ON FUNCTION webhook_queue_counts_add(BIGINT[], TEXT[], TEXT[], BIGINT[]) IS
    'Adds deltas (element-wise: partner, event type, bucket, delta) to webhook_queue_tallies, pending and processing both to queued; the one writer of that table';

-- The counters by bucket, as the statistics read them (summed over shards): the tallies, with
-- queued split into the rows processing, counted from the queue (the rows in flight, which the
-- leases' partial index holds), and the rest pending. The live part comes as shard -1.
CREATE OR REPLACE VIEW webhook_queue_counts AS
SELECT t.shard, t.config_id, t.event_type, b.bucket, b.n
FROM webhook_queue_tallies t
CROSS JOIN LATERAL (VALUES ('pending', t.queued), ('completed', t.completed), ('failed', t.failed),
                           ('cancelled', t.cancelled)) AS b(bucket, n)
UNION ALL
SELECT -1::smallint, f.config_id, f.event_type, b.bucket, b.n
FROM (SELECT q.config_id, q.event_type, count(*) AS n FROM webhook_queue q
      WHERE q.status = 'processing' AND q.deleted_at IS NULL
      GROUP BY q.config_id, q.event_type) f
CROSS JOIN LATERAL (VALUES ('processing', f.n), ('pending', -f.n)) AS b(bucket, n);

COMMENT ON VIEW webhook_queue_counts IS
    'Rows of webhook_queue by partner, event type and bucket (a status, or cancelled), in cells to sum over shard: webhook_queue_tallies, its queued split into processing and pending by a count of the rows in flight';

CREATE OR REPLACE FUNCTION webhook_attempt_counts_add(http_statuses INTEGER[], durations_ms BIGINT[], deltas INTEGER[])
RETURNS VOID
LANGUAGE plpgsql STRICT
SET enable_seqscan = off
AS $$
DECLARE
    own_shard SMALLINT := webhook_counter_shard();
BEGIN
    WITH added AS (
        SELECT a.succeeded, webhook_duration_bucket(a.ms) AS duration_ms, sum(a.delta) AS n, sum(a.delta * a.ms) AS sum_ms
        FROM (
            SELECT coalesce(u.http_status BETWEEN 200 AND 299, false) AS succeeded, coalesce(u.ms, 0) AS ms,
                   u.delta::bigint AS delta
            FROM unnest(http_statuses, durations_ms, deltas) AS u(http_status, ms, delta)
        ) a
        GROUP BY a.succeeded, webhook_duration_bucket(a.ms)
        HAVING sum(a.delta) <> 0 OR sum(a.delta * a.ms) <> 0
        ORDER BY 1, 2
    ), updated AS (
        UPDATE webhook_attempt_counts c SET n = c.n + a.n, sum_ms = c.sum_ms + a.sum_ms
        FROM added a
        WHERE c.shard = own_shard AND c.succeeded = a.succeeded AND c.duration_ms = a.duration_ms
        RETURNING c.succeeded, c.duration_ms
    )
    INSERT INTO webhook_attempt_counts AS c (shard, succeeded, duration_ms, n, sum_ms)
    SELECT own_shard, a.succeeded, a.duration_ms, a.n, a.sum_ms
    FROM added a
    WHERE NOT EXISTS (SELECT 1 FROM updated u WHERE u.succeeded = a.succeeded AND u.duration_ms = a.duration_ms)
    ORDER BY a.succeeded, a.duration_ms
    ON CONFLICT (shard, succeeded, duration_ms) DO UPDATE
        SET n = c.n + excluded.n, sum_ms = c.sum_ms + excluded.sum_ms;
END
$$;

COMMENT ON FUNCTION webhook_attempt_counts_add(INTEGER[], BIGINT[], INTEGER[]) IS
    'Adds completed attempts (element-wise: HTTP status or NULL, duration, +1 or -1) to webhook_attempt_counts: succeeded means a 2xx, durations go to their webhook_duration_bucket; the one writer of that table';

CREATE OR REPLACE FUNCTION webhook_throughput_add(seconds TIMESTAMPTZ[], completed BIGINT[], failed BIGINT[])
RETURNS VOID
LANGUAGE plpgsql STRICT AS $$
BEGIN
    INSERT INTO webhook_throughput AS t (second, shard, completed, failed)
    SELECT date_trunc('second', u.second), webhook_counter_shard(), sum(u.completed), sum(u.failed)
    FROM unnest(seconds, completed, failed) AS u(second, completed, failed)
    GROUP BY date_trunc('second', u.second)
    HAVING sum(u.completed) <> 0 OR sum(u.failed) <> 0
    ON CONFLICT (second, shard) DO UPDATE
        SET completed = t.completed + excluded.completed, failed = t.failed + excluded.failed;
END
$$;

COMMENT ON FUNCTION webhook_throughput_add(TIMESTAMPTZ[], BIGINT[], BIGINT[]) IS
    'Adds rows that reached completed and failed (element-wise: when, completed, failed) to their seconds of webhook_throughput; the one writer of that table';

-- Inlined into the statements that call it (a single SELECT, neither volatile nor strict).
CREATE OR REPLACE FUNCTION webhook_queue_attempts(q webhook_queue)
RETURNS TABLE (attempt INTEGER, started_at TIMESTAMPTZ, completed_at TIMESTAMPTZ, duration_ms BIGINT,
               http_status INTEGER, response_body TEXT, error TEXT)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT v.* FROM (VALUES
        (0, q.retry_0_started_at, q.retry_0_completed_at, q.retry_0_duration_ms, q.retry_0_http_status,
            q.retry_0_response_body, q.retry_0_error),
        (1, q.retry_1_started_at, q.retry_1_completed_at, q.retry_1_duration_ms, q.retry_1_http_status,
            q.retry_1_response_body, q.retry_1_error),
        (2, q.retry_2_started_at, q.retry_2_completed_at, q.retry_2_duration_ms, q.retry_2_http_status,
            q.retry_2_response_body, q.retry_2_error),
        (3, q.retry_3_started_at, q.retry_3_completed_at, q.retry_3_duration_ms, q.retry_3_http_status,
            q.retry_3_response_body, q.retry_3_error),
        (4, q.retry_4_started_at, q.retry_4_completed_at, q.retry_4_duration_ms, q.retry_4_http_status,
            q.retry_4_response_body, q.retry_4_error),
        (5, q.retry_5_started_at, q.retry_5_completed_at, q.retry_5_duration_ms, q.retry_5_http_status,
            q.retry_5_response_body, q.retry_5_error),
        (6, q.retry_6_started_at, q.retry_6_completed_at, q.retry_6_duration_ms, q.retry_6_http_status,
            q.retry_6_response_body, q.retry_6_error)
    ) AS v(attempt, started_at, completed_at, duration_ms, http_status, response_body, error)
    WHERE v.started_at IS NOT NULL OR v.completed_at IS NOT NULL
$$;

COMMENT ON FUNCTION webhook_queue_attempts(webhook_queue) IS
    'The attempts a queue row holds in its retry_N_* columns (the slots in use), in order; the one reader of those columns in SQL';

CREATE OR REPLACE FUNCTION webhook_queue_count_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM webhook_queue_counts_add(array_agg(r.config_id), array_agg(r.event_type),
                                     array_agg(webhook_count_bucket(r.status, r.deleted_at)), array_agg(1::bigint))
    FROM new_rows r;
    PERFORM webhook_attempt_counts_add(array_agg(a.http_status), array_agg(a.duration_ms), array_agg(1))
    FROM new_rows r CROSS JOIN LATERAL webhook_queue_attempts(r) a
    WHERE a.completed_at IS NOT NULL;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER webhook_queue_count_insert
    AFTER INSERT ON webhook_queue
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT
    WHEN (NOT webhook_statement_counted_itself())
    EXECUTE FUNCTION webhook_queue_count_insert();

CREATE OR REPLACE FUNCTION webhook_queue_count_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM webhook_throughput_add(ARRAY[now()], ARRAY[count(*) FILTER (WHERE n.status = 'completed')],
                                   ARRAY[count(*) FILTER (WHERE n.status = 'failed')])
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE n.status IN ('completed', 'failed') AND o.status IS DISTINCT FROM n.status;
    PERFORM webhook_queue_counts_add(array_agg(d.config_id), array_agg(d.event_type), array_agg(d.bucket),
                                     array_agg(d.delta))
    FROM (
        SELECT r.config_id, r.event_type, webhook_count_bucket(r.status, r.deleted_at) AS bucket, 1::bigint AS delta
        FROM new_rows r
        UNION ALL
        SELECT r.config_id, r.event_type, webhook_count_bucket(r.status, r.deleted_at), -1
        FROM old_rows r
    ) d;
    -- Names the three columns it needs of each slot: through webhook_queue_attempts(r), every
    -- row image would first be formed whole, response bodies and all, which made a batch of
    -- outcome-sized updates a quarter slower.
    PERFORM webhook_attempt_counts_add(array_agg(d.http_status), array_agg(d.duration_ms), array_agg(d.delta))
    FROM (
        SELECT v.http_status, v.duration_ms, 1 AS delta
        FROM new_rows r CROSS JOIN LATERAL (VALUES
            (r.retry_0_completed_at, r.retry_0_http_status, r.retry_0_duration_ms),
            (r.retry_1_completed_at, r.retry_1_http_status, r.retry_1_duration_ms),
            (r.retry_2_completed_at, r.retry_2_http_status, r.retry_2_duration_ms),
            (r.retry_3_completed_at, r.retry_3_http_status, r.retry_3_duration_ms),
            (r.retry_4_completed_at, r.retry_4_http_status, r.retry_4_duration_ms),
            (r.retry_5_completed_at, r.retry_5_http_status, r.retry_5_duration_ms),
            (r.retry_6_completed_at, r.retry_6_http_status, r.retry_6_duration_ms)
        ) AS v(completed_at, http_status, duration_ms)
        WHERE v.completed_at IS NOT NULL
        UNION ALL
        SELECT v.http_status, v.duration_ms, -1
        FROM old_rows r CROSS JOIN LATERAL (VALUES
            (r.retry_0_completed_at, r.retry_0_http_status, r.retry_0_duration_ms),
            (r.retry_1_completed_at, r.retry_1_http_status, r.retry_1_duration_ms),
            (r.retry_2_completed_at, r.retry_2_http_status, r.retry_2_duration_ms),
            (r.retry_3_completed_at, r.retry_3_http_status, r.retry_3_duration_ms),
            (r.retry_4_completed_at, r.retry_4_http_status, r.retry_4_duration_ms),
            (r.retry_5_completed_at, r.retry_5_http_status, r.retry_5_duration_ms),
            (r.retry_6_completed_at, r.retry_6_http_status, r.retry_6_duration_ms)
        ) AS v(completed_at, http_status, duration_ms)
        WHERE v.completed_at IS NOT NULL
    ) d;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER webhook_queue_count_update
    AFTER UPDATE ON webhook_queue
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT
    WHEN (NOT webhook_statement_counted_itself())
    EXECUTE FUNCTION webhook_queue_count_update();

CREATE OR REPLACE FUNCTION webhook_queue_count_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM webhook_queue_counts_add(array_agg(r.config_id), array_agg(r.event_type),
                                     array_agg(webhook_count_bucket(r.status, r.deleted_at)), array_agg(-1::bigint))
    FROM old_rows r;
    PERFORM webhook_attempt_counts_add(array_agg(a.http_status), array_agg(a.duration_ms), array_agg(-1))
    FROM old_rows r CROSS JOIN LATERAL webhook_queue_attempts(r) a
    WHERE a.completed_at IS NOT NULL;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER webhook_queue_count_delete
    AFTER DELETE ON webhook_queue
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_queue_count_delete();

CREATE OR REPLACE FUNCTION webhook_attempt_history_count() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    sign INTEGER := CASE TG_OP WHEN 'INSERT' THEN 1 ELSE -1 END;
BEGIN
    PERFORM webhook_attempt_counts_add(array_agg(r.http_status), array_agg(r.duration_ms), array_agg(sign))
    FROM changed_rows r
    WHERE r.completed_at IS NOT NULL;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER webhook_attempt_history_count_insert
    AFTER INSERT ON webhook_attempt_history
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_attempt_history_count();

CREATE OR REPLACE TRIGGER webhook_attempt_history_count_delete
    AFTER DELETE ON webhook_attempt_history
    REFERENCING OLD TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_attempt_history_count();
