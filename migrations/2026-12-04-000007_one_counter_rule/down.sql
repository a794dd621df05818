-- The trigger functions as migrations 000001 and 000002 wrote them, then the functions they
-- call in 000007 go.

CREATE OR REPLACE FUNCTION webhook_queue_count_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_queue_counts AS c (shard, config_id, event_type, bucket, n)
    SELECT pg_backend_pid() % 16, d.config_id, d.event_type, d.bucket, sum(d.delta)
    FROM (
        SELECT r.config_id, r.event_type, CASE WHEN r.deleted_at IS NULL THEN r.status ELSE 'cancelled' END AS bucket, 1 AS delta
        FROM new_rows r
        UNION ALL
        SELECT r.config_id, r.event_type, CASE WHEN r.deleted_at IS NULL THEN r.status ELSE 'cancelled' END, -1
        FROM (SELECT * FROM webhook_queue WHERE false) r
    ) d
    GROUP BY d.config_id, d.event_type, d.bucket
    HAVING sum(d.delta) <> 0
    ON CONFLICT (shard, config_id, event_type, bucket) DO UPDATE SET n = c.n + excluded.n;

    INSERT INTO webhook_attempt_counts AS c (shard, succeeded, duration_ms, n, sum_ms)
    SELECT pg_backend_pid() % 16, a.succeeded, webhook_duration_bucket(a.ms), sum(a.delta), sum(a.delta * a.ms)
    FROM (
        SELECT coalesce(v.status BETWEEN 200 AND 299, false) AS succeeded, coalesce(v.ms, 0) AS ms, 1 AS delta
        FROM new_rows r CROSS JOIN LATERAL (VALUES
            (r.retry_0_completed_at, r.retry_0_http_status, r.retry_0_duration_ms),
            (r.retry_1_completed_at, r.retry_1_http_status, r.retry_1_duration_ms),
            (r.retry_2_completed_at, r.retry_2_http_status, r.retry_2_duration_ms),
            (r.retry_3_completed_at, r.retry_3_http_status, r.retry_3_duration_ms),
            (r.retry_4_completed_at, r.retry_4_http_status, r.retry_4_duration_ms),
            (r.retry_5_completed_at, r.retry_5_http_status, r.retry_5_duration_ms),
            (r.retry_6_completed_at, r.retry_6_http_status, r.retry_6_duration_ms)
        ) AS v(done, status, ms)
        WHERE v.done IS NOT NULL
        UNION ALL
        SELECT coalesce(v.status BETWEEN 200 AND 299, false), coalesce(v.ms, 0), -1
        FROM (SELECT * FROM webhook_queue WHERE false) r CROSS JOIN LATERAL (VALUES
            (r.retry_0_completed_at, r.retry_0_http_status, r.retry_0_duration_ms),
            (r.retry_1_completed_at, r.retry_1_http_status, r.retry_1_duration_ms),
            (r.retry_2_completed_at, r.retry_2_http_status, r.retry_2_duration_ms),
            (r.retry_3_completed_at, r.retry_3_http_status, r.retry_3_duration_ms),
            (r.retry_4_completed_at, r.retry_4_http_status, r.retry_4_duration_ms),
            (r.retry_5_completed_at, r.retry_5_http_status, r.retry_5_duration_ms),
            (r.retry_6_completed_at, r.retry_6_http_status, r.retry_6_duration_ms)
        ) AS v(done, status, ms)
        WHERE v.done IS NOT NULL
    ) a
    GROUP BY a.succeeded, webhook_duration_bucket(a.ms)
    HAVING sum(a.delta) <> 0
    ON CONFLICT (shard, succeeded, duration_ms) DO UPDATE
        SET n = c.n + excluded.n, sum_ms = c.sum_ms + excluded.sum_ms;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION webhook_queue_count_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_throughput AS t (second, shard, completed, failed)
    SELECT date_trunc('second', now()), pg_backend_pid() % 16,
           count(*) FILTER (WHERE n.status = 'completed'), count(*) FILTER (WHERE n.status = 'failed')
    FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE n.status IN ('completed', 'failed') AND o.status IS DISTINCT FROM n.status
    HAVING count(*) > 0
    ON CONFLICT (second, shard) DO UPDATE
        SET completed = t.completed + excluded.completed, failed = t.failed + excluded.failed;

    INSERT INTO webhook_queue_counts AS c (shard, config_id, event_type, bucket, n)
    SELECT pg_backend_pid() % 16, d.config_id, d.event_type, d.bucket, sum(d.delta)
    FROM (
        SELECT r.config_id, r.event_type, CASE WHEN r.deleted_at IS NULL THEN r.status ELSE 'cancelled' END AS bucket, 1 AS delta
        FROM new_rows r
        UNION ALL
        SELECT r.config_id, r.event_type, CASE WHEN r.deleted_at IS NULL THEN r.status ELSE 'cancelled' END, -1
        FROM old_rows r
    ) d
    GROUP BY d.config_id, d.event_type, d.bucket
    HAVING sum(d.delta) <> 0
    ON CONFLICT (shard, config_id, event_type, bucket) DO UPDATE SET n = c.n + excluded.n;

    INSERT INTO webhook_attempt_counts AS c (shard, succeeded, duration_ms, n, sum_ms)
    SELECT pg_backend_pid() % 16, a.succeeded, webhook_duration_bucket(a.ms), sum(a.delta), sum(a.delta * a.ms)
    FROM (
        SELECT coalesce(v.status BETWEEN 200 AND 299, false) AS succeeded, coalesce(v.ms, 0) AS ms, 1 AS delta
        FROM new_rows r CROSS JOIN LATERAL (VALUES
            (r.retry_0_completed_at, r.retry_0_http_status, r.retry_0_duration_ms),
            (r.retry_1_completed_at, r.retry_1_http_status, r.retry_1_duration_ms),
            (r.retry_2_completed_at, r.retry_2_http_status, r.retry_2_duration_ms),
            (r.retry_3_completed_at, r.retry_3_http_status, r.retry_3_duration_ms),
            (r.retry_4_completed_at, r.retry_4_http_status, r.retry_4_duration_ms),
            (r.retry_5_completed_at, r.retry_5_http_status, r.retry_5_duration_ms),
            (r.retry_6_completed_at, r.retry_6_http_status, r.retry_6_duration_ms)
        ) AS v(done, status, ms)
        WHERE v.done IS NOT NULL
        UNION ALL
        SELECT coalesce(v.status BETWEEN 200 AND 299, false), coalesce(v.ms, 0), -1
        FROM old_rows r CROSS JOIN LATERAL (VALUES
            (r.retry_0_completed_at, r.retry_0_http_status, r.retry_0_duration_ms),
            (r.retry_1_completed_at, r.retry_1_http_status, r.retry_1_duration_ms),
            (r.retry_2_completed_at, r.retry_2_http_status, r.retry_2_duration_ms),
            (r.retry_3_completed_at, r.retry_3_http_status, r.retry_3_duration_ms),
            (r.retry_4_completed_at, r.retry_4_http_status, r.retry_4_duration_ms),
            (r.retry_5_completed_at, r.retry_5_http_status, r.retry_5_duration_ms),
            (r.retry_6_completed_at, r.retry_6_http_status, r.retry_6_duration_ms)
        ) AS v(done, status, ms)
        WHERE v.done IS NOT NULL
    ) a
    GROUP BY a.succeeded, webhook_duration_bucket(a.ms)
    HAVING sum(a.delta) <> 0
    ON CONFLICT (shard, succeeded, duration_ms) DO UPDATE
        SET n = c.n + excluded.n, sum_ms = c.sum_ms + excluded.sum_ms;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION webhook_queue_count_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_queue_counts AS c (shard, config_id, event_type, bucket, n)
    SELECT pg_backend_pid() % 16, d.config_id, d.event_type, d.bucket, sum(d.delta)
    FROM (
        SELECT r.config_id, r.event_type, CASE WHEN r.deleted_at IS NULL THEN r.status ELSE 'cancelled' END AS bucket, 1 AS delta
        FROM (SELECT * FROM webhook_queue WHERE false) r
        UNION ALL
        SELECT r.config_id, r.event_type, CASE WHEN r.deleted_at IS NULL THEN r.status ELSE 'cancelled' END, -1
        FROM old_rows r
    ) d
    GROUP BY d.config_id, d.event_type, d.bucket
    HAVING sum(d.delta) <> 0
    ON CONFLICT (shard, config_id, event_type, bucket) DO UPDATE SET n = c.n + excluded.n;

    INSERT INTO webhook_attempt_counts AS c (shard, succeeded, duration_ms, n, sum_ms)
    SELECT pg_backend_pid() % 16, a.succeeded, webhook_duration_bucket(a.ms), sum(a.delta), sum(a.delta * a.ms)
    FROM (
        SELECT coalesce(v.status BETWEEN 200 AND 299, false) AS succeeded, coalesce(v.ms, 0) AS ms, 1 AS delta
        FROM (SELECT * FROM webhook_queue WHERE false) r CROSS JOIN LATERAL (VALUES
            (r.retry_0_completed_at, r.retry_0_http_status, r.retry_0_duration_ms),
            (r.retry_1_completed_at, r.retry_1_http_status, r.retry_1_duration_ms),
            (r.retry_2_completed_at, r.retry_2_http_status, r.retry_2_duration_ms),
            (r.retry_3_completed_at, r.retry_3_http_status, r.retry_3_duration_ms),
            (r.retry_4_completed_at, r.retry_4_http_status, r.retry_4_duration_ms),
            (r.retry_5_completed_at, r.retry_5_http_status, r.retry_5_duration_ms),
            (r.retry_6_completed_at, r.retry_6_http_status, r.retry_6_duration_ms)
        ) AS v(done, status, ms)
        WHERE v.done IS NOT NULL
        UNION ALL
        SELECT coalesce(v.status BETWEEN 200 AND 299, false), coalesce(v.ms, 0), -1
        FROM old_rows r CROSS JOIN LATERAL (VALUES
            (r.retry_0_completed_at, r.retry_0_http_status, r.retry_0_duration_ms),
            (r.retry_1_completed_at, r.retry_1_http_status, r.retry_1_duration_ms),
            (r.retry_2_completed_at, r.retry_2_http_status, r.retry_2_duration_ms),
            (r.retry_3_completed_at, r.retry_3_http_status, r.retry_3_duration_ms),
            (r.retry_4_completed_at, r.retry_4_http_status, r.retry_4_duration_ms),
            (r.retry_5_completed_at, r.retry_5_http_status, r.retry_5_duration_ms),
            (r.retry_6_completed_at, r.retry_6_http_status, r.retry_6_duration_ms)
        ) AS v(done, status, ms)
        WHERE v.done IS NOT NULL
    ) a
    GROUP BY a.succeeded, webhook_duration_bucket(a.ms)
    HAVING sum(a.delta) <> 0
    ON CONFLICT (shard, succeeded, duration_ms) DO UPDATE
        SET n = c.n + excluded.n, sum_ms = c.sum_ms + excluded.sum_ms;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION webhook_attempt_history_count() RETURNS trigger
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

DROP FUNCTION webhook_queue_attempts(webhook_queue);
DROP FUNCTION webhook_throughput_add(BIGINT, BIGINT);
DROP FUNCTION webhook_attempt_counts_add(INTEGER[], BIGINT[], INTEGER[]);
DROP FUNCTION webhook_queue_counts_add(BIGINT[], TEXT[], TEXT[], BIGINT[]);
DROP FUNCTION webhook_count_bucket(TEXT, TIMESTAMPTZ);
DROP FUNCTION webhook_counter_shard();
