DROP FUNCTION IF EXISTS webhook_claim(TEXT, INTEGER, DOUBLE PRECISION, BIGINT[], INTEGER[]);
ALTER TABLE webhook_queue DROP COLUMN request;
ALTER TABLE webhook_configs DROP CONSTRAINT webhook_configs_signing_secret_format,
    ADD CONSTRAINT webhook_configs_signing_secret_format CHECK (
        signing_secret ~ '^whsec_([A-Za-z0-9+/]{4})+([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$'
        AND octet_length(decode(substr(signing_secret, 7), 'base64')) BETWEEN 24 AND 64);
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
