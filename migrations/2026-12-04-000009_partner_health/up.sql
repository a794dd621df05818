-- Partner health (SPEC §10): a delivery state per partner, shared by every process through
-- this table; the rows of a paused or tripped partner held (webhook_queue.held_reason,
-- migration 000008) so that they spend no attempt; one probe at a time for a tripped partner;
-- a rate limit per partner across all processes. Each rule is a function below; the hot
-- statements (insert, claim, outcome write, hand-back) only call them.

-- Per-partner delivery settings: NULL means the global setting.
ALTER TABLE webhook_configs
    ADD COLUMN max_per_second INTEGER CHECK (max_per_second BETWEEN 1 AND 100000),
    ADD COLUMN retry_base_delay_ms BIGINT CHECK (retry_base_delay_ms > 0),
    ADD COLUMN retry_max_delay_ms BIGINT CHECK (retry_max_delay_ms > 0),
    ADD COLUMN circuit_failure_threshold INTEGER CHECK (circuit_failure_threshold BETWEEN 1 AND 1000);

COMMENT ON COLUMN webhook_configs.max_per_second IS
    'Most calls per second to this partner, by all work processes together; NULL = no limit';
COMMENT ON COLUMN webhook_configs.retry_base_delay_ms IS
    'This partner''s delay before retry 1 in milliseconds; NULL = the global RETRY_BASE_DELAY';
COMMENT ON COLUMN webhook_configs.retry_max_delay_ms IS
    'This partner''s cap on a retry delay in milliseconds; NULL = the global RETRY_MAX_DELAY';
COMMENT ON COLUMN webhook_configs.circuit_failure_threshold IS
    'Partner failures in a row that trip this partner; NULL = the global CIRCUIT_FAILURE_THRESHOLD';

-- The state lives beside the config, not in it: it changes with deliveries, and a change to a
-- config row invalidates the API's cached copies (webhook_configs_unchanged, migration 000004).
CREATE TABLE webhook_partner_state (
    config_id         BIGINT PRIMARY KEY REFERENCES webhook_configs (id) ON DELETE CASCADE,
    state             TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'paused', 'tripped')),
    reason            TEXT CHECK (reason IN ('operator', 'gone', 'failures')),
    since             TIMESTAMPTZ NOT NULL DEFAULT now(),
    failures          INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0),
    last_error        TEXT,
    last_error_at     TIMESTAMPTZ,
    probe_at          TIMESTAMPTZ,
    probe_interval_ms BIGINT,
    probe_row         BIGINT,
    next_slot         TIMESTAMPTZ,
    CONSTRAINT webhook_partner_state_reason CHECK ((state = 'active') = (reason IS NULL)),
    CONSTRAINT webhook_partner_state_probe CHECK (state = 'tripped' OR (probe_at IS NULL AND probe_row IS NULL))
);

COMMENT ON TABLE webhook_partner_state IS
    'One row per partner (config): its delivery state, shared by every process. Written only by the webhook_partner_* functions';
COMMENT ON COLUMN webhook_partner_state.state IS
    'active: delivered; paused: held by an operator or a 410 Gone until resumed; tripped: held after circuit_failure_threshold partner failures in a row, probed until a 2xx';
COMMENT ON COLUMN webhook_partner_state.reason IS
    'Why it is not active: operator (paused by hand), gone (a 410 Gone), failures (tripped); NULL while active';
COMMENT ON COLUMN webhook_partner_state.since IS 'When the partner entered its state';
COMMENT ON COLUMN webhook_partner_state.failures IS
    'Partner failures (transport error, timeout, 5xx, 429) in a row, counted over every process; a 2xx resets it, other 4xx leave it';
COMMENT ON COLUMN webhook_partner_state.last_error IS 'The last partner failure, as recorded in retry_N_error';
COMMENT ON COLUMN webhook_partner_state.last_error_at IS 'When last_error was recorded';
COMMENT ON COLUMN webhook_partner_state.probe_at IS 'While tripped: when the next probe call may be made';
COMMENT ON COLUMN webhook_partner_state.probe_interval_ms IS
    'While tripped: the wait before the next probe after this one; doubles per probe up to 5 minutes';
