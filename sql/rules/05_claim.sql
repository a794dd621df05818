-- The claim (docs/decisions.md, "Scheduling by partner"): which rows a worker calls next, and so
-- where a partner's hold, its probe and its rate limit take effect. Takes up to `wanted` rows
-- for one worker, in this order:
--   1. rows whose lease ran out (their call was admitted once; they go first);
--   2. one probe per tripped partner whose probe time has come: a pending row of that partner,
--      preferring one that is not the last probe and has failed least (so one event the
--      partner refuses cannot keep it tripped), with the probe time moved on (doubling with
--      +-20% jitter up to 5 minutes); the state row is locked SKIP LOCKED, so across all
--      processes a partner gets one probe per probe time;
--   3. due rows of the active partners, in rounds: each partner with due rows gets an equal
--      share of what is left, bounded by its room in the calling process (`rooms`, by config;
--      a partner not listed has room for everything) and by its max_per_second (slots of
--      1/max_per_second s, those starting within the next 100 ms taken, next_slot moved on by
--      the rows taken); a partner that filled its share may take more in the next round.
-- A paused partner is not served at all. So a partner's backlog, retries or slowness never put
-- its rows ahead of another partner's: every claim serves every partner with due work.
--
-- Rows are locked FOR UPDATE SKIP LOCKED, then leased in one UPDATE that counts itself and
-- settles nothing, so the count triggers and money order's update trigger stand aside
-- (01_statement_markers.sql): pending and processing rows share one counter (queued,
-- 02_counters.sql), so a lease changes no count. The commit
-- need not be flushed (synchronous_commit off for this transaction): a claim is a lease, not a
-- record; should PostgreSQL crash before the flush, the row is pending again and the outcome
-- write, fenced on this claim, changes nothing.
--
-- deferred_until: the earliest time a partner left behind for its rate limit may be served
-- again (the same on every row), NULL when none was. left_behind: whether a partner filled its
-- room with due rows to spare (the same on every row): the process claims again when a call
-- ends, not only when new rows come.
CREATE OR REPLACE FUNCTION webhook_claim(worker TEXT, wanted INTEGER, lease_secs DOUBLE PRECISION,
                              room_config_ids BIGINT[], rooms INTEGER[])
RETURNS TABLE (id BIGINT, queue_id UUID, event_type TEXT, config_id BIGINT, webhook_url TEXT, request JSON,
               retry_count INTEGER, max_retries INTEGER, locked_at TIMESTAMPTZ, config_version BIGINT,
               retry_base_delay_ms BIGINT, retry_max_delay_ms BIGINT, deferred_until TIMESTAMPTZ,
               left_behind BOOLEAN)
