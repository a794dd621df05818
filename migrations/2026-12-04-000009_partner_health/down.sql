DROP FUNCTION webhook_partner_probe();
DROP FUNCTION webhook_partner_admit(BIGINT[], BIGINT[]);
DROP FUNCTION webhook_partner_record(BIGINT[], TEXT[], TEXT[], INTEGER[], INTEGER, BIGINT);
DROP FUNCTION webhook_partner_resume(BIGINT);
DROP FUNCTION webhook_partner_pause(BIGINT, TEXT);
DROP FUNCTION webhook_partner_release_rows(BIGINT);
DROP FUNCTION webhook_partner_hold_rows(BIGINT, TEXT);
DROP FUNCTION webhook_partner_held_count(BIGINT);
DROP FUNCTION webhook_partner_holds(BIGINT[]);
DROP FUNCTION webhook_partner_hold_reason(TEXT);
DROP TRIGGER webhook_configs_partner_state ON webhook_configs;
DROP FUNCTION webhook_configs_partner_state();
DROP TABLE webhook_partner_state;
ALTER TABLE webhook_configs
    DROP COLUMN max_per_second,
    DROP COLUMN retry_base_delay_ms,
    DROP COLUMN retry_max_delay_ms,
    DROP COLUMN circuit_failure_threshold;
