-- Per-partner signing of deliveries (Standard Webhooks).
ALTER TABLE webhook_configs
    ADD COLUMN signing_secret TEXT
        -- The API stores the canonical form: whsec_ and padded standard base64 of a 24-64 byte key.
        CONSTRAINT webhook_configs_signing_secret_format CHECK (
            signing_secret ~ '^whsec_([A-Za-z0-9+/]{4})+([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$'
            AND octet_length(decode(substr(signing_secret, 7), 'base64')) BETWEEN 24 AND 64
        );

COMMENT ON COLUMN webhook_configs.signing_secret IS
    'Standard Webhooks signing secret, whsec_<base64 key> (24-64 byte key); NULL = calls are not signed. '
    'When set, every call carries webhook-id, webhook-timestamp and webhook-signature headers. '
    'Write-only through the API (responses show only "signing": true|false); never logged.';
