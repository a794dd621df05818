-- webhookd schema: partner configurations and the delivery queue.
-- Column names of webhook_queue are those of the original description, unchanged, so that
-- operators can query it by hand. Statuses and event types are plain TEXT with CHECKs.

CREATE TABLE webhook_configs (
    id             BIGSERIAL PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    postback_url   TEXT,
    chargeback_url TEXT,
    max_retries    INTEGER CHECK (max_retries BETWEEN 0 AND 6),
    is_active      BOOLEAN NOT NULL DEFAULT true,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

COMMENT ON TABLE webhook_configs IS 'One row per partner: where its postbacks and chargebacks go';
COMMENT ON COLUMN webhook_configs.name IS 'Unique human name of the partner';
COMMENT ON COLUMN webhook_configs.postback_url IS 'URL template called for +credit events; {name} placeholders are filled from url_params';
COMMENT ON COLUMN webhook_configs.chargeback_url IS 'URL template called for -debit events';
COMMENT ON COLUMN webhook_configs.max_retries IS 'Retries after the first attempt (0-6); NULL means the global RETRY_MAX_RETRIES';
COMMENT ON COLUMN webhook_configs.is_active IS 'false once deactivated (DELETE /webhook-configs/{id}); inactive configs accept no new events';

CREATE TABLE webhook_queue (
    id            BIGSERIAL PRIMARY KEY,
    queue_id      UUID NOT NULL UNIQUE DEFAULT gen_random_uuid(),

    event_type    TEXT NOT NULL CHECK (event_type IN ('+credit', '-debit')),
    event_id      TEXT,

    config_id     BIGINT NOT NULL REFERENCES webhook_configs (id),
    webhook_url   TEXT NOT NULL,
    url_params    JSONB NOT NULL DEFAULT '{}',

    status        TEXT NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'processing', 'completed', 'failed')),

    retry_count   INTEGER NOT NULL DEFAULT 0 CHECK (retry_count BETWEEN 0 AND 6),
    max_retries   INTEGER NOT NULL DEFAULT 6 CHECK (max_retries BETWEEN 0 AND 6),
    next_retry_at TIMESTAMPTZ NOT NULL DEFAULT now(),

    retry_0_started_at   TIMESTAMPTZ,
    retry_0_completed_at TIMESTAMPTZ,
    retry_0_duration_ms  BIGINT,
    retry_0_http_status  INTEGER,
    retry_0_response_body TEXT,
    retry_0_error        TEXT,
    retry_1_started_at   TIMESTAMPTZ,
    retry_1_completed_at TIMESTAMPTZ,
    retry_1_duration_ms  BIGINT,
    retry_1_http_status  INTEGER,
    retry_1_response_body TEXT,
    retry_1_error        TEXT,
    retry_2_started_at   TIMESTAMPTZ,
    retry_2_completed_at TIMESTAMPTZ,
    retry_2_duration_ms  BIGINT,
    retry_2_http_status  INTEGER,
    retry_2_response_body TEXT,
    retry_2_error        TEXT,
    retry_3_started_at   TIMESTAMPTZ,
    retry_3_completed_at TIMESTAMPTZ,
    retry_3_duration_ms  BIGINT,
    retry_3_http_status  INTEGER,
    retry_3_response_body TEXT,
    retry_3_error        TEXT,
    retry_4_started_at   TIMESTAMPTZ,
    retry_4_completed_at TIMESTAMPTZ,
    retry_4_duration_ms  BIGINT,
    retry_4_http_status  INTEGER,
    retry_4_response_body TEXT,
    retry_4_error        TEXT,
    retry_5_started_at   TIMESTAMPTZ,
    retry_5_completed_at TIMESTAMPTZ,
    retry_5_duration_ms  BIGINT,
    retry_5_http_status  INTEGER,
    retry_5_response_body TEXT,
    retry_5_error        TEXT,
    retry_6_started_at   TIMESTAMPTZ,
    retry_6_completed_at TIMESTAMPTZ,
    retry_6_duration_ms  BIGINT,
    retry_6_http_status  INTEGER,
    retry_6_response_body TEXT,
    retry_6_error        TEXT,

    worker_id       TEXT,
    locked_at       TIMESTAMPTZ,
    lock_expires_at TIMESTAMPTZ,

    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at TIMESTAMPTZ,
    deleted_at   TIMESTAMPTZ,

    CHECK (retry_count <= max_retries)
) WITH (fillfactor = 80);

