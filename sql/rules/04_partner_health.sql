-- Partner health (docs/decisions.md, "Partner health"): each partner's delivery state in
-- webhook_partner_state, shared by every process and written only here. An outcome write
-- records its attempts' verdicts (webhook_partner_record), which trips, resumes or pauses the
-- partner; an operator pauses and resumes it. The state is never copied onto rows: the claim
-- reads it (05_claim.sql), serving a paused partner not at all and a tripped one only through
-- its probe, and the API reports a held partner's pending rows from it.

CREATE OR REPLACE FUNCTION webhook_configs_partner_state() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_partner_state (config_id) SELECT id FROM new_configs;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION webhook_configs_partner_state() IS 'Every new config starts active';

CREATE OR REPLACE TRIGGER webhook_configs_partner_state AFTER INSERT ON webhook_configs
    REFERENCING NEW TABLE AS new_configs FOR EACH STATEMENT EXECUTE FUNCTION webhook_configs_partner_state();

CREATE OR REPLACE FUNCTION webhook_partner_hold_reason(state TEXT) RETURNS TEXT
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE state WHEN 'paused' THEN 'partner_paused' WHEN 'tripped' THEN 'partner_tripped' END
$$;

COMMENT ON FUNCTION webhook_partner_hold_reason(TEXT) IS
    'The held_reason reported for the pending rows of a partner in this state (partner_paused, partner_tripped); NULL while active. Never written onto rows';

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

-- Called by the outcome write with one verdict per attempt: up (2xx), own (any other answer:
-- the event's own failure, which shows the partner answering), down (a partner failure:
-- transport error, timeout, 5xx, 429), gone (410), unreached (the outbound policy refused the
-- call: it neither counts nor resets). Per partner, in config_id order so that concurrent
-- writers lock state rows in one order: an answer (up or own) resets the run to the failures
-- after the batch's last answer and makes a tripped partner active; failures add to the run;
-- the statement whose count reaches the threshold trips the partner; a 410 pauses it (gone).
-- A partner failure that would end its event failed trips the partner too when the run is at
-- least as long as that event's attempts (exhausted: the attempts of each such event, NULL for
-- the other rows): nothing but failures came back since the event's first attempt, so the
-- partner is down, not the event at fault, and the event is held instead of failed. A partner
-- that answers other events in between keeps a short run, and the event fails alone. An event
-- of one attempt (max_retries 0) is no evidence beyond any single failure: it fails as asked.
-- Returns, for every partner of the batch, the hold reason of its rows now (NULL: active) and,
-- where this statement changed the state, the new state, its reason and the rows it holds.
-- A batch of answers for a healthy partner changes nothing and locks nothing. A trip or a
-- pause only changes the partner's row; a resume wakes the workers.
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

COMMENT ON FUNCTION webhook_partner_record(BIGINT[], TEXT[], TEXT[], INTEGER[], INTEGER, BIGINT) IS
    'Counts a batch of attempt verdicts (up, down, gone, own) per partner, trips (also rather than fail an event whose every attempt fell in the run), resumes or pauses (gone) partners; returns each partner''s hold reason now and the changes made. Called by the outcome write';