LANGUAGE plpgsql
-- Its statements' custom plans looked cheaper than the generic ones (only a custom plan knows
-- an array's length), so PostgreSQL planned each of them on every call; the generic plans are
-- the ones tests/delivery.rs checks reach rows by index.
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    expired BIGINT[];
    picked BIGINT[] := '{}';
    got BIGINT[];
    left_over INTEGER;
    p RECORD;
    probe BIGINT;
    serving BIGINT[];
    room INTEGER[];
    per_second INTEGER[];
    next_round BIGINT[];
    next_room INTEGER[];
    next_per_second INTEGER[];
    share INTEGER;
    take INTEGER;
    start TIMESTAMPTZ;
    slot INTERVAL;
    soonest TIMESTAMPTZ;
    room_full BOOLEAN := false;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);

    SELECT array_agg(e.id) INTO expired FROM (
        SELECT q.id FROM webhook_queue q
        WHERE q.status = 'processing' AND q.lock_expires_at <= now() AND q.deleted_at IS NULL
        ORDER BY q.lock_expires_at LIMIT wanted
        FOR UPDATE SKIP LOCKED) e;
    left_over := wanted - coalesce(cardinality(expired), 0);

    FOR p IN
        SELECT s.config_id, s.probe_row, s.probe_interval_ms FROM webhook_partner_state s
        WHERE s.state = 'tripped' AND s.probe_at <= now()
        ORDER BY s.config_id
        FOR UPDATE SKIP LOCKED
    LOOP
        EXIT WHEN left_over <= 0;
        SELECT q.id INTO probe FROM webhook_queue q
        WHERE q.id IN (SELECT c.id FROM webhook_queue c
                       WHERE c.config_id = p.config_id AND c.status = 'pending' AND c.deleted_at IS NULL
                         AND c.held_reason IS NULL
                       ORDER BY c.next_retry_at LIMIT 100)
          AND q.status = 'pending'
        ORDER BY q.id IS NOT DISTINCT FROM p.probe_row, q.retry_count, q.next_retry_at
        LIMIT 1
        FOR UPDATE SKIP LOCKED;
        UPDATE webhook_partner_state s
        SET probe_interval_ms = least(p.probe_interval_ms * 2, 300000),
            probe_at = now() + make_interval(secs => least(p.probe_interval_ms * 2, 300000) / 1000.0
                                                     * (0.8 + random() * 0.4)),
            probe_row = coalesce(probe, s.probe_row)
        WHERE s.config_id = p.config_id;
        IF probe IS NOT NULL THEN
            picked := picked || probe;
            left_over := left_over - 1;
        END IF;
    END LOOP;

    SELECT array_agg(s.config_id ORDER BY s.config_id),
           array_agg(coalesce(r.room, wanted) ORDER BY s.config_id),
           array_agg(c.max_per_second ORDER BY s.config_id)
      INTO serving, room, per_second
    FROM webhook_partner_state s
    JOIN webhook_configs c ON c.id = s.config_id
    LEFT JOIN unnest(room_config_ids, rooms) AS r(config_id, room) ON r.config_id = s.config_id
    WHERE s.state = 'active' AND coalesce(r.room, wanted) > 0
      AND EXISTS (SELECT 1 FROM webhook_queue q
                  WHERE q.config_id = s.config_id AND q.status = 'pending' AND q.deleted_at IS NULL
                    AND q.held_reason IS NULL AND q.next_retry_at <= now());

    WHILE left_over > 0 AND cardinality(serving) > 0 LOOP
        share := ceil(left_over::numeric / cardinality(serving));
        next_round := '{}';
        next_room := '{}';
        next_per_second := '{}';
        FOR i IN 1 .. cardinality(serving) LOOP
            EXIT WHEN left_over <= 0;
            take := least(share, room[i], left_over);
            IF per_second[i] IS NOT NULL THEN
                slot := make_interval(secs => 1.0 / per_second[i]);
                SELECT greatest(s.next_slot, now()) INTO start
                FROM webhook_partner_state s WHERE s.config_id = serving[i] FOR UPDATE;
                take := least(take, greatest(0, floor(extract(epoch FROM now() + interval '100 ms' - start)
                                                       * per_second[i])::int + 1));
            END IF;
            got := NULL;
            IF take > 0 THEN
                SELECT array_agg(d.id) INTO got FROM (
                    SELECT q.id FROM webhook_queue q
                    WHERE q.config_id = serving[i] AND q.status = 'pending' AND q.deleted_at IS NULL
                      AND q.held_reason IS NULL AND q.next_retry_at <= now()
                    ORDER BY q.next_retry_at LIMIT take
                    FOR UPDATE SKIP LOCKED) d;
            END IF;
            got := coalesce(got, '{}');
            room_full := room_full OR (cardinality(got) = take AND take = room[i]);
            picked := picked || got;
            left_over := left_over - cardinality(got);
            IF per_second[i] IS NOT NULL THEN
                UPDATE webhook_partner_state s SET next_slot = start + slot * cardinality(got)
                WHERE s.config_id = serving[i];
                IF cardinality(got) = take THEN
                    -- Left behind for the rate limit (or by its share): when its next slot opens.
                    soonest := least(soonest, start + slot * cardinality(got) - interval '100 ms');
                END IF;
            ELSIF cardinality(got) = take AND room[i] > take THEN
                next_round := next_round || serving[i];
                next_room := next_room || (room[i] - take);
                next_per_second := next_per_second || per_second[i];
            END IF;
        END LOOP;
        serving := next_round;
        room := next_room;
        per_second := next_per_second;
    END LOOP;

    RETURN QUERY
    WITH claimed AS (
        UPDATE webhook_queue q
        SET status = 'processing', worker_id = worker, locked_at = now(),
            lock_expires_at = now() + make_interval(secs => lease_secs), updated_at = now()
        FROM webhook_configs c
        WHERE q.id = ANY (picked || coalesce(expired, '{}')) AND c.id = q.config_id
          AND webhook_statement_counts_itself() AND webhook_statement_settles_nothing()
        RETURNING q.id, q.queue_id, q.event_type, q.config_id, q.webhook_url, q.request, q.retry_count, q.max_retries,
                  q.locked_at, c.xmin::text::int8, c.retry_base_delay_ms, c.retry_max_delay_ms
    )
    SELECT m.*, soonest, room_full FROM claimed m;
END
$$;

COMMENT ON FUNCTION webhook_claim(TEXT, INTEGER, DOUBLE PRECISION, BIGINT[], INTEGER[]) IS
    'The claim: expired leases, one probe per tripped partner whose time has come, then the active partners'' due rows in turn, each up to its share, its room in the calling process and its max_per_second; leases them to worker';

-- When an idle worker should look again: the soonest due row of an active partner (not before
-- its rate limit's next slot), the probe time of a tripped partner with rows, or the end of a
-- lease.
CREATE OR REPLACE FUNCTION webhook_next_due() RETURNS TIMESTAMPTZ
LANGUAGE sql STABLE AS $$
    SELECT least(
        (SELECT min(greatest(d.at, CASE WHEN c.max_per_second IS NOT NULL THEN s.next_slot - interval '100 ms' END))
         FROM webhook_partner_state s
         JOIN webhook_configs c ON c.id = s.config_id
         CROSS JOIN LATERAL (
             SELECT q.next_retry_at AS at FROM webhook_queue q
             WHERE q.config_id = s.config_id AND q.status = 'pending' AND q.deleted_at IS NULL AND q.held_reason IS NULL
             ORDER BY q.next_retry_at LIMIT 1) d
         WHERE s.state = 'active'),
        (SELECT min(s.probe_at) FROM webhook_partner_state s
         WHERE s.state = 'tripped'
           AND EXISTS (SELECT 1 FROM webhook_queue q
                       WHERE q.config_id = s.config_id AND q.status = 'pending' AND q.deleted_at IS NULL
                         AND q.held_reason IS NULL)),
        (SELECT min(q.lock_expires_at) FROM webhook_queue q WHERE q.status = 'processing' AND q.deleted_at IS NULL))
$$;

COMMENT ON FUNCTION webhook_next_due() IS
    'When the claim may next find work: a due row of an active partner (after its rate limit''s next slot), a tripped partner''s probe time, or a lease''s end';