COMMENT ON TABLE webhook_queue IS 'One row per submitted event; each delivery attempt N is recorded in its retry_N_* columns';
COMMENT ON COLUMN webhook_queue.queue_id IS 'Public id of the entry; sent to the partner as X-Webhook-Id';
COMMENT ON COLUMN webhook_queue.event_type IS '+credit (postback) or -debit (chargeback)';
COMMENT ON COLUMN webhook_queue.event_id IS 'Producer''s id of the event; (config_id, event_type, event_id) is unique when set';
COMMENT ON COLUMN webhook_queue.webhook_url IS 'The final partner URL, built once at submit time';
COMMENT ON COLUMN webhook_queue.url_params IS 'Parameters as submitted (may hold partner secrets)';
COMMENT ON COLUMN webhook_queue.status IS 'pending: waiting for next_retry_at; processing: claimed by worker_id until lock_expires_at; completed: a 2xx arrived; failed: every attempt failed';
COMMENT ON COLUMN webhook_queue.retry_count IS 'Number of the attempt due next, or of the attempt that ended the row';
COMMENT ON COLUMN webhook_queue.max_retries IS 'Retries allowed after attempt 0 (from the config, else RETRY_MAX_RETRIES)';
COMMENT ON COLUMN webhook_queue.next_retry_at IS 'When a pending row becomes due';
COMMENT ON COLUMN webhook_queue.worker_id IS 'Worker holding (or that last held) the claim';
COMMENT ON COLUMN webhook_queue.locked_at IS 'When the current claim was taken; with worker_id it fences outcome writes';
COMMENT ON COLUMN webhook_queue.lock_expires_at IS 'After this instant a processing row may be claimed by another worker';
COMMENT ON COLUMN webhook_queue.completed_at IS 'When the row reached completed';
COMMENT ON COLUMN webhook_queue.deleted_at IS 'Set when cancelled; a cancelled row is never called again';
COMMENT ON COLUMN webhook_queue.retry_0_started_at IS 'Attempt 0: when the call started';
COMMENT ON COLUMN webhook_queue.retry_0_completed_at IS 'Attempt 0: when the call ended (response read or error)';
COMMENT ON COLUMN webhook_queue.retry_0_duration_ms IS 'Attempt 0: wall time of the call in milliseconds';
COMMENT ON COLUMN webhook_queue.retry_0_http_status IS 'Attempt 0: HTTP status the partner answered; NULL when no response arrived';
COMMENT ON COLUMN webhook_queue.retry_0_response_body IS 'Attempt 0: first RESPONSE_BODY_LIMIT bytes of the partner response (lossy UTF-8)';
COMMENT ON COLUMN webhook_queue.retry_0_error IS 'Attempt 0: why the attempt failed (non-2xx, timeout, refused, blocked address); NULL on success';
COMMENT ON COLUMN webhook_queue.retry_1_started_at IS 'Attempt 1: when the call started';
COMMENT ON COLUMN webhook_queue.retry_1_completed_at IS 'Attempt 1: when the call ended (response read or error)';
COMMENT ON COLUMN webhook_queue.retry_1_duration_ms IS 'Attempt 1: wall time of the call in milliseconds';
COMMENT ON COLUMN webhook_queue.retry_1_http_status IS 'Attempt 1: HTTP status the partner answered; NULL when no response arrived';
COMMENT ON COLUMN webhook_queue.retry_1_response_body IS 'Attempt 1: first RESPONSE_BODY_LIMIT bytes of the partner response (lossy UTF-8)';
COMMENT ON COLUMN webhook_queue.retry_1_error IS 'Attempt 1: why the attempt failed (non-2xx, timeout, refused, blocked address); NULL on success';
COMMENT ON COLUMN webhook_queue.retry_2_started_at IS 'Attempt 2: when the call started';
COMMENT ON COLUMN webhook_queue.retry_2_completed_at IS 'Attempt 2: when the call ended (response read or error)';
COMMENT ON COLUMN webhook_queue.retry_2_duration_ms IS 'Attempt 2: wall time of the call in milliseconds';
COMMENT ON COLUMN webhook_queue.retry_2_http_status IS 'Attempt 2: HTTP status the partner answered; NULL when no response arrived';
COMMENT ON COLUMN webhook_queue.retry_2_response_body IS 'Attempt 2: first RESPONSE_BODY_LIMIT bytes of the partner response (lossy UTF-8)';
COMMENT ON COLUMN webhook_queue.retry_2_error IS 'Attempt 2: why the attempt failed (non-2xx, timeout, refused, blocked address); NULL on success';
COMMENT ON COLUMN webhook_queue.retry_3_started_at IS 'Attempt 3: when the call started';
COMMENT ON COLUMN webhook_queue.retry_3_completed_at IS 'Attempt 3: when the call ended (response read or error)';
COMMENT ON COLUMN webhook_queue.retry_3_duration_ms IS 'Attempt 3: wall time of the call in milliseconds';
COMMENT ON COLUMN webhook_queue.retry_3_http_status IS 'Attempt 3: HTTP status the partner answered; NULL when no response arrived';
COMMENT ON COLUMN webhook_queue.retry_3_response_body IS 'Attempt 3: first RESPONSE_BODY_LIMIT bytes of the partner response (lossy UTF-8)';
COMMENT ON COLUMN webhook_queue.retry_3_error IS 'Attempt 3: why the attempt failed (non-2xx, timeout, refused, blocked address); NULL on success';
COMMENT ON COLUMN webhook_queue.retry_4_started_at IS 'Attempt 4: when the call started';
COMMENT ON COLUMN webhook_queue.retry_4_completed_at IS 'Attempt 4: when the call ended (response read or error)';
COMMENT ON COLUMN webhook_queue.retry_4_duration_ms IS 'Attempt 4: wall time of the call in milliseconds';
COMMENT ON COLUMN webhook_queue.retry_4_http_status IS 'Attempt 4: HTTP status the partner answered; NULL when no response arrived';
COMMENT ON COLUMN webhook_queue.retry_4_response_body IS 'Attempt 4: first RESPONSE_BODY_LIMIT bytes of the partner response (lossy UTF-8)';
COMMENT ON COLUMN webhook_queue.retry_4_error IS 'Attempt 4: why the attempt failed (non-2xx, timeout, refused, blocked address); NULL on success';
COMMENT ON COLUMN webhook_queue.retry_5_started_at IS 'Attempt 5: when the call started';
COMMENT ON COLUMN webhook_queue.retry_5_completed_at IS 'Attempt 5: when the call ended (response read or error)';
COMMENT ON COLUMN webhook_queue.retry_5_duration_ms IS 'Attempt 5: wall time of the call in milliseconds';
COMMENT ON COLUMN webhook_queue.retry_5_http_status IS 'Attempt 5: HTTP status the partner answered; NULL when no response arrived';
COMMENT ON COLUMN webhook_queue.retry_5_response_body IS 'Attempt 5: first RESPONSE_BODY_LIMIT bytes of the partner response (lossy UTF-8)';
COMMENT ON COLUMN webhook_queue.retry_5_error IS 'Attempt 5: why the attempt failed (non-2xx, timeout, refused, blocked address); NULL on success';
COMMENT ON COLUMN webhook_queue.retry_6_started_at IS 'Attempt 6: when the call started';
COMMENT ON COLUMN webhook_queue.retry_6_completed_at IS 'Attempt 6: when the call ended (response read or error)';
COMMENT ON COLUMN webhook_queue.retry_6_duration_ms IS 'Attempt 6: wall time of the call in milliseconds';
COMMENT ON COLUMN webhook_queue.retry_6_http_status IS 'Attempt 6: HTTP status the partner answered; NULL when no response arrived';
COMMENT ON COLUMN webhook_queue.retry_6_response_body IS 'Attempt 6: first RESPONSE_BODY_LIMIT bytes of the partner response (lossy UTF-8)';
COMMENT ON COLUMN webhook_queue.retry_6_error IS 'Attempt 6: why the attempt failed (non-2xx, timeout, refused, blocked address); NULL on success';

