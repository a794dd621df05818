-- `just bench history`: rows $1..=$2 of $3 rows of settled history for the partners $4, created
-- evenly over the $5 seconds before now, oldest first, so that ids rise with creation time as they
-- do in production. Row g gets id g (the sequence is set past them afterwards) and event id
-- 'tx_<g>'. Through the counting triggers, like any insert.
--
-- The mix: 93 % completed (a tenth after one failed attempt), 4 % failed after four attempts,
-- 3 % cancelled before their first call; 85 % +credit; partners chosen by a hash of g, the first
-- ten twice as often as the rest.
INSERT INTO webhook_queue (
    id, event_type, event_id, config_id, webhook_url, url_params, status, retry_count, max_retries,
    next_retry_at,
    retry_0_started_at, retry_0_completed_at, retry_0_duration_ms, retry_0_http_status,
    retry_0_response_body, retry_0_error,
    retry_1_started_at, retry_1_completed_at, retry_1_duration_ms, retry_1_http_status,
    retry_1_response_body, retry_1_error,
    retry_2_started_at, retry_2_completed_at, retry_2_duration_ms, retry_2_http_status,
    retry_2_response_body, retry_2_error,
    retry_3_started_at, retry_3_completed_at, retry_3_duration_ms, retry_3_http_status,
    retry_3_response_body, retry_3_error,
    worker_id, created_at, updated_at, completed_at, deleted_at)
SELECT g,
       CASE WHEN e < 85 THEN '+credit' ELSE '-debit' END,
       'tx_' || g,
       partner,
       'https://partner-' || partner || '.example/' || CASE WHEN e < 85 THEN 'postback' ELSE 'chargeback' END
           || '?user_id=u' || g % 50000 || '&value=' || g % 1000,
       jsonb_build_object('user_id', 'u' || g % 50000, 'value', (g % 1000)::text),
       CASE kind WHEN 'cancelled' THEN 'pending' ELSE kind END,
       greatest(attempts - 1, 0),
       CASE kind WHEN 'failed' THEN 3 ELSE 6 END,
       created_at,
       -- Attempt i starts at created_at + 0, 2, 12, 72 s (the back-off) and takes 15-200 ms.
       CASE WHEN attempts > 0 THEN created_at END,
       CASE WHEN attempts > 0 THEN created_at + d * interval '1 millisecond' END,
       CASE WHEN attempts > 0 THEN d END,
       CASE WHEN attempts > 0 THEN CASE WHEN attempts = 1 AND kind = 'completed' THEN 200 ELSE 503 END END,
       CASE WHEN attempts > 0 THEN CASE WHEN attempts = 1 AND kind = 'completed' THEN 'ok' ELSE 'Service Unavailable' END END,
       CASE WHEN attempts > 0 AND NOT (attempts = 1 AND kind = 'completed') THEN 'partner answered HTTP 503' END,
       CASE WHEN attempts > 1 THEN created_at + interval '2 seconds' END,
       CASE WHEN attempts > 1 THEN created_at + interval '2 seconds' + d * interval '1 millisecond' END,
       CASE WHEN attempts > 1 THEN d END,
       CASE WHEN attempts > 1 THEN CASE WHEN attempts = 2 THEN 200 ELSE 503 END END,
       CASE WHEN attempts > 1 THEN CASE WHEN attempts = 2 THEN 'ok' ELSE 'Service Unavailable' END END,
       CASE WHEN attempts > 2 THEN 'partner answered HTTP 503' END,
       CASE WHEN attempts > 2 THEN created_at + interval '12 seconds' END,
       CASE WHEN attempts > 2 THEN created_at + interval '12 seconds' + d * interval '1 millisecond' END,
       CASE WHEN attempts > 2 THEN d END,
       CASE WHEN attempts > 2 THEN 503 END,
       CASE WHEN attempts > 2 THEN 'Service Unavailable' END,
       CASE WHEN attempts > 2 THEN 'partner answered HTTP 503' END,
       CASE WHEN attempts > 3 THEN created_at + interval '72 seconds' END,
       CASE WHEN attempts > 3 THEN created_at + interval '72 seconds' + d * interval '1 millisecond' END,
       CASE WHEN attempts > 3 THEN d END,
       CASE WHEN attempts > 3 THEN 503 END,
       CASE WHEN attempts > 3 THEN 'Service Unavailable' END,
       CASE WHEN attempts > 3 THEN 'partner answered HTTP 503' END,
       CASE WHEN attempts > 0 THEN 'history-worker-' || g % 4 END,
       created_at,
       created_at + CASE attempts WHEN 0 THEN interval '1 minute' WHEN 1 THEN interval '0'
                                  WHEN 2 THEN interval '2 seconds' ELSE interval '72 seconds' END
                  + d * interval '1 millisecond',
       CASE WHEN kind = 'completed'
            THEN created_at + CASE attempts WHEN 1 THEN interval '0' ELSE interval '2 seconds' END
                 + d * interval '1 millisecond' END,
       CASE WHEN kind = 'cancelled' THEN created_at + interval '1 minute' END
FROM (
    SELECT g, e, d, partner, created_at,
           CASE WHEN k < 93 THEN 'completed' WHEN k < 97 THEN 'failed' ELSE 'cancelled' END AS kind,
           CASE WHEN k < 93 THEN 1 + (r < 10)::int WHEN k < 97 THEN 4 ELSE 0 END AS attempts
    FROM (
        SELECT g,
               mod(hashint8extended(g, 1) & 9223372036854775807, 100) AS k,
               mod(hashint8extended(g, 2) & 9223372036854775807, 100) AS e,
               mod(hashint8extended(g, 3) & 9223372036854775807, 100) AS r,
               15 + mod(hashint8extended(g, 4) & 9223372036854775807, 185) AS d,
               ($4::int8[])[1 + mod(mod(hashint8extended(g, 5) & 9223372036854775807, 60), cardinality($4::int8[]))] AS partner,
               now() - make_interval(secs => $5::float8 * ($3 - g) / $3) AS created_at
        FROM generate_series($1::int8, $2::int8) AS g
        OFFSET 0
    ) AS h
    OFFSET 0
) AS row
