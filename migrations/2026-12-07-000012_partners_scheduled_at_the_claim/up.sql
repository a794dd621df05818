-- Partners are scheduled where rows are claimed (docs/decisions.md, "Scheduling by partner").
--
-- Before, a partner's state was copied onto its pending rows (held_reason partner_paused or
-- partner_tripped) by bulk updates, and the claim took the oldest due rows whoever they
-- belonged to. A copy made from a stale snapshot stayed stale (a submit that read "paused"
-- committed after the resume had released the partner's rows), and one partner's released
-- backlog, older than anything new, held the head of the queue for every other partner.
--
-- Now the state is read where it is used: the claim serves the partners that are active and
-- have due rows, each in turn up to its share, and a tripped partner only through its probe.
-- Nothing about a partner's state is written onto rows, so nothing can go stale; held_reason is
-- left to money order (waiting_for_credit), which has its recheck and the pruner's sweep.

UPDATE webhook_queue SET held_reason = NULL, updated_at = now()
WHERE held_reason IN ('partner_paused', 'partner_tripped');

ALTER TABLE webhook_queue DROP CONSTRAINT webhook_queue_held_reason;
ALTER TABLE webhook_queue ADD CONSTRAINT webhook_queue_held_reason CHECK (held_reason = 'waiting_for_credit');
COMMENT ON COLUMN webhook_queue.held_reason IS
    'waiting_for_credit: a -debit whose +credit has not completed (money order); it is not claimed and spends no attempt. NULL otherwise. A pending row of a paused or tripped partner is held too, but that is read from webhook_partner_state, never copied here';

-- The claim reaches due rows partner by partner. This index replaces the one on next_retry_at
-- alone (as many entries: every pending row not waiting for its credit).
DROP INDEX webhook_queue_due_pending;
DROP INDEX webhook_queue_held;
CREATE INDEX webhook_queue_partner_due
    ON webhook_queue (config_id, next_retry_at) WHERE status = 'pending' AND deleted_at IS NULL AND held_reason IS NULL;

-- A tripped partner always has a probe time: the claim takes its probe then.
UPDATE webhook_partner_state SET probe_at = now(), probe_interval_ms = coalesce(probe_interval_ms, 5000)
WHERE state = 'tripped' AND probe_at IS NULL;
UPDATE webhook_partner_state SET probe_row = NULL WHERE state <> 'tripped';
COMMENT ON COLUMN webhook_partner_state.probe_row IS
    'While tripped: webhook_queue.id of the row last taken as a probe; the next probe prefers another row, so one event the partner refuses cannot keep it tripped';

DROP FUNCTION webhook_partner_admit(BIGINT[], BIGINT[]);
DROP FUNCTION webhook_partner_probe();

-- The rows of a partner that its state holds: pending, live, not waiting for a credit.
CREATE OR REPLACE FUNCTION webhook_partner_held_count(partner BIGINT) RETURNS BIGINT
LANGUAGE sql STABLE AS $$
    SELECT coalesce((
        SELECT CASE WHEN s.state = 'active' THEN 0 ELSE (
            SELECT count(*) FROM webhook_queue q
            WHERE q.config_id = partner AND q.status = 'pending' AND q.deleted_at IS NULL AND q.held_reason IS NULL) END
        FROM webhook_partner_state s WHERE s.config_id = partner), 0)
$$;
COMMENT ON FUNCTION webhook_partner_held_count(BIGINT) IS
    'Rows a paused or tripped partner holds: its pending rows that are not waiting for their credit; 0 while active or unknown';

CREATE OR REPLACE FUNCTION webhook_partner_pause(partner BIGINT, why TEXT)
RETURNS TABLE (state TEXT, reason TEXT, since TIMESTAMPTZ, held BIGINT, changed BOOLEAN)
LANGUAGE plpgsql AS $$
DECLARE
    s webhook_partner_state;
BEGIN
    SELECT * INTO s FROM webhook_partner_state p WHERE p.config_id = partner FOR UPDATE;
    IF NOT FOUND OR s.state = 'paused' THEN
        RETURN QUERY SELECT s.state, s.reason, s.since, webhook_partner_held_count(partner), false;
        RETURN;
    END IF;
    UPDATE webhook_partner_state p
    SET state = 'paused', reason = why, since = now(), probe_at = NULL, probe_interval_ms = NULL, probe_row = NULL
    WHERE p.config_id = partner;
    RETURN QUERY SELECT 'paused'::text, why, now(), webhook_partner_held_count(partner), true;
END
$$;
COMMENT ON FUNCTION webhook_partner_pause(BIGINT, TEXT) IS
    'Pauses a partner (why: operator or gone): the claim no longer serves it; changed is false when it was paused already (or unknown: no row)';

CREATE OR REPLACE FUNCTION webhook_partner_resume(partner BIGINT)
RETURNS TABLE (state TEXT, reason TEXT, since TIMESTAMPTZ, held BIGINT, changed BOOLEAN)
LANGUAGE plpgsql AS $$
DECLARE
    s webhook_partner_state;
BEGIN
    SELECT * INTO s FROM webhook_partner_state p WHERE p.config_id = partner FOR UPDATE;
    IF NOT FOUND OR s.state = 'active' THEN
        RETURN QUERY SELECT s.state, s.reason, s.since, webhook_partner_held_count(partner), false;
        RETURN;
    END IF;
    UPDATE webhook_partner_state p
    SET state = 'active', reason = NULL, since = now(), failures = 0,
        probe_at = NULL, probe_interval_ms = NULL, probe_row = NULL
    WHERE p.config_id = partner;
    PERFORM pg_notify('webhook_queue_new', '');
    RETURN QUERY SELECT 'active'::text, NULL::text, now(), 0::bigint, true;
END
$$;
COMMENT ON FUNCTION webhook_partner_resume(BIGINT) IS
    'Makes a paused or tripped partner active, its count of failures reset, and wakes the workers; changed is false when it was active already';

-- As in migration 000009, without copying the state onto rows: a trip or a pause only changes
-- the partner's row, a resume wakes the workers. See 000009 for the rules of the count, with
-- one change: an answer that is the event's own failure (own: 3xx, other 4xx) shows the
-- partner answering, so it counts as a 2xx does for the partner (ends the run, resumes a
-- tripped partner); unreached (the outbound policy refused the call) neither counts nor resets.
CREATE OR REPLACE FUNCTION webhook_partner_record(
    config_ids BIGINT[], verdicts TEXT[], errors TEXT[], exhausted INTEGER[], default_threshold INTEGER,
    probe_interval_ms BIGINT
) RETURNS TABLE (config_id BIGINT, held_reason TEXT, changed_to TEXT, reason TEXT, held BIGINT)
LANGUAGE plpgsql
-- Planned once: custom plans of its query (which reads no queue rows) were made on every call.
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    b RECORD;
    s webhook_partner_state;
BEGIN
    FOR b IN
        SELECT v.config_id,
               count(*) FILTER (WHERE v.verdict IN ('up', 'own')) AS ups,
               count(*) FILTER (WHERE v.verdict = 'down') AS downs,
               count(*) FILTER (WHERE v.verdict = 'down' AND v.n > coalesce(v.last_up, 0)) AS downs_after_up,
               count(*) FILTER (WHERE v.verdict = 'gone') AS gones,
               (array_agg(v.error ORDER BY v.n DESC) FILTER (WHERE v.verdict IN ('down', 'gone')))[1] AS last_error,
               min(v.exhausted) FILTER (WHERE v.verdict = 'down' AND v.exhausted > 1) AS fewest_exhausted,
               p.state, p.failures, coalesce(c.circuit_failure_threshold, default_threshold) AS threshold
        FROM (SELECT u.*, max(u.n) FILTER (WHERE u.verdict IN ('up', 'own')) OVER (PARTITION BY u.config_id) AS last_up
              FROM unnest(config_ids, verdicts, errors, exhausted) WITH ORDINALITY AS u(config_id, verdict, error, exhausted, n)) v
        JOIN webhook_partner_state p ON p.config_id = v.config_id
        JOIN webhook_configs c ON c.id = v.config_id
        GROUP BY v.config_id, p.state, p.failures, c.circuit_failure_threshold
        ORDER BY v.config_id
    LOOP
        config_id := b.config_id;
        changed_to := NULL;
        reason := NULL;
        held := NULL;
        IF b.state = 'active' AND b.downs = 0 AND b.gones = 0 AND b.failures = 0 THEN
            held_reason := NULL;
            RETURN NEXT;
            CONTINUE;
        END IF;
        UPDATE webhook_partner_state p
        SET failures = CASE WHEN b.ups > 0 THEN b.downs_after_up ELSE p.failures + b.downs END,
            last_error = coalesce(b.last_error, p.last_error),
            last_error_at = CASE WHEN b.last_error IS NULL THEN p.last_error_at ELSE now() END
        WHERE p.config_id = b.config_id
        RETURNING * INTO s;
        IF b.gones > 0 AND s.state <> 'paused' THEN
            UPDATE webhook_partner_state p
            SET state = 'paused', reason = 'gone', since = now(), probe_at = NULL, probe_interval_ms = NULL, probe_row = NULL
            WHERE p.config_id = b.config_id;
            changed_to := 'paused';
            reason := 'gone';
            held := webhook_partner_held_count(b.config_id);
            held_reason := 'partner_paused';
        ELSIF s.state = 'tripped' AND b.ups > 0 THEN
            UPDATE webhook_partner_state p
            SET state = 'active', reason = NULL, since = now(), probe_at = NULL, probe_interval_ms = NULL, probe_row = NULL
            WHERE p.config_id = b.config_id;
            PERFORM pg_notify('webhook_queue_new', '');
            changed_to := 'active';
            held := 0;
            held_reason := NULL;
        ELSIF s.state = 'active' AND (s.failures >= b.threshold OR s.failures >= b.fewest_exhausted) THEN
            UPDATE webhook_partner_state p
            SET state = 'tripped', reason = 'failures', since = now(), probe_row = NULL,
                probe_interval_ms = webhook_partner_record.probe_interval_ms,
                probe_at = now() + make_interval(secs => webhook_partner_record.probe_interval_ms / 1000.0
                                                         * (0.8 + random() * 0.4))
            WHERE p.config_id = b.config_id;
            changed_to := 'tripped';
            reason := 'failures';
            held := webhook_partner_held_count(b.config_id);
            held_reason := 'partner_tripped';
        ELSE
            held_reason := webhook_partner_hold_reason(s.state);
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

-- The rows an operator or retention must hold for a partner are no longer written.
DROP FUNCTION webhook_partner_hold_rows(BIGINT, TEXT);
DROP FUNCTION webhook_partner_release_rows(BIGINT);
DROP FUNCTION webhook_partner_holds(BIGINT[]);

-- Money order's settle (migration 000010) as it was, but a released debit is simply due: its
-- partner's state is read by the claim.
CREATE OR REPLACE FUNCTION webhook_money_order_settle(config_ids BIGINT[], event_ids TEXT[], steps TEXT[])
RETURNS VOID
LANGUAGE plpgsql STRICT
SET enable_seqscan = off
AS $$
DECLARE
    waiting BIGINT[];
    waiting_steps TEXT[];
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_queue WHERE held_reason = 'waiting_for_credit' AND deleted_at IS NULL) THEN
        RETURN;
    END IF;
    SELECT array_agg(w.id ORDER BY w.id), array_agg(s.step ORDER BY w.id) INTO waiting, waiting_steps
    FROM unnest(config_ids, event_ids, steps) AS s(config_id, event_id, step)
    CROSS JOIN LATERAL (
        SELECT q.id FROM webhook_queue q
        WHERE q.config_id = s.config_id AND q.event_type = '-debit' AND q.event_id = s.event_id
          AND q.held_reason IS NOT DISTINCT FROM 'waiting_for_credit' AND q.deleted_at IS NULL
        OFFSET 0) w;
    IF waiting IS NULL THEN
        RETURN;
    END IF;
    UPDATE webhook_queue d SET
        held_reason = NULL,
        -- Keeps its place in the queue: not put behind what was submitted after it.
        next_retry_at = CASE WHEN s.step = 'release' THEN least(d.next_retry_at, now()) ELSE d.next_retry_at END,
        deleted_at = CASE WHEN s.step = 'cancel' THEN now() END,
        cancel_reason = CASE WHEN s.step = 'cancel' THEN 'credit_cancelled' END,
        updated_at = now()
    FROM unnest(waiting, waiting_steps) AS s(id, step)
    WHERE d.id = ANY (waiting) AND d.id = s.id
      AND d.held_reason IS NOT DISTINCT FROM 'waiting_for_credit' AND d.deleted_at IS NULL;
