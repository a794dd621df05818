-- Searching history by time (docs/operations.md, "Searching history"): a time window is
-- searched as a range of ids, which holds when ids rise with created_at (both are taken as
-- the row is built).

-- The first id whose row was created at or after `at`, or one past the last id when none was:
-- a bisection of the primary key, about 25 probes for a hundred million rows. It assumes that
-- ids rise with created_at; callers widen their window by the disorder they allow.
CREATE OR REPLACE FUNCTION webhook_queue_first_id_created_since(at TIMESTAMPTZ) RETURNS BIGINT
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    WITH RECURSIVE bisect(lo, hi) AS (
        SELECT coalesce((SELECT min(id) FROM webhook_queue), 1),
               coalesce((SELECT max(id) FROM webhook_queue), 0) + 1
        UNION ALL
        SELECT CASE WHEN probe.created_at >= at THEN b.lo ELSE b.lo + (b.hi - b.lo) / 2 + 1 END,
               CASE WHEN probe.created_at >= at THEN b.lo + (b.hi - b.lo) / 2 ELSE b.hi END
        FROM bisect b
        CROSS JOIN LATERAL (
            SELECT q.created_at FROM webhook_queue q
            WHERE q.id >= b.lo + (b.hi - b.lo) / 2 ORDER BY q.id LIMIT 1
        ) probe
        WHERE b.lo < b.hi
    )
    SELECT min(hi) FROM bisect
$$;
