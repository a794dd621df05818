ALTER TABLE webhook_configs DROP COLUMN signing_secret;
