-- How each partner is called besides its URL (docs/api.md, "Partner requests"). The settings
-- are JSON written and read by webhookd: requests per event type, headers, auth, proxy and
-- client certificate. Every secret among them is sealed (docs/operations.md, "Secrets at rest");
-- the signing secret a rotation replaced keeps signing until previous_signing_secret_until.
ALTER TABLE webhook_configs
    ADD COLUMN postback_request json,
    ADD COLUMN chargeback_request json,
    ADD COLUMN headers json,
    ADD COLUMN auth json,
    ADD COLUMN proxy json,
    ADD COLUMN client_tls json,
    ADD COLUMN previous_signing_secret text,
    ADD COLUMN previous_signing_secret_until timestamptz,
    ADD CONSTRAINT webhook_configs_previous_secret_has_an_end
        CHECK ((previous_signing_secret IS NULL) = (previous_signing_secret_until IS NULL));

-- A signing secret is sealed now, or in clear as stored before SECRET_KEYS was given.
ALTER TABLE webhook_configs DROP CONSTRAINT webhook_configs_signing_secret_format,
    ADD CONSTRAINT webhook_configs_signing_secret_format CHECK (
        signing_secret LIKE 'sealed:v1:%'
        OR (signing_secret ~ '^whsec_([A-Za-z0-9+/]{4})+([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$'
            AND octet_length(decode(substr(signing_secret, 7), 'base64')) BETWEEN 24 AND 64));

-- The method, body and non-secret headers filled for this event at submit; NULL for a GET
-- without headers of its own.
ALTER TABLE webhook_queue ADD COLUMN request json;

-- The claim returns the request and the config's version instead of its signing secret
-- (sql/rules/05_claim.sql makes it again).
DROP FUNCTION webhook_claim(TEXT, INTEGER, DOUBLE PRECISION, BIGINT[], INTEGER[]);