END
$$;

-- Marks a statement that neither completes nor cancels a +credit, so that money order's update
-- trigger may skip it (migration 000013); the claim is one.
CREATE FUNCTION webhook_statement_settles_nothing() RETURNS BOOLEAN
LANGUAGE sql VOLATILE AS $$
    SELECT set_config('webhookd.settling_statement', statement_timestamp()::text, true) IS NOT NULL
$$;
COMMENT ON FUNCTION webhook_statement_settles_nothing() IS
    'Called by a statement that completes and cancels no +credit (the claim): money order''s update trigger skips that statement only';

CREATE FUNCTION webhook_statement_settled_nothing() RETURNS BOOLEAN
LANGUAGE sql STABLE AS $$
    SELECT current_setting('webhookd.settling_statement', true) IS NOT DISTINCT FROM statement_timestamp()::text
$$;
COMMENT ON FUNCTION webhook_statement_settled_nothing() IS
    'True inside a statement that called webhook_statement_settles_nothing()';

-- The claim (docs/decisions.md, "Scheduling by partner"). Takes up to `wanted` rows for one
-- worker, in this order:
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
-- So a partner's backlog, retries or slowness never put its rows ahead of another partner's:
-- every claim serves every partner with due work.
--
-- Rows are locked FOR UPDATE SKIP LOCKED, then leased in one UPDATE that counts itself (the
-- pending ones move to processing: webhook_queue_counts_add), so the count triggers and money
-- order's update trigger stand aside (migration 000005). The commit need not be flushed
-- (synchronous_commit off for this transaction): a claim is a lease, not a record; should
-- PostgreSQL crash before the flush, the row is pending again and the outcome write, fenced on
-- this claim, changes nothing.
--
-- deferred_until: the earliest time a partner left behind for its rate limit may be served
-- again (the same on every row), NULL when none was. left_behind: whether a partner filled its
-- room with due rows to spare (the same on every row): the process claims again when a call
-- ends, not only when new rows come.
CREATE FUNCTION webhook_claim(worker TEXT, wanted INTEGER, lease_secs DOUBLE PRECISION,
                              room_config_ids BIGINT[], rooms INTEGER[])
