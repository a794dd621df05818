-- Config versions. The API keeps copies of partner configs so that a submit costs one
-- statement, not two (docs/decisions.md, "Submit"). The insert checks, in that statement,
-- that every config it used is still the version its copy was read at: a row's xmin changes
-- with every update, made through the API or by hand. A stale copy fails the insert with
-- SQLSTATE 40001 (serialization_failure: retry); nothing was inserted, and the API reads the
-- configs again.

CREATE OR REPLACE FUNCTION webhook_configs_unchanged(ids BIGINT[], versions BIGINT[]) RETURNS BOOLEAN
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF (SELECT count(*)
        FROM webhook_configs c
        JOIN unnest(ids, versions) AS v(id, version)
          ON c.id = v.id AND c.xmin::text::bigint = v.version) <> cardinality(ids) THEN
        RAISE EXCEPTION 'webhook_configs changed since they were read'
            USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN true;
END
$$;

COMMENT ON FUNCTION webhook_configs_unchanged(BIGINT[], BIGINT[]) IS
    'True when every config id is at its version (xmin as bigint); otherwise raises 40001. '
    'Used by the API''s insert to check its cached configs; ids must be distinct.';
