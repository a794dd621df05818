// @generated automatically by Diesel CLI.

diesel::table! {
    webhook_attempt_counts (shard, succeeded, duration_ms) {
        shard -> Int2,
        succeeded -> Bool,
        duration_ms -> Int8,
        n -> Int8,
        sum_ms -> Int8,
    }
}

diesel::table! {
    webhook_attempt_history (id) {
        id -> Int8,
        queue_id -> Uuid,
        cycle -> Int4,
        attempt -> Int4,
        started_at -> Timestamptz,
        completed_at -> Nullable<Timestamptz>,
        duration_ms -> Nullable<Int8>,
        http_status -> Nullable<Int4>,
        response_body -> Nullable<Text>,
        error -> Nullable<Text>,
        archived_at -> Timestamptz,
    }
}

diesel::table! {
    webhook_configs (id) {
        id -> Int8,
        name -> Text,
        postback_url -> Nullable<Text>,
        chargeback_url -> Nullable<Text>,
        max_retries -> Nullable<Int4>,
        is_active -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        signing_secret -> Nullable<Text>,
        max_per_second -> Nullable<Int4>,
        retry_base_delay_ms -> Nullable<Int8>,
        retry_max_delay_ms -> Nullable<Int8>,
        circuit_failure_threshold -> Nullable<Int4>,
        ordering -> Text,
        postback_request -> Nullable<Json>,
        chargeback_request -> Nullable<Json>,
        headers -> Nullable<Json>,
        auth -> Nullable<Json>,
        proxy -> Nullable<Json>,
        client_tls -> Nullable<Json>,
        previous_signing_secret -> Nullable<Text>,
        previous_signing_secret_until -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    webhook_partner_state (config_id) {
        config_id -> Int8,
        state -> Text,
        reason -> Nullable<Text>,
        since -> Timestamptz,
        failures -> Int4,
        last_error -> Nullable<Text>,
        last_error_at -> Nullable<Timestamptz>,
        probe_at -> Nullable<Timestamptz>,
        probe_interval_ms -> Nullable<Int8>,
        probe_row -> Nullable<Int8>,
        next_slot -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    webhook_queue (id) {
        id -> Int8,
        queue_id -> Uuid,
        event_type -> Text,
        event_id -> Nullable<Text>,
        config_id -> Int8,
        webhook_url -> Text,
        url_params -> Jsonb,
        status -> Text,
        retry_count -> Int4,
        max_retries -> Int4,
        next_retry_at -> Timestamptz,
        retry_0_started_at -> Nullable<Timestamptz>,
        retry_0_completed_at -> Nullable<Timestamptz>,
        retry_0_duration_ms -> Nullable<Int8>,
        retry_0_http_status -> Nullable<Int4>,
        retry_0_response_body -> Nullable<Text>,
        retry_0_error -> Nullable<Text>,
        retry_1_started_at -> Nullable<Timestamptz>,
        retry_1_completed_at -> Nullable<Timestamptz>,
        retry_1_duration_ms -> Nullable<Int8>,
        retry_1_http_status -> Nullable<Int4>,
        retry_1_response_body -> Nullable<Text>,
        retry_1_error -> Nullable<Text>,
        retry_2_started_at -> Nullable<Timestamptz>,
        retry_2_completed_at -> Nullable<Timestamptz>,
        retry_2_duration_ms -> Nullable<Int8>,
        retry_2_http_status -> Nullable<Int4>,
        retry_2_response_body -> Nullable<Text>,
        retry_2_error -> Nullable<Text>,
        retry_3_started_at -> Nullable<Timestamptz>,
        retry_3_completed_at -> Nullable<Timestamptz>,
        retry_3_duration_ms -> Nullable<Int8>,
        retry_3_http_status -> Nullable<Int4>,
        retry_3_response_body -> Nullable<Text>,
        retry_3_error -> Nullable<Text>,
        retry_4_started_at -> Nullable<Timestamptz>,
        retry_4_completed_at -> Nullable<Timestamptz>,
        retry_4_duration_ms -> Nullable<Int8>,
        retry_4_http_status -> Nullable<Int4>,
        retry_4_response_body -> Nullable<Text>,
        retry_4_error -> Nullable<Text>,
        retry_5_started_at -> Nullable<Timestamptz>,
        retry_5_completed_at -> Nullable<Timestamptz>,
        retry_5_duration_ms -> Nullable<Int8>,
        retry_5_http_status -> Nullable<Int4>,
        retry_5_response_body -> Nullable<Text>,
        retry_5_error -> Nullable<Text>,
        retry_6_started_at -> Nullable<Timestamptz>,
        retry_6_completed_at -> Nullable<Timestamptz>,
        retry_6_duration_ms -> Nullable<Int8>,
        retry_6_http_status -> Nullable<Int4>,
        retry_6_response_body -> Nullable<Text>,
        retry_6_error -> Nullable<Text>,
        worker_id -> Nullable<Text>,
        locked_at -> Nullable<Timestamptz>,
        lock_expires_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        completed_at -> Nullable<Timestamptz>,
        deleted_at -> Nullable<Timestamptz>,
        held_reason -> Nullable<Text>,
        cancel_reason -> Nullable<Text>,
        released_by_operator_at -> Nullable<Timestamptz>,
        request -> Nullable<Json>,
    }
}

diesel::table! {
    webhook_queue_tallies (shard, config_id, event_type) {
        shard -> Int2,
        config_id -> Int8,
        event_type -> Text,
        queued -> Int8,
        completed -> Int8,
        failed -> Int8,
        cancelled -> Int8,
    }
}

diesel::table! {
    webhook_throughput (second, shard) {
        second -> Timestamptz,
        shard -> Int2,
        completed -> Int8,
        failed -> Int8,
    }
}

diesel::joinable!(webhook_queue -> webhook_configs (config_id));
diesel::joinable!(webhook_partner_state -> webhook_configs (config_id));

diesel::allow_tables_to_appear_in_same_query!(
    webhook_attempt_counts,
    webhook_attempt_history,
    webhook_configs,
    webhook_partner_state,
    webhook_queue,
    webhook_queue_tallies,
    webhook_throughput,
);