RETURNS TABLE (id BIGINT, queue_id UUID, event_type TEXT, config_id BIGINT, webhook_url TEXT,
               retry_count INTEGER, max_retries INTEGER, locked_at TIMESTAMPTZ, signing_secret TEXT,
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
        RETURNING q.id, q.queue_id, q.event_type, q.config_id, q.webhook_url, q.retry_count, q.max_retries,
                  q.locked_at, c.signing_secret, c.retry_base_delay_ms, c.retry_max_delay_ms
    ), counted AS (
        SELECT webhook_queue_counts_add(array_agg(m.config_id), array_agg(m.event_type),
                                        array_agg(moved.bucket), array_agg(moved.delta))
        FROM claimed m, (VALUES ('pending', -1::int8), ('processing', 1::int8)) AS moved(bucket, delta)
        WHERE m.id = ANY (picked)
    )
    SELECT m.*, soonest, room_full FROM claimed m LEFT JOIN counted ON true;
END
$$;
COMMENT ON FUNCTION webhook_claim(TEXT, INTEGER, DOUBLE PRECISION, BIGINT[], INTEGER[]) IS
    'The claim: expired leases, one probe per tripped partner whose time has come, then the active partners'' due rows in turn, each up to its share, its room in the calling process and its max_per_second; leases them to worker';

-- When an idle worker should look again: the soonest due row of an active partner (not before
-- its rate limit''s next slot), probe time of a tripped partner with rows, or end of a lease.
CREATE FUNCTION webhook_next_due() RETURNS TIMESTAMPTZ
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