COMMENT ON COLUMN webhook_partner_state.probe_row IS
    'While tripped: webhook_queue.id of the row released as the current probe, the only one the claim lets through';
COMMENT ON COLUMN webhook_partner_state.next_slot IS
    'Rate limit (webhook_configs.max_per_second): the earliest time the next call may start';

INSERT INTO webhook_partner_state (config_id) SELECT id FROM webhook_configs;

CREATE FUNCTION webhook_configs_partner_state() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_partner_state (config_id) SELECT id FROM new_configs;
    RETURN NULL;
END
$$;
CREATE TRIGGER webhook_configs_partner_state AFTER INSERT ON webhook_configs
    REFERENCING NEW TABLE AS new_configs FOR EACH STATEMENT EXECUTE FUNCTION webhook_configs_partner_state();
COMMENT ON FUNCTION webhook_configs_partner_state() IS 'Every new config starts active';

CREATE FUNCTION webhook_partner_hold_reason(state TEXT) RETURNS TEXT
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE state WHEN 'paused' THEN 'partner_paused' WHEN 'tripped' THEN 'partner_tripped' END
$$;
COMMENT ON FUNCTION webhook_partner_hold_reason(TEXT) IS
    'The webhook_queue.held_reason of the rows of a partner in this state; NULL for active';

CREATE FUNCTION webhook_partner_holds(config_ids BIGINT[])
RETURNS TABLE (config_id BIGINT, held_reason TEXT)
LANGUAGE sql STABLE AS $$
    SELECT s.config_id, webhook_partner_hold_reason(s.state)
    FROM webhook_partner_state s
    WHERE s.config_id = ANY(config_ids) AND s.state <> 'active'
$$;
COMMENT ON FUNCTION webhook_partner_holds(BIGINT[]) IS
    'Of these partners, those whose rows are held now, with the reason: the insert of new rows holds them';

CREATE FUNCTION webhook_partner_held_count(partner BIGINT) RETURNS BIGINT
LANGUAGE sql STABLE AS $$
    SELECT count(*) FROM webhook_queue
    WHERE config_id = partner AND held_reason IN ('partner_paused', 'partner_tripped') AND deleted_at IS NULL
$$;
COMMENT ON FUNCTION webhook_partner_held_count(BIGINT) IS 'Rows of a partner held by partner health';

-- Rows a claim has locked are skipped: the claim's admission (webhook_partner_admit) holds
-- them, or their outcome write does, so none escapes, and no lock is waited for (a trip
-- happens inside an outcome write, which must not wait on a claim that waits on it).
CREATE FUNCTION webhook_partner_hold_rows(partner BIGINT, reason TEXT) RETURNS BIGINT
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE webhook_queue q SET held_reason = reason, updated_at = now()
    WHERE q.id IN (SELECT id FROM webhook_queue
                   WHERE config_id = partner AND status = 'pending' AND deleted_at IS NULL
                     AND (held_reason IS NULL OR held_reason IN ('partner_paused', 'partner_tripped'))
                     AND held_reason IS DISTINCT FROM reason
                   FOR UPDATE SKIP LOCKED);
    RETURN webhook_partner_held_count(partner);
END
$$;
COMMENT ON FUNCTION webhook_partner_hold_rows(BIGINT, TEXT) IS
    'Holds the pending rows of a partner with reason (partner_paused or partner_tripped); never touches waiting_for_credit. Returns the rows held';

CREATE FUNCTION webhook_partner_release_rows(partner BIGINT) RETURNS BIGINT
LANGUAGE plpgsql AS $$
DECLARE
    released BIGINT;