-- Idempotent submits: one row per (config, event type, producer event id).
CREATE UNIQUE INDEX webhook_queue_idempotency_key
    ON webhook_queue (config_id, event_type, event_id) WHERE event_id IS NOT NULL;

-- The claim: due pending rows in due order, and processing rows whose lease ran out.
CREATE INDEX webhook_queue_due_pending
    ON webhook_queue (next_retry_at) WHERE status = 'pending' AND deleted_at IS NULL;
CREATE INDEX webhook_queue_leased
    ON webhook_queue (lock_expires_at) WHERE status = 'processing' AND deleted_at IS NULL;

-- Listing with filters, newest first (keyset on id).
CREATE INDEX webhook_queue_status_id ON webhook_queue (status, id);
CREATE INDEX webhook_queue_config_id_id ON webhook_queue (config_id, id);

-- Stats: age of the oldest pending row.
CREATE INDEX webhook_queue_pending_created
    ON webhook_queue (created_at) WHERE status = 'pending' AND deleted_at IS NULL;

ALTER TABLE webhook_queue SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02
);

-- Statistics counters, maintained by statement-level triggers so that stats never scan the
-- queue. Counters are sharded by backend so concurrent writers rarely touch the same row.

CREATE TABLE webhook_queue_counts (
    shard      SMALLINT NOT NULL,
    config_id  BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    bucket     TEXT NOT NULL, -- a status, or 'cancelled' for rows with deleted_at set
    n          BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (shard, config_id, event_type, bucket)
);
COMMENT ON TABLE webhook_queue_counts IS 'Rows of webhook_queue by partner, event type and status (cancelled apart); sum over shards';

