DROP FUNCTION webhook_configs_unchanged(BIGINT[], BIGINT[]);