BEGIN
    UPDATE webhook_queue SET held_reason = NULL, updated_at = now()
    WHERE config_id = partner AND held_reason IN ('partner_paused', 'partner_tripped') AND deleted_at IS NULL;
    GET DIAGNOSTICS released = ROW_COUNT;
    IF released > 0 THEN
        PERFORM pg_notify('webhook_queue_new', '');
    END IF;
    RETURN released;
END
$$;
COMMENT ON FUNCTION webhook_partner_release_rows(BIGINT) IS
    'Releases the rows partner health held (only partner_*), due at their next_retry_at, and wakes the workers. Returns how many';

CREATE FUNCTION webhook_partner_pause(partner BIGINT, why TEXT)
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
    RETURN QUERY SELECT 'paused'::text, why, now(), webhook_partner_hold_rows(partner, 'partner_paused'), true;
END
$$;
COMMENT ON FUNCTION webhook_partner_pause(BIGINT, TEXT) IS
    'Pauses a partner (why: operator or gone) and holds its rows; changed is false when it was paused already (or unknown: no row)';

CREATE FUNCTION webhook_partner_resume(partner BIGINT)
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
    PERFORM webhook_partner_release_rows(partner);
    RETURN QUERY SELECT 'active'::text, NULL::text, now(), 0::bigint, true;
END
$$;
COMMENT ON FUNCTION webhook_partner_resume(BIGINT) IS
    'Makes a paused or tripped partner active, its count of failures reset, and releases its held rows; changed is false when it was active already';