CREATE TABLE webhook_throughput (
    second    TIMESTAMPTZ NOT NULL,
    shard     SMALLINT NOT NULL,
    completed BIGINT NOT NULL DEFAULT 0,
    failed    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (second, shard)
);
COMMENT ON TABLE webhook_throughput IS 'Rows that reached completed or failed, per second (sum over shards); pruned after a day';

CREATE TABLE webhook_attempt_counts (
    shard       SMALLINT NOT NULL,
    succeeded   BOOLEAN NOT NULL,
    duration_ms BIGINT NOT NULL, -- duration rounded to two significant digits (histogram bucket)
    n           BIGINT NOT NULL DEFAULT 0,
    sum_ms      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (shard, succeeded, duration_ms)
);
COMMENT ON TABLE webhook_attempt_counts IS 'Recorded attempts by outcome and duration bucket; sum over shards';

CREATE FUNCTION webhook_duration_bucket(ms BIGINT) RETURNS BIGINT
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN ms < 100 THEN greatest(ms, 0)
                ELSE round(ms, 1 - floor(log(ms))::int)::bigint END
$$;

-- Counts each INSERT statement's effect on row and attempt counters: +1 per new row image,
-- -1 per old one, grouped so a batch of rows costs one counter write per group.
CREATE FUNCTION webhook_queue_count_insert() RETURNS trigger
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

CREATE TRIGGER webhook_queue_count_insert
    AFTER INSERT ON webhook_queue
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_queue_count_insert();

-- Counts each UPDATE statement's effect on row and attempt counters: +1 per new row image,
-- -1 per old one, grouped so a batch of rows costs one counter write per group.
CREATE FUNCTION webhook_queue_count_update() RETURNS trigger
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

CREATE TRIGGER webhook_queue_count_update
    AFTER UPDATE ON webhook_queue
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_queue_count_update();

-- Counts each DELETE statement's effect on row and attempt counters: +1 per new row image,
-- -1 per old one, grouped so a batch of rows costs one counter write per group.
CREATE FUNCTION webhook_queue_count_delete() RETURNS trigger
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

CREATE TRIGGER webhook_queue_count_delete
    AFTER DELETE ON webhook_queue
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_queue_count_delete();
