-- One counter row per shard, partner and event type, with a column per bucket, in place of a
-- row per bucket: a row that changes bucket (an outcome) moves one counter row, not two. Rows
-- pending and processing share the column `queued`, so a claim moves none; the statistics
-- split it with a count of the rows in flight (the view webhook_queue_counts, which
-- sql/rules/02_counters.sql defines, as it defines the one writer, webhook_queue_counts_add).
CREATE TABLE webhook_queue_tallies (
    shard      SMALLINT NOT NULL,
    config_id  BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    queued     BIGINT NOT NULL DEFAULT 0,
    completed  BIGINT NOT NULL DEFAULT 0,
    failed     BIGINT NOT NULL DEFAULT 0,
    cancelled  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (shard, config_id, event_type)
);
COMMENT ON TABLE webhook_queue_tallies IS
    'Rows of webhook_queue by partner and event type: queued (pending or processing), completed, failed, cancelled (deleted_at set); sum over shards';
COMMENT ON COLUMN webhook_queue_tallies.queued IS
    'Rows pending or processing: a claim moves a row between the two and counts nothing';

INSERT INTO webhook_queue_tallies (shard, config_id, event_type, queued, completed, failed, cancelled)
SELECT shard, config_id, event_type,
       coalesce(sum(n) FILTER (WHERE bucket IN ('pending', 'processing')), 0),
       coalesce(sum(n) FILTER (WHERE bucket = 'completed'), 0),
       coalesce(sum(n) FILTER (WHERE bucket = 'failed'), 0),
       coalesce(sum(n) FILTER (WHERE bucket = 'cancelled'), 0)
FROM webhook_queue_counts
GROUP BY shard, config_id, event_type;

DROP TABLE webhook_queue_counts;

-- Rows settled per second are added for a list of seconds now (sql/rules/02_counters.sql).
DROP FUNCTION webhook_throughput_add(BIGINT, BIGINT);