-- Called by the outcome write with one verdict per attempt: up (2xx), down (a partner
-- failure: transport error, timeout, 5xx, 429), gone (410), own (any other answer: the
-- event's own failure, which neither counts nor resets). Per partner, in config_id order so
-- that concurrent writers lock state rows in one order: a 2xx resets the run (to the failures
-- after the batch's last 2xx) and makes a tripped partner active; failures add to the run; the
-- statement whose count reaches the threshold trips the partner; a 410 pauses it (gone).
-- A partner failure that would end its event failed trips the partner too when the run is at
-- least as long as that event's attempts (exhausted: the attempts of each such event, NULL for
-- the other rows): no 2xx came between the event's first attempt and its last, so the partner
-- is down, not the event at fault, and the event is held instead of failed. A partner that
-- answers other events in between keeps a short run, and the event fails alone. An event of
-- one attempt (max_retries 0) is no evidence beyond any single failure: it fails as asked.
-- Returns, for every partner of the batch, the hold reason its rows get now (NULL: active)
-- and, where this statement changed the state, the new state, its reason and the rows held.
-- A batch of 2xx for a healthy partner changes nothing and locks nothing.
CREATE FUNCTION webhook_partner_record(
    config_ids BIGINT[], verdicts TEXT[], errors TEXT[], exhausted INTEGER[], default_threshold INTEGER,
    probe_interval_ms BIGINT
) RETURNS TABLE (config_id BIGINT, held_reason TEXT, changed_to TEXT, reason TEXT, held BIGINT)
LANGUAGE plpgsql AS $$
DECLARE
    b RECORD;
    s webhook_partner_state;
    threshold INTEGER;
BEGIN
    FOR b IN
        SELECT v.config_id,
               count(*) FILTER (WHERE v.verdict = 'up') AS ups,
               count(*) FILTER (WHERE v.verdict = 'down') AS downs,
               count(*) FILTER (WHERE v.verdict = 'down' AND v.n > coalesce(v.last_up, 0)) AS downs_after_up,
               count(*) FILTER (WHERE v.verdict = 'gone') AS gones,
               (array_agg(v.error ORDER BY v.n DESC) FILTER (WHERE v.verdict IN ('down', 'gone')))[1] AS last_error,
               min(v.exhausted) FILTER (WHERE v.verdict = 'down' AND v.exhausted > 1) AS fewest_exhausted,
               p.state, p.failures, coalesce(c.circuit_failure_threshold, default_threshold) AS threshold
        FROM (SELECT u.*, max(u.n) FILTER (WHERE u.verdict = 'up') OVER (PARTITION BY u.config_id) AS last_up
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
        threshold := b.threshold;
        IF b.state = 'active' AND b.downs = 0 AND b.gones = 0 AND b.failures = 0 THEN
            held_reason := NULL;
            RETURN NEXT;
            CONTINUE;
        END IF;
        -- Counted on the row as it is once locked, whatever other processes wrote meanwhile.
        UPDATE webhook_partner_state p
        SET failures = CASE WHEN b.ups > 0 THEN b.downs_after_up ELSE p.failures + b.downs END,
            last_error = coalesce(b.last_error, p.last_error),
            last_error_at = CASE WHEN b.last_error IS NULL THEN p.last_error_at ELSE now() END,
            probe_row = CASE WHEN p.state = 'tripped' THEN NULL ELSE p.probe_row END
        WHERE p.config_id = b.config_id
        RETURNING * INTO s;
        IF b.gones > 0 AND s.state <> 'paused' THEN
            UPDATE webhook_partner_state p
            SET state = 'paused', reason = 'gone', since = now(), probe_at = NULL, probe_interval_ms = NULL, probe_row = NULL
            WHERE p.config_id = b.config_id;
            changed_to := 'paused';
            reason := 'gone';
            held := webhook_partner_hold_rows(b.config_id, 'partner_paused');
            held_reason := 'partner_paused';
        ELSIF s.state = 'tripped' AND b.ups > 0 THEN
            UPDATE webhook_partner_state p
            SET state = 'active', reason = NULL, since = now(), probe_at = NULL, probe_interval_ms = NULL, probe_row = NULL
            WHERE p.config_id = b.config_id;
            PERFORM webhook_partner_release_rows(b.config_id);
            changed_to := 'active';
            held := 0;
            held_reason := NULL;
        ELSIF s.state = 'active' AND (s.failures >= threshold OR s.failures >= b.fewest_exhausted) THEN
            UPDATE webhook_partner_state p
            SET state = 'tripped', reason = 'failures', since = now(),
                probe_interval_ms = webhook_partner_record.probe_interval_ms,
                probe_at = now() + make_interval(secs => webhook_partner_record.probe_interval_ms / 1000.0
                                                         * (0.8 + random() * 0.4))
            WHERE p.config_id = b.config_id;
            changed_to := 'tripped';
            reason := 'failures';
            held := webhook_partner_hold_rows(b.config_id, 'partner_tripped');
            held_reason := 'partner_tripped';
        ELSE
            held_reason := webhook_partner_hold_reason(s.state);
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION webhook_partner_record(BIGINT[], TEXT[], TEXT[], INTEGER[], INTEGER, BIGINT) IS
    'Counts a batch of attempt verdicts (up, down, gone, own) per partner, trips (also rather than fail an event whose every attempt fell in the run), resumes or pauses (gone) partners; returns each partner''s hold reason now and the changes made. Called by the outcome write';

-- Called by the claim with the pending rows it picked. Returns the rows it may not call now:
-- those of a paused or tripped partner (but the current probe), to be held; and those over a
-- partner's max_per_second, with the time each may be tried. A slot is 1/max_per_second
-- seconds; a claim takes the slots that start within the next 100 ms, so calls are at most
-- 100 ms early. Refused rows are spread over the following slots, so that they fall due one
-- by one and the next claims find only what they may take. A batch of healthy partners
-- without a limit reads their rows and returns nothing.
CREATE FUNCTION webhook_partner_admit(ids BIGINT[], config_ids BIGINT[])
RETURNS TABLE (id BIGINT, not_before TIMESTAMPTZ, held_reason TEXT)
LANGUAGE plpgsql AS $$
DECLARE
    p RECORD;
    slot INTERVAL;
    start TIMESTAMPTZ;
    admitted INTEGER;
BEGIN
    FOR p IN
        SELECT s.config_id, s.state, s.probe_row, c.max_per_second, w.ids
        FROM (SELECT u.config_id, array_agg(u.id ORDER BY u.id) AS ids
              FROM unnest(ids, config_ids) AS u(id, config_id) GROUP BY u.config_id) w
        JOIN webhook_partner_state s ON s.config_id = w.config_id
        JOIN webhook_configs c ON c.id = w.config_id
        WHERE s.state <> 'active' OR c.max_per_second IS NOT NULL
        ORDER BY s.config_id
    LOOP
        IF p.state <> 'active' THEN
            RETURN QUERY SELECT r.id, NULL::timestamptz, webhook_partner_hold_reason(p.state)
                         FROM unnest(p.ids) AS r(id) WHERE r.id IS DISTINCT FROM p.probe_row;
            CONTINUE;
        END IF;
        slot := make_interval(secs => 1.0 / p.max_per_second);
        SELECT greatest(s.next_slot, now()) INTO start
        FROM webhook_partner_state s WHERE s.config_id = p.config_id FOR UPDATE;
        admitted := least(cardinality(p.ids),
                          greatest(0, floor(extract(epoch FROM now() + interval '100 ms' - start)
                                            * p.max_per_second)::int + 1));
        UPDATE webhook_partner_state s SET next_slot = start + slot * admitted WHERE s.config_id = p.config_id;
        RETURN QUERY SELECT r.id, start + slot * (admitted + r.n - 1) - interval '100 ms', NULL::text
                     FROM unnest(p.ids[admitted + 1:]) WITH ORDINALITY AS r(id, n);
    END LOOP;
END
$$;
COMMENT ON FUNCTION webhook_partner_admit(BIGINT[], BIGINT[]) IS
    'The claim''s admission: of the picked pending rows (ids with their config_ids), those not to be called now, with the hold reason (partner paused or tripped, the probe excepted) or the time they may be tried (max_per_second, across every process)';

-- Run by every work process when a probe may be due: each tripped partner whose probe time has
-- come gets its probe time moved on (the wait doubling, with +-20% jitter, up to 5 minutes)
-- and one held row released as its probe, in one statement per partner, so that across all
-- processes a partner gets one probe per probe time. Returns the probes released.
CREATE FUNCTION webhook_partner_probe()
RETURNS TABLE (config_id BIGINT, probe_row BIGINT, next_probe_at TIMESTAMPTZ)
LANGUAGE plpgsql AS $$
DECLARE
    s RECORD;
    row_id BIGINT;
BEGIN
    FOR s IN
        SELECT p.config_id, p.probe_interval_ms FROM webhook_partner_state p
        WHERE p.state = 'tripped' AND p.probe_at <= now()
        ORDER BY p.config_id
        FOR UPDATE SKIP LOCKED
    LOOP
        SELECT q.id INTO row_id FROM webhook_queue q
        WHERE q.config_id = s.config_id AND q.held_reason = 'partner_tripped' AND q.deleted_at IS NULL
        ORDER BY q.next_retry_at LIMIT 1
        FOR UPDATE SKIP LOCKED;
        UPDATE webhook_partner_state p
        SET probe_interval_ms = least(s.probe_interval_ms * 2, 300000),
            probe_at = now() + make_interval(secs => least(s.probe_interval_ms * 2, 300000) / 1000.0
                                                     * (0.8 + random() * 0.4)),
            probe_row = row_id
        WHERE p.config_id = s.config_id;
        IF row_id IS NOT NULL THEN
            UPDATE webhook_queue SET held_reason = NULL, next_retry_at = least(next_retry_at, now()), updated_at = now()
            WHERE webhook_queue.id = row_id;
            PERFORM pg_notify('webhook_queue_new', '');
        END IF;
        config_id := s.config_id;
        probe_row := row_id;
        next_probe_at := (SELECT p.probe_at FROM webhook_partner_state p WHERE p.config_id = s.config_id);
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION webhook_partner_probe() IS
    'Releases one held row as the probe of each tripped partner whose probe_at has come, and moves probe_at on (doubling, jittered, at most 5 minutes); one probe per partner and probe time across all processes';
