DROP FUNCTION IF EXISTS webhook_claim(TEXT, INTEGER, DOUBLE PRECISION, BIGINT[], INTEGER[]);
ALTER TABLE webhook_queue DROP COLUMN request;
ALTER TABLE webhook_configs
    DROP CONSTRAINT webhook_configs_previous_secret_has_an_end,
    DROP COLUMN postback_request,
    DROP COLUMN chargeback_request,
    DROP COLUMN headers,
    DROP COLUMN auth,
    DROP COLUMN proxy,
    DROP COLUMN client_tls,
    DROP COLUMN previous_signing_secret,
    DROP COLUMN previous_signing_secret_until;
