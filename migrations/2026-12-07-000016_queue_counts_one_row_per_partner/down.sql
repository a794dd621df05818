DROP VIEW IF EXISTS webhook_queue_counts;
CREATE TABLE webhook_queue_counts (
    shard      SMALLINT NOT NULL,
    config_id  BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    bucket     TEXT NOT NULL,
    n          BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (shard, config_id, event_type, bucket)
);
COMMENT ON TABLE webhook_queue_counts IS 'Rows of webhook_queue by partner, event type and status (cancelled apart); sum over shards';
-- The rows in flight are counted as pending; a recount (webhookd check --fix) moves them.
INSERT INTO webhook_queue_counts (shard, config_id, event_type, bucket, n)
SELECT t.shard, t.config_id, t.event_type, b.bucket, b.n
FROM webhook_queue_tallies t
CROSS JOIN LATERAL (VALUES ('pending', t.queued), ('completed', t.completed), ('failed', t.failed),
                           ('cancelled', t.cancelled)) AS b(bucket, n)
WHERE b.n <> 0;
DROP TABLE webhook_queue_tallies;
